"""Render report.html pages in headless Chromium: full-page screenshots and a layout check.

The layout check loads a copy of the page with a small script appended (the report itself has
none) that measures, in the browser, the box of every text element and every bar of every SVG
chart (``getBoundingClientRect``), and writes the measurements into the DOM, which Chromium's
``--dump-dom`` prints. :func:`layout_problems` then looks for:

- an empty chart (no bar with a visible width);
- two text labels of one chart that overlap (tick labels, row labels, values, legend);
- a text label that sticks out of its chart;
- a page wider than the window (a horizontal scroll bar for the whole page).

Used by tests/test_screenshots.py and scripts/screenshot_report.sh (docs/ screenshots):

    python scripts/report_layout.py build OUTDIR            # MLP, CNN, 4-target CNN, sweep
    python scripts/report_layout.py shoot REPORT.html OUT.png WIDTH
    python scripts/report_layout.py check REPORT.html WIDTH
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from html import unescape
from pathlib import Path
from typing import Any

WIDTHS = (1400, 800)
CASES = {  # name -> (bundled model, targets, other DeployRequest fields)
    "mlp": ("nmnist_mlp", ("loihi2",), {}),
    "cnn": ("nmnist_cnn", ("loihi2",), {}),
    "compare": ("nmnist_cnn", ("loihi2", "loihi1", "speck", "xylo"), {}),
    # a sweep's charts and table (magnitude pruning keeps the four points quick)
    "sweep": ("nmnist_mlp", ("loihi2",), {"method": "magnitude", "sweep_sparsity": (0.5, 0.9),
                                          "sweep_bits": (8, 4), "max_drop": None}),
}

_MEASURE = """
<script>
(function () {
  function box(e) { var r = e.getBoundingClientRect();
    return [r.left, r.top + window.scrollY, r.right, r.bottom + window.scrollY]; }
  var out = {width: window.innerWidth, height: document.documentElement.scrollHeight,
             scrollWidth: document.documentElement.scrollWidth, charts: []};
  document.querySelectorAll('svg.chart').forEach(function (svg) {
    out.charts.push({
      title: svg.getAttribute('aria-label'), box: box(svg),
      texts: Array.prototype.map.call(svg.querySelectorAll('text'), function (t) {
        return {text: t.textContent, cls: t.getAttribute('class'), box: box(t)}; }),
      bars: Array.prototype.map.call(svg.querySelectorAll('rect.bar, circle'), function (r) {
        return box(r); })
    });
  });
  out.tables = Array.prototype.map.call(document.querySelectorAll('.tablewrap'),
    function (w) { var h = w.previousElementSibling;
      return {id: h ? h.id : null, scrollWidth: w.scrollWidth, clientWidth: w.clientWidth}; });
  var pre = document.createElement('pre');
  pre.id = 'layout-measure';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def browser() -> str | None:
    """Debian's ``chromium`` (or ``chromium-browser``) on PATH, else ``None``."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args: list[str], timeout: float = 120) -> str:
    exe = browser()
    if exe is None:
        raise RuntimeError("chromium not found (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        # kept off the network and out of any user profile
        command = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   "--disable-quic", "--no-first-run", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                   *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def measure(page: Path, width: int) -> dict[str, Any]:
    """Boxes of every chart's texts and bars, as laid out in a ``width`` px wide window."""
    return _probe(page, _MEASURE, "layout-measure", width, 900)


def _probe(page: Path, script: str, element: str, width: int, height: int) -> Any:
    """Lay ``page`` out with ``script`` appended to its body in a ``width`` x ``height``
    window and return the JSON that the script left in ``<pre id=element>``."""
    html = Path(page).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        probe.write_text(html.replace("</body>", script + "</body>"), encoding="utf-8")
        dom = _run([f"--window-size={width},{height}", "--dump-dom", probe.as_uri()])
    found = re.search(f'<pre id="{element}">(.*?)</pre>', dom, re.S)
    if found is None:
        raise RuntimeError(f"the probing script did not run (no #{element} in the DOM)")
    return json.loads(unescape(found.group(1)))


_FIRST_SCREEN = """
<script>
(function () {
  var walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT), out = [];
  while (walker.nextNode()) {
    var node = walker.currentNode, range = document.createRange();
    range.selectNodeContents(node);
    var r = range.getBoundingClientRect();
    if (r.height > 0 && r.bottom > 0 && r.top < window.innerHeight && node.textContent.trim())
      out.push(node.textContent.trim());
  }
  var pre = document.createElement('pre');
  pre.id = 'first-screen';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def first_screen(page: Path, width: int, height: int = 900) -> list[str]:
    """The texts Chromium lays out (at least partly) inside the first ``width`` x ``height``
    screen of ``page``, in document order: what a reader sees before scrolling."""
    return _probe(page, _FIRST_SCREEN, "first-screen", width, height)


def scrolls_sideways(measured: dict[str, Any], heading: str) -> bool:
    """Whether the table under the heading with id ``heading`` is wider than its box (it
    scrolls sideways inside it); a :func:`measure` result."""
    tables = [t for t in measured.get("tables", ()) if t["id"] == heading]
    if not tables:
        raise RuntimeError(f"no table under a heading with id {heading!r}")
    return any(t["scrollWidth"] > t["clientWidth"] + 1 for t in tables)


def _overlap(a: list[float], b: list[float], slack: float = 0.5) -> float:
    """Area in px^2 where two boxes overlap (each shrunk by ``slack`` px on every side)."""
    w = min(a[2], b[2]) - max(a[0], b[0]) - 2 * slack
    h = min(a[3], b[3]) - max(a[1], b[1]) - 2 * slack
    return max(w, 0.0) * max(h, 0.0)


def layout_problems(measured: dict[str, Any]) -> list[str]:
    """Every layout defect found in a :func:`measure` result (empty list: none)."""
    problems = []
    if measured["scrollWidth"] > measured["width"] + 1:
        problems.append(f"page is {measured['scrollWidth']} px wide in a {measured['width']} px "
                        "window")
    if not measured["charts"]:
        problems.append("no chart on the page")
    for chart in measured["charts"]:
        name = chart["title"]
        if not any(b[2] - b[0] >= 0.5 for b in chart["bars"]):
            problems.append(f"{name}: empty chart (no visible bar)")
        texts = [t for t in chart["texts"] if t["text"].strip()]
        left, top, right, bottom = chart["box"]
        for t in texts:
            x0, y0, x1, y1 = t["box"]
            if x0 < left - 1 or x1 > right + 1 or y0 < top - 1 or y1 > bottom + 1:
                problems.append(f"{name}: text {t['text']!r} sticks out of the chart")
        for i, a in enumerate(texts):
            for b in texts[i + 1:]:
                if _overlap(a["box"], b["box"]) > 1.0:
                    problems.append(f"{name}: texts {a['text']!r} and {b['text']!r} overlap")
    return problems


def screenshot(page: Path, png: Path, width: int) -> Path:
    """A full-page PNG of ``page`` at ``width`` px (the height measured first)."""
    height = int(measure(page, width)["height"]) + 16
    _run([f"--window-size={width},{height}", f"--screenshot={Path(png).resolve()}",
          Path(page).resolve().as_uri()])
    try:  # a 256-colour palette: the page is flat colours, the file ~3x smaller
        from PIL import Image
    except ImportError:
        return png
    with Image.open(png) as image:
        small = image.convert("RGB").quantize(colors=256)
    small.save(png, optimize=True)
    return png


def build(out: Path, eval_limit: int = 32, calib_limit: int = 32) -> dict[str, Path]:
    """The screenshot reports (:data:`CASES`), from the bundled networks with small data
    (quick)."""
    from sbc_deploy import bundled
    from sbc_deploy.data import Dataset
    from sbc_deploy.pipeline import DeployRequest, deploy

    calib = bundled.load_bundled_data("calib")
    small = Dataset(calib.x[:calib_limit], None if calib.y is None else calib.y[:calib_limit],
                    calib.dt, f"{calib.source} (first {calib_limit})")
    pages = {}
    for name, (model, targets, extra) in CASES.items():
        result = deploy(DeployRequest(model=model, targets=targets, calib=small,
                                      eval_limit=eval_limit, out_dir=Path(out) / name, **extra))
        pages[name] = result.written["report.html"]
    return pages


def main(argv: list[str]) -> int:
    command, *rest = argv
    if command == "build":
        for name, page in build(Path(rest[0])).items():
            print(f"{name}: {page}")
    elif command == "shoot":
        print(screenshot(Path(rest[0]), Path(rest[1]), int(rest[2])))
    elif command == "check":
        problems = layout_problems(measure(Path(rest[0]), int(rest[1])))
        print("\n".join(problems) or "no layout problem found")
        return 1 if problems else 0
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
