"""NIR interop proven by the frameworks themselves: snntorch, norse, rockpool, sinabs and spyx,
each run in its own environment (scripts/make_framework_envs.sh, default ``.fw-venvs/<env>``;
``SBC_FW_VENVS`` points elsewhere) through ``subprocess`` on tests/frameworks/<name>_driver.py.

Producer direction: the framework builds small networks (fixed seeds), writes them with its own
NIR exporter and simulates them itself; ``load_model(path, source=<framework>)`` (the CLI's
``--from``) reads the file and the float simulator must give the same output spikes.
Consumer direction: the bundled MLP and CNN and a magnitude-pruned MLP are written with
``EXPORTERS["nir"](..., nir_for=<framework>)`` (``--nir-for``); the framework's own importer
runs the file and must give the simulator's output spikes.

Comparisons are exact (every spike of every step, sample and neuron). Where a framework's
discrete model cannot be expressed in the IR, the case is ``xfail(strict=True)`` with the reason
(citing the framework's source file), so that a fix shows up as an XPASS.

Every comparison is recorded in a results JSON (``SBC_COMPAT_RESULTS``, default
``build/compat-results.json``), from which scripts/compat_matrix.py renders README's table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch

import sbc_deploy as sd
from sbc_deploy.errors import ExportError
from sbc_deploy.exporters import EXPORTERS
from sbc_deploy.frontends import load_model
from sbc_deploy.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
DRIVERS = ROOT / "tests" / "frameworks"
RESULTS = Path(os.environ.get("SBC_COMPAT_RESULTS", ROOT / "build" / "compat-results.json"))

# framework -> the environment (scripts/make_framework_envs.sh) that runs its driver
ENVS = {"snntorch": "torch", "norse": "torch", "rockpool": "torch", "sinabs": "sinabs",
        "spyx": "spyx"}

# The step that sinabs and spyx count in (their files carry none): any label works, the
# conventions count in steps; 1 ms is the bin width of the event data below.
STEP_LABEL = {"sinabs": 1e-3, "spyx": None}

# Reasons shared by several cases (evidence: the framework's source, cited, and these runs).
_REFRACTORY = ("snntorch 1.0.0 Synaptic/RLeaky reset_mechanism='zero' zero the membrane at the "
               "step after a spike whatever the input (synaptic.py _base_zero, rleaky.py "
               "_base_zero): a one-step refractory period the IR cannot express")
_RESET_AFTER_DECAY = ("the framework subtracts the undecayed threshold at the step after the "
                      "spike, after the decay (snntorch leaky.py _base_sub with reset_delay, "
                      "spyx nn.py LIF); the IR subtracts in the spike's step (beta * threshold "
                      "one step later): not expressible")
_SPYX_CONSUMER = ("spyx 1.0.0 resets by subtraction only, after the decay, and spikes from the "
                  "previous step's membrane: no setting reproduces a zero-reset LIF network")

# (framework, case) -> why the framework's own simulation cannot be reproduced exactly.
PRODUCER_XFAIL: dict[tuple[str, str], str] = {
    ("snntorch", "mlp_cubalif"): _REFRACTORY,
    ("snntorch", "rec_lif"): _REFRACTORY,
    ("snntorch", "mlp_lif_subtract"): _RESET_AFTER_DECAY,
    ("spyx", "mlp_lif"): _RESET_AFTER_DECAY,
    ("spyx", "rec_lif"): _RESET_AFTER_DECAY,
}

# (framework, network) -> why the framework's importer cannot run our export exactly.
CONSUMER_XFAIL: dict[tuple[str, str], str] = {
    ("sinabs", "mlp"): ("sinabs 3.1.3's importer builds MembraneSubtract layers: a zero reset "
                        "cannot be expressed (the *_subtract cases are the closest setting)"),
    ("spyx", "mlp"): _SPYX_CONSUMER,
    ("spyx", "cnn"): _SPYX_CONSUMER,
    ("spyx", "mlp_pruned"): _SPYX_CONSUMER,
}

PRODUCER_CASES: dict[str, tuple[str, ...]] = {
    "snntorch": ("mlp_lif", "mlp_cubalif", "conv_lif", "rec_lif", "mlp_lif_subtract"),
    "norse": ("mlp_lif", "mlp_cubalif", "mlp_if", "conv_lif"),
    "rockpool": ("mlp_cubalif", "mlp_lif"),
    "sinabs": ("mlp_if", "mlp_lif", "conv_if"),
    "spyx": ("mlp_if", "mlp_cubalif", "mlp_lif", "conv_if", "rec_lif"),
}
# What each framework's importer is given. ``*_subtract``: the bundled network read with
# reset="subtract", the closest setting for consumers that cannot reset to zero (sinabs).
# ``own_<case>``: the framework's own network <case> (its export, imported with --from) pruned
# to 50 % by sbc-deploy: rockpool's importer maps no LIF, Flatten or Conv2d (CONSUMER_REFUSED);
# spyx runs every neuron with a one-step delay and a reset after the decay, so only its own IF
# network (whose delays --from spyx makes explicit) can come back exactly.
CONSUMER_NETWORKS: dict[str, tuple[str, ...]] = {
    "snntorch": ("mlp", "cnn", "mlp_pruned"),
    "norse": ("mlp", "cnn", "mlp_pruned"),
    "sinabs": ("mlp", "mlp_subtract", "cnn_subtract", "mlp_pruned_subtract"),
    "spyx": ("mlp", "cnn", "mlp_pruned", "own_mlp_if"),
    "rockpool": ("mlp", "cnn", "own_mlp_cubalif"),
}
# (framework, network) -> what sbc-deploy must refuse on export (ExportError naming the nodes).
CONSUMER_REFUSED: dict[tuple[str, str], str] = {
    ("rockpool", "mlp"): "rockpool 3.1.0's importer maps no LIF and no Flatten",
    ("rockpool", "cnn"): "rockpool 3.1.0's importer maps no LIF, Flatten, Conv2d or pooling",
}
CONSUMER_SAMPLES = 4

_records: list[dict[str, Any]] = []


# --------------------------------------------------------------------------- running frameworks


def env_python(framework: str) -> Path:
    """The interpreter of ``framework``'s environment; skips the test when it is absent."""
    base = Path(os.environ.get("SBC_FW_VENVS", ROOT / ".fw-venvs"))
    python = base / ENVS[framework] / "bin" / "python"
    if not python.exists():
        pytest.skip(f"the {ENVS[framework]} framework environment ({python.parent.parent}) is "
                    "absent; create it with scripts/make_framework_envs.sh (CI does)")
    return python


def run_driver(framework: str, *args: str | Path) -> None:
    driver = DRIVERS / f"{framework}_driver.py"
    done = subprocess.run([str(env_python(framework)), str(driver), *map(str, args)],
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        raise AssertionError(f"{framework} driver {args[0]} failed (exit {done.returncode}):\n"
                             f"{done.stderr[-4000:]}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("frameworks")


_produced: dict[str, dict[str, Any]] = {}


def produced(framework: str, workdir: Path) -> dict[str, Any]:
    """Run ``framework``'s driver ``produce`` once; its manifest (cases, versions)."""
    if framework not in _produced:
        outdir = workdir / f"produced_{framework}"
        run_driver(framework, "produce", outdir)
        manifest = json.loads((outdir / "manifest.json").read_text())
        manifest["folder"] = outdir
        _produced[framework] = manifest
    return _produced[framework]


def output_spikes(graph: sd.Graph, x: np.ndarray) -> np.ndarray:
    """The float simulator's spikes at the graph's only output, ``[T, B, *shape]``."""
    outputs = simulate(graph, torch.as_tensor(x, dtype=torch.float32)).outputs
    assert len(outputs) == 1, sorted(outputs)
    return next(iter(outputs.values())).numpy()


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    candidate = candidate.reshape(reference.shape)
    differ = reference != candidate
    return {"exact": bool(not differ.any()), "spikes_reference": int(reference.sum()),
            "spikes_candidate": int(candidate.sum()), "differing": int(differ.sum()),
            "entries": int(reference.size)}


def record(**entry: Any) -> None:
    _records.append(entry)


@pytest.fixture(scope="module", autouse=True)
def write_results() -> Iterator[None]:
    """After the module: write every recorded comparison (and the versions) as JSON."""
    yield
    if not _records:
        return
    versions = {fw: m["versions"] for fw, m in _produced.items()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps({"versions": versions, "results": _records}, indent=1))
    tmp.replace(RESULTS)


def _params(table: dict[str, tuple[str, ...]], xfail: dict[tuple[str, str], str]) -> list[Any]:
    params = []
    for framework, names in table.items():
        for name in names:
            reason = xfail.get((framework, name))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(framework, name, marks=marks, id=f"{framework}-{name}"))
    return params


# --------------------------------------------------------------------------- producer direction


@pytest.mark.parametrize(("framework", "case"), _params(PRODUCER_CASES, PRODUCER_XFAIL))
def test_framework_export_imports_with_its_spikes(framework: str, case: str,
                                                  workdir: Path) -> None:
    manifest = produced(framework, workdir)
    entry = next(c for c in manifest["cases"] if c["name"] == case)
    folder: Path = manifest["folder"]
    data = np.load(folder / entry["data"])
    x, reference = data["x"], data["spikes"]
    assert reference.sum() > 0, f"{framework} {case}: the framework's own run has no spikes"
    info = {"framework": framework, "direction": "producer", "network": entry["network"],
            "neuron": entry["neuron"], "case": case,
            "expected_failure": PRODUCER_XFAIL.get((framework, case))}
    try:
        graph = load_model(folder / entry["nir"], source=framework,
                           dt=STEP_LABEL.get(framework))
        result = compare(reference, output_spikes(graph, x))
    except Exception as err:
        record(**info, status="error", error=f"{type(err).__name__}: {err}"[:300])
        raise
    record(**info, status="exact" if result["exact"] else "differs", **result)
    assert result["exact"], (f"{framework} {case}: {result['differing']} of {result['entries']} "
                             f"spike entries differ ({result})")


# --------------------------------------------------------------------------- consumer direction


_networks: dict[str, tuple[sd.Graph, np.ndarray]] = {}


def consumer_network(network: str, workdir: Path) -> tuple[sd.Graph, np.ndarray]:
    """The graph we export as ``network`` and its input ``[T, B, *shape]`` (built once)."""
    if network in _networks:
        return _networks[network]
    bundled = ROOT / "sbc_deploy" / "bundled"
    if network.startswith("own_"):
        framework = {"own_mlp_cubalif": "rockpool", "own_mlp_if": "spyx"}[network]
        manifest = produced(framework, workdir)
        entry = next(c for c in manifest["cases"] if c["name"] == network[len("own_"):])
        graph = load_model(manifest["folder"] / entry["nir"], source=framework)
        graph, _ = sd.compress(graph, None, sd.MagnitudeConfig(sparsity=0.5))
        x = np.load(manifest["folder"] / entry["data"])["x"]
    else:
        base, _, variant = network.partition("_")
        reset = "subtract" if variant.endswith("subtract") else None
        graph = load_model(bundled / f"nmnist_{base}.nir", reset=reset)
        if variant.startswith("pruned"):
            graph, _ = sd.compress(graph, None, sd.MagnitudeConfig(sparsity=0.5))
        data = sd.load_data(bundled / "nmnist_eval.npz")
        x = np.ascontiguousarray(np.swapaxes(data.x[:CONSUMER_SAMPLES], 0, 1))
    _networks[network] = (graph, x.astype(np.float32))
    return _networks[network]


_consumed: dict[str, dict[str, Any]] = {}


def consumed(framework: str, workdir: Path) -> dict[str, Any]:
    """Export every consumer network of ``framework`` (``--nir-for``) and run them all in one
    process of its driver; per network: ``{"spikes" | "error", "versions"}``."""
    if framework in _consumed:
        return _consumed[framework]
    folder = workdir / f"consumed_{framework}"
    folder.mkdir(exist_ok=True)
    results: dict[str, Any] = {}
    argv: list[Path] = []
    for network in CONSUMER_NETWORKS[framework]:
        if (framework, network) in CONSUMER_REFUSED:
            continue
        graph, x = consumer_network(network, workdir)
        model = folder / f"{network}.nir"
        try:
            EXPORTERS["nir"](graph, model, steps=x.shape[0], nir_for=framework)
        except Exception as err:
            results[network] = {"error": f"{type(err).__name__}: {err}"}
            continue
        np.savez(folder / f"{network}_in.npz", x=x)
        argv += [model, folder / f"{network}_in.npz", folder / f"{network}_out.npz"]
    if argv:
        run_driver(framework, "consume", *argv)
    for output in argv[2::3]:
        with np.load(output) as stored:
            entry = {"versions": json.loads(str(stored["versions"]))}
            if "error" in stored.files:
                entry["error"] = str(stored["error"])
            else:
                entry["spikes"] = stored["spikes"]
        results[output.name[:-len("_out.npz")]] = entry
    _consumed[framework] = results
    return results


@pytest.mark.parametrize(("framework", "network"), _params(CONSUMER_NETWORKS, CONSUMER_XFAIL))
def test_framework_runs_our_export_with_our_spikes(framework: str, network: str,
                                                   workdir: Path) -> None:
    env_python(framework)
    graph, x = consumer_network(network, workdir)
    refused = CONSUMER_REFUSED.get((framework, network))
    if refused:
        with pytest.raises(ExportError, match=f"--nir-for {framework}") as caught:
            EXPORTERS["nir"](graph, workdir / f"refused_{framework}_{network}.nir",
                             steps=x.shape[0], nir_for=framework)
        record(framework=framework, direction="consumer", network=network, neuron="LIF",
               case=network, status="refused", expected_failure=refused,
               error=str(caught.value)[:300])
        return
    reference = output_spikes(graph, x)
    assert reference.sum() > 0, f"{network}: the simulator's run has no output spikes"
    run = consumed(framework, workdir)[network]
    neuron = {"own_mlp_cubalif": "CubaLIF", "own_mlp_if": "IF"}.get(network, "LIF")
    info = {"framework": framework, "direction": "consumer", "network": network,
            "neuron": neuron, "case": network, "versions": run.get("versions"),
            "expected_failure": CONSUMER_XFAIL.get((framework, network))}
    if "error" in run:
        record(**info, status="error", error=run["error"][-300:])
        raise AssertionError(f"{framework} cannot run our {network}:\n{run['error']}")
    result = compare(reference, run["spikes"])
    record(**info, status="exact" if result["exact"] else "differs", **result)
    assert result["exact"], (f"{framework} runs our {network}: {result['differing']} of "
                             f"{result['entries']} spike entries differ ({result})")


# --------------------------------------------------------------------------- sinabs IF-CNN

SINABS_CNN = ROOT / "tests" / "data" / "sinabs_if_cnn"  # examples/train_sinabs_cnn.py
SINABS_EVAL, SINABS_STEPS = 100, 100  # test digits, 1 ms steps (the training window)


@pytest.fixture(scope="module")
def sinabs_events(workdir: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """mnist-dvs test digits (not seen in training) binned at 1 ms: ``(npz, x [N, T, ...], y)``."""
    data = sd.load_data("mnist-dvs:test", dt=1e-3, limit=SINABS_EVAL)
    x = np.ascontiguousarray(data.x[:, :SINABS_STEPS])
    path = workdir / "sinabs_events.npz"
    np.savez(path, x=x, y=data.y, dt=1e-3)
    return path, x, np.asarray(data.y)


@pytest.fixture(scope="module")
def sinabs_run(sinabs_events: tuple[Path, np.ndarray, np.ndarray], workdir: Path) -> np.ndarray:
    """The trained sinabs IF-CNN run by sinabs itself: output spikes ``[T, N, 10]``."""
    out = workdir / "sinabs_cnn_out.npz"
    run_driver("sinabs", "evaluate", SINABS_CNN.with_suffix(".pt"), sinabs_events[0], out)
    return np.load(out)["spikes"]


def test_sinabs_if_cnn_imported_from_sinabs_keeps_its_accuracy(
        sinabs_events: tuple[Path, np.ndarray, np.ndarray], sinabs_run: np.ndarray) -> None:
    _, x, y = sinabs_events
    graph = load_model(SINABS_CNN.with_suffix(".nir"), source="sinabs", dt=1e-3)
    ours = output_spikes(graph, np.swapaxes(x, 0, 1).astype(np.float32))
    result = compare(sinabs_run, ours)
    sinabs_accuracy = float((sinabs_run.sum(0).argmax(1) == y).mean())
    our_accuracy = float((ours.sum(0).argmax(1) == y).mean())
    record(framework="sinabs", direction="producer", network="conv", neuron="IF",
           case=f"trained IF-CNN, {SINABS_EVAL} digits at 1 ms (accuracy {our_accuracy:.2f})",
           status="exact" if result["exact"] else "differs", expected_failure=None, **result)
    assert sinabs_accuracy >= 0.4, f"sinabs' own accuracy {sinabs_accuracy} is near chance"
    assert our_accuracy == sinabs_accuracy
    assert result["exact"], result


def test_sinabs_if_cnn_compresses_through_the_cli(
        sinabs_events: tuple[Path, np.ndarray, np.ndarray], sinabs_run: np.ndarray,
        workdir: Path) -> None:
    """``sbc-deploy --from sinabs --dt 0.001 --target speck`` (sinabs' chip: IF with subtract
    reset) compresses it, fits, exits 0 and reports sinabs' accuracy for the dense network."""
    events, _, y = sinabs_events
    out = workdir / "sinabs_deploy"
    done = subprocess.run(
        [sys.executable, "-m", "sbc_deploy", str(SINABS_CNN.with_suffix(".nir")), "--from",
         "sinabs", "--dt", "0.001", "--target", "speck", "--calib", str(events), "--eval",
         str(events), "-o", str(out), "--export", "nir", "--nir-for", "sinabs", "--quiet"],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["accuracy"]["dense_float"] == float((sinabs_run.sum(0).argmax(1) == y).mean())
    assert report["accuracy"]["compressed_float"] >= report["accuracy"]["dense_float"] - 0.05
    # speck keeps integer thresholds: sinabs' trained thresholds are rounded (warnings only)
    assert [v for v in report["violations"] if v["severity"] != "warning"] == []
    assert (out / "model.nir").exists()


# --------------------------------------------------------------------------- the README matrix


def test_compat_matrix_renders_results_between_the_readme_markers(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("compat_matrix",
                                                  ROOT / "scripts" / "compat_matrix.py")
    matrix = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(matrix)  # type: ignore[union-attr]
    data = {"versions": {"norse": {"norse": "1.1.0", "nir": "1.0.8"}}, "results": [
        {"framework": "norse", "direction": "consumer", "network": "mlp", "neuron": "LIF",
         "case": "mlp", "status": "exact", "spikes_reference": 7, "differing": 0,
         "entries": 9, "expected_failure": None},
        {"framework": "norse", "direction": "producer", "network": "mlp", "neuron": "IF",
         "case": "mlp_if", "status": "differs", "spikes_reference": 3, "differing": 2,
         "entries": 9, "expected_failure": "a | reason"}]}
    table = matrix.render(data)
    rows = [line for line in table.splitlines() if line.startswith("| norse")]
    assert rows == [
        "| norse 1.1.0 (nir 1.0.8) | its export -> `--from` | mlp_if (mlp, IF) | "
        "differs (2 of 9 entries differ): a \\| reason |",
        "| norse 1.1.0 (nir 1.0.8) | `--nir-for` -> its import | bundled MLP | exact (7 spikes) |"]
    assert table.startswith("1 of 2 cases spike-for-spike exact")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{matrix.START}\nold\n{matrix.END}\ntail\n")
    results = tmp_path / "results.json"
    results.write_text(json.dumps(data))
    assert matrix.main([str(results), "--readme", str(readme), "--check"]) == 1
    assert matrix.main([str(results), "--readme", str(readme)]) == 0
    assert readme.read_text() == f"intro\n{matrix.START}\n{table}\n{matrix.END}\ntail\n"
    assert matrix.main([str(results), "--readme", str(readme), "--check"]) == 0
