#!/usr/bin/env bash
# Open a report.html in Debian's headless Chromium and save a screenshot, to check by eye that
# the page and its plots render (tests/test_report.py does the same automatically when chromium
# is installed).
#
#   apt-get install -y chromium          # once, as root (Debian's package)
#   bash scripts/screenshot_report.sh sbc-out/report.html sbc-out/report.png
set -euo pipefail
page=${1:?usage: screenshot_report.sh REPORT.html [OUT.png]}
shot=${2:-${page%.html}.png}
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "screenshot_report.sh: chromium not found; install Debian's package: apt-get install chromium" >&2
  exit 2
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# The flags keep Chromium off the network (this machine has none) and out of the user's profile.
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size=1200,3000 \
  --screenshot="$(realpath -m "$shot")" "file://$(realpath "$page")" 2>/dev/null
echo "wrote $shot"
