"""report.html: one self-contained page organised by the questions a hardware engineer asks.

1. Does it fit, and where? (per-core neurons and synapse memory against the limits; dense vs
   sparse synapse storage per layer and why the target chose it)
2. What did compression cost? (accuracy dense / float / integer on a zoomed axis; per-layer
   sensitivity = the layer's OBS loss; per-layer sparsity and bits)
3. What does it save? (SynOps, energy and firing rates per layer, dense vs compressed; every
   energy cost with its evidence grade)
4. How do the targets compare? (when several)

Each question is answered by one chart (inline SVG from :mod:`sbc_deploy.report.charts`) or one
table. A layer is named the same way everywhere: ``synapse -> neuron``. No script, no external
file: the page opens offline.

Every text of the run (names, messages naming them, target fields) enters the page through
:func:`sbc_deploy.untrusted.html_text`: control characters and newlines escaped, then HTML
escaped, so a name cannot add a line to a tooltip, leave an attribute or add an element.
"""

from __future__ import annotations

from typing import Any, Sequence

from sbc_deploy.report.charts import (
    COLORS,
    LINE_COLORS,
    Bar,
    Line,
    Point,
    Row,
    aggregate,
    hbar_chart,
    line_chart,
)
from sbc_deploy.report.model import Report, TargetReport
from sbc_deploy.report.summary import (
    RANKINGS,
    accuracy_change,
    ann_remark,
    borrowed_notes,
    energy_text,
    fan_in_text,
    layer_binding,
    placement_cell,
    span,
    strip,
    wilson,
)
from sbc_deploy.report.sweep import (
    TABLE_HEADER,
    accuracy_text,
    energy_cell,
    sweep_axes,
    table_rows,
    x_value,
)
from sbc_deploy.report.sweep import cores_text as sweep_cores
from sbc_deploy.report.vocabulary import (
    MAX_CORE_ROWS,
    ann_line,
    bits,
    count,
    energy,
    labels,
    pct,
    storage_reason,
)
from sbc_deploy.untrusted import html_text

MAX_ROWS = 24          # rows drawn per chart before the smaller ones are summed into one
LONG = 16              # tables with more rows (and charts with more than 40) scroll in place

_STYLE = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#fafafa}
main{max-width:1360px;margin:0 auto;padding:16px 20px}
h1{font-size:22px;margin:4px 0 8px}h2{font-size:18px;margin:28px 0 6px;border-bottom:2px solid
#ddd;padding-bottom:3px}h3{font-size:15px;margin:18px 0 4px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.card{background:#fff;border:1px solid #ddd;border-left:6px solid #1b9e77;padding:8px 12px;
min-width:220px;flex:1 1 220px}.card.bad{border-left-color:#c00}
.card b{font-size:16px}.muted{color:#666;font-size:12.5px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,640px),1fr));gap:14px}
figure{margin:0;background:#fff;border:1px solid #ddd;padding:8px;overflow-x:auto}
figcaption{font-size:12.5px;color:#555;margin-top:4px}
svg.chart{display:block;max-width:none;font:12px system-ui,-apple-system,"Segoe UI",Roboto,
sans-serif}
svg .title{font-weight:600;font-size:13px}svg .tick{fill:#555;font-size:11px}
svg .legend{font-size:11.5px}svg .label{font-size:12px}
svg .value{font-size:11.5px;fill:#333}svg .small{font-size:10.5px}
svg .grid{stroke:#e5e5e5}svg .limit{stroke:#c00;stroke-width:1.5;stroke-dasharray:4 3}
svg .hit{fill:transparent}svg .row:hover .hit{fill:#f0f4ff}
.tablewrap{overflow-x:auto;background:#fff;border:1px solid #ddd;margin:6px 0 10px}
td.wide{min-width:12em}.tablewrap.long{max-height:520px;overflow-y:auto}
figure.long{max-height:640px;overflow-y:auto}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:3px 8px;
font-size:12.5px;text-align:left;vertical-align:top}th{background:#f3f3f3;position:sticky;top:0}
td:first-child,td:nth-child(2){white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.num.wrap{white-space:normal}
.bad{color:#b00;font-weight:600}.warn{color:#8a4b00;font-weight:600}
.good{color:#070;font-weight:600}
.grade{display:inline-block;padding:0 6px;border-radius:8px;font-size:11.5px;background:#e8f5e9}
.grade.estimate,.grade.unknown{background:#ffe0b2;color:#8a4b00;font-weight:600}
.grade.definition{background:#e3f2fd}
.strip{display:grid;grid-template-columns:repeat(auto-fill,minmax(158px,1fr));gap:6px;
margin:4px 0 10px}.strip .item{background:#fff;border:1px solid #ddd;border-top:3px solid #bbb;
padding:4px 8px}.strip .item.good{border-top-color:#1b9e77}.strip .item.bad{border-top-color:#c00}
.strip .k{font-size:11.5px;color:#555}.strip .v{font-size:15px;font-weight:600;
line-height:1.3}.strip .d{font-size:11.5px;color:#555;line-height:1.3}
h2.target{font-size:16px;margin:10px 0 2px;border:0;padding:0}
.refused{color:#777;font-size:13px;margin:8px 0}
tr.out td{color:#999}
.side{font-weight:600}.side.chip{color:#1b7a5a}.side.host{color:#8a4b00}.side.bad{color:#b00}
"""


# --------------------------------------------------------------------------- formatting


def _energy_unit(values: Sequence[float]) -> tuple[str, float]:
    top = max(values, default=0.0)
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9)):
        if top >= scale:
            return unit, scale
    return "pJ", 1e-12


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = (),
          raw: Sequence[int] = (), wide: Sequence[int] = ()) -> str:
    """An HTML table; columns in ``raw`` hold HTML already (else the text is escaped);
    columns in ``wide`` hold prose and keep a readable width (the table scrolls in place)."""
    head = "".join(f"<th>{html_text(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = str(cell) if i in raw else html_text(str(cell))
            cls = "num" if i in numeric else "wide" if i in wide else ""
            cells.append(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    wrap = "tablewrap long" if len(rows) > LONG else "tablewrap"  # scrolls inside the page
    return (f'<div class="{wrap}"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def figure(svg: str, caption: str = "", long: bool = False) -> str:
    cap = f"<figcaption>{html_text(caption)}</figcaption>" if caption else ""
    return f"<figure{' class=long' if long else ''}>{svg}{cap}</figure>"


def grade(evidence: str) -> str:
    return f'<span class="grade {html_text(evidence)}">{html_text(evidence)}</span>'


def _mean(values: Sequence[float]) -> str:
    return pct(sum(values) / len(values), 0) if values else "n/a"


def _axon_bars(cores: Sequence[Any]) -> tuple[Bar, ...]:
    """In-axons of the fullest core against the per-core limit, where the target has one."""
    bars = []
    for name, color, used, cap in (("axons in", AXON_COLOR, "in_axons", "in_axon_capacity"),
                                   ("axons out", AXON_OUT_COLOR, "out_axons",
                                    "out_axon_capacity")):
        uses = [getattr(c, used) / getattr(c, cap) for c in cores
                if getattr(c, used) is not None and getattr(c, cap)]
        if uses:
            bars.append(Bar(100 * max(uses), color, name, pct(max(uses), 0)))
    return tuple(bars)


def _core_legend(t: TargetReport) -> tuple[tuple[str, str], ...]:
    legend = (("neurons", COLORS["neurons"]), ("synapse memory", COLORS["memory"]))
    if any(c.in_axons is not None and c.in_axon_capacity for c in t.cores):
        legend += (("axons in", AXON_COLOR),)
    if any(c.out_axons is not None and c.out_axon_capacity for c in t.cores):
        legend += (("axons out", AXON_OUT_COLOR),)
    return legend


AXON_COLOR, AXON_OUT_COLOR = "#66a61e", "#a6761d"


def _core_rows(t: TargetReport) -> tuple[list[Row], str]:
    names = labels(t)
    if len(t.cores) <= MAX_CORE_ROWS:
        rows = []
        for c in t.cores:
            layer = ", ".join(names.get(p.strip(), p.strip()) for p in c.layer.split(","))
            rows.append(Row(f"core {c.core}: {layer}", (
                Bar(None if c.neuron_utilisation is None else 100 * c.neuron_utilisation,
                    COLORS["neurons"], "neurons", f"{pct(c.neuron_utilisation, 0)}"),
                Bar(None if c.memory_utilisation is None else 100 * c.memory_utilisation,
                    COLORS["memory"], "synapse memory", f"{pct(c.memory_utilisation, 0)}"),
                *_axon_bars([c])),
                hover=f"{c.neurons} neurons" + (f" of {c.neuron_capacity}" if c.neuron_capacity
                                                else "")
                + f", {bits(c.synapse_bits)}" + (f" of {bits(c.memory_capacity)}"
                                                 if c.memory_capacity else "")))
        return rows, "one row per core"
    groups: dict[str, list[Any]] = {}
    for c in t.cores:
        groups.setdefault(c.layer, []).append(c)
    rows = []
    for layer, cores in groups.items():
        label = ", ".join(names.get(p.strip(), p.strip()) for p in layer.split(","))
        first, last = cores[0].core, cores[-1].core
        span = f"core {first}" if len(cores) == 1 else f"cores {first}-{last}"
        n_use = [c.neuron_utilisation for c in cores if c.neuron_utilisation is not None]
        m_use = [c.memory_utilisation for c in cores if c.memory_utilisation is not None]
        rows.append(Row(f"{label} ({span})", (
            Bar(100 * max(n_use) if n_use else None, COLORS["neurons"], "neurons (fullest core)",
                pct(max(n_use), 0) if n_use else "n/a"),
            Bar(100 * max(m_use) if m_use else None, COLORS["memory"],
                "synapse memory (fullest core)", pct(max(m_use), 0) if m_use else "n/a"),
            *_axon_bars(cores)),
            hover=f"{len(cores)} cores; mean neurons {_mean(n_use)}, mean memory {_mean(m_use)}"))
    how = f"{len(t.cores)} cores grouped per layer: the fullest core of each group"
    if len(rows) > MAX_ROWS:  # the fullest groups, the rest in one row (their fullest core)
        def fullest(row: Row) -> float:
            return max((b.value or 0.0) for b in row.bars)

        order = sorted(range(len(rows)), key=lambda i: -fullest(rows[i]))
        rest = [rows[i] for i in order[MAX_ROWS - 1:]]
        bars = tuple(Bar(max((r.bars[j].value or 0.0) for r in rest), bar.color, bar.series,
                         f"{max((r.bars[j].value or 0.0) for r in rest):.0f}%")
                     for j, bar in enumerate(rest[0].bars))
        rows = [rows[i] for i in sorted(order[:MAX_ROWS - 1])] + [
            Row(f"{len(rest)} other layers (fullest core)", bars)]
        how += f"; the {MAX_ROWS - 1} fullest groups, the other {len(rest)} in the last row"
    return rows, how


# --------------------------------------------------------------------------- sections


def _fit_section(t: TargetReport) -> str:
    parts = ["<h3>Does it fit, and where?</h3>"]
    if t.cores:
        rows, how = _core_rows(t)
        parts.append(figure(hbar_chart(
            f"{t.target}: use of each core against its limit", rows, unit="% of the core",
            high=max(110.0, max((b.value or 0) for r in rows for b in r.bars) * 1.05),
            limit=100.0, limit_label="per-core limit", legend=_core_legend(t)),
            f"{t.cores_used} of {t.cores_available or 'unlimited'} cores used; {how}. "
            f"Deciding limit: {t.deciding_limit or 'n/a'}. Hover a row for the counts."))
    rule = t.limits.get("synapse_storage") or "n/a"
    rows = []
    for layer in t.layers:
        used = (layer.memory_bits_dense if layer.storage == "dense" else
                layer.memory_bits_sparse if layer.storage == "sparse" else
                layer.memory_bits_dense)
        fan = html_text(fan_in_text(t, layer))
        cores = _span(layer.cores)
        rows.append([html_text(layer.label), cores, html_text(layer_binding(t, layer)), fan,
                     html_text(layer.storage or "n/a"),
                     bits(layer.memory_bits_dense), bits(layer.memory_bits_sparse), bits(used),
                     html_text(storage_reason(t, layer))])
    parts.append(table(["layer", "cores", "fullest core: its deciding limit",
                        "fan-in max / limit",
                        "storage", "compressed, stored dense", "compressed, stored sparse",
                        "memory used", "why"], rows,
                       numeric=(5, 6, 7), raw=range(9)))
    parts.append(f'<p class="muted">Synapse storage rule of {html_text(t.target)}: '
                 f'{html_text(str(rule))}; dense = potential synapses x weight bits, sparse = '
                 f'non-zero synapses x (weight bits + {t.limits.get("index_bits", "?")} index '
                 'bits).</p>')
    return "".join(parts)


def _span(cores: Sequence[int]) -> str:
    if not cores:
        return "n/a"
    if len(cores) == 1:
        return str(cores[0])
    if list(cores) == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]} ({len(cores)})"
    return ", ".join(map(str, cores[:6])) + (" ..." if len(cores) > 6 else "")


def accuracy_chart(targets: Sequence[TargetReport]) -> str | None:
    """Accuracy bars on a full 0-100 % axis, each value with its 95 % interval (Wilson) and
    the sample count: a zoomed axis without the interval shows noise as a result."""
    from sbc_deploy.report.summary import wilson

    rows = []
    first = targets[0].accuracy
    n = first.samples

    def text(value: float) -> str:
        if not n:
            return f"{100 * value:.2f}%"
        low, high = wilson(value, n)
        return f"{100 * value:.1f}% [{100 * low:.0f}-{100 * high:.0f}]"

    if first.dense_float is not None:
        rows.append(Row("dense (float)", (Bar(100 * first.dense_float, COLORS["dense"],
                                              "accuracy", text(first.dense_float)),)))
    for t in targets:
        if t.refused:
            continue
        prefix = f"{t.target}: " if len(targets) > 1 else ""
        for label, value, color in (("compressed (float)", t.accuracy.compressed_float,
                                     COLORS["compressed"]),
                                    ("compressed (integer core)", t.accuracy.compressed_integer,
                                     COLORS["integer"])):
            if value is not None:
                rows.append(Row(prefix + label, (Bar(100 * value, color, "accuracy",
                                                     text(value)),)))
    if not rows:
        return None
    note = f"in brackets: 95 % interval, n = {n:,} samples" if n else ""
    return hbar_chart("Accuracy on the evaluation data", rows, unit="accuracy (%)", low=0.0,
                      high=100.0, note=note)


def _cost_section(t: TargetReport, single: bool) -> str:
    parts = ["<h3>What did compression cost?</h3>", '<div class="grid">']
    if single:
        chart = accuracy_chart([t])
        if chart:
            parts.append(figure(chart, "Full axis; in brackets each accuracy's 95 % interval."))
    rows = [Row(layer.label, (Bar(100 * layer.sparsity, COLORS["compressed"], "sparsity",
                                  f"{100 * layer.sparsity:.1f}% \u00b7 "
                                  f"{layer.weight_bits or 'float'}"
                                  f"{' bit' if layer.weight_bits else ''}"),),
                hover=f"{layer.synapses:,} of {layer.dense_synapses:,} synapses kept; grid "
                      f"{layer.grid or 'float'}") for layer in t.layers]
    parts.append(figure(hbar_chart("Sparsity and weight bits per layer", rows,
                                   unit="synapses removed (%)", high=100.0),
                        "Right of each bar: sparsity and the weight bits the layer keeps.",
                        long=len(rows) > 40))
    losses = [layer for layer in t.layers if layer.layer_loss is not None]
    if losses:
        loss_rows = [Row(layer.label, (Bar(layer.layer_loss, COLORS["warn"], "layer loss"),),
                         hover="OBS loss of the layer: the error its compression put on the "
                               "next neuron's membrane potential (SBC) or input current (OBC)")
                     for layer in losses]
        parts.append(figure(hbar_chart("Sensitivity: loss each layer's compression caused",
                                       aggregate(loss_rows, MAX_ROWS), unit="layer loss"),
                            "Larger bars: the layers where compression cost the most."))
    parts.append("</div>")
    return "".join(parts)


def _synops_caption(t: TargetReport) -> str:
    """The whole network's SynOps, or the chip's and the host's where the target runs part of
    the network, and the products of two activations' operations (no SynOps)."""
    text = (f"{'On the chip' if t.synops_host.compressed else 'Whole network'}: "
            f"{count(t.synops.dense)} -> {count(t.synops.compressed)} SynOps per sample.")
    if t.synops_host.compressed:
        text += (f" On the host: {count(t.synops_host.dense)} -> "
                 f"{count(t.synops_host.compressed)} (not in the energy).")
    if t.product_ops.compressed is not None:
        text += (f" Products of two activations: {count(t.product_ops.dense)} -> "
                 f"{count(t.product_ops.compressed)} operations per sample (no SynOps).")
    return text


def _save_section(t: TargetReport) -> str:
    parts = ["<h3>What does it save?</h3>", '<div class="grid">']
    legend = (("dense", COLORS["dense"]), ("compressed", COLORS["compressed"]))
    if any(layer.synops_dense is not None for layer in t.layers):
        rows = [Row(layer.label, (Bar(layer.synops_dense, COLORS["dense"], "dense",
                                      count(layer.synops_dense)),
                                  Bar(layer.synops_compressed, COLORS["compressed"], "compressed",
                                      count(layer.synops_compressed))))
                for layer in t.layers]
        parts.append(figure(hbar_chart("SynOps per sample, per layer", aggregate(rows, MAX_ROWS),
                                       unit="SynOps per sample", legend=legend),
                            _synops_caption(t)))
    if any(layer.energy_dense_j is not None for layer in t.layers):
        unit, scale = _energy_unit([v or 0.0 for layer in t.layers
                                    for v in (layer.energy_dense_j, layer.energy_compressed_j)])
        rows = [Row(layer.label, tuple(
            Bar(None if v is None else v / scale, COLORS[s], s, energy(v))
            for v, s in ((layer.energy_dense_j, "dense"),
                         (layer.energy_compressed_j, "compressed")))) for layer in t.layers]
        grades = sorted({term.evidence for term in t.energy_terms})
        parts.append(figure(hbar_chart(f"Dynamic energy per sample, per layer ({t.target})",
                                       aggregate(rows, MAX_ROWS), unit=f"{unit} per sample",
                                       legend=legend),
                            "SynOps + spikes routed + neuron updates of each layer, with the "
                            f"target's costs (evidence: {', '.join(grades) or 'n/a'}; see the "
                            "table). Per-core static energy is not split per layer."))
    if any(layer.rate_dense is not None for layer in t.layers):
        rows = [Row(layer.label, tuple(
            Bar(None if v is None else 100 * v, COLORS[s], s, pct(v, 2))
            for v, s in ((layer.rate_dense, "dense"), (layer.rate_compressed, "compressed"))))
            for layer in t.layers if layer.rate_dense is not None]
        caption = "Measured by the float simulator on the evaluation data."
        if len(rows) > MAX_ROWS:  # rates do not add up: show the busiest layers
            busiest = sorted(range(len(rows)), key=lambda i: -(rows[i].bars[1].value or 0.0))
            rows = [rows[i] for i in sorted(busiest[:MAX_ROWS])]
            caption += (f" The {MAX_ROWS} busiest of {len(busiest)} layers (compressed network);"
                        " report.md lists every layer.")
        parts.append(figure(hbar_chart("Firing rate of each layer's neurons", rows,
                                       unit="spikes per neuron per step (%)", legend=legend),
                            caption))
    parts.append("</div>")
    if t.energy_terms:
        parts.append(table(
            ["term", "count dense", "count compressed", "cost each", "energy dense",
             "energy compressed", "evidence", "source"],
            [[html_text(term.name), count(term.count_dense), count(term.count_compressed),
              energy(term.cost_j),
              energy(None if term.count_dense is None else term.count_dense * term.cost_j),
              energy(term.count_compressed * term.cost_j), grade(term.evidence),
              html_text(term.source)] for term in t.energy_terms],
            numeric=(1, 2, 3, 4, 5), raw=range(8), wide=(7,)))
        estimates = [term.name for term in t.energy_terms if term.evidence in
                     ("estimate", "unknown")]
        if estimates:
            parts.append(f'<p class="muted"><span class="grade estimate">estimate</span> '
                         f'{html_text(", ".join(estimates))}: not measured on '
                         f"{html_text(t.target)}; treat the totals as an estimate.</p>")
    return "".join(parts)


def _violations(t: TargetReport) -> str:
    if not t.violations:
        return '<p class="good">No violations: every rule of the target holds.</p>'
    names = labels(t)
    return "<h3>Violations</h3>" + table(
        ["layer", "rule", "limit", "actual", "severity", "message", "remedy"],
        [[names.get(v.layer or "", v.layer or "-"), v.rule, v.limit, v.actual, v.severity,
          v.message, getattr(v, "remedy", None) or ""] for v in t.violations], wide=(5, 6))


def _split_section(t: TargetReport) -> str:
    """Where each layer goes on a target that runs part of the network on the host: one row
    per layer (or graph operation) in graph order with its side, cores or reason, then what
    crosses between chip and host each step (``placement``, ``chip_host_split``)."""
    split = t.chip_host_split
    if not split or split.get("all_on_chip") or not t.placement:
        return ""
    rows = []
    for row in t.placement:
        side = row["runs_on"]
        cls = "host" if "host" in side else ("bad" if row.get("violations") else "chip")
        why = (row["reason"] if "host" in side else
               ("breaks " + ", ".join(row["violations"]) if row.get("violations") else ""))
        rows.append([row["part"] or "", html_text(row["layer"]), html_text(row["kind"]),
                     f'<span class="side {cls}">{html_text(side)}</span>',
                     html_text(span(row["cores"]) if row.get("cores") else ""),
                     html_text(why)])
    parts = ["<h3>Chip / host split: where each layer goes</h3>",
             f'<p>{html_text(split["summary"])}. The host runs what the chip has no circuit '
             "for; each part is a connected run of layers on one side.</p>",
             table(["part", "layer", "kind", "runs on", "cores", "why"], rows,
                   numeric=(0,), raw=range(6), wide=(5,))]
    if split["transfers"]:
        parts.append(table(
            ["from", "to", "direction", "values / sample / step", "values are"],
            [[x["from"], x["to"], x["direction"].replace("->", " \u2192 "),
              f"{x['values_per_step']:,}", "spikes" if x["spikes"] else "graded"]
             for x in split["transfers"]], numeric=(3,)))
    return "".join(parts)


def _layout_matrix(report: Report) -> str:
    """Where each layer goes on every compared target: rows in graph order, one column per
    target (a refused target's column shows why nothing of the network runs on it)."""
    shown = [t for t in report.targets if t.placement]
    if len(shown) < 2:
        return ""
    rows_of = {t.target: {row["layer"]: row for row in t.placement} for t in shown}
    order = list(dict.fromkeys(row["layer"] for t in shown for row in t.placement))
    head = "".join(f"<th>{html_text(t.target)}{' (refused)' if t.refused else ''}</th>"
                   for t in shown)
    body = []
    for layer in order:
        kind = next(rows_of[t.target][layer]["kind"] for t in shown if layer in rows_of[t.target])
        cells = []
        for t in shown:
            row = rows_of[t.target].get(layer)
            if row is None:
                cells.append("<td>-</td>")
                continue
            side = row["runs_on"]
            cls = "host" if "host" in side else ("bad" if row.get("violations") else "chip")
            cells.append(f'<td title="{html_text(row["reason"])}"><span class="side {cls}">'
                         f"{html_text(placement_cell(t, row))}</span></td>")
        body.append(f"<tr><td>{html_text(layer)}</td><td>{html_text(kind)}</td>"
                    + "".join(cells) + "</tr>")
    wrap = "tablewrap long" if len(order) > LONG else "tablewrap"
    return ('<h3 id="layout">Where each layer goes</h3><p class="muted">chip (with its cores) '
            "or host (with the reason the chip cannot run it); hover a host cell for the whole "
            "reason. A target that can run part of the network runs the rest on the host; one "
            "that can run none of its neuron layers is refused.</p>"
            f'<div class="{wrap}"><table><thead><tr><th>layer</th><th>kind</th>{head}</tr>'
            f'</thead><tbody>{"".join(body)}</tbody></table></div>')


def _compare(report: Report) -> str:
    targets = [t for t in report.targets if not t.refused]
    refused = [t for t in report.targets if t.refused]
    parts = ["<h2>How do the targets compare?</h2>"]
    if refused:
        parts.append('<p class="refused">Refused before compression (not drawn): ' + "; ".join(
            f"<b>{html_text(t.target)}</b>: {html_text(t.refused or '')}"
            for t in refused) + ".</p>")
    if not targets:
        parts.append(_layout_matrix(report))
        return "".join(parts)
    rows_cores = [Row(t.target, (Bar(t.cores_used, COLORS["neutral"] if t.fits else "#bbb",
                                     "cores used", f"{t.cores_used} of "
                                                   f"{t.cores_available or 'no limit'}"),),
                      marks=(t.cores_available,) if t.cores_available else ())
                  for t in targets]
    # the chip's core count at its true place on the axis: the axis reaches past it
    top = max([*(t.cores_used or 0 for t in targets), *(t.cores_available or 0 for t in targets),
               1]) * 1.08
    unit, scale = _energy_unit([t.energy_j.compressed or 0.0 for t in targets])
    rows_energy = [Row(t.target, (Bar(None if t.energy_j.compressed is None else
                                      t.energy_j.compressed / scale,
                                      COLORS["compressed"] if t.fits else "#bbb",
                                      "energy compressed",
                                      energy_text(t.energy_j.compressed, t)),),
                       hover="evidence: " + ", ".join(sorted({x.evidence
                                                               for x in t.energy_terms})))
                   for t in targets]
    parts.append('<div class="grid">')
    chart = accuracy_chart(targets)
    if chart:
        parts.append(figure(chart, "Full axis; in brackets each accuracy's 95 % interval."))
    parts.append(figure(hbar_chart("Cores used (red tick: the cores each chip has)", rows_cores,
                                   unit="cores", high=top),
                        "Each tick at the chip's true core count; a bar past it does not fit. "
                        "Grey: does not fit."))
    parts.append(figure(hbar_chart("Energy per sample, compressed network", rows_energy,
                                   unit=f"{unit} per sample"),
                        "Costs from each target file, with their weakest evidence grade; grey: "
                        "does not fit."))
    parts.append("</div>")
    parts.append(_layout_matrix(report))
    return "".join(parts)


def _ranking(report: Report) -> str:
    """The ranking table: targets that fit by the stated criterion, the rest greyed out with
    the first reason that blocks them."""
    if len(report.targets) < 2 or not report.ranking:
        return ""
    by_name = {t.target: t for t in report.targets}
    rows = []
    for entry in report.ranking:
        t = by_name[entry["target"]]
        change = accuracy_change(t.accuracy)
        acc = ("n/a" if change is None else
               f"{100 * change[0]:+.1f} \u00b1 {100 * change[1]:.1f} pt")
        cls = "" if entry["fits"] else ' class="out"'
        rows.append(f"<tr{cls}><td>{entry['rank'] or '-'}</td>"
                    f"<td><b>{html_text(t.target)}</b></td>"
                    f"<td>{'fits' if entry['fits'] else 'does not fit'}</td>"
                    # energy and cores may wrap: at 800 px the reason column then fits
                    f'<td class="num wrap">{html_text(energy_text(t.energy_j.compressed, t))}'
                    "</td>"
                    f"<td class=num>{html_text(acc)}</td>"
                    f'<td class="num wrap">{html_text(cores_text(t))}</td>'
                    f"<td class=wide>{html_text(entry['reason'] or '')}</td></tr>")
    criterion = RANKINGS.get(report.rank_by or "energy", str(report.rank_by))
    return (f'<h3 id="ranking">Ranking: {html_text(criterion)}</h3>'
            '<div class="tablewrap"><table><thead><tr><th>rank</th><th>target</th>'
            "<th>verdict</th><th>energy / sample</th><th>accuracy change</th><th>cores</th>"
            "<th>first blocking reason</th></tr></thead><tbody>" + "".join(rows)
            + "</tbody></table></div>")


def _sweep_section(report: Report) -> str:
    """A sweep's charts (accuracy, cores, energy against compression, one line per target
    and bit width) and its table (report/sweep.py)."""
    rows = list(report.sweep)
    if not rows:
        return ""
    x, lines = sweep_axes(rows)
    x_label = ("--sparsity (share of synapses asked to be removed)" if x == "sparsity"
               else "--bits (weight bits)")
    colors = {name: LINE_COLORS[i % len(LINE_COLORS)] for i, name in enumerate(lines)}

    def accuracy(row: Any) -> float | None:
        acc = row["accuracy"]
        value = acc["compressed_integer"]
        return acc["compressed_float"] if value is None else value

    def acc_point(row: Any) -> Point:
        value, n = accuracy(row), row["accuracy"]["samples"]
        if value is None:
            return Point(x_value(row, x), None)
        low, high = wilson(value, n) if n else (None, None)
        return Point(x_value(row, x), 100 * value, None if low is None else 100 * low,
                     None if high is None else 100 * high, not row["fits"],
                     f"{100 * value:.1f} % (n = {n}); change {accuracy_text(row)}")

    acc_lines = [Line(name, colors[name], tuple(acc_point(r) for r in rs))
                 for name, rs in lines.items()]
    dense = next((r["accuracy"]["dense_float"] for r in rows
                  if r["accuracy"]["dense_float"] is not None), None)
    core_lines = [Line(name, colors[name], tuple(
        Point(x_value(r, x), r["cores_used"], hollow=not r["fits"],
              hover=f"{sweep_cores(r)} cores; deciding limit {r['deciding_limit'] or 'n/a'}")
        for r in rs)) for name, rs in lines.items()]
    limits = {r["cores_available"] for r in rows if r["cores_available"]}
    unit, scale = _energy_unit([r["energy_j"] or 0.0 for r in rows])
    energy_lines = [Line(name, colors[name], tuple(
        Point(x_value(r, x), None if r["energy_j"] is None else r["energy_j"] / scale,
              hollow=not r["fits"], hover=energy_cell(r)) for r in rs))
        for name, rs in lines.items()]
    grades = sorted({r["energy_evidence"] or "unknown" for r in rows})
    parts = ['<h2 id="sweep">Sweep: accuracy, cores and energy against compression</h2>',
             f'<p class="muted">{len(rows)} points from one calibration. Hollow circle: the '
             "point does not fit. The report's other sections describe the point marked "
             '"this run" (its exports too).</p>', '<div class="grid">',
             figure(line_chart("Accuracy (integer core where measured, else float)", acc_lines,
                               x_label=x_label, y_label="accuracy (%)", y_low=0.0,
                               y_high=100.0, limit=None if dense is None else 100 * dense,
                               limit_label="dense"),
                    "Full axis; whiskers: 95 % interval of each accuracy."),
             figure(line_chart("Cores used", core_lines, x_label=x_label, y_label="cores",
                               limit=limits.pop() if len(limits) == 1 else None,
                               limit_label="cores the chip has"),
                    "Dashed line: the chip's core count (when one chip is swept)."),
             figure(line_chart("Energy per sample, compressed network", energy_lines,
                               x_label=x_label, y_label=f"{unit} per sample"),
                    f"Estimates from each target file's costs (evidence: {', '.join(grades)})."),
             "</div>",
             table(TABLE_HEADER, table_rows(rows), numeric=(2, 4, 5, 6, 7), wide=(8,))]
    return "".join(parts)


def cores_text(t: TargetReport) -> str:
    from sbc_deploy.report.vocabulary import cores_phrase

    return cores_phrase(t.cores_used, t.cores_available)


def _strip(t: TargetReport) -> str:
    """One target's summary strip: the figures to decide from (report/summary.py)."""
    head = f'<h2 class="target">{html_text(t.target)}</h2>'
    if t.refused:  # one line: nothing was compressed for it
        return (f'<p class="refused"><b>{html_text(t.target)}</b>: refused before '
                f'compression: {html_text(t.refused)}</p>')
    items = []
    for item in strip(t):
        cls = "" if item.good is None else (" good" if item.good else " bad")
        items.append(f'<div class="item{cls}"><div class="k">{html_text(item.label)}</div>'
                     f'<div class="v">{html_text(item.value)}</div>'
                     + (f'<div class="d">{html_text(item.detail)}</div>' if item.detail
                        else "") + "</div>")
    return head + '<div class="strip">' + "".join(items) + "</div>"


def _findings(items: Any) -> str:
    """The quality guards' findings (accuracy drop, silent layers ...), errors first."""
    if not items:
        return ""
    order = sorted(items, key=lambda f: f.severity != "error")
    rows = [[f'<span class="{"bad" if f.severity == "error" else "warn"}">'
             f"{html_text(f.severity)}</span>", html_text(f.code),
             html_text(f.where or "-"), html_text(f.message), html_text(f.hint or "")]
            for f in order]
    return "<h2>Quality guards</h2>" + table(
        ["severity", "guard", "where", "finding", "likely cause"], rows, raw=range(5),
        wide=(3, 4))


def to_html(report: Report) -> str:
    """The whole page (see the module docstring)."""
    title = f"sbc-deploy report: {report.model}"
    parts = [(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
              f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
              f"<title>{html_text(title)}</title><style>{_STYLE}</style></head><body><main>"),
             f"<h1>{html_text(title)}</h1>",
             (f'<p class="muted">dt = {report.dt:g} s, reset = '
              f'{html_text(str(report.reset))}. Layers are named <i>synapse -&gt; neuron</i> '
              "everywhere. Energy figures are estimates from each target file's costs (grade "
              "on each number). Hover a bar for its exact values.</p>")]
    for t in report.targets:
        parts.append(_strip(t))
    parts.append(_ranking(report))
    notes = borrowed_notes(report.targets) + [
        f"{t.target}: {remark}" for t in report.targets if (remark := ann_remark(t))]
    if notes:
        parts.append('<p class="muted">' + "<br>".join(html_text(n) for n in notes) + "</p>")
    parts.append(_findings(getattr(report, "findings", ())))
    parts.append(_sweep_section(report))
    if len(report.targets) > 1:
        parts.append(_compare(report))
    for t in report.targets:
        parts.append(f"<h2>{html_text(t.target)}: {html_text(t.description)}</h2>")
        parts.append(f'<p class="muted">method {html_text(t.method)}</p>')
        if t.refused:  # nothing was compressed: the reason and the rules it breaks
            parts.append(f'<p class="refused">Refused before compression: '
                         f'{html_text(t.refused)}</p>')
            parts.append(_violations(t))
            continue
        parts.append(_fit_section(t))
        parts.append(_split_section(t))
        parts.append(_violations(t))
        parts.append(_cost_section(t, single=len(report.targets) == 1))
        parts.append(_save_section(t))
        if t.ann_equivalent:
            parts.append(f'<p class="muted">{html_text(ann_line(t.ann_equivalent))}</p>')
        if t.exports:
            parts.append("<h3>Files</h3><ul>" + "".join(
                f"<li>{html_text(k)}: <code>{html_text(v)}</code></li>"
                for k, v in t.exports.items()) + "</ul>")
        if t.notes:
            parts.append("<h3>Notes</h3><ul>" + "".join(
                f"<li>{html_text(n)}</li>" for n in t.notes) + "</ul>")
    if report.timings_s:
        parts.append("<h2>Timings</h2>")
        parts.append(table(["stage", "seconds"],
                           [[k, f"{v:.2f}"] for k, v in report.timings_s.items()],
                           numeric=(1,)))
    parts.append("</main></body></html>")
    return "\n".join(p for p in parts if p)
