"""Neurons that fire at ``v >= threshold`` (spikingjelly, sinabs, rockpool) on Loihi.

Lava's CUBA neuron fires at ``v > vth << 6``. Every term Lava adds to ``v`` is a multiple of
``1 << 6`` unless a decay truncates it, so for an IF (and any neuron whose decays are 0 or 1)
``v >= thr`` is ``v > thr - 1 unit`` exactly: the netx exporter writes ``vThMant - 1`` and the
integer core uses the same register (``sim/fixed_point.py``, ``at_or_above_vth``). A decaying
membrane is refused, saying why.

Checked against the float simulator on integer grids (with integer weights and thresholds the
float simulator is exact, and ties ``v == thr`` happen often: the same graph firing at ``v >
thr`` gives other spikes), and against Lava itself (lava-dl's netx reader and Lava's fixed-point
simulator in their own environment, tests/lava/run_netx.py, as tests/test_lava_interop.py does).
Cost: ~1 s without Lava; the Lava run ~30 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_lava_interop import aligned, lava_lag, run_lava_batch
from test_to_netx import UNIT, encoded, run_float

from sbc_deploy.errors import ConfigError, ExportError
from sbc_deploy.exporters.to_netx import plan_netx, to_netx
from sbc_deploy.ir import IF, LIF, Affine, CubaLIF, Graph, Input, Output
from sbc_deploy.sim import SimResult
from sbc_deploy.sim import simulate as float_simulate
from sbc_deploy.sim.fixed_point import to_fixed_point
from sbc_deploy.sim.int_core import simulate_integer


def if_graph(rng: np.random.Generator, fires_at_equal: bool = True) -> Graph:
    """Input(12) -> Affine -> IF(16) -> Affine -> IF(6), integer weights, thresholds of a few
    units: the membranes land exactly on their thresholds often."""
    w1 = rng.integers(-2, 5, size=(16, 12))
    w2 = rng.integers(-3, 4, size=(6, 16))
    return Graph.chain([
        ("in", Input((12,))), ("fc1", Affine(**encoded(w1))),
        ("n1", IF(v_threshold=np.full(16, 4 * UNIT), fires_at_equal=fires_at_equal)),
        ("fc2", Affine(**encoded(w2))),
        ("n2", IF(v_threshold=np.full(6, 4 * UNIT), fires_at_equal=fires_at_equal)),
        ("out", Output((6,)))], dt=1e-3)


def simulate(graph: Graph, x: np.ndarray, record: list[str]) -> SimResult:
    """The float simulator in float64 (exact on these integer grids)."""
    return float_simulate(graph, torch.from_numpy(x), record=record, dtype=torch.float64)


def _spikes(rng: np.random.Generator, steps: int = 40, batch: int = 1) -> np.ndarray:
    return (rng.random((steps, batch, 12)) < 0.3).astype(np.float32)


def test_integer_core_fires_at_equal_as_the_float_simulator_does() -> None:
    rng = np.random.default_rng(5)
    graph = if_graph(rng)
    x = _spikes(rng, batch=8)
    net = to_fixed_point(graph)
    assert [layer.vth for layer in net.layers] == [3, 3]   # thresholds of 4 units, minus 1
    ideal = simulate(graph, x, record=["n1", "n2"])
    core = simulate_integer(net, x, record=["n1", "n2"])
    for lag, name in ((1, "n1"), (2, "n2")):   # Lava's one step of delay per synapse
        ours = core.recorded[name].numpy()
        theirs = ideal.recorded[name].numpy()
        np.testing.assert_array_equal(ours[lag:], theirs[:-lag], err_msg=name)
        assert 0.05 < theirs.mean() < 0.6, name    # every layer really fires
    # ties matter here: firing at v > thr instead gives other spikes in both layers
    strict = simulate(if_graph(np.random.default_rng(5), fires_at_equal=False), x,
                      record=["n1", "n2"])
    for name in ("n1", "n2"):
        assert (strict.recorded[name] != ideal.recorded[name]).sum() > 20, name


def test_netx_writes_the_threshold_one_unit_down() -> None:
    layers = plan_netx(if_graph(np.random.default_rng(1)))
    neurons = [layer.neuron for layer in layers if layer.neuron is not None]
    assert [n.v_th_mant for n in neurons] == [3, 3]
    plain = plan_netx(if_graph(np.random.default_rng(1), fires_at_equal=False))
    assert [layer.neuron.v_th_mant for layer in plain if layer.neuron is not None] == [4, 4]


@pytest.mark.parametrize("neuron, reason", [
    (LIF(beta=np.full(16, 0.5), v_threshold=np.full(16, 4 * UNIT), fires_at_equal=True),
     "membrane decays by beta = 0.5"),
    (CubaLIF(alpha=np.full(16, 0.75), beta=np.ones(16), v_threshold=np.full(16, 4 * UNIT),
             fires_at_equal=True), "current decays by alpha = 0.75"),
    (IF(v_threshold=np.full(16, 0.0), fires_at_equal=True), "threshold register is unsigned"),
])
def test_inexact_neurons_are_refused_with_the_reason(neuron: object, reason: str,
                                                    tmp_path: Path) -> None:
    graph = if_graph(np.random.default_rng(2)).replace_nodes({"n1": neuron})
    with pytest.raises(ConfigError, match=reason) as core:
        to_fixed_point(graph)
    assert core.value.where == "node 'n1'"
    with pytest.raises(ExportError, match=reason) as export:
        to_netx(graph, tmp_path / "refused.net")
    assert export.value.where == "node 'n1'"
    assert not (tmp_path / "refused.net").exists()


def test_deploy_refuses_a_decaying_neuron_for_netx_before_any_work(tmp_path: Path) -> None:
    """validate: the default export of loihi2 is netx; a spikingjelly-like LIF (tau = 2) is
    refused naming the node and the reason, an IF that fires at v >= thr is not."""
    from sbc_deploy.validate import _spike_variant_problems
    from sbc_deploy.targets import load_target

    loihi2 = [load_target("loihi2")]
    decaying = if_graph(np.random.default_rng(3)).replace_nodes({"n1": LIF(
        beta=np.full(16, 0.5), v_threshold=np.full(16, 4 * UNIT), fires_at_equal=True)})
    problems = _spike_variant_problems(decaying, loihi2, None)
    assert len(problems) == 1 and "node 'n1'" in problems[0] and "beta = 0.5" in problems[0]
    assert "--export nir,onnx leaves it out" in problems[0]
    assert _spike_variant_problems(if_graph(np.random.default_rng(3)), loihi2, None) == []


@pytest.mark.lava
@pytest.mark.slow
def test_lava_runs_the_exported_file_as_the_float_simulator_and_the_core(tmp_path: Path) -> None:
    """Lava (lava-dl's netx reader, fixed_pt) on the exported file: every layer's spikes equal
    the float simulator's (v >= thr) one step late per synapse, and the integer core's."""
    rng = np.random.default_rng(9)
    graph = if_graph(rng)
    x = _spikes(rng, steps=60)
    path = to_netx(graph, tmp_path / "equal.net")
    lava = run_lava_batch([(path, x[:, 0].astype(np.int8), aligned(path, x.shape[0]))],
                          tmp_path)[0]
    simulated = run_float(graph, x[:, 0].astype(np.float64))
    core = simulate_integer(to_fixed_point(graph), x, record=["n1", "n2"])
    blocks = sorted((k for k in lava if k.startswith("layer_")), key=lambda k: int(k[6:]))
    lags = lava_lag(path)
    assert len(blocks) == 2 and lags == [1, 2]
    for block, name, lag in zip(blocks, ("n1", "n2"), lags):
        np.testing.assert_array_equal(lava[block][lag:], simulated[name][:-lag], err_msg=name)
        np.testing.assert_array_equal(lava[block], core.recorded[name].numpy()[:, 0],
                                      err_msg=name)
        assert simulated[name].sum() > 30, name
    strict = run_float(if_graph(np.random.default_rng(9), fires_at_equal=False),
                       x[:, 0].astype(np.float64))
    assert all((strict[n] != simulated[n]).sum() > 10 for n in ("n1", "n2"))   # ties occur
