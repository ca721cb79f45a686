"""Time ``sbc_deploy.check`` on long chains: the graph rules must be linear in the node count.

A chain Input -> (Affine(4x4) -> LIF(4)) x k -> Output has 2k + 2 nodes; each size is checked
against the loihi2 target (sequential topology, every rule) and the generic one, with the graph
built outside the timing. Results: benchmarks/results/check_scaling.md.

    PYTHONPATH=$PWD nice -n 10 python benchmarks/check_scaling.py --nodes 3000 12000 60000 100000
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def chain(nodes: int):
    from sbc_deploy.ir import LIF, Affine, Graph, Input, Output

    pairs = max((nodes - 2) // 2, 1)
    items: list = [("in", Input((4,)))]
    weight = np.eye(4) * 2.0
    for k in range(pairs):
        items.append((f"fc{k}", Affine(weight)))
        items.append((f"lif{k}", LIF(beta=np.full(4, 0.9), v_threshold=np.ones(4))))
    items.append(("out", Output((4,))))
    return Graph.chain(items, dt=1e-3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, nargs="+", default=[3000, 12000, 60000, 100000])
    parser.add_argument("--targets", default="loihi2,generic")
    args = parser.parse_args()
    from sbc_deploy.check import check
    from sbc_deploy.targets import load_target

    targets = [load_target(t) for t in args.targets.split(",")]
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("| nodes | build graph (s) | " + " | ".join(f"check {t.name}: wall / CPU (s)"
                                                    for t in targets) + " | violations |")
    print("|---|---|" + "---|" * len(targets) + "---|")
    for n in args.nodes:
        start = time.perf_counter()
        graph = chain(n)
        built = time.perf_counter() - start
        times, found = [], 0
        for target in targets:
            start, cpu = time.perf_counter(), time.process_time()
            result = check(graph, target)
            times.append((time.perf_counter() - start, time.process_time() - cpu))
            found += len(result.violations)
        print(f"| {len(graph.nodes):,} | {built:.2f} | "
              + " | ".join(f"{w:.2f} / {c:.2f}" for w, c in times) + f" | {found} |",
              flush=True)


if __name__ == "__main__":
    main()
