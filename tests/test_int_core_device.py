"""The integer core in torch (sbc_deploy.sim.int_core_torch) equals the numpy core bit for bit:
on the CPU for the Lava fixtures, the bundled networks' netx exports and random networks near
the 24-bit wrap and clip; on CUDA against the CPU (skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fixture_path
from hypothesis import given, settings
from hypothesis import strategies as st
from test_int_core import _oxford_input, _recurrent_graph, cuba, dense, encoded

from sbc_deploy import bundled
from sbc_deploy.data import Dataset
from sbc_deploy.errors import ConfigError
from sbc_deploy.frontends.from_netx import from_netx
from sbc_deploy.ir import Conv2d, CubaLI, Graph, Input, Output
from sbc_deploy.sim import int_core
from sbc_deploy.sim.fixed_point import (
    UV_MAX,
    FixedPointLayer,
    FixedPointNetwork,
    IntSimResult,
    to_fixed_point,
)
from sbc_deploy.sim.int_core import evaluate_deployed, simulate_integer
from sbc_deploy.sim.int_core_torch import simulate_integer_torch

UNIT = 1 / 64
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine")


def assert_same(ref: IntSimResult, got: IntSimResult) -> None:
    """Every output, record and final state equal, with the same dtype, on the host."""
    for ours, theirs in ((ref.outputs, got.outputs), (ref.recorded, got.recorded)):
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert theirs[key].device.type == "cpu", key
            assert theirs[key].dtype == ours[key].dtype, key
            assert torch.equal(theirs[key], ours[key]), key
    assert ref.final.keys() == got.final.keys()
    for name, state in ref.final.items():
        for a, b in zip(state, got.final[name]):
            assert b.dtype == np.int64
            np.testing.assert_array_equal(b, a.astype(np.int64), err_msg=name)


def everything(net: FixedPointNetwork) -> list[str]:
    """Every layer's spikes, synaptic input a[t], u and v, and the input."""
    keys = [net.input]
    for layer in net.layers:
        keys += [layer.name, f"{layer.name}:u", f"{layer.name}:v"]
        keys += [layer.synapse] if layer.synapse else []
    return keys


def both(net: FixedPointNetwork, x: np.ndarray, device: str = "cpu", **options
         ) -> tuple[IntSimResult, IntSimResult]:
    ref = simulate_integer(net, x, record=everything(net), **options)
    got = simulate_integer_torch(net, x, record=everything(net), device=device, **options)
    assert_same(ref, got)
    return ref, got


def netx_net(name: str) -> FixedPointNetwork:
    folder, file = name.split("/")
    return to_fixed_point(from_netx(fixture_path("netx", folder, file)))


def tinynet() -> tuple[FixedPointNetwork, np.ndarray]:
    """lava-dl's tinynet with its input bias (as tests/test_int_core.py runs it)."""
    graph = from_netx(fixture_path("netx", "tinynet", "tiny.net"))
    bias = np.load(fixture_path("netx", "tinynet", "input_bias.npy")).transpose(2, 1, 0)
    graph = graph.replace_nodes({"layer0.neuron": graph.nodes["layer0.neuron"].replace(
        bias=bias * UNIT)})
    return to_fixed_point(graph), np.zeros((40, 2, 3, 16, 16), dtype=np.int8)


# --------------------------------------------------------------------------- the Lava fixtures


def test_tinynet_with_resets_and_conv_layers() -> None:
    net, x = tinynet()
    assert [layer.kind for layer in net.layers] == ["input", "conv2d", "conv2d"]
    ref, _ = both(net, x, reset_interval=17, reset_offset=0, chunk=5)
    assert ref.outputs["output"].sum() > 0 and ref.recorded["layer1.conv"].abs().sum() > 0


def test_oxford_spikes_and_states() -> None:
    net = netx_net("oxford/network.net")
    x = np.repeat(_oxford_input(300), 2, axis=1)
    ref, _ = both(net, x, chunk=64)
    assert ref.outputs["output"].sum() > 100


@pytest.mark.parametrize("name", ["mnist_small/network.net", "mnist_bootstrap/network.net"])
def test_netx_fixtures_with_input_layer_and_readout(name: str, rng: np.random.Generator) -> None:
    """mnist_bootstrap has an input layer (a[t] = weight * x[t]) and the read-out integrator."""
    net = netx_net(name)
    x = (rng.random((30, 3, *net.input_shape)) < 0.2).astype(np.int8)
    ref, _ = both(net, x, chunk=8)
    assert all(ref.recorded[layer.name].sum() > 0 for layer in net.layers if layer.spiking)


@pytest.mark.parametrize("exponents", [(0, 0, 0), (1, -1, 2), (-2, 1, -1)])
def test_recurrent_network_with_exponents(rng: np.random.Generator,
                                          exponents: tuple[int, int, int]) -> None:
    graph, _ = _recurrent_graph(rng, exponents)
    x = (rng.random((40, 3, 10)) < 0.3).astype(np.int8)
    for chunk in (1, 7, 64):
        ref, _ = both(to_fixed_point(graph), x, chunk=chunk)
        assert ref.recorded["lif1"].sum() > 20


def test_graded_input_and_conv_wrap() -> None:
    w = np.full((1, 1, 3, 3), 2**20, dtype=np.int64)
    conv = Conv2d(w * UNIT, input_shape=(1, 3, 3), encoding=encoded(w, bits=22))
    graph = Graph.chain([("in", Input((1, 3, 3))), ("conv", conv),
                         ("lif", cuba((1, 1, 1), 4096, 4096, 10)), ("out", Output((1, 1, 1)))],
                        dt=1e-3)
    net = to_fixed_point(graph)
    ref, _ = both(net, np.ones((3, 1, 1, 3, 3)))
    assert int(ref.recorded["conv"][1].reshape(-1)[0]) == 9 * 2**20 - 2**24   # wrapped
    x = np.array([[[2, 1]], [[0, 3]], [[1, 1]]])
    fc = Graph.chain([("in", Input((2,))), ("fc", dense(np.array([[3, 5]]))),
                      ("lif", cuba((1,), 4096, 4096, 1000)), ("out", Output((1,)))], dt=1e-3)
    ref, _ = both(to_fixed_point(fc), x, graded_input=True)
    assert ref.recorded["fc"][1].item() == 11


# --------------------------------------------------------------------------- the bundled networks


def subset(which: str, n: int) -> Dataset:
    data = bundled.load_bundled_data(which)  # type: ignore[arg-type]
    return Dataset(data.x[:n], None if data.y is None else data.y[:n], data.dt,
                   f"{data.source}[:{n}]")


@pytest.fixture(scope="module")
def bundled_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Each bundled network deployed for Loihi 2 (netx export), with the device that the
    pipeline handed to the integer core's evaluation."""
    from sbc_deploy.pipeline import DeployRequest, deploy

    exports: dict[str, dict] = {}
    for model in bundled.MODELS:
        seen: list[object] = []
        original = int_core.evaluate_deployed

        def spy(*args, _seen=seen, _original=original, **kwargs):
            _seen.append(kwargs.get("device"))
            return _original(*args, **kwargs)

        out = tmp_path_factory.mktemp(model)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(int_core, "evaluate_deployed", spy)
            deploy(DeployRequest(model=model, targets=("loihi2",), sparsity=0.5,
                                 calib=subset("calib", 32), eval=subset("eval", 8),
                                 batch_size=8, out_dir=str(out), export=("netx",),
                                 device="cpu"))
        (net_file,) = Path(out).rglob("*.net")
        exports[model] = {"file": net_file, "devices": seen}
    return exports


def bundled_net(exports: dict, model: str) -> tuple[FixedPointNetwork, np.ndarray, np.ndarray]:
    dt = bundled.bundled_manifest()[model]["dt"]
    net = to_fixed_point(from_netx(exports[model]["file"], dt=dt))
    data = bundled.load_bundled_data("eval")
    x = np.array(np.swapaxes(data.x[:6], 0, 1), dtype=np.int8)
    return net, x, np.asarray(data.y[:6])


@pytest.mark.parametrize("model", bundled.MODELS)
def test_bundled_netx_exports(bundled_exports: dict, model: str) -> None:
    net, x, _ = bundled_net(bundled_exports, model)
    if model == "nmnist_cnn":
        assert any(layer.kind == "conv2d" for layer in net.layers)
    ref, _ = both(net, x, chunk=7)
    assert ref.outputs[net.output].sum() > 0
    # the pipeline passed its device to the integer core
    assert bundled_exports[model]["devices"] and set(bundled_exports[model]["devices"]) == {"cpu"}


def test_device_argument_selects_the_core(bundled_exports: dict) -> None:
    """simulate_integer(device=) on the CPU is the numpy core; a bad device is a clear error."""
    net, x, y = bundled_net(bundled_exports, "nmnist_cnn")
    assert_same(simulate_integer(net, x), simulate_integer(net, x, device="cpu"))
    with pytest.raises(ConfigError, match="not a torch device"):
        simulate_integer(net, x, device="gpu0")
    if not CUDA:
        with pytest.raises(ConfigError, match="CUDA was asked for"):
            simulate_integer(net, x, device="cuda")


# --------------------------------------------------------------------------- near the limits


def _layer(name: str, kind: str, weight: np.ndarray, exponent: int, shape: tuple[int, ...],
           source: tuple[int, ...], du: int, dv: int, vth: int, bias: np.ndarray,
           **extra) -> FixedPointLayer:
    return FixedPointLayer(name=name, kind=kind, synapse=f"{name}.syn", shape=shape,
                           source_shape=source, synapse_input_shape=source, weight=weight,
                           weight_exp=exponent, du=du, dv=dv, vth=vth, bias_mant=bias,
                           bias_exp=6, unit=UNIT, **extra)


@st.composite
def limit_networks(draw: st.DrawFn) -> tuple[FixedPointNetwork, np.ndarray, bool]:
    """Conv (padding 1) -> Dense (+ recurrent) with integers near the 24-bit limits: weights
    up to 2**17 (conv sums past 2**23 wrap; a[t] << 6 past 2**23: u wraps), biases up to
    2**17 (v clips), any decays, thresholds and exponents; graded inputs up to 7, or spikes."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    wmax = 2 ** draw(st.integers(3, 17))
    bmax = 2 ** draw(st.integers(0, 17))
    regs = [dict(du=draw(st.integers(-1, 4095)), dv=draw(st.integers(0, 4096)),
                 vth=draw(st.integers(0, 2**17))) for _ in range(2)]
    graded = draw(st.booleans())
    conv = _layer("c", "conv2d", rng.integers(-wmax, wmax + 1, (3, 2, 3, 3)), 0, (3, 4, 4),
                  (2, 4, 4), bias=rng.integers(-bmax, bmax + 1, (3, 4, 4)), padding=(1, 1),
                  **regs[0])
    recurrent = {}
    if draw(st.booleans()):
        recurrent = dict(recurrent="d.rec", recurrent_weight=rng.integers(-wmax, wmax + 1, (5, 5)),
                         recurrent_weight_exp=draw(st.integers(-4, 4)))
    fc = _layer("d", "dense", rng.integers(-wmax, wmax + 1, (5, 48)), draw(st.integers(-6, 6)),
                (5,), (48,), bias=rng.integers(-bmax, bmax + 1, 5), **regs[1], **recurrent)
    net = FixedPointNetwork((conv, fc), "in", (2, 4, 4), "out", 1e-3)
    steps = draw(st.integers(1, 12))
    x = rng.integers(-7 if graded else 0, 8 if graded else 2, (steps, 2, 2, 4, 4))
    return net, x, graded


@settings(max_examples=40, deadline=None)
@given(limit_networks(), st.integers(1, 6))
def test_random_integers_near_the_wrap_and_clip(case, chunk: int) -> None:
    net, x, graded = case
    both(net, x, graded_input=graded, chunk=chunk)


def test_the_limits_are_reached() -> None:
    """A case the property test covers, checked to hit the wrap of u and the clip of v: a
    current that never decays (du = -1) and only grows (positive weights, spikes in) turns
    negative only by the 24-bit wrap; a bias of -2**23 per step drives v into its clip."""
    rng = np.random.default_rng(3)
    fc = _layer("d", "dense", rng.integers(2**15, 2**16, (2, 4)), 0, (2,), (4,), du=-1,
                dv=0, vth=2**17, bias=np.full(2, -2**17))
    net = FixedPointNetwork((fc,), "in", (4,), "out", 1e-3)
    ref, _ = both(net, np.ones((8, 3, 4), dtype=np.int8))
    u, v = ref.recorded["d:u"], ref.recorded["d:v"]
    assert int(u.max()) > 0 and int(u.min()) < 0                  # wrapped
    assert int(v.min()) == -(UV_MAX - 1)                          # clipped


def test_partial_sums_past_2_to_53_are_refused() -> None:
    """float64 products are exact below 2**53 only: the torch core refuses to round."""
    layer = _layer("d", "dense", np.full((1, 4), 2**51), 0, (1,), (4,), du=4095, dv=0, vth=1,
                   bias=np.zeros(1, np.int64))
    net = FixedPointNetwork((layer,), "in", (4,), "out", 1e-3)
    with pytest.raises(ConfigError, match=r"2\*\*53") as info:
        simulate_integer_torch(net, np.ones((2, 1, 4), np.int8))
    assert info.value.where == "synapse 'd.syn'"


# --------------------------------------------------------------------------- CUDA


@needs_cuda
def test_cuda_tinynet_and_oxford_equal_the_cpu() -> None:
    net, x = tinynet()
    ref, got = both(net, x, device="cuda", reset_interval=17, reset_offset=0, chunk=5)
    assert_same(ref, simulate_integer(net, x, record=everything(net), device="cuda",
                                      reset_interval=17, reset_offset=0, chunk=5))
    both(netx_net("oxford/network.net"), np.repeat(_oxford_input(300), 2, axis=1),
         device="cuda")
    both(netx_net("mnist_bootstrap/network.net"),
         (np.random.default_rng(0).random((20, 3, 784)) < 0.2).astype(np.int8), device="cuda")


@needs_cuda
@pytest.mark.parametrize("model", bundled.MODELS)
def test_cuda_bundled_networks_equal_the_cpu(bundled_exports: dict, model: str) -> None:
    net, x, y = bundled_net(bundled_exports, model)
    both(net, x, device="cuda", chunk=7)
    graph = from_netx(bundled_exports[model]["file"], dt=bundled.bundled_manifest()[model]["dt"])
    cpu = evaluate_deployed(graph, x, y, net=net)
    gpu = evaluate_deployed(graph, x, y, net=net, device="cuda")
    assert gpu.integer_accuracy == cpu.integer_accuracy


@needs_cuda
@settings(max_examples=15, deadline=None)
@given(limit_networks())
def test_cuda_random_integers_near_the_limits(case) -> None:
    net, x, graded = case
    both(net, x, device="cuda", graded_input=graded, chunk=4)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_readout_integrator(device: str) -> None:
    """netx's non-spiking read-out (CubaLI alpha = 1, beta = 0): the output is its v."""
    graph = Graph.chain([("in", Input((3,))), ("fc", dense(np.array([[3, -5, 7], [1, 2, -9]]))),
                         ("li", CubaLI(alpha=np.ones(2), beta=np.zeros(2),
                                       bias=np.array([2, -1]) * UNIT)),
                         ("out", Output((2,)))], dt=1e-3)
    net = to_fixed_point(graph)
    assert not net.layers[-1].spiking
    x = np.random.default_rng(1).random((9, 4, 3)) < 0.5
    ref, _ = both(net, x, device=device)
    assert torch.equal(ref.outputs["out"], ref.recorded["li:v"])
