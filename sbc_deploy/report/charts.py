"""Inline SVG charts for the HTML report: horizontal bars that scale from 2 to 200 rows.

Every chart is one ``<svg>`` string with no script and no external reference. Rows are
horizontal (labels never collide, however many rows), a label that does not fit its column is
shortened with an ellipsis and kept whole in the row's ``<title>`` (the hover text, with the
exact values). Callers aggregate before drawing when there are many rows (:func:`aggregate`).

Geometry is computed here, in character widths of the page font at 12 px (``CHAR_W``), so the
layout does not depend on a browser; the screenshot tests measure it in Chromium.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from sbc_deploy.untrusted import html_text

CHAR_W = 7.0        # px per character of 12 px sans-serif, an upper bound for ASCII labels
ROW_H = 20          # px per row (one bar, or a group of bars)
COMPACT_ROW_H = 15  # px per one-bar row when a chart has more than COMPACT_FROM rows
COMPACT_FROM = 40
WIDTH = 620         # px of the whole chart
LABEL_W = 200       # px of the label column
VALUE_W = 112       # px right of the bars for the value text
MAX_LABEL_W = 300   # px: longer labels are shortened (whole in the hover text)
BAR_H = 12          # px per bar when a row holds several
COLORS = {"dense": "#8da0cb", "compressed": "#1b9e77", "integer": "#d95f02",
          "neurons": "#7570b3", "memory": "#e7298a", "limit": "#c00", "neutral": "#4c72b0",
          "warn": "#d95f02"}


@dataclass(frozen=True)
class Bar:
    """One bar of a row: ``value`` in the chart's unit, drawn in ``color``."""

    value: float | None
    color: str
    series: str
    text: str = ""  # the value as shown right of the bar (default: formatted value)


@dataclass(frozen=True)
class Row:
    label: str
    bars: tuple[Bar, ...]
    hover: str = ""  # extra hover text for the row
    marks: tuple[float, ...] = field(default_factory=tuple)  # per-row limits (e.g. fan-in)


def _fit(text: str, width: float) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` px."""
    chars = max(3, int(width // CHAR_W))
    return text if len(text) <= chars else text[:chars - 1] + "\u2026"


def _fmt(value: float) -> str:
    """A short number: 0.0705, 12.5, 2.5 k, 600 k, 1.2 M, 3e-05."""
    if value == 0:
        return "0"
    if abs(value) >= 1e9:
        return f"{value:.3g}"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.3g} M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.3g} k"
    if abs(value) < 1e-3:
        return f"{value:.2g}"
    return f"{value:.3g}"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low
    if span <= 0:
        return [low]
    step = 10 ** math.floor(math.log10(span / count))
    for factor in (1, 2, 2.5, 5, 10):
        if span / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(low / step) * step
    ticks, value = [], first
    while value <= high + 1e-9 * span:
        ticks.append(round(value, 10))
        value += step
    return ticks


# Long: one SVG drawn top to bottom (frame, legend, grid, rows, limit line, note); each
# part reuses the same geometry (x(), row height), and the list of appends is the picture.
def hbar_chart(title: str, rows: Sequence[Row], *, unit: str = "", low: float = 0.0,
               high: float | None = None, limit: float | None = None,
               limit_label: str = "limit", legend: Sequence[tuple[str, str]] = (),
               note: str = "", width: int = WIDTH, label_w: int | None = None) -> str:
    """Horizontal bars, one row per label, several bars per row stacked vertically in it.

    Args:
        title: the question the chart answers, drawn above it.
        rows: labels and bars; ``None`` values are drawn as "n/a".
        unit: axis unit; ``low``/``high``: the axis range (``high`` defaults to the largest
            value, with room). A ``low`` above 0 zooms the axis: the chart says so.
        limit: a vertical line across every row (e.g. 100 % of a core).
        legend: ``(series, color)`` pairs.
    """
    values = [b.value for r in rows for b in r.bars if b.value is not None]
    top = high if high is not None else max([*values, limit or 0.0, low + 1e-12]) * 1.05
    if top <= low:
        top = low + 1.0
    per_row = max((len(r.bars) for r in rows), default=1)
    row_h = ROW_H if per_row == 1 else BAR_H * per_row + 6
    if per_row == 1 and len(rows) > COMPACT_FROM:
        row_h = COMPACT_ROW_H
    head, axis_h = 22 + (16 if legend else 0), 28
    height = head + row_h * max(len(rows), 1) + axis_h + (16 if note else 0)
    if label_w is None:  # as wide as the longest label, within [LABEL_W / 2, MAX_LABEL_W]
        longest = max((len(r.label) for r in rows), default=0)
        label_w = int(min(max(longest * CHAR_W + 12, LABEL_W / 2), MAX_LABEL_W))
    full, x0, x1 = width, label_w, width - VALUE_W

    def x(value: float) -> float:
        return x0 + (min(max(value, low), top) - low) / (top - low) * (x1 - x0)

    out = [(f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{full}" '
            f'height="{height}" viewBox="0 0 {full} {height}" role="img" '
            f'aria-label="{html_text(title)}">'),
           f'<text class="title" x="0" y="14">{html_text(_fit(title, full))}</text>']
    if legend:
        lx = 0.0
        for series, color in legend:
            out.append(f'<rect class="swatch" x="{lx:.1f}" y="24" width="10" height="10" '
                       f'fill="{color}"/>'
                       f'<text class="legend" x="{lx + 14:.1f}" y="33">'
                       f'{html_text(series)}</text>')
            lx += 14 + CHAR_W * len(series) + 16
    for tick in _ticks(low, top):
        tx = x(tick)
        out.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{head}" '
                   f'y2="{head + row_h * len(rows)}" class="grid"/>'
                   f'<text class="tick" x="{tx:.1f}" y="{head + row_h * len(rows) + 14}" '
                   f'text-anchor="middle">{_fmt(tick)}</text>')
    axis_text = unit + (f" (axis starts at {_fmt(low)})" if low > 0 else "")
    out.append(f'<text class="tick" x="{x1:.1f}" y="{head + row_h * len(rows) + 26}" '
               f'text-anchor="end">{html_text(axis_text)}</text>')
    bar_h = (row_h - 6) / per_row
    for i, row in enumerate(rows):
        y = head + i * row_h
        shown = [b.text or ("n/a" if b.value is None else _fmt(b.value)) for b in row.bars]
        hover = [row.label] + [f"{b.series}: {text}" for b, text in zip(row.bars, shown)] + (
            [row.hover] if row.hover else [])
        tip = "\n".join(html_text(line) for line in hover)  # one line per part
        out.append(f'<g class="row"><title>{tip}</title>')
        out.append(f'<rect x="0" y="{y}" width="{full}" height="{row_h}" class="hit"/>')
        size = "label" if row_h >= ROW_H else "label small"
        out.append(f'<text class="{size}" x="{x0 - 6}" y="{y + row_h / 2 + 4:.1f}" '
                   f'text-anchor="end">{html_text(_fit(row.label, x0 - 8))}</text>')
        for j, bar in enumerate(row.bars):
            by = y + 3 + j * bar_h
            text = "n/a" if bar.value is None else (bar.text or _fmt(bar.value))
            if bar.value is not None:
                length = max(x(bar.value) - x0, 0.0)
                out.append(f'<rect class="bar" x="{x0}" y="{by:.1f}" width="{length:.1f}" '
                           f'height="{max(bar_h - 1, 1):.1f}" fill="{bar.color}"/>')
            size = "value" if per_row == 1 and row_h >= ROW_H else "value small"
            out.append(f'<text class="{size}" x="{x1 + 4}" y="{by + bar_h / 2 + 3.5:.1f}">'
                       f'{html_text(_fit(text, VALUE_W - 4))}</text>')
        for mark in row.marks:
            mx = x(mark)
            out.append(f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{y + 1}" y2="{y + row_h - 1}" '
                       f'class="limit"/>')
        out.append("</g>")
    if limit is not None:
        lx = x(limit)
        out.append(f'<line x1="{lx:.1f}" x2="{lx:.1f}" y1="{head - 4}" '
                   f'y2="{head + row_h * len(rows)}" class="limit"><title>'
                   f'{html_text(limit_label)}: {_fmt(limit)}</title></line>')
    if note:
        out.append(f'<text class="tick" x="0" y="{height - 4}">'
                   f'{html_text(_fit(note, full))}</text>')
    out.append("</svg>")
    return "".join(out)


def aggregate(rows: Sequence[Row], keep: int, key: int = 0) -> list[Row]:
    """At most ``keep`` rows: the largest by bar ``key``, the rest summed into one row.

    The summed row says how many rows it holds; its bars are sums (use for additive
    quantities such as SynOps or energy).
    """
    if len(rows) <= keep:
        return list(rows)
    order = sorted(range(len(rows)), key=lambda i: -(rows[i].bars[key].value or 0.0))
    kept = sorted(order[:keep - 1])
    rest = [rows[i] for i in order[keep - 1:]]
    bars = []
    for j, bar in enumerate(rest[0].bars):
        total = sum(r.bars[j].value or 0.0 for r in rest)
        bars.append(Bar(total, bar.color, bar.series))
    summed = Row(f"{len(rest)} other layers (sum)", tuple(bars),
                 hover=", ".join(r.label for r in rest[:20]) + (" ..." if len(rest) > 20 else ""))
    return [rows[i] for i in kept] + [summed]


#: line colours, one per line of a line chart (colour-blind safe, after ColorBrewer Dark2)
LINE_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
               "#666666")


@dataclass(frozen=True)
class Point:
    """One point of a line: ``y`` (``None``: not measured, left out), an optional interval
    ``[low, high]`` drawn as a whisker, and whether it is marked (a hollow circle: e.g. a point
    that does not fit)."""

    x: float
    y: float | None
    low: float | None = None
    high: float | None = None
    hollow: bool = False
    hover: str = ""


@dataclass(frozen=True)
class Line:
    name: str
    color: str
    points: tuple[Point, ...]


# Long: one SVG drawn top to bottom (frame, legend, axes, grid, lines with whiskers,
# limit, note); each part reuses the same x()/y() geometry, and the appends are the picture.
def line_chart(title: str, lines: Sequence[Line], *, x_label: str, y_label: str,
               y_low: float = 0.0, y_high: float | None = None,
               limit: float | None = None, limit_label: str = "limit", note: str = "",
               width: int = WIDTH, height: int = 230) -> str:
    """Lines of points over a numeric x axis: one line per series, a whisker per interval,
    a dashed horizontal ``limit`` (e.g. the chip's cores) drawn at its true value (the axis
    reaches past it), a legend above. The x ticks are the points' own x values."""
    xs = sorted({p.x for line in lines for p in line.points})
    ys = [v for line in lines for p in line.points for v in (p.y, p.high) if v is not None]
    # a limit far above the data (128 cores against 6 used) would flatten every line: it is
    # then written above the plot with its value instead of drawn
    off_axis = (limit is not None and y_high is None and ys and limit > 3 * max(ys))
    drawn = None if off_axis else limit
    top = y_high if y_high is not None else max([*ys, drawn or 0.0, y_low + 1e-12]) * 1.08
    if top <= y_low:
        top = y_low + 1.0
    x_left, x_right = (xs[0], xs[-1]) if xs else (0.0, 1.0)
    if x_right == x_left:
        x_left, x_right = x_left - 0.5, x_right + 0.5
    rows = max(1, math.ceil(sum(14 + CHAR_W * len(line.name) + 16 for line in lines) / width))
    head = 22 + 16 * rows + 24  # title, legend rows, the y axis' unit above the top tick
    left, right, bottom = 56, width - 16, height - 30 - (14 if note else 0)
    pad = 0.06 * (right - left)

    def px(value: float) -> float:
        return left + pad + (value - x_left) / (x_right - x_left) * (right - left - 2 * pad)

    def py(value: float) -> float:
        value = min(max(value, y_low), top)
        return bottom - (value - y_low) / (top - y_low) * (bottom - head)

    out = [(f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{html_text(title)}">'),
           f'<text class="title" x="0" y="14">{html_text(_fit(title, width))}</text>']
    lx, ly = 0.0, 34.0
    for line in lines:
        span = 14 + CHAR_W * len(line.name) + 16
        if lx and lx + span > width:
            lx, ly = 0.0, ly + 16
        out.append(f'<rect class="swatch" x="{lx:.1f}" y="{ly - 9:.1f}" width="10" '
                   f'height="10" fill="{line.color}"/><text class="legend label" '
                   f'x="{lx + 14:.1f}" '
                   f'y="{ly:.1f}">{html_text(line.name)}</text>')
        lx += span
    for tick in _ticks(y_low, top):
        ty = py(tick)
        out.append(f'<line x1="{left}" x2="{right}" y1="{ty:.1f}" y2="{ty:.1f}" class="grid"/>'
                   f'<text class="tick" x="{left - 4}" y="{ty + 4:.1f}" text-anchor="end">'
                   f'{_fmt(tick)}</text>')
    for value in xs:
        tx = px(value)
        out.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{head}" y2="{bottom}" '
                   f'class="grid"/><text class="tick" x="{tx:.1f}" y="{bottom + 14}" '
                   f'text-anchor="middle">{_fmt(value)}</text>')
    out.append(f'<text class="tick" x="{right}" y="{bottom + 27}" text-anchor="end">'
               f'{html_text(x_label)}</text>'
               f'<text class="tick" x="0" y="{head - 12}">{html_text(y_label)}</text>')
    if off_axis:
        out.append(f'<text class="tick" x="{right}" y="{head - 12}" text-anchor="end">'
                   f'{html_text(limit_label)}: {_fmt(limit)} (above the axis)</text>')
    elif limit is not None:
        ly_ = py(limit)
        out.append(f'<line x1="{left}" x2="{right}" y1="{ly_:.1f}" y2="{ly_:.1f}" '
                   f'class="limit"><title>{html_text(limit_label)}: {_fmt(limit)}</title>'
                   f'</line><text class="tick" x="{right}" y="{ly_ - 3:.1f}" text-anchor="end">'
                   f'{html_text(limit_label)}</text>')
    for line in lines:
        shown = [p for p in line.points if p.y is not None]
        if len(shown) > 1:
            path = " ".join(f"{px(p.x):.1f},{py(p.y):.1f}" for p in shown)  # type: ignore
            out.append(f'<polyline points="{path}" fill="none" stroke="{line.color}" '
                       'stroke-width="2"/>')
        for p in shown:
            cx, cy = px(p.x), py(p.y)  # type: ignore[arg-type]
            out.append(f'<g class="point"><title>{html_text(line.name)}: '
                       f'{html_text(p.hover or _fmt(p.y))}</title>')  # type: ignore[arg-type]
            if p.low is not None and p.high is not None:
                out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{py(p.low):.1f}" '
                           f'y2="{py(p.high):.1f}" stroke="{line.color}" stroke-width="1.2"/>')
            fill = "#fff" if p.hollow else line.color
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{fill}" '
                       f'stroke="{line.color}" stroke-width="2"/></g>')
    if note:
        out.append(f'<text class="tick" x="0" y="{height - 4}">'
                   f'{html_text(_fit(note, width))}</text>')
    out.append("</svg>")
    return "".join(out)
