"""--distributed under torchrun (2 processes, gloo) equals one process bit for bit.

The CLI runs in subprocesses: ``python -m torch.distributed.run --nproc-per-node 2 -m
sbc_deploy ... --distributed`` against ``python -m sbc_deploy ...`` with one torch thread (as
torchrun gives each process), on the bundled networks with a small calibration and evaluation
set (an odd number of calibration batches, so that one process sits out the last round), with
the default (LAMP) and the global allocation (loss curves measured by both processes).
Sequential propagation (API only; the CLI has no flag for it) runs through
tests/_distributed_worker.py, which also records which solves and calibration batches each
process ran, so that the tests see the work split and not only the equal result. The NCCL path
runs as one process on one GPU (skipped without CUDA).
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
from sbc_deploy.distributed import assign, map_spread

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "_distributed_worker.py"


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


def _torchrun(processes: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
            "--master-port", str(29500 + os.getpid() % 1000)]


def _run(args: list[str], torchrun: bool, cwd: Path, processes: int = 2,
         ) -> subprocess.CompletedProcess:
    prefix = _torchrun(processes) if torchrun else [sys.executable]
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


def _assert_same_run(tmp_path: Path, one: str, two: str) -> list[dict]:
    """report.json (less timings and settings), model.net and model.nir of two runs equal,
    bit for bit, and the same files written; returns the second run's layer rows."""
    reports = [json.loads((tmp_path / d / "report.json").read_text()) for d in (one, two)]
    first, second = (_comparable(r, tmp_path / d) for r, d in zip(reports, (one, two)))
    assert not _differences(first, second), _differences(first, second)[:10]
    layers = reports[1]["targets"][0]["layers"] if "targets" in reports[1] else reports[1]["layers"]
    assert layers and all(layer.get("layer_loss") is not None for layer in layers)
    # the exported weights, bit for bit
    with h5py.File(tmp_path / one / "model.net") as a, h5py.File(tmp_path / two /
                                                                  "model.net") as b:
        names: list[str] = []
        a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
        assert any(n.endswith("weight") for n in names)
        for name in names:
            assert np.array_equal(np.asarray(a[name]), np.asarray(b[name])), name
    assert (tmp_path / one / "model.nir").read_bytes() == (tmp_path / two /
                                                           "model.nir").read_bytes()
    # only rank 0 wrote: one report, no second set of files
    assert sorted(p.name for p in (tmp_path / two).iterdir()) == sorted(
        p.name for p in (tmp_path / one).iterdir())
    return layers


@pytest.mark.slow
@pytest.mark.parametrize(("model", "flags"), [
    ("nmnist_cnn", []),
    ("nmnist_mlp", []),
    ("nmnist_cnn", ["--allocation", "global", "--sparsity", "0.8"]),
], ids=["cnn", "mlp", "cnn-global"])
def test_torchrun_two_processes_equal_one_process_bit_for_bit(model, flags, tmp_path):
    calib, evaluation = _small_data(tmp_path)
    common = [model, "--target", "loihi2", "--calib", str(calib), "--eval", str(evaluation),
              "--quiet", "--export", "netx,nir", *flags]
    one = _run(common + ["-o", str(tmp_path / "one")], torchrun=False, cwd=tmp_path)
    two = _run(common + ["-o", str(tmp_path / "two")], torchrun=True, cwd=tmp_path)
    assert one.returncode in (0, 1), one.stderr
    assert two.returncode == one.returncode, two.stderr
    layers = _assert_same_run(tmp_path, "one", "two")
    settings = json.loads((tmp_path / "two" / "report.json").read_text())["settings"]
    assert (settings["processes"], settings["backend"]) == (2, "gloo")
    if flags:  # the global allocation gave the layers different sparsities (it did allocate)
        sparsities = {round(layer["sparsity"], 3) for layer in layers}
        assert len(sparsities) == len(layers) > 1, sparsities


def _worker_outputs(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("rank*.npz")):
        with np.load(path) as data:
            item = {k: data[k] for k in data.files if k != "work"}
            item.update(json.loads(str(data["work"])))
        item["solves"] = [tuple(s) for s in item["solves"]]
        out.append(item)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("propagation", ["parallel", "sequential"])
def test_global_curves_and_sequential_calibration_are_shared_and_bit_for_bit(propagation,
                                                                            tmp_path):
    """The API under torchrun: each solve (loss-curve point, parallel layer solve) and each
    calibration batch (the first pass and every sequential re-calibration) runs on one process
    only, and both processes end with the one-process weights and losses, bit for bit."""
    calib, _ = _small_data(tmp_path)  # 70 sequences, batches of 16: 5 batches per calibration
    for prefix, folder in (([sys.executable], "one"), (_torchrun(2), "two")):
        done = subprocess.run(prefix + [str(WORKER), str(calib), str(tmp_path / folder),
                                        propagation], cwd=tmp_path, env=_env(),
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    (one,), ranks = _worker_outputs(tmp_path / "one"), _worker_outputs(tmp_path / "two")
    assert len(ranks) == 2
    for rank in ranks:
        for key in one:
            if key.startswith("w_") or key == "loss":
                assert np.array_equal(one[key], rank[key]), (key, propagation)
    # the loss-curve points: dealt out, none measured twice, none left out
    curve = [[s for s in r["solves"] if s[2]] for r in (one, *ranks)]
    assert curve[1] and curve[2] and not set(curve[1]) & set(curve[2])
    assert sorted(curve[1] + curve[2]) == sorted(curve[0])
    assert len({s[0] for s in curve[0]}) == 3  # every layer has a curve
    final = [[s for s in r["solves"] if not s[2]] for r in (one, *ranks)]
    calibrations = 1 if propagation == "parallel" else 3  # + one per later layer
    assert len(one["batches"]) == 5 * calibrations and sum(one["batches"]) == 70 * calibrations
    if propagation == "parallel":  # independent layer solves are dealt out too
        assert sorted(final[1] + final[2]) == sorted(final[0]) and final[1] and final[2]
    else:  # each layer's solve needs the calibration on the layers compressed before it
        assert final[1] == final[2] == final[0]
    # every calibration's batches were split: 3 + 2 of the 5 batches per calibration
    assert [len(r["batches"]) for r in ranks] == [3 * calibrations, 2 * calibrations]
    assert sum(ranks[0]["batches"]) + sum(ranks[1]["batches"]) == 70 * calibrations


def test_assign_deals_items_longest_first_to_the_least_loaded_rank():
    assert assign([1.0] * 5, 2) == [0, 1, 0, 1, 0]  # equal costs: round robin
    # 8 -> r0; 5 -> r1; 4 -> r1 (load 5 < 8); 3 -> r0 (8 < 9); 1 -> r1 (9 < 11)... in cost order
    assert assign([3.0, 8.0, 1.0, 5.0, 4.0], 2) == [0, 0, 1, 1, 1]
    loads = [0.0, 0.0, 0.0]
    costs = [7.0, 7.0, 6.0, 5.0, 5.0, 4.0, 4.0, 2.0]
    for cost, rank in zip(costs, assign(costs, 3)):
        loads[rank] += cost
    # 7 r0, 7 r1, 6 r2, 5 r2 (11), 5 r0 (12), 4 r1 (11), 4 r1 (15; tie with r2 -> lower), 2 r2
    assert loads == [12.0, 15.0, 13.0]
    assert max(loads) - min(loads) <= max(costs)  # greedy: never off by more than one item
    assert assign([], 2) == []
    assert assign([2.0, 1.0], 4) == [0, 1]  # more ranks than items: the rest get none


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_nccl_session_without_cuda_is_a_config_error(monkeypatch):
    from sbc_deploy.distributed import session
    from sbc_deploy.errors import ConfigError

    for name, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1"),
                        ("MASTER_PORT", "29999"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="no CUDA device"), session("cuda"):
        pass
    assert not torch.distributed.is_initialized()  # refused before joining anything


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_nccl_one_process_on_one_gpu_equals_one_process(tmp_path):
    """``torchrun --nproc-per-node 1 ... --distributed --device cuda``: the NCCL backend on one
    GPU (collectives of one rank) gives the single-process CUDA run's outputs, bit for bit."""
    calib, evaluation = _small_data(tmp_path)
    common = ["nmnist_cnn", "--target", "loihi2", "--calib", str(calib), "--eval",
              str(evaluation), "--quiet", "--export", "netx,nir", "--allocation", "global",
              "--sparsity", "0.8", "--device", "cuda"]
    one = _run(common + ["-o", str(tmp_path / "one")], torchrun=False, cwd=tmp_path)
    nccl = _run(common + ["-o", str(tmp_path / "nccl")], torchrun=True, cwd=tmp_path,
                processes=1)
    assert one.returncode in (0, 1), one.stderr
    assert nccl.returncode == one.returncode, nccl.stderr
    _assert_same_run(tmp_path, "one", "nccl")
    settings = json.loads((tmp_path / "nccl" / "report.json").read_text())["settings"]
    assert (settings["processes"], settings["backend"], settings["device"]) == (1, "nccl",
                                                                                "cuda")


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
