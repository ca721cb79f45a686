"""--distributed under torchrun (2 processes, gloo) equals one process bit for bit.

The CLI runs in subprocesses: ``python -m torch.distributed.run --nproc-per-node 2 -m
sbc_deploy ... --distributed`` against ``python -m sbc_deploy ...`` with one torch thread (as
torchrun gives each process), on the bundled networks with a small calibration and evaluation
set (an odd number of calibration batches, so that one process sits out the last round).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from sbc_deploy import bundled
from sbc_deploy.calibrate import calibrate
from sbc_deploy.distributed import map_spread

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _small_data(folder: Path) -> tuple[Path, Path]:
    calib, evaluation = bundled.load_bundled_data("calib"), bundled.load_bundled_data("eval")
    paths = []
    for name, data, n in (("calib", calib, 70), ("eval", evaluation, 24)):
        path = folder / f"{name}.npz"
        np.savez(path, x=np.asarray(data.x[:n]), y=np.asarray(data.y[:n]), dt=data.dt)
        paths.append(path)
    return paths[0], paths[1]


def _run(args: list[str], torchrun: bool, cwd: Path) -> subprocess.CompletedProcess:
    prefix = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
              "--master-port", str(29500 + os.getpid() % 1000)] if torchrun else [sys.executable]
    cmd = prefix + ["-m", "sbc_deploy", *args] + (["--distributed"] if torchrun else [])
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)


def _comparable(report: dict, out_dir: Path) -> dict:
    """report.json without wall times, versions, the run's own settings and its folder."""
    text = json.dumps({k: v for k, v in report.items()
                       if k not in ("timings_s", "settings", "versions")}, sort_keys=True)
    return json.loads(text.replace(str(out_dir), "OUT"))


def _differences(a: object, b: object, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in _differences(a.get(k), b.get(k), f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (u, v) in enumerate(zip(a, b)) for d in _differences(u, v, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["nmnist_cnn", "nmnist_mlp"])
def test_torchrun_two_processes_equal_one_process_bit_for_bit(model, tmp_path):
    calib, evaluation = _small_data(tmp_path)
    common = [model, "--target", "loihi2", "--calib", str(calib), "--eval", str(evaluation),
              "--quiet", "--export", "netx,nir"]
    one = _run(common + ["-o", str(tmp_path / "one")], torchrun=False, cwd=tmp_path)
    two = _run(common + ["-o", str(tmp_path / "two")], torchrun=True, cwd=tmp_path)
    assert one.returncode in (0, 1), one.stderr
    assert two.returncode == one.returncode, two.stderr
    reports = [json.loads((tmp_path / d / "report.json").read_text()) for d in ("one", "two")]
    first, second = (_comparable(r, tmp_path / d) for r, d in zip(reports, ("one", "two")))
    assert not _differences(first, second), _differences(first, second)[:10]
    assert reports[1]["settings"]["processes"] == 2
    layers = reports[0]["targets"][0]["layers"] if "targets" in reports[0] else reports[0]["layers"]
    assert layers and all(layer.get("layer_loss") is not None for layer in layers)
    # the exported weights, bit for bit
    with h5py.File(tmp_path / "one" / "model.net") as a, h5py.File(tmp_path / "two" /
                                                                    "model.net") as b:
        names: list[str] = []
        a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
        assert any(n.endswith("weight") for n in names)
        for name in names:
            assert np.array_equal(np.asarray(a[name]), np.asarray(b[name])), name
    assert (tmp_path / "one" / "model.nir").read_bytes() == (tmp_path / "two" /
                                                             "model.nir").read_bytes()
    # only rank 0 wrote: one report, no second set of files
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir())


def test_without_a_session_everything_runs_here_in_order(rng):
    assert map_spread(lambda i: i * i, 5) == [0, 1, 4, 9, 16]
    graph = bundled.load_bundled_model("nmnist_mlp")
    x = (rng.random((5, 6, 2, 34, 34)) < 0.05).astype(np.float32)
    a = calibrate(graph, x, batch_size=2)
    b = calibrate(graph, x, batch_size=2)
    for name in a.layers:  # deterministic: equal bits on a second run
        assert np.array_equal(a.layers[name].xtx, b.layers[name].xtx)


def test_distributed_flag_without_torchrun_is_a_usage_error(tmp_path):
    env = _env()
    for name in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-m", "sbc_deploy", "nmnist_mlp", "--target",
                             "loihi2", "--distributed", "--quiet", "-o", str(tmp_path / "o")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "torchrun" in result.stderr and "RANK" in result.stderr
    assert torch.distributed.is_available()
