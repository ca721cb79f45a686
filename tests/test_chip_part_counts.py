"""SynOps and energy per target count what the chip runs; the host's SynOps and the operations
of products of two activations (attention) are reported apart (issue 18 follow-ups).

Cost: two small deploys with magnitude pruning (~8 s), the rest simulations of small blocks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from graph_ops_nets import sdsa_block, spikes, ssa_block
from test_chip_part import _xylo_conv_net

from sbc_deploy.data import Dataset
from sbc_deploy.ir import MatMul, Product
from sbc_deploy.ir.transforms import fold_channel_affines
from sbc_deploy.pipeline import DeployRequest, deploy
from sbc_deploy.report.synops import count_synops, product_terms
from sbc_deploy.report.synops_counter import SynOpsCounter
from sbc_deploy.sim import classify, default_decoding, simulate

# --------------------------------------------------------------------------- products


def _brute(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per step, the matrix product terms with two non-zero factors: y[..., i, j] = sum_k
    a[..., i, k] b[..., k, j] has one term per (i, k, j); the 0/1 masks' product counts them."""
    a, b = (a != 0).astype(np.int64), (b != 0).astype(np.int64)
    return np.array([int(np.sum(np.matmul(a[t], b[t]))) for t in range(a.shape[0])])


def test_product_terms_count_every_term_with_two_non_zero_factors():
    rng = np.random.default_rng(4)
    # heads broadcast from the right: a [T, B, 2, 5, 3], b [T, B, 3, 4] (b shared by the heads)
    a = rng.integers(0, 2, (3, 2, 2, 5, 3)) * rng.integers(1, 4, (3, 2, 2, 5, 3))
    b = rng.integers(0, 2, (3, 2, 3, 4)) * rng.normal(1.0, 0.1, (3, 2, 3, 4))
    got = product_terms(torch.from_numpy(a), torch.from_numpy(b), matmul=True)
    expected = _brute(a, b[:, :, None])
    assert got.tolist() == expected.tolist() and got.sum() > 0
    # an elementwise product broadcasts size-1 axes: (2, 1, 3) * (2, 4, 3)
    a, b = rng.integers(0, 2, (3, 2, 2, 1, 3)), rng.integers(0, 2, (3, 2, 2, 4, 3))
    got = product_terms(torch.from_numpy(a), torch.from_numpy(b), matmul=False)
    assert got.tolist() == (np.broadcast_to(a, b.shape) * b).reshape(3, -1).sum(1).tolist()


@pytest.mark.parametrize("block", ["ssa", "sdsa"])
def test_the_counter_counts_the_products_of_a_simulated_attention_block(block):
    rng = np.random.default_rng(0)
    graph, _ = fold_channel_affines(ssa_block(rng) if block == "ssa" else sdsa_block(rng))
    shape = graph.nodes[graph.inputs[0]].output_shape
    x = torch.from_numpy(spikes(rng, 6, 4, shape, rate=0.4))
    products = [n for n, node in graph.nodes.items() if isinstance(node, (Product, MatMul))]
    operands = {n: list(graph.operands(n).values()) for n in products}
    record = sorted({src for sides in operands.values() for side in sides for src in side})
    counter = SynOpsCounter(graph, steps=6, batch=4)
    result = simulate(graph, x, record=record, on_synapse_input=counter,
                      on_operands=counter.operands, time_chunk=4)   # chunked: 4 + 2 steps
    report = counter.report()
    assert [p.name for p in report.products] == products
    for p in report.products:
        a, b = (sum(result.recorded[s].numpy() for s in side) for side in operands[p.name])
        matmul = isinstance(graph.nodes[p.name], MatMul)
        if matmul:   # align the heads as torch.matmul does, then count term by term
            a, b = np.broadcast_arrays(a[..., :, :, None], b[..., None, :, :])
            expected = (((a != 0) & (b != 0)).reshape(6, -1)).sum(axis=1)
        else:
            expected = ((a != 0) & (b != 0)).reshape(6, -1).sum(axis=1)
        assert p.ops.tolist() == expected.tolist(), p.name
        assert p.ops.sum() > 0
    assert report.product_ops == sum(int(p.ops.sum()) for p in report.products)
    assert report.per_sample_counts()["product_ops"] == report.product_ops / 4
    # products are no SynOps: the synapse layers' counts are those of count_synops
    inputs: dict = {}
    simulate(graph, x, on_synapse_input=inputs.__setitem__)
    assert report.synops == count_synops(graph, inputs).synops


# --------------------------------------------------------------------------- per target


def _labelled(graph, x) -> Dataset:
    out = simulate(graph, torch.from_numpy(np.swapaxes(x, 0, 1).astype(np.float32)))
    y = classify(out.outputs[graph.outputs[0]], default_decoding(graph)).numpy()
    return Dataset(x, y, graph.dt, "synthetic")


def test_synops_and_energy_count_the_chip_part_and_the_host_synops_stand_apart(tmp_path):
    """On xylo both convolutions of the network run on the host: the target's SynOps and
    energy are fc's alone; the convolutions' SynOps are ``synops_host``."""
    rng = np.random.default_rng(5)
    graph = _xylo_conv_net(rng)
    x = (rng.random((24, 8, 1, 6, 6)) < 0.5).astype(np.uint8)
    data = _labelled(graph, x)
    result = deploy(DeployRequest(model=graph, targets=("xylo",), calib=data, eval=data,
                                  method="magnitude", sparsity=0.3, export=("nir",),
                                  max_drop=None, out_dir=tmp_path / "out"))
    t = json.loads((tmp_path / "out" / "report.json").read_text())["targets"][0]
    compressed = result.results[0].graph
    split = result.results[0].check.split
    counts = {}
    for name, net in (("dense", graph), ("compressed", compressed)):
        inputs: dict = {}
        simulate(net, torch.from_numpy(np.swapaxes(x, 0, 1).astype(np.float32)),
                 on_synapse_input=inputs.__setitem__)
        per_layer = {layer.name: int(layer.synops.sum()) / 24
                     for layer in count_synops(net, inputs).layers}
        counts[name] = per_layer
    chip = {n for n in counts["dense"] if split.placement(n) == "chip"}
    assert chip == {"fc"}
    for which in ("dense", "compressed"):
        on_chip = sum(v for n, v in counts[which].items() if n in chip)
        on_host = sum(v for n, v in counts[which].items() if n not in chip)
        assert t["synops"][which] == pytest.approx(on_chip)
        assert t["synops_host"][which] == pytest.approx(on_host) and on_host > on_chip > 0
    synops_term, = [term for term in t["energy_terms"] if term["name"] == "synops"]
    assert synops_term["count_compressed"] == pytest.approx(t["synops"]["compressed"])
    assert synops_term["count_dense"] == pytest.approx(t["synops"]["dense"])
    updates, = [term for term in t["energy_terms"] if term["name"] == "neuron updates"]
    assert updates["count_compressed"] == pytest.approx(8 * (4 * 36 + 64 * 36 + 8))  # 8 steps
    assert t["product_ops"] == {"dense": None, "compressed": None}   # no products here
    # per layer: the host's convolutions cost no chip energy; fc's SynOps, spikes and its
    # neurons' updates do
    rows = {row["name"]: row for row in t["layers"]}
    assert rows["conv1"]["energy_compressed_j"] is None and rows["conv2"]["energy_dense_j"] \
        is None and rows["conv2"]["synops_compressed"] > 0
    costs = {term["name"]: term["cost_j"] for term in t["energy_terms"]}
    fc = rows["fc"]
    spikes_in = next(term for term in t["energy_terms"] if term["name"] == "spikes routed")
    assert fc["energy_compressed_j"] == pytest.approx(
        fc["synops_compressed"] * costs["synops"] + spikes_in["count_compressed"]
        * costs["spikes routed"] + 8 * 8 * costs["neuron updates"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| SynOps / sample (on the chip) |" in md
    assert "| SynOps / sample on the host (not in the energy) |" in md
    page = (tmp_path / "out" / "report.html").read_text()
    assert "On the chip: " in page and "On the host: " in page


@pytest.fixture(scope="module")
def sdsa_loihi2(tmp_path_factory):
    rng = np.random.default_rng(0)
    graph, _ = fold_channel_affines(sdsa_block(rng))
    x = rng.normal(0.6, 0.5, (24, 6, 8, 4, 4)).astype(np.float32)
    out = tmp_path_factory.mktemp("sdsa") / "out"
    result = deploy(DeployRequest(model=graph, targets=("loihi2", "generic"),
                                  calib=_labelled(graph, x), eval=_labelled(graph, x),
                                  sparsity=0.3, method="magnitude", max_drop=None,
                                  export=("nir",), out_dir=out))
    return graph, x, result, json.loads((out / "report.json").read_text()), out


def test_attention_products_are_counted_apart_from_the_synops(sdsa_loihi2):
    graph, x, result, report, out = sdsa_loihi2
    loihi2, generic = report["targets"]

    def counted(net):
        counter = SynOpsCounter(net, steps=6, batch=24)
        simulate(net, torch.from_numpy(np.swapaxes(x, 0, 1)), on_synapse_input=counter,
                 on_operands=counter.operands)
        return counter.report()

    dense = counted(graph)
    for section, run in zip((loihi2, generic), result.results):
        compressed = counted(run.graph)
        assert section["product_ops"] == pytest.approx(
            {"dense": dense.product_ops / 24, "compressed": compressed.product_ops / 24})
        assert compressed.product_ops > 0
    # the products run on loihi2's host and on generic's chip; they are never SynOps
    assert loihi2["synops"]["dense"] == pytest.approx(dense.synops / 24)
    assert loihi2["synops_host"] == {"dense": 0.0, "compressed": 0.0}  # every synapse: chip
    md = (out / "report.md").read_text()
    assert "| products of two activations: ops / sample (no SynOps, not in the energy) |" in md
    assert "Products of two activations: " in (out / "report.html").read_text()
