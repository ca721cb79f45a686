"""N-MNIST reader and event binning, checked on the real recording in the shared fixtures."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import fixture_path

from sbc_deploy.data import (
    EVENT_DTYPE,
    as_events,
    bin_events,
    decode_nmnist,
    encode_nmnist,
    load_data,
    make_events,
    nmnist_files,
    read_nmnist_bin,
    read_nmnist_folder,
    write_nmnist_bin,
)
from sbc_deploy.errors import DataError, FormatError

SAMPLE = ("events", "sample_nmnist.bin")


def independent_decode(raw: bytes) -> dict[str, np.ndarray]:
    """The 40-bit layout read bit by bit: x = bits 0-7, y = 8-15, p = 16, t = 17-39 (MSB first)."""
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8)).reshape(-1, 40).astype(np.int64)

    def word(lo: int, hi: int) -> np.ndarray:
        return bits[:, lo:hi] @ (1 << np.arange(hi - lo - 1, -1, -1, dtype=np.int64))

    return {"x": word(0, 8), "y": word(8, 16), "p": bits[:, 16], "t": word(17, 40)}


def test_reader_matches_an_independent_bit_level_decode() -> None:
    path = fixture_path(*SAMPLE)
    events = read_nmnist_bin(path)
    reference = independent_decode(path.read_bytes())
    assert events.dtype == EVENT_DTYPE
    assert events.size == 4325                      # SOURCES.md: 4,325 events
    for name in "xypt":
        np.testing.assert_array_equal(events[name], reference[name])


def test_real_recording_has_the_datasets_properties() -> None:
    events = read_nmnist_bin(fixture_path(*SAMPLE))
    assert (events["x"].min(), events["x"].max()) == (0, 33)   # 34 x 34 sensor crop
    assert (events["y"].min(), events["y"].max()) == (0, 33)
    assert set(np.unique(events["p"]).tolist()) == {0, 1}
    assert 0.4 < events["p"].mean() < 0.6
    assert np.all(np.diff(events["t"]) >= 0)                    # monotone time stamps
    # microseconds: three saccades of ~100 ms make a ~0.3 s recording
    assert 250_000 < events["t"].max() < 400_000


def test_encode_is_the_inverse_of_decode() -> None:
    raw = fixture_path(*SAMPLE).read_bytes()
    assert encode_nmnist(decode_nmnist(raw)) == raw


def test_truncated_file_is_a_format_error(tmp_path) -> None:
    raw = fixture_path(*SAMPLE).read_bytes()
    bad = tmp_path / "bad.bin"
    bad.write_bytes(raw[:-2])
    with pytest.raises(FormatError, match="multiple of 5"):
        read_nmnist_bin(bad)
    with pytest.raises(FormatError, match="cannot read"):
        read_nmnist_bin(tmp_path / "missing.bin")


def _tree(root, layout: dict[str, dict[int, int]], raw: bytes) -> None:
    for split, classes in layout.items():
        for digit, count in classes.items():
            folder = root / split / str(digit)
            folder.mkdir(parents=True)
            for k in range(count):
                (folder / f"{k:05d}.bin").write_bytes(raw)


def test_folder_layout_labels_from_digit_folders(tmp_path) -> None:
    source = fixture_path(*SAMPLE)
    raw = source.read_bytes()
    _tree(tmp_path, {"Test": {3: 2, 7: 1, 0: 3}}, raw)
    files = nmnist_files(tmp_path / "Test")
    # interleaved by rank: first file of each class (ascending digit), then the second, ...
    assert [label for _, label in files] == [0, 3, 7, 0, 3, 0]
    assert [p.parent.name for p, _ in files] == ["0", "3", "7", "0", "3", "0"]
    # the dataset folder with a single split resolves to it
    assert nmnist_files(tmp_path) == files
    recordings, labels = read_nmnist_folder(tmp_path / "Test", limit=4)
    np.testing.assert_array_equal(labels, [0, 3, 7, 0])
    assert all(r.size == 4325 for r in recordings)
    dataset = load_data(tmp_path / "Test", dt=0.01, steps=32)
    assert dataset.x.shape == (6, 32, 2, 34, 34)
    np.testing.assert_array_equal(dataset.y, [0, 3, 7, 0, 3, 0])
    # tonic's frames (event counts, frame 0 starting at the first event) equal the project's
    # own binning (the reference kept from the former reader) started there
    events = read_nmnist_bin(source)
    expected = bin_events(events, 0.01, 32, mode="count", t_start=int(events["t"][0]))
    assert expected.max() > 1
    for frames in dataset.x:
        np.testing.assert_array_equal(frames, expected)
    binary = load_data(f"{tmp_path / 'Test'},binary", dt=0.01, steps=32)
    np.testing.assert_array_equal(binary.x[0], (expected > 0).astype(np.uint8))


def test_folder_errors(tmp_path) -> None:
    raw = fixture_path(*SAMPLE).read_bytes()
    _tree(tmp_path, {"Train": {1: 1}, "Test": {1: 1}}, raw)
    with pytest.raises(DataError, match="both Train and Test"):
        nmnist_files(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no digit folders"):
        nmnist_files(empty)
    (empty / "4").mkdir()
    with pytest.raises(DataError, match="no .bin files"):
        nmnist_files(empty)


def test_single_file_needs_dt_and_bins_unlabelled(tmp_path) -> None:
    path = fixture_path(*SAMPLE)
    with pytest.raises(DataError, match="needs dt"):
        load_data(path)
    local = tmp_path / "one.bin"
    shutil.copyfile(path, local)
    dataset = load_data(local, dt=0.001)
    assert dataset.y is None
    # default steps: enough 1 ms bins from the first time stamp to the last (311,175 us)
    first = int(read_nmnist_bin(path)["t"][0])
    assert dataset.x.shape == (1, (311_175 - first) // 1000 + 1, 2, 34, 34)
    assert dataset.x.sum() == 4325          # every event in a frame


def test_binning_conserves_events() -> None:
    events = read_nmnist_bin(fixture_path(*SAMPLE))
    for dt, steps in ((0.001, None), (0.01, 31), (0.0125, 10), (0.0033, 40)):
        frames = bin_events(events, dt, steps, mode="count")
        horizon = frames.shape[0] * dt * 1e6
        in_range = int(np.count_nonzero(events["t"] < horizon - 1e-6))
        assert frames.sum() == in_range
        np.testing.assert_array_equal(frames.sum(axis=(0, 2, 3)),
                                      np.bincount(events["p"][events["t"] < horizon - 1e-6],
                                                  minlength=2))
    binary = bin_events(events, 0.01, 31)
    count = bin_events(events, 0.01, 31, mode="count")
    assert binary.dtype == np.uint8 and set(np.unique(binary).tolist()) <= {0, 1}
    np.testing.assert_array_equal(binary, (count > 0).astype(np.uint8))
    assert count.max() > 1  # 10 ms bins do hold repeated events, so the two modes differ


def test_binning_places_each_event_by_hand() -> None:
    events = make_events(x=[0, 5, 5, 33], y=[1, 2, 2, 33], p=[1, 0, 0, 1],
                         t=[0, 999, 1000, 2999])
    frames = bin_events(events, 0.001, 3, mode="count")
    assert frames.shape == (3, 2, 34, 34)
    assert frames[0, 1, 1, 0] == 1      # t=0 -> bin 0, ON channel, row y=1, column x=0
    assert frames[0, 0, 2, 5] == 1      # t=999 us -> bin 0
    assert frames[1, 0, 2, 5] == 1      # t=1000 us -> bin 1
    assert frames[2, 1, 33, 33] == 1
    assert frames.sum() == 4
    # an [N, 4] array of x, y, p, t is the same event list
    table = np.stack([events[f] for f in "xypt"], axis=1)
    np.testing.assert_array_equal(bin_events(table, 0.001, 3, mode="count"), frames)
    # events after the last bin are dropped, not clipped into it
    assert bin_events(events, 0.001, 2, mode="count").sum() == 3


def test_event_list_validation() -> None:
    with pytest.raises(DataError, match=r"\[N, 4\]"):
        as_events(np.zeros((3, 3)))
    with pytest.raises(DataError, match="polarity"):
        as_events(np.array([[1, 1, 2, 0]]))
    with pytest.raises(DataError, match="negative"):
        as_events(np.array([[1, -1, 0, 0]]))
    with pytest.raises(DataError, match="lack the fields"):
        as_events(np.zeros(2, dtype=[("x", int), ("y", int)]))
    with pytest.raises(DataError, match="outside the 34x34 sensor"):
        bin_events(np.array([[34, 0, 0, 0]]), 0.001)


def test_write_then_read_round_trip(tmp_path) -> None:
    events = make_events(x=[1, 2], y=[3, 4], p=[0, 1], t=[5, (1 << 23) - 1])
    path = write_nmnist_bin(tmp_path / "e.bin", events)
    back = read_nmnist_bin(path)
    for name in "xypt":
        np.testing.assert_array_equal(back[name], events[name])
    with pytest.raises(DataError, match="23 bits"):
        encode_nmnist(make_events(x=[0], y=[0], p=[0], t=[1 << 23]))
