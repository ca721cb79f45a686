"""Exporters on the graph-operation nodes (issue 18): ONNX runs every one of them in
onnxruntime and matches the float simulator; netx and NIR write what their formats hold and
refuse the rest naming the node and why."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from graph_ops_nets import csnn_maxpool, lif, sdsa_block, sew_block, spikes, ssa_block

from sbc_deploy.errors import ExportError
from sbc_deploy.ir import (
    AdaptiveAvgPool2d,
    Affine,
    ChannelAffine,
    Conv2d,
    Graph,
    Identity,
    Input,
    LayerNorm,
    Output,
    Reshape,
    Synapse,
)
from sbc_deploy.ir.transforms import fold_channel_affines
from sbc_deploy.sim import simulate

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from test_to_onnx import assert_onnx_matches_simulate  # noqa: E402


def on_grid(graph: Graph, step: float = 1 / 32) -> Graph:
    """BatchNorm folded, then every weight and bias rounded to multiples of ``step``: sums of
    spikes times weights are exact in float32 in every runtime, so spikes agree bit for bit."""
    graph, _ = fold_channel_affines(graph)
    changes = {}
    for name, node in graph.nodes.items():
        if isinstance(node, Synapse):
            bias = None if node.bias is None else np.round(node.bias / step) * step
            changes[name] = dataclasses.replace(node, weight=np.round(node.weight / step) * step,
                                                bias=bias)
    return graph.replace_nodes(changes)


def _layer_norm_net(rng) -> Graph:
    c, n = 6, 5
    return Graph.chain([
        ("in", Input((c, n))), ("ln", LayerNorm((c, n), rng.uniform(0.5, 1.5, n),
                                                 rng.normal(0, 0.1, n), eps=1e-3)),
        ("lif", lif((c, n), threshold=0.3)), ("out", Output((c, n)))], 1e-3)


NETS = {
    "csnn_maxpool": lambda rng: on_grid(csnn_maxpool(rng)),
    "sew_iand": lambda rng: on_grid(sew_block(rng, "IAND")),
    "sew_and": lambda rng: on_grid(sew_block(rng, "AND")),
    "spikformer_ssa": lambda rng: on_grid(ssa_block(rng)),
    "spike_driven_sdsa": lambda rng: on_grid(sdsa_block(rng)),
    "layer_norm": _layer_norm_net,
}


@pytest.mark.parametrize("net", sorted(NETS))
def test_onnx_runs_every_operation_like_the_simulator(rng, tmp_path, net):
    graph = NETS[net](rng)
    shape = graph.nodes["in"].output_shape
    x = (spikes(rng, 6, 3, shape) if net != "layer_norm"
         else rng.normal(0, 1, (6, 3, *shape)).astype(np.float32))
    got = assert_onnx_matches_simulate(graph, {"in": x}, tmp_path / "net.onnx")
    assert np.abs(got["out"]).sum() > 0      # the network is not silent


def test_onnx_adaptive_pool_both_ways(rng, tmp_path):
    for size, out in (((8, 8), (2, 4)), ((7, 10), (3, 4))):
        node = AdaptiveAvgPool2d(out, (3, *size))
        graph = Graph.chain([("in", Input(node.input_shape)), ("pool", node),
                             ("out", Output(node.output_shape))], 1e-3)
        x = rng.normal(size=(2, 4, 3, *size)).astype(np.float32)
        got = assert_onnx_matches_simulate(graph, {"in": x}, tmp_path / "pool.onnx")
        ref = torch.nn.AdaptiveAvgPool2d(out)(torch.from_numpy(x).flatten(0, 1))
        np.testing.assert_allclose(got["out"], ref.unflatten(0, (2, 4)).numpy(), rtol=1e-5,
                                   atol=1e-6)
        ops = {n.op_type for n in onnx.load(str(tmp_path / "pool.onnx")).graph.node[-1]
               .attribute[0].g.node}
        assert ("AveragePool" in ops) == (size[0] % out[0] == 0 and size[1] % out[1] == 0)


# --------------------------------------------------------------------------- NIR and netx


def _nir_expressible(rng) -> Graph:
    """Operations NIR can hold: a BatchNorm after a neuron (ChannelAffine), an Identity, a
    dividing adaptive pool and a flatten written as a Reshape."""
    return Graph.chain([
        ("in", Input((2, 8, 8))),
        ("conv", Conv2d(rng.normal(0, 1.0, (4, 2, 3, 3)), (2, 8, 8), padding=1)),
        ("lif1", lif((4, 8, 8))),
        ("bn", ChannelAffine(rng.uniform(0.5, 2, 4), rng.normal(0, 0.2, 4), (4, 8, 8))),
        ("same", Identity((4, 8, 8))),
        ("gap", AdaptiveAvgPool2d(4, (4, 8, 8))),
        ("flat", Reshape((4, 4, 4), (64,))),
        ("fc", Affine(rng.normal(0, 0.5, (5, 64)), bias=np.zeros(5))),
        ("lif2", lif((5,), threshold=0.5)),
        ("out", Output((5,)))], 1e-3, {"reset": "zero"})


def test_nir_round_trip_of_what_nir_holds(rng, tmp_path):
    import nir as nirlib

    from sbc_deploy.exporters.to_nir import write_nir
    from sbc_deploy.frontends.from_nir import from_nir

    graph = _nir_expressible(rng)
    path = write_nir(graph, tmp_path / "ops.nir")
    written = nirlib.read(str(path))
    assert isinstance(written.nodes["bn"], nirlib.Conv2d)
    np.testing.assert_array_equal(written.nodes["bn"].weight[:, :, 0, 0],
                                  np.diag(graph.nodes["bn"].scale))
    assert isinstance(written.nodes["gap"], nirlib.AvgPool2d)
    assert isinstance(written.nodes["flat"], nirlib.Flatten)
    back = from_nir(written)
    x = torch.from_numpy(spikes(rng, 8, 4, (2, 8, 8)))
    want = simulate(graph, x, dtype=torch.float64, record=["lif1"])
    got = simulate(back, x, dtype=torch.float64, record=["lif1"])
    assert 0.02 < float(want.recorded["lif1"].mean()) < 0.8
    torch.testing.assert_close(got.outputs["out"], want.outputs["out"], rtol=0, atol=0)
    assert float(want.outputs["out"].sum()) > 10


@pytest.mark.parametrize("build, node, lacks", [
    (csnn_maxpool, "pool1", "NIR has no max-pooling primitive"),
    (lambda rng: sew_block(rng, "AND"), "sew", "edges into a NIR node add up"),
    (ssa_block, "q", "NIR has no slice primitive"),
    (_layer_norm_net, "ln", "NIR has no normalisation primitive"),
])
@pytest.mark.parametrize("nir_for", ["nir", "snntorch"])
def test_nir_refuses_what_it_lacks_naming_the_node(rng, tmp_path, build, node, lacks, nir_for):
    from sbc_deploy.exporters.to_nir import write_nir

    graph = on_grid(build(rng)) if build is not _layer_norm_net else build(rng)
    with pytest.raises(ExportError, match=lacks) as info:
        write_nir(graph, tmp_path / "x.nir", nir_for=nir_for)
    assert info.value.where == f"node '{node}'"
    assert not (tmp_path / "x.nir").exists()


@pytest.mark.parametrize("build, node, lacks", [
    (csnn_maxpool, "pool1", "netx has no max-pool layer"),
    (lambda rng: sew_block(rng, "IAND"), "not_out", "no synapse before it"),
    (sdsa_block, "x", "residual merge"),
])
def test_netx_refuses_graph_operations_naming_the_node(rng, tmp_path, build, node, lacks):
    from sbc_deploy.exporters.to_netx import to_netx

    with pytest.raises(ExportError, match=lacks) as info:
        to_netx(on_grid(build(rng)), tmp_path / "x.net", unit=1 / 32)
    assert info.value.where == f"node '{node}'"
    assert not (tmp_path / "x.net").exists()
