r"""Energy per sample: counts from :mod:`sbc_deploy.report.synops` times a target's costs.

    E = synops * E_synop + neuron_updates * E_neuron + spikes_routed * E_spike
        + cores * steps * E_core_step                                      (per sample)

Every cost carries its source and evidence grade; the report prints them beside the figures.
Published per-operation energies are lower bounds measured or simulated at one operating
point (Loihi 1's 23.6 pJ per SynOp is a pre-silicon minimum, Davies et al. 2018, Table 2), so
these totals compare networks on one target; they are not wall-plug measurements.

Beside the target's estimate, the conventional 45 nm comparison of SNN papers (Horowitz,
ISSCC 2014, 0.9 V): every SynOp an fp32 accumulate (0.9 pJ) against the equivalent ANN's MACs
at fp32 multiply + add (3.7 + 0.9 = 4.6 pJ). It is labelled as such: a proxy for a generic
45 nm digital chip, not the target.

Example::

    >>> costs = costs_from_target(load_target("loihi2"))
    >>> report = estimate_energy(synops_report, costs, cores=12)
    >>> report.table()                       # Markdown, sources beside the figures
    >>> both = estimate_energy(dense_report, compressed_report, costs)   # before / after
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, overload

from sbc_deploy.errors import ConfigError
from sbc_deploy.report.synops import SynOpsReport

PJ = 1e-12
HOROWITZ_SOURCE = ("Horowitz, 'Computing's energy problem', ISSCC 2014, 45 nm at 0.9 V: fp32 add "
                   "0.9 pJ, fp32 multiply 3.7 pJ (ecosystem.md 3.9)")
AC_45NM = 0.9 * PJ     # one accumulate: a SynOp on a generic 45 nm chip
MAC_45NM = 4.6 * PJ    # one multiply-accumulate: 3.7 + 0.9 pJ


@dataclass(frozen=True)
class EnergyCost:
    """One cost: joules per operation, where the number comes from, and its evidence grade."""

    joules: float
    source: str
    evidence: str = "unknown"

    def __post_init__(self) -> None:
        if not self.joules >= 0:
            raise ConfigError(f"an energy cost must be >= 0 J, got {self.joules!r}",
                              where="EnergyCost.joules")
        if not self.source.strip():
            raise ConfigError("every energy cost needs its source", where="EnergyCost.source")


@dataclass(frozen=True)
class EnergyCosts:
    """A target's energy costs per operation (``None``: the target publishes no such term).

    Attributes:
        target: the target's name.
        synop: per SynOp; ``neuron_update``: per neuron and step; ``spike``: per spike routed;
        core_step: per active core and time step (static and synchronisation share).
    """

    target: str
    synop: EnergyCost | None = None
    neuron_update: EnergyCost | None = None
    spike: EnergyCost | None = None
    core_step: EnergyCost | None = None


_TARGET_KEYS = (("synop", "synop_pj"), ("neuron_update", "neuron_update_pj"),
                ("spike", "spike_routed_pj"), ("core_step", "core_step_pj"))


def costs_from_target(target: Any) -> EnergyCosts:
    """The :class:`EnergyCosts` of a :class:`sbc_deploy.targets.Target` (picojoules -> joules,
    with each value's ``source`` and ``evidence`` from the target file)."""
    if isinstance(target, EnergyCosts):
        return target
    values = {}
    for ours, key in _TARGET_KEYS:
        provenance = target.source(f"energy.{key}")
        values[ours] = EnergyCost(float(getattr(target.energy, key)) * PJ, provenance.source,
                                  provenance.evidence)
    return EnergyCosts(target=str(target.name), **values)


class EnergyLine(NamedTuple):
    """One term: counts per sample (dense network, compressed network), cost, source.

    ``count_dense`` is ``None`` when only one network was counted.
    """

    name: str
    count_dense: float | None
    count_compressed: float
    cost_j: float
    source: str


@dataclass(frozen=True)
class EnergyReport:
    """Energy per sample on one target, term by term, plus the labelled 45 nm comparison.

    Attributes:
        target: the target's name.
        terms: one :class:`EnergyLine` per cost term of the target.
        total_j: ``(dense, compressed)`` joules per sample (``dense`` is ``None`` when only one
            network was counted).
        ann_equivalent: the 45 nm comparison: SynOps as accumulates vs the ANN's MACs.
        notes: terms left out and why.
    """

    target: str
    terms: tuple[EnergyLine, ...]
    total_j: tuple[float | None, float]
    ann_equivalent: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "total_j": {"dense": self.total_j[0], "compressed": self.total_j[1]},
            "terms": [line._asdict() for line in self.terms],
            "ann_equivalent": dict(self.ann_equivalent),
            "notes": list(self.notes),
        }

    def table(self) -> str:
        """A Markdown table with every term, its energy per sample and its source."""
        both = self.total_j[0] is not None
        head = ["term", "count/sample", "cost", "energy/sample", "source"]
        if both:
            head[1:2] = ["count/sample (dense)", "count/sample"]
            head[3:4] = ["energy/sample (dense)", "energy/sample"]
        rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for line in self.terms:
            cells = [line.name, f"{line.count_compressed:.4g}", _joules(line.cost_j),
                     _joules(line.count_compressed * line.cost_j), line.source]
            if both:
                assert line.count_dense is not None
                cells[1:2] = [f"{line.count_dense:.4g}", f"{line.count_compressed:.4g}"]
                cells[3:4] = [_joules(line.count_dense * line.cost_j),
                              _joules(line.count_compressed * line.cost_j)]
            rows.append("| " + " | ".join(cells) + " |")
        total = [f"**total ({self.target})**", "", "", _joules(self.total_j[1]), ""]
        if both:
            assert self.total_j[0] is not None
            total = [total[0], "", "", "", _joules(self.total_j[0]), _joules(self.total_j[1]), ""]
        rows.append("| " + " | ".join(total) + " |")
        a = self.ann_equivalent
        if a:
            rows.append("")
            rows.append(f"{a['label']}: SNN {a['synops']:.4g} SynOps x 0.9 pJ = "
                        f"{_joules(a['snn_energy_j'])}; ANN {a['ann_macs']:.4g} MACs x 4.6 pJ = "
                        f"{_joules(a['ann_energy_j'])} (source: {a['source']})")
        rows.extend(f"Note: {note}" for note in self.notes)
        return "\n".join(rows)


def _joules(value: float) -> str:
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {unit}"
    return f"{value / 1e-12:.4g} pJ"


@overload
def estimate_energy(synops: SynOpsReport, costs: Any, /, *,
                    cores: int | None = None) -> EnergyReport: ...


@overload
def estimate_energy(dense: SynOpsReport, compressed: SynOpsReport, costs: Any, /, *,
                    cores: int | None = None) -> EnergyReport: ...


def estimate_energy(*args: Any, cores: int | None = None,
                    dense_cores: int | None = None) -> EnergyReport:
    """Energy per sample of counted SynOps on a target.

    Call as ``estimate_energy(report, costs)`` or, to compare the dense and the compressed
    network term by term, ``estimate_energy(dense_report, compressed_report, costs)``.

    Args:
        *args: one or two :class:`~sbc_deploy.report.synops.SynOpsReport`, then the costs: an
            :class:`EnergyCosts` or a :class:`sbc_deploy.targets.Target`.
        cores: cores the (compressed) network occupies (from the target's mapping estimate);
            the per-core static term is left out, with a note, when it is not given.
        dense_cores: cores the *dense* network occupies on the same target (its own mapping):
            the dense baseline is costed on the network it describes, so it does not change
            with the compressed network. Default: ``cores`` (one network counted twice).

    Returns:
        An :class:`EnergyReport` (per sample).

    Raises:
        ConfigError: wrong arguments, or a negative number of cores.
    """
    if len(args) == 2:
        dense, compressed, target = None, args[0], args[1]
    elif len(args) == 3:
        dense, compressed, target = args
    else:
        raise ConfigError(f"expected (report, costs) or (dense, compressed, costs), got "
                          f"{len(args)} arguments", where="estimate_energy")
    for report in (dense, compressed):
        if report is not None and not isinstance(report, SynOpsReport):
            raise ConfigError(f"expected a SynOpsReport, got {type(report).__name__}",
                              where="estimate_energy")
    for label, value in (("cores", cores), ("dense_cores", dense_cores)):
        if value is not None and value < 0:
            raise ConfigError(f"{label} must be >= 0, got {value}",
                              where=f"estimate_energy({label}=)")
    if dense_cores is None:
        dense_cores = cores
    costs = costs_from_target(target)
    counts = [None if dense is None else dense.per_sample_counts(),
              compressed.per_sample_counts()]
    lines, notes = [], []
    for name, cost, key in (("synops", costs.synop, "synops"),
                            ("neuron updates", costs.neuron_update, "neuron_updates"),
                            ("spikes routed", costs.spike, "spikes_routed")):
        if cost is None:
            notes.append(f"{name}: no cost given for {costs.target}")
            continue
        lines.append(EnergyLine(name, None if counts[0] is None else counts[0][key],
                                counts[1][key], cost.joules, _cited(cost)))
    if costs.core_step is not None:
        if cores is None or (counts[0] is not None and dense_cores is None):
            notes.append("core steps: the number of cores is unknown (pass cores=), term left "
                         "out")
        else:
            per = [None if counts[0] is None else dense_cores * counts[0]["steps"],
                   cores * counts[1]["steps"]]
            label = (f"core steps ({cores} cores)" if counts[0] is None or dense_cores == cores
                     else f"core steps ({dense_cores} cores dense, {cores} compressed)")
            lines.append(EnergyLine(label, per[0], float(per[1]),
                                    costs.core_step.joules, _cited(costs.core_step)))
    total = [None if counts[0] is None else
             sum(line.count_dense * line.cost_j for line in lines),  # type: ignore[operator]
             sum(line.count_compressed * line.cost_j for line in lines)]
    snn = counts[1]["synops"]
    ann_macs = counts[1]["ann_macs"]
    ann_equivalent = {
        "label": "45 nm comparison (Horowitz; not the target)",
        "synops": snn, "ann_macs": ann_macs,
        "ac_j": AC_45NM, "mac_j": MAC_45NM,
        "snn_energy_j": snn * AC_45NM, "ann_energy_j": ann_macs * MAC_45NM,
        "source": HOROWITZ_SOURCE,
    }
    return EnergyReport(costs.target, tuple(lines), (total[0], float(total[1])),
                        ann_equivalent, tuple(notes))


def _cited(cost: EnergyCost) -> str:
    return cost.source if cost.evidence in ("unknown", "") else \
        f"{cost.source} [{cost.evidence}]"


__all__ = ["AC_45NM", "MAC_45NM", "EnergyCost", "EnergyCosts", "EnergyLine", "EnergyReport",
           "costs_from_target", "estimate_energy"]
