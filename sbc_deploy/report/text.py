"""Short plain-text views of a report for the terminal: the verdict of ``sbc-deploy check``.

One line per target (does it fit, how many cores, the worst fan-in against the limit), then one
aligned table of every violation of every target. The full report is ``to_markdown``.
"""

from __future__ import annotations

from typing import Sequence

from sbc_deploy.report.model import Report, TargetReport

__all__ = ["check_verdict", "text_table", "verdict_line"]


def text_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell, a dashed rule under the header."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


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
        facts.append(f"{t.cores_used}" + (f" / {t.cores_available}" if t.cores_available else "")
                     + " cores")
    if t.layers:
        worst = max(layer.fan_in_max for layer in t.layers)
        limit = t.limits.get("max_fan_in")
        facts.append(f"fan-in max {worst}" + (f" / {limit}" if limit else ""))
    return f"{t.target}: {head}" + (f" ({', '.join(facts)})" if facts else "")


def check_verdict(report: Report) -> str:
    """What ``sbc-deploy check`` prints: verdict lines, then the violations table."""
    lines = [verdict_line(t) for t in report.targets]
    from sbc_deploy.report.html import labels

    rows = [[t.target, labels(t).get(v.layer or "", v.layer or "-"), v.rule, v.limit, v.actual,
             v.severity, v.message] for t in report.targets for v in t.violations]
    if rows:
        lines += ["", text_table(["target", "layer", "rule", "limit", "actual", "severity",
                                  "message"], rows)]
    lines += ["", "full report: add --report (or -o OUTDIR for report.md/.html)"]
    return "\n".join(lines)
