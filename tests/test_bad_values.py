"""Bad values are bad input (exit 2), not internal errors or guard failures, and special files
are refused at once instead of hanging (issue 21). Cost: ~15 s (two subprocesses with a FIFO,
the rest refused in-process before any work)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from sbc_deploy.cli import main
from sbc_deploy.errors import TargetError
from sbc_deploy.targets import parse_target, target_dirs


def _loihi2_with_exp_range(folder: Path, low: int, high: int) -> Path:
    import tomllib

    data = tomllib.loads((target_dirs()[0] / "loihi2.toml").read_text())
    data["name"] = "expchip"
    data["weights"]["exp_range"]["value"] = [low, high]
    # written back as TOML by hand: only basic tables, strings, numbers, booleans and lists
    lines: list[str] = []

    def emit(table: dict, prefix: str) -> None:
        for key, value in table.items():
            if not isinstance(value, dict):
                lines.append(f"{key} = {json.dumps(value)}")
        for key, value in table.items():
            if isinstance(value, dict):
                lines.append(f"[{prefix}{key}]")
                emit(value, f"{prefix}{key}.")

    emit(data, "")
    path = folder / "expchip.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_exponent_range_that_overflows_is_a_target_error(tmp_path, capsys):
    import tomllib

    data = tomllib.loads((target_dirs()[0] / "loihi2.toml").read_text())
    data["weights"]["exp_range"]["value"] = [-100000, 100000]
    with pytest.raises(TargetError, match=r"\[-64, 64\]"):
        parse_target(data, file="expchip.toml")
    chip = _loihi2_with_exp_range(tmp_path, -100000, 100000)
    assert main(["--target", str(chip), "--method", "magnitude", "--quiet",
                 "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "exp_range" in err and "internal error" not in err
    assert parse_target({**data, "weights": {**data["weights"], "exp_range": {
        **data["weights"]["exp_range"], "value": [-64, 64]}}}, file="ok.toml")


def _eval_file(path: Path, **change) -> Path:
    from sbc_deploy.bundled import load_bundled_data

    data = load_bundled_data("eval").subset(slice(0, 20))
    arrays = {"x": data.x, "y": data.y, "dt": np.float64(data.dt)}
    for key, edit in change.items():
        arrays[key] = edit(arrays[key])
    np.savez(path, **arrays)
    return path


def _big_label(y):
    y = y.copy()
    y[3] = 10**12
    return y


@pytest.mark.parametrize("change, words", [
    ({"y": _big_label}, "10 classes"),
    ({"y": lambda y: np.where(np.arange(y.size) == 0, 10, y)}, "labels 0 to 9"),
    ({"x": lambda x: x.astype(np.complex64)}, "real numbers"),
    ({"y": lambda y: y.astype(np.complex128)}, "integer class labels"),
    ({"dt": lambda dt: np.complex128(dt)}, "'dt' must be one number"),
    ({"y": lambda y: np.full(y.shape, 2.0**64)}, "far beyond"),
])
def test_labels_outside_the_classes_and_complex_data_are_bad_input(tmp_path, capsys, change,
                                                                     words):
    data = _eval_file(tmp_path / "eval.npz", **change)
    code = main(["--target", "loihi2", "--method", "magnitude", "--eval", str(data),
                 "--quiet", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and words in err, err
    assert "quality guard" not in err and "internal error" not in err
    assert not (tmp_path / "out").exists()


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "sbc_deploy", *argv], env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_fifo_as_model_or_data_is_refused_at_once(tmp_path):
    fifo = tmp_path / "model.nir"
    os.mkfifo(fifo)
    run = _run(["inspect", str(fifo)])  # used to wait forever for a writer
    assert run.returncode == 2 and "FIFO" in run.stderr, run.stderr
    pipe = tmp_path / "calib.npz"
    os.mkfifo(pipe)
    run = _run(["--target", "loihi2", "--calib", str(pipe), "--eval", str(pipe), "--quiet",
                "-o", str(tmp_path / "out")])
    assert run.returncode == 2 and run.stderr.count("FIFO") == 2, run.stderr


def test_a_device_or_a_fifo_in_a_recording_folder_is_refused(tmp_path, capsys):
    from sbc_deploy.data import load_data
    from sbc_deploy.errors import SbcDeployError

    for special in ("/dev/zero", "/dev/null"):
        if not os.path.exists(special):
            continue
        with pytest.raises(SbcDeployError, match="character device"):
            load_data(special, dt=1e-3)
        assert main(["inspect", special]) == 2
        assert "character device" in capsys.readouterr().err
    folder = tmp_path / "Train" / "3"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "00001.bin")
    with pytest.raises(SbcDeployError, match="FIFO"):
        load_data(tmp_path / "Train", dt=1e-3)
