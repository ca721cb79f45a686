"""NIR interop proven by the frameworks themselves: snntorch, norse, rockpool, sinabs and spyx,
each run in its own environment (scripts/make_framework_envs.sh, default ``.fw-venvs/<env>``;
``SBC_FW_VENVS`` points elsewhere) through ``subprocess`` on tests/frameworks/<name>_driver.py
(tests/frameworks/harness.py has the shared machinery).

Real activity: every network is a 100-64-10 MLP, a Conv-Pool-Linear net on 2x16x16 or a
100-64(recurrent)-10 net run for 50 steps on 8 samples (tests/frameworks/_common.py builds the
weights), and every case asserts that it works -- >= 5 % of the neurons of every spiking layer
fire per step, >= 300 output spikes -- so that a silent network fails instead of passing.

Producer direction: the framework builds the networks with its default settings and with the
non-default ones the README mentions, writes them with its own NIR exporter and simulates them
itself; ``load_model(path, source=<framework>[:<options>], reset=...)`` (the CLI's ``--from``)
reads the file and the float simulator must give the same output spikes. Settings a NIR file
cannot carry are given as the framework's convention options (``PRODUCERS``).
Consumer direction: networks built in the IR (the same weights) are written with
``EXPORTERS["nir"](..., nir_for=<framework>)`` (``--nir-for``), after
:func:`~sbc_deploy.exporters.nir_consumers.consumer_model` has put them into the model the
framework's importer builds (multi-spike neurons, sinabs' IF clamp, spyx's late spikes), which
is what ``--nir-for`` does in the pipeline before calibration; the framework's own importer runs
the file and must give the simulator's output spikes. What a framework's importer cannot build
is refused on export, with the reason (``CONSUMER_REFUSED``). The bundled N-MNIST networks
(``BUNDLED``) are consumer cases too, on real recordings with their own activity.

Comparisons are exact (every spike of every step, sample and neuron). Where a framework's
discrete model cannot be reproduced, the case is ``xfail(strict=True)`` with the reason, so that
a fix shows up as an XPASS. Every comparison is recorded (spikes, differing entries, per-layer
firing rates) in ``build/compat-results/test_framework_interop.json``, from which
scripts/compat_matrix.py renders README's table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch

import sbc_deploy as sd
from sbc_deploy import bundled
from sbc_deploy.errors import ConfigError, ExportError, SbcDeployError
from sbc_deploy.exporters import EXPORTERS
from sbc_deploy.frontends import load_model
from sbc_deploy.ir import (
    IF,
    LIF,
    Affine,
    AvgPool2d,
    Conv2d,
    CubaLIF,
    Flatten,
    Graph,
    Input,
    Node,
    Output,
    SumPool2d,
)
from sbc_deploy.sim import simulate

sys.path.insert(0, str(Path(__file__).parent / "frameworks"))
import _common as nets  # noqa: E402  (numpy only: the networks every driver builds)
from frameworks.harness import (  # noqa: E402
    ROOT,
    Results,
    check_activity,
    compare,
    env_python,
    layer_rates,
    run_driver,
    shutdown,
)

RESULTS = Results("test_framework_interop")

# The step that sinabs and spyx count in (their files carry none): any label works, the
# conventions count in steps.
STEP_LABEL = {"sinabs": 1e-3, "spyx": None}

# framework -> case -> how ``--from`` reads it: ``options`` (the convention's options for what
# the file cannot say), ``reset`` (``--reset``), ``source`` (None: auto-detection).
PRODUCERS: dict[str, dict[str, dict[str, Any]]] = {
    "snntorch": {
        "mlp_leaky": {},
        "mlp_leaky_zero": {"reset": "zero"},
        "mlp_leaky_nodelay": {"options": "reset_delay=false"},
        "mlp_leaky_beta1": {},
        "mlp_synaptic": {},
        "mlp_synaptic_zero": {"reset": "zero"},
        "conv_leaky": {},
        "rec_rleaky": {},
        "rec_rleaky_zero": {"reset": "zero"},
        "rec_rsynaptic": {},
    },
    "norse": {
        "mlp_lifbox": {}, "mlp_lif": {}, "mlp_iaf": {}, "conv_lifbox": {},
        "mlp_lifbox_batched": {},
    },
    "sinabs": {
        "mlp_iaf": {}, "mlp_iaf_single": {"options": "spike_fn=single"},
        "mlp_iaf_clamped": {"options": "min_v_mem=-1"}, "mlp_iaf_zero": {"reset": "zero"},
        "mlp_lif": {}, "mlp_lif_plain": {"options": "spike_fn=single,norm_input=false"},
        "conv_iaf": {}, "conv_iaf_single": {"options": "spike_fn=single"},
    },
    "rockpool": {
        "mlp_lif": {}, "mlp_lif_single": {"options": "max_spikes_per_dt=1"},
        "mlp_lifneuron": {},
    },
    "spyx": {
        "mlp_if": {}, "mlp_lif": {}, "mlp_lif_beta": {}, "mlp_cubalif": {}, "conv_if": {},
        "rec_rlif": {},
    },
}

# (framework, case) -> why the framework's own simulation cannot be reproduced exactly.
PRODUCER_XFAIL: dict[tuple[str, str], str] = {}


# --------------------------------------------------------------------------- IR networks

DT = 1e-3
BETA, ALPHA = 0.9, 0.8


def _neuron(kind: str, shape: tuple[int, ...], reset: str) -> Node:
    ones = np.ones(shape)
    if kind == "IF":
        return IF(v_threshold=ones, reset=reset)
    if kind == "CubaLIF":
        return CubaLIF(alpha=ones * ALPHA, beta=ones * BETA, v_threshold=ones, reset=reset)
    return LIF(beta=ones * BETA, v_threshold=ones, reset=reset)


def _graph(nodes: dict[str, Node], edges: list[tuple[str, str]]) -> Graph:
    return Graph(nodes, tuple(edges), DT, {"discretization": "euler", "source_format": "test"})


def ir_mlp(kind: str, reset: str, seed: int, gain: float) -> Graph:
    (w1, b1), (w2, b2) = nets.mlp_params(seed, gain)
    nodes = {"input": Input((nets.MLP[0],)), "fc1": Affine(w1.astype(float), b1.astype(float)),
             "lif1": _neuron(kind, (nets.MLP[1],), reset),
             "fc2": Affine(w2.astype(float), b2.astype(float)),
             "lif2": _neuron(kind, (nets.MLP[2],), reset), "output": Output((nets.MLP[2],))}
    names = list(nodes)
    return _graph(nodes, list(zip(names, names[1:])))


def ir_conv(kind: str, reset: str, seed: int, gain: float, pool: str) -> Graph:
    (k, bk), (w, b) = nets.conv_params(seed, gain)
    c, h, _ = nets.CONV_IN
    pooled = (nets.CONV_CHANNELS, h // 2, h // 2)
    pool_node = (SumPool2d((2, 2), input_shape=(nets.CONV_CHANNELS, h, h)) if pool == "sum"
                 else AvgPool2d((2, 2), input_shape=(nets.CONV_CHANNELS, h, h)))
    scale = 0.25 if pool == "sum" else 1.0
    nodes = {"input": Input(nets.CONV_IN),
             "conv": Conv2d(k.astype(float), input_shape=nets.CONV_IN, bias=bk.astype(float),
                            padding=(1, 1)),
             "lif1": _neuron(kind, (nets.CONV_CHANNELS, h, h), reset), "pool": pool_node,
             "flat": Flatten(pooled), "fc": Affine(w.astype(float) * scale, b.astype(float)),
             "lif2": _neuron(kind, (nets.CONV_OUT,), reset), "output": Output((nets.CONV_OUT,))}
    names = list(nodes)
    return _graph(nodes, list(zip(names, names[1:])))


def ir_rec(kind: str, reset: str, seed: int, gain: float) -> Graph:
    (w1, b1), (w2, b2) = nets.mlp_params(seed, gain)
    n = nets.MLP[1]
    nodes = {"input": Input((nets.MLP[0],)), "fc1": Affine(w1.astype(float), b1.astype(float)),
             "lif1": _neuron(kind, (n,), reset),
             "rec": Affine(nets.recurrent(seed + 7, n).astype(float), None),
             "fc2": Affine(w2.astype(float), b2.astype(float)),
             "lif2": _neuron(kind, (nets.MLP[2],), reset), "output": Output((nets.MLP[2],))}
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "rec"), ("rec", "lif1"),
             ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    return _graph(nodes, edges)


def _pruned(graph: Graph) -> Graph:
    pruned, _ = sd.compress(graph, None, sd.MagnitudeConfig(sparsity=0.5))
    return pruned


# network name -> (builder, input shape, neuron kind); the gains give 10-40 % firing per step
NETWORKS: dict[str, tuple[Callable[[], Graph], tuple[int, ...], str]] = {
    "mlp_lif": (lambda: ir_mlp("LIF", "zero", 60, 1.4), (100,), "LIF"),
    "mlp_lif_subtract": (lambda: ir_mlp("LIF", "subtract", 60, 1.0), (100,), "LIF"),
    "mlp_lif_pruned": (lambda: _pruned(ir_mlp("LIF", "zero", 60, 2.2)), (100,), "LIF"),
    "mlp_if": (lambda: ir_mlp("IF", "zero", 61, 1.0), (100,), "IF"),
    "mlp_if_subtract": (lambda: ir_mlp("IF", "subtract", 61, 0.8), (100,), "IF"),
    "mlp_if_pruned_subtract": (lambda: _pruned(ir_mlp("IF", "subtract", 61, 1.3)), (100,), "IF"),
    "mlp_cubalif": (lambda: ir_mlp("CubaLIF", "zero", 62, 0.4), (100,), "CubaLIF"),
    "mlp_cubalif_subtract": (lambda: ir_mlp("CubaLIF", "subtract", 62, 0.25), (100,), "CubaLIF"),
    "conv_lif_avg": (lambda: ir_conv("LIF", "zero", 63, 1.4, "avg"), nets.CONV_IN, "LIF"),
    "conv_lif_sum": (lambda: ir_conv("LIF", "zero", 63, 1.4, "sum"), nets.CONV_IN, "LIF"),
    "conv_if_subtract": (lambda: ir_conv("IF", "subtract", 64, 0.8, "sum"), nets.CONV_IN, "IF"),
    "rec_lif": (lambda: ir_rec("LIF", "zero", 65, 1.4), (100,), "LIF"),
    "rec_lif_subtract": (lambda: ir_rec("LIF", "subtract", 65, 1.0), (100,), "LIF"),
    "rec_cubalif_subtract": (lambda: ir_rec("CubaLIF", "subtract", 66, 0.25), (100,),
                             "CubaLIF"),
}

# The bundled networks (trained on N-MNIST, sbc_deploy/bundled), run on 8 samples of the bundled
# evaluation data: real networks on real recordings, 31 steps and the recordings' activity
# (1.5-15 % per layer), so the activity rule does not apply to them; they are the networks of
# the "--nir-for sinabs runs the bundled MLP/CNN with ... entries different".
BUNDLED: dict[str, tuple[str, str | None]] = {
    "bundled_mlp": ("nmnist_mlp", None), "bundled_cnn": ("nmnist_cnn", None),
    "bundled_mlp_subtract": ("nmnist_mlp", "subtract"),
    "bundled_cnn_subtract": ("nmnist_cnn", "subtract")}
for _name, (_model, _reset) in BUNDLED.items():
    NETWORKS[_name] = ((lambda m=_model, r=_reset: bundled.load_bundled_model(m, reset=r)),
                       (2, 34, 34), "LIF")

# framework -> the networks its importer is given
CONSUMERS: dict[str, tuple[str, ...]] = {
    "snntorch": ("mlp_lif", "mlp_lif_subtract", "mlp_lif_pruned", "mlp_if", "mlp_cubalif",
                 "conv_lif_avg", "rec_lif", "bundled_mlp", "bundled_cnn"),
    "norse": ("mlp_lif", "mlp_lif_subtract", "mlp_lif_pruned", "mlp_if", "mlp_cubalif",
              "conv_lif_sum", "bundled_mlp", "bundled_cnn"),
    "sinabs": ("mlp_lif", "mlp_lif_subtract", "mlp_if_subtract", "mlp_if_pruned_subtract",
               "conv_if_subtract", "bundled_mlp_subtract", "bundled_cnn_subtract"),
    "rockpool": ("mlp_lif", "mlp_cubalif_subtract", "rec_cubalif_subtract", "conv_lif_sum"),
    "spyx": ("mlp_lif", "mlp_if_subtract", "mlp_lif_subtract", "mlp_cubalif_subtract",
             "conv_if_subtract", "rec_lif_subtract", "bundled_mlp_subtract",
             "bundled_cnn_subtract"),
}
# (framework, network) -> why sbc-deploy must refuse it on export (an ExportError naming
# --nir-for and the reason).
CONSUMER_REFUSED: dict[tuple[str, str], str] = {
    ("snntorch", "mlp_lif_subtract"): "snntorch 1.0.0's importer builds reset_mechanism='zero' "
                                      "(snntorch/import_nir.py, _nir_to_snntorch_module)",
    ("norse", "mlp_lif_subtract"): "norse 1.1.0's importer builds reset-to-value neurons "
                                   "(norse/torch/utils/import_nir.py)",
    ("sinabs", "mlp_lif"): "sinabs 3.1.3's importer builds MembraneSubtract layers "
                           "(sinabs/nir.py, _import_sinabs_module)",
    ("rockpool", "mlp_lif"): "rockpool 3.1.0's importer maps no LIF (it reads node.tau_mem, "
                             "absent on nir.LIF)",
    ("rockpool", "conv_lif_sum"): "rockpool 3.1.0's importer maps no LIF, Flatten, Conv2d or "
                                  "pooling",
    ("spyx", "mlp_lif"): "spyx 1.0.0's neurons reset by subtraction only (spyx/nn.py)",
}
# (framework, network) -> why the framework's importer cannot run our export exactly.
CONSUMER_XFAIL: dict[tuple[str, str], str] = {}


def _input(shape: tuple[int, ...], network: str) -> np.ndarray:
    if network in BUNDLED:
        data = bundled.load_bundled_data("eval")
        return np.ascontiguousarray(np.swapaxes(np.asarray(data.x[:nets.B]), 0, 1),
                                    dtype=np.float32)
    return nets.bernoulli(shape, 700 + sorted(NETWORKS).index(network))


def prepare(graph: Graph, framework: str) -> Graph:
    """The graph as ``--nir-for framework`` compresses and simulates it: in the model the
    framework's importer builds (see the module docstring)."""
    from sbc_deploy.exporters.nir_consumers import consumer_model

    return consumer_model(graph, framework).graph


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def write_results() -> Iterator[None]:
    yield
    RESULTS.write()
    shutdown()  # the frameworks' processes (one per environment) and their memory


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
        RESULTS.versions[framework] = manifest["versions"]
    return _produced[framework]


def simulated(graph: Graph, x: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The float simulator's output ``[T, B, *shape]`` and every spiking layer's firing rate."""
    spiking = [n for n, node in graph.nodes.items() if getattr(node, "spiking", False)]
    result = simulate(graph, torch.as_tensor(x, dtype=torch.float32), record=spiking)
    assert len(result.outputs) == 1, sorted(result.outputs)
    out = next(iter(result.outputs.values())).numpy()
    return out, layer_rates([result.recorded[n].numpy() for n in spiking])


def _params(table: dict[str, Any], xfail: dict[tuple[str, str], str]) -> list[Any]:
    params = []
    for framework, names in table.items():
        for name in names:
            reason = xfail.get((framework, name))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(framework, name, marks=marks, id=f"{framework}-{name}"))
    return params


# --------------------------------------------------------------------------- producer direction


@pytest.mark.parametrize(("framework", "case"), _params(PRODUCERS, PRODUCER_XFAIL))
def test_framework_export_imports_with_its_spikes(framework: str, case: str,
                                                  workdir: Path) -> None:
    manifest = produced(framework, workdir)
    entry = next(c for c in manifest["cases"] if c["name"] == case)
    folder: Path = manifest["folder"]
    data = np.load(folder / entry["data"])
    x, reference = data["x"], data["spikes"]
    spec = PRODUCERS[framework][case]
    check_activity(entry["rates"], reference, f"{framework} {case} (its own run)")
    source = spec.get("source", framework)
    if source is not None and spec.get("options"):
        source = f"{source}:{spec['options']}"
    info = {"framework": framework, "direction": "producer", "network": entry["network"],
            "neuron": entry["neuron"], "case": case, "settings": entry["settings"],
            "import": {"source": source, "reset": spec.get("reset")},
            "rates": entry["rates"], "expected_failure": PRODUCER_XFAIL.get((framework, case))}
    try:
        graph = load_model(folder / entry["nir"], source=source, reset=spec.get("reset"),
                           dt=STEP_LABEL.get(framework))
        ours, _ = simulated(graph, x)
        result = compare(reference, ours)
    except Exception as err:
        RESULTS.record(**info, status="error", error=f"{type(err).__name__}: {err}"[:300],
                       spikes_reference=int(reference.sum()))
        raise
    RESULTS.record(**info, status="exact" if result["exact"] else "differs", **result)
    assert result["exact"], (f"{framework} {case}: {result['differing']} of {result['entries']} "
                             f"spike entries differ ({result})")


def test_batched_norse_export_is_not_taken_for_rockpool(workdir: Path) -> None:
    """Regression (issue 19): norse's export made with a batched sample ``[1, 100]`` has a
    batch axis in its port types and r = 1, which fits rockpool's signature as well (one dt
    solves r = tau exp(-dt/tau)/dt). It used to be read as rockpool's, silently, and simulated
    wrong (every output entry off from step 0); now detection names both and asks for --from,
    and ``--from norse`` (the producer case above) reads it exactly."""
    manifest = produced("norse", workdir)
    entry = next(c for c in manifest["cases"] if c["name"] == "mlp_lifbox_batched")
    with pytest.raises(ConfigError, match=r"fits rockpool and norse.*") as caught:
        load_model(manifest["folder"] / entry["nir"])
    assert "--from rockpool or --from norse" in (caught.value.hint or "")


# --------------------------------------------------------------------------- consumer direction


_networks: dict[tuple[str, str], tuple[Graph, np.ndarray]] = {}


def consumer_network(framework: str, network: str) -> tuple[Graph, np.ndarray]:
    """The graph exported for ``framework`` as ``network`` (in its importer's model) and its
    input ``[T, B, *shape]`` (built once)."""
    key = (framework, network)
    if key not in _networks:
        build, shape, _ = NETWORKS[network]
        graph = build()
        if key not in CONSUMER_REFUSED:
            graph = prepare(graph, framework)
        _networks[key] = (graph, _input(shape, network))
    return _networks[key]


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
    for network in CONSUMERS[framework]:
        if (framework, network) in CONSUMER_REFUSED:
            continue
        try:
            graph, x = consumer_network(framework, network)
            EXPORTERS["nir"](graph, folder / f"{network}.nir", steps=x.shape[0],
                             nir_for=framework)
        except SbcDeployError as err:
            results[network] = {"error": f"{type(err).__name__}: {err}"}
            continue
        np.savez(folder / f"{network}_in.npz", x=x)
        argv += [folder / f"{network}.nir", folder / f"{network}_in.npz",
                 folder / f"{network}_out.npz"]
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


@pytest.mark.parametrize(("framework", "network"), _params(CONSUMERS, CONSUMER_XFAIL))
def test_framework_runs_our_export_with_our_spikes(framework: str, network: str,
                                                   workdir: Path) -> None:
    env_python(framework)
    info = {"framework": framework, "direction": "consumer", "network": network,
            "neuron": NETWORKS[network][2], "case": network,
            "expected_failure": CONSUMER_XFAIL.get((framework, network))}
    refused = CONSUMER_REFUSED.get((framework, network))
    if refused:
        graph, x = consumer_network(framework, network)
        with pytest.raises(ExportError, match=f"--nir-for {framework}") as caught:
            EXPORTERS["nir"](graph, workdir / f"refused_{framework}_{network}.nir",
                             steps=x.shape[0], nir_for=framework)
        RESULTS.record(**{**info, "expected_failure": refused}, status="refused",
                       error=str(caught.value)[:300])
        return
    run = consumed(framework, workdir).get(network, {})
    if "error" in run and "versions" not in run:  # refused by sbc-deploy on export
        RESULTS.record(**info, status="error", error=run["error"][-300:])
        raise AssertionError(f"sbc-deploy cannot write {network} for {framework}:\n"
                             f"{run['error']}")
    graph, x = consumer_network(framework, network)
    reference, rates = simulated(graph, x)
    if network not in BUNDLED:  # real data has its own activity (see BUNDLED)
        check_activity(rates, reference, f"{network} for {framework} (the simulator's run)")
    assert reference.sum() > 0, f"{network} for {framework}: no output spike"
    RESULTS.versions.setdefault(framework, run.get("versions", {}))
    info["rates"] = rates
    if "error" in run:
        RESULTS.record(**info, status="error", error=run["error"][-300:],
                       spikes_reference=int(reference.sum()))
        raise AssertionError(f"{framework} cannot run our {network}:\n{run['error']}")
    result = compare(reference, run["spikes"])
    RESULTS.record(**info, status="exact" if result["exact"] else "differs", **result)
    assert result["exact"], (f"{framework} runs our {network}: {result['differing']} of "
                             f"{result['entries']} spike entries differ ({result})")


# --------------------------------------------------------------------------- sinabs IF-CNN

SINABS_CNN = ROOT / "tests" / "data" / "sinabs_if_cnn"  # examples/train_sinabs_cnn.py
SINABS_EVAL, SINABS_STEPS = 100, 100  # test digits, 1 ms steps (the training window)
SINABS_SOURCE = "sinabs:spike_fn=single"  # the trained net uses SingleSpike (build_model)


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
    graph = load_model(SINABS_CNN.with_suffix(".nir"), source=SINABS_SOURCE, dt=1e-3)
    ours, rates = simulated(graph, np.swapaxes(x, 0, 1).astype(np.float32))
    result = compare(sinabs_run, ours)
    sinabs_accuracy = float((sinabs_run.sum(0).argmax(1) == y).mean())
    our_accuracy = float((ours.sum(0).argmax(1) == y).mean())
    RESULTS.record(framework="sinabs", direction="producer", network="conv", neuron="IF",
                   case=f"trained IF-CNN, {SINABS_EVAL} digits at 1 ms (accuracy "
                        f"{our_accuracy:.2f})", rates=rates,
                   settings={"spike_fn": "SingleSpike"},
                   **{"import": {"source": SINABS_SOURCE, "reset": None}},
                   status="exact" if result["exact"] else "differs", expected_failure=None,
                   **result)
    assert sinabs_accuracy >= 0.4, f"sinabs' own accuracy {sinabs_accuracy} is near chance"
    assert our_accuracy == sinabs_accuracy
    assert result["exact"], result


def test_sinabs_if_cnn_compresses_through_the_cli(
        sinabs_events: tuple[Path, np.ndarray, np.ndarray], sinabs_run: np.ndarray,
        workdir: Path) -> None:
    """``sbc-deploy --from sinabs:spike_fn=single --dt 0.001 --target speck`` (sinabs' chip:
    IF with subtract reset) compresses it, fits and exits 0. What came in as sinabs' goes out as
    sinabs': model.nir is written for sinabs' importer, which builds MultiSpike layers with IF
    membranes clamped at -threshold; the network is converted to that model before calibration,
    so the compressed accuracy in the report is the one sinabs gives when it runs model.nir
    (checked by running sinabs on it)."""
    events, _, y = sinabs_events
    out = workdir / "sinabs_deploy"
    done = subprocess.run(
        [sys.executable, "-m", "sbc_deploy", str(SINABS_CNN.with_suffix(".nir")), "--from",
         SINABS_SOURCE, "--dt", "0.001", "--target", "speck", "--calib", str(events), "--eval",
         str(events), "-o", str(out), "--export", "nir"],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "model.nir is written for sinabs's importer" in done.stderr  # the run's output says it
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["nir_for"] == "sinabs"
    notes = report["targets"][0]["notes"] if "targets" in report else report["notes"]
    assert any("converted to sinabs's model before calibration" in n for n in notes), notes
    accuracy = report["accuracy"]
    sinabs_accuracy = float((sinabs_run.sum(0).argmax(1) == y).mean())
    assert abs(accuracy["dense_float"] - sinabs_accuracy) <= 0.05, (accuracy, sinabs_accuracy)
    assert accuracy["compressed_float"] >= accuracy["dense_float"] - 0.05
    # speck keeps integer thresholds: sinabs' trained thresholds are rounded (warnings only)
    assert [v for v in report["violations"] if v["severity"] != "warning"] == []
    x = np.load(events)["x"]
    np.savez(workdir / "sinabs_cnn_in.npz", x=np.swapaxes(x, 0, 1).astype(np.float32))
    run_driver("sinabs", "consume", out / "model.nir", workdir / "sinabs_cnn_in.npz",
               workdir / "sinabs_cnn_compressed.npz")
    with np.load(workdir / "sinabs_cnn_compressed.npz") as ran:
        assert "error" not in ran.files, str(ran["error"]) if "error" in ran.files else ""
        theirs = float((ran["spikes"].sum(0).argmax(1) == y).mean())
    assert theirs == accuracy["compressed_float"], (theirs, accuracy)


# --------------------------------------------------------------------------- snntorch on scnn_mnist

# ../shared/fixtures/nir/scnn_mnist_snntorch.nir is snntorch's examples/scnn_mnist.nir (added in
# jeshraghian/snntorch@89a7f3c), byte for byte neuromorphs/NIR@7232ada6 paper/02_cnn/
# cnn_sinabs.nir: sinabs wrote it (to_nir of sinabs.from_model(ann, spike_threshold=1.0,
# min_v_mem=-1.0), paper/02_cnn/sinabs.py); snntorch's exporter writes no IF node. Its IF
# nodes (r = 1, v_reset = 0) read --from snntorch as integrate-and-fire neurons, which snntorch
# runs as Leaky(beta=1) with its defaults: the reference is that network, the neuron the nodes
# name and the one closest to the network that was trained (no leak, the input added once per
# step, subtract reset). snntorch's importer builds a leaky Leaky(beta=0.9, reset_delay=False)
# for every IF instead (the NIR paper's snntorch run, 97.9 % vs sinabs' 98.5 %): the option
# if_beta=0.9 with reset_delay=false reads the file as that network, checked against the
# importer's own layers.
SCNN_READINGS = {"leaky_beta1": "snntorch",
                 "importer": "snntorch:if_beta=0.9,reset_delay=false"}
SCNN_CASES = {
    "leaky_beta1": "Leaky(beta=1) with snntorch's defaults (the IF the nodes name)",
    "importer": "import_from_nir's layers: Leaky(beta=0.9, reset_delay=False) per IF"}
SCNN_INPUT_RATE = 0.25  # Bernoulli input of 2x34x34, T = 50: every layer >= 5 % per step


def _scnn_inputs() -> dict[str, np.ndarray]:
    recordings = bundled.load_bundled_data("eval").x[:nets.B]
    rng = np.random.default_rng(711)
    return {"random": (rng.random((nets.T, nets.B, 2, 34, 34)) < SCNN_INPUT_RATE
                       ).astype(np.float32),
            "recordings": np.ascontiguousarray(np.swapaxes(np.asarray(recordings), 0, 1),
                                               dtype=np.float32)}


@pytest.fixture(scope="module")
def scnn_runs(workdir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """snntorch's runs of the fixture: (if_as, input) -> {x, spikes, rates} (one process)."""
    from conftest import fixture_path

    model = fixture_path("nir", "scnn_mnist_snntorch.nir")
    argv: list[Any] = []
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    for label, x in _scnn_inputs().items():
        np.savez(workdir / f"scnn_{label}.npz", x=x)
        for if_as in SCNN_READINGS:
            out = workdir / f"scnn_{if_as}_{label}_out.npz"
            argv += [if_as, model, workdir / f"scnn_{label}.npz", out]
            runs[(if_as, label)] = {"x": x, "out": out, "model": model}
    run_driver("snntorch", "imported", *argv)
    for run in runs.values():
        with np.load(run.pop("out")) as stored:
            run["spikes"], run["rates"] = stored["spikes"], stored["rates"].tolist()
    return runs


@pytest.mark.parametrize("label", ["random", "recordings"])
@pytest.mark.parametrize("if_as", list(SCNN_READINGS))
def test_snntorch_runs_the_scnn_fixture_as_read_from_snntorch(
        if_as: str, label: str, scnn_runs: dict[tuple[str, str], dict[str, Any]]) -> None:
    """``--from snntorch`` (and ``:if_beta=0.9,reset_delay=false``) on the scnn_mnist fixture
    gives snntorch's spikes. Was: IF gain dt r = 1e-4, no spike at all."""
    run = scnn_runs[(if_as, label)]
    reference = run["spikes"]
    if label == "random":  # the recordings have their own activity (3 % in the first layer)
        check_activity(run["rates"], reference, f"scnn_mnist in snntorch ({if_as})")
    assert reference.sum() >= 200, f"scnn_mnist in snntorch ({if_as}, {label}): too quiet"
    graph = load_model(run["model"], source=SCNN_READINGS[if_as])
    ours, rates = simulated(graph, run["x"])
    result = compare(reference, ours)
    RESULTS.record(framework="snntorch", direction="producer", network="conv", neuron="IF",
                   case=f"scnn_mnist fixture, {SCNN_CASES[if_as]}, on {label} input",
                   writer="sinabs' export in snntorch's examples (scnn_mnist.nir)",
                   rates=run["rates"], **{"import": {"source": SCNN_READINGS[if_as],
                                                     "reset": None}},
                   status="exact" if result["exact"] else "differs", expected_failure=None,
                   **result)
    assert result["exact"], result
    assert np.allclose(sorted(rates), sorted(run["rates"]))  # the same layers fire alike


# --------------------------------------------------------------------------- the README matrix


def test_compat_matrix_merges_result_files_and_renders_between_the_readme_markers(
        tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("compat_matrix",
                                                  ROOT / "scripts" / "compat_matrix.py")
    matrix = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(matrix)  # type: ignore[union-attr]
    first = {"versions": {"norse": {"norse": "1.1.0", "nir": "1.0.8"}}, "results": [
        {"framework": "norse", "direction": "consumer", "network": "mlp_lif", "neuron": "LIF",
         "case": "mlp_lif", "status": "exact", "spikes_reference": 1331, "differing": 0,
         "entries": 4000, "rates": [0.257, 0.333], "expected_failure": None},
        {"framework": "norse", "direction": "producer", "network": "mlp", "neuron": "IF",
         "case": "mlp_iaf", "status": "differs", "spikes_reference": 1041, "differing": 2,
         "entries": 4000, "rates": [0.2, 0.26], "settings": {"dt": 0.001, "reset": "zero"},
         "import": {"source": "norse", "reset": None}, "expected_failure": "a | reason"}]}
    second = {"versions": {"spikingjelly": {"spikingjelly": "2.0.0"}}, "results": [
        {"framework": "spikingjelly", "direction": "consumer", "network": "mlp",
         "neuron": "IF", "case": "mlp", "status": "refused", "expected_failure": "why not",
         "rates": []}]}
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, data in zip(paths, (first, second)):
        path.write_text(json.dumps(data))
    table = matrix.render(matrix.load(paths))
    rows = [line for line in table.splitlines() if line.startswith("| norse")
            or line.startswith("| spikingjelly")]
    assert rows == [
        "| norse 1.1.0 (nir 1.0.8) | its export -> `--from norse` | mlp_iaf (mlp, IF): "
        "reset=zero | 20 % / 26 % | 1,041 | 2 of 4,000 | differs: a \\| reason |",
        "| norse 1.1.0 (nir 1.0.8) | `--nir-for norse` -> its import | mlp_lif (LIF) | "
        "26 % / 33 % | 1,331 | 0 of 4,000 | exact |",
        "| spikingjelly 2.0.0 | `--nir-for spikingjelly` -> its import | mlp (IF) | - | - | - | "
        "refused on export: why not |"]
    assert table.startswith("1 of 3 cases spike-for-spike exact, 1 refused on export with the "
                            "reason, 1 differ")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{matrix.START}\nold\n{matrix.END}\ntail\n")
    argv = [*map(str, paths), "--readme", str(readme)]
    assert matrix.main([*argv, "--check"]) == 1
    assert matrix.main(argv) == 0
    assert readme.read_text() == f"intro\n{matrix.START}\n{table}\n{matrix.END}\ntail\n"
    assert matrix.main([*argv, "--check"]) == 0


def test_compat_matrix_names_the_writer_of_a_file_no_framework_test_wrote() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("compat_matrix",
                                                  ROOT / "scripts" / "compat_matrix.py")
    matrix = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(matrix)  # type: ignore[union-attr]
    entry = {"framework": "snntorch", "direction": "producer", "network": "conv",
             "neuron": "IF", "case": "scnn", "status": "exact", "spikes_reference": 548,
             "differing": 0, "entries": 4000, "rates": [0.08], "expected_failure": None,
             "writer": "sinabs' export (scnn.nir)",
             "import": {"source": "snntorch:if_beta=0.9", "reset": None}}
    row = matrix.render({"versions": {}, "results": [entry]}).splitlines()[-1]
    assert row.startswith("| snntorch | sinabs' export (scnn.nir) -> "
                          "`--from snntorch:if_beta=0.9` | scnn (conv, IF) |"), row
