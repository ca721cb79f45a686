"""Render a :class:`~sbc_deploy.report.model.Report` as JSON, Markdown or a self-contained HTML page.

All three read the same data structure; nothing is computed here that the report does not hold.
The HTML page embeds its plots as inline SVG (no external files, no scripts), so it opens
anywhere and cannot show a broken image.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from sbc_deploy.fileio import write_text_atomic
from sbc_deploy.report.model import Report, TargetReport

__all__ = ["to_json", "to_markdown", "to_html", "write_report"]


def to_json(report: Report) -> str:
    """``report.json``: the stable, documented schema (see report/model.py)."""
    return json.dumps(report.to_dict(), indent=2, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__} in the report")


# --------------------------------------------------------------------------- formatting helpers


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _num(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-2:
        return f"{value:.3g}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _energy(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if abs(value) >= scale or unit == "pJ":
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} J"  # pragma: no cover


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def _layer_rows(t: TargetReport) -> list[list[Any]]:
    limit = t.limits.get("max_fan_in")
    return [[layer.name, layer.kind, "x".join(map(str, layer.shape)), _pct(layer.sparsity),
             layer.weight_bits if layer.weight_bits is not None else "float",
             f"{layer.fan_in_max}" + (f" / {limit}" if limit else ""),
             f"{layer.synapses:,} / {layer.dense_synapses:,}"] for layer in t.layers]


def _energy_rows(t: TargetReport) -> list[list[Any]]:
    return [[term.name, _num(term.count_dense), _num(term.count_compressed),
             _energy(term.cost_j), term.source] for term in t.energy_terms]


def _ann_line(ann: Any) -> str:
    """The conventional 45 nm SNN-vs-ANN comparison, labelled as such."""
    if {"synops", "ann_macs", "snn_energy_j", "ann_energy_j"} <= set(ann):
        return (f"{ann.get('label', '45 nm comparison')}: SNN {_num(ann['synops'])} accumulates "
                f"x {_energy(ann.get('ac_j'))} = {_energy(ann['snn_energy_j'])} vs ANN "
                f"{_num(ann['ann_macs'])} MACs x {_energy(ann.get('mac_j'))} = "
                f"{_energy(ann['ann_energy_j'])} per sample ({ann.get('source', '')})")
    return "ANN comparison: " + ", ".join(f"{k} = {v}" for k, v in ann.items())


# --------------------------------------------------------------------------- Markdown


def to_markdown(report: Report) -> str:
    """A report for the terminal and for code review."""
    out = [f"# sbc-deploy report: {report.model}", ""]
    out.append(f"dt = {report.dt:g} s, reset = {report.reset or 'n/a'}; "
               f"{'every target fits' if report.fits else 'RULES VIOLATED'}.")
    out.append("")
    if len(report.targets) > 1:
        out += ["## Targets compared", ""]
        out += _table(["target", "fits", "violations", "cores", "accuracy (integer)",
                       "accuracy (float)", "energy / sample"],
                      [[t.target, "yes" if t.fits else "no", len(t.violations),
                        _cores(t), _pct(t.accuracy.compressed_integer),
                        _pct(t.accuracy.compressed_float), _energy(t.energy_j.compressed)]
                       for t in report.targets])
        out.append("")
    findings = getattr(report, "findings", ())
    if findings:  # quality guards (issue 12); styled for HTML by the report's owner
        out += ["## Quality guards", ""]
        out += _table(["severity", "guard", "where", "finding", "likely cause"],
                      [[f.severity, f.code, f.where or "-", f.message, f.hint or ""]
                       for f in findings])
        out.append("")
    for t in report.targets:
        out += _target_markdown(t)
    if report.timings_s:
        out += ["## Timings", ""]
        out += _table(["stage", "seconds"], [[k, f"{v:.2f}"] for k, v in report.timings_s.items()])
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _cores(t: TargetReport) -> str:
    if t.cores_used is None:
        return "n/a"
    return f"{t.cores_used}" + (f" / {t.cores_available}" if t.cores_available else "")


def _target_markdown(t: TargetReport) -> list[str]:
    out = [f"## Target {t.target}: {t.description}", "",
           f"Method: {t.method}. Fits: {'yes' if t.fits else 'no'}. Cores used: {_cores(t)}.", ""]
    out += ["### Layers", ""] + _table(
        ["layer", "kind", "weight shape", "sparsity", "bits", "fan-in max / limit",
         "synapses kept / dense"], _layer_rows(t)) + [""]
    errors = [v for v in t.violations if v.severity == "error"]
    out += [f"### Violations ({len(errors)} errors, {len(t.violations) - len(errors)} warnings)", ""]
    if t.violations:
        out += _table(["layer", "rule", "limit", "actual", "severity", "message"],
                      [[v.layer or "-", v.rule, v.limit, v.actual, v.severity, v.message]
                       for v in t.violations])
    else:
        out.append("None: every rule of the target holds.")
    out.append("")
    out += ["### Accuracy", ""] + _table(
        ["dense (float)", "compressed (float)", "compressed (integer core)"],
        [[_pct(t.accuracy.dense_float), _pct(t.accuracy.compressed_float),
          _pct(t.accuracy.compressed_integer)]]) + [""]
    out += ["### SynOps and energy per sample", ""] + _table(
        ["", "dense", "compressed"],
        [["SynOps", _num(t.synops.dense), _num(t.synops.compressed)],
         ["energy", _energy(t.energy_j.dense), _energy(t.energy_j.compressed)]]) + [""]
    if t.energy_terms:
        out += _table(["term", "count dense", "count compressed", "cost each", "source"],
                      _energy_rows(t)) + [""]
    if t.ann_equivalent:
        out += [_ann_line(t.ann_equivalent), ""]
    if t.cores:
        out += ["### Mapping estimate", ""] + _table(
            ["core", "layer", "neurons", "synapse bits", "neuron use", "memory use"],
            [[c.core, c.layer, c.neurons, f"{c.synapse_bits:,}", _pct(c.neuron_utilisation),
              _pct(c.memory_utilisation)] for c in t.cores]) + [""]
    if t.exports:
        out += ["### Exports", ""] + [f"- {fmt}: {path}" for fmt, path in t.exports.items()] + [""]
    if t.notes:
        out += ["### Notes", ""] + [f"- {note}" for note in t.notes] + [""]
    return out


# --------------------------------------------------------------------------- HTML


def _svg(draw: Callable[[Any], None], width: float = 6.0, height: float = 2.8) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(width, height))
    try:
        draw(axes)
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg")
    finally:
        plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _plot_layers(t: TargetReport) -> str:
    names = [layer.name for layer in t.layers]

    def draw(ax: Any) -> None:
        positions = range(len(names))
        ax.bar(positions, [100 * layer.sparsity for layer in t.layers], color="#4c72b0")
        ax.set_ylabel("sparsity (%)")
        ax.set_ylim(0, 100)
        ax.set_xticks(list(positions), names, rotation=30, ha="right")
        twin = ax.twinx()
        bits = [layer.weight_bits or 32 for layer in t.layers]
        twin.plot(list(positions), bits, "o-", color="#dd8452")
        twin.set_ylabel("weight bits (32 = float)")
        twin.set_ylim(0, max(bits) + 2)
        ax.set_title(f"{t.target}: sparsity (bars) and weight bits (line) per layer")

    return _svg(draw)


def _plot_fan_in(t: TargetReport) -> str:
    limit = t.limits.get("max_fan_in")

    def draw(ax: Any) -> None:
        for layer in t.layers:
            if layer.fan_in:
                ax.hist(layer.fan_in, bins=30, alpha=0.6, label=layer.name)
        if limit:
            ax.axvline(limit, color="red", linestyle="--", label=f"limit {limit}")
        ax.set_xlabel("fan-in (non-zero synapses per neuron)")
        ax.set_ylabel("neurons")
        ax.set_title(f"{t.target}: fan-in per layer" + ("" if limit else " (no per-neuron limit)"))
        ax.legend(fontsize=7)

    return _svg(draw)


def _plot_cores(t: TargetReport) -> str:
    def draw(ax: Any) -> None:
        cores = [c.core for c in t.cores]
        ax.bar([c - 0.2 for c in cores], [100 * (c.neuron_utilisation or 0) for c in t.cores],
               width=0.4, label="neurons")
        ax.bar([c + 0.2 for c in cores], [100 * (c.memory_utilisation or 0) for c in t.cores],
               width=0.4, label="synapse memory")
        ax.axhline(100, color="red", linestyle="--", label="limit per core")
        ax.set_xticks(cores, [f"{c.core}\n{c.layer}" for c in t.cores], fontsize=7)
        ax.set_xlabel("core (layer)")
        ax.set_ylabel("use of the core (%)")
        ax.set_title(f"{t.target}: memory and neurons per core against the limit")
        ax.legend(fontsize=7)

    return _svg(draw)


def _plot_before_after(t: TargetReport) -> str:
    def draw(ax: Any) -> None:
        labels, values, colors = [], [], []
        for label, value, color in (
                ("dense\nfloat", t.accuracy.dense_float, "#4c72b0"),
                ("compressed\nfloat", t.accuracy.compressed_float, "#55a868"),
                ("compressed\ninteger", t.accuracy.compressed_integer, "#c44e52")):
            if value is not None:
                labels.append(label)
                values.append(100 * value)
                colors.append(color)
        ax.bar(labels, values, color=colors)
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy (%)")
        for i, value in enumerate(values):
            ax.text(i, value + 1, f"{value:.1f}", ha="center", fontsize=8)
        ax.set_title(f"{t.target}: accuracy before and after")

    return _svg(draw, width=4.2)


def _plot_energy(t: TargetReport) -> str:
    def draw(ax: Any) -> None:
        values = [t.energy_j.dense or 0.0, t.energy_j.compressed or 0.0]
        unit, scale = next((u, f) for u, f in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6),
                                                ("nJ", 1e-9), ("pJ", 0.0))
                           if max(values) >= f)
        scale = scale or 1e-12
        ax.bar(["dense", "compressed"], [v / scale for v in values], color=["#4c72b0", "#55a868"])
        ax.set_ylabel(f"energy per sample ({unit})")
        ax.set_title(f"{t.target}: energy before and after")

    return _svg(draw, width=3.6)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:13px}th{background:#f0f0f0}.bad{color:#b00;font-weight:bold}.good{color:#070}
figure{display:inline-block;margin:0 1em 1em 0}svg{max-width:100%;height:auto}
"""


def to_html(report: Report) -> str:
    """A self-contained page for people: tables and plots (inline SVG) per target."""
    verdict = ("<span class=good>every target fits</span>" if report.fits
               else "<span class=bad>rules violated</span>")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>sbc-deploy report: "
             f"{html.escape(report.model)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>sbc-deploy report: {html.escape(report.model)}</h1>",
             f"<p>dt = {report.dt:g} s, reset = {html.escape(str(report.reset))}; {verdict}.</p>"]
    if len(report.targets) > 1:
        parts.append("<h2>Targets compared</h2>")
        parts.append(_html_table(
            ["target", "fits", "violations", "cores", "accuracy (integer)", "accuracy (float)",
             "energy / sample"],
            [[t.target, "yes" if t.fits else "no", len(t.violations), _cores(t),
              _pct(t.accuracy.compressed_integer), _pct(t.accuracy.compressed_float),
              _energy(t.energy_j.compressed)] for t in report.targets]))
    for t in report.targets:
        parts.append(f"<h2>Target {html.escape(t.target)}: {html.escape(t.description)}</h2>")
        parts.append(f"<p>Method {html.escape(t.method)}; fits: "
                     f"{'<span class=good>yes</span>' if t.fits else '<span class=bad>no</span>'};"
                     f" cores used: {_cores(t)}.</p>")
        parts.append(_html_table(["layer", "kind", "weight shape", "sparsity", "bits",
                                  "fan-in max / limit", "synapses kept / dense"], _layer_rows(t)))
        if t.violations:
            parts.append(f"<h3>Violations ({len(t.violations)})</h3>")
            parts.append(_html_table(["layer", "rule", "limit", "actual", "severity", "message"],
                                     [[v.layer or "-", v.rule, v.limit, v.actual, v.severity,
                                       v.message] for v in t.violations]))
        else:
            parts.append("<p class=good>No violations: every rule of the target holds.</p>")
        figures = [_plot_layers(t), _plot_fan_in(t)]
        if t.cores:
            figures.append(_plot_cores(t))
        if any(v is not None for v in (t.accuracy.dense_float, t.accuracy.compressed_float,
                                       t.accuracy.compressed_integer)):
            figures.append(_plot_before_after(t))
        if t.energy_j.dense is not None or t.energy_j.compressed is not None:
            figures.append(_plot_energy(t))
        parts.append("".join(f"<figure>{svg}</figure>" for svg in figures))
        if t.energy_terms:
            parts.append("<h3>Energy terms (per sample)</h3>")
            parts.append(_html_table(["term", "count dense", "count compressed", "cost each",
                                      "source"], _energy_rows(t)))
        if t.ann_equivalent:
            parts.append(f"<p>{html.escape(_ann_line(t.ann_equivalent))}</p>")
        if t.exports:
            parts.append("<h3>Exports</h3><ul>" + "".join(
                f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in t.exports.items())
                + "</ul>")
        if t.notes:
            parts.append("<h3>Notes</h3><ul>" + "".join(
                f"<li>{html.escape(n)}</li>" for n in t.notes) + "</ul>")
    if report.timings_s:
        parts.append("<h2>Timings</h2>")
        parts.append(_html_table(["stage", "seconds"],
                                 [[k, f"{v:.2f}"] for k, v in report.timings_s.items()]))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.md and report.html into ``out_dir`` (each atomically)."""
    out_dir = Path(out_dir)
    written = {}
    for name, render in (("report.json", to_json), ("report.md", to_markdown),
                         ("report.html", to_html)):
        written[name] = write_text_atomic(out_dir / name, render(report))
    return written

