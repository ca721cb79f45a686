"""A sweep: accuracy, cores and energy against compression, one row per target and point.

``sbc-deploy --sparsity 0.5,0.7,0.9 --bits 8,4`` compresses the network at every (sparsity,
bits) point for every target from one calibration (``pipeline._sweep``); each point becomes one
row of ``report.json``'s ``sweep`` list (:func:`sweep_row`), made from the same
:class:`~sbc_deploy.report.model.TargetReport` figures as the summary strip, so the sweep and
the strip of the run's own point (``primary``) cannot disagree. The views draw the rows:
:func:`sweep_axes` says what goes on the x axis and which rows form one line, and
:func:`sweep_lines` is the CLI's text.

Example row::

    {"target": "loihi2", "sparsity": 0.7, "bits": 4, "primary": False, "fits": True,
     "cores_used": 6, "accuracy_change": -0.012, "accuracy_interval": 0.041,
     "energy_j": 6.1e-05, "energy_evidence": "estimate", ...}
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from sbc_deploy.report.model import TargetReport
from sbc_deploy.report.summary import accuracy_change, energy_grade
from sbc_deploy.report.vocabulary import count, energy, layer_label

__all__ = ["sweep_axes", "sweep_lines", "sweep_row"]


def _blocking(t: TargetReport) -> str:
    first = next((v for v in t.violations if v.severity == "error"), None)
    return "" if first is None else f"{layer_label(t, first.layer)}: {first.message}"


def sweep_row(t: TargetReport, sparsity: float | None, bits: int | None, *,
              primary: bool) -> dict[str, Any]:
    """One point of a sweep on one target (see the module docstring for the keys).

    ``sparsity`` is the value asked for (``None``: the target's default); ``sparsity_achieved``
    the share of the network's potential synapses that are zero after compression (pruned or
    rounded to zero); ``bits`` the weight bits the point compressed to (``None``: not
    quantised).
    """
    total = sum(layer.dense_synapses for layer in t.layers)
    kept = sum(layer.synapses for layer in t.layers)
    change = accuracy_change(t.accuracy)
    acc = t.accuracy
    return {
        "target": t.target, "sparsity": sparsity, "bits": bits, "primary": primary,
        "sparsity_achieved": 1.0 - kept / total if total else None,
        "fits": t.fits, "blocking": _blocking(t),
        "violations": sum(1 for v in t.violations if v.severity == "error"),
        "cores_used": t.cores_used, "cores_available": t.cores_available,
        "cores_dense": t.cores_dense, "deciding_limit": t.deciding_limit,
        "accuracy": {"dense_float": acc.dense_float, "compressed_float": acc.compressed_float,
                     "compressed_integer": acc.compressed_integer, "samples": acc.samples},
        "accuracy_change": None if change is None else change[0],
        "accuracy_interval": None if change is None else change[1],
        "accuracy_measured_on": None if change is None else change[3],
        "synops": t.synops.compressed, "synops_dense": t.synops.dense,
        "energy_j": t.energy_j.compressed, "energy_dense_j": t.energy_j.dense,
        "energy_evidence": energy_grade(t), "energy_borrowed": bool(t.borrowed),
        "memory_bytes": t.memory_bytes.compressed, "memory_bytes_dense": t.memory_bytes.dense,
        "synapses_removed": t.synapses_removed,
    }


def sweep_axes(rows: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, list[Mapping[str, Any]]]]:
    """What the sweep's charts put on the x axis (``"sparsity"``, or ``"bits"`` when only the
    bits vary), and the rows of each line, by line name (``loihi2, 4 bits`` / ``loihi2``),
    ordered along the axis."""
    sparsities = {r["sparsity"] for r in rows}
    x = "sparsity" if len(sparsities) > 1 else "bits"
    lines: dict[str, list[Mapping[str, Any]]] = {}
    several_bits = len({r["bits"] for r in rows}) > 1
    for row in rows:
        name = row["target"]
        if x == "sparsity" and several_bits:
            name += f", {row['bits'] or 'float'}{' bits' if row['bits'] else ''}"
        lines.setdefault(name, []).append(row)
    for name in lines:
        lines[name].sort(key=lambda r: x_value(r, x))
    return x, lines


def x_value(row: Mapping[str, Any], x: str) -> float:
    """The row's place on the x axis (an unset sparsity is 0: nothing asked to be removed)."""
    value = row[x]
    return float(value) if value is not None else (0.0 if x == "sparsity" else 32.0)


def point_text(row: Mapping[str, Any]) -> str:
    """``sparsity 0.7, 4 bits`` as the table and the CLI write a point."""
    sparsity = "default" if row["sparsity"] is None else f"{row['sparsity']:g}"
    return f"sparsity {sparsity}, {row['bits'] or 'float'}{' bits' if row['bits'] else ''}"


def accuracy_text(row: Mapping[str, Any]) -> str:
    if row["accuracy_change"] is None:
        return "n/a"
    return (f"{100 * row['accuracy_change']:+.1f} \u00b1 "
            f"{100 * row['accuracy_interval']:.1f} pt")


def cores_text(row: Mapping[str, Any]) -> str:
    used, available = row["cores_used"], row["cores_available"]
    if used is None:
        return "n/a"
    return f"{used:,} of {available:,}" if available else f"{used:,}"


def energy_cell(row: Mapping[str, Any]) -> str:
    if row["energy_j"] is None:
        return "n/a"
    grade = row["energy_evidence"] or "unknown"
    return f"{energy(row['energy_j'])} ({grade}{', borrowed' if row['energy_borrowed'] else ''})"


def table_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The sweep table's cells: target, point, removed, verdict, cores, accuracy change,
    SynOps, energy, first blocking reason."""
    out = []
    for row in rows:
        achieved = row["sparsity_achieved"]
        out.append([row["target"], point_text(row) + (" (this run)" if row["primary"] else ""),
                    "n/a" if achieved is None else f"{100 * achieved:.1f} %",
                    "fits" if row["fits"] else "does not fit", cores_text(row),
                    accuracy_text(row), count(row["synops"]), energy_cell(row),
                    row["blocking"]])
    return out


TABLE_HEADER = ("target", "point", "synapses zero", "verdict", "cores", "accuracy change",
                "SynOps / sample", "energy / sample", "first blocking reason")


def sweep_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The CLI's sweep lines: one per target and point, the run's own point marked ``*``."""
    if not rows:
        return []
    lines = ["sweep (* = the point this run's report sections and exports describe):"]
    for row in rows:
        verdict = "fits" if row["fits"] else "DOES NOT FIT"
        lines.append(f"  {'*' if row['primary'] else ' '} {row['target']} {point_text(row)}: "
                     f"{verdict}, cores {cores_text(row)}, accuracy {accuracy_text(row)}, "
                     f"energy {energy_cell(row)}")
    return lines
