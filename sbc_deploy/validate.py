"""Validate a whole request before any stage runs: every problem at once, nothing created.

``validate_request`` reads the targets, the model and the data (that is cheap; the stages are
not), then checks every flag against them:

- each target resolves and each per-target compression config is valid;
- ``--bits`` fits the target's weight format (no wider than its weights), ``--fan-in`` is within
  the target's fan-in limit, ``--nm`` M is not wider than the narrowest layer's inputs;
- every ``--export`` format is known and taken by every target (``--target speck --export netx``
  is an error, not a note);
- calibration and evaluation data have the model's input shape per step and its dt, and
  compression that needs calibration data has some;
- the output folder can take the run's set (see :mod:`sbc_deploy.outputs`).

Every problem found is listed in one :class:`~sbc_deploy.errors.ConfigError` (exit 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sbc_deploy.data import Dataset, load_data
from sbc_deploy.errors import ConfigError, DataError, SbcDeployError
from sbc_deploy.exporters import EXPORTERS
from sbc_deploy.frontends import load_model
from sbc_deploy.ir import Graph, Neuron, spike_variant_text
from sbc_deploy.sim.fixed_point import at_or_above_problem
from sbc_deploy.targets import Target, load_target
from sbc_deploy.untrusted import shown


@dataclass(frozen=True)
class Plan:
    """What a validated request resolved to: the values the stages run on."""

    graph: Graph
    model_name: str
    targets: tuple[Target, ...]
    calib: Dataset | None
    evaluation: Dataset | None
    inputs: tuple[str, ...]  # files read (for the manifest)


class ValidationError(ConfigError):
    """Several problems with a request, each one line; ``problems`` holds them."""

    def __init__(self, problems: list[str]):
        self.problems = tuple(problems)
        head = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        super().__init__(f"{head} before any work was done:", items=self.problems)


def _text(err: SbcDeployError) -> str:
    return str(err)


def _load_model(request: Any) -> tuple[Graph, str, Any, Any, list[str]]:
    """The model and its data sources: the user's, or the bundled example's."""
    from sbc_deploy import bundled

    calib, evaluation, files = request.calib, request.eval, []
    model = request.model
    if model is None or (isinstance(model, str) and model in bundled.MODELS
                         and not Path(model).exists()):
        model = bundled.DEFAULT_MODEL if model is None else model
        # --dt, --reset, --discretization and --from apply to a bundled network as to a file
        graph = bundled.load_bundled_model(
            model, dt=request.dt, reset=request.reset,
            discretization=getattr(request, "discretization", None),
            source=getattr(request, "source", None))
        name = f"bundled {model} (sbc_deploy/bundled/{model}.nir)"
        files.append(str(bundled.bundled_path(f"{model}.nir")))
        if calib is None:
            calib = bundled.load_bundled_data("calib")
            files.append(str(bundled.bundled_path(bundled.DATA_FILES["calib"])))
        if evaluation is None:
            evaluation = bundled.load_bundled_data("eval")
            files.append(str(bundled.bundled_path(bundled.DATA_FILES["eval"])))
    elif isinstance(model, Graph):
        graph = model
        name = str(model.metadata.get("model_name", "graph given in memory"))
        files.extend(model.metadata.get("input_files", ()))   # e.g. a torch factory + weights
    else:
        graph = load_model(model, dt=request.dt, reset=request.reset,
                           source=getattr(request, "source", None),
                           discretization=getattr(request, "discretization", None),
                           input_shape=(getattr(request, "input_shape", None)
                                        or _data_input_shape(model, calib, evaluation,
                                                             request.dt)))
        name = str(model)
        files.append(str(model))
    return graph, name, calib, evaluation, files


def _data_input_shape(model: Any, calib: Any, evaluation: Any, dt: float | None
                      ) -> tuple[int, ...] | None:
    """The per-sample shape of the calibration (else evaluation) data, read only for a netx
    model whose first layer is a convolution without an input layer (issue 11)."""
    from sbc_deploy.frontends.from_netx import first_layer_needs_input_shape

    data = calib if calib is not None else evaluation
    if data is None or not first_layer_needs_input_shape(model):
        return None
    dataset = data if isinstance(data, Dataset) else load_data(data, dt=dt)
    return tuple(int(v) for v in dataset.input_shape)


def check_dataset(source: Any, graph: Graph, flag: str, *, per_class: float | None = None,
                  seed: int = 0, limit: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> Dataset:
    """Read ``source`` and check it against the model's input shape and dt (``per_class``,
    ``seed``, ``limit``: read only a class-balanced draw / the first samples; ``progress``:
    files read of a dataset folder)."""
    data = source if isinstance(source, Dataset) and per_class is None and limit is None \
        else load_data(source, dt=graph.dt, per_class=per_class, seed=seed, limit=limit,
                       progress=progress)
    (input_name,) = graph.inputs[:1]
    expected = tuple(graph.nodes[input_name].output_shape)
    if tuple(data.input_shape) != expected:
        raise DataError(f"samples have shape {tuple(data.input_shape)} per step but the model's "
                        f"input '{input_name}' expects {expected}", where=f"{flag} {data.source}")
    if data.y is not None and data.y.size:  # a label the output cannot name is bad input
        classes = int(np.prod(graph.nodes[graph.outputs[0]].output_shape))
        top = int(np.max(data.y))
        if top >= classes:
            raise DataError(f"labels 'y' go up to {top}, but the model's output "
                            f"'{shown(graph.outputs[0])}' has {classes} classes (labels 0 to "
                            f"{classes - 1})", where=f"{flag} {data.source}")
    if not np.isclose(data.dt, graph.dt, rtol=1e-6):
        raise DataError(f"data step dt = {data.dt:g} s differs from the model's dt = {graph.dt:g} s"
                        " (re-bin the data or import the model with --dt)",
                        where=f"{flag} {data.source}")
    return data


def _layer_inputs(graph: Graph) -> list[tuple[str, int]]:
    rows = []
    for layer in graph.synapse_layers():
        weight = layer.synapse.weight
        rows.append((layer.name, int(np.prod(weight.shape[1:])) if weight.ndim > 1 else 1))
    return rows


def sparsity_bounds(graph: Graph, config: Any) -> list[tuple[str, int, int, int]]:
    """``(layer, weights, fewest pruned, most pruned)`` of every layer ``config`` compresses:
    the bounds the allocation works within (N:M and fan-in force a minimum; ``max_sparsity``
    caps each layer at ``floor(max_sparsity * weights)``)."""
    from sbc_deploy.compress.masks import min_prune_count

    wanted = getattr(config, "layers", None)
    rows = []
    for layer in graph.synapse_layers():
        if wanted is not None and layer.name not in wanted:
            continue
        shape = layer.synapse.weight.shape
        n_out = int(shape[0]) if len(shape) else 1
        n_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        numel = n_out * n_in
        low = min_prune_count(n_out, n_in, config.n_m, config.fan_in)
        rows.append((layer.name, numel, low, max(low, math.floor(config.max_sparsity * numel))))
    return rows


def largest_sparsity(graph: Graph, config: Any) -> float:
    """The largest overall ``--sparsity`` (to 4 decimals, rounded down) that ``config``'s
    allocation can give ``graph``: ``round(s N) <= sum of the per-layer maxima`` for LAMP and
    global allocation, ``round(s n_l) <= max_l`` of every layer for uniform allocation."""
    bounds = sparsity_bounds(graph, config)
    if not bounds:
        return 0.0
    if config.allocation == "uniform":
        return min(math.floor(1e4 * high / numel) / 1e4 for _, numel, _, high in bounds)
    total = sum(numel for _, numel, _, _ in bounds)
    return math.floor(1e4 * sum(high for *_, high in bounds) / total) / 1e4


def sparsity_problem(graph: Graph, config: Any, asked: float | None) -> str | None:
    """Why ``--sparsity asked`` cannot be given to ``graph`` under ``config`` (``None``: it can).

    The check the allocation would make after calibration (``allocate.py``), made before any
    work and said with the flag's largest value that works.
    """
    if asked is None or not asked > 0 or not isinstance(config.allocation, str):
        return None
    bounds = sparsity_bounds(graph, config)
    if not bounds:
        return None
    cap = f"{100 * config.max_sparsity:g} %"
    if config.allocation == "uniform":
        over = [(name, numel, high) for name, numel, _, high in bounds
                if round(asked * numel) > high]
        if not over:
            return None
        name, numel, high = over[0]
        return (f"--sparsity {asked:g}: layer '{name}' may lose at most {high:,} of its "
                f"{numel:,} synapses ({cap} per layer) with --allocation uniform; the largest "
                f"--sparsity that works is {largest_sparsity(graph, config):g}")
    total = sum(numel for _, numel, _, _ in bounds)
    high = sum(h for *_, h in bounds)
    if round(asked * total) <= high:
        return None
    return (f"--sparsity {asked:g}: the network's {total:,} synapses allow at most {high:,} "
            f"removed (each layer keeps at least {100 - 100 * config.max_sparsity:g} % of its "
            f"synapses); the largest --sparsity that works is "
            f"{largest_sparsity(graph, config):g}")


#: rules no compression can satisfy: what breaks one of them runs on the host (the chip / host
#: split), and a target on which nothing of the network can run is refused up front
REFUSING_RULES = ("supported_neuron_model", "supported_layer_types")


def _placement_errors(graph: Graph, target: Target) -> dict[str, list[str]]:
    """Errors of :data:`REFUSING_RULES`, by the node they name (what the chip cannot run)."""
    from sbc_deploy.check.rules import RULES

    found: dict[str, list[str]] = {}
    for name in REFUSING_RULES:
        for violation in RULES[name](graph, target):
            if violation.severity == "error":
                found.setdefault(violation.layer or "", []).append(violation.message)
    return found


def chip_layers(graph: Graph, target: Target) -> tuple[str, ...]:
    """The synapse layers ``target``'s chip can run, synapses and neurons both: the synapse
    node on the chip side of the chip / host split and its neuron (if it drives one) of a kind,
    reset and parameters the target runs (no :data:`REFUSING_RULES` error on either)."""
    from sbc_deploy.check.split import chip_host_split

    split = chip_host_split(graph, target)
    errors = _placement_errors(graph, target)
    runnable = []
    for layer in graph.synapse_layers():
        nodes = [layer.name] + ([layer.neuron_name] if layer.neuron_name else [])
        if all(split.placement(n) == "chip" and n not in errors for n in nodes):
            runnable.append(layer.name)
    return tuple(runnable)


def _runs_a_neuron_layer(graph: Graph, target: Target) -> bool:
    """The chip can run at least one synapse layer with the neuron it drives (a readout,
    synapses without a neuron, alone is no part of a spiking network a chip can run; a network
    of readouts only needs its synapses on the chip)."""
    from sbc_deploy.check.split import chip_host_split, runs_part  # one rule for check too

    return runs_part(graph, chip_host_split(graph, target), _placement_errors(graph, target))


def refusal(graph: Graph, target: Target) -> str | None:
    """Why ``target`` cannot run any part of ``graph`` whatever compression does, or ``None``.

    The rule (issue 18): a target that can run part of a network gets the chip / host split
    reported instead of a refusal of the whole network; it is refused up front, before any
    compression, only when its chip can run none of the network's synapse layers with their
    neurons (``speck runs IF neurons only`` for a LIF network; a reset mode it lacks on every
    layer); a readout (synapses with no neuron after them) alone does not count. The reason
    is the first of the errors that place those layers off the chip.
    """
    if _runs_a_neuron_layer(graph, target):
        return None
    reasons = list(dict.fromkeys(m for messages in _placement_errors(graph, target).values()
                                 for m in messages))
    if not reasons:
        return (f"{target.name} can run none of the network's synapse layers with their "
                "neurons on its chip")
    return reasons[0] + (f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else "")


def host_placed(graph: Graph, target: Target) -> frozenset[str]:
    """Nodes of a target that runs part of ``graph`` whose :data:`REFUSING_RULES` errors say
    only that they run on the host (the chip / host split places them there): empty for a
    refused target, whose errors stand."""
    from sbc_deploy.check.split import chip_host_split

    if refusal(graph, target) is not None:
        return frozenset()
    split = chip_host_split(graph, target)
    return frozenset(name for name in _placement_errors(graph, target)
                     if split.placement(name) == "host")


def _spike_variant_problems(graph: Graph, targets: list[Target],
                            formats: tuple[str, ...] | None) -> list[str]:
    """A netx export (asked for, or a target's default) of neurons with a spike variant
    (``sbc_deploy.ir.nodes``) that netx cannot hold, refused here, before any work, naming the
    node (the exporter would refuse it after compression). netx's CUBA neuron has no field for
    any variant; ``fires_at_equal`` alone is written as ``v > thr - 1 unit``, which is exact
    only for a membrane that stays on the threshold's grid (decays of 0 or 1:
    ``sim.fixed_point.at_or_above_vth``); a decaying one is refused with that reason."""
    wanted = set(formats) if formats is not None else {f for t in targets
                                                       for f in t.export_formats}
    if "netx" not in wanted:
        return []
    problems = []
    tail = ("" if formats is not None else " (netx is the default export of " + ", ".join(
        t.name for t in targets if "netx" in t.export_formats) + "; --export nir,onnx leaves "
        "it out)")
    for name in graph.topological_order:
        node = graph.nodes[name]
        if not (isinstance(node, Neuron) and node.spiking and node.spike_variant()):
            continue
        other = {k: v for k, v in node.spike_variant().items() if k != "fires_at_equal"}
        if other:
            problems.append(
                f"--export netx: node '{name}' fires by a rule netx cannot hold "
                f"({spike_variant_text(other)}); Lava's CUBA neuron sends one "
                "spike per step when v > vth and resets v to 0 in that step" + tail)
            continue
        # v >= thr is written as v > thr - 1 unit where that is exact (exporters/to_netx.py)
        decays = {(float(a), float(b)) for a, b in np.broadcast(
            node.synaptic_decay if node.synaptic_decay is not None else 0.0,
            node.membrane_decay)}
        why = next((p for p in (at_or_above_problem(a, b) for a, b in sorted(decays)) if p), None)
        if why:
            problems.append(f"--export netx: node '{name}' {why}" + tail)
    return problems


def sweep_points(request: Any) -> tuple[tuple[float | None, int | None], ...]:
    """The (sparsity, bits) points a request runs, the first being the one whose report
    sections and exports it writes: every ``sweep_sparsity`` value (else ``sparsity``) with
    every ``sweep_bits`` value (else ``bits``), sparsity outermost, in the order given."""
    sparsities = tuple(getattr(request, "sweep_sparsity", ()) or ()) or (request.sparsity,)
    bit_widths = tuple(getattr(request, "sweep_bits", ()) or ()) or (request.bits,)
    return tuple((s, b) for s in sparsities for b in bit_widths)


def point_label(sparsity: float | None, bits: int | None) -> str:
    """``sparsity 0.7, 4 bits``; a value left to the target reads ``default``."""
    return (f"sparsity {'default' if sparsity is None else f'{sparsity:g}'}, "
            + ("default bits" if bits is None else f"{bits} bits"))


def _sweep_list_problems(request: Any) -> list[str]:
    """A sweep's lists: no value twice, and ``sparsity`` / ``bits`` (what the first point
    runs) agree with them when an API caller sets both."""
    problems = []
    for flag, values, single in (("--sparsity", getattr(request, "sweep_sparsity", ()) or (),
                                  request.sparsity),
                                 ("--bits", getattr(request, "sweep_bits", ()) or (),
                                  request.bits)):
        values = tuple(values)
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            problems.append(f"{flag}: {', '.join(f'{v:g}' for v in twice)} listed twice; each "
                            "value of a sweep is run once")
        if values and single is not None and single != values[0]:
            problems.append(f"{flag}: the sweep's first value {values[0]:g} is the point the "
                            f"report's sections describe, but the request also sets {single:g}")
    if getattr(request, "config", None) is not None and (
            getattr(request, "sweep_sparsity", ()) or getattr(request, "sweep_bits", ())):
        problems.append("config: a sweep compresses each point with the config its flags and "
                        "each target make; a config given as it is has one point only")
    return problems


# --------------------------------------------------------------------------- the request
#
# validate_request runs the checks below in the order the CLI documents the flags; each appends
# its problems to one list, so that every problem is reported at once (none stops the rest).


def _check_targets(request: Any, problems: list[str]) -> list[Target]:
    """The targets ``--target`` names, loaded; compared targets must differ in name."""
    targets: list[Target] = []
    if not request.targets:
        problems.append("--target: name at least one target")
    for spec in request.targets:
        try:
            targets.append(spec if isinstance(spec, Target) else load_target(spec))
        except SbcDeployError as err:
            problems.append(_text(err))
    if len(targets) > 1:  # each compared target writes into OUTDIR/<name>/ (any letter case)
        names = [t.name.lower() for t in targets]
        for twice in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"--target: two targets are named '{twice}'; compared targets each "
                            "write into OUTDIR/<name>/, so their names must differ (ignoring "
                            "letter case)")
    return targets


def _check_scalar_flags(request: Any, problems: list[str]) -> None:
    """--max-drop, --rank-by and the evaluation limit, each on its own."""
    from sbc_deploy.report.summary import RANKINGS

    max_drop = getattr(request, "max_drop", None)
    if max_drop is not None and not (isinstance(max_drop, (int, float))
                                     and math.isfinite(max_drop) and 0 <= max_drop <= 100):
        problems.append(f"--max-drop: must lie in [0, 100] accuracy points, got {max_drop!r}")
    rank_by = getattr(request, "rank_by", "energy")
    if rank_by not in RANKINGS:
        problems.append(f"--rank-by {rank_by}: unknown; known: {', '.join(RANKINGS)}")
    if request.eval_limit is not None and request.eval_limit < 1:
        problems.append(f"eval_limit: must be >= 1, got {request.eval_limit}")


def _check_exports(formats: Any, targets: list[Target], problems: list[str]) -> None:
    """--export: known formats, and each taken by every target."""
    if formats is None:
        return
    if not formats:
        problems.append("--export: name at least one of " + ", ".join(EXPORTERS))
    for fmt in formats:
        if fmt not in EXPORTERS:
            problems.append(f"--export: unknown format {fmt!r}; known: "
                            f"{', '.join(EXPORTERS)}")
            continue
        for target in targets:
            if fmt not in target.export_formats:
                problems.append(f"--export {fmt}: {target.name} is not deployed through "
                                f"{fmt}; it takes {', '.join(target.export_formats) or 'none'}")


def _check_configs(request: Any, targets: list[Target], problems: list[str]
                   ) -> list[tuple[Target, Any, float | None]]:
    """The flags against each target's weight format and limits, at every point of a sweep;
    returns the compression config of each (target, point) that has one."""
    from sbc_deploy.compress.config import config_for_target

    points = sweep_points(request)
    problems.extend(_sweep_list_problems(request))
    configs: list[tuple[Target, Any, float | None]] = []
    for target in targets:
        weights, limits = target.weights, target.limits
        for bits in dict.fromkeys(b for _, b in points):
            if bits is not None and weights.grid not in ("float", "none") and \
                    bits > weights.bits:
                problems.append(f"--bits {bits}: {target.name} stores {weights.bits}-bit "
                                f"weights ({weights.grid}); use --bits {weights.bits} or fewer")
        if request.fan_in is not None and limits.max_fan_in is not None and \
                request.fan_in > limits.max_fan_in and not target.is_estimate("limits.max_fan_in"):
            problems.append(f"--fan-in {request.fan_in}: {target.name} allows at most "
                            f"{limits.max_fan_in} inputs per neuron")
        for sparsity, bits in points:
            where = (f"{target.name}" if len(points) == 1 else
                     f"{target.name} at {point_label(sparsity, bits)}")
            try:
                config = config_for_target(target, method=request.method, sparsity=sparsity,
                                           bits=bits, fan_in=request.fan_in, n_m=request.n_m,
                                           allocation=request.allocation)
            except SbcDeployError as err:
                problems.append(f"{where}: {_text(err)}")
            else:
                configs.append((target, config, sparsity))
    return configs


def _check_nir_consumer(request: Any, problems: list[str]) -> None:
    """--nir-for: a known NIR consumer (None: chosen from --from)."""
    from sbc_deploy.frontends.conventions import CONSUMERS

    nir_for = getattr(request, "nir_for", None) or "nir"
    if nir_for not in CONSUMERS:
        problems.append(f"--nir-for {nir_for}: unknown NIR consumer; known: "
                        f"{', '.join(CONSUMERS)}")


def _check_data(request: Any, graph: Graph, sources: tuple[Any, Any], files: list[str],
                data_progress: Callable[[str, int, int], None] | None, problems: list[str]
                ) -> tuple[Any, Any]:
    """--calib and --eval against the model (each subset as its flags ask); the files read are
    added to ``files``. Returns the calibration and evaluation data (None where not given)."""
    found: dict[str, Any] = {"--calib": None, "--eval": None}
    for label, source in zip(("--calib", "--eval"), sources):
        if source is None:
            continue
        subset = ({"per_class": getattr(request, "calib_per_class", None),
                   "seed": getattr(request, "calib_seed", 0)} if label == "--calib" else
                  {"limit": request.eval_limit})
        try:
            data = check_dataset(source, graph, label, **subset, progress=None if
                                 data_progress is None else
                                 (lambda d, t, f=label: data_progress(f, d, t)))
        except SbcDeployError as err:
            problems.append(_text(err))
            continue
        if not isinstance(source, Dataset):
            files.append(str(source))
        found[label] = data
    return found["--calib"], found["--eval"]


def _check_against_model(request: Any, graph: Graph, targets: list[Target],
                         configs: list[tuple[Target, Any, float | None]], calib_given: bool,
                         problems: list[str]) -> None:
    """What the model makes of the flags: calibration data where the method needs it, each
    point's sparsity, refusals by every target, spike variants, N:M against the fan-ins."""
    if not calib_given and any(config.needs_calibration for _, config, _ in configs):
        problems.append(f"--calib: --method {request.method} needs calibration data; pass "
                        "--calib DATA (or --method magnitude, which needs none)")
    for target, config, sparsity in configs:
        problem = sparsity_problem(graph, config, sparsity)
        if problem and f"{target.name}: {problem}" not in problems:
            problems.append(f"{target.name}: {problem}")
    refused = [(t.name, refusal(graph, t)) for t in targets]
    if targets and all(reason for _, reason in refused):
        problems.extend(f"--target {name}: refused before any work: {reason}"
                        for name, reason in refused)
    problems.extend(_spike_variant_problems(graph, targets, request.export))
    if request.n_m is not None:
        m = request.n_m[1]
        narrow = [(n, k) for n, k in _layer_inputs(graph) if k < m]
        if narrow:
            problems.append(f"--nm {request.n_m[0]}:{m}: layer '{narrow[0][0]}' has only "
                            f"{narrow[0][1]} inputs per neuron, fewer than M = {m}")


def _check_output(request: Any, files: list[str], problems: list[str]) -> None:
    """The output folder: usable, and holding none of the inputs (a run replaces it whole)."""
    from sbc_deploy.outputs import check_output_dir

    problems.extend(check_output_dir(request.out_dir, force=getattr(request, "force", False)))
    out = Path(request.out_dir).resolve()
    for file in dict.fromkeys(files):
        if out in Path(file).resolve().parents:
            problems.append(f"{file}: an input lies inside the output folder {request.out_dir}, "
                            "which a run replaces as a whole; move it or pick another -o")


def validate_request(request: Any, data_progress: Callable[[str, int, int], None] | None = None
                     ) -> Plan:
    """Check every flag of ``request`` (a :class:`~sbc_deploy.pipeline.DeployRequest`) against
    the targets, the model and the data; return what they resolved to.

    Raises:
        ValidationError: every problem found, one line each (nothing was created).
    """
    problems: list[str] = []
    targets = _check_targets(request, problems)
    _check_scalar_flags(request, problems)
    _check_exports(request.export, targets, problems)
    configs = _check_configs(request, targets, problems)
    _check_nir_consumer(request, problems)

    graph = calib = evaluation = None
    name, files = "", []
    try:
        graph, name, calib_src, eval_src, files = _load_model(request)
    except SbcDeployError as err:
        problems.append(_text(err))
    if graph is not None:
        calib, evaluation = _check_data(request, graph, (calib_src, eval_src), files,
                                        data_progress, problems)
        _check_against_model(request, graph, targets, configs, calib_src is not None, problems)
    for target in targets:
        if isinstance(getattr(target, "path", None), Path):
            files.append(str(target.path))
    _check_output(request, files, problems)
    if problems:
        raise ValidationError(problems)
    assert graph is not None
    return Plan(graph, name, tuple(targets), calib, evaluation, tuple(dict.fromkeys(files)))


__all__ = ["REFUSING_RULES", "Plan", "ValidationError", "check_dataset", "chip_layers",
           "host_placed", "largest_sparsity", "point_label", "refusal", "sparsity_bounds",
           "sparsity_problem", "sweep_points", "validate_request"]
