"""report.html as a browser draws it: the bundled MLP, the bundled CNN and a 4-target comparison
at 1400 and 800 px, measured in headless Chromium (Debian's ``chromium``) for overlapping labels,
labels outside their chart, empty charts and pages wider than the window.

The layout code lives in scripts/report_layout.py (also used to make the docs/ screenshots).
Without chromium these tests skip, saying so; the committed screenshots in docs/ were made with
the same code (scripts/screenshot_report.sh).
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("report_layout",
                                               REPO / "scripts" / "report_layout.py")
layout = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(layout)  # type: ignore[union-attr]

needs_chromium = pytest.mark.skipif(layout.browser() is None,
                                    reason="chromium is not installed (Debian: apt-get install "
                                           "chromium); docs/ holds the screenshots it makes")

# charts each page must hold: per target cores, sparsity, sensitivity, SynOps, energy, rates
# (+ accuracy once), and the comparison's accuracy, cores and energy
EXPECTED_CHARTS = {"mlp": 7, "cnn": 7, "compare": 3 + 2 * 6,  # speck, xylo: refused, no charts
                   # magnitude pruning has no layer loss (no sensitivity chart); + accuracy,
                   # cores and energy against compression
                   "sweep": 6 + 3}


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    if layout.browser() is None:
        pytest.skip("chromium is not installed")
    return layout.build(tmp_path_factory.mktemp("reports"), eval_limit=16, calib_limit=16)


@needs_chromium
@pytest.mark.slow
@pytest.mark.parametrize("width", layout.WIDTHS)
@pytest.mark.parametrize("case", sorted(layout.CASES))
def test_report_lays_out_without_overlaps_or_empty_charts(pages, case, width, tmp_path):
    measured = layout.measure(pages[case], width)
    assert measured["width"] == width
    charts = measured["charts"]
    assert len(charts) == EXPECTED_CHARTS[case], [c["title"] for c in charts]
    # the measurement saw real text: every chart has its title, row labels and tick labels
    for chart in charts:
        # (a line chart's legend names its lines: class "legend label")
        assert sum(1 for t in chart["texts"] if "label" in (t["cls"] or "").split()) >= 1, \
            chart["title"]
        assert sum(1 for t in chart["texts"] if t["cls"] == "tick") >= 2, chart["title"]
    assert layout.layout_problems(measured) == []
    shot = layout.screenshot(pages[case], tmp_path / f"{case}-{width}.png", width)
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one


@needs_chromium
def test_the_layout_check_finds_overlaps_overflow_and_empty_charts(tmp_path):
    """The check is not vacuous: a page with each defect is caught."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><body style='margin:0'>"
        "<svg class='chart' aria-label='crowded' width='300' height='60'>"
        "<rect class='bar' x='0' y='0' width='50' height='10'/>"
        "<text x='10' y='30'>first label</text><text x='20' y='32'>second label</text>"
        "<text x='280' y='50'>sticks out on the right</text></svg>"
        "<svg class='chart' aria-label='empty' width='300' height='40'>"
        "<rect class='bar' x='0' y='0' width='0' height='10'/><text x='5' y='20'>a</text></svg>"
        "<div style='width:2000px'>wide</div></body></html>")
    problems = layout.layout_problems(layout.measure(page, 800))
    text = "\n".join(problems)
    assert "crowded: texts 'first label' and 'second label' overlap" in text
    assert "crowded: text 'sticks out on the right' sticks out of the chart" in text
    assert "empty: empty chart (no visible bar)" in text
    assert re.search(r"page is 20\d\d px wide in a 800 px window", text)
    assert len(problems) == 4


def test_the_screenshots_are_committed_and_linked_from_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for case in layout.CASES:
        for width in layout.WIDTHS:
            name = f"docs/report-{case}-{width}.png"
            assert (REPO / name).stat().st_size > 20_000, name
            assert name in readme, f"README does not link {name}"


def _many_layers_report(n: int):
    """A report with ``n`` layers, each on its own 2 cores, and two targets (synthetic numbers:
    the layout, not the values, is under test)."""
    from sbc_deploy.report.model import (Accuracy, BeforeAfter, CoreRow, EnergyTerm, LayerRow,
                                         Report, TargetReport, ViolationRow)

    layers = tuple(LayerRow(
        f"block{i}.conv", "Conv2d", (64, 64, 3, 3), (i % 10) / 10, 8, 100 + i, 1000 - i, 36864,
        "int_exp", 0.01 * (i % 7), (), neuron=f"block{i}.lif", synops_dense=1e5 * (1 + i % 5),
        synops_compressed=8e4 * (1 + i % 5), energy_dense_j=2e-6, energy_compressed_j=1.5e-6,
        rate_dense=0.01 * (i % 9), rate_compressed=0.011 * (i % 9), storage="dense",
        memory_bits_dense=294_912, memory_bits_sparse=400_000, cores=(2 * i, 2 * i + 1))
        for i in range(n))
    cores = tuple(CoreRow(c, f"block{c // 2}.lif", 4096, 100_000, 0.5, 0.9) for c in range(2 * n))

    def target(name: str) -> TargetReport:
        return TargetReport(
            name, f"{name} chip", "sbc", layers,
            (ViolationRow("block3.lif", "fan_in", 64, 103, "too many inputs"),),
            2 * n, 128, cores, {"max_fan_in": 4096, "synapse_storage": "dense_or_sparse",
                                "index_bits": 13}, Accuracy(0.96, 0.948, 0.947),
            BeforeAfter(3e7, 2.4e7), BeforeAfter(4e-4, 3e-4),
            (EnergyTerm("synops", 3e7, 2.4e7, 23.6e-12, "stand-in", "estimate"),))

    return Report("synthetic", 1e-3, "zero", (target("loihi2"), target("loihi1")))


@needs_chromium
@pytest.mark.parametrize("layers", [2, 200])
def test_charts_scale_from_2_to_200_layers_and_cores(layers, tmp_path):
    from sbc_deploy.report.render import to_html

    page = tmp_path / "many.html"
    page.write_text(to_html(_many_layers_report(layers)), encoding="utf-8")
    for width in layout.WIDTHS:
        measured = layout.measure(page, width)
        assert layout.layout_problems(measured) == []
        charts = {c["title"]: c for c in measured["charts"]}
        # per-layer sums are aggregated (<= 24 rows), cores grouped per layer (<= 32 rows)
        synops = charts["SynOps per sample, per layer"]
        assert sum(1 for t in synops["texts"] if t["cls"] == "label") == min(layers, 24)
        cores = charts["loihi2: use of each core against its limit"]
        assert sum(1 for t in cores["texts"] if t["cls"] == "label") == (
            2 * layers if 2 * layers <= 32 else 24)


@needs_chromium
@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(layout.CASES))
def test_the_first_screen_answers_the_engineers_questions(pages, case):
    """Issue 20: read as a hardware engineer reads it, at 1400 x 900 px and before scrolling,
    the page says whether it fits, on how many cores and which limit decides, the accuracy
    change with its interval and sample count, what compression saved, and (several targets)
    the ranking with the reason each excluded target does not fit."""
    seen = layout.first_screen(pages[case], 1400, 900)
    text = " ".join(seen)
    report = json.loads(Path(pages[case]).with_name("report.json").read_text())
    first = report["targets"][0]
    assert "verdict" in seen and ("fits" in seen or "does not fit" in seen), text[:400]
    assert f"{first['cores_dense']} -> {first['cores_used']} of {first['cores_available']}" \
        in text
    assert f"deciding limit: {first['deciding_limit']}" in text
    n = first["accuracy"]["samples"]
    assert re.search(r"accuracy change [+-]\d+\.\d pt \u00b1 \d+\.\d", text), text[:600]
    assert f"95 % interval, n = {n:,} samples" in text
    # the savings: SynOps, energy (with its grade on the number) and memory, before -> after
    assert re.search(r"SynOps / sample \S+ (k |M )?-> \S+", text)
    assert re.search(r"energy / sample [\d.]+ [munp]?J -> [\d.]+ [munp]?J \((estimate|"
                     r"secondary|verified)\)", text), text
    assert re.search(r"synapse memory \(original -> compressed\) [\d.]+ [kMG]?B -> [\d.]+ "
                     r"[kMG]?B",
                     text)
    if len(report["targets"]) > 1:
        assert "Ranking:" in text
        for entry in report["ranking"]:
            assert entry["target"] in seen
            if not entry["fits"]:
                assert entry["reason"][:40] in text, entry


def _ranked_report():
    """Four targets ranked, with the long cells a real comparison has: energies graded and
    borrowed, cores 'N of 128 cores', a refusal as the blocking reason (synthetic numbers)."""
    import dataclasses

    from sbc_deploy.report.model import Accuracy, Report
    from sbc_deploy.report.summary import rank

    base = dataclasses.replace(_many_layers_report(2).targets[0],
                               accuracy=Accuracy(0.96, 0.948, 0.947, samples=16))
    targets = [dataclasses.replace(base, target=name, cores_used=cores, violations=(),
                                   borrowed={"synops": "loihi1"} if name == "loihi2" else {})
               for name, cores in (("loihi2", 36), ("loihi1", 37))]
    targets += [dataclasses.replace(base, target="speck", cores_used=3, cores_available=9,
                                    refused="speck cannot run LIF neurons: speck runs IF "
                                            "neurons only"),
                dataclasses.replace(base, target="xylo", cores_used=114, cores_available=1,
                                    refused="xylo resets by subtract, not 'zero' (and 3 more)")]
    return Report("synthetic", 1e-3, "zero", tuple(targets), ranking=rank(targets))


@needs_chromium
def test_the_ranking_table_fits_its_box_at_800_px(tmp_path):
    """At 800 px the ranking's last column (the blocking reason) scrolled sideways inside its
    box: the energy and core cells would not wrap. Now they wrap and the table fits."""
    from sbc_deploy.report.render import to_html

    page = tmp_path / "ranked.html"
    page.write_text(to_html(_ranked_report()), encoding="utf-8")
    for width in layout.WIDTHS:
        measured = layout.measure(page, width)
        assert not layout.scrolls_sideways(measured, "ranking"), width
        assert layout.layout_problems(measured) == []
    text = page.read_text()
    assert "(estimate, borrowed)" in text and "\u00b1" in text and "of 128 cores" in text
