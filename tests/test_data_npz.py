""".npz datasets: round trips (plain and bit-packed), every malformed input, load_data's options."""

from __future__ import annotations

import numpy as np
import pytest

from sbc_deploy.data import Dataset, load_data, read_npz, write_npz
from sbc_deploy.errors import DataError, FormatError


def _save(path, **arrays) -> str:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return str(path)


def test_round_trip_plain_and_packed(tmp_path, rng) -> None:
    spikes = (rng.uniform(size=(7, 5, 2, 3, 3)) < 0.3).astype(np.uint8)
    labels = rng.integers(0, 10, size=7)
    packed = write_npz(tmp_path / "s.npz", Dataset(spikes, labels, 0.01, "test"))
    with np.load(packed) as archive:
        assert {"x_packbits", "x_shape", "y", "dt"} <= set(archive.files)
        assert "x" not in archive.files
    back = read_npz(packed)
    np.testing.assert_array_equal(back.x, spikes)
    np.testing.assert_array_equal(back.y, labels)
    assert back.dt == 0.01 and back.source == str(packed)
    currents = rng.normal(size=(3, 4, 6)).astype(np.float32)
    plain = write_npz(tmp_path / "c.npz", Dataset(currents, None, 0.002, "test"))
    back = read_npz(plain)
    np.testing.assert_array_equal(back.x, currents)
    assert back.y is None and back.x.dtype == np.float32
    with pytest.raises(DataError, match="not all 0 or 1"):
        write_npz(tmp_path / "bad.npz", Dataset(currents, None, 0.002, "t"), pack="always")


def test_packing_shrinks_sparse_spikes(tmp_path, rng) -> None:
    spikes = (rng.uniform(size=(50, 30, 2, 34, 34)) < 0.03).astype(np.uint8)
    data = Dataset(spikes, None, 0.01, "t")
    packed = write_npz(tmp_path / "p.npz", data).stat().st_size
    plain = write_npz(tmp_path / "u.npz", data, pack="never").stat().st_size
    assert packed < plain


@pytest.mark.parametrize("arrays, message", [
    ({"inputs": np.zeros((2, 3, 4))}, "has no 'x' array"),
    ({"x": np.zeros((2, 3))}, r"\[N, T, \*input_shape\]"),
    ({"x": np.zeros((2, 3, 4)), "y": np.array([0.0, 1.5])}, "non-integer values"),
    ({"x": np.zeros((2, 3, 4)), "y": np.array([0.0, np.nan])}, "NaN"),
    ({"x": np.zeros((2, 3, 4)), "y": np.array([0, 1, 2])}, "3 labels but 'x' has 2"),
    ({"x": np.zeros((2, 3, 4)), "y": np.array([[0], [1]])}, "1-D"),
    ({"x": np.zeros((2, 3, 4)), "y": np.array([0, -1])}, "negative label"),
    ({"x": np.zeros((2, 3, 4)), "y": np.array(["a", "b"])}, "integer class labels"),
    ({"x": np.full((2, 3, 4), np.nan)}, "24 NaN"),
    ({"x": np.zeros((2, 3, 4)), "dt": np.array(-1.0)}, "positive"),
    ({"x_packbits": np.zeros(2, np.uint8), "x_shape": np.array([2, 3, 4])}, "needs 3"),
])
def test_malformed_files_raise_data_errors(tmp_path, arrays, message) -> None:
    arrays.setdefault("dt", np.array(0.001))
    path = _save(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message) as err:
        read_npz(path)
    assert err.value.where == path


def test_whole_valued_float_labels_are_accepted(tmp_path) -> None:
    path = _save(tmp_path / "d.npz", x=np.zeros((2, 3, 4)), y=np.array([3.0, 1.0]), dt=0.001)
    np.testing.assert_array_equal(read_npz(path).y, [3, 1])


def test_dt_must_come_from_somewhere_and_agree(tmp_path) -> None:
    bare = _save(tmp_path / "bare.npz", x=np.zeros((2, 3, 4)))
    with pytest.raises(DataError, match="stores no 'dt'"):
        read_npz(bare)
    assert read_npz(bare, dt=0.005).dt == 0.005
    timed = _save(tmp_path / "timed.npz", x=np.zeros((2, 3, 4)), dt=0.001)
    assert read_npz(timed, dt=0.001).dt == 0.001
    with pytest.raises(DataError, match="cannot be re-binned"):
        read_npz(timed, dt=0.002)


def test_unreadable_files_are_format_errors(tmp_path) -> None:
    with pytest.raises(FormatError, match="no such file"):
        read_npz(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(FormatError, match="not a readable"):
        read_npz(junk)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros((2, 3, 4)))
    with pytest.raises(FormatError, match="single array"):
        read_npz(single)


def test_load_data_steps_input_shape_and_limit(tmp_path, rng) -> None:
    x = rng.normal(size=(6, 8, 2, 3, 3))
    path = _save(tmp_path / "d.npz", x=x, y=np.arange(6), dt=0.01)
    data = load_data(path, steps=5, input_shape=(18,), limit=4)
    assert data.x.shape == (4, 5, 18)
    np.testing.assert_array_equal(data.x, x[:4, :5].reshape(4, 5, 18))
    np.testing.assert_array_equal(data.y, [0, 1, 2, 3])
    with pytest.raises(DataError, match="cannot keep 9 steps"):
        load_data(path, steps=9)
    with pytest.raises(DataError, match=r"model expects \(2, 34, 34\)"):
        load_data(path, input_shape=(2, 34, 34))
    with pytest.raises(DataError, match="not a known spec"):
        load_data(tmp_path / "nothing-here")


def test_dataset_is_frozen_and_time_major(rng) -> None:
    x = rng.integers(0, 2, size=(5, 4, 3)).astype(np.uint8)
    data = Dataset(x, np.arange(5), 0.001, "t")
    with pytest.raises(ValueError):
        data.x[0, 0, 0] = 1
    x[0, 0, 0] = 7                                # the dataset keeps its own copy
    assert data.x[0, 0, 0] != 7
    batches = list(data.batches(2))
    assert [b.shape for b, _ in batches] == [(4, 2, 3), (4, 2, 3), (4, 1, 3)]
    np.testing.assert_array_equal(batches[1][0], np.moveaxis(data.x[2:4], 0, 1))
    assert batches[0][0].dtype == np.float32
    with pytest.raises(DataError, match="integer class labels"):
        Dataset(x, np.arange(5) + 0.5, 0.001, "t")
    with pytest.raises(DataError, match="dt must be"):
        Dataset(x, None, 0.0, "t")
