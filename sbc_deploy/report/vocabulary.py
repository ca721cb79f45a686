"""The report's shared vocabulary: how numbers are written, how layers are named, and the
one-line verdicts and explanations that every view (report.md, report.html, the terminal's
``check`` verdict) prints the same way.

Only words and formats live here; each view (:mod:`.render` for JSON and Markdown, :mod:`.html`
for the page, :mod:`.text` for the terminal) lays them out. The views import this module and
never each other's helpers.
"""

from __future__ import annotations

from typing import Any

from sbc_deploy.report.model import TargetReport

MAX_CORE_ROWS = 32     # cores listed one per row; more are grouped per layer

__all__ = [
    "MAX_CORE_ROWS", "ann_line", "bits", "cores_phrase", "count", "energy", "labels",
    "layer_label", "number", "pct", "storage_reason", "verdict_line",
]


# --------------------------------------------------------------------------- number formats


def pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def energy(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if abs(value) >= scale or unit == "pJ":
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} J"  # pragma: no cover


def count(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.3g} M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.3g} k"
    return f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"


def bits(value: int | None) -> str:
    if value is None:
        return "n/a"
    for unit, scale in (("Mbit", 1e6), ("kbit", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value} bit"


def number(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-2:
        return f"{value:.3g}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------- names and verdicts


def labels(t: TargetReport) -> dict[str, str]:
    """Neuron (population) name -> the label of the synapse layer(s) driving it."""
    out: dict[str, list[str]] = {}
    for layer in t.layers:
        if layer.neuron:
            out.setdefault(layer.neuron, []).append(layer.name)
    return {neuron: f"{' + '.join(names)} -> {neuron}" for neuron, names in out.items()}


def storage_reason(t: TargetReport, layer: Any) -> str:
    """Why the layer's synapses take the memory they take on this target."""
    rule = t.limits.get("synapse_storage")
    dense, sparse = layer.memory_bits_dense, layer.memory_bits_sparse
    if layer.storage is None or dense is None or sparse is None:
        return ""
    if rule == "kernel":
        return "kernel stored once per layer; pruning frees no memory"
    if layer.storage == "dense":
        why = "zeros are stored too" if rule == "dense" else "dense is cheaper"
        index = t.limits.get("index_bits")
        if rule == "dense_or_sparse" and index and dense and sparse > dense:
            # sparse (1 - s) P (w + index) < dense P w  <=>  s > index / (w + index)
            w = t.limits.get("bits_per_weight") or layer.weight_bits or 8
            breakeven = index / (w + index)
            why += f" below {100 * breakeven:.0f}% sparsity"
        return why + "; pruning frees no memory"
    return "only non-zero synapses (and their index) are stored; pruning frees memory"


def layer_label(t: TargetReport, name: str | None) -> str:
    """The one name of a layer in every table: a violation may name the synapse node
    (``linear1``) or the neuron it drives (``leaky2``); both read ``linear1 -> leaky2``."""
    if not name:
        return "-"
    for layer in t.layers:
        if layer.name == name:
            return layer.label
    return labels(t).get(name, name)


def cores_phrase(used: int | None, available: int | None) -> str:
    """``6 of 128 cores``; more than the chip has reads ``needs 14 cores, has 1``."""
    if used is None:
        return "cores n/a"
    if available and used > available:
        return f"needs {used:,} cores, has {available:,}"
    return f"{used:,} of {available:,} cores" if available else f"{used:,} cores (no limit)"


def verdict_line(t: TargetReport) -> str:
    """``loihi2: fits (3 / 128 cores, fan-in max 800 / 4096)`` or the violation count."""
    errors = sum(1 for v in t.violations if v.severity == "error")
    warnings = len(t.violations) - errors
    if t.fits:
        head = "fits" + (f" with {warnings} warning(s)" if warnings else "")
    else:
        head = f"DOES NOT FIT: {errors} violation(s)" + (
            f", {warnings} warning(s)" if warnings else "")
    facts = []
    if t.cores_used is not None:
        facts.append(cores_phrase(t.cores_used, t.cores_available))
    if t.layers:
        worst = max(layer.fan_in_max for layer in t.layers)
        limit = t.limits.get("max_fan_in")
        facts.append(f"fan-in max {worst}" + (f" / {limit}" if limit else ""))
    return f"{t.target}: {head}" + (f" ({', '.join(facts)})" if facts else "")


def ann_line(ann: Any) -> str:
    """The conventional 45 nm SNN-vs-ANN comparison, labelled as such."""
    if {"synops", "ann_macs", "snn_energy_j", "ann_energy_j"} <= set(ann):
        return (f"{ann.get('label', '45 nm comparison')}: SNN {number(ann['synops'])} accumulates "
                f"x {energy(ann.get('ac_j'))} = {energy(ann['snn_energy_j'])} vs ANN "
                f"{number(ann['ann_macs'])} MACs x {energy(ann.get('mac_j'))} = "
                f"{energy(ann['ann_energy_j'])} per sample ({ann.get('source', '')})")
    return "ANN comparison: " + ", ".join(f"{k} = {v}" for k, v in ann.items())
