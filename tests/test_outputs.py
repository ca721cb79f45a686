"""The output folder is one consistent set: staged, hashed in manifest.json, swapped in whole.

Kill tests run the real CLI in a subprocess and send SIGINT or SIGKILL at seeded random moments;
afterwards OUTDIR holds exactly the previous set or exactly a new complete one.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from sbc_deploy.cli import main
from sbc_deploy.outputs import (
    MANIFEST,
    Manifest,
    clean_stale_staging,
    read_manifest,
    sha256_file,
    staged_output,
    verify_set,
)


def _small_eval(path: Path, n: int = 60) -> Path:
    """The first ``n`` samples of the bundled evaluation set (real labels, the model's dt)."""
    from sbc_deploy.bundled import load_bundled_data
    from sbc_deploy.data.npz import write_npz

    return write_npz(path, load_bundled_data("eval").subset(slice(0, n)))


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _staging_left(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".sbc-staging-" in p.name]


def test_manifest_lists_every_output_with_its_hash(tmp_path):
    out = tmp_path / "out"
    with staged_output(out, Manifest(command=("x", "y"), inputs=(__file__,),
                                     settings={"a": 1})) as stage:
        assert not out.exists()  # nothing visible before the swap
        (stage / "a.txt").write_text("alpha")
        (stage / "sub").mkdir()
        (stage / "sub" / "b.bin").write_bytes(b"\x00\x01")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["command"] == ["x", "y"] and manifest["settings"] == {"a": 1}
    assert manifest["outputs"] == {
        "a.txt": "8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8",  # sha256sum
        "sub/b.bin": sha256_file(out / "sub" / "b.bin")}
    assert manifest["inputs"][__file__] == sha256_file(__file__)
    assert verify_set(out) == []
    (out / "a.txt").write_text("tampered")
    assert verify_set(out) == ["a.txt: sha256 differs from the manifest"]
    assert _staging_left(tmp_path) == []


def test_a_failed_run_leaves_the_previous_set_and_no_folder(tmp_path):
    out = tmp_path / "out"
    with staged_output(out) as stage:
        (stage / "report.json").write_text("{}")
    before = _snapshot(out)
    for error in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with staged_output(out) as stage:
                (stage / "report.json").write_text('{"new": true}')
                (stage / "model.nir").write_text("new")
                raise error
        assert _snapshot(out) == before and _staging_left(tmp_path) == []
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError):
        with staged_output(fresh):
            raise RuntimeError("boom")
    assert not fresh.exists() and _staging_left(tmp_path) == []


def test_foreign_files_are_refused_unless_forced(tmp_path, capsys):
    model = ROOT / "sbc_deploy" / "bundled" / "nmnist_mlp.nir"
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("not sbc-deploy's")
    assert main(["check", str(model), "--target", "loihi2", "-o", str(out)]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "not sbc-deploy's"
    assert main(["check", str(model), "--target", "loihi2", "-o", str(out), "--force"]) in (0, 1)
    assert not (out / "thesis.tex").exists() and verify_set(out) == []
    # our own set is replaced without --force
    assert main(["check", str(model), "--target", "loihi2", "-o", str(out)]) in (0, 1)
    assert verify_set(out) == [] and _staging_left(tmp_path) == []


def test_a_second_run_leaves_no_stale_exports(tmp_path):
    """Run 1 exports netx, nir and onnx; run 2 only nir: model.net/.onnx are gone."""
    data = _small_eval(tmp_path / "eval.npz", n=40)
    out = tmp_path / "out"
    common = ["--target", "loihi2", "--method", "magnitude", "--calib", str(data), "--eval",
              str(data), "--quiet", "--max-drop", "none", "-o", str(out)]
    assert main(common) == 0
    assert {"model.net", "model.nir", "model.onnx"} <= set(os.listdir(out))
    first = read_manifest(out)
    assert main([*common, "--export", "nir"]) == 0
    names = set(os.listdir(out))
    assert names == {"model.nir", "report.json", "report.md", "report.html", MANIFEST}
    manifest = read_manifest(out)
    assert verify_set(out) == [] and manifest["command"][-2:] == ["--export", "nir"]
    assert manifest["inputs"][str(data)] == sha256_file(data)
    assert first["outputs"]["model.nir"] and set(manifest["outputs"]) == names - {MANIFEST}
    report = json.loads((out / "report.json").read_text())
    assert report["exports"] == {"nir": str((out / "model.nir").resolve())}


def test_stale_staging_of_a_dead_run_is_removed(tmp_path):
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / f".out.sbc-staging-{int(dead.stdout)}-deadbeef"
    stale.mkdir()
    (stale / "model.nir").write_text("half")
    alive = tmp_path / f".out.sbc-staging-{os.getpid()}-cafe"
    alive.mkdir()
    other = tmp_path / f".other.sbc-staging-{int(dead.stdout)}-beef"
    other.mkdir()
    assert clean_stale_staging(out) == [stale]
    assert alive.exists() and other.exists() and not stale.exists()


def test_without_an_atomic_exchange_the_two_renames_still_swap_the_set(tmp_path, monkeypatch):
    import sbc_deploy.outputs as outputs

    monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)  # not Linux, or no renameat2
    out = tmp_path / "out"
    for text in ("first", "second"):
        with staged_output(out) as stage:
            (stage / f"{text}.txt").write_text(text)
        assert sorted(os.listdir(out)) == sorted([MANIFEST, f"{text}.txt"])
        assert verify_set(out) == []
    assert _staging_left(tmp_path) == []


# --------------------------------------------------------------------------- kill tests


def _cli(out: Path, data: Path) -> list[str]:
    return [sys.executable, "-m", "sbc_deploy", "--target", "loihi2", "--method", "magnitude",
            "--calib", str(data), "--eval", str(data), "--quiet", "--max-drop", "none",
            "-o", str(out)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_kill_at_random_points_leaves_old_or_new_complete_set(tmp_path):
    data = _small_eval(tmp_path / "eval.npz", n=24)
    full = tmp_path / "full"
    # a complete previous set written by sbc-deploy (check -o: fast)
    model = ROOT / "sbc_deploy" / "bundled" / "nmnist_mlp.nir"
    assert main(["check", str(model), "--target", "loihi1", "-o", str(full)]) in (0, 1)
    old = _snapshot(full)
    # one uninterrupted run: how long a run lasts here
    start = time.monotonic()
    probe = subprocess.run(_cli(tmp_path / "probe", data), env=_env(), capture_output=True,
                           text=True, timeout=300)
    duration = time.monotonic() - start
    assert probe.returncode == 0, probe.stderr
    seeded = random.Random(12)
    outcomes = []
    for sig in (signal.SIGINT, signal.SIGKILL):
        for kind in ("empty", "full"):
            for _ in range(2):
                out = tmp_path / f"{kind}-{sig.name}-{len(outcomes)}"
                if kind == "full":
                    subprocess.run(["cp", "-a", str(full), str(out)], check=True)
                else:
                    out.mkdir()
                before = _snapshot(out)
                process = subprocess.Popen(_cli(out, data), env=_env(),
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                time.sleep(seeded.uniform(0.3, duration * 1.1))
                process.send_signal(sig)
                process.wait(timeout=120)
                now = _snapshot(out) if out.exists() else None
                if now == before:
                    outcomes.append("old")
                else:
                    assert now is not None and verify_set(out) == [], (sig, kind, now)
                    assert {"report.json", "model.nir", "model.net"} <= set(now)
                    # (a kill just after the swap may still end the process with 130 or -9)
                    outcomes.append("new")
                if sig == signal.SIGINT:  # a clean interrupt removes its own staging folder
                    assert _staging_left(tmp_path) == [], outcomes
                else:
                    clean_stale_staging(out)  # what the next run does first
                    assert _staging_left(tmp_path) == []
    assert old == _snapshot(full)
    assert "old" in outcomes  # the seeded kill points hit both before and after the swap
