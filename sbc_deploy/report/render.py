"""Render a :class:`~sbc_deploy.report.model.Report` as JSON, Markdown or a self-contained HTML
page.

All three read the same data structure; nothing is computed here that the report does not hold.
The HTML page embeds its plots as inline SVG (no external files, no scripts), so it opens
anywhere and cannot show a broken image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from sbc_deploy.fileio import write_text_atomic
from sbc_deploy.report.html import to_html as html_page
from sbc_deploy.report.model import Report, TargetReport
from sbc_deploy.report.vocabulary import (
    layer_label,
    MAX_CORE_ROWS,
    ann_line,
    bits,
    count,
    energy,
    labels,
    number,
    storage_reason,
    verdict_line,
)
from sbc_deploy.untrusted import markdown, shown_lines

__all__ = ["to_json", "to_markdown", "to_html", "write_report"]


def to_json(report: Report) -> str:
    """``report.json``: the stable, documented schema (see report/model.py)."""
    return json.dumps(report.to_dict(), indent=2, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} in the report")


# --------------------------------------------------------------------------- formatting helpers


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(markdown(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    # every cell may hold a name or a message naming one: markdown() keeps it inside its cell
    lines += ["| " + " | ".join(markdown(c) for c in row) + " |" for row in rows]
    return lines


def _energy_rows(t: TargetReport) -> list[list[Any]]:
    return [[term.name, number(term.count_dense), number(term.count_compressed),
             energy(term.cost_j), term.evidence.upper() if term.evidence in
             ("estimate", "unknown") else term.evidence, term.source] for term in t.energy_terms]


# --------------------------------------------------------------------------- Markdown


def to_markdown(report: Report) -> str:
    """A report for the terminal and for code review: the HTML page's sections as tables."""
    out = [f"# sbc-deploy report: {markdown(report.model)}", ""]
    out.append(f"dt = {report.dt:g} s, reset = {markdown(report.reset or 'n/a')}; "
               f"{'every target fits' if report.fits else 'RULES VIOLATED'}. Layers are named "
               "`synapse -> neuron`.")
    out.append("")
    out += [f"- {verdict_line(t)}" for t in report.targets] + [""]
    out += _decision_markdown(report)
    findings = getattr(report, "findings", ())
    if findings:  # quality guards (issue 12)
        out += ["## Quality guards", ""]
        out += _table(["severity", "guard", "where", "finding", "likely cause"],
                      [[f.severity, f.code, f.where or "-", f.message, f.hint or ""]
                       for f in findings])
        out.append("")
    if report.sweep:
        from sbc_deploy.report.sweep import TABLE_HEADER, table_rows

        out += ["## Sweep: accuracy, cores and energy against compression", "",
                f"{len(report.sweep)} points from one calibration; the sections below describe "
                "the point marked (this run), and its exports.", ""]
        out += _table(list(TABLE_HEADER), table_rows(report.sweep)) + [""]
    if len(report.targets) > 1:
        out += ["## How do the targets compare?", ""]
        out += _table(["target", "fits", "violations", "cores", "accuracy (integer)",
                       "accuracy (float)", "energy / sample", "energy evidence"],
                      [[t.target, "yes" if t.fits else "no", len(t.violations),
                        _cores(t), _pct(t.accuracy.compressed_integer),
                        _pct(t.accuracy.compressed_float), energy(t.energy_j.compressed),
                        ", ".join(sorted({x.evidence for x in t.energy_terms})) or "n/a"]
                       for t in report.targets])
        out.append("")
        out += _layout_markdown(report)
    for t in report.targets:
        out += _target_markdown(t)
    if report.timings_s:
        out += ["## Timings", ""]
        out += _table(["stage", "seconds"], [[k, f"{v:.2f}"] for k, v in report.timings_s.items()])
        out.append("")
    return shown_lines("\n".join(out).rstrip() + "\n")  # no control character, whatever


def _decision_markdown(report: Report) -> list[str]:
    """The summary strip of every target and the ranking, as the page shows them first."""
    from sbc_deploy.report.summary import RANKINGS, ann_remark, borrowed_notes, strip

    out = ["## Summary", ""]
    for t in report.targets:
        if t.refused:
            out += [f"- **{markdown(t.target)}**: refused before compression: "
                    f"{markdown(t.refused)}"]
            continue
        out += [f"**{markdown(t.target)}**", ""]
        out += _table(["figure", "value", "detail"],
                      [[item.label, item.value, item.detail] for item in strip(t)]) + [""]
    out += [""] if out[-1] else []
    if len(report.targets) > 1 and report.ranking:
        criterion = RANKINGS.get(report.rank_by or "energy", str(report.rank_by))
        out += [f"Ranking ({markdown(criterion)}):", ""]
        out += _table(["rank", "target", "verdict", "first blocking reason"],
                      [[r["rank"] or "-", r["target"], "fits" if r["fits"] else "does not fit",
                        r["reason"]] for r in report.ranking]) + [""]
    notes = borrowed_notes(report.targets) + [
        f"{t.target}: {remark}" for t in report.targets if (remark := ann_remark(t))]
    out += [f"- {markdown(note)}" for note in notes] + ([""] if notes else [])
    return out


def _cores(t: TargetReport) -> str:
    if t.cores_used is None:
        return "n/a"
    return f"{t.cores_used}" + (f" / {t.cores_available}" if t.cores_available else "")


def _core_table(t: TargetReport) -> list[str]:
    """One row per core, or per layer (with its fullest core) when there are many cores."""
    names = labels(t)

    def name(layer: str) -> str:
        return ", ".join(names.get(p.strip(), p.strip()) for p in layer.split(","))

    if len(t.cores) <= MAX_CORE_ROWS:
        return _table(["core", "layer", "neurons", "synapse memory", "neuron use",
                       "memory use"],
                      [[c.core, name(c.layer), c.neurons, bits(c.synapse_bits),
                        _pct(c.neuron_utilisation), _pct(c.memory_utilisation)]
                       for c in t.cores])
    groups: dict[str, list[Any]] = {}
    for c in t.cores:
        groups.setdefault(c.layer, []).append(c)
    rows = []
    for layer, cores in groups.items():
        n_use = [c.neuron_utilisation for c in cores if c.neuron_utilisation is not None]
        m_use = [c.memory_utilisation for c in cores if c.memory_utilisation is not None]
        rows.append([f"{cores[0].core}-{cores[-1].core} ({len(cores)})", name(layer),
                     sum(c.neurons for c in cores), bits(sum(c.synapse_bits for c in cores)),
                     _pct(max(n_use) if n_use else None), _pct(max(m_use) if m_use else None)])
    return _table(["cores", "layer", "neurons", "synapse memory", "neuron use (fullest core)",
                   "memory use (fullest core)"], rows)


def _split_markdown(t: TargetReport) -> list[str]:
    """Where each layer goes on a target that runs part of the network on the host."""
    from sbc_deploy.report.summary import span

    split = t.chip_host_split
    if not split or split.get("all_on_chip") or not t.placement:
        return []
    out = ["### Chip / host split: where each layer goes", "", f"{markdown(split['summary'])}.", ""]
    out += _table(["part", "layer", "kind", "runs on", "cores", "why"],
                  [[row["part"] or "", row["layer"], row["kind"], row["runs_on"],
                    span(row["cores"]),
                    row["reason"] if "host" in row["runs_on"] else
                    ("breaks " + ", ".join(row["violations"]) if row.get("violations") else "")]
                   for row in t.placement]) + [""]
    if split["transfers"]:
        out += _table(["from", "to", "direction", "values / sample / step", "values are"],
                      [[x["from"], x["to"], x["direction"], f"{x['values_per_step']:,}",
                        "spikes" if x["spikes"] else "graded"]
                       for x in split["transfers"]]) + [""]
    return out


def _layout_markdown(report: Report) -> list[str]:
    """Where each layer goes on every compared target (one column per target)."""
    from sbc_deploy.report.summary import placement_cell

    shown = [t for t in report.targets if t.placement]
    if len(shown) < 2:
        return []
    rows_of = {t.target: {row["layer"]: row for row in t.placement} for t in shown}
    order = list(dict.fromkeys(row["layer"] for t in shown for row in t.placement))
    out = ["### Where each layer goes", ""]
    out += _table(["layer", "kind"] + [t.target + (" (refused)" if t.refused else "")
                                       for t in shown],
                  [[layer, next(rows_of[t.target][layer]["kind"] for t in shown
                                if layer in rows_of[t.target])]
                   + [placement_cell(t, rows_of[t.target][layer])
                      if layer in rows_of[t.target] else "-" for t in shown]
                   for layer in order])
    return out + [""]


def _target_markdown(t: TargetReport) -> list[str]:
    out = [f"## {markdown(t.target)}: {markdown(t.description)}", "",
           f"Method: {t.method}. Fits: {'yes' if t.fits else 'no'}. Cores used: {_cores(t)}.", ""]
    out += ["### Does it fit, and where?", ""]
    if t.cores:
        out += _core_table(t) + [""]
    from sbc_deploy.report.summary import fan_in_text

    out += _table(
        ["layer", "kind", "weight shape", "cores", "fan-in max / limit", "storage",
         "memory if dense", "memory if sparse", "why"],
        [[layer.label, layer.kind, "x".join(map(str, layer.shape)),
          ",".join(map(str, layer.cores)) if len(layer.cores) < 4 else
          f"{layer.cores[0]}-{layer.cores[-1]} ({len(layer.cores)})",
          fan_in_text(t, layer), layer.storage or "n/a",
          bits(layer.memory_bits_dense), bits(layer.memory_bits_sparse),
          storage_reason(t, layer)] for layer in t.layers]) + [""]
    out += _split_markdown(t)
    errors = [v for v in t.violations if v.severity == "error"]
    warnings = len(t.violations) - len(errors)
    out += [f"### Violations ({len(errors)} errors, {warnings} warnings)", ""]
    if t.violations:
        out += _table(["layer", "rule", "limit", "actual", "severity", "message", "remedy"],
                      [[layer_label(t, v.layer), v.rule, v.limit, v.actual, v.severity,
                        v.message, getattr(v, "remedy", None) or ""] for v in t.violations])
    else:
        out.append("None: every rule of the target holds.")
    out.append("")
    out += ["### What did compression cost?", ""] + _table(
        ["dense (float)", "compressed (float)", "compressed (integer core)"],
        [[_pct(t.accuracy.dense_float), _pct(t.accuracy.compressed_float),
          _pct(t.accuracy.compressed_integer)]]) + [""]
    out += _table(["layer", "sparsity", "bits", "synapses kept / dense", "layer loss"],
                  [[layer.label, _pct(layer.sparsity),
                    layer.weight_bits if layer.weight_bits is not None else "float",
                    f"{layer.synapses:,} / {layer.dense_synapses:,}", number(layer.layer_loss)]
                   for layer in t.layers]) + [""]
    out += ["### What does it save?", ""] + _table(
        ["", "dense", "compressed"],
        [["SynOps / sample" + (" (on the chip)" if t.synops_host.compressed else ""),
          number(t.synops.dense), number(t.synops.compressed)],
         *([["SynOps / sample on the host (not in the energy)", number(t.synops_host.dense),
             number(t.synops_host.compressed)]] if t.synops_host.compressed else []),
         *([["products of two activations: ops / sample (no SynOps, not in the energy)",
             number(t.product_ops.dense), number(t.product_ops.compressed)]]
           if t.product_ops.compressed is not None else []),
         ["energy / sample", energy(t.energy_j.dense), energy(t.energy_j.compressed)]]) + [""]
    if any(layer.synops_dense is not None for layer in t.layers):
        out += _table(["layer", "SynOps dense", "SynOps compressed", "energy dense",
                       "energy compressed", "firing rate dense", "firing rate compressed"],
                      [[layer.label, count(layer.synops_dense), count(layer.synops_compressed),
                        energy(layer.energy_dense_j), energy(layer.energy_compressed_j),
                        _pct(layer.rate_dense), _pct(layer.rate_compressed)]
                       for layer in t.layers]) + [""]
    if t.energy_terms:
        out += _table(["term", "count dense", "count compressed", "cost each", "evidence",
                       "source"], _energy_rows(t)) + [""]
    if t.ann_equivalent:
        out += [markdown(ann_line(t.ann_equivalent)), ""]
    if t.exports:
        out += ["### Files", ""] + [f"- {fmt}: {markdown(path)}"
                                    for fmt, path in t.exports.items()] + [""]
    if t.notes:
        out += ["### Notes", ""] + [f"- {markdown(note)}" for note in t.notes] + [""]
    return out


# --------------------------------------------------------------------------- HTML


def to_html(report: Report) -> str:
    """A self-contained page for people (report/html.py: charts by question, inline SVG)."""
    return shown_lines(html_page(report))  # names went through html_text() there


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.md and report.html into ``out_dir`` (each atomically)."""
    out_dir = Path(out_dir)
    written = {}
    for name, render in (("report.json", to_json), ("report.md", to_markdown),
                         ("report.html", to_html)):
        written[name] = write_text_atomic(out_dir / name, render(report))
    return written

