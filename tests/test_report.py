"""The report renderings agree with the one data structure they come from."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from sbc_deploy.report.model import (
    SCHEMA_VERSION,
    Accuracy,
    BeforeAfter,
    CoreRow,
    EnergyTerm,
    LayerRow,
    Report,
    TargetReport,
    ViolationRow,
)
from sbc_deploy.report.render import to_html, to_json, to_markdown, write_report


def _target(name: str, violations: tuple[ViolationRow, ...]) -> TargetReport:
    layers = (
        LayerRow("fc1", "Affine", (256, 2312), 0.9, 8, 260, 59187, 591872, "int_exp", 1.5,
                 tuple(range(200, 260)) * 4, neuron="lif1", synops_dense=1e6,
                 synops_compressed=1e5, energy_dense_j=2e-5, energy_compressed_j=2e-6,
                 rate_dense=0.1, rate_compressed=0.09, storage="dense",
                 memory_bits_dense=4_733_000, memory_bits_sparse=8_000_000, cores=(0, 1)),
        LayerRow("fc2", "Affine", (10, 256), 0.5, 8, 140, 1280, 2560, "int_exp", 0.1,
                 tuple(range(120, 140)) + (140,) * 0, neuron="lif2", synops_dense=2e5,
                 synops_compressed=1e5, energy_dense_j=4e-6, energy_compressed_j=2e-6,
                 rate_dense=0.05, rate_compressed=0.05, storage="dense",
                 memory_bits_dense=20_480, memory_bits_sparse=26_880, cores=(1,)),
    )
    return TargetReport(
        target=name, description=f"{name} chip", method="sbc", layers=layers,
        violations=violations, cores_used=2, cores_available=128,
        cores=(CoreRow(0, "lif1", 256, 473496, 0.03, 0.45),
               CoreRow(1, "lif2", 10, 10240, 0.001, 0.01)),
        limits={"max_fan_in": 256}, accuracy=Accuracy(0.97, 0.955, 0.951),
        synops=BeforeAfter(1.2e6, 1.3e5), energy_j=BeforeAfter(3.1e-5, 4.0e-6),
        energy_terms=(EnergyTerm("synop", 1.2e6, 1.3e5, 23.6e-12, "Davies 2018 Table 2 [S]",
                                 "verified"),
                      EnergyTerm("neuron update", 500, 500, 81e-12, "stand-in", "estimate")),
        exports={"netx": "out/model.net"})


def _report() -> Report:
    bad = (ViolationRow("fc1", "fan_in", 256, 260, "speck allows fan-in <= 256; fc1 has 260"),)
    return Report(model="mlp.nir", dt=1e-3, reset="zero",
                  targets=(_target("loihi2", ()), _target("speck", bad)),
                  timings_s={"load": 0.1, "compress": 2.5}, settings={"sparsity": 0.9})


def test_json_keeps_the_design_contract_keys():
    data = json.loads(to_json(_report()))
    for key in ("schema_version", "target", "method", "layers", "violations", "cores_used",
                "accuracy", "synops", "energy_j", "timings_s"):
        assert key in data, key
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["target"] == "loihi2"  # top level describes the first target
    for key in ("name", "kind", "shape", "sparsity", "weight_bits", "fan_in_max", "synapses"):
        assert key in data["layers"][0], key
    assert data["accuracy"] == {"dense_float": 0.97, "compressed_float": 0.955,
                                "compressed_integer": 0.951, "samples": None}
    assert [t["target"] for t in data["targets"]] == ["loihi2", "speck"]
    assert data["targets"][1]["violations"][0] == {
        "layer": "fc1", "rule": "fan_in", "limit": 256, "actual": 260,
        "message": "speck allows fan-in <= 256; fc1 has 260", "severity": "error"}
    assert data["fits"] is False and data["targets"][0]["fits"] is True


def test_markdown_lists_every_violation_and_the_comparison():
    text = to_markdown(_report())
    assert "## How do the targets compare?" in text
    assert "| speck | no | 1 | 2 / 128 |" in text
    assert "speck allows fan-in <= 256; fc1 has 260" in text
    # the sections of the HTML page, as text
    for heading in ("### Does it fit, and where?", "### What did compression cost?",
                    "### What does it save?"):
        assert text.count(heading) == 2, heading
    assert "| fc1 -> lif1 | 90.00% | 8 | 59,187 / 591,872 | 1.5 |" in text
    assert ("| fc1 -> lif1 | Affine | 256x2312 | 0,1 | 260 / 256 inputs per neuron (over the "
            "limit) |") in text
    # evidence grades travel with every energy cost; an estimate is shouted
    # (a source is text from the target file: markdown() escapes the '[' that could open a link)
    assert "| synop | 1.2e+06 | 1.3e+05 | 23.6 pJ | verified | Davies 2018 Table 2 \\[S] |" in text
    assert "| neuron update | 500 | 500 | 81 pJ | ESTIMATE | stand-in |" in text


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.srcs: list[str] = []
        self.titles: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):  # noqa: D401
        self.tags.append(tag)
        self.srcs += [v for k, v in attrs if k in ("src", "href") and v]
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.titles.append(data)


def test_html_is_self_contained_and_answers_each_question():
    page = to_html(_report())
    parser = _Collector()
    parser.feed(page)
    assert parser.srcs == [] and "<img" not in page and "<script" not in page
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # no CDN, no link
    # compare: accuracy, cores, energy; per target: cores, sparsity, sensitivity, SynOps,
    # energy, firing rates
    assert parser.tags.count("svg") == 3 + 2 * 6
    for question in ("How do the targets compare?", "Does it fit, and where?",
                     "What did compression cost?", "What does it save?"):
        assert question in page
    # one name per layer: the synapse with its neuron, in the charts and in the core map
    assert "fc1 -&gt; lif1" in page and "core 0: fc1 -&gt; lif1" in page
    # hover values: every bar row carries its exact numbers in an SVG <title>
    assert any("fc1 -> lif1\nsparsity: 90.0% \u00b7 8 bit" in t for t in parser.titles)
    assert any("dense: 1 M" in t and "compressed: 100 k" in t for t in parser.titles)
    # an estimated cost is flagged next to its number
    assert '<span class="grade estimate">estimate</span>' in page
    # the fan-in column shows the max and the limit
    assert "260 / 256" in page


def test_accuracy_is_drawn_on_a_full_axis_with_its_interval():
    """Issue 20: a zoomed axis without uncertainty showed noise (a 0.2-pt drop on 1,000
    samples) as a result. The axis is 0-100 % and each value carries its Wilson interval."""
    import dataclasses

    from sbc_deploy.report.html import accuracy_chart
    from sbc_deploy.report.summary import wilson

    target = _target("loihi2", ())
    target = dataclasses.replace(target, accuracy=dataclasses.replace(target.accuracy,
                                                                      samples=1000))
    svg = accuracy_chart([target])
    assert "axis starts at" not in svg and "n = 1,000 samples" in svg
    lengths = [float(v) for v in re.findall(r'class="bar" x="[\d.]+" y="[\d.]+" width="([\d.]+)"',
                                            svg)]
    # 97.0 vs 95.1 %: bars in proportion to the values on a 0-100 axis
    assert len(lengths) == 3 and lengths[2] / lengths[0] == pytest.approx(95.1 / 97.0, rel=1e-2)
    low, high = wilson(0.951, 1000)
    assert f"95.1% [{100 * low:.0f}-{100 * high:.0f}]" in svg


def test_storage_reason_gives_the_break_even_sparsity():
    from sbc_deploy.report.vocabulary import storage_reason

    t = _target("loihi2", ())
    layer = dataclasses.replace(t.layers[0], storage="dense", memory_bits_dense=100,
                                memory_bits_sparse=150)
    t = dataclasses.replace(t, limits={"synapse_storage": "dense_or_sparse", "index_bits": 13,
                                       "bits_per_weight": None})
    # sparse (1 - s)(8 + 13) < dense 8  <=>  s > 13 / 21 = 61.9 %
    assert storage_reason(t, layer) == "dense is cheaper below 62% sparsity; pruning frees no memory"
    sparse = dataclasses.replace(layer, storage="sparse")
    assert "pruning frees memory" in storage_reason(t, sparse)


def test_many_layers_are_aggregated_and_many_cores_grouped():
    from sbc_deploy.report.charts import Bar, Row, aggregate
    from sbc_deploy.report.html import _core_rows
    from sbc_deploy.report.vocabulary import MAX_CORE_ROWS

    rows = [Row(f"l{i}", (Bar(float(i), "#000", "synops"),)) for i in range(200)]
    kept = aggregate(rows, 24)
    assert len(kept) == 24 and kept[-1].label == "177 other layers (sum)"
    assert kept[-1].bars[0].value == sum(range(177))  # the 177 smallest, summed
    assert [r.label for r in kept[:-1]] == [f"l{i}" for i in range(177, 200)]
    t = _target("loihi2", ())
    cores = tuple(CoreRow(i, "lif1" if i < 150 else "lif2", 10, 100, i / 200, 0.5)
                  for i in range(200))
    grouped, how = _core_rows(dataclasses.replace(t, cores=cores))
    assert how.startswith("200 cores grouped per layer")
    assert len(cores) > MAX_CORE_ROWS and len(grouped) == 2
    assert grouped[0].label == "fc1 -> lif1 (cores 0-149)"
    assert grouped[0].bars[0].value == pytest.approx(100 * 149 / 200)  # the fullest core


def test_chart_labels_never_overflow_their_column():
    from sbc_deploy.report.charts import CHAR_W, MAX_LABEL_W, Bar, Row, hbar_chart

    long = "encoder.block7.attention.projection_out -> encoder.block7.neuron"
    svg = hbar_chart("t", [Row(long, (Bar(1.0, "#000", "x"),))])
    label = re.search(r'class="label"[^>]*>([^<]*)<', svg).group(1)
    assert label.endswith("\u2026") and len(label) * CHAR_W <= MAX_LABEL_W
    assert f"<title>{long}" in svg.replace("&gt;", ">")  # whole in the hover text


def test_write_report_writes_three_files(tmp_path):
    written = write_report(_report(), tmp_path)
    assert sorted(p.name for p in written.values()) == ["report.html", "report.json", "report.md"]
    assert json.loads((tmp_path / "report.json").read_text())["model"] == "mlp.nir"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json", "report.md"]


@pytest.mark.slow
def test_html_renders_in_headless_chromium(tmp_path):
    """Open the page in Debian's chromium and check the screenshot is not blank."""
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium); "
                    "scripts/screenshot_report.sh documents the manual check")
    np = pytest.importorskip("numpy")
    image = pytest.importorskip("matplotlib.image")
    page = tmp_path / "report.html"
    page.write_text(to_html(_report()))
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = image.imread(shot)[..., :3]
    # Plots draw coloured bars: a blank or broken page would be almost all white/grey.
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    assert (saturation > 0.3).mean() > 0.01


def test_quality_guard_findings_are_shown_first_in_both_renderings():
    from sbc_deploy.report.model import Finding

    finding = Finding("error", "accuracy_drop", "loihi2 integer core",
                      "accuracy fell by 7.1 points (limit 5)", "fewer bits or less sparsity")
    report = dataclasses.replace(_report(), findings=(finding,))
    page = to_html(report)
    assert page.index("<h2>Quality guards</h2>") < page.index("How do the targets compare?")
    assert '<span class="bad">error</span>' in page
    assert "accuracy fell by 7.1 points (limit 5)" in page
    text = to_markdown(report)
    assert ("| error | accuracy_drop | loihi2 integer core | accuracy fell by 7.1 points "
            "(limit 5) | fewer bits or less sparsity |") in text
