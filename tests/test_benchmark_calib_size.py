"""benchmarks/calib_size.py (the calibration-size ablation) on the tiny hand-made network of
tests/test_benchmark_accuracy.py: nested calibrations, rows, margins and the page."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from test_benchmark_accuracy import CLASSES, tiny_data, tiny_graph

from sbc_deploy.calibrate import calibrate
from sbc_deploy.data.sampling import balanced_draws

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("benchmark_calib_size",
                                                  ROOT / "benchmarks" / "calib_size.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load()
SIZES = (1 / 3, 1, 4)           # a third: one sample of one of the three classes
SETTINGS = [s for s in bench.SETTINGS if s.key in ("sparsity90", "bits4")]


@pytest.fixture(scope="module")
def network():
    return bench.Network("tiny", tiny_graph(), tiny_data(20, seed=1, source="tiny eval"),
                         tiny_data(30, seed=2, source="tiny pool"))


@pytest.fixture(scope="module")
def measured(network):
    rows = []
    dense = bench.run_network(network, SETTINGS, SIZES, (0, 1), {}, rows.append)
    return dense, rows


def test_nested_calibrations_equal_calibrating_each_draw(network):
    found = bench.seed_calibrations(network.graph, network.pool, SIZES, seed=3,
                                    kernels=("smp", "current"))
    draws = balanced_draws(network.pool.y, SIZES, seed=3)
    assert [found["smp", k][1] for k in SIZES] == [1, CLASSES, 4 * CLASSES]
    for k in SIZES:
        direct = calibrate(network.graph, network.pool.x[draws[k]], kernel="current")
        summed, samples = found["current", k]
        assert samples == summed.n_samples == len(draws[k])
        for name, hsum in direct.layers.items():
            np.testing.assert_allclose(summed.layers[name].hessian(), hsum.hessian(),
                                       rtol=1e-12)


def test_rows_cover_every_setting_method_size_and_draw(measured):
    dense, rows = measured
    assert dense > 0.8
    keys = {r.key for r in rows}
    assert len(keys) == len(rows)                                  # nothing measured twice
    magnitude = [r for r in rows if r.method == "magnitude"]
    assert {(r.setting, r.per_class, r.seed) for r in magnitude} == \
        {(s.key, None, None) for s in SETTINGS}
    for setting in SETTINGS:
        for method in ("sbc", "obc"):
            got = {(r.per_class, r.seed) for r in rows
                   if r.setting == setting.key and r.method == method}
            assert got == {(float(k), s) for k in SIZES for s in (0, 1)}
    assert all(0.85 < r.sparsity < 0.95 for r in rows if r.setting == "sparsity90")


def test_margins_and_smallest_lossless_follow_their_definitions():
    def row(method, k, seed, acc, setting="loihi2"):
        return bench.Row("n", setting, method, k, seed, 0, acc, 1.0, 0.0, 0.0, 0.0)

    rows = [row("sbc", None, None, 0.900), row("obc", None, None, 0.890),
            row("magnitude", None, None, 0.500)]
    for seed, (a, b, c) in enumerate(((0.880, 0.870, 0.899), (0.884, 0.860, 0.900),
                                      (0.870, 0.880, 0.901))):
        rows += [row("sbc", 0.1, seed, a), row("sbc", 1.0, seed, c), row("sbc", 4.0, seed, 0.9)]
        rows += [row("obc", 0.1, seed, b)]
    margin = bench.paired_margin(rows, "n", "loihi2", 0.1, "obc")
    assert margin.n == 3 and margin.mean == pytest.approx((0.01 + 0.024 - 0.01) / 3)
    assert (margin.low, margin.high) == pytest.approx((-0.01, 0.024))
    versus_mag = bench.paired_margin(rows, "n", "loihi2", 0.1, "magnitude")
    assert versus_mag.mean == pytest.approx(np.mean([0.88, 0.884, 0.87]) - 0.5)
    # one standard error at 0.9 on 1000 samples: 0.95 pts; K = 1 averages 0.900, K = 0.1
    # averages 0.878 (2.2 pts lower): K = 1
    assert bench.standard_error(0.9, 1000) == pytest.approx(0.0094868, rel=1e-4)
    assert bench.smallest_lossless(rows, "n", "loihi2", 1000, (0.1, 1, 4)) == (1.0, 0.9)
    # a dip at a larger size ends the run of lossless sizes
    dipped = rows + [row("sbc", 2.0, s, 0.85) for s in range(3)]
    assert bench.smallest_lossless(dipped, "n", "loihi2", 1000, (0.1, 1, 2, 4)) == (4.0, 0.9)
    # on 100 samples the standard error is 3 pts: K = 0.1 (2.2 pts lower) is within it
    assert bench.smallest_lossless(rows, "n", "loihi2", 100, (0.1, 1, 4)) == (0.1, 0.9)


def test_page_chart_and_render_only(measured, network, tmp_path):
    import dataclasses
    import json

    dense, rows = measured
    meta = {"machine": "test", "torch": "x", "threads": 1, "sizes": list(SIZES), "seeds": [0, 1],
            "networks": {"tiny": {"command": "calib_size.py --test", "date": "today",
                                  "wall_s": 60.0, "cpu_s": 30.0, "load_start": 1.0,
                                  "load_end": 2.0, "n_eval": len(network.evaluation),
                                  "pool": "tiny pool"}}}
    page = bench.render(meta, {"tiny": dense}, rows, SIZES, SETTINGS)
    table = bench.stats(rows)
    sbc = table["tiny", "sparsity90", "sbc", 1.0]
    obc_margin = bench.paired_margin(rows, "tiny", "sparsity90", 1.0, "obc")
    assert f"| tiny | 90 % sparsity | 1 | {CLASSES} | {bench._pct(sbc)} | " \
           f"{bench._pct(obc_margin, True)} |" in page
    assert "## tiny (dense" in page and "### 4-bit weights" in page
    assert "draws]" not in page
    # a run cut short says which cells hold fewer draws than asked for
    short = bench.render({**meta, "seeds": [0, 1, 2]}, {"tiny": dense}, rows, SIZES, SETTINGS)
    assert f"{bench._pct(sbc)} [2 of 3 draws]" in short
    path = tmp_path / "chart.png"
    bench.plot({"tiny": dense}, rows, SIZES, SETTINGS, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --render-only rewrites the page and chart from the JSON, measuring nothing
    (tmp_path / "abl.json").write_text(json.dumps(
        {"meta": meta, "dense_accuracy": {"tiny": dense},
         "rows": [dataclasses.asdict(r) for r in rows]}))
    assert bench.main(["--render-only", "--out-dir", str(tmp_path), "--name", "abl",
                       "--settings", "sparsity90,bits4"]) == 0
    assert (tmp_path / "abl.md").read_text() == page + "\n"
    assert (tmp_path / "abl.png").read_bytes()[:4] == b"\x89PNG"
    # two processes' files (overlapping rows) merge into the same page
    half = len(rows) // 2
    for name, part in (("a", rows[:half + 3]), ("b", rows[half:])):
        (tmp_path / f"{name}.json").write_text(json.dumps(
            {"meta": meta, "dense_accuracy": {"tiny": dense},
             "rows": [dataclasses.asdict(r) for r in part]}))
    assert bench.main(["--merge", f"{tmp_path / 'a.json'},{tmp_path / 'b.json'}", "--out-dir",
                       str(tmp_path), "--name", "merged", "--settings", "sparsity90,bits4"]) == 0
    assert (tmp_path / "merged.md").read_text() == page + "\n"
    assert len(json.loads((tmp_path / "merged.json").read_text())["rows"]) == len(rows)


def test_the_csnn_is_one_more_network_entry():
    """The spikingjelly CSNN (issue 18) loads as the CLI imports it and classifies."""
    pytest.importorskip("spikingjelly", reason="the CSNN example is a spikingjelly module")
    from sbc_deploy.bundled import load_bundled_data

    few = load_bundled_data("eval").subset(slice(0, 60))
    graph = bench.csnn_graph(few)
    assert graph.dt == few.dt and "spikingjelly_csnn" in bench.NETWORKS
    assert np.mean(bench.accuracy.predict(graph, few).classes == few.y) > 0.85
