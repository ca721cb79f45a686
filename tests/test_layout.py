"""Where each layer goes (issue 20 with issue 18): the chip / host split in the decision view,
and the refusal rule: a target that can run part of a network gets the split, a target that
can run none of its neuron layers is refused before any compression.

Cost: two small deploys with magnitude pruning (~6 s of CPU); the rest are check-only runs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from graph_ops_nets import sdsa_block

from sbc_deploy.bundled import load_bundled_model
from sbc_deploy.check import check
from sbc_deploy.data import Dataset
from sbc_deploy.ir import IF, LIF, Affine, Graph, Input, Output
from sbc_deploy.ir.transforms import fold_channel_affines
from sbc_deploy.pipeline import DeployRequest, check_only, deploy
from sbc_deploy.report.render import to_html, to_markdown
from sbc_deploy.report.summary import strip, summary_lines
from sbc_deploy.sim import classify, default_decoding, simulate
from sbc_deploy.targets import load_target
from sbc_deploy.validate import refusal


def _if_then_lif(rng, second=LIF) -> Graph:
    """fc1 -> IF -> fc2 -> LIF: speck runs the first layer's neurons, not the second's."""
    neuron = (LIF(np.full(6, 0.8), np.full(6, 1.0), reset="zero") if second is LIF
              else IF(np.full(6, 1.0)))
    nodes = {"in": Input((24,)), "fc1": Affine(rng.normal(0.3, 0.5, (16, 24))),
             "if1": IF(np.full(16, 1.0)), "fc2": Affine(rng.normal(0.3, 0.5, (6, 16))),
             "lif2": neuron, "out": Output((6,))}
    return Graph.chain(nodes.items(), 1e-3, {"reset": "zero"})


def _labelled(graph: Graph, x: np.ndarray) -> Dataset:
    """``x`` labelled with the dense network's own predictions (its accuracy is 100 %)."""
    moved = torch.from_numpy(np.swapaxes(x, 0, 1).astype(np.float32))
    out = simulate(graph, moved).outputs[graph.outputs[0]]
    return Dataset(x, classify(out, default_decoding(graph)).numpy(), graph.dt, "synthetic")


def test_a_target_that_runs_part_of_a_network_gets_the_split_not_a_refusal(tmp_path):
    rng = np.random.default_rng(1)
    graph = _if_then_lif(rng)
    speck = load_target("speck")
    assert refusal(graph, speck) is None  # was refused whole before issue 18's rule
    all_lif = Graph.chain([(n, graph.nodes[n]) if n != "if1" else
                           ("if1", LIF(np.full(16, 0.8), np.full(16, 1.0), reset="zero"))
                           for n in graph.topological_order], 1e-3, {"reset": "zero"})
    assert refusal(all_lif, speck).startswith("speck cannot run LIF neurons")
    x = (rng.random((40, 10, 24)) < 0.4).astype(np.uint8)
    data = _labelled(graph, x)
    result = deploy(DeployRequest(model=graph, targets=("speck",), calib=data, eval=data,
                                  method="magnitude", export=("nir",), max_drop=None,
                                  out_dir=tmp_path / "out"))
    t = result.report.targets[0]
    assert t.refused is None and t.accuracy.compressed_float is not None  # it was compressed
    # the LIF neuron the chip cannot run is placed on the host: a warning that says so
    placed = [v for v in t.violations if v.layer == "lif2"]
    assert placed and all(v.severity == "warning" and "runs on the host" in v.message
                          for v in placed)
    assert not any(v.severity == "error" and v.rule == "supported_neuron_model"
                   for v in t.violations)
    rows = {row["layer"]: row for row in t.placement}
    assert rows["fc1 -> if1"]["runs_on"] == "chip"
    assert rows["fc2 -> lif2"]["runs_on"] == "chip + host"
    assert rows["fc2 -> lif2"]["sides"] == ["chip", "host"]
    assert "cannot run LIF neurons" in rows["fc2 -> lif2"]["reason"]
    item = next(i for i in strip(t) if i.label == "chip / host split")
    assert item.value == "1 on chip, 1 on host" and "host runs LIF" in item.detail


@pytest.fixture(scope="module")
def sdsa_run(tmp_path_factory):
    rng = np.random.default_rng(0)
    graph, _ = fold_channel_affines(sdsa_block(rng))
    x = rng.normal(0.6, 0.5, (32, 6, 8, 4, 4)).astype(np.float32)
    data = _labelled(graph, x)
    out = tmp_path_factory.mktemp("sdsa") / "out"
    result = deploy(DeployRequest(model=graph, targets=("loihi2", "speck"), calib=data,
                                  eval=data, sparsity=0.3, method="magnitude", max_drop=None,
                                  export=("nir",), out_dir=out, batch_size=16))
    return graph, result, out


def test_the_spike_driven_transformer_block_shows_where_each_layer_goes(sdsa_run):
    graph, result, out = sdsa_run
    loihi2, speck = result.report.targets
    assert speck.refused and speck.refused.startswith("speck cannot run LIF neurons")
    assert loihi2.refused is None
    # every node but the I/O ports in exactly one row; rows in graph order of their first node
    nodes = [n for row in loihi2.placement for n in row["nodes"]]
    assert sorted(nodes) == sorted(n for n in graph.nodes if n not in ("in", "out"))
    order = graph.topological_order
    firsts = [order.index(row["nodes"][0]) for row in loihi2.placement]
    assert firsts == sorted(firsts)
    # the sides are the check's split, computed again on the compressed graph
    split = check(result.results[0].graph, load_target("loihi2")).split
    for row in loihi2.placement:
        sides = " + ".join(dict.fromkeys(split.placement(n) for n in row["nodes"]))
        assert row["runs_on"] == sides, row
    rows = {row["layer"]: row for row in loihi2.placement}
    assert rows["kv"]["runs_on"] == "host" and "product of two activations" in rows["kv"][
        "reason"]
    mapping = result.results[0].check.mapping
    assert rows["q_conv -> q_lif"]["cores"] == list(
        next(p.cores for p in mapping.layers if p.name == "q_lif"))
    host = sum(1 for row in loihi2.placement if "host" in row["runs_on"])
    assert host == len(split.host)  # on loihi2 only graph operations run on the host
    line = next(line for line in summary_lines(loihi2) if "chip / host split" in line)
    assert f"{len(loihi2.placement) - host} on chip, {host} on host" in line
    # the refused target's column says why nothing runs there
    page = (out / "report.html").read_text()
    layout = page[page.index('<h3 id="layout">'):]
    assert "<th>speck (refused)</th>" in layout
    assert "host: no MatMul layer" not in layout  # SDSA has no MatMul: products only
    assert "host: no Product layer" in layout
    assert "synapses on chip, neurons on host: cannot run LIF neurons" in layout
    # nothing was compressed for speck: its float weights' rule is beside the point there
    assert "breaks weights_on_grid" not in layout
    report = json.loads((out / "report.json").read_text())
    assert report["targets"][0]["placement"] == [dict(r) for r in loihi2.placement]


def test_the_bundled_networks_layout_on_four_targets():
    graph = load_bundled_model("nmnist_cnn")
    report = check_only(graph, ["loihi2", "loihi1", "speck", "xylo"])
    loihi2 = report.targets[0]
    assert all(row["runs_on"] == "chip" for row in loihi2.placement)
    assert not any(i.label == "chip / host split" for i in strip(loihi2))  # all on the chip
    md = to_markdown(report)
    table = md[md.index("### Where each layer goes"):].split("\n\n")[1]
    header, _, *rows = table.splitlines()
    assert header == "| layer | kind | loihi2 | loihi1 | speck | xylo |"
    first = rows[0].split(" | ")
    assert first[0] == "| conv2d0 -> leaky1" and first[2].startswith("chip, cores 0-")
    assert first[4] == ("synapses on chip, neurons on host: cannot run LIF neurons (it runs IF) "
                        "(breaks weights_on_grid)")  # float weights: check before compression
    # xylo has no convolution, and its circuit resets by subtraction only: the LIF neurons'
    # zero reset is a reset rule it lacks, so they run on the host too (check/split.py; this
    # cell read "synapses on host, neurons on chip: ... (breaks fan_out,
    # supported_neuron_model)" before the split placed unsupported resets on the host)
    assert first[5] == "host: no Conv2d layer |"
    xylo = report.targets[3]
    row = next(r for r in xylo.placement if r["layer"] == "conv2d0 -> leaky1")
    assert row["sides"] == ["host", "host"]
    assert "xylo resets by subtract only, not by zero" in row["reason"]
    assert "Where each layer goes" in to_html(report)
