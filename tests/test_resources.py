"""Resource failures are named (exit 4), not called bugs; --memory-budget bounds the readers.

Real limits in subprocesses: a full disk (a tiny tmpfs, where this process may mount one), a
file size limit (RLIMIT_FSIZE, ``ulimit -f``) and an address-space cap (RLIMIT_AS, ``ulimit -v``)
on the bundled MLP. Reader budgets are checked against decompression bombs built here (a
compressed npz, a bit-packed npz, an HDF5 file whose chunked datasets are never written).
Cost: ~35 s (the memory cap run ~15 s, the file-size and full-disk runs ~6 s each).
"""

from __future__ import annotations

import errno
import io
import os
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from sbc_deploy.cli import main
from sbc_deploy.errors import FormatError, ResourceError
from sbc_deploy.outputs import sha256_file, verify_set
from sbc_deploy.resources import EXIT_RESOURCE, resource_error
from sbc_deploy.safeio import read_budget, screen_hdf5

MiB = 1024**2


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1"}


def _limited(argv: list[str], limit: int, which: int) -> subprocess.CompletedProcess:
    def apply() -> None:
        resource.setrlimit(which, (limit, limit))

    return subprocess.run([sys.executable, "-m", "sbc_deploy", *argv], preexec_fn=apply,
                          env=_env(), capture_output=True, text=True, timeout=600)


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------- classification


def test_real_allocator_failures_are_named_with_the_size_asked():
    import torch

    with pytest.raises(RuntimeError) as torch_err:
        torch.empty(1 << 50, dtype=torch.uint8)
    named = resource_error(torch_err.value, stage="calibrate")
    assert named.resource == "memory" and "during calibrate" in str(named)
    assert "1024.0 TiB" in str(named) and "--memory-budget" in str(named)
    with pytest.raises(MemoryError) as numpy_err:
        np.empty(1 << 50, dtype=np.uint8)
    assert "tried to allocate 1.00 PiB" in str(resource_error(numpy_err.value))
    assert resource_error(RuntimeError("shapes do not match")) is None
    assert resource_error(ValueError("x")) is None


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left"),
                                         (errno.EFBIG, "file size limit"),
                                         (errno.EDQUOT, "disk quota")])
def test_disk_errors_are_named(code, words, tmp_path):
    err = OSError(code, os.strerror(code), str(tmp_path / "out" / "model.nir"))
    named = resource_error(err)
    assert isinstance(named, ResourceError) and words in str(named)
    wrapped = RuntimeError("writer failed")
    wrapped.__cause__ = err
    assert words in str(resource_error(wrapped))  # found in the exception's chain
    # h5py puts the errno inside its own message
    h5 = OSError(f"Unable to create file (file write failed: errno = {code}, error message)")
    assert words in str(resource_error(h5))


def test_a_full_disk_while_writing_is_exit_4_and_keeps_the_previous_set(tmp_path, monkeypatch,
                                                                       capsys):
    import sbc_deploy.report.render as render

    out = tmp_path / "out"
    assert main(["check", "nmnist_mlp", "--target", "loihi2", "-o", str(out)]) == 1
    before = _snapshot(out)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(render, "write_text_atomic", full)
    capsys.readouterr()
    assert main(["check", "nmnist_mlp", "--target", "loihi2", "-o", str(out)]) == EXIT_RESOURCE
    err = capsys.readouterr().err
    assert "no space left" in err and "free" in err and "internal error" not in err
    assert _snapshot(out) == before and verify_set(out) == []
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left


# --------------------------------------------------------------------------- real limits


def test_file_size_limit_is_exit_4_and_the_previous_set_stays(tmp_path):
    out = tmp_path / "out"
    assert main(["check", "nmnist_mlp", "--target", "loihi2", "-o", str(out)]) == 1
    before = _snapshot(out)
    run = _limited(["check", "nmnist_mlp", "--target", "loihi2", "-o", str(out)], 4000,
                   resource.RLIMIT_FSIZE)
    assert run.returncode == EXIT_RESOURCE, run.stderr
    assert "file size limit" in run.stderr and "internal error" not in run.stderr
    assert _snapshot(out) == before and verify_set(out) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """An 8 KiB tmpfs (skipped where this process may not mount one)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_really_full_disk_is_exit_4(tiny_disk):
    run = subprocess.run([sys.executable, "-m", "sbc_deploy", "check", "nmnist_mlp",
                          "--target", "loihi2", "-o", str(tiny_disk / "out")], env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == EXIT_RESOURCE, run.stderr
    assert "no space left" in run.stderr and "internal error" not in run.stderr
    assert list(tiny_disk.iterdir()) == []  # nothing half-written left behind


def _imported_size() -> int:
    """The address space a process holds once the CLI, torch and numpy are imported (bytes)."""
    probe = subprocess.run([sys.executable, "-c", "import sbc_deploy.cli, torch, numpy; "
                            "print(open('/proc/self/status').read().split('VmSize:')[1].split()[0])"],
                           env=_env(), capture_output=True, text=True, timeout=120, check=True)
    return int(probe.stdout) * 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_a_memory_cap_is_exit_4_naming_what_ran_out(tmp_path):
    """``ulimit -v`` at 200 MiB above what the imports take, on the bundled MLP: torch's
    allocator fails mid-run (the cap follows this machine's imports, so the run fails in its
    work on every machine, not in an import on one and nowhere on a leaner one)."""
    run = _limited(["--target", "loihi2", "--quiet", "--eval-limit", "50", "-o",
                    str(tmp_path / "out")], _imported_size() + 200 * MiB, resource.RLIMIT_AS)
    assert run.returncode == EXIT_RESOURCE, run.stderr
    assert "out of memory" in run.stderr and "tried to allocate" in run.stderr
    assert "internal error" not in run.stderr and "--memory-budget" in run.stderr
    assert not (tmp_path / "out").exists()


def test_a_cap_below_what_the_libraries_need_is_exit_4_not_a_bug(tmp_path):
    """At 400 MiB the loader cannot map torch's library: that is memory too (it was exit 3, an
    "internal error", with the loader's ImportError)."""
    run = _limited(["--target", "loihi2", "--quiet", "-o", str(tmp_path / "out")], 400 * MiB,
                   resource.RLIMIT_AS)
    assert run.returncode == EXIT_RESOURCE, run.stderr
    assert run.stderr.startswith("error: out of memory") and "internal error" not in run.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- --memory-budget


def test_a_refused_budget_names_the_smallest_that_fits_and_no_missing_flag():
    from sbc_deploy.memory import MemoryBudgetError, cifar10_dvs_csnn, parse_size, plan_memory

    graph = cifar10_dvs_csnn(side=32)
    args = dict(steps=8, batch_size=4, calib_batch_size=4)
    with pytest.raises(MemoryBudgetError) as info:
        plan_memory(graph, budget=64 * MiB, **args)
    text = str(info.value)
    assert "--batch-size" not in text and "smallest budget" in text
    smallest = text.split("--memory-budget ")[1].split(" ")[0]
    plan = plan_memory(graph, budget=parse_size(smallest), **args)  # that one is accepted
    assert plan.peak <= parse_size(smallest)
    with pytest.raises(MemoryBudgetError):  # and it is the smallest (to the MiB)
        plan_memory(graph, budget=parse_size(smallest) - 2 * MiB, **args)


def _npz_bomb(path: Path, shape: tuple[int, ...]) -> Path:
    """An npz whose 'x' (zeros, ``shape``, uint8) is deflated: tiny file, large once read."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            left, block = int(np.prod(shape)), bytes(1 << 20)
            while left > 0:
                member.write(block[:min(left, len(block))])
                left -= len(block)
        archive.writestr("dt.npy", _npy(np.float64(1e-3)))
    return path


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_the_npz_reader_claims_decompressed_sizes_before_reading(tmp_path, monkeypatch):
    from sbc_deploy.data.npz import read_npz

    bomb = _npz_bomb(tmp_path / "bomb.npz", (64, 1, 1024, 1024))  # 64 MiB, ~70 KB on disk
    assert bomb.stat().st_size < 200_000
    with read_budget(32 * MiB), pytest.raises(FormatError) as info:
        read_npz(bomb)
    assert "67,108,872 bytes" in str(info.value) and "smallest budget" in str(info.value)
    smallest = int(str(info.value).split("about ")[1].split("MiB")[0])
    with read_budget(smallest * MiB):
        assert read_npz(bomb).x.shape == (64, 1, 1024, 1024)  # the budget it names reads it


def test_a_bit_packed_npz_claims_its_unpacked_size(tmp_path):
    from sbc_deploy.data.npz import read_npz

    count = 64 * MiB
    path = tmp_path / "packed.npz"
    np.savez_compressed(path, x_packbits=np.zeros(count // 8, np.uint8),
                        x_shape=np.array([64, 1, 1024, 1024]), dt=np.float64(1e-3))
    assert path.stat().st_size < 100_000
    with read_budget(32 * MiB), pytest.raises(FormatError, match="bit-packed"):
        read_npz(path)


def test_the_cli_refuses_a_data_bomb_before_reading_it(tmp_path, monkeypatch, capsys):
    bomb = _npz_bomb(tmp_path / "bomb.npz", (64, 1, 2, 34, 34 * 240))
    reads: list[tuple] = []
    original = np.lib.format.read_array

    def spy(*args, **kwargs):
        array = original(*args, **kwargs)
        reads.append(array.shape)
        return array

    monkeypatch.setattr(np.lib.format, "read_array", spy)
    code = main(["--target", "loihi2", "--calib", str(bomb), "--memory-budget", "16MiB",
                 "--quiet", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "smallest budget" in err, err
    assert (64, 1, 2, 34, 34 * 240) not in reads  # refused from its header, never inflated


def test_hdf5_datasets_are_claimed_by_their_declared_sizes(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as handle:  # chunks never written: a few KB on disk
        for name in ("a", "b"):
            handle.create_dataset(name, shape=(6 * MiB,), dtype="f8", chunks=(4096,),
                                  compression="gzip")
    assert path.stat().st_size < 50_000
    with read_budget(64 * MiB), pytest.raises(FormatError) as info:
        screen_hdf5(path)
    assert "100,663,296 bytes" in str(info.value) and "about 96MiB" in str(info.value)
    with read_budget(96 * MiB):
        screen_hdf5(path)


def test_event_binning_claims_its_frames_before_allocating_them():
    """An N-MNIST timestamp of 8 s at dt = 1 us would bin into 8 million frames (18 GB)."""
    from sbc_deploy.data.events import bin_recordings

    events = np.zeros(2, dtype=[("x", "u1"), ("y", "u1"), ("p", "u1"), ("t", "u4")])
    events["t"] = [0, 8_000_000]
    with read_budget(64 * MiB), pytest.raises(FormatError, match="8,000,001 steps"):
        bin_recordings([events], 1e-6)
    with read_budget(64 * MiB):
        assert bin_recordings([events], 1e-3).shape == (1, 8001, 2, 34, 34)
