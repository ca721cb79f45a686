#!/usr/bin/env bash
# Screenshots of report.html in Debian's headless Chromium, through scripts/report_layout.py
# (the same code tests/test_screenshots.py uses to check the layout).
#
#   apt-get install -y chromium                    # once, as root (Debian's package)
#   bash scripts/screenshot_report.sh sbc-out/report.html [OUT.png] [WIDTH]
#   bash scripts/screenshot_report.sh --docs       # rebuild docs/report-*-{1400,800}.png
#
# --docs builds the four reports from the bundled networks (32 calibration and 32 evaluation
# samples: a quick run, not the accuracy of record; the sweep with magnitude pruning), checks
# their layout at both widths and writes the screenshots into docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  echo "screenshot_report.sh: chromium not found; install Debian's package: apt-get install chromium" >&2
  exit 2
fi
if [ "${1:-}" = "--docs" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$python" scripts/report_layout.py build "$work"
  mkdir -p docs
  for case in mlp cnn compare sweep; do
    for width in 1400 800; do
      "$python" scripts/report_layout.py check "$work/$case/report.html" "$width"
      "$python" scripts/report_layout.py shoot "$work/$case/report.html" \
        "docs/report-$case-$width.png" "$width"
    done
  done
  exit 0
fi
page=${1:?usage: screenshot_report.sh REPORT.html [OUT.png] [WIDTH] | --docs}
shot=${2:-${page%.html}.png}
"$python" scripts/report_layout.py shoot "$page" "$shot" "${3:-1400}"
