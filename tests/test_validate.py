"""Every flag is checked against the target, the model and the data before the first stage:
all problems at once, exit 2, no folder made, no stage run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sbc_deploy.cli import main


def _data(path, n=4, steps=5, shape=(2, 34, 34), dt=0.01):
    from sbc_deploy.bundled import load_bundled_data
    from sbc_deploy.data.npz import write_npz

    data = load_bundled_data("calib").subset(slice(0, n))
    x = data.x[:, :steps]
    if shape != (2, 34, 34):
        x = np.zeros((n, steps, *shape), dtype=np.uint8)
    return write_npz(path, dataclasses.replace(data, x=x, dt=dt))


@pytest.mark.parametrize("flags, expected", [
    (["--export", "pdf"], ["unknown format 'pdf'"]),
    (["--bits", "16"], ["--bits 16: loihi2 stores 8-bit weights"]),
    (["--nm", "2:1000"], ["--nm 2:1000: layer 'linear3' has only 256 inputs"]),
    (["--target", "speck", "--export", "netx"], ["--export netx: speck is not deployed through "
                                                 "netx"]),
])
def test_each_flag_error_before_any_work(tmp_path, capsys, no_stage, flags, expected):
    out = tmp_path / "out"
    argv = ["--target", "loihi2", "--quiet", "-o", str(out), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err
    assert list(tmp_path.iterdir()) == []  # no folder, no staging


def test_all_problems_are_listed_at_once(tmp_path, capsys, no_stage):
    wrong_shape = _data(tmp_path / "shape.npz", shape=(10,))
    wrong_dt = _data(tmp_path / "dt.npz", dt=0.002)
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["--target", "loihi2,speck", "--export", "netx,pdf", "--bits", "16",
                 "--calib", str(wrong_shape), "--eval", str(wrong_dt), "--quiet",
                 "-o", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    joined = "\n".join(problems)
    for text in ("unknown format 'pdf'", "speck is not deployed through netx",
                 "--bits 16: loihi2 stores 8-bit weights",
                 "samples have shape (10,) per step but the model's input",
                 "was recorded with dt=0.002 s but dt=0.01 s was asked for"):
        assert text in joined, text
    assert f"{len(problems)} problems before any work was done" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_method_needing_calibration_without_data(tmp_path, capsys, no_stage):
    from conftest import fixture_path

    model = fixture_path("netx", "mnist_small", "network.net")
    assert main([str(model), "--target", "loihi2", "--quiet", "-o", str(tmp_path / "o")]) == 2
    assert "--method sbc needs calibration data" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_valid_request_resolves_to_its_values():
    from sbc_deploy.pipeline import DeployRequest
    from sbc_deploy.validate import validate_request

    plan = validate_request(DeployRequest(targets=("loihi2",), out_dir="never-created"))
    assert plan.targets[0].name == "loihi2" and plan.evaluation is not None
    assert tuple(plan.evaluation.input_shape) == (2, 34, 34)
    assert any(p.endswith("nmnist_mlp.nir") for p in plan.inputs)


def test_an_input_inside_the_output_folder_is_refused_even_with_force(tmp_path, capsys,
                                                                      no_stage):
    out = tmp_path / "out"
    out.mkdir()
    data = _data(out / "calib.npz")
    assert main(["--target", "loihi2", "--calib", str(data), "--quiet", "--force",
                 "-o", str(out)]) == 2
    assert "an input lies inside the output folder" in capsys.readouterr().err
    assert data.is_file()


def test_the_current_folder_and_its_parents_are_refused(tmp_path, monkeypatch, capsys, no_stage):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    for out in (".", "..", str(tmp_path)):
        assert main(["--target", "loihi2", "--quiet", "--force", "-o", out]) == 2
        assert "a folder of its own" in capsys.readouterr().err
    assert (tmp_path / "work").is_dir()
