"""norse networks through ``from_torch``, checked by norse itself.

norse 1.1.0 runs in the ``torch`` framework environment (scripts/make_framework_envs.sh;
``SBC_FW_VENVS`` points elsewhere) through tests/frameworks/norse_torch_driver.py:

- ``produce`` builds each network of tests/frameworks/norse_nets.py (a ``SequentialState`` of
  ``LIFCell`` / ``LIFBoxCell`` / ``LICell`` / ``IAFCell`` / ``LIBoxCell`` / ``LIFRecurrentCell``
  stepped by norse's loop, the time layers ``LIF`` / ``IAF`` / ``LI`` / ``LIFRecurrent`` with
  ``Lift``, and a user's module that loops over time itself), all with norse's default neuron
  parameters, and runs it on T = 50 steps of
  Bernoulli input: every neuron layer's output and the network's are recorded;
- the main environment builds the same network (norse is installed there with ``--no-deps``, see
  README), imports it with ``from_torch`` and simulates it: every spike of every spiking layer
  equal, and the leaky integrators' membranes within float32 rounding;
- each graph is compressed to 50 % sparsity (SBC on every layer), written back with
  ``compressed_state_dict`` and re-run by norse in one driver call: the compressed graph's
  spikes again, exactly.

The weights are not on a grid here (norse's default ``dt * tau_mem_inv = 0.1`` is not a power of
two, so no grid makes its float32 arithmetic exact): the IR's ``beta v + gain x`` and norse's
``v + a (v_leak - v + x)`` round differently in the last bit, and a membrane within that rounding
of its threshold would flip a spike. The seeds are fixed, so the outcome is deterministic; none
occurs in these nets (25,600 neuron steps per 64-neuron layer).

Cost, measured on this 2-core machine: the file ~25 s at a load average of 10, ~10 s at 3
(one norse ``produce``, one ``rerun`` of all seven networks, each import and simulation < 1 s).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sbc_deploy.calibrate import calibrate
from sbc_deploy.compress import compress
from sbc_deploy.compress.config import SBCConfig
from sbc_deploy.data import Dataset
from sbc_deploy.errors import UnsupportedNodeError
from sbc_deploy.frontends.from_torch import from_torch
from sbc_deploy.frontends.from_torch.writeback import compressed_state_dict
from sbc_deploy.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "frameworks"))
sys.path.insert(0, str(ROOT / "tests"))
import norse_nets as nets  # noqa: E402
from frameworks import harness  # noqa: E402

norse = pytest.importorskip("norse.torch", reason="norse is not installed in the main "
                            "environment (README's test command installs it with --no-deps)")

# IR node kind of every norse neuron layer, per case (module path -> kind)
KINDS = {"cells_lif": {"1": "CubaLIF", "3": "CubaLIF"},
         "cells_lifbox_li": {"1": "LIF", "3": "CubaLI"},
         "cells_iaf_libox": {"1": "IF", "3": "LI"},
         "layers_conv": {"1": "CubaLIF", "4": "IF", "6": "CubaLI"},
         "own_loop": {"lif": "LIF", "iaf": "IF"},
         "recurrent_cell": {"0": "CubaLIF", "2": "CubaLIF"},
         "recurrent_layer": {"0": "CubaLIF", "2": "CubaLIF"}}


def run_driver(*args: Any) -> None:
    harness.run_driver("norse_torch", *args, env="torch")


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("norse")
    run_driver("produce", folder)
    return folder, json.loads((folder / "manifest.json").read_text())


def _module(case: str, state: Path) -> torch.nn.Module:
    net = nets.build(case)
    net.load_state_dict(torch.load(state, map_location="cpu", weights_only=True))
    return net


def _layers(graph: Any) -> dict[str, str]:
    """norse module path -> IR node, for every neuron layer of the graph."""
    from sbc_deploy.ir import Neuron

    return {path: node for node, path in graph.metadata["torch_modules"].items()
            if isinstance(graph.nodes[node], Neuron)}


def _compare(graph: Any, reference: Any) -> dict[str, int]:
    """Entries that differ per neuron layer and of the output: spikes exactly, membranes (LI
    outputs) within float32 rounding."""
    layers = _layers(graph)
    result = simulate(graph, torch.from_numpy(reference["x"]), record=list(layers.values()))
    missing = {k[2:] for k in reference.files if k.startswith("n:")} - set(layers)
    assert not missing, f"neuron layers without an IR node: {sorted(missing)}"

    def differ(ours: np.ndarray, theirs: np.ndarray, spiking: bool) -> int:
        assert ours.shape == theirs.shape
        if spiking:
            return int((ours != theirs).sum())
        return int((~np.isclose(ours, theirs, rtol=1e-5, atol=1e-5)).sum())

    counts = {path: differ(result.recorded[node].numpy(), reference[f"n:{path}"],
                           graph.nodes[node].spiking) for path, node in layers.items()}
    out_node = graph.nodes[graph.predecessors("output")[0]]
    counts["output"] = differ(result.outputs["output"].numpy(), reference["out"],
                              bool(getattr(out_node, "spiking", False)))
    return counts


@pytest.mark.parametrize("case", nets.CASES)
def test_norse_net_imports_spike_for_spike(case: str, produced: tuple[Path, dict]) -> None:
    folder, manifest = produced
    info = manifest["cases"][case]
    reference = np.load(folder / f"{case}.npz")
    # the network really works: >= 5 % of every spiking layer fires per step, >= 300 spikes
    # out of its last spiking layer (the output, or the layer before a leaky read-out)
    last = list(info["spikes"])[-1]
    harness.check_activity(list(info["rates"].values()), reference[f"n:{last}"], case)
    graph = from_torch(_module(case, folder / f"{case}.pt"), torch.from_numpy(reference["x"]))
    assert graph.dt == 1e-3 and graph.metadata["dt_source"] == "the norse cells' dt"
    assert graph.metadata["torch_stepped"] == (nets.RUN[case] == "stepped")
    kinds = {path: type(graph.nodes[node]).__name__ for path, node in _layers(graph).items()}
    assert kinds == KINDS[case]
    mismatches = _compare(graph, reference)
    assert sum(mismatches.values()) == 0, {k: v for k, v in mismatches.items() if v}


@pytest.fixture(scope="module")
def compressed(produced: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
               ) -> dict[str, tuple[Any, Path]]:
    """Every case compressed to 50 % (SBC, every layer), written back and re-run by norse in
    one driver call: case -> (compressed graph, norse's output file)."""
    folder, _ = produced
    out = tmp_path_factory.mktemp("norse_rerun")
    graphs, args = {}, []
    for case in nets.CASES:
        x = np.load(folder / f"{case}.npz")["x"]
        net = _module(case, folder / f"{case}.pt")
        graph = from_torch(net, torch.from_numpy(x))
        data = Dataset(np.swapaxes(x, 0, 1), None, graph.dt, "norse sample")
        names = [layer.name for layer in graph.synapse_layers()]
        sbc = SBCConfig(sparsity=0.5, layers=tuple(names))
        graphs[case], _ = compress(graph, calibrate(graph, data, config=sbc, layers=names), sbc)
        torch.save(compressed_state_dict(graphs[case], net), out / f"{case}.pt")
        args += [case, out / f"{case}.pt", folder / f"{case}.npz", out / f"{case}.npz"]
    run_driver("rerun", *args)
    return {case: (graphs[case], out / f"{case}.npz") for case in nets.CASES}


@pytest.mark.parametrize("case", nets.CASES)
def test_norse_net_compressed_written_back_and_rerun_in_norse(
        case: str, produced: tuple[Path, dict], compressed: dict[str, tuple[Any, Path]]) -> None:
    folder, _ = produced
    graph, rerun_file = compressed[case]
    weights = [np.asarray(graph.nodes[layer.name].weight) for layer in graph.synapse_layers()]
    sparsity = 1 - sum(np.count_nonzero(w) for w in weights) / sum(w.size for w in weights)
    assert 0.49 <= sparsity <= 0.6
    rerun = np.load(rerun_file)
    mismatches = _compare(graph, rerun)
    assert sum(mismatches.values()) == 0, {k: v for k, v in mismatches.items() if v}
    reference = np.load(folder / f"{case}.npz")
    # a different network: its spikes differ from the dense one's, and it still fires
    assert any(int((rerun[k] != reference[k]).sum()) for k in rerun.files if k != "x")
    assert sum(int(rerun[k].sum()) for k in rerun.files if k.startswith("n:")) > 0


# --------------------------------------------------------------------------- refusals (no env)

def _sample(features: int = 6) -> torch.Tensor:
    return (torch.rand(5, 3, features) < 0.3).float()


@pytest.mark.parametrize("make, message", [
    (lambda: norse.LIFCell(norse.LIFParameters(v_leak=torch.tensor(-0.5))),
     "starts the membrane at v_leak"),
    (lambda: norse.IAFCell(norse.IAFParameters(v_reset=torch.tensor(0.25))),
     "starts the membrane at v_reset"),
    (lambda: norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(2000.0))),
     "dt * tau_mem_inv ranges over [2, 2]"),
    (lambda: norse.LIFRecurrentCell(4, 4, input_weights=torch.ones(4, 4)),
     "input_weights is a plain tensor"),
    (lambda: norse.LSNNCell(), "norse.LSNNCell has no IR mapping"),
])
def test_unmappable_norse_cells_are_refused_by_path_and_type(make: Any, message: str) -> None:
    net = norse.SequentialState(torch.nn.Linear(6, 4), make())
    with pytest.raises(UnsupportedNodeError) as err:
        from_torch(net, _sample())
    text = str(err.value)
    assert message in text and "module '1'" in text and type(net[1]).__name__ in text, text


def test_lifbox_reset_subtract_and_value_map_to_the_ir_resets() -> None:
    subtract = norse.LIFBoxCell(norse.LIFBoxParameters(reset_method=norse.reset_subtract,
                                                       v_th=torch.tensor(0.5)))
    graph = from_torch(norse.SequentialState(torch.nn.Linear(6, 4), subtract), _sample())
    node = graph.nodes["m1"]
    assert node.reset == "subtract" and not node.fires_at_equal
    assert np.allclose(node.v_threshold, 0.5) and np.allclose(node.beta, 0.9)
    assert np.allclose(node.gain, 0.1)
    value = norse.LIFCell(norse.LIFParameters(v_reset=torch.tensor(-0.25)), dt=2e-3)
    graph = from_torch(norse.SequentialState(torch.nn.Linear(6, 4), value), _sample())
    node = graph.nodes["m1"]
    # dt = 2 ms: alpha = 1 - dt * 200, beta = 1 - dt * 100, the graph's dt the cells'
    assert node.reset == "zero" and np.allclose(node.v_reset, -0.25)
    assert np.allclose(node.alpha, 0.6) and np.allclose(node.beta, 0.8) and graph.dt == 2e-3
