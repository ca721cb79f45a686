"""The float simulator against independent references: hand-written numpy loops of the IR's
equations, explicit convolution / pooling loops, and the NIR paper's LIF traces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbc_deploy.errors import ConfigError, DataError
from sbc_deploy.ir import (
    IF,
    LI,
    LIF,
    Affine,
    AvgPool2d,
    Conv1d,
    Conv2d,
    CubaLI,
    CubaLIF,
    Delay,
    Flatten,
    Graph,
    Input,
    Integrator,
    Output,
    Scale,
    SumPool2d,
    Threshold,
)
from sbc_deploy.sim import simulate

F64 = torch.float64


def run_single(node, x: np.ndarray, record=()):
    """Input -> node -> Output, in float64."""
    graph = Graph.chain([("in", Input(node.input_shape)), ("n", node),
                         ("out", Output(node.output_shape))], dt=1e-3)
    result = simulate(graph, torch.from_numpy(x), record=record, dtype=F64)
    return result.outputs["out"].numpy(), {k: v.numpy() for k, v in result.recorded.items()}


# --------------------------------------------------------------------------- neurons, closed form


def reference_neuron(x, *, alpha=None, gain_syn=1.0, beta=1.0, gain=1.0, v_leak=0.0, bias=0.0,
                     v_threshold=None, v_reset=0.0, reset="zero"):
    """The IR's equations (ir/nodes.py docstring), one element at a time, in plain Python."""
    steps, batch, n = x.shape
    out, vs, cs = (np.zeros_like(x) for _ in range(3))
    p = {k: np.broadcast_to(np.asarray(v, dtype=float), (n,)) for k, v in dict(
        gain_syn=gain_syn, beta=beta, gain=gain, v_leak=v_leak, bias=bias, v_reset=v_reset,
        alpha=0.0 if alpha is None else alpha,
        v_threshold=np.inf if v_threshold is None else v_threshold).items()}
    for b in range(batch):
        for k in range(n):
            i = v = 0.0
            for t in range(steps):
                drive = x[t, b, k]
                if alpha is not None:
                    i = p["alpha"][k] * i + p["gain_syn"][k] * x[t, b, k]
                    drive = i
                v = (p["beta"][k] * v + (1 - p["beta"][k]) * p["v_leak"][k]
                     + p["gain"][k] * drive + p["bias"][k])
                if v_threshold is None:
                    out[t, b, k] = v
                else:
                    spike = v > p["v_threshold"][k]
                    out[t, b, k] = float(spike)
                    if spike:
                        v = v - p["v_threshold"][k] if reset == "subtract" else p["v_reset"][k]
                vs[t, b, k], cs[t, b, k] = v, i
    return out, vs, cs


N = 4
BETA = np.array([0.9, 0.8, 0.95, 0.5])
ALPHA = np.array([0.7, 0.3, 0.9, 0.0])
THR = np.array([1.0, 0.5, 1.5, 0.8])
GAIN = np.array([1.0, 0.5, 2.0, 1.2])
V_LEAK = np.array([0.0, 0.3, -0.2, 0.6])
V_RESET = np.array([0.0, -0.1, 0.2, 0.05])
BIAS = np.array([0.0, 0.05, -0.02, 0.1])

NEURON_CASES = {
    "LIF-zero": (LIF(beta=BETA, v_threshold=THR, gain=GAIN, v_leak=V_LEAK, v_reset=V_RESET,
                     bias=BIAS, reset="zero"),
                 dict(beta=BETA, v_threshold=THR, gain=GAIN, v_leak=V_LEAK, v_reset=V_RESET,
                      bias=BIAS, reset="zero")),
    "LIF-subtract": (LIF(beta=BETA, v_threshold=THR, gain=GAIN, v_leak=V_LEAK, bias=BIAS,
                         v_reset=V_RESET, reset="subtract"),
                     dict(beta=BETA, v_threshold=THR, gain=GAIN, v_leak=V_LEAK, bias=BIAS,
                          v_reset=V_RESET, reset="subtract")),
    "CubaLIF-zero": (CubaLIF(alpha=ALPHA, beta=BETA, v_threshold=THR, gain_syn=GAIN[::-1],
                             gain=GAIN, v_leak=V_LEAK, v_reset=V_RESET, bias=BIAS),
                     dict(alpha=ALPHA, beta=BETA, v_threshold=THR, gain_syn=GAIN[::-1],
                          gain=GAIN, v_leak=V_LEAK, v_reset=V_RESET, bias=BIAS)),
    "CubaLIF-subtract": (CubaLIF(alpha=ALPHA, beta=BETA, v_threshold=THR, gain_syn=GAIN,
                                 v_leak=V_LEAK, bias=BIAS, reset="subtract"),
                         dict(alpha=ALPHA, beta=BETA, v_threshold=THR, gain_syn=GAIN,
                              v_leak=V_LEAK, bias=BIAS, reset="subtract")),
    "IF-zero": (IF(v_threshold=THR, gain=GAIN, v_reset=V_RESET, bias=BIAS),
                dict(v_threshold=THR, gain=GAIN, v_reset=V_RESET, bias=BIAS)),
    "IF-subtract": (IF(v_threshold=THR, gain=GAIN, bias=BIAS, reset="subtract"),
                    dict(v_threshold=THR, gain=GAIN, bias=BIAS, reset="subtract")),
    "LI": (LI(beta=BETA, gain=GAIN, v_leak=V_LEAK, bias=BIAS),
           dict(beta=BETA, gain=GAIN, v_leak=V_LEAK, bias=BIAS)),
    "CubaLI": (CubaLI(alpha=ALPHA, beta=BETA, gain_syn=GAIN, gain=GAIN[::-1], v_leak=V_LEAK,
                      bias=BIAS),
               dict(alpha=ALPHA, beta=BETA, gain_syn=GAIN, gain=GAIN[::-1], v_leak=V_LEAK,
                    bias=BIAS)),
    "Integrator": (Integrator(gain=GAIN, bias=BIAS), dict(gain=GAIN, bias=BIAS)),
}


@pytest.mark.parametrize("case", list(NEURON_CASES))
def test_neuron_matches_closed_form(case, rng):
    node, params = NEURON_CASES[case]
    x = rng.uniform(-0.2, 0.9, size=(40, 3, N))
    record = ["n:v"] + (["n:i"] if node.current_based else [])
    out, recorded = run_single(node, x, record)
    ref_out, ref_v, ref_i = reference_neuron(x, **params)
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=1e-12)
    np.testing.assert_allclose(recorded["n:v"], ref_v, rtol=0, atol=1e-12)
    if node.current_based:
        np.testing.assert_allclose(recorded["n:i"], ref_i, rtol=0, atol=1e-12)
    if node.spiking:
        assert 0 < out.sum() < out.size  # the case exercises spikes and resets


def test_lif_hand_computed_sequence():
    # v[t] = 0.9 v[t-1] + 0.3; spike when v > 1, then v <- 0:
    # 0.3, 0.57, 0.813, 1.0317 (spike) -> 0, 0.3, 0.57, ...
    node = LIF(beta=[0.9], v_threshold=[1.0])
    x = np.full((6, 1, 1), 0.3)
    out, recorded = run_single(node, x, ["n:v"])
    np.testing.assert_allclose(recorded["n:v"][:, 0, 0], [0.3, 0.57, 0.813, 0.0, 0.3, 0.57])
    np.testing.assert_array_equal(out[:, 0, 0], [0, 0, 0, 1, 0, 0])


def test_subtract_reset_keeps_the_excess():
    # IF, threshold 1, input 0.7 per step: 0.7, 1.4 -> 0.4, 1.1 -> 0.1, 0.8, 1.5 -> 0.5
    node = IF(v_threshold=[1.0], reset="subtract")
    out, recorded = run_single(node, np.full((5, 1, 1), 0.7), ["n:v"])
    np.testing.assert_allclose(recorded["n:v"][:, 0, 0], [0.7, 0.4, 0.1, 0.8, 0.5], atol=1e-12)
    np.testing.assert_array_equal(out[:, 0, 0], [0, 1, 1, 0, 1])


def test_threshold_is_strict_and_v_equal_threshold_does_not_spike():
    node = Threshold(threshold=[0.5, 0.5, 0.5])
    x = np.array([0.5, 0.50001, -1.0]).reshape(1, 1, 3)
    out, _ = run_single(node, x)
    np.testing.assert_array_equal(out[0, 0], [0.0, 1.0, 0.0])


def test_leak_relaxes_toward_v_leak_without_input():
    # no input: v[t] = beta v[t-1] + (1 - beta) v_leak  =>  v[t] = v_leak (1 - beta^(t+1))
    node = LI(beta=[0.8], v_leak=[1.2])
    _, recorded = run_single(node, np.zeros((30, 1, 1)), ["n:v"])
    t = np.arange(30)
    np.testing.assert_allclose(recorded["n:v"][:, 0, 0], 1.2 * (1 - 0.8 ** (t + 1)), atol=1e-12)


# --------------------------------------------------------------------------- stateless nodes


def test_delay_shifts_each_element_by_whole_steps(rng):
    delays = np.array([0, 1, 3, 7])
    x = rng.normal(size=(10, 2, 4))
    out, _ = run_single(Delay(delay=delays), x)
    for k, d in enumerate(delays):
        expected = np.concatenate([np.zeros((d, 2)), x[:10 - d, :, k]])
        np.testing.assert_array_equal(out[:, :, k], expected)


def correlate2d_reference(x, w, b, stride, padding, dilation, groups):
    """Explicit loops: out[n, o, i, j] = b[o] + sum_{c,u,v} w[o,c,u,v] x[n, g*cin + c, ...]."""
    n, c_in, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    xp = np.zeros((n, c_in, h + 2 * padding[0], wd + 2 * padding[1]))
    xp[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + wd] = x
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, c_out, oh, ow))
    per_group = c_out // groups
    for o in range(c_out):
        g = o // per_group
        for i in range(oh):
            for j in range(ow):
                acc = b[o]
                for c in range(cg):
                    for u in range(kh):
                        for v in range(kw):
                            acc += w[o, c, u, v] * xp[:, g * cg + c, i * stride[0] + u * dilation[0],
                                                      j * stride[1] + v * dilation[1]]
                out[:, o, i, j] = acc
    return out


@pytest.mark.parametrize("stride,padding,dilation,groups", [
    ((1, 1), (0, 0), (1, 1), 1), ((2, 1), (1, 2), (1, 1), 1), ((1, 2), (2, 1), (2, 1), 2)])
def test_conv2d_equals_explicit_correlation(rng, stride, padding, dilation, groups):
    w = rng.normal(size=(4, 4 // groups, 3, 2))
    b = rng.normal(size=4)
    node = Conv2d(weight=w, bias=b, input_shape=(4, 7, 6), stride=stride, padding=padding,
                  dilation=dilation, groups=groups)
    x = rng.normal(size=(3, 2, 4, 7, 6))
    out, _ = run_single(node, x)
    ref = correlate2d_reference(x.reshape(6, 4, 7, 6), w, b, stride, padding, dilation, groups)
    np.testing.assert_allclose(out, ref.reshape(3, 2, *ref.shape[1:]), atol=1e-12)


def test_conv2d_valid_equals_sliding_window_correlation(rng):
    # a second, loop-free reference: numpy's sliding windows contracted with the kernel
    w = rng.normal(size=(3, 2, 3, 3))
    x = rng.normal(size=(1, 2, 2, 6, 5))
    out, _ = run_single(Conv2d(weight=w, input_shape=(2, 6, 5)), x)
    windows = np.lib.stride_tricks.sliding_window_view(x[0], (3, 3), axis=(2, 3))
    ref = np.einsum("bcijuv,ocuv->boij", windows, w)
    np.testing.assert_allclose(out[0], ref, atol=1e-12)


def test_conv1d_equals_explicit_correlation(rng):
    w = rng.normal(size=(3, 2, 3))
    b = rng.normal(size=3)
    node = Conv1d(weight=w, bias=b, input_shape=(2, 9), stride=2, padding=1, dilation=2)
    x = rng.normal(size=(2, 3, 2, 9))
    out, _ = run_single(node, x)
    # a 1-D correlation is a 2-D one over a height-1 image
    ref = correlate2d_reference(x.reshape(6, 2, 1, 9), w[:, :, None, :], b, (1, 2), (0, 1),
                                (1, 2), 1)
    np.testing.assert_allclose(out, ref.reshape(2, 3, 3, -1), atol=1e-12)


def pool_reference(x, k, s, p, mean):
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + 2 * p[0], w + 2 * p[1]))
    xp[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x
    oh, ow = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = xp[:, :, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]]
            out[:, :, i, j] = window.sum(axis=(2, 3)) / (k[0] * k[1] if mean else 1)
    return out


@pytest.mark.parametrize("kind", [SumPool2d, AvgPool2d])
@pytest.mark.parametrize("k,s,p", [((2, 2), (2, 2), (0, 0)), ((3, 2), (1, 2), (1, 1)),
                                   ((2, 2), (2, 2), (2, 2))])
def test_pools_equal_explicit_windows_with_zero_padding(rng, kind, k, s, p):
    x = rng.normal(size=(2, 3, 2, 5, 6))
    out, _ = run_single(kind(kernel_size=k, stride=s, padding=p, input_shape=(2, 5, 6)), x)
    ref = pool_reference(x.reshape(6, 2, 5, 6), k, s, p, mean=kind is AvgPool2d)
    np.testing.assert_allclose(out, ref.reshape(2, 3, *ref.shape[1:]), atol=1e-12)


def test_flatten_and_scale(rng):
    x = rng.normal(size=(2, 3, 2, 3, 4))
    out, _ = run_single(Flatten(input_shape=(2, 3, 4), start_dim=1), x)
    np.testing.assert_array_equal(out, x.reshape(2, 3, 2, 12))
    scale = rng.normal(size=(5,))
    y = rng.normal(size=(4, 2, 5))
    out, _ = run_single(Scale(scale=scale), y)
    np.testing.assert_allclose(out, y * scale, atol=0)


# --------------------------------------------------------------------------- graph semantics


def lif(n, beta=0.8, thr=1.0, **kw):
    return LIF(beta=np.full(n, beta), v_threshold=np.full(n, thr), **kw)


def lif_reference(currents, beta, thr):
    """Zero-reset LIF on a whole [T, B, n] current sequence."""
    v = np.zeros(currents.shape[1:])
    spikes = np.zeros_like(currents)
    for t in range(len(currents)):
        v = beta * v + currents[t]
        spikes[t] = v > thr
        v = np.where(spikes[t] > 0, 0.0, v)
    return spikes


def test_edges_into_one_node_add_up_and_branches_fan_out(rng):
    w1, w2 = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    nodes = {"in": Input((3,)), "a": Affine(w1), "b": Affine(w2), "lif": lif(5),
             "o1": Output((5,)), "o2": Output((5,))}
    edges = [("in", "a"), ("in", "b"), ("a", "lif"), ("b", "lif"), ("lif", "o1"), ("a", "o2")]
    graph = Graph(nodes, edges, dt=1e-3)
    x = (rng.random((12, 4, 3)) < 0.5).astype(float)
    result = simulate(graph, torch.from_numpy(x), dtype=F64)
    np.testing.assert_array_equal(result.outputs["o1"].numpy(),
                                  lif_reference(x @ w1.T + x @ w2.T, 0.8, 1.0))
    np.testing.assert_allclose(result.outputs["o2"].numpy(), x @ w1.T, atol=1e-12)


def recurrent_graph(w_in, w_rec, delay=None):
    nodes = {"in": Input((w_in.shape[1],)), "fc": Affine(w_in), "lif": lif(len(w_in), 0.9),
             "rec": Affine(w_rec), "out": Output((len(w_in),))}
    edges = [("in", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "out")]
    if delay is not None:
        nodes["d"] = Delay(delay=delay)
        edges[2:4] = [("lif", "d"), ("d", "rec"), ("rec", "lif")]
    return Graph(nodes, edges, dt=1e-3)


def recurrent_reference(x, w_in, w_rec, delay=0):
    """Step by step: the recurrent synapse sees the spikes of ``1 + delay`` steps ago."""
    steps = len(x)
    v = np.zeros((x.shape[1], len(w_in)))
    s = np.zeros((steps, *v.shape))
    for t in range(steps):
        back = s[t - 1 - delay] if t - 1 - delay >= 0 else np.zeros_like(v)
        v = 0.9 * v + x[t] @ w_in.T + back @ w_rec.T
        s[t] = v > 1.0
        v = np.where(s[t] > 0, 0.0, v)
    return s


@pytest.mark.parametrize("delay", [None, 2])
def test_recurrent_edge_carries_the_previous_step(rng, delay):
    w_in, w_rec = rng.normal(0.5, 0.5, size=(6, 4)), rng.normal(0, 0.8, size=(6, 6))
    graph = recurrent_graph(w_in, w_rec, None if delay is None else np.full(6, delay))
    assert graph.recurrent_edges
    x = (rng.random((30, 3, 4)) < 0.4).astype(float)
    out = simulate(graph, torch.from_numpy(x), dtype=F64).outputs["out"].numpy()
    np.testing.assert_array_equal(out, recurrent_reference(x, w_in, w_rec, delay or 0))
    zeroed = simulate(recurrent_graph(w_in, 0 * w_rec), torch.from_numpy(x), dtype=F64)
    assert not np.array_equal(out, zeroed.outputs["out"].numpy())  # the feedback is live


def test_stepped_cycle_equals_whole_sequence_path_when_feedback_is_zero(rng):
    # the same network, once scheduled node by node and once stepped through time
    w_in = rng.normal(0.5, 0.5, size=(6, 4))
    x = torch.from_numpy((rng.random((25, 5, 4)) < 0.4).astype(float))
    stepped = simulate(recurrent_graph(w_in, np.zeros((6, 6))), x, dtype=F64)
    plain = Graph.chain([("in", Input((4,))), ("fc", Affine(w_in)), ("lif", lif(6, 0.9)),
                         ("out", Output((6,)))], dt=1e-3)
    np.testing.assert_array_equal(stepped.outputs["out"].numpy(),
                                  simulate(plain, x, dtype=F64).outputs["out"].numpy())


def test_on_synapse_input_sees_exactly_what_each_synapse_consumed(rng):
    w1, w2, w3 = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), rng.normal(size=(2, 5))
    nodes = {"in": Input((3,)), "a": Affine(w1), "lif_a": lif(5), "b": Affine(w2),
             "lif_b": lif(5), "c": Affine(w3), "out": Output((2,))}
    edges = [("in", "a"), ("a", "lif_a"), ("in", "b"), ("b", "lif_b"), ("lif_a", "c"),
             ("lif_b", "c"), ("c", "out")]
    graph = Graph(nodes, edges, dt=1e-3)
    seen: dict[str, list[torch.Tensor]] = {}
    x = torch.from_numpy((rng.random((10, 4, 3)) < 0.6).astype(float))
    result = simulate(graph, x, dtype=F64, record=["in", "lif_a", "lif_b"],
                      on_synapse_input=lambda name, t: seen.setdefault(name, []).append(t))
    assert {k: len(v) for k, v in seen.items()} == {"a": 1, "b": 1, "c": 1}
    rec = result.recorded
    torch.testing.assert_close(seen["a"][0], rec["in"], rtol=0, atol=0)
    torch.testing.assert_close(seen["b"][0], rec["in"], rtol=0, atol=0)
    torch.testing.assert_close(seen["c"][0], rec["lif_a"] + rec["lif_b"], rtol=0, atol=0)
    assert rec["lif_a"].sum() > 0 and rec["lif_b"].sum() > 0


def test_on_synapse_input_of_a_recurrent_synapse_is_the_fed_sequence(rng):
    w_in, w_rec = rng.normal(0.5, 0.5, size=(6, 4)), rng.normal(0, 0.8, size=(6, 6))
    graph = recurrent_graph(w_in, w_rec)
    seen: dict[str, list[torch.Tensor]] = {}
    x = torch.from_numpy((rng.random((20, 3, 4)) < 0.4).astype(float))
    result = simulate(graph, x, dtype=F64, record=["lif"],
                      on_synapse_input=lambda name, t: seen.setdefault(name, []).append(t))
    assert sorted(seen) == ["fc", "rec"] and all(len(v) == 1 for v in seen.values())
    # 'rec' is the recurrent edge's destination: it consumes lif's spikes of the same step
    # (lif -> rec is the forward edge; rec -> lif carries the previous step)
    assert ("rec", "lif") in graph.recurrent_edges
    torch.testing.assert_close(seen["rec"][0], result.recorded["lif"], rtol=0, atol=0)
    torch.testing.assert_close(seen["fc"][0], x, rtol=0, atol=0)


def test_wrong_input_shape_raises_data_error_naming_input_and_shapes():
    graph = Graph.chain([("pixels", Input((3,))), ("o", Output((3,)))], dt=1e-3)
    with pytest.raises(DataError) as err:
        simulate(graph, torch.zeros(5, 2, 4))
    assert "pixels" in str(err.value) and "(5, 2, 4)" in str(err.value) and "(3,)" in str(err.value)
    with pytest.raises(DataError, match="missing"):
        simulate(graph, {"other": torch.zeros(5, 2, 3)})
    with pytest.raises(ConfigError, match="nope"):
        simulate(graph, torch.zeros(5, 2, 3), record=["nope"])


def test_several_inputs_by_name(rng):
    w = rng.normal(size=(2, 3))
    nodes = {"a": Input((3,)), "b": Input((2,)), "fc": Affine(w), "o": Output((2,))}
    graph = Graph(nodes, [("a", "fc"), ("fc", "o"), ("b", "o")], dt=1e-3)
    xa, xb = rng.normal(size=(4, 2, 3)), rng.normal(size=(4, 2, 2))
    out = simulate(graph, {"a": torch.from_numpy(xa), "b": torch.from_numpy(xb)}, dtype=F64)
    np.testing.assert_allclose(out.outputs["o"].numpy(), xa @ w.T + xb, atol=1e-12)
    with pytest.raises(DataError, match="another Input"):
        simulate(graph, {"a": torch.zeros(4, 2, 3), "b": torch.zeros(5, 2, 2)})


def test_threads_are_restored_and_float32_agrees_with_float64(rng):
    graph = recurrent_graph(rng.normal(0.5, 0.5, size=(6, 4)), rng.normal(0, 0.3, size=(6, 6)))
    x = torch.from_numpy((rng.random((15, 3, 4)) < 0.4).astype(float))
    before = torch.get_num_threads()
    r32 = simulate(graph, x, threads=1, record=["lif:v"])
    assert torch.get_num_threads() == before
    r64 = simulate(graph, x, dtype=F64, record=["lif:v"])
    assert r32.outputs["out"].dtype == torch.float32
    torch.testing.assert_close(r32.recorded["lif:v"].double(), r64.recorded["lif:v"],
                               rtol=0, atol=1e-5)
