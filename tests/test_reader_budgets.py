"""Memory budgets of the event-dataset readers (issue 21 follow-up): each recording is claimed
from ``--memory-budget`` (:func:`sbc_deploy.safeio.claim`) by the size its file declares --
an N-MNIST ``.bin``'s length, a ``.npy`` header's shape, the event count of an AEDAT 4 file's
packets -- before tonic reads it, so a huge (here: sparse) or crafted file is refused with a
clear error instead of an allocation of gigabytes. Also: a ``.bin`` of nothing but time-stamp
overflow markers, which tonic's reader handles in time quadratic in the file, is refused.

Tonic's own readers are replaced by a tripwire where the test says "before reading": the
refusal must come from the declared size alone. Cost: ~3 s.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

tonic = pytest.importorskip("tonic", reason="tonic is the event datasets' reader")

from sbc_deploy.cli import main  # noqa: E402
from sbc_deploy.data.tonic_sets import (  # noqa: E402
    MAX_NMNIST_OVERFLOW_STEPS,
    list_recordings,
    parse_spec,
    read_events,
)
from sbc_deploy.data.writers import nmnist_like_events, write_aedat4  # noqa: E402
from sbc_deploy.errors import DataError  # noqa: E402
from sbc_deploy.safeio import read_budget  # noqa: E402
from tests.test_data_tonic import gesture_tree, nmnist_tree  # noqa: E402

GIB = 1024**3


def _read(spec: str) -> list[np.ndarray]:
    name, recordings = list_recordings(parse_spec(spec))
    return read_events(name, recordings)


@pytest.fixture
def tripwire(monkeypatch):
    """Make tonic's readers fail the test if they are called."""
    def called(*args, **kwargs):
        raise AssertionError("tonic read the file before the budget refused it")
    for cls in (tonic.datasets.NMNIST, tonic.datasets.CIFAR10DVS, tonic.datasets.DVSGesture):
        monkeypatch.setattr(cls, "__getitem__", called)


def _sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes (almost) no disk: a hole after the first bytes."""
    with open(path, "r+b") as handle:
        handle.truncate(size)
    return path


def test_a_huge_nmnist_bin_is_refused_by_its_size_before_reading(tmp_path, tripwire) -> None:
    (path,) = nmnist_tree(tmp_path, per_class={5: 1})
    _sparse(path, 5 * 10**9)                            # 10**9 events declared
    events = 10**9
    keep = events * tonic.datasets.NMNIST.dtype.itemsize
    with read_budget(GIB):
        with pytest.raises(DataError) as info:
            _read(f"nmnist:{tmp_path}")
    text = str(info.value)
    assert f"{events:,} events as tonic reads them declares {keep:,} bytes" in text
    assert f"and {5 * 5 * 10**9:,} more while reading" in text
    assert str(path) in text and "--memory-budget" in text
    # the smallest budget it names is the claim: kept + working copies, in MiB, rounded up
    assert f"about {math.ceil((keep + 25 * 10**9) / 2**20)}MiB" in text


def test_a_gesture_npy_declaring_more_than_the_budget_is_refused(tmp_path, tripwire) -> None:
    (path,) = gesture_tree(tmp_path, users=("user01_led",), labels=(3,))
    rows = 4_000_000                                    # [rows, 4] int64: 128 MB declared
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 4), np.int64))
    header["shape"] = (rows, 4)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        start = handle.tell()
    _sparse(path, start + rows * 4 * 8)
    with read_budget(64 * 2**20):
        with pytest.raises(DataError, match=f"{rows:,} events as tonic reads them declares "
                                            f"{rows * 13:,} bytes"):
            _read(f"dvsgesture:{tmp_path}")


def test_aedat4_events_are_counted_and_claimed_before_tonic_reads(tmp_path,
                                                                   monkeypatch) -> None:
    path = tmp_path / "CIFAR10DVS" / "cat" / "long.aedat4"
    path.parent.mkdir(parents=True)
    events = nmnist_like_events(np.random.default_rng(0), sensor=(128, 128), n_events=20_000)
    n = len(events)
    write_aedat4(path, events)
    spec = f"cifar10dvs:{tmp_path}"
    # kept: n x 13 bytes; while reading, the decoder's packets again
    with read_budget(2 * 13 * n):
        assert len(_read(spec)[0]) == n                  # exactly the budget: read

    def tripwire(*args, **kwargs):
        raise AssertionError("tonic read the file before the budget refused it")
    monkeypatch.setattr(tonic.datasets.CIFAR10DVS, "__getitem__", tripwire)
    with read_budget(2 * 13 * n - 1):
        with pytest.raises(DataError, match=f"{n:,} events as tonic reads them declares "
                                            f"{13 * n:,} bytes once read .and {13 * n:,} more"):
            _read(spec)


def test_claims_add_up_over_the_recordings_of_a_run(tmp_path) -> None:
    """What tonic keeps of each recording stays claimed (read_events returns them all); the
    working copies of one recording are given back before the next."""
    written = nmnist_tree(tmp_path, per_class={1: 2, 2: 2})
    keep = sum(p.stat().st_size // 5 for p in written) * tonic.datasets.NMNIST.dtype.itemsize
    work = 5 * max(p.stat().st_size for p in written)
    name, recordings = list_recordings(parse_spec(f"nmnist:{tmp_path}"))
    with read_budget(keep + work):
        assert len(read_events(name, recordings)) == 4
    done: list[int] = []
    with read_budget(keep - 1):     # each recording fits alone, all four do not
        with pytest.raises(DataError, match="with the data read before it"):
            read_events(name, recordings, progress=lambda i, n: done.append(i))
    assert 1 <= len(done) < 4


def test_an_nmnist_bin_of_overflow_markers_is_refused_at_once(tmp_path, tripwire) -> None:
    """Tonic adds 2**13 us to the rest of the recording once per overflow marker (y = 240):
    a 500 kB file of 100,000 markers asks 5 * 10**9 additions (0.7 s on this machine; the
    time grows with the square of the file: 2 MB took 9 s)."""
    (path,) = nmnist_tree(tmp_path, per_class={5: 1})
    n = 100_000
    raw = np.zeros((n, 5), np.uint8)
    raw[:, 1] = 240
    path.write_bytes(raw.tobytes())
    assert n * (n + 1) // 2 > MAX_NMNIST_OVERFLOW_STEPS
    start = time.perf_counter()
    with pytest.raises(DataError, match=f"holds {n:,} time-stamp overflow markers among "
                                        f"{n:,} events .* take {n * (n + 1) // 2:,} steps"):
        _read(f"nmnist:{tmp_path}")
    assert time.perf_counter() - start < 5


def test_the_cli_refuses_a_huge_recording_with_exit_2(tmp_path, capsys, tripwire) -> None:
    (path,) = nmnist_tree(tmp_path / "d", per_class={5: 1})
    _sparse(path, 5 * 10**9)
    code = main(["--target", "loihi2", "--calib", f"nmnist:{tmp_path / 'd'}",
                 "--memory-budget", "512MiB", "-o", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "1,000,000,000 events as tonic reads them" in err and "--memory-budget" in err
    assert not (tmp_path / "out").exists()


def test_the_single_file_nmnist_reader_claims_and_screens_too(tmp_path, monkeypatch) -> None:
    """``read_nmnist_bin`` / ``decode_nmnist`` (the library's N-MNIST API): the file's size is
    claimed before its bytes are read, the decoded events before tonic decodes them, and a
    recording of overflow markers is refused."""
    from sbc_deploy.data.nmnist import decode_nmnist, read_nmnist_bin
    from sbc_deploy.errors import FormatError

    (path,) = nmnist_tree(tmp_path, per_class={5: 1})
    size = path.stat().st_size
    assert read_nmnist_bin(path).size == size // 5
    with read_budget(size - 1):                        # not even the file's bytes
        with pytest.raises(FormatError, match=f"declares 0 bytes once read .and {size:,} more"):
            read_nmnist_bin(path)
    _sparse(path, 5 * 10**9)

    def tripwire(self):
        raise AssertionError("the file was read before the budget refused it")
    monkeypatch.setattr(Path, "read_bytes", tripwire)
    with read_budget(GIB):
        with pytest.raises(FormatError, match="--memory-budget"):
            read_nmnist_bin(path)
    monkeypatch.undo()
    raw = np.zeros((100_000, 5), np.uint8)
    raw[:, 1] = 240
    with pytest.raises(DataError, match="100,000 time-stamp overflow markers"):
        decode_nmnist(raw.tobytes())
    with read_budget(256 * 2**20):
        with pytest.raises(FormatError, match="10,000,000 events as tonic reads them"):
            decode_nmnist(np.zeros(5 * 10**7, np.uint8))   # 320 MB kept + 200 MB working
