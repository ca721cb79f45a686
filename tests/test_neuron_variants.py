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
    from sbc_deploy.sim.fixed_point import to_fixed_point

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


# --------------------------------------------------------------------------- SMP kernels


KINDS = {
    "LIF": lambda n, **kw: LIF(beta=np.full(n, 0.85), v_threshold=np.full(n, 1.0),
                               gain=np.full(n, 0.7), **kw),
    "CubaLIF": lambda n, **kw: CubaLIF(alpha=np.full(n, 0.6), beta=np.full(n, 0.85),
                                       v_threshold=np.full(n, 1.0), gain_syn=np.full(n, 0.9),
                                       gain=np.full(n, 0.7), **kw),
    "IF": lambda n, **kw: IF(v_threshold=np.full(n, 1.0), gain=np.full(n, 0.7), **kw),
}
KERNEL_VARIANTS = {
    "plain": {},
    "fires_at_equal": dict(fires_at_equal=True),
    "multi": dict(max_spikes=None, fires_at_equal=True, reset="subtract"),
    "next_step-zero": dict(reset_timing="next_step"),
    "next_step-subtract": dict(reset_timing="next_step", reset="subtract"),
    "raised": dict(reset_timing="same_step_raised", reset="subtract"),
    "v_min": dict(v_min=-50.0),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("variant", list(KERNEL_VARIANTS))
def test_smp_kernel_of_each_variant_is_the_subthreshold_membrane(kind, variant, rng):
    from sbc_deploy.compress.hessian import kernel_for_neuron

    n, steps = 5, 30
    node = KINDS[kind](n, **KERNEL_VARIANTS[variant])
    kernels, groups = kernel_for_neuron(node, n)
    plain_kernels, plain_groups = kernel_for_neuron(KINDS[kind](n), n)
    assert kernels == plain_kernels and np.array_equal(groups, plain_groups)
    # independent computation: the variant neuron simulated with a threshold it never reaches
    # (and above v_min) has the membrane gain * (K @ current), K the closed-form matrix
    silent = node.replace(v_threshold=np.full(n, 1e9))
    current = rng.normal(0.0, 1.0, size=(steps, 2, n))
    spikes, v = run(silent, current)
    assert not spikes.any() and v.min() > -50.0
    K = kernels[0].matrix(steps).numpy()
    gain_syn = getattr(node, "gain_syn", np.ones(n))
    expected = 0.7 * np.einsum("ts,sbn->tbn", K, current * gain_syn)
    np.testing.assert_allclose(v, expected, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- NIR round trip


def variant_graph(rng) -> Graph:
    """Every spiking kind with a different spike variant (and one plain LIF)."""
    n = 4
    nodes = [
        ("in", Input((3,))), ("fc1", Affine(rng.normal(0, 1, (n, 3)))),
        ("if1", IF(v_threshold=np.full(n, 1.0), reset="subtract", max_spikes=None,
                   fires_at_equal=True, v_min=np.full(n, -1.0))),
        ("fc2", Affine(rng.normal(0, 1, (n, n)))),
        ("lif2", LIF(beta=np.full(n, 0.8), v_threshold=np.full(n, 0.9), reset="subtract",
                     reset_timing="next_step", max_spikes=31, fires_at_equal=True)),
        ("fc3", Affine(rng.normal(0, 1, (n, n)))),
        ("cuba3", CubaLIF(alpha=np.full(n, 0.5), beta=np.full(n, 0.8),
                          v_threshold=np.full(n, 1.1), reset="subtract",
                          reset_timing="same_step_raised")),
        ("fc4", Affine(rng.normal(0, 1, (2, n)))),
        ("lif4", LIF(beta=np.full(2, 0.8), v_threshold=np.full(2, 1.0), reset="subtract")),
        ("out", Output((2,))),
    ]
    return Graph.chain(nodes, dt=1e-3, metadata={"reset": "subtract", "discretization": "exact"})


VARIANT_FIELDS = ("fires_at_equal", "max_spikes", "reset_timing", "v_min")


def test_nir_round_trip_keeps_every_spike_variant(rng, tmp_path):
    from sbc_deploy.exporters.to_nir import write_nir
    from sbc_deploy.frontends.from_nir import from_nir

    graph = variant_graph(rng)
    first = tmp_path / "first.nir"
    write_nir(graph, first)
    back = from_nir(first)
    for name, node in graph.nodes.items():
        if getattr(node, "spiking", False):
            for key in VARIANT_FIELDS:
                got, want = getattr(back.nodes[name], key), getattr(node, key)
                if isinstance(want, np.ndarray) or isinstance(got, np.ndarray):
                    np.testing.assert_array_equal(got, want, err_msg=f"{name}.{key}")
                else:
                    assert got == want, (name, key, got, want)
    x = torch.from_numpy(rng.normal(0.5, 1.0, size=(30, 3, 3)))
    before = simulate(graph, x, dtype=F64).outputs["out"]
    after = simulate(back, x, dtype=F64).outputs["out"]
    assert torch.equal(before, after) and before.sum() > 10
    # NIR -> sbc-deploy -> NIR is the identity on the variant metadata (and the plain neuron
    # gets none)
    second = tmp_path / "second.nir"
    write_nir(back, second)
    import nir

    a, b = nir.read(first), nir.read(second)
    for name in ("if1", "lif2", "cuba3", "lif4"):
        ma = {k: v for k, v in a.nodes[name].metadata.items() if k.startswith("sbc_")}
        mb = {k: v for k, v in b.nodes[name].metadata.items() if k.startswith("sbc_")}
        assert ma.keys() == mb.keys()
        for key in ma:
            np.testing.assert_array_equal(np.asarray(ma[key]), np.asarray(mb[key]))
    assert not any(k in a.nodes["lif4"].metadata for k in
                   ("sbc_fires_at_equal", "sbc_max_spikes", "sbc_reset_timing", "sbc_v_min"))
    assert int(a.nodes["if1"].metadata["sbc_max_spikes"]) == 0   # no cap


# --------------------------------------------------------------------------- integer core


def test_report_says_precisely_why_the_integer_core_cannot_run_xylo():
    # the integer core is Lava's CUBA LIF; Xylo's neurons reset by subtraction, decay by bit
    # shifts and send up to 31 spikes per step, so no xylo network (multi-spike or not) runs
    # on it: the pipeline's note says each difference, read from targets/xylo.toml
    from sbc_deploy.data import Dataset
    from sbc_deploy.pipeline import DeployRequest, _integer_accuracy
    from sbc_deploy.targets import load_target

    graph = Graph.chain([("in", Input((3,))), ("fc", Affine(np.ones((4, 3)))),
                         ("lif", LIF(beta=np.full(4, 0.5), v_threshold=np.full(4, 1.0),
                                     reset="subtract", max_spikes=31, fires_at_equal=True)),
                         ("out", Output((4,)))], dt=1e-3)
    data = Dataset(x=np.zeros((2, 5, 3), np.uint8), y=np.zeros(2, np.int64), dt=1e-3,
                   source="test")
    accuracy, note = _integer_accuracy(graph, data, load_target("xylo"), DeployRequest(), None)
    assert accuracy is None
    for part in ("Lava's fixed-point CUBA LIF", "subtract reset", "up to 31 spikes per neuron "
                 "and step (Lava: one)", "bitshift decays", "int weights"):
        assert part in note, (part, note)


def test_a_netx_export_of_a_variant_neuron_is_refused_before_any_work(tmp_path, rng):
    from sbc_deploy.exporters.to_nir import write_nir
    from sbc_deploy.pipeline import DeployRequest
    from sbc_deploy.validate import ValidationError, validate_request

    model = write_nir(variant_graph(rng), tmp_path / "v.nir")
    data = tmp_path / "d.npz"
    np.savez(data, x=(rng.random((4, 10, 3)) < 0.5).astype(np.uint8), y=np.arange(4) % 2,
             dt=1e-3)
    request = DeployRequest(model=str(model), targets=("loihi2",), calib=str(data),
                            eval=str(data), out_dir=str(tmp_path / "out"))
    with pytest.raises(ValidationError) as caught:
        validate_request(request)
    text = str(caught.value)
    for name in ("if1", "lif2", "cuba3"):
        assert f"node '{name}' fires by a rule netx cannot hold" in text
    assert "node 'lif4'" not in text and "--export nir,onnx leaves it out" in text
    assert not (tmp_path / "out").exists()
    # without netx the same model passes this check (xylo exports nir and onnx)
    fine = DeployRequest(model=str(model), targets=("xylo",), calib=str(data), eval=str(data),
                         out_dir=str(tmp_path / "out2"))
    try:
        validate_request(fine)
    except ValidationError as err:
        assert "netx" not in str(err)
