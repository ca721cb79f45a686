"""A sweep in one run (issue 20): ``--sparsity 0.5,0.9 --bits 8,4`` compresses every point from
one calibration and reports accuracy, cores and energy against compression per target.

Cost: the bundled-MLP run (magnitude pruning, 4 points, 16 evaluation samples) ~15 s of CPU;
the SBC run on a small in-memory network ~3 s; the validation tests stop before any work.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

import sbc_deploy.pipeline as pipeline
from sbc_deploy.cli import main
from sbc_deploy.data import Dataset
from sbc_deploy.ir import LIF, Affine, Graph, Input, Output
from sbc_deploy.pipeline import DeployRequest, deploy


def _counting(monkeypatch, name):
    calls = []
    real = getattr(pipeline, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, name, counted)
    return calls


def test_every_point_is_validated_before_any_work(tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a stage ran before every point was validated")

    monkeypatch.setattr(pipeline, "calibrate", never)
    monkeypatch.setattr(pipeline, "compress", never)
    out = tmp_path / "out"
    code = main(["--target", "loihi2", "--sparsity", "0.5,0.9999", "--bits", "8,16",
                 "--quiet", "-o", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "--bits 16: loihi2 stores 8-bit weights" in err
    # the bundled MLP's per-layer cap: 0.9999 cannot be given, 0.5 can (named with its value)
    assert "--sparsity 0.9999:" in err and "--sparsity 0.5:" not in err
    assert "the largest --sparsity that works is" in err
    assert not out.exists()
    assert main(["--target", "loihi2", "--sparsity", "0.5,0.5", "--quiet", "-o",
                 str(out)]) == 2
    assert "--sparsity: 0.5 listed twice" in capsys.readouterr().err
    assert main(["--target", "loihi2", "--bits", "8,", "--quiet", "-o", str(out)]) == 2
    assert "comma-separated list" in capsys.readouterr().err


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """loihi2 and speck on the bundled MLP, magnitude pruning, 2 x 2 points, 16 samples."""
    from _pytest.monkeypatch import MonkeyPatch

    patch = MonkeyPatch()
    calibrations = _counting(patch, "calibrate")
    compressions = _counting(patch, "compress")
    out = tmp_path_factory.mktemp("sweep") / "out"
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            code = main(["--target", "loihi2,speck", "--method", "magnitude", "--sparsity",
                         "0.5,0.9", "--bits", "8,4", "--eval-limit", "16", "--export", "nir",
                         "--max-drop", "none", "--quiet", "-o", str(out)])
    finally:
        patch.undo()
    return (code, buffer.getvalue(), json.loads((out / "report.json").read_text()), out,
            len(calibrations), len(compressions))


def test_the_sweep_calibrates_once_and_reports_every_point(swept):
    code, stdout, report, out, calibrations, compressions = swept
    assert code == 1  # speck is refused: the comparison says so
    assert calibrations == 1 and compressions == 4  # one calibration, one compression a point
    rows = report["sweep"]
    assert [(r["target"], r["sparsity"], r["bits"]) for r in rows] == [
        ("loihi2", 0.5, 8), ("loihi2", 0.5, 4), ("loihi2", 0.9, 8), ("loihi2", 0.9, 4)]
    assert [r["primary"] for r in rows] == [True, False, False, False]
    # the run's own point is the report's loihi2 section, figure for figure
    loihi2 = report["targets"][0]
    first = rows[0]
    assert first["cores_used"] == loihi2["cores_used"]
    assert first["energy_j"] == loihi2["energy_j"]["compressed"]
    assert first["accuracy"] == loihi2["accuracy"]
    assert first["memory_bytes"] == loihi2["memory_bytes"]["compressed"]
    # compression grows along the sweep; fewer bits store in less memory at equal sparsity
    achieved = {(r["sparsity"], r["bits"]): r["sparsity_achieved"] for r in rows}
    assert achieved[(0.9, 8)] > achieved[(0.5, 8)] >= 0.5
    memory = {(r["sparsity"], r["bits"]): r["memory_bytes"] for r in rows}
    assert memory[(0.5, 4)] < memory[(0.5, 8)]
    for r in rows:
        assert r["accuracy"]["samples"] == 16 and r["accuracy_measured_on"] == "integer core"
        assert r["energy_evidence"] == "estimate" and r["energy_borrowed"] is True
    # exports: the run's own point only
    exported = sorted(p.name for p in (out / "loihi2").iterdir())
    assert exported == ["model.nir"]


def test_a_sweep_point_matches_an_independent_compression(swept):
    """The 0.9 / 4-bit row against the API run by hand: compress, check, simulate."""
    from sbc_deploy import bundled
    from sbc_deploy.calibrate import calibrate
    from sbc_deploy.check import check
    from sbc_deploy.compress import compress
    from sbc_deploy.compress.config import config_for_target
    from sbc_deploy.sim import classify, default_decoding, simulate
    from sbc_deploy.targets import load_target

    *_, report, _, _, _ = swept
    row = next(r for r in report["sweep"] if (r["sparsity"], r["bits"]) == (0.9, 4))
    graph = bundled.load_bundled_model("nmnist_mlp")
    target = load_target("loihi2")
    config = config_for_target(target, method="magnitude", sparsity=0.9, bits=4,
                               allocation="lamp")  # the CLI's default
    compressed, _ = compress(graph, calibrate(graph, None, config=config), config)
    assert check(compressed, target).mapping.cores_used == row["cores_used"]
    weights = [compressed.nodes[layer.name].weight for layer in compressed.synapse_layers()]
    zero = sum(int(np.count_nonzero(w == 0)) for w in weights) / sum(w.size for w in weights)
    assert row["sparsity_achieved"] == pytest.approx(zero)
    data = bundled.load_bundled_data("eval")
    x = torch.from_numpy(np.swapaxes(np.asarray(data.x[:16]), 0, 1).astype(np.float32))
    out = simulate(compressed, x).outputs[compressed.outputs[0]]
    correct = int((classify(out, default_decoding(compressed)) ==
                   torch.from_numpy(np.array(data.y[:16]))).sum())
    assert row["accuracy"]["compressed_float"] == pytest.approx(correct / 16)


def test_the_sweep_is_shown_as_charts_a_table_and_cli_lines(swept):
    code, stdout, report, out, *_ = swept
    page = (out / "report.html").read_text()
    section = page[page.index('<h2 id="sweep">'):]
    section = section[:section.index("<h2", 5)]
    assert section.count("<svg") == 3  # accuracy, cores, energy against compression
    assert "sparsity 0.9, 4 bits" in section and "(this run)" in section
    assert section.count("<polyline") == 3 * 2  # one line per bit width in each chart
    md = (out / "report.md").read_text()
    assert "## Sweep: accuracy, cores and energy against compression" in md
    assert md.count("| loihi2 | sparsity 0.") == 4
    lines = [line for line in stdout.splitlines()
             if line.startswith("  ") and "sparsity 0." in line]
    assert len(lines) == 4 and lines[0].startswith("  * loihi2 sparsity 0.5, 8 bits: fits")


def _small_network(rng) -> Graph:
    nodes = {"in": Input((24,)),
             "fc1": Affine(rng.normal(0.3, 0.5, (16, 24))), "lif1": _lif(16),
             "fc2": Affine(rng.normal(0.3, 0.5, (6, 16))), "lif2": _lif(6),
             "out": Output((6,))}
    return Graph.chain(nodes.items(), 1e-3, {"reset": "zero"})


def _lif(n):
    return LIF(np.full(n, 0.8), np.full(n, 1.0), reset="zero")


def test_an_sbc_sweep_over_two_targets_calibrates_once(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    graph = _small_network(rng)
    x = (rng.random((48, 12, 24)) < 0.3).astype(np.uint8)
    calibrations = _counting(monkeypatch, "calibrate")
    compressions = _counting(monkeypatch, "compress")
    result = deploy(DeployRequest(model=graph, targets=("loihi2", "loihi1"),
                                  calib=Dataset(x, None, 1e-3, "test"), method="sbc",
                                  sweep_sparsity=(0.3, 0.6), sweep_bits=(8, 4),
                                  export=("nir",), out_dir=tmp_path / "out"))
    assert len(calibrations) == 1 and len(compressions) == 8
    hessians = {id(call[1]) for call in compressions}
    assert len(hessians) == 1  # every point compressed from the one calibration
    rows = result.report.sweep
    assert [(r["target"], r["sparsity"], r["bits"]) for r in rows] == [
        (t, s, b) for t in ("loihi2", "loihi1") for s in (0.3, 0.6) for b in (8, 4)]
    for r in rows:  # LAMP gives the overall sparsity asked for (rounding may add zeros)
        assert r["sparsity_achieved"] >= r["sparsity"] - 1e-3
