"""The report as one data structure; JSON, Markdown and HTML are renderings of it.

``Report.to_dict()`` is the stable ``report.json`` schema (``SCHEMA_VERSION``). The top-level keys
required by DESIGN.md describe the first (primary) target; ``targets`` holds one full section per
target when several are compared in one run. Keys are only ever added; renaming one bumps
``SCHEMA_VERSION``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class LayerRow:
    """One synapse layer after compression (``shape`` is the weight's shape)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    sparsity: float
    weight_bits: int | None
    fan_in_max: int
    synapses: int
    dense_synapses: int
    grid: str | None = None
    layer_loss: float | None = None
    fan_in: tuple[int, ...] = ()  # per output neuron / channel, for the histogram
    # added for the report's per-layer views (report/details.py says how each is counted)
    neuron: str | None = None  # the neuron node this synapse layer drives
    synops_dense: float | None = None  # SynOps per sample, dense network
    synops_compressed: float | None = None
    energy_dense_j: float | None = None  # dynamic energy per sample caused by the layer
    energy_compressed_j: float | None = None
    rate_dense: float | None = None  # spikes per neuron per step of ``neuron``
    rate_compressed: float | None = None
    storage: str | None = None  # how the target stores its synapses: dense | sparse | kernel
    memory_bits_dense: int | None = None  # synapse memory in each storage form
    memory_bits_sparse: int | None = None
    cores: tuple[int, ...] = ()  # cores of the mapping estimate holding its neuron
    fan_in_max_dense: int | None = None  # before compression (a fan-in cap prunes to its limit)

    @property
    def label(self) -> str:
        """The layer's one name in every view: ``"linear1 -> leaky1"``."""
        return self.name if not self.neuron else f"{self.name} -> {self.neuron}"


@dataclass(frozen=True)
class ViolationRow:
    layer: str | None
    rule: str
    limit: Any
    actual: Any
    message: str
    severity: str = "error"
    neurons: tuple[int, ...] = ()  # offending neurons (flat index), where the rule knows them
    remedy: str | None = None  # what to change


@dataclass(frozen=True)
class Finding:
    """A quality guard's result: the compressed network may fit yet be wrong (``error`` makes
    the run exit 1), or something looks off (``warning``).

    ``code`` is stable (``accuracy_drop``, ``silent_layer``, ...); ``where`` names the layer or
    measurement; ``hint`` names the likely cause (time step, reset, encoding, threshold ...).
    """

    severity: str
    code: str
    where: str | None
    message: str
    hint: str | None = None
    target: str | None = None
    value: float | None = None
    limit: float | None = None


@dataclass(frozen=True)
class CoreRow:
    """One core of the mapping estimate."""

    core: int
    layer: str
    neurons: int
    synapse_bits: int
    neuron_utilisation: float | None  # None: the core has no such limit
    memory_utilisation: float | None
    neuron_capacity: int | None = None
    memory_capacity: int | None = None  # bits
    in_axons: int | None = None  # distinct presynaptic sources (None: the target has no limit)
    out_axons: int | None = None
    in_axon_capacity: int | None = None
    out_axon_capacity: int | None = None
    binding: str | None = None  # the limit this core is fullest against (report/summary.py)


@dataclass(frozen=True)
class Accuracy:
    """Classification accuracy in [0, 1]; ``None`` where no labelled evaluation data was given."""

    dense_float: float | None = None
    compressed_float: float | None = None
    compressed_integer: float | None = None
    samples: int | None = None  # labelled evaluation samples behind each accuracy


@dataclass(frozen=True)
class BeforeAfter:
    """A per-sample quantity for the dense and the compressed network (``None``: not measured)."""

    dense: float | None = None
    compressed: float | None = None


@dataclass(frozen=True)
class EnergyTerm:
    """One line of the energy estimate: count x cost, with where the cost comes from."""

    name: str
    count_dense: float | None
    count_compressed: float
    cost_j: float
    source: str
    evidence: str = "unknown"  # verified | definition | estimate | unknown (from the target)


@dataclass(frozen=True)
class TargetReport:
    """Everything measured for one hardware target."""

    target: str
    description: str
    method: str
    layers: tuple[LayerRow, ...]
    violations: tuple[ViolationRow, ...]
    cores_used: int | None
    cores_available: int | None
    cores: tuple[CoreRow, ...] = ()
    limits: Mapping[str, Any] = field(default_factory=dict)
    accuracy: Accuracy = Accuracy()
    synops: BeforeAfter = BeforeAfter()  # SynOps of the part the target's chip runs
    energy_j: BeforeAfter = BeforeAfter()
    energy_terms: tuple[EnergyTerm, ...] = ()
    ann_equivalent: Mapping[str, Any] = field(default_factory=dict)
    exports: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # where each node runs: check.split.ChipHostSplit.to_dict() (empty: not computed)
    chip_host_split: Mapping[str, Any] = field(default_factory=dict)
    # the decision figures (issue 20; report/summary.py derives the strip from them)
    cores_dense: int | None = None  # cores the dense network needs on this target
    deciding_limit: str | None = None  # the per-core limit that sets the core count
    memory_bytes: BeforeAfter = BeforeAfter()  # original network (float32) -> as stored
    synapses_removed: int | None = None  # non-zero dense weights that are zero after
    removed_by_rounding: int | None = None  # ... of which the pruning mask did not choose
    latency_s: float | None = None  # steps x time per step (target [timing])
    throughput_hz: float | None = None  # inferences per second, one after another
    latency_evidence: str | None = None
    steps: int | None = None  # time steps per sample
    borrowed: Mapping[str, str] = field(default_factory=dict)  # energy term -> chip it is from
    refused: str | None = None  # why the target was refused before compression
    # where each layer goes, in graph order: one entry per synapse layer with its neuron (or
    # per other node), each with ``layer``, ``nodes``, ``kind``, ``runs_on`` (chip | host),
    # ``part`` (its chip / host segment), ``reason`` (why on the host), ``cores``,
    # ``violations`` (rules its nodes break on the chip); from the chip / host split;
    # ``runs_on`` is ``chip + host`` (or ``host + chip``) when synapses and neuron part ways,
    # ``sides`` says where each of ``nodes`` runs
    placement: tuple[Mapping[str, Any], ...] = ()
    # the work ``synops`` and ``energy_j`` leave out (per sample, dense and compressed): the
    # SynOps of the synapse layers the host runs (0 when all run on the chip), and the
    # operations of products of two activations, which are no SynOps (report/synops.py)
    synops_host: BeforeAfter = BeforeAfter()
    product_ops: BeforeAfter = BeforeAfter()

    @property
    def fits(self) -> bool:
        """True when no rule of the target is violated (warnings do not count)."""
        return self.refused is None and not any(v.severity == "error"
                                                for v in self.violations)


@dataclass(frozen=True)
class Report:
    """The whole run: model, per-target results, timings and the settings that produced them."""

    model: str
    dt: float
    reset: str | None
    targets: tuple[TargetReport, ...]
    timings_s: Mapping[str, float] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    activity: Mapping[str, Any] = field(default_factory=dict)
    rank_by: str | None = None  # the ranking's criterion (report/summary.py RANKINGS)
    ranking: tuple[Mapping[str, Any], ...] = ()  # one entry per target, best first
    sweep: tuple[Mapping[str, Any], ...] = ()  # one row per (target, sparsity, bits) of a sweep

    @property
    def fits(self) -> bool:
        return all(t.fits for t in self.targets)

    @property
    def guards_pass(self) -> bool:
        """True when no quality guard found an error (see :class:`Finding`)."""
        return not any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """The ``report.json`` document."""
        sections = [_target_dict(t) for t in self.targets]
        primary = sections[0] if sections else {}
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "dt": self.dt,
            "reset": self.reset,
            **primary,
            "fits": self.fits,
            "targets": sections,
            "timings_s": dict(self.timings_s),
            "settings": dict(self.settings),
            "versions": dict(self.versions),
            "findings": [asdict(f) for f in self.findings],
            "guards_pass": self.guards_pass,
            "activity": dict(self.activity),
            "rank_by": self.rank_by,
            "ranking": [dict(r) for r in self.ranking],
            "sweep": [dict(r) for r in self.sweep],
        }


def _target_dict(report: TargetReport) -> dict[str, Any]:
    data = asdict(report)
    data["layers"] = [{**asdict(layer), "shape": list(layer.shape), "fan_in": list(layer.fan_in),
                       "cores": list(layer.cores), "label": layer.label}
                      for layer in report.layers]
    # per-neuron detail only where a rule gives it (keeps the other violations' keys as they were)
    data["violations"] = [{k: v for k, v in row.items()
                           if not (k in ("neurons", "remedy") and not v)}
                          for row in data["violations"]]
    data["fits"] = report.fits
    data["limits"] = dict(report.limits)
    data["ann_equivalent"] = dict(report.ann_equivalent)
    data["exports"] = dict(report.exports)
    data["notes"] = list(report.notes)
    data["chip_host_split"] = dict(report.chip_host_split)
    data["borrowed"] = dict(report.borrowed)
    data["placement"] = [dict(row) for row in report.placement]
    return data
