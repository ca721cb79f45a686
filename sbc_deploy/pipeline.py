"""``deploy()``: the straight line through the stages.

    load -> data -> calibrate -> compress -> check -> export -> simulate (float and integer core)
         -> SynOps and energy -> report

Every stage is a function of values; this module only passes results from one to the next,
times them, and assembles the :class:`~sbc_deploy.report.model.Report`. It never prints: progress
goes to the optional ``progress(stage, done, total, unit=..., detail=...)`` callback, called with
``done = 0`` when a stage starts and after every unit of work (``unit``: what ``done`` counts,
e.g. ``"samples"`` or ``"layers"``; ``detail``: what is being worked on, e.g. the layer).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from sbc_deploy.calibrate import calibrate
from sbc_deploy.check import check
from sbc_deploy.compress import compress
from sbc_deploy.compress.config import CompressionConfig, config_for_target
from sbc_deploy.data import Dataset
from sbc_deploy.devices import resolve_device
from sbc_deploy.errors import ConfigError, ExportError, GuardError, SbcDeployError
from sbc_deploy.exporters import EXPORTERS, export_path
from sbc_deploy.frontends import load_model
from sbc_deploy.guards import (
    DEFAULT_MAX_DROP,
    ActivityMeter,
    compressed_findings,
    dense_findings,
    measure_activity,
    spiking_layers,
)
from sbc_deploy.ir import Graph, Synapse
from sbc_deploy.report.details import cost_evidence, layer_details
from sbc_deploy.report.energy import estimate_energy
from sbc_deploy.report.model import (
    Accuracy,
    BeforeAfter,
    CoreRow,
    EnergyTerm,
    LayerRow,
    Report,
    Finding,
    TargetReport,
    ViolationRow,
)
from sbc_deploy.outputs import MANIFEST, Manifest, staged_output, subfolder
from sbc_deploy.report.render import write_report
from sbc_deploy.report.synops_counter import SynOpsCounter
from sbc_deploy.safeio import read_budget
from sbc_deploy.sim import classify, default_decoding, simulate
from sbc_deploy.targets import Target, load_target
from sbc_deploy.validate import (
    REFUSING_RULES,
    host_placed,
    point_label,
    refusal,
    sweep_points,
    validate_request,
)

log = logging.getLogger(__name__)

Progress = Callable[..., None]  # progress(stage, done, total, *, unit="samples", detail="")


def _silent(stage: str, done: int, total: int, **info: Any) -> None:
    return None

# Evaluation streams each batch through the simulator in chunks whose largest activation
# stays below this (see sbc_deploy.sim.float_sim.chunk_plan): the peak no longer grows with T.
EVAL_MEMORY_BUDGET = 64 << 20


@dataclass(frozen=True)
class DeployRequest:
    """What the user asked for (the CLI's arguments, as values)."""

    model: str | Path | Graph | None = None
    targets: tuple[str | Path | Target, ...] = ("loihi2",)
    calib: str | Path | Dataset | None = None
    eval: str | Path | Dataset | None = None
    method: str = "sbc"
    sparsity: float | None = None
    bits: int | None = None
    fan_in: int | None = None
    n_m: tuple[int, int] | None = None
    export: tuple[str, ...] | None = None
    out_dir: str | Path = "sbc-out"
    dt: float | None = None
    reset: str | None = None
    allocation: str = "lamp"  # per-layer split of the sparsity; LAMP as the SBC authors
    eval_limit: int | None = None
    batch_size: int = 128
    max_drop: float | None = DEFAULT_MAX_DROP  # accuracy points; None: guard off
    force: bool = False  # replace an OUTDIR holding files sbc-deploy did not write
    command: tuple[str, ...] = ()  # recorded in manifest.json
    device: str = "cpu"   # torch device of calibration, compression and the float simulator
    # bytes of the largest activation per simulation chunk during evaluation (None: no limit)
    sim_memory_budget: int | None = EVAL_MEMORY_BUDGET
    source: str | None = None  # framework convention of a NIR model (--from); None: detect
    discretization: str | None = None  # euler | exact for NIR (--discretization)
    input_shape: tuple[int, ...] | None = None  # conv-first netx without input layer
    # the NIR consumer the nir export is written for (--nir-for); None: the --from framework's
    # when it reads NIR (what came in as a framework's goes out as that framework's), else nir
    nir_for: str | None = None
    memory_budget: int | None = None  # bytes; None: half the machine's RAM (sbc_deploy.memory)
    distributed: bool = False  # one of torchrun's processes (sbc_deploy.distributed)
    hessian_precision: str = "float64"  # GEMMs of the Hessian sums (sbc_deploy.calibrate)
    calib_row_fraction: float = 1.0  # rows summed per calibration batch (unbiased estimate)
    calib_per_class: float | None = None  # class-balanced --calib draw (sbc_deploy.data.sampling)
    calib_seed: int = 0  # the draw's seed
    rank_by: str = "energy"  # how the report ranks the targets (report/summary.py RANKINGS)
    # a sweep (--sparsity 0.5,0.7 --bits 8,4): every (sparsity, bits) of these lists compressed
    # from one calibration; the first point is the run's own (validate.sweep_points)
    sweep_sparsity: tuple[float, ...] = ()
    sweep_bits: tuple[int, ...] = ()
    # A compression config used as it is instead of one made from the flags and the target
    # (sbc_deploy.oneshot(config=)).
    config: CompressionConfig | None = None
    # Extra outputs per target, written into the target's folder of the output set: called as
    # write_back(compressed_graph, folder) -> {name: path}; listed with the exports (a torch
    # module's compressed state dict: sbc_deploy.frontends.from_torch.writeback).
    write_back: Callable[[Graph, Path], Mapping[str, Path]] | None = None


@dataclass(frozen=True)
class TargetResult:
    """The compressed graph for one target and what was measured on it."""

    target: Target
    graph: Graph
    config: CompressionConfig
    stats: Any
    check: Any


@dataclass(frozen=True)
class DeployResult:
    report: Report | None  # None on a --distributed process other than rank 0
    results: tuple[TargetResult, ...]
    written: Mapping[str, Path] = field(default_factory=dict)


class _Clock:
    """Accumulates wall time per stage name."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def stage(self, name: str) -> "_Timer":
        return _Timer(self, name)


class _Timer:
    def __init__(self, clock: _Clock, name: str):
        self.clock, self.name = clock, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self.start
        self.clock.timings[self.name] = self.clock.timings.get(self.name, 0.0) + elapsed
        if self.name in ("calibrate", "compress"):  # their freed heap back to the OS
            from sbc_deploy.memory import release_freed_memory
            release_freed_memory()


# --------------------------------------------------------------------------- helpers


def _load(request: DeployRequest) -> tuple[Graph, str, Dataset | None, Dataset | None]:
    """The model and its data (the user's, or the bundled example's), checked against each
    other; :func:`~sbc_deploy.validate.validate_request` does this and every other check."""
    from sbc_deploy.validate import _load_model, check_dataset

    graph, name, calib, evaluation, _ = _load_model(request)
    return (graph, name, None if calib is None else check_dataset(calib, graph, "--calib"),
            None if evaluation is None else check_dataset(evaluation, graph, "--eval"))


def _batches(data: Dataset, batch_size: int, limit: int | None) -> Iterator[tuple[torch.Tensor,
                                                                                  torch.Tensor | None]]:
    n = len(data) if limit is None else min(limit, len(data))
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        x = torch.from_numpy(np.array(np.swapaxes(data.x[start:stop], 0, 1)))
        y = None if data.y is None else torch.from_numpy(np.array(data.y[start:stop]))
        yield x.to(torch.float32), y


@dataclass(frozen=True)
class _Evaluation:
    accuracy: float | None
    synops: Any
    activity: Any = None
    samples: int = 0  # samples evaluated


def _evaluate_float(graph: Graph, data: Dataset | None, request: DeployRequest,
                    progress: Progress, stage: str) -> _Evaluation:
    """Float accuracy and SynOps of ``graph`` on the evaluation data."""
    if data is None:
        return _Evaluation(None, None)
    meter = ActivityMeter(spiking_layers(graph), "evaluation")
    output = graph.outputs[0]
    mode = default_decoding(graph)
    correct, seen, reports = 0, 0, []
    total = len(data) if request.eval_limit is None else min(request.eval_limit, len(data))
    progress(stage, 0, total, unit="samples")
    # integer data (spikes, event counts) stays integer as float32: no per-chunk check needed
    integer = data.x.dtype == np.bool_ or np.issubdtype(data.x.dtype, np.integer)
    for x, y in _batches(data, request.batch_size, request.eval_limit):
        # streamed: SynOps and firing counted chunk by chunk, no layer's whole sequence kept
        counter = SynOpsCounter(graph, steps=x.shape[0], batch=x.shape[1],
                                integer_inputs=integer)
        result = simulate(graph, x, record=meter.layers, on_synapse_input=counter,
                          on_operands=counter.operands, on_recorded=meter.add, device=request.device,
                          memory_budget=request.sim_memory_budget)
        reports.append(counter.report())
        if y is not None:
            correct += int((classify(result.outputs[output].cpu(), mode) == y).sum())
        seen += x.shape[1]
        progress(stage, seen, total, unit="samples")
    accuracy = correct / seen if data.y is not None and seen else None
    # the meter counted a group of samples once per time chunk: the samples are ``seen``
    activity = dataclasses.replace(meter.result(), samples=seen)
    return _Evaluation(accuracy, _merge_synops(reports), activity, seen)


def _sides(dense: Any, after: Any, checked: Any) -> tuple[Any, Any, dict[str, Any]]:
    """The SynOps reports of the part of the network the target's chip runs (the chip / host
    split's chip nodes: what cores, SynOps and energy are counted on), and the report fields
    of the rest: ``synops_host`` (SynOps of the synapse layers the host runs, per sample) and
    ``product_ops`` (operations of the products of two activations, wherever they run;
    ``report.synops``), each dense and compressed."""
    split = getattr(checked, "split", None)
    host = {h.name for h in split.host} if split is not None else set()

    def side(report: Any, on_host: bool) -> Any:
        if report is None or not host:
            return report if not on_host else None
        names = {x.name for x in (*report.layers, *report.neurons, *report.products)}
        return report.restricted(names & host if on_host else names - host)

    def per_sample(report: Any, value: Any) -> float | None:
        return None if report is None else float(value(report))

    extra = {
        "synops_host": BeforeAfter(*(
            None if r is None else (per_sample(side(r, True), lambda x: x.per_sample)
                                    if host else 0.0) for r in (dense, after))),
        "product_ops": BeforeAfter(*(
            None if r is None or not r.products else r.product_ops / r.samples
            for r in (dense, after))),
    }
    return side(dense, False), side(after, False), extra


def _merge_synops(reports: Sequence[Any]) -> Any:
    merged = reports[0]
    for other in reports[1:]:
        merged = merged.merge(other)
    return merged


def _integer_accuracy(graph: Graph, data: Dataset | None, target: Target,
                      request: DeployRequest, netx_file: str | None,
                      progress: Progress = _silent, stage: str | None = None
                      ) -> tuple[float | None, str | None]:
    """Accuracy of the bit-accurate core on the network as deployed.

    When a netx file was written, the core runs that file (read back with ``from_netx``): the
    integers the chip would load, after the exporter's rewrites (pools folded into convolutions,
    gains into weights). Otherwise it runs the compressed graph itself.
    """
    if data is None or data.y is None:
        return None, None
    if target.weights.grid != "int_exp":
        return None, _no_core_model(target)
    from sbc_deploy.frontends import from_netx
    from sbc_deploy.sim.fixed_point import to_fixed_point
    from sbc_deploy.sim.int_core import evaluate_deployed

    deployed = graph if netx_file is None else from_netx(netx_file, dt=graph.dt)
    n = len(data) if request.eval_limit is None else min(request.eval_limit, len(data))
    if n == 0:
        return None, "no evaluation samples: integer accuracy not measured"
    stage = stage or f"integer core {target.name}"
    progress(stage, 0, n, unit="samples")
    correct = seen = 0
    try:
        net = to_fixed_point(deployed)
        for x, y in _batches(data, request.batch_size, request.eval_limit):  # one batch in memory
            result = evaluate_deployed(deployed, x, y, net=net, batch_size=request.batch_size,
                                       memory_budget=request.sim_memory_budget,
                                       device=request.device)
            correct += round(result.integer_accuracy * result.samples)
            seen += result.samples
            progress(stage, seen, n, unit="samples")
    except SbcDeployError as err:
        return None, f"integer core could not run this network: {err}"
    return correct / seen, None


def _no_core_model(target: Target) -> str:
    """Why the integer core cannot stand in for ``target``: it is Lava's fixed-point CUBA LIF
    (weights on a per-layer power-of-two grid, one spike per step, hard reset to 0, 12-bit
    decays); what of the target's neuron model differs, from its target file."""
    n = target.neurons
    differs = []
    if target.weights.grid != "int_exp":
        differs.append(f"{target.weights.grid} weights (Lava: int_exp mantissas)")
    if n.reset_modes and "zero" not in n.reset_modes:
        differs.append(f"{'/'.join(n.reset_modes)} reset (Lava: hard reset to 0)")
    if n.max_spikes_per_step != 1:
        cap = "unlimited" if n.max_spikes_per_step is None else f"up to {n.max_spikes_per_step}"
        differs.append(f"{cap} spikes per neuron and step (Lava: one)")
    if n.decay_format != "linear":
        kind = {"none": "no decays"}.get(n.decay_format, f"{n.decay_format} decays")
        differs.append(f"{kind} (Lava: 12-bit linear)")
    return (f"no bit-accurate core model for {target.name}: the integer core is Lava's "
            f"fixed-point CUBA LIF, and {target.name} has " + "; ".join(differs)
            + "; integer accuracy not measured")


def _layer_rows(graph: Graph, stats: Any, details: Mapping[str, Any] | None = None,
                dense: Graph | None = None) -> tuple[LayerRow, ...]:
    """One row per synapse layer of ``graph``; ``dense``: the network before compression
    (its per-layer fan-in maximum shows what a fan-in cap pruned)."""
    rows = []
    before = ({layer.name: int(layer.synapse.fan_in().max(initial=0))
               for layer in (dense or graph).synapse_layers()})
    details = details or {}
    losses = getattr(stats, "layer_loss", {}) if stats is not None else {}
    for layer in graph.synapse_layers():
        syn: Synapse = layer.synapse
        fan_in = syn.fan_in()
        kept = int(np.count_nonzero(syn.weight))
        encoding = syn.encoding
        rows.append(LayerRow(
            name=layer.name, kind=syn.kind, shape=tuple(int(v) for v in syn.weight.shape),
            sparsity=1.0 - kept / syn.weight.size, weight_bits=encoding.bits if encoding else None,
            fan_in_max=int(fan_in.max()) if fan_in.size else 0, synapses=kept,
            dense_synapses=int(syn.weight.size), grid=encoding.grid if encoding else None,
            layer_loss=losses.get(layer.name) if isinstance(losses, Mapping) else None,
            fan_in=tuple(int(v) for v in fan_in), fan_in_max_dense=before.get(layer.name),
            neuron=layer.neuron_name, **_detail_fields(details.get(layer.name))))
    return tuple(rows)


def _detail_fields(detail: Any) -> dict[str, Any]:
    if detail is None:
        return {}
    return {key: getattr(detail, key) for key in (
        "synops_dense", "synops_compressed", "energy_dense_j", "energy_compressed_j",
        "rate_dense", "rate_compressed", "storage", "memory_bits_dense", "memory_bits_sparse",
        "cores")}


def _rates(evaluation: _Evaluation) -> dict[str, float]:
    """Spikes per neuron per step of each spiking layer (the guards' activity measurement)."""
    return dict(evaluation.activity.rate) if evaluation.activity is not None else {}


def _grade(grades: Mapping[str, str], term: str) -> str:
    """Evidence grade of an energy term (``"core steps (6 cores)"`` -> ``"core steps"``)."""
    return grades.get(term.split(" (")[0], "unknown")


def _limits(target: Target) -> dict[str, Any]:
    spec = target.cores
    return {"max_fan_in": target.limits.max_fan_in,
            "synapse_storage": spec.synapse_storage, "index_bits": spec.index_bits,
            "bits_per_weight": spec.bits_per_weight, "split_layers": spec.split_layers,
            "max_in_axons": spec.max_in_axons, "max_out_axons": spec.max_out_axons}


def _stage_plan(request: DeployRequest, graph: Graph, targets: Sequence[Target],
                calib: Dataset | None, evaluation: Dataset | None) -> list[str]:
    """The stages a run goes through, in order, as the progress callback names them."""
    stages = ["load"] + (["evaluate dense"] if evaluation is not None else [])
    targets = [t for t in targets if refusal(graph, t) is None]
    configs = [config_for_target(t, method=request.method, sparsity=request.sparsity,
                                 bits=request.bits, fan_in=request.fan_in, n_m=request.n_m,
                                 allocation=request.allocation) for t in targets]
    if calib is not None and any(c.needs_calibration for c in configs):
        stages.append("calibrate")
    labelled = evaluation is not None and evaluation.y is not None
    for t in targets:
        if refusal(graph, t) is not None:  # refused before compression: no stage of its own
            continue
        stages += [f"compress {t.name}", f"export {t.name}"]
        stages += [f"evaluate {t.name}"] if evaluation is not None else []
        stages += [f"integer core {t.name}"] if labelled and t.weights.grid == "int_exp" else []
        for sparsity, bits in sweep_points(request)[1:]:  # a sweep's other points
            label = point_label(sparsity, bits)
            stages += [f"compress {t.name} ({label})"]
            stages += [f"evaluate {t.name} ({label})"] if evaluation is not None else []
            stages += ([f"integer core {t.name} ({label})"]
                       if labelled and t.weights.grid == "int_exp" else [])
    return stages


def _numbered(progress: Progress, stages: Sequence[str]) -> Progress:
    """``progress`` that also hears ``step=(k, n)``: its stage's place in the run (stage k of
    n), where the callback takes a ``step`` keyword (or ``**kwargs``); others are called as
    before."""
    import inspect

    try:
        params = inspect.signature(progress).parameters.values()
    except (TypeError, ValueError):
        return progress
    if not any(p.name == "step" or p.kind is p.VAR_KEYWORD for p in params):
        return progress
    index = {name: i + 1 for i, name in reversed(list(enumerate(stages)))}

    def numbered(stage: str, done: Any, total: Any, **info: Any) -> None:
        if stage in index:
            info.setdefault("step", (index[stage], len(stages)))
        progress(stage, done, total, **info)

    return numbered


def _layer_progress(graph: Graph, config: CompressionConfig, target: Target,
                    progress: Progress) -> "_LayerProgress":
    """compress()'s ``progress(done, total)`` -> the pipeline's, naming the next layer."""
    return _LayerProgress(graph, config, f"compress {target.name}", progress)


class _LayerProgress:
    """The compress stage's bar: whole layers from ``compress(progress=)``, and inside each
    layer the solvers' own units (``within_layer``: ADMM iterations, OBS columns, rows), so a
    large layer moves the bar (``1.4 / 3 layers``) and says what it solves."""

    def __init__(self, graph: Graph, config: CompressionConfig, stage: str,
                 progress: Progress):
        wanted = getattr(config, "layers", None)
        self.layers = [layer for layer in graph.synapse_layers()
                       if not wanted or layer.name in wanted]
        # the phases a layer goes through, in order: each takes an equal part of the layer
        self.phases = (["prune"] if config.prune else []) + (["quantize"] if config.quantize
                                                               else [])
        self.stage, self.progress, self.done = stage, progress, 0.0
        progress(stage, 0, len(self.layers), unit="layers", detail=self._name(0))

    def _name(self, i: int) -> str:
        if i >= len(self.layers):
            return ""
        layer = self.layers[i]
        shape = "x".join(str(v) for v in layer.synapse.weight.shape)
        name = layer.name if not layer.neuron_name else f"{layer.name} -> {layer.neuron_name}"
        return f"{name} {shape}"

    def __call__(self, done: int, total: int) -> None:
        self.done = max(self.done, float(done))
        self.progress(self.stage, done, total, unit="layers", detail=self._name(done))

    def within_layer(self, index: int, phase: str, done: int, total: int, unit: str) -> None:
        share = len(self.phases) or 1
        part = (self.phases.index(phase) if phase in self.phases else 0) + done / max(total, 1)
        # layers solved in parallel tick one after another; the bar never goes back
        self.done = max(self.done, index + min(part / share, 0.999))
        self.progress(self.stage, round(self.done, 3), len(self.layers), unit="layers",
                      detail=f"{self._name(index)}: {phase} {unit} {done}/{total}")


def _violation_rows(result: Any, host: frozenset[str] = frozenset()
                    ) -> tuple[ViolationRow, ...]:
    """The check's violations as report rows. A node in ``host`` (``validate.host_placed``: a
    target that runs part of the network places it on the host) breaks no rule by running
    there: its neuron-model or layer-type error is a warning that says so."""
    rows = []
    for v in result.violations:
        severity, message = v.severity, v.message
        if v.rule in REFUSING_RULES and v.layer in host and severity == "error":
            severity = "warning"
            message += "; it runs on the host (see the chip / host split)"
        rows.append(ViolationRow(v.layer, v.rule, v.limit, v.actual, message, severity,
                                 tuple(getattr(v, "neurons", ())), getattr(v, "remedy", None)))
    return tuple(rows)


def _placement(graph: Graph, checked: Any, host: frozenset[str] = frozenset(),
               rules: Sequence[str] | None = None) -> tuple[dict[str, Any], ...]:
    """Where each layer goes (``TargetReport.placement``), from the check's chip / host split.

    A synapse node and the neuron it feeds directly are one row (the report's ``synapse ->
    neuron``; ``runs_on`` is ``chip + host`` when the chip runs the synapses and the host the
    neurons, or the other way round); every other node but the I/O ports is a row of its own,
    so every target's rows are the same. ``rules``: only these rules' errors are listed (a
    refused target's: what compression would fix is beside the point).
    """
    split = checked.split
    if split is None:
        return ()
    reasons = {h.name: h.reason for h in split.host}
    part = {n: k + 1 for k, segment in enumerate(split.segments) for n in segment.nodes}
    cores = {layer.name: tuple(layer.cores) for layer in getattr(checked.mapping, "layers", ())}
    errors: dict[str, set[str]] = {}
    for v in checked.violations:  # the rules chip-side nodes break (a host node's: its reason)
        if (v.severity == "error" and v.layer in split.chip and v.layer not in host
                and (rules is None or v.rule in rules)):
            errors.setdefault(v.layer, set()).add(v.rule)
    grouped = {layer.name: layer.neuron_name for layer in graph.synapse_layers()
               if layer.neuron_name and graph.successors(layer.name) == (layer.neuron_name,)}
    rows = []
    for name in graph.topological_order:
        if name in grouped.values() or split.placement(name) == "io":
            continue
        nodes = [name] + ([grouped[name]] if name in grouped else [])
        rows.append({
            "layer": " -> ".join(nodes), "nodes": nodes,
            "kind": " -> ".join(graph.nodes[n].kind for n in nodes),
            "runs_on": " + ".join(dict.fromkeys(split.placement(n) for n in nodes)),
            "sides": [split.placement(n) for n in nodes],
            "part": part.get(name),
            "reason": "; ".join(reasons[n] for n in nodes if n in reasons),
            "cores": sorted({c for n in nodes for c in cores.get(n, ())}),
            "violations": sorted({r for n in nodes for r in errors.get(n, ())})})
    return tuple(rows)


def _core_rows(mapping: Any, target: Target | None = None) -> tuple[CoreRow, ...]:
    from sbc_deploy.report.summary import core_binding

    spec = None if target is None else target.cores
    rows = []
    for core in mapping.cores:
        row = CoreRow(core=core.index, layer=", ".join(core.layers), neurons=core.neurons,
                      synapse_bits=core.synapse_bits,
                      neuron_utilisation=core.neuron_utilisation,
                      memory_utilisation=core.memory_utilisation,
                      neuron_capacity=core.neuron_capacity,
                      memory_capacity=core.memory_capacity,
                      in_axons=core.in_axons, out_axons=core.out_axons,
                      in_axon_capacity=None if spec is None else spec.max_in_axons,
                      out_axon_capacity=None if spec is None else spec.max_out_axons)
        rows.append(dataclasses.replace(row, binding=core_binding(row)))
    return tuple(rows)


def _memory_bytes(dense_mapping: Any, compressed_mapping: Any) -> BeforeAfter:
    """Synapse memory on the chip, in bytes, of the original (dense) network and of the
    compressed one: each as the target's mapping stores it (dense, sparse or kernel form, the
    same cost model), so the two compare like for like."""
    def total(mapping: Any) -> float | None:
        layers = getattr(mapping, "layers", ())
        return sum(layer.synapse_bits for layer in layers) / 8 if layers else None

    return BeforeAfter(total(dense_mapping), total(compressed_mapping))


def _removed(dense: Graph, compressed: Graph, stats: Any) -> tuple[int, int]:
    """Synapses non-zero in the dense network and zero after compression, and how many of them
    the pruning mask did not choose (they rounded to zero on the weight grid)."""
    pruned = {s.name: s.pruned for s in getattr(stats, "layers", ())}
    removed = by_rounding = 0
    for layer in dense.synapse_layers():
        before = np.asarray(layer.synapse.weight) != 0
        after = np.asarray(compressed.nodes[layer.name].weight) != 0
        gone = int(np.count_nonzero(before & ~after))
        removed += gone
        by_rounding += max(0, gone - int(pruned.get(layer.name, 0)))
    return removed, by_rounding


def _latency(target: Target, steps: int | None) -> dict[str, Any]:
    step_us = target.timing.step_us
    if step_us is None or not steps:
        return {"steps": steps}
    latency = steps * step_us * 1e-6
    grade = target.source("timing.step_us").evidence
    return {"steps": steps, "latency_s": latency, "throughput_hz": 1.0 / latency,
            "latency_evidence": grade}


def _borrowed(target: Target) -> dict[str, str]:
    """Energy terms whose cost is another chip's figure, by the report's term names."""
    names = {"synop_pj": "synops", "neuron_update_pj": "neuron updates",
             "spike_routed_pj": "spikes routed", "core_step_pj": "core steps"}
    return {term: prov.borrowed_from for key, term in names.items()
            if (prov := target.source(f"energy.{key}")).borrowed_from}


def _deciding(mapping: Any, target: Target) -> str | None:
    from sbc_deploy.report.summary import deciding_limit

    return deciding_limit(_core_rows(mapping, target), _limits(target))


def _decision_fields(dense: Graph, compressed: Graph, stats: Any, target: Target, checked: Any,
                     dense_mapping: Any, steps: int | None) -> dict[str, Any]:
    """The :class:`TargetReport` fields an engineer decides from (report/summary.py)."""
    removed, by_rounding = _removed(dense, compressed, stats)
    dense_cores = dense_mapping.cores_used
    return {"cores_dense": dense_cores, "deciding_limit": _deciding(checked.mapping, target),
            "memory_bytes": _memory_bytes(dense_mapping, checked.mapping),
            "synapses_removed": removed,
            "removed_by_rounding": by_rounding, "borrowed": _borrowed(target),
            **_latency(target, steps)}


def _refused_report(graph: Graph, target: Target, reason: str) -> TargetReport:
    """A target refused before compression: the dense network's check, and the reason."""
    checked = check(graph, target)
    return TargetReport(
        target=target.name, description=target.description, method="refused before compression",
        layers=_layer_rows(graph, None, layer_details(graph, target, checked.mapping, None, None,
                                                      {}, {})),
        violations=tuple(v for v in _violation_rows(checked) if v.rule in REFUSING_RULES),
        cores_used=checked.mapping.cores_used,
        cores_available=target.cores.cores, cores=_core_rows(checked.mapping, target),
        limits=_limits(target), cores_dense=checked.mapping.cores_used,
        deciding_limit=_deciding(checked.mapping, target), borrowed=_borrowed(target),
        refused=reason, chip_host_split=checked.split.to_dict() if checked.split else {},
        placement=_placement(graph, checked, rules=REFUSING_RULES),
        notes=(f"refused before compression: {reason}; nothing was compressed or exported for "
               f"{target.name}",))


def _export(graph: Graph, target: Target, request: DeployRequest, out_dir: Path,
            steps: int, progress: Progress = _silent) -> tuple[dict[str, str], list[str]]:
    formats = request.export if request.export is not None else target.export_formats
    written, notes = {}, []
    from sbc_deploy.frontends.conventions import CONSUMERS

    if request.nir_for not in CONSUMERS:
        raise ConfigError(f"unknown NIR consumer {request.nir_for!r}; known: "
                          f"{', '.join(CONSUMERS)}", where="--nir-for")
    stage = f"export {target.name}"
    for i, fmt in enumerate(formats):
        progress(stage, i, len(formats), unit="files", detail=fmt)
        if fmt not in EXPORTERS:
            raise ConfigError(f"unknown export format {fmt!r}; known: {', '.join(EXPORTERS)}",
                              where="--export")
        if fmt not in target.export_formats:
            notes.append(f"{fmt} export skipped: {target.name} is not deployed through {fmt}")
            continue
        path = export_path(out_dir, fmt)
        try:
            if fmt == "nir" and request.nir_for != "nir":
                from sbc_deploy.exporters.to_nir import write_nir_for

                adapted = write_nir_for(graph, path, nir_for=request.nir_for)
                notes.extend(f"nir export for {request.nir_for}: {line}"
                             for line in adapted.notes)
            else:
                EXPORTERS[fmt](graph, path, steps=steps)
        except ExportError as err:
            notes.append(f"{fmt} export refused: {err}")
            continue
        written[fmt] = str(path)
    progress(stage, len(formats), len(formats), unit="files")
    return written, notes


# --------------------------------------------------------------------------- the pipeline


def _n_classes(graph: Graph, data: Any) -> int | None:
    """Classes the output can tell apart (the output's size), for the chance level."""
    if data is None or data.y is None:
        return None
    shape = tuple(graph.nodes[graph.outputs[0]].output_shape)
    return int(np.prod(shape)) if shape else None


def _early_activity(graph: Graph, dense: _Evaluation, calib: Dataset | None) -> Any:
    """Activity of the dense network: on the evaluation data when given, else on a few
    calibration samples (one short simulation)."""
    if dense.activity is not None:
        return dense.activity
    if calib is None or len(calib) == 0:
        return None
    return measure_activity(graph, np.asarray(calib.x[:32]), "calibration")


def deploy(request: DeployRequest, progress: Progress | None = None) -> DeployResult:
    """Run every stage for every requested target and write the report and exports.

    Every flag is validated against the targets, the model and the data first
    (:func:`~sbc_deploy.validate.validate_request`); the dense network's guards run before
    compression; the outputs are written into a staging folder that replaces OUTDIR in one step
    at the end (:mod:`sbc_deploy.outputs`).

    Raises:
        SbcDeployError: bad input (file, data, flag): nothing is written in that case.
        GuardError: the dense network is silent or at chance on the data (nothing is written).
        MemoryBudgetError: a stage would not fit ``request.memory_budget`` (before any work).

    With ``request.distributed`` the call joins the processes torchrun started
    (:mod:`sbc_deploy.distributed`): all of them validate, run the dense guards, calibrate and
    compress together; rank 0 checks, evaluates and writes, the others return a result
    without a report.
    """
    if request.distributed:
        from sbc_deploy import distributed

        with distributed.session(request.device):
            return _deploy(request, progress)
    return _deploy(request, progress)


# Long by design: DESIGN.md asks for one function that is the straight line through the stages
# (load, plan, dense evaluation and guards, then per target calibrate, compress, check, export,
# evaluate, report); each stage is one call, and cutting the line would hide their order.
def _deploy(request: DeployRequest, progress: Progress | None = None) -> DeployResult:
    from sbc_deploy import distributed
    from sbc_deploy.memory import plan_memory

    group = distributed.active()
    progress = progress or _silent
    clock = _Clock()

    with clock.stage("load"):
        progress("load", 0, 1, unit="steps")
        resolve_device(request.device)   # a bad or absent device fails before any work
        with read_budget(request.memory_budget):  # readers claim declared sizes first
            plan = validate_request(request, data_progress=lambda flag, done, total:
                                    progress("read data", done, total, unit="files",
                                             detail=flag))
        points = sweep_points(request)
        request = dataclasses.replace(request, sparsity=points[0][0], bits=points[0][1])
        graph, model_name, calib, evaluation = (plan.graph, plan.model_name, plan.calib,
                                                plan.evaluation)
        steps = max((d.steps for d in (calib, evaluation) if d is not None), default=1)
        memory = plan_memory(graph, steps=steps, batch_size=request.batch_size,
                             calibrate=calib is not None and request.method != "magnitude",
                             budget=request.memory_budget,
                             world_size=1 if group is None else group.world_size,
                             sim_memory_budget=request.sim_memory_budget,
                             data_bytes=sum(int(getattr(getattr(d, "x", None), "nbytes", 0))
                                            for d in (calib, evaluation) if d is not None))
    targets = plan.targets
    as_read = graph
    request, graph, consumer_notes = _for_nir_consumer(graph, request, targets)
    progress = _numbered(progress, _stage_plan(request, graph, targets, calib, evaluation))
    progress("load", 1, 1, unit="steps")
    with clock.stage("evaluate dense"):
        dense = _evaluate_float(graph, evaluation, request, progress, "evaluate dense")
        dense_activity = _early_activity(graph, dense, calib)
        calib_activity = (dense_activity if dense_activity is None or
                          dense_activity.source == "calibration" or calib is None else
                          measure_activity(graph, np.asarray(calib.x[:32]), "calibration"))
    def guards(cause: str | None = None) -> list[Finding]:
        found = dense_findings(dense_activity, dense.accuracy, dt=graph.dt,
                               n_classes=_n_classes(graph, evaluation),
                               reset=graph.metadata.get("reset"), cause=cause)
        if calib_activity is not None and calib_activity is not dense_activity:
            # calibration data that never drives a layer gives that layer a zero Hessian
            found += dense_findings(calib_activity, None, dt=graph.dt, n_classes=None,
                                    reset=graph.metadata.get("reset"), cause=cause)
        return found

    findings: list[Finding] = guards()
    stopping = [f for f in findings if f.severity == "error"]
    if stopping and graph is not as_read:
        cause = _conversion_cause(as_read, dense, request, calib, evaluation)
        if cause:
            findings = guards(cause)
            stopping = [f for f in findings if f.severity == "error"]
    if stopping:
        raise GuardError("the dense network fails a quality guard before compression; nothing "
                         "was compressed or written:",
                         items=[f"[{f.code}] {f.message} (hint: {f.hint})" for f in stopping],
                         findings=tuple(findings))

    settings = {k: v for k, v in vars(request).items()
                if k not in ("model", "calib", "eval", "targets", "command", "config",
                             "write_back")}
    if request.config is not None:
        settings["config"] = repr(request.config)
    settings["memory"] = memory.to_dict()
    if group is not None:
        settings["processes"] = group.world_size
        settings["backend"] = group.backend
    if not distributed.is_writer():  # calibrate and compress with rank 0, which writes
        return _participate(graph, calib, targets, request, memory, progress)
    manifest = Manifest(command=request.command, versions=_versions(), inputs=plan.inputs,
                        settings={**settings, "targets": [t.name for t in targets],
                                  "model": model_name})
    final_dir = Path(request.out_dir).resolve()
    with staged_output(request.out_dir, manifest, force=request.force) as out_dir:
        results, reports = [], []
        sweep: list[dict[str, Any]] = []
        calibrations: dict[Any, Any] = {}
        activity: dict[str, Any] = {"dense": dense_activity.to_dict() if dense_activity
                                    else None}
        if calib_activity is not None and calib_activity is not dense_activity:
            activity["calibration"] = calib_activity.to_dict()
        for target in targets:
            reason = refusal(graph, target)
            if reason is not None:  # before any compression: nothing to compress it for
                with clock.stage("check"):
                    reports.append(_refused_report(graph, target, reason))
                continue
            config = request.config or config_for_target(
                target, method=request.method, sparsity=request.sparsity, bits=request.bits,
                fan_in=request.fan_in, n_m=request.n_m, allocation=request.allocation,
                device=request.device)
            with clock.stage("calibrate"):
                calibration = _calibration(graph, calib, config, calibrations, memory, request,
                                           progress)
            with clock.stage("compress"):
                compressed, stats = compress(graph, calibration, config,
                                             progress=_layer_progress(graph, config, target,
                                                                      progress))
            with clock.stage("check"):
                checked = check(compressed, target)
                host = host_placed(compressed, target)  # nodes the split runs on the host
                dense_mapping = check(graph, target).mapping
                dense_cores = dense_mapping.cores_used
            # the target's name was checked at load (targets.NAME_RULE); subfolder() refuses
            # anything that would still leave the staging folder
            target_dir = out_dir if len(targets) == 1 else subfolder(out_dir, target.name)
            target_dir.mkdir(parents=True, exist_ok=True)
            steps = evaluation.steps if evaluation is not None else (calib.steps if calib else 1)
            with clock.stage("export"):
                exports, notes = _export(compressed, target, request, target_dir, steps,
                                         progress)
                if request.write_back is not None:
                    exports.update({name: str(path) for name, path in
                                    request.write_back(compressed, target_dir).items()})
            notes = _import_notes(graph) + consumer_notes + notes
            with clock.stage("evaluate compressed"):
                after = _evaluate_float(compressed, evaluation, request, progress,
                                        f"evaluate {target.name}")
            with clock.stage("integer core"):
                integer, note = _integer_accuracy(compressed, evaluation, target, request,
                                                  exports.get("netx"), progress)
            if note:
                notes.append(note)
            notes.extend(memory.notes)
            for fmt in (request.export or ()):
                refused = [n for n in notes if n.startswith(f"{fmt} export refused")]
                if refused:  # asked for by name: a missing file is a failed run
                    findings.append(Finding(
                        "error", "export_refused", f"{target.name} {fmt}", refused[0],
                        "the exporter cannot write this network in that format; see its "
                        "message, or leave the format out of --export", target.name))
            findings += compressed_findings(
                target.name, dense=dense.activity, compressed=after.activity,
                dense_accuracy=dense.accuracy, float_accuracy=after.accuracy,
                integer_accuracy=integer, max_drop=request.max_drop)
            dense_chip, after_chip, host_counts = _sides(dense.synops, after.synops, checked)
            energy = (estimate_energy(dense_chip, after_chip, target,
                                      cores=checked.mapping.cores_used, dense_cores=dense_cores)
                      if dense.synops is not None else None)
            details = layer_details(compressed, target, checked.mapping, dense.synops,
                                    after.synops, _rates(dense), _rates(after),
                                    host=checked.offloaded)
            final_exports = {fmt: str(final_dir / Path(p).relative_to(out_dir))
                             for fmt, p in exports.items()}
            reports.append(TargetReport(
                **_measured_fields(
                    target, request, graph, compressed, stats, checked, host, dense, after,
                    integer, (dense_chip, after_chip, host_counts), energy, dense_mapping, steps,
                    details),
                ann_equivalent=dict(energy.ann_equivalent) if energy else {},
                exports=final_exports, notes=tuple(notes),
                chip_host_split=checked.split.to_dict() if checked.split else {},
                placement=_placement(compressed, checked, host)))
            results.append(TargetResult(target, compressed, config, stats, checked))
            if after.activity is not None:
                activity[target.name] = after.activity.to_dict()
            if len(points) > 1:  # the other points, from the same calibration
                sweep += _sweep(graph, target, request, points, reports[-1], config, dense,
                                evaluation, calibrations, calib, memory, clock, progress, steps)

        settings["calibration"] = {f"{kernel}@{device}": c.settings()
                                   for (kernel, device), c in calibrations.items()}
        from sbc_deploy.report.summary import rank

        report = Report(model=model_name, dt=graph.dt, reset=graph.metadata.get("reset"),
                        targets=tuple(reports), timings_s=dict(clock.timings),
                        settings=settings, versions=_versions(), findings=tuple(findings),
                        activity=activity, rank_by=request.rank_by,
                        ranking=rank(reports, request.rank_by), sweep=tuple(sweep))
        written = write_report(report, out_dir)
        written = {k: final_dir / Path(p).relative_to(out_dir) for k, p in written.items()}
        written["manifest"] = final_dir / MANIFEST  # written with the swap, below
    return DeployResult(report, tuple(results), written)


def _calibration(graph: Graph, calib: Dataset | None, config: CompressionConfig,
                 calibrations: dict[Any, Any], memory: Any, request: DeployRequest,
                 progress: Progress) -> Any:
    """The calibration ``config`` compresses from: computed once per Hessian kernel and
    device (sparsity and bits change neither), kept in ``calibrations`` for the next target
    or sweep point."""
    key = (config.kernel, config.device)
    if key not in calibrations:
        if calib is not None and config.needs_calibration:
            progress("calibrate", 0, len(calib), unit="samples")
        calibrations[key] = calibrate(
            graph, calib if config.needs_calibration else None, config=config,
            blocks=memory.blocks, precision=request.hessian_precision,
            row_fraction=request.calib_row_fraction,
            progress=lambda d, t: progress("calibrate", d, t, unit="samples"))
    return calibrations[key]


def _measured_fields(target: Target, request: DeployRequest, graph: Graph, compressed: Graph,
                     stats: Any, checked: Any, host: Any, dense: _Evaluation,
                     after: _Evaluation, integer: float | None, synops: tuple[Any, Any, Any],
                     energy: Any, dense_mapping: Any, steps: int | None,
                     details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The :class:`TargetReport` fields a compressed point of ``target`` is judged by (layers,
    violations, cores, accuracy, SynOps, energy and the decision fields), the same for the
    run's own point and for each point of a sweep. ``synops``: ``_sides``'s chip SynOps dense
    and compressed and the host counts; ``host``: the nodes placed on the host."""
    dense_chip, after_chip, host_counts = synops
    grades = cost_evidence(target)
    return dict(
        target=target.name, description=target.description, method=request.method,
        layers=_layer_rows(compressed, stats, details, dense=graph),
        violations=_violation_rows(checked, host),
        cores_used=checked.mapping.cores_used, cores_available=target.cores.cores,
        cores=_core_rows(checked.mapping, target), limits=_limits(target),
        accuracy=Accuracy(dense.accuracy, after.accuracy, integer,
                          samples=after.samples if after.accuracy is not None else None),
        synops=BeforeAfter(*(None if e is None else e.per_sample
                             for e in (dense_chip, after_chip))),
        **host_counts,
        energy_j=BeforeAfter(*(energy.total_j if energy else (None, None))),
        energy_terms=tuple(EnergyTerm(*term, evidence=_grade(grades, term.name))
                           for term in energy.terms) if energy else (),
        **_decision_fields(graph, compressed, stats, target, checked, dense_mapping, steps))


def _sweep(graph: Graph, target: Target, request: DeployRequest,
           points: Sequence[tuple[float | None, int | None]], primary: TargetReport,
           primary_config: CompressionConfig, dense: _Evaluation, evaluation: Dataset | None,
           calibrations: dict[Any, Any], calib: Dataset | None, memory: Any, clock: _Clock,
           progress: Progress, steps: int | None) -> list[dict[str, Any]]:
    """One row per (sparsity, bits) point of a sweep on ``target``, the run's own point first
    (``primary``). Every other point is compressed from the same calibration, checked,
    evaluated (float simulator, and the integer core on the compressed graph: nothing is
    exported for it) and costed; the quality guards judge the run's own point only."""
    from sbc_deploy.report.sweep import sweep_row

    rows = [sweep_row(primary, points[0][0], getattr(primary_config, "bits", None),
                      primary=True)]
    dense_mapping = check(graph, target).mapping
    for sparsity, bits in points[1:]:
        label = point_label(sparsity, bits)
        config = config_for_target(target, method=request.method, sparsity=sparsity, bits=bits,
                                   fan_in=request.fan_in, n_m=request.n_m,
                                   allocation=request.allocation, device=request.device)
        with clock.stage("calibrate"):
            calibration = _calibration(graph, calib, config, calibrations, memory, request,
                                       progress)
        with clock.stage("sweep"):
            compressed, stats = compress(graph, calibration, config, progress=_LayerProgress(
                graph, config, f"compress {target.name} ({label})", progress))
            checked = check(compressed, target)
            after = _evaluate_float(compressed, evaluation, request, progress,
                                    f"evaluate {target.name} ({label})")
            integer, _ = _integer_accuracy(compressed, evaluation, target, request, None,
                                           progress, stage=f"integer core {target.name} "
                                                           f"({label})")
            dense_chip, after_chip, host_counts = _sides(dense.synops, after.synops, checked)
            energy = (estimate_energy(dense_chip, after_chip, target,
                                      cores=checked.mapping.cores_used,
                                      dense_cores=dense_mapping.cores_used)
                      if dense_chip is not None and after_chip is not None else None)
        point = TargetReport(**_measured_fields(
            target, request, graph, compressed, stats, checked, host_placed(compressed, target),
            dense, after, integer, (dense_chip, after_chip, host_counts), energy, dense_mapping,
            steps))
        rows.append(sweep_row(point, sparsity, getattr(config, "bits", None), primary=False))
    return rows


def _participate(graph: Graph, calib: Dataset | None, targets: Sequence[Target],
                 request: DeployRequest, memory: Any, progress: Progress) -> DeployResult:
    """A --distributed process other than rank 0: the collective stages only, nothing written.
    It follows rank 0's order: targets refused before compression are skipped, and every point
    of a sweep is compressed (the first is the run's own, kept in ``results``)."""
    results, calibrations = [], {}
    for target in targets:
        if refusal(graph, target) is not None:  # rank 0 compresses nothing for it
            continue
        for k, (sparsity, bits) in enumerate(sweep_points(request)):
            config = (request.config if k == 0 and request.config is not None else
                      config_for_target(target, method=request.method, sparsity=sparsity,
                                        bits=bits, fan_in=request.fan_in, n_m=request.n_m,
                                        allocation=request.allocation, device=request.device))
            key = (config.kernel, config.device)
            if key not in calibrations:
                calibrations[key] = calibrate(
                    graph, calib if config.needs_calibration else None, config=config,
                    blocks=memory.blocks, precision=request.hessian_precision,
                    row_fraction=request.calib_row_fraction,
                    progress=lambda d, t: progress("calibrate", d, t))
            compressed, stats = compress(graph, calibrations[key], config,
                                         progress=lambda d, t: progress("compress", d, t))
            if k == 0:
                results.append(TargetResult(target, compressed, config, stats, None))
    return DeployResult(None, tuple(results))


def _for_nir_consumer(graph: Graph, request: DeployRequest, targets: Sequence[Target]
                      ) -> tuple[DeployRequest, Graph, list[str]]:
    """Which framework model.nir is written for, and the graph in the model its importer builds.

    ``--nir-for X`` names it. Without it, a NIR model read ``--from X`` (X a framework whose
    importer reads NIR) goes back out as X's -- what came in as a framework's goes out as that
    framework's -- and anything else as spec NIR. When model.nir is written for X, the graph is
    converted to the neurons X's importer builds (sinabs' multi-spike layers and IF clamp,
    rockpool's multi-spike LIFTorch, spyx's late spikes:
    :func:`~sbc_deploy.exporters.nir_consumers.consumer_model`) before anything is simulated, so
    that calibration, compression and every accuracy in the report are those of the network X
    will run. Each choice is logged (the run's output) and returned as report notes.

    Raises:
        ConfigError: ``--nir-for X`` given for a network X's importer cannot build (a reset mode
            it does not have); without ``--nir-for`` the export falls back to spec NIR instead.
    """
    from sbc_deploy.exporters.nir_consumers import consumer_model
    from sbc_deploy.frontends.conventions import CONSUMERS, parse_source

    notes: list[str] = []
    nir_for = request.nir_for
    implicit = nir_for is None
    source = parse_source(request.source)[0] if request.source else None
    if implicit:
        nir_for = "nir"
        if (source in CONSUMERS and source != "nir"
                and graph.metadata.get("source_format") == "nir"):
            nir_for = source
            notes.append(f"model.nir is written for {source}'s importer (--nir-for {source}): "
                         f"the model came in --from {source}; --nir-for nir writes spec NIR")
    formats = set(request.export) if request.export is not None else {
        fmt for target in targets for fmt in target.export_formats}
    if nir_for != "nir" and "nir" in formats:
        try:
            adapted = consumer_model(graph, nir_for)
        except ExportError as err:
            if not implicit:
                raise ConfigError(f"--nir-for {nir_for}: {err.message}", where=err.where,
                                  hint=f"--nir-for nir writes spec NIR; {nir_for}'s importer "
                                       "cannot build this network") from err
            notes.append(f"model.nir is written as spec NIR (--nir-for nir) instead: "
                         f"{nir_for}'s importer cannot build this network ({err})")
            nir_for = "nir"
        else:
            graph = adapted.graph
            notes += [f"converted to {nir_for}'s model before calibration (what {nir_for}'s "
                      f"importer builds from model.nir): {line}" for line in adapted.notes]
    for line in notes:
        log.warning("%s", line)
    return dataclasses.replace(request, nir_for=nir_for), graph, notes


def _conversion_cause(as_read: Graph, converted: _Evaluation, request: DeployRequest,
                      calib: Dataset | None, evaluation: Dataset | None) -> str | None:
    """The hint for a dense guard that fails after the conversion to ``--nir-for``'s model
    (:func:`_for_nir_consumer`) when the network as read passes it: the conversion is then
    what changed the network, not the time step. One more dense evaluation, only when the run
    already stops. ``converted``: the converted network's evaluation."""
    dense = _evaluate_float(as_read, evaluation, request, _silent, "evaluate dense")
    activity = _early_activity(as_read, dense, calib)
    if any(f.severity == "error" for f in dense_findings(
            activity, dense.accuracy, dt=as_read.dt, n_classes=_n_classes(as_read, evaluation),
            reset=as_read.metadata.get("reset"))):
        return None
    consumer = request.nir_for
    if dense.accuracy is not None and converted.accuracy is not None:
        effect = (f"as read it classifies {100 * dense.accuracy:.1f} % of the evaluation data, "
                  f"converted {100 * converted.accuracy:.1f} %")
    else:
        effect = "as read every spiking layer fires"
    return (f"the conversion to {consumer}'s model (--nir-for {consumer}: what {consumer}'s "
            f"importer builds from model.nir) changed the network: {effect}. {consumer} would "
            f"run it so (see the notes on what was converted); --nir-for nir writes spec NIR "
            "and keeps the network as read")


def _import_notes(graph: Graph) -> list[str]:
    """What the NIR import could not express of the writer's convention (said, not hidden)."""
    name = graph.metadata.get("convention")
    return [f"import (convention {name}): {line}"
            for line in graph.metadata.get("convention_caveats", ())]


def _versions() -> dict[str, str]:
    import nir

    from sbc_deploy.version import __version__

    return {"sbc_deploy": __version__, "torch": torch.__version__, "nir": nir.version,
            "numpy": np.__version__}


def check_only(model: str | Path | Graph, targets: Sequence[str | Path | Target], *,
               dt: float | None = None, reset: str | None = None, source: str | None = None,
               discretization: str | None = None,
               input_shape: tuple[int, ...] | None = None) -> Report:
    """``sbc-deploy check``: every rule of every target on the model as it is (no compression)."""
    clock = _Clock()
    with clock.stage("load"):
        loaded = [t if isinstance(t, Target) else load_target(t) for t in targets]
        if not loaded:
            raise ConfigError("name at least one target", where="--target")
        graph = model if isinstance(model, Graph) else load_model(
            model, dt=dt, reset=reset, source=source, discretization=discretization,
            input_shape=input_shape)
    reports = []
    with clock.stage("check"):
        for target in loaded:
            checked = check(graph, target)
            host = host_placed(graph, target)
            reports.append(TargetReport(
                target=target.name, description=target.description, method="none (check only)",
                layers=_layer_rows(graph, None, layer_details(graph, target, checked.mapping,
                                                              None, None, {}, {})),
                violations=_violation_rows(checked, host),
                cores_used=checked.mapping.cores_used, cores_available=target.cores.cores,
                cores=_core_rows(checked.mapping, target), limits=_limits(target),
                chip_host_split=checked.split.to_dict() if checked.split else {},
                placement=_placement(graph, checked, host),
                cores_dense=checked.mapping.cores_used,
                deciding_limit=_deciding(checked.mapping, target)))
    name = "graph given in memory" if isinstance(model, Graph) else str(model)
    return Report(model=name, dt=graph.dt, reset=graph.metadata.get("reset"),
                  targets=tuple(reports), timings_s=dict(clock.timings), versions=_versions())
