"""The report renderings agree with the one data structure they come from."""

from __future__ import annotations

import json
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
                 tuple(range(200, 260)) * 4),
        LayerRow("fc2", "Affine", (10, 256), 0.5, 8, 140, 1280, 2560, "int_exp", 0.1,
                 tuple(range(120, 140)) + (140,) * 0),
    )
    return TargetReport(
        target=name, description=f"{name} chip", method="sbc", layers=layers,
        violations=violations, cores_used=2, cores_available=128,
        cores=(CoreRow(0, "lif1", 256, 473496, 0.03, 0.45), CoreRow(1, "lif2", 10, 10240, 0.001, 0.01)),
        limits={"max_fan_in": 256}, accuracy=Accuracy(0.97, 0.955, 0.951),
        synops=BeforeAfter(1.2e6, 1.3e5), energy_j=BeforeAfter(3.1e-5, 4.0e-6),
        energy_terms=(EnergyTerm("synop", 1.2e6, 1.3e5, 23.6e-12, "Davies 2018 Table 2 [S]"),),
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
                                "compressed_integer": 0.951}
    assert [t["target"] for t in data["targets"]] == ["loihi2", "speck"]
    assert data["targets"][1]["violations"][0] == {
        "layer": "fc1", "rule": "fan_in", "limit": 256, "actual": 260,
        "message": "speck allows fan-in <= 256; fc1 has 260", "severity": "error"}
    assert data["fits"] is False and data["targets"][0]["fits"] is True


def test_markdown_lists_every_violation_and_the_comparison():
    text = to_markdown(_report())
    assert "## Targets compared" in text
    assert "| speck | no | 1 | 2 / 128 |" in text
    assert "speck allows fan-in <= 256; fc1 has 260" in text
    assert "| fc1 | Affine | 256x2312 | 90.00% | 8 | 260 / 256 | 59,187 / 591,872 |" in text
    assert "Davies 2018 Table 2 [S]" in text


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: D401
        self.tags.append(tag)
        self.srcs += [v for k, v in attrs if k in ("src", "href") and v]


def test_html_is_self_contained_with_one_plot_per_figure():
    page = to_html(_report())
    parser = _Collector()
    parser.feed(page)
    # 2 targets x (layers, fan-in, cores, accuracy, energy) plots, all inline SVG.
    assert parser.tags.count("svg") == 10
    assert parser.tags.count("figure") == 10
    assert parser.srcs == [] and "<img" not in page and "<script" not in page


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
