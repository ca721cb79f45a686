"""The integer core against Lava: lava-dl's tinynet ground truth, oxford, netx's integers, and a
step-by-step reference written from Lava's fixed-point equations (ecosystem.md 2.4)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import ROOT, fixture_path
from hypothesis import given, settings
from hypothesis import strategies as st

from sbc_deploy.errors import ConfigError, DataError
from sbc_deploy.frontends.from_netx import from_netx
from sbc_deploy.ir import (
    LI,
    LIF,
    Affine,
    Conv2d,
    CubaLI,
    CubaLIF,
    Flatten,
    Graph,
    Input,
    Output,
    WeightEncoding,
)
from sbc_deploy.sim.decode import classify
from sbc_deploy.sim.float_sim import simulate
from sbc_deploy.sim.fixed_point import LifParameters, LifState, to_fixed_point
from sbc_deploy.sim.int_core import (
    evaluate_deployed,
    integer_accuracy,
    lif_step,
    simulate_integer,
)

UNIT = 1 / 64
LAVA_PY = ROOT / ".lava-venv" / "bin" / "python"
RUN_NETX = ROOT / "tests" / "lava" / "run_netx.py"


# --------------------------------------------------------------------------- helpers


def encoded(weight_int: np.ndarray, exponent: int = 0, bits: int = 12) -> WeightEncoding:
    return WeightEncoding(mantissa=weight_int, scale=UNIT * 2.0**exponent, bits=bits,
                          grid="int_exp", exponent=exponent, unit=UNIT)


def dense(mantissa: np.ndarray, exponent: int = 0) -> Affine:
    enc = encoded(mantissa, exponent)
    return Affine(enc.dequantize(), encoding=enc)


def cuba(shape: tuple[int, ...], i_decay: int, v_decay: int, vth: int,
         bias: np.ndarray | int = 0) -> CubaLIF:
    return CubaLIF(alpha=np.full(shape, 1 - i_decay / 4096),
                   beta=np.full(shape, 1 - v_decay / 4096),
                   v_threshold=np.full(shape, vth * UNIT),
                   bias=np.broadcast_to(np.asarray(bias) * UNIT, shape))


def netx_path(*parts: str) -> Path:
    return fixture_path("netx", *parts)


class LavaReference:
    """Lava's fixed-point LIF and Dense, one step at a time, written from the equations:
    ``u = sign(y)(|y| >> 12) + (a << 6)`` with ``y = u (4096 - (du + 1))``, a single 24-bit
    wrap, ``v = sign(z)(|z| >> 12) + u + (b << 6)`` with ``z = v (4096 - dv)``, a clip, spike
    on ``v > vth << 6``, ``v = 0``; Dense output one step late, shifted by its exponent."""

    @staticmethod
    def decay(x: np.ndarray, keep: int) -> np.ndarray:
        y = x.astype(np.int64) * keep
        return np.sign(y) * np.right_shift(np.abs(y), 12)

    @classmethod
    def lif(cls, a: np.ndarray, u: np.ndarray, v: np.ndarray, du: int, dv: int, vth: int,
            bias: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = 2**23
        x = cls.decay(u, 4096 - (du + 1)) + np.left_shift(a.astype(np.int64), 6)
        w = np.where(x > m, x - 2 * m, x)
        u = np.where(w <= -m, x + 2 * m, w)
        v = np.clip(cls.decay(v, 4096 - dv) + u + (bias.astype(np.int64) << 6), 1 - m, m - 1)
        s = v > (vth << 6)
        v = np.where(s, 0, v)
        return s, u, v

    @staticmethod
    def dense_out(w: np.ndarray, e: int, s: np.ndarray) -> np.ndarray:
        acc = s.astype(np.int64) @ w.T.astype(np.int64)
        return np.left_shift(acc, e) if e > 0 else np.right_shift(acc, -e)


# --------------------------------------------------------------------------- lava-dl fixtures


def test_tinynet_reproduces_lavas_ground_truth_exactly() -> None:
    """lava-dl's own test: input bias only, per-layer resets every 17 steps, output[2:17] ==
    gt[..., 1:] (gt transposed to Lava's order, here compared in the IR's order)."""
    graph = from_netx(netx_path("tinynet", "tiny.net"))
    bias = np.load(netx_path("tinynet", "input_bias.npy")).transpose(2, 1, 0)  # WHC -> CHW
    graph = graph.replace_nodes({"layer0.neuron": graph.nodes["layer0.neuron"].replace(
        bias=bias * UNIT)})
    net = to_fixed_point(graph)
    x = np.zeros((20, 1, 3, 16, 16), dtype=np.int8)
    result = simulate_integer(net, x, reset_interval=17, reset_offset=0,
                              record=["layer1.conv"])
    out = result.outputs["output"].numpy()[:, 0, :, 0, 0]           # [T, 36]
    gt = np.load(netx_path("tinynet", "output.npy"))[0][:, 0, 0, :]  # [36, 16]
    assert gt.sum() == 92
    np.testing.assert_array_equal(out[2:17], gt[:, 1:].T)
    # the conv currents reaching layer 1 are SLAYER's current.npy, step for step
    current = np.moveaxis(np.load(netx_path("tinynet", "current.npy"))[0], -1, 0)
    np.testing.assert_array_equal(result.recorded["layer1.conv"].numpy()[:16, 0], current)


def _oxford_input(steps: int = 2000) -> np.ndarray:
    """slayer.io's binning of the oxford events: time bin round(t / 1 ms), OR-ed."""
    events = np.load(netx_path("oxford", "input.npy"))
    t = np.round(events[:, 2]).astype(int)
    keep = t < steps
    x = np.zeros((steps, 1, 200), dtype=np.int8)
    x[t[keep], 0, events[keep, 0].astype(int)] = 1
    return x


def test_oxford_within_the_tolerance_lava_shows_against_slayer() -> None:
    """Lava's own fixed-point run gives 9,565 spikes vs SLAYER's 10,178 (count correlation
    0.996): the core must be at least that close."""
    net = to_fixed_point(from_netx(netx_path("oxford", "network.net")))
    out = simulate_integer(net, _oxford_input()).outputs["output"].numpy()[:, 0]
    truth = np.load(netx_path("oxford", "ground_truth.npy"))
    counts_truth = np.bincount(truth[:, 0].astype(int), minlength=200)
    assert len(truth) == 10178
    assert abs(int(out.sum()) - 10178) <= 10178 - 9565
    assert np.corrcoef(out.sum(0), counts_truth)[0, 1] >= 0.996


@pytest.mark.parametrize("name", ["tinynet/tiny.net", "oxford/network.net",
                                  "mnist_small/network.net", "mnist_bootstrap/network.net"])
def test_registers_reproduce_the_netx_integers(name: str) -> None:
    """Every integer the core runs is the one netx reads from the file."""
    path = netx_path(*name.split("/"))
    net = to_fixed_point(from_netx(path))
    with h5py.File(path) as f:
        groups = [f["layer"][str(i)] for i in range(len(f["layer"]))]
        groups = [g for g in groups if g["type"][0] != b"flatten"
                  and (g["type"][0] != b"input" or "neuron" in g)]
        assert len(groups) == len(net.layers)
        for g, layer in zip(groups, net.layers):
            neuron = g.get("neuron", {"iDecay": 0, "vDecay": 4096, "vThMant": 1 << 17})
            assert layer.du == int(np.asarray(neuron["iDecay"])) - 1
            assert layer.dv == int(np.asarray(neuron["vDecay"]))
            assert layer.vth == int(np.asarray(neuron["vThMant"]))
            assert layer.spiking == ("neuron" in g)
            bias = g["bias"][()].astype(np.int64) if "bias" in g else np.zeros(1, np.int64)
            if layer.kind == "input":
                weight = int(g["weight"][()].reshape(-1)[0]) if "weight" in g else 64
                assert np.all(layer.input_scale == weight)
                assert np.all(layer.bias_mant == bias[0])
                continue
            channels = bias.reshape((-1,) + (1,) * (len(layer.shape) - 1))
            np.testing.assert_array_equal(layer.bias_mant, np.broadcast_to(channels, layer.shape))
            w = g["weight"][()].astype(np.int64).reshape(layer.weight.shape)
            effective = layer.weight * 2**layer.weight_exp if layer.weight_exp >= 0 \
                else layer.weight
            np.testing.assert_array_equal(effective, w)


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.skipif(not LAVA_PY.exists(), reason="Lava environment absent: run "
                                                 "scripts/make_lava_env.sh")
@pytest.mark.parametrize("name, steps", [("tinynet", 20), ("oxford", 400)])
def test_spike_for_spike_with_lava(name: str, steps: int, tmp_path: Path) -> None:
    """Lava 0.10 / lava-dl 0.6 run the same netx file in fixed_pt: every layer's spikes agree."""
    net_file = netx_path(name, "tiny.net" if name == "tinynet" else "network.net")
    graph = from_netx(net_file)
    inputs: dict[str, np.ndarray] = {"steps": np.asarray(steps)}
    core_options: dict[str, int] = {}
    if name == "tinynet":
        bias = np.load(netx_path("tinynet", "input_bias.npy")).transpose(2, 1, 0)
        graph = graph.replace_nodes({"layer0.neuron": graph.nodes["layer0.neuron"].replace(
            bias=bias * UNIT)})
        x = np.zeros((steps, 1, 3, 16, 16), dtype=np.int8)
        inputs.update(input_bias=bias.astype(np.int32), reset_interval=np.asarray(17))
        core_options = {"reset_interval": 17, "reset_offset": 0}
    else:
        x = _oxford_input(steps)
    inputs["spikes"] = x[:, 0]
    np.savez(tmp_path / "in.npz", **inputs)
    subprocess.run([str(LAVA_PY), str(RUN_NETX), str(net_file), str(tmp_path / "in.npz"),
                    str(tmp_path / "out.npz")], check=True, capture_output=True, timeout=600,
                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lava = np.load(tmp_path / "out.npz")
    net = to_fixed_point(graph)
    result = simulate_integer(net, x, record="all", **core_options)
    for i, layer in enumerate(net.layers):
        ours = result.recorded[layer.name].numpy()[:, 0]
        np.testing.assert_array_equal(ours, lava[f"layer_{i}"], err_msg=layer.name)
    assert lava["output"].sum() > 0


# --------------------------------------------------------------------------- the step function


def test_lif_step_by_hand() -> None:
    """Closed-form values: trunc toward zero, the 24-bit wrap of u, the clip of v, hard reset."""
    p = LifParameters(du=2047, dv=1024, vth=10, bias=np.array([0, 0, 0, 64], dtype=np.int64))
    u0 = np.array([[-5, 2**23 - 10, 0, 100]], dtype=np.int64)
    v0 = np.array([[-7, 0, 2**23 - 1, 0]], dtype=np.int64)
    a = np.array([[0, 1, 0, 0]], dtype=np.int64)
    s, state = lif_step(a, LifState(u0, v0), p)
    # u: -5 * 2048 / 4096 = -2.5 -> -2 (toward zero); (2**23 - 10) / 2 + 64 stays in range
    assert state.u.tolist() == [[-2, (2**23 - 10) // 2 + 64, 0, 50]]
    # v: -7 * 3072 / 4096 = -5.25 -> -5, plus u = -2 gives -7; the next two exceed
    # vth << 6 = 640 and reset to 0; the last: 50 + (1 << 6) = 114 stays below
    assert s.tolist() == [[False, True, True, False]]
    assert state.v.tolist() == [[-7, 0, 0, 114]]
    # wrap: u above 2**23 loses 2**24
    s, state = lif_step(np.array([[1]]), LifState(np.array([[2**23 - 10]]), np.array([[0]])),
                        LifParameters(du=-1, dv=0, vth=2**17, bias=np.zeros(1, np.int64)))
    assert state.u.tolist() == [[2**23 - 10 + 64 - 2**24]]
    # clip: v saturates at 2**23 - 1 and a threshold above it never fires
    s, state = lif_step(np.array([[0]]), LifState(np.array([[2**22]]), np.array([[2**23 - 5]])),
                        LifParameters(du=-1, dv=0, vth=2**17, bias=np.zeros(1, np.int64)))
    assert state.v.tolist() == [[2**23 - 1]] and not s.any()


@settings(max_examples=60, deadline=None)
@given(st.integers(-(2**23) + 1, 2**23), st.integers(-(2**23) + 1, 2**23 - 1),
       st.integers(-2000, 2000), st.integers(-1, 4095), st.integers(0, 4096),
       st.integers(0, 2**17), st.integers(-4096, 4095))
def test_lif_step_matches_the_reference_in_int64_and_float64(u: int, v: int, a: int, du: int,
                                                             dv: int, vth: int, b: int) -> None:
    bias = np.array([b], dtype=np.int64)
    s_ref, u_ref, v_ref = LavaReference.lif(np.array([[a]]), np.array([[u]]), np.array([[v]]),
                                            du, dv, vth, bias)
    for dtype in (np.int64, np.float64):
        p = LifParameters(du, dv, vth, (bias << 6).astype(dtype))
        s, state = lif_step(np.array([[a]], dtype=dtype),
                            LifState(np.array([[u]], dtype=dtype), np.array([[v]], dtype=dtype)), p)
        assert s.tolist() == s_ref.tolist()
        assert state.u.astype(np.int64).tolist() == u_ref.tolist()
        assert state.v.astype(np.int64).tolist() == v_ref.tolist()


# --------------------------------------------------------------------------- whole networks


def _recurrent_graph(rng: np.random.Generator, exponents: tuple[int, int, int]
                     ) -> tuple[Graph, dict[str, np.ndarray]]:
    w1 = rng.integers(-120, 120, size=(12, 10))
    wr = rng.integers(-60, 60, size=(12, 12))
    w2 = rng.integers(-120, 120, size=(5, 12))
    bias = rng.integers(-20, 20, size=12)
    nodes = {
        "in": Input((10,)),
        "fc1": dense(w1, exponents[0]),
        "lif1": cuba((12,), 1000, 300, 50, bias),
        "rec": dense(wr, exponents[1]),
        "fc2": dense(w2, exponents[2]),
        "lif2": cuba((5,), 4096, 500, 40),
        "out": Output((5,)),
    }
    edges = (("in", "fc1"), ("fc1", "lif1"), ("lif1", "rec"), ("rec", "lif1"), ("lif1", "fc2"),
             ("fc2", "lif2"), ("lif2", "out"))
    return Graph(nodes, edges, dt=1e-3), {"w1": w1, "wr": wr, "w2": w2, "bias": bias}


@pytest.mark.parametrize("exponents", [(0, 0, 0), (1, -1, 2), (-2, 1, -1)])
def test_recurrent_network_matches_the_step_by_step_reference(rng: np.random.Generator,
                                                              exponents: tuple[int, int, int]
                                                              ) -> None:
    graph, w = _recurrent_graph(rng, exponents)
    x = (rng.random((40, 3, 10)) < 0.3).astype(np.int8)
    net = to_fixed_point(graph)
    results = [simulate_integer(net, x, record=["lif1", "lif1:v"], chunk=chunk)
               for chunk in (1, 7, 64)]
    # reference: every synapse one step late, the recurrent one too
    e1, er, e2 = exponents
    u1 = v1 = np.zeros((3, 12), np.int64)
    u2 = v2 = np.zeros((3, 5), np.int64)
    a1 = np.zeros((3, 12), np.int64)
    a2 = np.zeros((3, 5), np.int64)
    s1 = np.zeros((3, 12), bool)
    spikes1, spikes2, volts1 = [], [], []
    for t in range(40):
        rec = LavaReference.dense_out(w["wr"], er, s1)
        s1, u1, v1 = LavaReference.lif(a1 + rec, u1, v1, 999, 300, 50, w["bias"])
        s2, u2, v2 = LavaReference.lif(a2, u2, v2, 4095, 500, 40, np.zeros(5, np.int64))
        a1 = LavaReference.dense_out(w["w1"], e1, x[t])
        a2 = LavaReference.dense_out(w["w2"], e2, s1)
        spikes1.append(s1)
        spikes2.append(s2)
        volts1.append(v1)
    assert np.sum(spikes1) > 20 and np.sum(spikes2) > 5
    for result in results:
        np.testing.assert_array_equal(result.recorded["lif1"].numpy(), np.array(spikes1))
        np.testing.assert_array_equal(result.recorded["lif1:v"].numpy(), np.array(volts1))
        np.testing.assert_array_equal(result.outputs["out"].numpy(), np.array(spikes2))


def test_conv_flatten_dense_matches_torch_and_the_reference(rng: np.random.Generator) -> None:
    """Conv (PyTorch correlation order, stride, padding) -> Flatten -> Dense, in the IR's (C, H, W)
    order, against torch's conv2d and the reference neurons."""
    wc = rng.integers(-30, 30, size=(4, 2, 3, 3))
    wd = rng.integers(-40, 40, size=(3, 4 * 4 * 4))
    conv = Conv2d(wc * UNIT, input_shape=(2, 7, 7), stride=2, padding=1, encoding=encoded(wc))
    graph = Graph.chain([("in", Input((2, 7, 7))), ("conv", conv),
                         ("lif1", cuba((4, 4, 4), 4096, 800, 30)),
                         ("flat", Flatten((4, 4, 4))), ("fc", dense(wd)),
                         ("lif2", cuba((3,), 2048, 200, 20)), ("out", Output((3,)))], dt=1e-3)
    x = (rng.random((25, 2, 2, 7, 7)) < 0.4).astype(np.int8)
    result = simulate_integer(to_fixed_point(graph), x, record=["lif1", "conv"])
    conv_out = torch.nn.functional.conv2d(
        torch.tensor(x.reshape(-1, 2, 7, 7), dtype=torch.float64),
        torch.tensor(wc, dtype=torch.float64), stride=2, padding=1)
    conv_out = conv_out.numpy().astype(np.int64).reshape(25, 2, 4, 4, 4)
    np.testing.assert_array_equal(result.recorded["conv"].numpy()[1:], conv_out[:-1])
    assert not result.recorded["conv"].numpy()[0].any()           # one step of delay
    u1 = v1 = np.zeros((2, 4, 4, 4), np.int64)
    u2 = v2 = np.zeros((2, 3), np.int64)
    a1 = np.zeros((2, 4, 4, 4), np.int64)
    a2 = np.zeros((2, 3), np.int64)
    spikes1, spikes2 = [], []
    for t in range(25):
        s1, u1, v1 = LavaReference.lif(a1, u1, v1, 4095, 800, 30, np.zeros((4, 4, 4), np.int64))
        s2, u2, v2 = LavaReference.lif(a2, u2, v2, 2047, 200, 20, np.zeros(3, np.int64))
        a1 = conv_out[t]
        a2 = LavaReference.dense_out(wd, 0, s1.reshape(2, -1))   # C-order flatten of (C, H, W)
        spikes1.append(s1)
        spikes2.append(s2)
    assert np.sum(spikes1) > 0 and np.sum(spikes2) > 0
    np.testing.assert_array_equal(result.recorded["lif1"].numpy(), np.array(spikes1))
    np.testing.assert_array_equal(result.outputs["out"].numpy(), np.array(spikes2))


def test_conv_output_wraps_to_24_bits() -> None:
    """Lava's fixed-point Conv clamps its output with a 24-bit two's complement wrap."""
    w = np.full((1, 1, 3, 3), 2**20, dtype=np.int64)
    conv = Conv2d(w * UNIT, input_shape=(1, 3, 3), encoding=encoded(w, bits=22))
    graph = Graph.chain([("in", Input((1, 3, 3))), ("conv", conv),
                         ("lif", cuba((1, 1, 1), 4096, 4096, 10)), ("out", Output((1, 1, 1)))],
                        dt=1e-3)
    result = simulate_integer(to_fixed_point(graph), np.ones((2, 1, 1, 3, 3)), record=["conv"])
    assert int(result.recorded["conv"][1].reshape(-1)[0]) == 9 * 2**20 - 2**24


def test_graded_input_and_binary_ports() -> None:
    """A first synapse sees unary spikes unless graded input is asked for (netx's
    input_message_bits); non-integer input is refused."""
    graph = Graph.chain([("in", Input((2,))), ("fc", dense(np.array([[3, 5]]))),
                         ("lif", cuba((1,), 4096, 4096, 1000)), ("out", Output((1,)))], dt=1e-3)
    net = to_fixed_point(graph)
    x = np.array([[[2, 1]], [[0, 0]]])
    assert simulate_integer(net, x, record=["fc"]).recorded["fc"][1].item() == 8
    assert simulate_integer(net, x, record=["fc"], graded_input=True).recorded["fc"][1].item() == 11
    with pytest.raises(DataError, match="non-integer"):
        simulate_integer(net, x * 0.5)
    with pytest.raises(DataError, match=r"expected \[T, B, 2\]"):
        simulate_integer(net, np.zeros((3, 2)))


def test_readout_integrator_outputs_v(rng: np.random.Generator) -> None:
    """mnist_bootstrap ends in netx's read-out integrator: v is the running sum of the input
    plus bias and never spikes."""
    net = to_fixed_point(from_netx(netx_path("mnist_bootstrap", "network.net")))
    assert not net.layers[-1].spiking
    x = (rng.random((12, 2, 784)) < 0.2).astype(np.int8)
    result = simulate_integer(net, x, record=["layer2.neuron", "layer3.dense"])
    v = result.outputs["output"].numpy()
    a = result.recorded["layer3.dense"].numpy()
    np.testing.assert_array_equal(v, np.cumsum(a, axis=0) * 64)
    assert result.recorded["layer2.neuron"].numpy().sum() > 0


# --------------------------------------------------------------------------- what Lava cannot run


def _one_layer(neuron: object, weight: Affine | None = None) -> Graph:
    synapse = weight or dense(np.array([[1, 2]]))
    return Graph.chain([("in", Input((2,))), ("fc", synapse), ("n", neuron),
                        ("out", Output(synapse.output_shape))], dt=1e-3)


@pytest.mark.parametrize("graph, match", [
    (lambda: _one_layer(cuba((1,), 4096, 100, 5), Affine(np.array([[0.3, 0.2]]))), "float weights"),
    (lambda: _one_layer(LIF(beta=np.array([0.9]), v_threshold=np.array([1.0]), reset="subtract")),
     "'subtract' reset"),
    (lambda: _one_layer(LIF(beta=np.array([0.9]), v_threshold=np.array([1.0]),
                            v_leak=np.array([0.1]))), "v_leak"),
    (lambda: _one_layer(LIF(beta=np.array([0.9]), v_threshold=np.array([1.0]),
                            v_reset=np.array([0.2]))), "v_reset"),
    (lambda: _one_layer(LI(beta=np.array([0.9]))), "is a LI"),
    (lambda: _one_layer(CubaLI(alpha=np.array([0.5]), beta=np.array([0.0]))), "alpha=0.5"),
    (lambda: _one_layer(LIF(beta=np.array([0.9]), v_threshold=np.array([1.0]),
                            gain=np.array([0.5]))), "gain"),
    (lambda: _one_layer(CubaLIF(alpha=np.array([0.5, 0.4]), beta=np.array([0.9, 0.9]),
                                v_threshold=np.array([1.0, 1.0])),
                        dense(np.array([[1, 2], [3, 4]]))), "alpha varies"),
])
def test_what_lava_cannot_express_raises_naming_the_node(graph, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        to_fixed_point(graph())
    assert info.value.where in ("node 'fc'", "node 'n'")


def test_conv_with_negative_exponent_and_branches_raise() -> None:
    w = np.ones((1, 1, 2, 2), dtype=np.int64)
    conv = Conv2d(w * UNIT / 2, input_shape=(1, 2, 2), encoding=encoded(w, -1))
    graph = Graph.chain([("in", Input((1, 2, 2))), ("conv", conv),
                         ("n", cuba((1, 1, 1), 4096, 100, 5)), ("out", Output((1, 1, 1)))], dt=1e-3)
    with pytest.raises(ConfigError, match="no weight exponent"):
        to_fixed_point(graph)
    nodes = {"in": Input((2,)), "a": dense(np.array([[1, 1]])), "b": dense(np.array([[1, 1]])),
             "n": cuba((1,), 4096, 100, 5), "out": Output((1,))}
    edges = (("in", "a"), ("in", "b"), ("a", "n"), ("b", "n"), ("n", "out"))
    with pytest.raises(ConfigError, match="sequential chains"):
        to_fixed_point(Graph(nodes, edges, dt=1e-3))


# --------------------------------------------------------------------------- accuracy as deployed


def test_integer_accuracy_decodes_spike_counts() -> None:
    outputs = np.zeros((4, 3, 2), dtype=np.int8)
    outputs[:, 0, 1] = 1          # sample 0 -> class 1
    outputs[:2, 1, 0] = 1         # sample 1 -> class 0
    outputs[:1, 2, 1] = 1         # sample 2 -> class 1
    assert integer_accuracy(outputs, np.array([1, 0, 0])) == pytest.approx(2 / 3)


def test_evaluate_deployed_beside_the_float_simulator(rng: np.random.Generator) -> None:
    """Labels chosen as the float simulator's own predictions: float accuracy is 1, and the
    integer core's accuracy equals its agreement with the float simulator."""
    graph = from_netx(netx_path("mnist_small", "network.net"))
    x = (rng.random((16, 24, 784)) < 0.15).astype(np.float32)
    labels = classify(simulate(graph, torch.from_numpy(x)).outputs["output"], "spike_count")
    result = evaluate_deployed(graph, x, labels, mode="spike_count", batch_size=10)
    assert result.float_accuracy == 1.0
    assert result.integer_accuracy == result.agreement
    assert result.agreement > 0.5 and result.samples == 24


def test_synapse_bias_becomes_neuron_bias_without_current_memory() -> None:
    """netx has no synapse bias; with iDecay = 4096 a synapse bias is a neuron bias, exactly."""
    enc = encoded(np.array([[2, 1], [1, 3]]))
    with_bias = Affine(enc.dequantize(), bias=np.array([5 * UNIT, -3 * UNIT]), encoding=enc)
    graph = _one_layer(cuba((2,), 4096, 100, 40, np.array([1, 1])), with_bias)
    layer = to_fixed_point(graph).layers[0]
    assert layer.bias_mant.tolist() == [6, -2]
    leaky = _one_layer(cuba((2,), 2048, 100, 40), with_bias)
    with pytest.raises(ConfigError, match="keeps synaptic current") as info:
        to_fixed_point(leaky)
    assert info.value.where == "node 'fc'"


def test_if_network_equals_the_float_simulator_one_step_late_per_synapse(
        rng: np.random.Generator) -> None:
    """With no leak and no bias nothing rounds: the core is the IR's float semantics, each
    synapse layer adding one step of delay (Lava's)."""
    w1 = rng.integers(-40, 60, size=(16, 12))
    w2 = rng.integers(-40, 60, size=(6, 16))
    graph = Graph.chain([
        ("in", Input((12,))), ("fc1", dense(w1, 1)),
        ("n1", cuba((16,), 4096, 0, 64)), ("fc2", dense(w2)),
        ("n2", cuba((6,), 4096, 0, 100)), ("out", Output((6,)))], dt=1e-3)
    x = (rng.random((30, 4, 12)) < 0.3).astype(np.float32)
    ideal = simulate(graph, torch.from_numpy(x)).outputs["out"].numpy()
    core = simulate_integer(to_fixed_point(graph), x).outputs["out"].numpy()
    assert ideal.sum() > 10
    np.testing.assert_array_equal(core[2:], ideal[:-2])
    assert not core[:2].any()
