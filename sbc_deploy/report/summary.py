"""The figures an engineer decides from, per target, and the ranking of the targets.

Pure functions of report values; every view (the CLI's last lines, report.md, the page's
summary strip) prints what they return, so the three cannot disagree.

Per target (:func:`strip`): fits or not; cores dense -> compressed and the per-core limit that
decides the count (:func:`deciding_limit`); the accuracy change with its 95 % interval and the
number of samples (:func:`accuracy_change`); SynOps, energy (with its evidence grade on the
number) and memory before -> after; the share of removed synapses that rounding to the weight
grid removed; latency and throughput where the target states a time per step.

Across targets (:func:`rank`): the targets that fit, ordered by a stated criterion
(:data:`RANKINGS`; the default ranks by energy among the targets whose accuracy is within the
noise of the best), then the ones that do not fit with their first blocking reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from sbc_deploy.report.model import Accuracy, CoreRow, TargetReport
from sbc_deploy.report.vocabulary import cores_phrase, count, energy, labels, layer_label

__all__ = [
    "GRADE_ORDER", "RANKINGS", "StripItem", "accuracy_change", "ann_remark", "borrowed_notes",
    "core_binding", "deciding_limit", "energy_grade", "energy_text", "fan_in_item",
    "fan_in_limit", "fan_in_text", "layer_binding",
    "memory_text", "placement_cell", "placement_item", "rank", "short_reason", "span",
    "strip", "summary_lines", "wilson",
]

Z95 = 1.959964  # two-sided 95 % normal quantile
#: evidence grades from firmest to weakest; a total is as firm as its weakest term
GRADE_ORDER = ("verified", "definition", "secondary", "estimate", "unknown")
#: what ``--rank-by`` accepts, and what each ranks by
RANKINGS: dict[str, str] = {
    "energy": "energy per sample among the targets whose accuracy is within the 95 % noise of "
              "the best (energy at equal accuracy), then the rest by accuracy",
    "accuracy": "accuracy on the evaluation data (integer core where measured), then energy",
    "cores": "cores used, then energy",
    "latency": "latency per sample (steps x time per step), then energy",
}
LIMIT_NAMES = {"neurons": "neurons per core", "synapse memory": "synapse memory per core",
               "in-axons": "axons in per core", "out-axons": "axons out per core"}


# --------------------------------------------------------------------------- statistics


def wilson(p: float, n: int) -> tuple[float, float]:
    """Wilson's 95 % interval of a proportion ``p`` measured on ``n`` samples."""
    if n <= 0:
        return 0.0, 1.0
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_change(acc: Accuracy) -> tuple[float, float, int, str] | None:
    """``(change, half width of its 95 % interval, samples, which)`` in fractions: the
    compressed accuracy (integer core where measured, else float) minus the dense one.

    The interval treats the two accuracies as independent binomial estimates on ``samples``
    each (``1.96 sqrt(p1 q1 / n + p2 q2 / n)``): conservative for one evaluation set, where the
    two are correlated. ``None`` without labelled data.
    """
    after, which = ((acc.compressed_integer, "integer core") if acc.compressed_integer is not None
                    else (acc.compressed_float, "float"))
    if acc.dense_float is None or after is None or not acc.samples:
        return None
    n = acc.samples
    half = Z95 * math.sqrt((acc.dense_float * (1 - acc.dense_float)
                            + after * (1 - after)) / n)
    return after - acc.dense_float, half, n, which


# --------------------------------------------------------------------------- limits


def core_binding(core: CoreRow) -> str | None:
    """The per-core limit ``core`` is fullest against (``None``: the core has no limits)."""
    uses = {"neurons": (core.neurons, core.neuron_capacity),
            "synapse memory": (core.synapse_bits, core.memory_capacity),
            "in-axons": (core.in_axons, core.in_axon_capacity),
            "out-axons": (core.out_axons, core.out_axon_capacity)}
    shares = {name: used / cap for name, (used, cap) in uses.items() if used is not None and cap}
    return max(shares, key=lambda name: shares[name]) if shares else None


def deciding_limit(cores: Sequence[CoreRow], limits: Mapping[str, Any]) -> str | None:
    """The limit that sets the core count: the one most cores are fullest against.

    On a target that gives every layer whole cores (``split_layers`` false) the count is the
    number of layers, said as such.
    """
    if not cores:
        return None
    if limits.get("split_layers") is False:
        return "one layer per core"
    tally: dict[str, int] = {}
    for core in cores:
        binding = core.binding or core_binding(core)
        if binding:
            tally[binding] = tally.get(binding, 0) + 1
    if not tally:
        return None
    return LIMIT_NAMES.get(best := max(tally, key=lambda k: tally[k]), best)


def layer_binding(t: TargetReport, layer: Any) -> str:
    """The fullest core of ``layer`` and the limit it is fullest against: ``axons in 100 %``."""
    best: tuple[float, str] | None = None
    for core in t.cores:
        if core.core not in layer.cores:
            continue
        for name, used, cap in (("neurons", core.neurons, core.neuron_capacity),
                                ("synapse memory", core.synapse_bits, core.memory_capacity),
                                ("axons in", core.in_axons, core.in_axon_capacity),
                                ("axons out", core.out_axons, core.out_axon_capacity)):
            if used is not None and cap and (best is None or used / cap > best[0]):
                best = (used / cap, name)
    return "n/a" if best is None else f"{best[1]} {100 * best[0]:.0f} %"


def fan_in_limit(t: TargetReport) -> tuple[int | None, str]:
    """The target's fan-in limit and what it counts: inputs per neuron (``max_fan_in``), else
    the axons in per core (Loihi: every core takes at most that many distinct inputs)."""
    per_neuron, per_core = t.limits.get("max_fan_in"), t.limits.get("max_in_axons")
    if per_neuron:
        return int(per_neuron), "inputs per neuron"
    if per_core:
        return int(per_core), "axons in per core"
    return None, ""


def _axon_bound(t: TargetReport) -> dict[str, int]:
    """Layers whose cores are fullest against axons in (their inputs split them over cores),
    with how many cores each: ``{"conv2d0 -> leaky1": 11}``."""
    names = labels(t)
    bound: dict[str, int] = {}
    for core in t.cores:
        if (core.binding or core_binding(core)) == "in-axons":
            for part in core.layer.split(","):
                label = names.get(part.strip(), part.strip())
                bound[label] = bound.get(label, 0) + 1
    return bound


def fan_in_text(t: TargetReport, layer: Any) -> str:
    """The layout table's fan-in cell: the layer's largest fan-in against the target's limit,
    and whether the limit decides there: ``2,048 / 2,048 inputs per neuron (capped: 2,312
    before)``, ``... (over the limit)``, ``1,582 per neuron; a core takes 4,096 axons in (sets
    its cores)``."""
    limit, what = fan_in_limit(t)
    if what == "axons in per core":  # a per-core count: the union of its neurons' inputs
        text = f"{layer.fan_in_max:,} per neuron; a core takes {limit:,} axons in"
    else:
        text = f"{layer.fan_in_max:,} / " + (f"{limit:,} {what}" if limit else "no limit")
    notes = []
    if limit and layer.fan_in_max > limit:
        notes.append("over the limit")
    elif (limit and what == "inputs per neuron" and layer.fan_in_max_dense is not None
          and layer.fan_in_max_dense > limit):
        notes.append(f"capped: {layer.fan_in_max_dense:,} before")
    if what == "axons in per core" and layer.label in _axon_bound(t):
        notes.append("sets its cores")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def fan_in_item(t: TargetReport) -> StripItem | None:
    """The strip's fan-in figure, only where fan-in decides: a layer over the target's limit
    (it breaks the fan_in rule), or a per-neuron cap that forced pruning."""
    limit, what = fan_in_limit(t)
    if not limit or not t.layers:
        return None
    over = [layer for layer in t.layers if layer.fan_in_max > limit]
    if over:
        worst = max(over, key=lambda layer: layer.fan_in_max)
        errors = any(v.rule == "fan_in" and v.severity == "error" for v in t.violations)
        return StripItem("fan-in (deciding)", f"{worst.fan_in_max:,} / {limit:,}",
                         f"{what}: {len(over)} layer(s) over the limit, most {worst.label}"
                         + ("" if errors else " (the limit is an estimate: a warning)"),
                         False if errors else None)
    capped = [layer for layer in t.layers if what == "inputs per neuron"
              and layer.fan_in_max_dense is not None and layer.fan_in_max_dense > limit]
    if capped:
        before = max(layer.fan_in_max_dense or 0 for layer in capped)
        after = max(layer.fan_in_max for layer in capped)
        return StripItem("fan-in (deciding)", f"{before:,} -> {after:,} / {limit:,}",
                         f"the cap of {limit:,} {what} pruned "
                         + ", ".join(layer.label for layer in capped[:3])
                         + (" ..." if len(capped) > 3 else ""))
    return None


# --------------------------------------------------------------------------- energy


def energy_grade(t: TargetReport) -> str | None:
    """The evidence grade of the energy total: its weakest term's."""
    grades = [term.evidence for term in t.energy_terms]
    if not grades:
        return None
    return max(grades, key=lambda g: GRADE_ORDER.index(g) if g in GRADE_ORDER else 99)


def energy_text(value: float | None, t: TargetReport) -> str:
    """An energy with its grade on the number: ``16.2 uJ (estimate)``; ``(estimate,
    borrowed)`` where a term is another chip's figure."""
    if value is None:
        return "n/a"
    grade = energy_grade(t) or "unknown"
    return f"{energy(value)} ({grade}{', borrowed' if t.borrowed else ''})"


def borrowed_notes(targets: Sequence[TargetReport]) -> list[str]:
    """What each target borrows, and (once) what it means when the lender is compared too."""
    notes = []
    names = {t.target for t in targets}
    lenders = set()
    for t in targets:
        by_chip: dict[str, list[str]] = {}
        for term, chip in t.borrowed.items():
            by_chip.setdefault(chip, []).append(term)
        for chip, terms in by_chip.items():
            verb = "costs are" if len(terms) > 1 else "cost is"
            notes.append(f"{t.target}'s {', '.join(terms)} {verb} borrowed from {chip}")
            lenders |= {chip} & names
    notes += [f"{chip} is compared here too: on the terms borrowed from it the targets differ "
              "only by their counts, not by a measured cost" for chip in sorted(lenders)]
    return notes


def ann_remark(t: TargetReport) -> str | None:
    """Said when the target's SNN energy exceeds the labelled 45 nm ANN estimate."""
    ann = t.ann_equivalent.get("ann_energy_j") if t.ann_equivalent else None
    snn = t.energy_j.compressed
    if ann is None or snn is None or ann <= 0 or snn <= ann:
        return None
    return (f"the SNN costs {snn / ann:.3g}x the equivalent ANN's {energy(ann)} per sample "
            "(45 nm estimate): at these firing rates and steps it saves no energy")


# --------------------------------------------------------------------------- the strip


@dataclass(frozen=True)
class StripItem:
    """One figure of the summary strip: a label, the value, a detail line, and whether the
    figure is a good sign (``True``), a bad one (``False``) or neutral (``None``)."""

    label: str
    value: str
    detail: str = ""
    good: bool | None = None


def memory_text(t: TargetReport) -> str:
    before, after = t.memory_bytes.dense, t.memory_bytes.compressed
    if before is None or after is None:
        return "n/a"
    return f"{_bytes(before)} -> {_bytes(after)}"


def _bytes(value: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def _points(value: float) -> str:
    return f"{100 * value:+.1f} pt"


def strip(t: TargetReport) -> list[StripItem]:
    """The summary strip of one target (the same figures as :func:`summary_lines`)."""
    if t.refused:
        return [StripItem("verdict", "refused", t.refused, False)]
    first = next((v for v in t.violations if v.severity == "error"), None)
    items = [StripItem("verdict", "fits" if t.fits else "does not fit",
                       "" if first is None else
                       f"{layer_label(t, first.layer)}: {first.message}", t.fits)]
    cores = cores_phrase(t.cores_used, t.cores_available)
    if t.cores_dense is not None and t.cores_used is not None:
        cores = f"{t.cores_dense:,} -> {cores}".replace(" cores", "")
    items.append(StripItem("cores (dense -> compressed)", cores, _deciding_text(t),
                           None if t.cores_used is None or not t.cores_available
                           else t.cores_used <= t.cores_available))
    for extra in (fan_in_item(t), placement_item(t)):
        if extra is not None:
            items.append(extra)
    change = accuracy_change(t.accuracy)
    if change is not None:
        delta, half, n, which = change
        noise = abs(delta) <= half
        items.append(StripItem(
            "accuracy change", f"{_points(delta)} \u00b1 {100 * half:.1f}",
            f"95 % interval, n = {n:,} samples, {which}; "
            + ("within noise" if noise else "beyond noise"),
            None if noise else delta > 0))
    if t.synops.dense is not None and t.synops.compressed is not None:
        items.append(StripItem("SynOps / sample", f"{count(t.synops.dense)} -> "
                               f"{count(t.synops.compressed)}", _saving(t.synops.dense,
                                                                     t.synops.compressed)))
    if t.energy_j.compressed is not None:
        grade = energy_grade(t) or "unknown"
        value = (f"{energy(t.energy_j.dense)} -> {energy(t.energy_j.compressed)}"
                 if t.energy_j.dense is not None else energy(t.energy_j.compressed))
        borrowed = ("costs borrowed from " + ", ".join(sorted(set(t.borrowed.values())))
                    if t.borrowed else "")
        items.append(StripItem("energy / sample", f"{value} ({grade})", "; ".join(
            part for part in (_saving(t.energy_j.dense, t.energy_j.compressed), borrowed)
            if part)))
    if t.memory_bytes.compressed is not None:
        detail = _saving(t.memory_bytes.dense, t.memory_bytes.compressed)
        items.append(StripItem("synapse memory (original -> compressed)", memory_text(t),
                               (detail + "; " if detail else "") + "as the chip stores them"))
    if t.synapses_removed:
        by_rounding = t.removed_by_rounding or 0
        share = by_rounding / t.synapses_removed
        items.append(StripItem("synapses removed", f"{t.synapses_removed:,}",
                               f"{100 * share:.0f} % by rounding to the weight grid"
                               + (", the rest pruned" if share < 1 else ", none pruned")))
    if t.latency_s is not None:
        items.append(StripItem("latency / throughput",
                               f"{_seconds(t.latency_s)} \u00b7 {t.throughput_hz:,.0f} /s",
                               f"{t.steps} steps x {_seconds(t.latency_s / (t.steps or 1))} "
                               f"({t.latency_evidence})"))
    return items


def short_reason(reason: str, target: str) -> str:
    """A host placement's reason, short enough for a table cell: ``loihi2 has no MatMul
    layer: a matrix product ...`` -> ``no MatMul layer``."""
    text = reason.split(";")[0].split(":")[0].strip()
    if text.startswith(f"{target} "):
        text = text[len(target) + 1:]
    return text[4:] if text.startswith("has ") else text


def span(cores: Sequence[int]) -> str:
    """``0-4`` for consecutive cores, else the first few: ``0, 3, 7 ...``."""
    cores = list(cores)
    if not cores:
        return ""
    if len(cores) == 1:
        return str(cores[0])
    if cores == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]}"
    return ", ".join(map(str, cores[:4])) + (" ..." if len(cores) > 4 else "")


def placement_cell(t: TargetReport, row: Mapping[str, Any]) -> str:
    """Where one layout row runs on one target, as a table cell: ``chip, cores 0-4``,
    ``host: no MatMul layer``, ``chip (breaks total_cores)``."""
    if row["runs_on"] == "host":
        return f"host: {short_reason(row['reason'], t.target)}"
    broken = f" (breaks {', '.join(row['violations'])})" if row.get("violations") else ""
    if row["runs_on"] != "chip":  # synapses and neurons on different sides
        synapses, neurons = (row.get("sides") or ["chip", "host"])[:2]
        return (f"synapses on {synapses}, neurons on {neurons}: "
                f"{short_reason(row['reason'], t.target)}{broken}")
    return "chip" + (f", cores {span(row['cores'])}" if row.get("cores") else "") + broken


def placement_item(t: TargetReport) -> StripItem | None:
    """The strip's chip / host figure, where the target runs part of the network on the host:
    how many layout rows run where, what the host runs, and what crosses per step."""
    split = t.chip_host_split
    if not split or split.get("all_on_chip") or not t.placement:
        return None
    host = [row for row in t.placement if "host" in row["runs_on"]]
    kinds: dict[str, int] = {}
    for node in split.get("host", ()):
        kinds[node["kind"]] = kinds.get(node["kind"], 0) + 1
    runs = ", ".join(f"{kind}" + (f" x{n}" if n > 1 else "") for kind, n in kinds.items())
    values = sum(x["values_per_step"] for x in split.get("transfers", ()))
    return StripItem("chip / host split",
                     f"{len(t.placement) - len(host)} on chip, {len(host)} on host",
                     f"of {len(t.placement)} layers and operations; host runs {runs}; "
                     f"{len(split.get('transfers', ()))} transfers, {values:,} values per "
                     "sample and step")


def _deciding_text(t: TargetReport) -> str:
    """``deciding limit: axons in per core``, and where the inputs of a layer's neurons (their
    fan-in) are what splits it over cores, which layer and over how many."""
    if not t.deciding_limit:
        return ""
    text = f"deciding limit: {t.deciding_limit}"
    bound = _axon_bound(t)
    if t.deciding_limit == LIMIT_NAMES["in-axons"] and bound:
        label, cores = max(bound.items(), key=lambda item: item[1])
        limit = t.limits.get("max_in_axons")
        text += (f" (fan-in: the inputs of {label} fill axons in"
                 + (f" ({limit:,})" if limit else "") + f" first on its {cores} core"
                 + ("s)" if cores > 1 else ")"))
    return text


def _saving(before: float | None, after: float | None) -> str:
    if before is None or after is None or before <= 0:
        return ""
    change = after / before - 1
    if abs(change) < 0.005:
        return "no change"
    return f"{-100 * change:.0f} % less" if change < 0 else f"{100 * change:.0f} % more"


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def summary_lines(t: TargetReport) -> list[str]:
    """The CLI's last lines for one target: the strip as text."""
    items = strip(t)
    head = f"{t.target}: {items[0].value.upper()}" + (f" ({items[0].detail})"
                                                      if items[0].detail else "")
    return [head] + [f"  {item.label}: {item.value}" + (f" ({item.detail})" if item.detail
                                                        else "") for item in items[1:]]


# --------------------------------------------------------------------------- ranking


def _accuracy(t: TargetReport) -> float | None:
    acc = t.accuracy
    return acc.compressed_integer if acc.compressed_integer is not None else acc.compressed_float


def _blocking(t: TargetReport) -> str:
    if t.refused:
        return t.refused
    first = next((v for v in t.violations if v.severity == "error"), None)
    return "" if first is None else f"{layer_label(t, first.layer)}: {first.message}"


def rank(targets: Sequence[TargetReport], rank_by: str = "energy") -> tuple[dict[str, Any], ...]:
    """The targets best first: those that fit by ``rank_by`` (:data:`RANKINGS`), then those that
    do not, each with the first reason that blocks it. Entries: ``target``, ``rank`` (``None``
    when it does not fit), ``fits``, ``value`` (what it was ranked by), ``reason``."""
    inf = math.inf
    fit = [t for t in targets if t.fits]

    def energy_of(t: TargetReport) -> float:
        return t.energy_j.compressed if t.energy_j.compressed is not None else inf

    if rank_by == "energy":
        best = max((a for a in map(_accuracy, fit) if a is not None), default=None)
        n = max((t.accuracy.samples or 0 for t in fit), default=0)

        def level(t: TargetReport) -> int:  # 0: as accurate as the best within the noise
            a = _accuracy(t)
            if best is None or a is None or not n:
                return 0
            return 0 if best - a <= Z95 * math.sqrt((best * (1 - best) + a * (1 - a)) / n) else 1

        order = sorted(fit, key=lambda t: (level(t), energy_of(t) if level(t) == 0
                                           else -(_accuracy(t) or 0.0)))
        values = {t.target: energy_of(t) for t in fit}
    elif rank_by == "accuracy":
        order = sorted(fit, key=lambda t: (-(_accuracy(t) or -1.0), energy_of(t)))
        values = {t.target: _accuracy(t) for t in fit}
    elif rank_by == "cores":
        order = sorted(fit, key=lambda t: (t.cores_used if t.cores_used is not None else inf,
                                           energy_of(t)))
        values = {t.target: t.cores_used for t in fit}
    elif rank_by == "latency":
        order = sorted(fit, key=lambda t: (t.latency_s if t.latency_s is not None else inf,
                                           energy_of(t)))
        values = {t.target: t.latency_s for t in fit}
    else:
        raise ValueError(f"unknown ranking {rank_by!r}; known: {', '.join(RANKINGS)}")
    ranked = [{"target": t.target, "rank": i + 1, "fits": True,
               "value": None if values[t.target] in (None, inf) else values[t.target],
               "reason": ""} for i, t in enumerate(order)]
    ranked += [{"target": t.target, "rank": None, "fits": False, "value": None,
                "reason": _blocking(t)} for t in targets if not t.fits]
    return tuple(ranked)
