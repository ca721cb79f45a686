"""The graph-operation nodes (issue 18): construction checks, operand ports, the float
simulator's kernels against independent computations (torch.nn modules, numpy loops, the
attention formulas written out), streaming, and the BatchNorm fold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graph_ops_nets import csnn_maxpool, lif, sdsa_block, sew_block, spikes, ssa_block

from sbc_deploy.errors import IRError, ShapeError
from sbc_deploy.ir import (
    LIF,
    AdaptiveAvgPool2d,
    Affine,
    AvgPool2d,
    ChannelAffine,
    Conv2d,
    Graph,
    Identity,
    Input,
    LayerNorm,
    MatMul,
    MaxPool2d,
    Output,
    Permute,
    Product,
    Reduce,
    Reshape,
    Slice,
    adaptive_windows,
    batchnorm_affine,
)
from sbc_deploy.ir.transforms import fold_channel_affines, lower_adaptive_pools
from sbc_deploy.sim import simulate

F64 = torch.float64


def run_single(node, x: np.ndarray) -> np.ndarray:
    graph = Graph.chain([("in", Input(node.input_shape)), ("n", node),
                         ("out", Output(node.output_shape))], dt=1e-3)
    return simulate(graph, torch.from_numpy(x), dtype=F64).outputs["out"].numpy()


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize("make, message", [
    (lambda: MaxPool2d(2, (3, 4, 4), padding=2), "padding"),
    (lambda: MaxPool2d(2, (3, 4)), "(C, H, W)"),
    (lambda: AdaptiveAvgPool2d((0, 2), (3, 4, 4)), "output_size"),
    (lambda: ChannelAffine(np.ones(4), np.zeros(3), (3, 2)), "scale must have shape (3,)"),
    (lambda: ChannelAffine(np.ones(3), [0, np.nan, 0], (3, 2)), "NaN"),
    (lambda: LayerNorm((4, 6), np.ones(4), np.zeros(4)), "trailing part"),
    (lambda: LayerNorm((4, 6), np.ones(6), np.zeros(6), eps=0.0), "eps"),
    (lambda: Reshape((4, 6), (5, 5)), "different sizes"),
    (lambda: Permute((2, 3, 4), (0, 0, 1)), "not a permutation"),
    (lambda: Permute((2, 3), (0, 2)), "not an axis"),
    (lambda: Slice((6, 2), 0, 4, 7), "0 <= start < stop <= 6"),
    (lambda: Slice((6, 2), 0, 3, 3), "start < stop"),
    (lambda: Reduce((6, 2), (0, 1)), "keepdims=True"),
    (lambda: Reduce((6, 2), (1,), op="max"), "op must be one of"),
    (lambda: Product((2, 3), (3, 3)), "do not broadcast"),
    (lambda: Product((2, 3), (3,)), "same number of axes"),
    (lambda: MatMul((2, 3, 4), (2, 5, 6)), "4 columns"),
    (lambda: MatMul((4,), (4,)), "at least 2 axes"),
    (lambda: MatMul((2, 3, 4), (3, 4, 2)), "leading axes"),
])
def test_bad_parameters_raise_naming_the_node(make, message):
    with pytest.raises(IRError, match=None) as info:
        make()
    assert message in str(info.value)


def test_shapes_follow_pytorch():
    assert MaxPool2d(3, (4, 16, 16), stride=2, padding=1).output_shape == (4, 8, 8)
    assert AdaptiveAvgPool2d((3, 5), (2, 7, 11)).output_shape == (2, 3, 5)
    assert Permute((2, 3, 4), (2, 0, 1)).output_shape == (4, 2, 3)
    assert Slice((9, 2), 0, 3, 6).output_shape == (3, 2)
    assert Reduce((2, 3, 4), (1, -1), keepdims=True).output_shape == (2, 1, 1)
    assert Reduce((2, 3, 4), (1,)).output_shape == (2, 4)
    assert Product((2, 1, 4), (2, 3, 1)).output_shape == (2, 3, 4)
    assert MatMul((1, 3, 4, 5), (2, 1, 5, 6)).output_shape == (2, 3, 4, 6)
    for length, out in [(7, 3), (10, 4), (5, 5), (3, 5)]:
        torch_windows = [(int(np.floor(i * length / out)), int(np.ceil((i + 1) * length / out)))
                         for i in range(out)]
        assert list(adaptive_windows(length, out)) == torch_windows


def test_ports_are_checked_by_the_graph():
    nodes = {"a": Input((3,)), "b": Input((3,)), "p": Product((3,), (3,)), "o": Output((3,))}
    edges = [("a", "p"), ("b", "p"), ("p", "o")]
    with pytest.raises(IRError, match="without naming its port"):
        Graph(nodes, edges, 1e-3)
    with pytest.raises(IRError, match="receives nothing at port"):
        Graph(nodes, edges, 1e-3, ports={("a", "p"): "a", ("b", "p"): "a"})
    with pytest.raises(IRError, match="has no port 'c'"):
        Graph(nodes, edges, 1e-3, ports={("a", "p"): "a", ("b", "p"): "c"})
    with pytest.raises(IRError, match="no named ports"):
        Graph(nodes, edges, 1e-3, ports={("a", "p"): "a", ("b", "p"): "b", ("p", "o"): "a"})
    with pytest.raises(IRError, match="does not have"):
        Graph(nodes, edges, 1e-3, ports={("a", "p"): "a", ("b", "p"): "b", ("b", "o"): "a"})
    bad = dict(nodes, p=Product((3,), (1,)))
    with pytest.raises(ShapeError, match="at port 'b'"):
        Graph(bad, edges, 1e-3, ports={("a", "p"): "a", ("b", "p"): "b"})
    graph = Graph(nodes, edges, 1e-3, ports={("a", "p"): "a", ("b", "p"): "b"})
    assert graph.operands("p") == {"a": ("a",), "b": ("b",)}
    assert graph.replace_nodes({}).ports == graph.ports
    assert graph.with_metadata(x=1).ports == graph.ports


# --------------------------------------------------------------------------- kernels


def _max_pool_loop(x, k, s, p):
    """Explicit windows over a -inf padded map."""
    n, c, h, w = x.shape
    padded = np.full((n, c, h + 2 * p, w + 2 * p), -np.inf)
    padded[:, :, p:p + h, p:p + w] = x
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = padded[:, :, i * s:i * s + k, j * s:j * s + k].max(axis=(2, 3))
    return out


def test_max_pool_is_the_or_of_spikes_and_the_max_of_currents(rng):
    node = MaxPool2d(3, (4, 9, 9), stride=2, padding=1)
    binary = spikes(rng, 3, 2, (4, 9, 9), rate=0.2).astype(np.float64)
    out = run_single(node, binary)
    loop = _max_pool_loop(binary.reshape(6, 4, 9, 9), 3, 2, 1).reshape(out.shape)
    np.testing.assert_array_equal(out, loop)
    # OR: a window fires when any of its spikes does
    any_spike = _max_pool_loop(binary.reshape(6, 4, 9, 9), 3, 2, 1) > 0
    np.testing.assert_array_equal(out.reshape(6, 4, 5, 5) > 0, any_spike)
    assert 0.2 < out.mean() < 0.95
    currents = rng.normal(size=(3, 2, 4, 9, 9))
    ref = torch.nn.MaxPool2d(3, stride=2, padding=1)(torch.from_numpy(currents).flatten(0, 1))
    np.testing.assert_array_equal(run_single(node, currents), ref.unflatten(0, (3, 2)).numpy())


@pytest.mark.parametrize("size, out", [((7, 11), (3, 5)), ((8, 8), (4, 2)), ((3, 3), (5, 5))])
def test_adaptive_avg_pool_matches_torch_and_windows(rng, size, out):
    node = AdaptiveAvgPool2d(out, (2, *size))
    x = rng.normal(size=(2, 3, 2, *size))
    got = run_single(node, x)
    ref = torch.nn.AdaptiveAvgPool2d(out)(torch.from_numpy(x).flatten(0, 1)).unflatten(0, (2, 3))
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-12, atol=1e-12)
    rows, cols = adaptive_windows(size[0], out[0]), adaptive_windows(size[1], out[1])
    loop = np.array([[x[..., r0:r1, c0:c1].mean(axis=(-2, -1)) for c0, c1 in cols]
                     for r0, r1 in rows])
    np.testing.assert_allclose(got, np.moveaxis(loop, (0, 1), (-2, -1)), rtol=1e-12, atol=1e-15)
    lowered = node.as_avg_pool()
    if size[0] % out[0] == 0 and size[1] % out[1] == 0:
        assert isinstance(lowered, AvgPool2d)
        np.testing.assert_allclose(run_single(lowered, x), got, rtol=1e-12)
    else:
        assert lowered is None


def test_channel_affine_is_batchnorm_in_eval_mode(rng):
    bn = torch.nn.BatchNorm2d(5, eps=1e-3).double().eval()
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(rng.uniform(0.5, 2, 5)))
        bn.bias.copy_(torch.from_numpy(rng.normal(size=5)))
        bn.running_mean.copy_(torch.from_numpy(rng.normal(size=5)))
        bn.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2, 5)))
    scale, shift = batchnorm_affine(bn.weight.detach(), bn.bias.detach(), bn.running_mean,
                                    bn.running_var, bn.eps)
    x = rng.normal(size=(3, 2, 5, 4, 4))
    got = run_single(ChannelAffine(scale, shift, (5, 4, 4)), x)
    ref = bn(torch.from_numpy(x).flatten(0, 1)).unflatten(0, (3, 2)).detach().numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_layer_norm_matches_torch(rng):
    ln = torch.nn.LayerNorm((3, 4), eps=1e-4).double()
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    x = rng.normal(size=(2, 3, 5, 3, 4))
    node = LayerNorm((5, 3, 4), ln.weight.detach().numpy(), ln.bias.detach().numpy(), eps=1e-4)
    ref = ln(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(run_single(node, x), ref, rtol=1e-12, atol=1e-12)


def test_reshape_permute_slice_reduce_match_numpy(rng):
    x = rng.normal(size=(2, 3, 4, 6))
    np.testing.assert_array_equal(run_single(Reshape((4, 6), (2, 3, 4)), x),
                                  x.reshape(2, 3, 2, 3, 4))
    y = rng.normal(size=(2, 3, 2, 3, 4))
    np.testing.assert_array_equal(run_single(Permute((2, 3, 4), (2, 0, 1)), y),
                                  y.transpose(0, 1, 4, 2, 3))
    np.testing.assert_array_equal(run_single(Slice((4, 6), 1, 2, 5), x), x[..., 2:5])
    np.testing.assert_allclose(run_single(Reduce((4, 6), (1,), keepdims=True), x),
                               x.sum(axis=-1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(run_single(Reduce((2, 3, 4), (0, 2), op="mean"), y),
                               y.mean(axis=(2, 4)), rtol=1e-12)
    np.testing.assert_array_equal(run_single(Identity((4, 6)), x), x)


def _binary_graph(node, a_shape, b_shape) -> Graph:
    nodes = {"a": Input(a_shape), "b": Input(b_shape), "op": node, "o": Output(node.output_shape)}
    return Graph(nodes, [("b", "op"), ("a", "op"), ("op", "o")], 1e-3,
                 ports={("a", "op"): "a", ("b", "op"): "b"})


def test_products_keep_their_operand_order(rng):
    # the edge list names b first: the ports, not the edge order, decide
    a, b = rng.normal(size=(2, 3, 2, 4, 5)), rng.normal(size=(2, 3, 2, 5, 3))
    graph = _binary_graph(MatMul((2, 4, 5), (2, 5, 3), scale=0.5), (2, 4, 5), (2, 5, 3))
    got = simulate(graph, {"a": torch.from_numpy(a), "b": torch.from_numpy(b)}, dtype=F64)
    ref = 0.5 * np.einsum("tnhik,tnhkj->tnhij", a, b)
    np.testing.assert_allclose(got.outputs["o"].numpy(), ref, rtol=1e-12)
    a, b = rng.normal(size=(2, 3, 2, 1, 4)), rng.normal(size=(2, 3, 2, 5, 1))
    graph = _binary_graph(Product((2, 1, 4), (2, 5, 1)), (2, 1, 4), (2, 5, 1))
    got = simulate(graph, {"a": torch.from_numpy(a), "b": torch.from_numpy(b)}, dtype=F64)
    np.testing.assert_array_equal(got.outputs["o"].numpy(), a * b)


@pytest.mark.parametrize("connect", ["ADD", "AND", "IAND"])
def test_sew_connect_functions(rng, connect):
    graph = sew_block(rng, connect)
    x = spikes(rng, 6, 4, (2, 8, 8))
    result = simulate(graph, torch.from_numpy(x), record=["stem_lif", "lif2", "sew"], dtype=F64)
    a, b = (result.recorded[n].numpy() for n in ("stem_lif", "lif2"))
    assert 0.02 < a.mean() < 0.8 and 0.02 < b.mean() < 0.8
    expected = {"ADD": a + b, "AND": a * b, "IAND": a * (1 - b)}[connect]
    np.testing.assert_array_equal(result.recorded["sew"].numpy(), expected)
    if connect != "ADD":   # on spikes: the logic functions
        logic = {"AND": np.logical_and(a, b), "IAND": np.logical_and(a, np.logical_not(b))}
        np.testing.assert_array_equal(expected, logic[connect].astype(float))


def test_spikformer_ssa_against_its_formula(rng):
    graph = ssa_block(rng)
    x = spikes(rng, 5, 3, (24, 16))
    result = simulate(graph, torch.from_numpy(x), record=["qkv_lif", "vkq", "attn_lif"])
    qkv = result.recorded["qkv_lif"].reshape(5, 3, 3, 2, 12, 16)   # [T, N, 3, heads, d, L]
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    assert 0.05 < float(qkv.mean()) < 0.8
    expected = (v @ k.transpose(-2, -1)) @ q * 0.125
    torch.testing.assert_close(result.recorded["vkq"][:, :, 0], expected, rtol=0, atol=0)
    # the same attention in the usual token-major form: (Q K^T) V, transposed
    tokens = (q.transpose(-2, -1) @ k) @ v.transpose(-2, -1) * 0.125
    torch.testing.assert_close(result.recorded["vkq"][:, :, 0], tokens.transpose(-2, -1))
    assert float(result.recorded["attn_lif"].mean()) > 0.02


def test_spike_driven_sdsa_against_its_formula(rng):
    graph = sdsa_block(rng)
    x = rng.normal(0.6, 0.5, (5, 3, 8, 4, 4)).astype(np.float32)
    names = ["q_lif", "k_lif", "v_lif", "attn_lif", "qkv_out", "merge"]
    result = simulate(graph, torch.from_numpy(x), record=names)
    r = result.recorded

    def split_heads(value):   # [T, N, C, H, W] -> [T, N, heads, HW, d]
        return value.flatten(3).transpose(-1, -2).reshape(5, 3, 16, 2, 4).permute(0, 1, 3, 2, 4)

    q, k, v = (split_heads(r[n]) for n in ("q_lif", "k_lif", "v_lif"))
    assert all(0.02 < float(t.mean()) < 0.8 for t in (q, k, v))
    kv_input = (k * v).sum(dim=-2, keepdim=True)
    assert float(kv_input.max()) > 1    # the column sum is not binary
    torch.testing.assert_close(r["qkv_out"], q * r["attn_lif"], rtol=0, atol=0)
    merged = r["qkv_out"].transpose(3, 4).reshape(5, 3, 8, 4, 4)
    torch.testing.assert_close(r["merge"], merged, rtol=0, atol=0)
    # attn_lif integrates exactly the column sum (a LIF run on it gives the same spikes)
    alone = Graph.chain([("in", Input((2, 1, 4))), ("lif", lif((2, 1, 4), threshold=0.5)),
                         ("out", Output((2, 1, 4)))], 1e-3)
    torch.testing.assert_close(simulate(alone, kv_input).outputs["out"], r["attn_lif"])


@pytest.mark.parametrize("build", [csnn_maxpool, ssa_block, sdsa_block])
def test_streamed_chunks_equal_one_run(rng, build):
    graph = build(rng)
    shape = graph.nodes["in"].output_shape
    x = torch.from_numpy(spikes(rng, 7, 5, shape))
    neurons = [n for n, node in graph.nodes.items() if isinstance(node, LIF)]
    whole = simulate(graph, x, dtype=F64, record=neurons)
    chunked = simulate(graph, x, dtype=F64, time_chunk=3, batch_chunk=2, record=neurons)
    for name in neurons:   # spikes bit for bit; the readout within BLAS's row-count rounding
        torch.testing.assert_close(chunked.recorded[name], whole.recorded[name], rtol=0, atol=0)
    torch.testing.assert_close(chunked.outputs["out"], whole.outputs["out"], rtol=1e-13,
                               atol=1e-13)


def test_product_on_a_cycle_is_stepped(rng):
    """A gate on a recurrent loop: lif -> (lif * input) -> fb -> lif (recurrent)."""
    w = rng.normal(0, 1.5, (4, 4))
    nodes = {"in": Input((4,)), "lif": LIF(np.full(4, 0.7), np.ones(4)),
             "gate": Product((4,), (4,)), "fb": Affine(w), "o": Output((4,))}
    edges = [("in", "lif"), ("lif", "gate"), ("in", "gate"), ("gate", "fb"), ("fb", "lif"),
             ("lif", "o")]
    graph = Graph(nodes, edges, 1e-3, ports={("lif", "gate"): "a", ("in", "gate"): "b"})
    assert graph.recurrent_edges == {("fb", "lif")}
    x = rng.uniform(0, 1.5, (8, 2, 4))
    got = simulate(graph, torch.from_numpy(x), dtype=F64).outputs["o"].numpy()
    v, s, out = np.zeros((2, 4)), np.zeros((2, 4)), []
    for t in range(8):
        v = 0.7 * v + x[t] + (s * x[t - 1] @ w.T if t else 0)
        s = (v > 1).astype(float)
        v = np.where(s > 0, 0.0, v)
        out.append(s)
    np.testing.assert_array_equal(got, np.array(out))
    assert 0.05 < got.mean() < 0.9


# --------------------------------------------------------------------------- transforms


def test_batchnorm_fold_is_exact_and_unfolds(rng):
    graph = csnn_maxpool(rng)
    folded, folds = fold_channel_affines(graph)
    assert [(f.affine, f.synapse) for f in folds] == [("bn1", "conv1"), ("bn2", "conv2")]
    assert "bn1" not in folded.nodes and ("conv1", "lif1") in folded.edges
    assert folded.nodes["conv1"].metadata["folded_affine"] == "bn1"
    x = torch.from_numpy(spikes(rng, 6, 4, (2, 16, 16)))
    before = simulate(graph, x, dtype=F64, record=["lif1", "lif2"])
    after = simulate(folded, x, dtype=F64, record=["lif1", "lif2"])
    for name in ("lif1", "lif2"):
        torch.testing.assert_close(after.recorded[name], before.recorded[name], rtol=0, atol=0)
        assert 0.02 < float(before.recorded[name].mean()) < 0.8
    # unfold gives back the module's own conv (no bias: BN's shift stays in the BN)
    for fold in folds:
        weight, bias = fold.unfold(folded.nodes[fold.synapse].weight,
                                   folded.nodes[fold.synapse].bias)
        np.testing.assert_allclose(weight, graph.nodes[fold.synapse].weight, rtol=1e-14)
        assert bias is None


def test_fold_unfold_with_bias_and_zero_scale():
    weight = np.arange(12.0).reshape(3, 4)
    graph = Graph.chain([("in", Input((4,))), ("fc", Affine(weight, bias=[1.0, 2.0, 3.0])),
                         ("bn", ChannelAffine([2.0, 0.0, -0.5], [0.5, 1.0, 0.0], (3,))),
                         ("out", Output((3,)))], 1e-3)
    folded, (fold,) = fold_channel_affines(graph)
    fc = folded.nodes["fc"]
    np.testing.assert_array_equal(fc.weight, weight * np.array([[2.0], [0.0], [-0.5]]))
    np.testing.assert_array_equal(fc.bias, [2.5, 1.0, -1.5])
    w, b = fold.unfold(fc.weight * 3, fc.bias)
    np.testing.assert_array_equal(w, np.array([weight[0] * 3, np.zeros(4), weight[2] * 3]))
    np.testing.assert_array_equal(b, [1.0, 0.0, 3.0])


def test_fold_leaves_affines_without_a_lone_synapse(rng):
    graph = sew_block(rng, "IAND")          # not_out follows a neuron: it stays
    folded, folds = fold_channel_affines(graph)
    assert {f.affine for f in folds} == {"bn1", "bn2"}
    assert isinstance(folded.nodes["not_out"], ChannelAffine)
    assert folded.ports[("not_out", "sew")] == "b"
    nodes = {"in": Input((3, 4, 4)), "c": Conv2d(np.ones((3, 3, 1, 1)), (3, 4, 4)),
             "bn": ChannelAffine(np.ones(3), np.zeros(3), (3, 4, 4)), "o": Output((3, 4, 4)),
             "o2": Output((3, 4, 4))}
    branch = Graph(nodes, [("in", "c"), ("c", "bn"), ("bn", "o"), ("c", "o2")], 1e-3)
    assert fold_channel_affines(branch) == (branch, ())


def test_lower_adaptive_pools(rng):
    graph = csnn_maxpool(rng)        # gap: 4x4 -> 3x3 stays adaptive
    assert lower_adaptive_pools(graph) is graph
    nodes = dict(graph.nodes)
    nodes["gap"] = AdaptiveAvgPool2d((2, 2), (8, 4, 4))
    nodes["flat"] = nodes["flat"].replace(input_shape=(8, 2, 2))
    nodes["fc"] = Affine(rng.normal(size=(10, 32)))
    graph = Graph(nodes, graph.edges, graph.dt)
    lowered = lower_adaptive_pools(graph)
    assert isinstance(lowered.nodes["gap"], AvgPool2d)
    x = torch.from_numpy(spikes(rng, 4, 2, (2, 16, 16)))
    torch.testing.assert_close(simulate(lowered, x, dtype=F64).outputs["out"],
                               simulate(graph, x, dtype=F64).outputs["out"], rtol=0, atol=0)


def test_synops_count_merged_and_pooled_spikes_as_events(rng):
    """A dense layer reading MaxPool(lif_a + lif_b): each input value v (0, 1 or 2) is v events
    over the column's non-zero synapses (the integer event rule), known structurally."""
    from sbc_deploy.report.synops_counter import SynOpsCounter, integer_values

    shape = (3, 8, 8)
    weight = rng.normal(0, 1.0, (5, 48))
    weight[:, ::3] = 0.0                        # pruned columns carry no SynOps
    nodes = {"in": Input((2, 8, 8)),
             "ca": Conv2d(rng.normal(0, 1.2, (3, 2, 3, 3)), (2, 8, 8), padding=1),
             "cb": Conv2d(rng.normal(0, 1.2, (3, 2, 3, 3)), (2, 8, 8), padding=1),
             "la": lif(shape), "lb": lif(shape), "sum": Identity(shape),
             "pool": MaxPool2d(2, shape), "flat": Reshape((3, 4, 4), (48,)),
             "fc": Affine(weight), "out": Output((5,))}
    edges = [("in", "ca"), ("in", "cb"), ("ca", "la"), ("cb", "lb"), ("la", "sum"),
             ("lb", "sum"), ("sum", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "out")]
    graph = Graph(nodes, edges, 1e-3)
    assert integer_values(graph)["flat"] == (True, True)
    x = torch.from_numpy(spikes(rng, 6, 4, (2, 8, 8)))
    counter = SynOpsCounter(graph, steps=6, batch=4)
    result = simulate(graph, x, on_synapse_input=counter, record=["flat"])
    values = result.recorded["flat"].numpy()                # [T, B, 48] in {0, 1, 2}
    assert set(np.unique(values)) == {0.0, 1.0, 2.0}
    fan_out = np.count_nonzero(weight, axis=0)
    expected = (values.sum(axis=1) * fan_out).sum(axis=1)   # per step, over the batch
    np.testing.assert_array_equal(counter.report().layer("fc").synops, expected)
    assert not counter.report().layer("fc").graded
