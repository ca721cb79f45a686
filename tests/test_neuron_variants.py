"""The spike variants of the IR's spiking neurons (``sbc_deploy.ir.nodes``, "Spike variants"):
validation at construction, hand-computed sequences, an independent plain-Python reference of
the documented equations, the simulator's sequence path against its step path, and the
recurrent-bias-at-step-0 regression. The frameworks themselves are run against these rules in
``tests/test_neuron_frameworks.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sbc_deploy.errors import IRError, ShapeError
from sbc_deploy.ir import IF, LIF, Affine, CubaLIF, Graph, Input, Output
from sbc_deploy.sim import simulate
from sbc_deploy.sim.float_sim import (
    neuron_initial_state,
    neuron_parameters,
    neuron_sequence,
    neuron_step,
)

F64 = torch.float64


def run(node, x, dtype=F64):
    """Input -> node -> Output: (spikes, membrane after each step)."""
    graph = Graph.chain([("in", Input(node.input_shape)), ("n", node),
                         ("out", Output(node.output_shape))], dt=1e-3)
    result = simulate(graph, torch.as_tensor(x), record=["n:v"], dtype=dtype)
    return result.outputs["out"].numpy(), result.recorded["n:v"].numpy()


def col(*values):
    """A [T, 1, 1] input from a list of per-step values."""
    return np.asarray(values, dtype=np.float64).reshape(-1, 1, 1)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(max_spikes=0), IRError, "max_spikes must be an integer >= 1"),
    (dict(max_spikes=2.5), IRError, "max_spikes must be an integer >= 1"),
    (dict(max_spikes=True), IRError, "max_spikes must be an integer >= 1"),
    (dict(fires_at_equal="yes"), IRError, "fires_at_equal must be True or False"),
    (dict(reset_timing="later"), IRError, "reset_timing must be one of"),
    (dict(reset_timing="same_step_raised"), IRError, "'same_step_raised' is snntorch"),
    (dict(reset_timing="same_step_raised", reset="subtract", max_spikes=3), IRError,
     "'same_step_raised'"),
    (dict(max_spikes=None, v_threshold=[1.0, -1.0]), IRError, "needs v_threshold > 0"),
    (dict(v_min=[0.0, 1.0, 2.0]), ShapeError, "v_min has shape (3,)"),
    (dict(v_min=[-np.inf, 0.0]), IRError, "v_min holds NaN or infinite"),
])
def test_variant_fields_are_validated(kwargs, error, text):
    base = dict(beta=[0.5, 0.5], v_threshold=[1.0, 1.0])
    with pytest.raises(error, match=None) as caught:
        LIF(**{**base, **kwargs})
    assert text in str(caught.value)


def test_defaults_are_the_plain_rule_and_variants_are_listed():
    plain = IF(v_threshold=[1.0])
    assert plain.spike_variant() == {} and not plain.multi_spike
    node = CubaLIF(alpha=[0.5], beta=[0.5], v_threshold=[1.0], max_spikes=np.int64(31),
                   fires_at_equal=np.bool_(True), reset_timing="next_step", v_min=-2.0)
    assert node.max_spikes == 31 and type(node.max_spikes) is int
    assert node.fires_at_equal is True and node.multi_spike
    variant = node.spike_variant()
    assert set(variant) == {"max_spikes", "fires_at_equal", "reset_timing", "v_min"}
    np.testing.assert_array_equal(variant["v_min"], [-2.0])
    assert not node.v_min.flags.writeable  # frozen like every IR array


# --------------------------------------------------------------------------- hand-computed


def test_fires_at_equal():
    # IF, threshold 1, input 1 per step: v = 1 equals the threshold
    x = col(1, 1, 1, 1)
    out, v = run(IF(v_threshold=[1.0], reset="subtract"), x)
    assert out.ravel().tolist() == [0, 1, 1, 1]        # v = 1 (no spike), 2 -> 1, 2 -> 1, ...
    assert v.ravel().tolist() == [1, 1, 1, 1]
    out, v = run(IF(v_threshold=[1.0], reset="subtract", fires_at_equal=True), x)
    assert out.ravel().tolist() == [1, 1, 1, 1]        # v = 1 fires, leaves 0
    assert v.ravel().tolist() == [0, 0, 0, 0]


def test_multi_spike_subtract_counts_and_cap():
    x = col(2.5, 0.0, 0.7, 3.0)
    # unbounded, v >= thr (sinabs MultiSpike / rockpool): floor(v / thr)
    out, v = run(IF(v_threshold=[1.0], reset="subtract", max_spikes=None, fires_at_equal=True), x)
    assert out.ravel().tolist() == [2, 0, 1, 3]        # 2.5 -> 2; 0.5; 1.2 -> 1; 3.2 -> 3
    np.testing.assert_allclose(v.ravel(), [0.5, 0.5, 0.2, 0.2], atol=1e-12)
    # cap 2: at most two thresholds removed per step
    out, v = run(IF(v_threshold=[1.0], reset="subtract", max_spikes=2, fires_at_equal=True), x)
    assert out.ravel().tolist() == [2, 0, 1, 2]        # 3.2 -> 2 spikes, 1.2 left
    np.testing.assert_allclose(v.ravel(), [0.5, 0.5, 0.2, 1.2], atol=1e-12)
    # v > thr: whole thresholds strictly below v, ceil(v / thr) - 1
    out, v = run(IF(v_threshold=[1.0], reset="subtract", max_spikes=None), col(2.0, 1.0, 0.5))
    assert out.ravel().tolist() == [1, 1, 1]           # 2 -> 1 (1 left); 2 -> 1; 1.5 -> 1
    np.testing.assert_allclose(v.ravel(), [1.0, 1.0, 0.5], atol=1e-12)


def test_multi_spike_zero_reset_sends_every_spike_then_resets():
    out, v = run(IF(v_threshold=[1.0], max_spikes=None, fires_at_equal=True, v_reset=[0.25]),
                 col(3.5, 0.5, 0.1))
    assert out.ravel().tolist() == [3, 0, 0]
    np.testing.assert_allclose(v.ravel(), [0.25, 0.75, 0.85], atol=1e-12)


def test_next_step_subtract_removes_the_undecayed_threshold():
    # beta 0.5, threshold 1, x = 1.5, 0, 0 (snntorch Leaky's default, spyx)
    node = LIF(beta=[0.5], v_threshold=[1.0], reset="subtract", reset_timing="next_step")
    out, v = run(node, col(1.5, 0, 0, 0))
    assert out.ravel().tolist() == [1, 0, 0, 0]
    # t0: 1.5 (kept); t1: 0.75 - 1 = -0.25; t2: -0.125; t3: -0.0625
    np.testing.assert_allclose(v.ravel(), [1.5, -0.25, -0.125, -0.0625], atol=1e-12)
    same = LIF(beta=[0.5], v_threshold=[1.0], reset="subtract")
    np.testing.assert_allclose(run(same, col(1.5, 0, 0, 0))[1].ravel(),
                               [0.5, 0.25, 0.125, 0.0625], atol=1e-12)


def test_next_step_zero_is_the_refractory_reset():
    # snntorch Synaptic/RLeaky zero: the step after a spike is zeroed, its input lost
    node = LIF(beta=[0.5], v_threshold=[1.0], reset_timing="next_step")
    out, v = run(node, col(1.5, 0.9, 0.9, 0.9))
    # t0 fires (v kept 1.5); t1 0.75 + 0.9 -> 0; t2 0.9; t3 0.45 + 0.9 = 1.35 fires
    assert out.ravel().tolist() == [1, 0, 0, 1]
    np.testing.assert_allclose(v.ravel(), [1.5, 0.0, 0.9, 1.35], atol=1e-12)
    # the plain zero reset keeps step 1's input: 0 + 0.9, then 1.35 fires at t2
    out_same, _ = run(LIF(beta=[0.5], v_threshold=[1.0]), col(1.5, 0.9, 0.9, 0.9))
    assert out_same.ravel().tolist() == [1, 0, 1, 0]


def test_same_step_raised_is_snntorchs_no_delay_subtract():
    node = LIF(beta=[0.5], v_threshold=[1.0], reset="subtract", reset_timing="same_step_raised")
    out, v = run(node, col(5, 0, 0, 0))
    # t0: u 5 fires, v 4; t1: u 2, v[t-1] = 4 > 1 raises the test to u - 1 = 1 > 1: no spike;
    # t2: u 1, r = [2 > 1], 0 > 1 no; t3: u 0.5
    assert out.ravel().tolist() == [1, 0, 0, 0]
    np.testing.assert_allclose(v.ravel(), [4, 2, 1, 0.5], atol=1e-12)
    plain = LIF(beta=[0.5], v_threshold=[1.0], reset="subtract")
    out_plain, _ = run(plain, col(5, 0, 0, 0))
    assert out_plain.ravel().tolist() == [1, 1, 0, 0]   # u = 2 > 1 fires in the plain rule


def test_v_min_clamps_after_the_reset():
    node = IF(v_threshold=[1.0], reset="subtract", v_min=[-1.0])
    out, v = run(node, col(-3, 0.5, 0.6, 1.3))
    # -3 -> -1; -0.5; 0.1; 1.4 fires -> 0.4
    assert out.ravel().tolist() == [0, 0, 0, 1]
    np.testing.assert_allclose(v.ravel(), [-1, -0.5, 0.1, 0.4], atol=1e-12)


# --------------------------------------------------------------------------- independent reference


def reference(x, *, beta, thr, reset, v_reset=0.0, fires_at_equal=False, max_spikes=1,
              reset_timing="same_step", v_min=None, bias=0.0):
    """The documented rule, one element at a time, in plain Python floats."""
    steps, batch, n = x.shape
    out, vs = np.zeros_like(x), np.zeros_like(x)
    for b in range(batch):
        for k in range(n):
            v, pending = 0.0, 0.0
            for t in range(steps):
                v_prev = v
                u = beta * v + x[t, b, k] + bias
                if reset_timing == "next_step" and pending:
                    u = u - pending * thr if reset == "subtract" else v_reset
                test = u
                if reset_timing == "same_step_raised" and v_prev > thr:
                    test = u - thr
                if max_spikes == 1:
                    c = float(test >= thr if fires_at_equal else test > thr)
                else:
                    q = test / thr
                    c = math.floor(q) if fires_at_equal else math.ceil(q) - 1
                    c = float(min(max(c, 0), math.inf if max_spikes is None else max_spikes))
                v = u
                if reset_timing != "next_step" and c:
                    v = u - c * thr if reset == "subtract" else v_reset
                if v_min is not None:
                    v = max(v, v_min)
                pending = c
                out[t, b, k], vs[t, b, k] = c, v
    return out, vs


VARIANTS = {
    "multi-ge-subtract": dict(reset="subtract", fires_at_equal=True, max_spikes=None),
    "multi-gt-cap3-zero": dict(reset="zero", max_spikes=3, v_reset=0.1),
    "ge-single-zero": dict(reset="zero", fires_at_equal=True),
    "next-subtract": dict(reset="subtract", reset_timing="next_step"),
    "next-zero": dict(reset="zero", reset_timing="next_step"),
    "next-multi-subtract": dict(reset="subtract", reset_timing="next_step", max_spikes=5,
                                fires_at_equal=True),
    "raised": dict(reset="subtract", reset_timing="same_step_raised"),
    "clamp-multi": dict(reset="subtract", max_spikes=None, fires_at_equal=True, v_min=-0.8),
}


def variant_node(params, n, beta=0.8, thr=0.7, bias=0.05):
    fields = {k: v for k, v in params.items()}
    return LIF(beta=np.full(n, beta), v_threshold=np.full(n, thr), bias=np.full(n, bias),
               **{k: (np.full(n, v) if k in ("v_min", "v_reset") else v)
                  for k, v in fields.items()})


@pytest.mark.parametrize("case", list(VARIANTS))
def test_variant_matches_the_plain_python_reference(case, rng):
    params = VARIANTS[case]
    x = rng.normal(0.3, 0.9, size=(60, 3, 8))
    out, v = run(variant_node(params, 8), x)
    ref_out, ref_v = reference(x, beta=0.8, thr=0.7, bias=0.05, **params)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_allclose(v, ref_v, rtol=0, atol=1e-9)
    assert 0.05 < (out > 0).mean() < 0.9   # real activity: resets happen in most neurons
    if params.get("max_spikes", 1) != 1:
        assert out.max() >= 2              # several spikes in one step do occur


@pytest.mark.parametrize("case", list(VARIANTS))
@pytest.mark.parametrize("current", [False, True])
def test_variant_sequence_is_bit_identical_to_stepping(case, current, rng):
    params = VARIANTS[case]
    node = variant_node(params, 6)
    if current:
        node = CubaLIF(alpha=np.full(6, 0.6), gain_syn=np.full(6, 0.9),
                       **{k: getattr(node, k) for k in
                          ("beta", "v_threshold", "bias", "v_reset", "reset", "fires_at_equal",
                           "max_spikes", "reset_timing", "v_min")})
    p = neuron_parameters(node, torch.float32)
    x = torch.from_numpy(rng.normal(0.3, 0.9, size=(40, 5, 6)).astype(np.float32))
    out, final, traces = neuron_sequence(x, p, trace=("v",))
    state = neuron_initial_state(p, 5)
    for t in range(40):
        y, state = neuron_step(x[t], state, p)
        assert torch.equal(out[t], y), t
        assert torch.equal(traces["v"][t], state.v), t
    assert torch.equal(final.v, state.v)
    assert out.sum() > 0


def test_chunked_simulation_carries_the_pending_reset(rng):
    node = variant_node(VARIANTS["next-multi-subtract"], 8)
    graph = Graph.chain([("in", Input((8,))), ("n", node), ("out", Output((8,)))], dt=1e-3)
    x = torch.from_numpy(rng.normal(0.3, 0.9, size=(50, 4, 8)))
    whole = simulate(graph, x, dtype=F64).outputs["out"]
    chunked = simulate(graph, x, dtype=F64, time_chunk=7, batch_chunk=3).outputs["out"]
    assert torch.equal(whole, chunked)


# --------------------------------------------------------------------------- recurrent bias


def test_recurrent_affine_bias_acts_from_the_first_step():
    # snntorch RLeaky(beta=0.9, all_to_all) with recurrent weight 0 and bias 0.5, no input:
    # mem = 0.5, 0.95, 1.355 (its recurrent layer adds the bias at step 0 already). Before the
    # fix the recurrent edge carried 0 at step 0 and the membrane read 0, 0.5, 0.95.
    nodes = {"input": Input((1,)), "lif": LIF(beta=[0.9], v_threshold=[10.0]),
             "w_rec": Affine(np.zeros((1, 1)), bias=[0.5]), "output": Output((1,))}
    graph = Graph(nodes, (("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                          ("lif", "output")), dt=1e-3)
    assert graph.recurrent_edges == {("w_rec", "lif")}
    v = simulate(graph, torch.zeros(3, 1, 1), record=["lif:v"], dtype=F64).recorded["lif:v"]
    np.testing.assert_allclose(v.ravel().numpy(), [0.5, 0.95, 1.355], rtol=0, atol=1e-12)
    # chunked in time, the carry after step 0 replaces the value at rest
    v2 = simulate(graph, torch.zeros(3, 1, 1), record=["lif:v"], dtype=F64,
                  time_chunk=1).recorded["lif:v"]
    assert torch.equal(v, v2)


# --------------------------------------------------------------------------- ONNX


@pytest.mark.parametrize("case", list(VARIANTS))
def test_onnx_runs_every_variant_as_the_simulator(case, rng, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from sbc_deploy.exporters.to_onnx import to_onnx

    graph = Graph.chain([("in", Input((6,))), ("fc", Affine(rng.normal(0, 0.8, (8, 6)))),
                         ("n", variant_node(VARIANTS[case], 8)), ("out", Output((8,)))],
                        dt=1e-3)
    x = rng.normal(0.4, 1.0, size=(40, 3, 6)).astype(np.float32)
    path = to_onnx(graph, tmp_path / "m.onnx", steps=40)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"in": x})[0]
    want = simulate(graph, torch.from_numpy(x)).outputs["out"].numpy()
    np.testing.assert_array_equal(got, want)
    assert want.sum() > 50


def test_onnx_recurrent_bias_acts_from_the_first_step(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from sbc_deploy.exporters.to_onnx import to_onnx

    nodes = {"input": Input((2,)), "lif": LIF(beta=[0.9, 0.8], v_threshold=[1.0, 1.0]),
             "w_rec": Affine(np.array([[0.2, -0.1], [0.3, 0.1]]), bias=[0.5, 0.25]),
             "output": Output((2,))}
    graph = Graph(nodes, (("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                          ("lif", "output")), dt=1e-3)
    x = np.zeros((12, 2, 2), np.float32)
    x[:, 1] = 0.3
    path = to_onnx(graph, tmp_path / "r.onnx")
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]
    want = simulate(graph, torch.from_numpy(x)).outputs["output"].numpy()
    np.testing.assert_array_equal(got, want)
    assert want[:3, 0, 0].tolist() == [0, 0, 1]   # 0.5, 0.95, 1.355 > 1 from the bias alone


# --------------------------------------------------------------------------- refused up front


@pytest.mark.parametrize("case", list(VARIANTS))
def test_lava_integer_core_and_netx_refuse_variants_naming_the_node(case, tmp_path):
    from sbc_deploy.errors import ConfigError, ExportError
    from sbc_deploy.exporters.to_netx import to_netx
    from sbc_deploy.ir import WeightEncoding
    from sbc_deploy.sim.int_core import to_fixed_point

    params = dict(VARIANTS[case], reset="zero", v_reset=0.0)
    if params.get("reset_timing") == "same_step_raised":
        params["reset_timing"] = "next_step"
    mantissa = np.arange(16).reshape(4, 4) - 8
    encoding = WeightEncoding(mantissa=mantissa, scale=1 / 64, bits=8, grid="int_exp",
                              exponent=0, unit=1 / 64)
    fc = Affine(mantissa / 64, encoding=encoding)
    node = LIF(beta=np.full(4, 0.5), v_threshold=np.full(4, 1.0),
               **{k: v for k, v in params.items() if k != "v_reset"})
    graph = Graph.chain([("in", Input((4,))), ("fc", fc), ("lif", node), ("out", Output((4,)))],
                        dt=1e-3)
    with pytest.raises(ConfigError) as caught:
        to_fixed_point(graph)
    assert "node 'lif'" in str(caught.value) and "Lava" in str(caught.value)
    with pytest.raises(ExportError) as caught:
        to_netx(graph, tmp_path / "m.net")
    assert "node 'lif'" in str(caught.value) and "netx has no field" in str(caught.value)
