"""Short plain-text views of a report for the terminal: the verdict of ``sbc-deploy check``.

One line per target (does it fit, how many cores, the worst fan-in against the limit), then one
aligned table of every violation of every target. The full report is ``to_markdown``.
"""

from __future__ import annotations

from typing import Sequence

from sbc_deploy.report.model import Report
from sbc_deploy.report.vocabulary import layer_label, verdict_line
from sbc_deploy.untrusted import shown

__all__ = ["check_verdict", "text_table"]


def text_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell, a dashed rule under the header."""
    cells = [[shown(c) for c in header], *[[shown(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def check_verdict(report: Report, written: bool = False) -> str:
    """What ``sbc-deploy check`` prints: verdict lines, then the violations table, then where
    the full report is (``written``: report.md/.html were written with ``-o``)."""
    lines = [verdict_line(t) for t in report.targets]
    rows = [[t.target, layer_label(t, v.layer), v.rule, v.limit, v.actual,
             v.severity, v.message] for t in report.targets for v in t.violations]
    if rows:
        lines += ["", text_table(["target", "layer", "rule", "limit", "actual", "severity",
                                  "message"], rows)]
    lines += ["", "full report: report.md and report.html in the output folder (listed below)"
              if written else "full report: add --report (or -o OUTDIR for report.md/.html)"]
    return "\n".join(lines)
