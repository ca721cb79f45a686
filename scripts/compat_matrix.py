#!/usr/bin/env python3
"""Render README's NIR compatibility table from the framework interop tests' results.

    python -m pytest tests/test_framework_interop.py   # writes build/compat-results/*.json
    python scripts/compat_matrix.py [RESULTS ...] [--readme README.md] [--check]

Every test module that runs frameworks (tests/test_framework_interop.py, and any other that
records through tests/frameworks/harness.py's ``Results``) writes one JSON file into
``build/compat-results/``; without arguments all of them are read, in name order, so a new test
file's rows join the table without a change here. Each row shows the case, the firing rates of
the network's spiking layers, its output spikes and how many output entries (step x sample x
neuron) differ; a row that is not exact says why (the framework's source line, an upstream
issue, or the reason no IR can match it).

The table replaces what stands between ``<!-- compat-matrix:start -->`` and
``<!-- compat-matrix:end -->`` in the README (written atomically). ``--check`` writes nothing and
exits 1 when the README's table differs from the one the results give. Only the standard
library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "build" / "compat-results"
START, END = "<!-- compat-matrix:start -->", "<!-- compat-matrix:end -->"
ORDER = ("snntorch", "norse", "sinabs", "rockpool", "spyx")
PACKAGES = {"snntorch": "snntorch", "norse": "norse", "sinabs": "sinabs", "rockpool": "rockpool",
            "spyx": "spyx", "spikingjelly": "spikingjelly"}


def load(paths: list[Path]) -> dict[str, Any]:
    """The results of several JSON files as one ``{"versions", "results"}``."""
    merged: dict[str, Any] = {"versions": {}, "results": []}
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        for framework, versions in data.get("versions", {}).items():
            merged["versions"].setdefault(framework, {}).update(versions)
        merged["results"].extend(data["results"])
    return merged


def _versions(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    versions: dict[str, dict[str, str]] = {k: dict(v) for k, v in data.get("versions", {}).items()}
    for entry in data["results"]:
        for package, version in (entry.get("versions") or {}).items():
            versions.setdefault(entry["framework"], {}).setdefault(package, version)
    return versions


def _framework_label(name: str, versions: dict[str, str]) -> str:
    main = versions.get(PACKAGES.get(name, name))
    extra = [f"{p} {v}" for p, v in sorted(versions.items()) if p in ("nir", "torch", "jax")]
    head = f"{name} {main}" if main else name
    return f"{head} ({', '.join(extra)})" if extra else head


def _settings(entry: dict[str, Any]) -> str:
    settings = {k: v for k, v in (entry.get("settings") or {}).items() if k != "dt"}
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _case(entry: dict[str, Any]) -> str:
    if entry["direction"] == "consumer":
        return f"{entry['case']} ({entry['neuron']})"
    text = f"{entry['case']} ({entry['network']}, {entry['neuron']})"
    settings = _settings(entry)
    return f"{text}: {settings}" if settings else text


def _direction(entry: dict[str, Any]) -> str:
    if entry["direction"] == "consumer":
        return f"`--nir-for {entry['framework']}` -> its import"
    how = entry.get("import") or {}
    flags = f"--from {how.get('source') or entry['framework']}"
    if how.get("reset"):
        flags += f" --reset {how['reset']}"
    return f"{entry.get('writer') or 'its export'} -> `{flags}`"


def _activity(entry: dict[str, Any]) -> str:
    rates = entry.get("rates") or []
    return " / ".join(f"{100 * r:.0f} %" if r >= 0.1 else f"{100 * r:.1f} %"
                      for r in rates) if rates else "-"


def _count(entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    return "-" if value is None else f"{value:,}"


def _result(entry: dict[str, Any]) -> str:
    status, reason = entry["status"], entry.get("expected_failure")
    if status == "exact":
        return "exact"
    if status == "refused":
        return f"refused on export: {reason or entry.get('error', '')}"
    if status == "differs":
        return f"differs: {reason}" if reason else "differs"
    return f"fails: {reason or entry.get('error', '')}"


def render(data: dict[str, Any]) -> str:
    """The Markdown table (with a summary line) of the merged results."""
    versions = _versions(data)
    rows = sorted(data["results"], key=lambda e: (
        ORDER.index(e["framework"]) if e["framework"] in ORDER else len(ORDER), e["framework"],
        e["direction"] != "producer"))
    lines = ["| framework | direction | case | firing per layer | output spikes | "
             "entries differing | result |", "|---|---|---|---|---|---|---|"]
    for entry in rows:
        label = _framework_label(entry["framework"], versions.get(entry["framework"], {}))
        differing = (f"{entry['differing']:,} of {entry['entries']:,}"
                     if entry.get("entries") is not None else "-")
        cells = [label, _direction(entry), _case(entry), _activity(entry),
                 _count(entry, "spikes_reference"), differing, _result(entry)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    statuses = [e["status"] for e in data["results"]]
    summary = (f"{statuses.count('exact')} of {len(statuses)} cases spike-for-spike exact, "
               f"{statuses.count('refused')} refused on export with the reason, "
               f"{len(statuses) - statuses.count('exact') - statuses.count('refused')} "
               "differ; generated by `scripts/compat_matrix.py` from the framework interop "
               "tests (`tests/test_framework_interop.py`).")
    return "\n".join([summary, "", *lines])


def replace_between_markers(text: str, table: str) -> str:
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise SystemExit(f"README has no {START} ... {END} section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="*",
                        help=f"results JSON files (default: every {RESULTS_DIR}/*.json)")
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    parser.add_argument("--check", action="store_true", help="compare only, write nothing")
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.results] or sorted(RESULTS_DIR.glob("*.json"))
    missing = [p for p in paths if not p.exists()]
    if not paths or missing:
        print(f"compat_matrix: no results ({', '.join(map(str, missing)) or RESULTS_DIR}); run "
              "`python -m pytest tests/test_framework_interop.py` first", file=sys.stderr)
        return 2
    table = render(load(paths))
    readme = Path(args.readme)
    old = readme.read_text(encoding="utf-8")
    new = replace_between_markers(old, table)
    if args.check:
        if new != old:
            print(f"compat_matrix: {readme} is out of date with the results", file=sys.stderr)
            return 1
        return 0
    tmp = readme.with_name(readme.name + ".tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, readme)
    print(f"compat_matrix: wrote {len(table.splitlines()) - 4} rows into {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
