"""The check's graph rules and core mapping are linear in the node count (issue 21: a 60,000-node
chain did not finish in 300 s). CPU time of a 4,000-node chain against a 1,000-node one: linear
gives ~4x, the old quadratic rules 16x or more. Cost: ~4 s. benchmarks/check_scaling.py has the
100,000-node timings."""

from __future__ import annotations

import sys
import time

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from check_scaling import chain  # noqa: E402

from sbc_deploy.check import check  # noqa: E402
from sbc_deploy.targets import load_target  # noqa: E402


def _cpu_seconds(nodes: int, target) -> float:
    best = float("inf")
    for _ in range(2):  # a fresh graph each time: a second check of one graph reuses caches
        graph = chain(nodes)
        start = time.process_time()
        result = check(graph, target)
        best = min(best, time.process_time() - start)
    assert result.violations  # float weights on loihi2: every layer is reported
    return best


def test_check_time_grows_linearly_with_the_chain():
    target = load_target("loihi2")  # sequential topology, out-axon mapping: the slow paths
    small, large = _cpu_seconds(1000, target), _cpu_seconds(4000, target)
    assert large < 8 * small, (small, large)


def test_adjacency_is_the_edges_in_order():
    graph = chain(10)
    for name in graph.nodes:
        assert graph.successors(name) == tuple(d for s, d in graph.edges if s == name)
        assert graph.predecessors(name) == tuple(s for s, d in graph.edges if d == name)
