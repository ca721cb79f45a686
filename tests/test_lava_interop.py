"""Lava interop: lava-dl's own netx reader and Lava's fixed-point simulator run netx files.

These tests run in the main environment and call the separate Lava environment
(``scripts/make_lava_env.sh``, default ``.lava-venv``; ``SBC_LAVA_VENV`` points elsewhere) through
``subprocess`` on tests/lava/run_netx.py, which loads a file with
``lava.lib.dl.netx.hdf5.Network`` and runs it in ``Loihi2SimCfg(select_tag="fixed_pt")``. They
skip, saying so, when that environment is absent.

Timing. Lava's Dense and Conv synapses deliver one step late, so the spikes of the ``k``-th
block appear ``k`` steps (synapses passed) after the IR's float simulator emits them; an input
block (a first ``input`` layer with neurons) has no synapse and no delay. :func:`lava_lag` gives
the shift.

tinynet alignment (lava-dl's ``test_tinynet``). The ground truth comes from SLAYER, with no
synaptic delay, for an input block driven only by its bias (``input_bias.npy``, ``(W, H, C)``
order, the image already through the block's transform; no input spikes). lava-dl resets each
block's ``u`` and ``v`` after Lava step ``t`` when ``(t - 1) % 17 == (i - 1) % 17`` (block
``i``), which starts each block when the first data reaches it; without those resets the biases
of the conv blocks integrate from step 1 and 46 output spikes differ. With them, output row ``t``
(Lava step ``t + 1``) equals ground-truth index ``t - 1`` for ``t = 2..16``: SLAYER's index ``k``
is Lava's row ``k - 1 + i`` for block ``i`` (the input block's row ``t`` equals ``input.npy``
index ``t + 1``), and the ground truth's first output step is empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np
import pytest
import torch
from conftest import fixture_path
from test_to_netx import UNIT, encoded, pooled_graph, quantized, run_float

from sbc_deploy.exporters.to_netx import to_netx
from sbc_deploy.frontends.from_netx import from_netx
from sbc_deploy.frontends.from_nir import from_nir
from sbc_deploy.ir import IF, Affine, Delay, Flatten, Graph, Input, Output, Scale

pytestmark = pytest.mark.lava

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tests" / "lava" / "run_netx.py"
OXFORD_STEPS = 2000
OXFORD_REEXPORT_STEPS = 500
OXFORD_LAVA_SPIKES = 9565  # fixtures/SOURCES.md: Lava's fixed-point run of the oxford tutorial


# --------------------------------------------------------------------------- running Lava


def lava_python() -> Path:
    """The Lava environment's interpreter; skips the test when the environment is absent."""
    venv = Path(os.environ.get("SBC_LAVA_VENV", ROOT / ".lava-venv"))
    python = venv / "bin" / "python"
    if not python.exists():
        pytest.skip(f"the Lava environment {venv} is absent; create it with "
                    "scripts/make_lava_env.sh (CI does)")
    return python


def run_lava_batch(jobs: Sequence[tuple[Path, np.ndarray, dict[str, Any]]], folder: Path
                   ) -> list[dict[str, np.ndarray]]:
    """Run several netx files in one Lava process (saves its start-up time).

    Args:
        jobs: ``(netx_path, spikes [T, *input_shape], options)``; options are ``steps``,
            ``input_bias`` and ``reset_interval`` of tests/lava/run_netx.py.
        folder: where to put the exchange files.

    Returns:
        Per job: ``{"output": [steps, *out_shape], "layer_<i>": ...}`` spikes (Lava block ``i``).
    """
    python = lava_python()
    argv: list[str] = []
    outputs = []
    for index, (path, spikes, options) in enumerate(jobs):
        inputs, out = folder / f"lava_in_{index}.npz", folder / f"lava_out_{index}.npz"
        np.savez(inputs, spikes=np.asarray(spikes, dtype=np.int32),
                 **{k: np.asarray(v) for k, v in options.items()})
        argv += [str(path), str(inputs), str(out)]
        outputs.append(out)
    done = subprocess.run([str(python), str(RUNNER), *argv], capture_output=True, text=True,
                          timeout=900, check=False)
    if done.returncode != 0:
        raise AssertionError(f"Lava failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    results = []
    for out in outputs:
        with np.load(out) as stored:
            results.append({key: stored[key] for key in stored.files})
    return results


def run_lava(netx_path: str | Path, spikes: np.ndarray, **options: Any) -> np.ndarray:
    """Output spikes ``[T, *output_shape]`` of ``netx_path`` run in Lava's fixed-point simulator.

    ``spikes`` is ``[T, *input_shape]`` in the file's (C, H, W) / (N,) order; row ``t`` of the
    result is Lava step ``t + 1``. Options as :func:`run_lava_batch`. This is the reference the
    integer core (sbc_deploy/sim/int_core.py) is compared with, spike for spike.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sbc-lava-") as folder:
        return run_lava_batch([(Path(netx_path), spikes, options)], Path(folder))[0]["output"]


def aligned(path: Path, steps: int) -> dict[str, int]:
    """run_netx options that start each block when the first data reaches it (one reset after
    Lava step ``lag``), so that biases do not integrate before the input arrives."""
    with h5py.File(path, "r") as f:
        input_block = f["layer/0/type"][0] == b"input" and "neuron" in f["layer/0"]
    return {"steps": steps, "reset_interval": steps + 1, "reset_offset": 0 if input_block else 1}


def lava_lag(path: Path) -> list[int]:
    """Steps by which each Lava block trails the IR: the synapses passed up to that block."""
    lags, synapses = [], 0
    with h5py.File(path, "r") as f:
        for i in range(len(f["layer"])):
            layer = f["layer"][str(i)]
            kind = layer["type"][0].decode()
            if kind in ("dense", "dense_rec", "conv"):
                synapses += 1
                lags.append(synapses)
            elif kind == "input" and "neuron" in layer:
                lags.append(0)
    return lags


def assert_spikes_close(reference: np.ndarray, candidate: np.ndarray) -> None:
    """oxford's tolerance (fixtures/SOURCES.md): per-neuron spike-count correlation >= 0.99 and
    total count within 6 %."""
    ref = reference.reshape(reference.shape[0], -1).sum(0).astype(np.float64)
    got = candidate.reshape(candidate.shape[0], -1).sum(0).astype(np.float64)
    assert ref.sum() > 0, "the reference has no spikes"
    assert abs(got.sum() - ref.sum()) <= 0.06 * ref.sum(), (got.sum(), ref.sum())
    assert np.corrcoef(ref, got)[0, 1] >= 0.99


def oxford_spikes() -> np.ndarray:
    """oxford's input events (neuron, channel, time in ms) as [2000, 200] spikes: SLAYER's
    ``read_np_spikes`` + ``to_tensor`` (1 ms bins, times rounded, OR binning)."""
    events = np.load(fixture_path("netx", "oxford", "input.npy"))
    spikes = np.zeros((OXFORD_STEPS, 200), dtype=np.int8)
    steps = np.rint(events[:, 2]).astype(int)
    keep = steps < OXFORD_STEPS
    spikes[steps[keep], events[keep, 0].astype(int)] = 1
    return spikes


@pytest.fixture(scope="module")
def lava_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    lava_python()
    yield tmp_path_factory.mktemp("lava")


# --------------------------------------------------------------------------- tinynet


@pytest.fixture(scope="module")
def tinynet_runs(lava_folder: Path) -> dict[str, dict[str, np.ndarray]]:
    original = fixture_path("netx", "tinynet", "tiny.net")
    reexport = to_netx(from_netx(original), lava_folder / "tiny_reexport.net")
    bias = np.load(fixture_path("netx", "tinynet", "input_bias.npy")).transpose(2, 1, 0)
    options = {"input_bias": bias, "reset_interval": 17}
    spikes = np.zeros((20, 3, 16, 16), dtype=np.int8)
    runs = run_lava_batch([(original, spikes, options), (reexport, spikes, options)],
                          lava_folder)
    return {"original": runs[0], "reexport": runs[1]}


@pytest.mark.slow
def test_lava_reproduces_tinynet_ground_truth(tinynet_runs: dict[str, Any]) -> None:
    run = tinynet_runs["original"]
    truth = np.moveaxis(np.load(fixture_path("netx", "tinynet", "output.npy"))[0], -1, 0)
    assert truth.shape == (16, 36, 1, 1) and run["output"].shape == (20, 36, 1, 1)
    np.testing.assert_array_equal(run["output"][2:17], truth[1:])
    assert truth[1:].sum() == 92 and truth[0].sum() == 0
    layer0 = np.moveaxis(np.load(fixture_path("netx", "tinynet", "input.npy"))[0], -1, 0)
    np.testing.assert_array_equal(run["layer_0"][0:15], layer0[1:16])  # the input block


@pytest.mark.slow
def test_tinynet_reexport_runs_identically_in_lava(tinynet_runs: dict[str, Any]) -> None:
    original, reexport = tinynet_runs["original"], tinynet_runs["reexport"]
    assert sorted(original) == sorted(reexport)
    for key in original:
        np.testing.assert_array_equal(reexport[key], original[key], err_msg=key)


# --------------------------------------------------------------------------- oxford


def compressed_oxford(spikes: np.ndarray) -> Graph:
    """oxford compressed by the project: SBC onto an 8-bit int_exp grid, calibrated on its input."""
    from sbc_deploy.calibrate import calibrate
    from sbc_deploy.compress import SBCConfig, compress

    graph = from_netx(fixture_path("netx", "oxford", "network.net"))
    config = SBCConfig(sparsity=0.0, bits=8, grid="int_exp")
    small, _ = compress(graph, calibrate(graph, spikes[None].astype(np.float32), config=config),
                        config)
    return small


@pytest.fixture(scope="module")
def oxford_runs(lava_folder: Path) -> dict[str, dict[str, np.ndarray]]:
    original = fixture_path("netx", "oxford", "network.net")
    reexport = to_netx(from_netx(original), lava_folder / "oxford_reexport.net")
    compressed = to_netx(compressed_oxford(oxford_spikes()), lava_folder / "oxford_sbc8.net")
    # the re-export runs the first 500 steps only (Lava is causal): it saves half a minute
    runs = run_lava_batch([(original, oxford_spikes(), {}),
                           (reexport, oxford_spikes()[:OXFORD_REEXPORT_STEPS], {}),
                           (compressed, oxford_spikes(), {})], lava_folder)
    return {"original": runs[0], "reexport": runs[1], "compressed": runs[2],
            "compressed_path": compressed}


@pytest.mark.slow
def test_lava_on_oxford_gives_the_tutorial_spike_count(oxford_runs: dict[str, Any]) -> None:
    output = oxford_runs["original"]["output"]
    truth = np.load(fixture_path("netx", "oxford", "ground_truth.npy"))
    truth_counts = np.bincount(truth[:, 0].astype(int), minlength=200)
    # measured here: 9,632 spikes (SOURCES.md quotes 9,565), correlation 0.997
    assert abs(int(output.sum()) - OXFORD_LAVA_SPIKES) <= 0.01 * OXFORD_LAVA_SPIKES
    assert np.corrcoef(truth_counts, output.sum(0))[0, 1] >= 0.99
    assert_spikes_close(np.asarray(truth_counts)[None], output)


@pytest.mark.slow
def test_oxford_reexport_runs_identically_in_lava(oxford_runs: dict[str, Any]) -> None:
    reexport = oxford_runs["reexport"]
    assert reexport["output"].sum() > 1000
    for key, spikes in oxford_runs["original"].items():
        np.testing.assert_array_equal(reexport[key], spikes[:OXFORD_REEXPORT_STEPS], err_msg=key)


@pytest.mark.slow
def test_compressed_oxford_runs_in_lava_within_tolerance(oxford_runs: dict[str, Any]) -> None:
    """The project's compressed export (SBC, 8-bit int_exp mantissas, written in a coarser unit
    because netx has no weight exponent) against Lava on lava-dl's file: oxford's tolerance.
    Measured: 9,739 vs 9,632 spikes, per-neuron correlation 0.991."""
    with h5py.File(oxford_runs["compressed_path"], "r") as f, \
            h5py.File(fixture_path("netx", "oxford", "network.net"), "r") as g:
        assert not np.array_equal(f["layer/0/weight"][()], g["layer/0/weight"][()])
    assert_spikes_close(oxford_runs["original"]["output"], oxford_runs["compressed"]["output"])


# --------------------------------------------------------------------------- mnist classifiers


MNIST = (("mnist_small", "network.net"), ("mnist_bootstrap", "network.net"))


@pytest.fixture(scope="module")
def mnist_runs(lava_folder: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    spikes = (np.random.default_rng(7).random((30, 784)) < 0.15).astype(np.int8)
    jobs = []
    for folder, name in MNIST:
        original = fixture_path("netx", folder, name)
        reexport = to_netx(from_netx(original), lava_folder / f"{folder}_reexport.net")
        jobs += [(original, spikes, {}), (reexport, spikes, {})]
    runs = run_lava_batch(jobs, lava_folder)
    return {folder: (runs[2 * i], runs[2 * i + 1]) for i, (folder, _) in enumerate(MNIST)}


@pytest.mark.slow
@pytest.mark.parametrize("folder", [folder for folder, _ in MNIST])
def test_mnist_reexports_run_identically_in_lava(folder: str, mnist_runs: dict[str, Any]
                                                 ) -> None:
    original, reexport = mnist_runs[folder]
    hidden = [key for key in original if key.startswith("layer_")][:-1]
    assert sum(int(original[key].sum()) for key in hidden) > 100  # not a silent network
    for key in original:
        np.testing.assert_array_equal(reexport[key], original[key], err_msg=key)


# --------------------------------------------------------------------------- our rewrites in Lava


def recurrent_graph(rng: np.random.Generator) -> Graph:
    """Input(8) -> Affine -> IF(6) with a recurrent Affine onto itself (netx dense_rec)."""
    nodes = {"in": Input((8,)), "fc": Affine(**encoded(rng.integers(-4, 9, (6, 8)))),
             "rec": Affine(**encoded(rng.integers(-8, 5, (6, 6)))),
             "lif": IF(v_threshold=np.full(6, 12 * UNIT)), "out": Output((6,))}
    edges = (("in", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "out"))
    return Graph(nodes, edges, 1e-3)


def delay_block_graph(rng: np.random.Generator) -> Graph:
    """Input -> Scale -> IF (an input block with bias) -> Delay -> Affine -> Delay -> IF."""
    return Graph.chain([
        ("in", Input((6,))), ("gain", Scale(np.full(6, 40 * UNIT))),
        ("if0", IF(v_threshold=np.full(6, 50 * UNIT), bias=np.full(6, 3 * UNIT))),
        ("d_in", Delay(np.array([0, 1, 2, 0, 5, 3]))),
        ("fc", Affine(**encoded(rng.integers(-5, 12, (5, 6))))),
        ("d_out", Delay(np.array([0, 4, 0, 1, 2]))),
        ("if1", IF(v_threshold=np.full(5, 10 * UNIT))), ("out", Output((5,)))], dt=1e-3)


def flat_input_graph(rng: np.random.Generator) -> Graph:
    """Input(2, 5, 4) -> Flatten -> Affine -> IF: (C, H, W) spikes into a dense first layer."""
    return Graph.chain([
        ("in", Input((2, 5, 4))), ("flat", Flatten((2, 5, 4))),
        ("fc", Affine(**encoded(rng.integers(-3, 6, (7, 40))))),
        ("if", IF(v_threshold=np.full(7, 9 * UNIT), bias=np.full(7, UNIT))),
        ("out", Output((7,)))], dt=1e-3)


def scnn_graph() -> Graph:
    """The real snntorch conv net of fixtures/nir, quantized (unit gains: see test_to_netx)."""
    imported = from_nir(fixture_path("nir", "scnn_mnist_snntorch.nir"), dt=1e-3, reset="zero")
    return quantized(imported.replace_nodes({
        name: node.replace(gain=np.ones(node.shape)) for name, node in imported.nodes.items()
        if isinstance(node, IF)}))


def nmnist_frames(steps: int) -> np.ndarray:
    from sbc_deploy.data.events import bin_events
    from sbc_deploy.data.nmnist import read_nmnist_bin

    events = read_nmnist_bin(fixture_path("events", "sample_nmnist.bin"))
    return bin_events(events, dt=5e-3)[:steps].astype(np.int8)


REWRITES = ("pools", "recurrent", "delays_and_input_block", "flat_input", "scnn")


@pytest.fixture(scope="module")
def rewrite_runs(lava_folder: Path) -> dict[str, tuple[Graph, Path, np.ndarray, dict]]:
    rng = np.random.default_rng(3)
    cases = {
        "pools": (pooled_graph(rng), (rng.random((30, 2, 20, 20)) < 0.3).astype(np.int8)),
        "recurrent": (recurrent_graph(rng), (rng.random((40, 8)) < 0.3).astype(np.int8)),
        "delays_and_input_block": (delay_block_graph(rng),
                                   (rng.random((40, 6)) < 0.3).astype(np.int8)),
        "flat_input": (flat_input_graph(rng), (rng.random((30, 2, 5, 4)) < 0.3).astype(np.int8)),
        "scnn": (scnn_graph(), nmnist_frames(25)),
    }
    jobs, planned = [], {}
    for name, (graph, spikes) in cases.items():
        path = to_netx(graph, lava_folder / f"{name}.net")
        jobs.append((path, spikes, aligned(path, spikes.shape[0])))
        planned[name] = (graph, path, spikes)
    runs = run_lava_batch(jobs, lava_folder)
    return {name: (*planned[name], runs[i]) for i, name in enumerate(cases)}


@pytest.mark.slow
@pytest.mark.parametrize("case", REWRITES)
def test_exported_rewrites_run_in_lava_as_the_float_simulator_predicts(
        case: str, rewrite_runs: dict[str, Any]) -> None:
    """IF neurons and integer weights make the float simulator exact: Lava on the exported file
    (pools folded into convs and dense weights, dense_rec, delays, the input block's transform
    and bias) must give the float simulator's spikes on the IR, delayed by one step per synapse."""
    graph, path, spikes, lava = rewrite_runs[case]
    simulated = run_float(graph, spikes.astype(np.float64))
    neurons = [n for n in graph.topological_order if n in simulated]
    blocks = sorted((k for k in lava if k.startswith("layer_")), key=lambda k: int(k[6:]))
    assert len(blocks) == len(neurons) == len(lava_lag(path))
    steps = spikes.shape[0]
    for block, neuron, lag in zip(blocks, neurons, lava_lag(path)):
        np.testing.assert_array_equal(lava[block][lag:], simulated[neuron][:steps - lag],
                                      err_msg=f"{block} vs {neuron} (lag {lag})")
        assert simulated[neuron][:steps - lag].sum() > 0, neuron  # every layer is active


@pytest.mark.slow
def test_run_lava_helper_returns_the_output_spikes(lava_folder: Path) -> None:
    """The one-call helper the integer core's comparison uses."""
    graph = recurrent_graph(np.random.default_rng(11))
    path = to_netx(graph, lava_folder / "helper.net")
    spikes = (np.random.default_rng(12).random((20, 8)) < 0.4).astype(np.int8)
    output = run_lava(path, spikes)
    expected = run_float(graph, spikes.astype(np.float64))["lif"]
    assert output.shape == (20, 6) and output.sum() > 0
    assert not output[0].any()  # no bias: nothing before the first synaptic step
    np.testing.assert_array_equal(output[1:], expected[:-1])


def test_lava_environment_is_separate_from_the_main_one() -> None:
    """The recipe's point: Lava has numpy < 2 in its venv, the main environment keeps numpy 2."""
    python = lava_python()
    code = "import numpy, torch; print(numpy.__version__, torch.__version__)"
    versions = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                              check=True).stdout.split()
    assert versions[0].startswith("1.") and versions[1].startswith("2.13.0")
    assert int(np.__version__.split(".")[0]) >= 2 and sys.executable != str(python)
    assert torch.__version__.startswith("2.13.0")
