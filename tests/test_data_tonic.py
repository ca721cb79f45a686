"""Event datasets as tonic keeps them: each dataset's native format read from small files.

The files are written at test time by :mod:`sbc_deploy.data.writers` in each dataset's own
format (N-MNIST 40-bit ``.bin``, AEDAT 4 for CIFAR10-DVS, tonic's ``[N, 4]`` ``.npy`` for DVS128
Gesture, SHD's HDF5), with events drawn to match real N-MNIST recordings
(``nmnist_like_events``, shared/reference/nmnist-statistics.md), in the folder layout tonic
writes. The references are independent of the reader: the events that were written, binned by
tonic's own ``ToFrame``; and tonic's own dataset constructors listing the same folders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tonic = pytest.importorskip("tonic", reason="tonic is the event datasets' reader "
                                            "(pip install 'sbc-deploy[events]')")

from sbc_deploy.cli import main  # noqa: E402
from sbc_deploy.data import load_data  # noqa: E402
from sbc_deploy.data.nmnist import write_nmnist_bin  # noqa: E402
from sbc_deploy.data.tonic_sets import (  # noqa: E402
    DATASETS,
    detect_dataset,
    list_recordings,
    parse_spec,
)
from sbc_deploy.data.writers import (  # noqa: E402
    nmnist_like_events,
    write_aedat4,
    write_gesture_npy,
    write_shd_h5,
)
from sbc_deploy.errors import DataError, FormatError  # noqa: E402

DVS_OFFSET_US = 1_600_000_000_000_000   # DV files carry wall-clock microseconds


# --------------------------------------------------------------------------- the trees


def nmnist_tree(save_to: Path, splits=("Test",), per_class=None, seed=0) -> dict[Path, np.ndarray]:
    """``save_to/NMNIST/<split>/<digit>/*.bin``; returns each file's events."""
    per_class = per_class or {0: 2, 3: 1, 7: 2}
    rng = np.random.default_rng(seed)
    written = {}
    for split in splits:
        for digit, count in per_class.items():
            for k in range(count):
                path = save_to / "NMNIST" / split / str(digit) / f"{k:05d}.bin"
                path.parent.mkdir(parents=True, exist_ok=True)
                events = nmnist_like_events(rng, shape_seed=digit)
                write_nmnist_bin(path, events)
                written[path] = events
    return written


def cifar_tree(save_to: Path, classes=("airplane", "cat", "truck"), count=3, seed=1):
    rng = np.random.default_rng(seed)
    written = {}
    for name in classes:
        for k in range(count):
            path = save_to / "CIFAR10DVS" / name / f"cifar10_{name}_{k}.aedat4"
            path.parent.mkdir(parents=True, exist_ok=True)
            events = nmnist_like_events(rng, sensor=(128, 128), n_events=2500)
            write_aedat4(path, events, t_offset_us=DVS_OFFSET_US)
            written[path] = events
    return written


def gesture_tree(save_to: Path, split="ibmGestureTest", users=("user24_led", "user25_natural"),
                 labels=(0, 4, 10), seed=2):
    rng = np.random.default_rng(seed)
    written = {}
    for user in users:
        for label in labels:
            path = save_to / "DVSGesture" / split / user / f"{label}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            events = nmnist_like_events(rng, sensor=(128, 128), n_events=2000,
                                        duration_us=1_500_000)
            events["t"] = events["t"] // 1000 * 1000        # tonic's files keep milliseconds
            write_gesture_npy(path, events)
            written[path] = events
    return written


def shd_samples(rng, n: int, empty: int | None = None):
    samples = []
    for i in range(n):
        count = 0 if i == empty else int(rng.integers(300, 600))
        times = np.sort(rng.uniform(0.0, 0.9, count))
        samples.append((times, rng.integers(0, 700, count)))
    return samples


def shd_file(save_to: Path, split="test", n=8, seed=3, empty=None):
    rng = np.random.default_rng(seed)
    samples = shd_samples(rng, n, empty)
    labels = [i % 4 for i in range(n)]
    path = save_to / "SHD" / f"shd_{split}.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_shd_h5(path, samples, labels, speakers=[i % 3 for i in range(n)])
    return path, samples, labels


def as_tonic(events: np.ndarray, dtype: np.dtype, t_offset: int = 0) -> np.ndarray:
    """The written events in a tonic dataset's dtype (the reference input of ``ToFrame``)."""
    out = np.zeros(len(events), dtype=dtype)
    for field in dtype.names:
        out[field] = events[field] + (t_offset if field == "t" else 0)
    return out


def assert_frames_match_tonic(frames: np.ndarray, reference_events: np.ndarray,
                              sensor: tuple[int, int, int], window_us: float) -> None:
    """Our frames start with tonic's ``ToFrame(time_window)`` output on the same events and
    hold every event (tonic drops the last, incomplete window)."""
    expected = tonic.transforms.ToFrame(sensor_size=sensor, time_window=window_us)(
        reference_events.copy())
    assert expected.shape[0] >= 2 and expected.sum() > 0
    np.testing.assert_array_equal(frames[:expected.shape[0]], expected)
    assert int(frames.sum()) == len(reference_events)


@pytest.fixture
def no_download(monkeypatch):
    """Tonic's constructors may list folders here but never download."""
    def refuse(self):
        raise AssertionError("tonic tried to download")
    monkeypatch.setattr(tonic.dataset.Dataset, "download", refuse)


def tonic_listing(cls, monkeypatch, **kwargs) -> list[tuple[str, int]]:
    """``(file, label)`` as tonic's own constructor lists them (its size check skipped)."""
    monkeypatch.setattr(cls, "_check_exists", lambda self: True)
    dataset = cls(**kwargs)
    return sorted((str(Path(p)), int(t)) for p, t in zip(dataset.data, dataset.targets))


def our_listing(spec: str) -> list[tuple[str, int]]:
    _, recordings = list_recordings(parse_spec(spec))
    return [(str(r.path), int(r.label)) for r in recordings]


# --------------------------------------------------------------------------- each format


def test_nmnist_bin_in_tonics_layout(tmp_path, monkeypatch, no_download) -> None:
    written = nmnist_tree(tmp_path, splits=("Train", "Test"))
    data = load_data(f"nmnist:{tmp_path},split=test", dt=1e-3)
    assert data.dt == pytest.approx(1e-3)
    order = our_listing(f"nmnist:{tmp_path},split=test")
    assert [label for _, label in order] == [0, 3, 7, 0, 7]        # round-robin by class
    np.testing.assert_array_equal(data.y, [label for _, label in order])
    assert data.x.shape[2:] == (2, 34, 34)
    for frames, (path, _) in zip(data.x, order):
        reference = as_tonic(written[Path(path)], tonic.datasets.NMNIST.dtype)
        assert_frames_match_tonic(frames, reference, (34, 34, 2), 1000)
    # tonic's own constructor lists the same files with the same labels
    assert sorted(order) == tonic_listing(tonic.datasets.NMNIST, monkeypatch,
                                          save_to=str(tmp_path), train=False)


def test_cifar10dvs_aedat4_in_tonics_layout(tmp_path, monkeypatch, no_download) -> None:
    written = cifar_tree(tmp_path)
    data = load_data(f"cifar10dvs:{tmp_path},window=20ms")
    assert data.dt == pytest.approx(0.02)
    order = our_listing(f"cifar10dvs:{tmp_path}")
    np.testing.assert_array_equal(data.y, [0, 3, 9] * 3)          # airplane, cat, truck
    assert data.x.shape[2:] == (2, 128, 128)
    for frames, (path, _) in zip(data.x, order):
        reference = as_tonic(written[Path(path)], tonic.datasets.CIFAR10DVS.dtype, DVS_OFFSET_US)
        assert_frames_match_tonic(frames, reference, (128, 128, 2), 20_000)
    assert sorted(order) == tonic_listing(tonic.datasets.CIFAR10DVS, monkeypatch,
                                          save_to=str(tmp_path))
    # tonic keeps no split; train / test are the first 90 % / the rest of each class in name
    # order (3 files: 3 train, 0 test at round(2.7) = 3)
    assert len(load_data(f"cifar10dvs:{tmp_path},split=train,window=20ms")) == 9
    with pytest.raises(DataError, match="holds no <class>/"):
        load_data(f"cifar10dvs:{tmp_path},split=test,window=20ms")


def test_dvsgesture_npy_in_tonics_layout(tmp_path, monkeypatch, no_download) -> None:
    written = gesture_tree(tmp_path)
    data = load_data(f"{tmp_path}/DVSGesture,window=10ms")           # detected from the folder
    order = our_listing(f"{tmp_path}/DVSGesture")
    np.testing.assert_array_equal(data.y, [0, 4, 10, 0, 4, 10])
    for frames, (path, _) in zip(data.x, order):
        reference = as_tonic(written[Path(path)], tonic.datasets.DVSGesture.dtype)
        assert_frames_match_tonic(frames, reference, (128, 128, 2), 10_000)
    assert sorted(order) == tonic_listing(tonic.datasets.DVSGesture, monkeypatch,
                                          save_to=str(tmp_path), train=False)


def test_shd_h5_in_tonics_layout(tmp_path, monkeypatch, no_download) -> None:
    path, samples, labels = shd_file(tmp_path)
    data = load_data(f"shd:{tmp_path}", dt=5e-3)
    assert data.x.shape[2:] == (1, 700)
    _, recordings = list_recordings(parse_spec(f"shd:{tmp_path}"))
    np.testing.assert_array_equal(data.y, [labels[r.index] for r in recordings])
    assert sorted(data.y.tolist()) == sorted(labels)
    for frames, recording in zip(data.x, recordings):
        times, units = samples[recording.index]
        reference = np.zeros(len(times), dtype=tonic.datasets.SHD.dtype)
        # SHD stores seconds (float16 here); tonic counts microseconds
        reference["t"] = times.astype(np.float16).astype(np.float64) * 1e6
        reference["x"] = units
        reference["p"] = 1
        reference = reference[np.argsort(reference["t"], kind="stable")]
        assert_frames_match_tonic(frames, reference, (700, 1, 1), 5000)
    # tonic's constructor (it needs the downloaded archive beside the file) reads the same
    (path.parent / "shd_test.h5.zip").write_bytes(b"")
    shd = tonic.datasets.SHD(save_to=str(tmp_path), train=False)
    assert [int(shd[r.index][1]) for r in recordings] == data.y.tolist()


def test_single_files_are_unlabelled_recordings(tmp_path) -> None:
    written = cifar_tree(tmp_path, classes=("dog",), count=1)
    (path,) = written
    data = load_data(path, dt=0.05)                                  # .aedat4 detected
    assert data.y is None and data.x.shape[0] == 1
    assert int(data.x.sum()) == 2500


# --------------------------------------------------------------------------- binnings


def test_event_count_and_bin_slicings_match_tonic(tmp_path) -> None:
    written = nmnist_tree(tmp_path, per_class={1: 1, 2: 1})
    order = our_listing(f"nmnist:{tmp_path}")
    sensor = (34, 34, 2)
    counted = load_data(f"nmnist:{tmp_path},events=500", dt=1e-3)
    binned = load_data(f"nmnist:{tmp_path},time-bins=7", dt=1e-3)
    by_events = load_data(f"nmnist:{tmp_path},event-bins=5", dt=1e-3)
    assert binned.steps == 7 and by_events.steps == 5
    for i, (path, _) in enumerate(order):
        events = as_tonic(written[Path(path)], tonic.datasets.NMNIST.dtype)
        expected = tonic.transforms.ToFrame(sensor_size=sensor, event_count=500)(events.copy())
        np.testing.assert_array_equal(counted.x[i, :len(expected)], expected)
        assert not counted.x[i, len(expected):].any()               # padded with empty frames
        np.testing.assert_array_equal(binned.x[i], tonic.transforms.ToFrame(
            sensor_size=sensor, n_time_bins=7)(events.copy()))
        np.testing.assert_array_equal(by_events.x[i], tonic.transforms.ToFrame(
            sensor_size=sensor, n_event_bins=5)(events.copy()))
    assert counted.steps == max(len(written[Path(p)]) // 500 for p, _ in order)


def test_window_steps_binary_and_dt(tmp_path) -> None:
    nmnist_tree(tmp_path, per_class={5: 2})
    counts = load_data(f"nmnist:{tmp_path},window=10ms", dt=0.01)
    short = load_data(f"nmnist:{tmp_path},window=10ms,steps=12")
    binary = load_data(f"nmnist:{tmp_path},window=10ms,binary")
    np.testing.assert_array_equal(short.x, counts.x[:, :12])
    np.testing.assert_array_equal(binary.x, (counts.x > 0).astype(np.uint8))
    assert counts.x.max() > 1 and binary.x.dtype == np.uint8
    assert load_data(f"nmnist:{tmp_path},window=0.01").x.shape == counts.x.shape  # seconds
    with pytest.raises(DataError, match="differs from the model's step"):
        load_data(f"nmnist:{tmp_path},window=10ms", dt=0.001)
    with pytest.raises(DataError, match="needs dt"):
        load_data(f"nmnist:{tmp_path}")
    with pytest.raises(DataError, match="carry no time"):
        load_data(f"nmnist:{tmp_path},events=100")
    with pytest.raises(DataError, match="steps=12 in the spec but 20"):
        load_data(f"nmnist:{tmp_path},steps=12", dt=0.01, steps=20)


def test_spec_syntax_and_detection(tmp_path) -> None:
    nmnist_tree(tmp_path, splits=("Train", "Test"))
    gesture_tree(tmp_path, users=("user01_led",), labels=(1,))
    with pytest.raises(DataError, match="several tonic datasets"):
        detect_dataset(tmp_path)
    assert detect_dataset(tmp_path / "NMNIST") == "nmnist"
    assert detect_dataset(tmp_path / "NMNIST" / "Test") == "nmnist"
    assert detect_dataset(tmp_path / "DVSGesture" / "ibmGestureTest") == "dvsgesture"
    assert parse_spec(str(tmp_path / "x.npz")) is None                 # not an event source
    spec = parse_spec(f"NMNIST:{tmp_path},split=train,window=1.5ms,binary")
    assert (spec.dataset, spec.split, spec.binning.window_us, spec.binning.binary) == \
        ("nmnist", "train", 1500.0, True)
    for bad, message in (("window=fast", "not a duration"), ("bins=3", "unknown option"),
                         ("split=val", "use train, test or all"), ("events=0", "positive"),
                         ("window=1ms,events=10", "give one of")):
        with pytest.raises(DataError, match=message):
            parse_spec(f"nmnist:{tmp_path},{bad}")
    with pytest.raises(DataError, match="holds both Train and Test; say which"):
        load_data(f"{tmp_path}/NMNIST", dt=1e-3)
    assert len(load_data(f"{tmp_path}/NMNIST/Test,split=test", dt=1e-3)) == 5
    with pytest.raises(DataError, match="has no train split"):
        load_data(f"{tmp_path}/NMNIST/Test,split=train", dt=1e-3)
    # a folder whose name has a comma is taken whole when it exists as written
    odd = tmp_path / "a,b"
    nmnist_tree(odd, per_class={2: 1})
    assert len(load_data(f"{odd}/NMNIST/Test", dt=1e-3)) == 1


def test_balanced_draw_reads_only_the_drawn_recordings(tmp_path) -> None:
    nmnist_tree(tmp_path, per_class={0: 3, 1: 3, 2: 3})
    draw = load_data(f"nmnist:{tmp_path}", dt=1e-3, per_class=1, seed=4)
    assert sorted(draw.y.tolist()) == [0, 1, 2]
    assert load_data(f"nmnist:{tmp_path}", dt=1e-3, limit=4).y.tolist() == [0, 1, 2, 0]
    # damage every file that the draw did not take: the same draw still reads
    taken = {p for p, _ in our_listing(f"nmnist:{tmp_path}")}
    _, recordings = list_recordings(parse_spec(f"nmnist:{tmp_path}"))
    from sbc_deploy.data.sampling import balanced_indices
    chosen = {str(recordings[i].path) for i in balanced_indices(
        np.array([r.label for r in recordings]), 1, 4)}
    for path in taken - chosen:
        Path(path).write_bytes(b"\x00\x01")
    again = load_data(f"nmnist:{tmp_path}", dt=1e-3, per_class=1, seed=4)
    np.testing.assert_array_equal(again.x, draw.x)


# --------------------------------------------------------------------------- bad input


def _exit_code(capsys, tmp_path, spec: str) -> tuple[int, str]:
    code = main(["--target", "loihi2", "--calib", spec, "--eval-limit", "5",
                 "-o", str(tmp_path / "out"), "--quiet"])
    return code, capsys.readouterr().err


def _truncate(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def _missing_split(tmp_path: Path) -> tuple[str, str, str]:
    root = tmp_path / "nm"
    nmnist_tree(root, per_class={4: 1})
    return f"nmnist:{root},split=train", str(root / "NMNIST"), "has no train split"


def _truncated_bin(tmp_path: Path) -> tuple[str, str, str]:
    (bad,) = nmnist_tree(tmp_path / "trunc", per_class={4: 1})
    _truncate(bad, bad.stat().st_size - 2)
    return f"nmnist:{tmp_path / 'trunc'}", str(bad), "not a multiple of 5"


def _empty_bin(tmp_path: Path) -> tuple[str, str, str]:
    (empty,) = nmnist_tree(tmp_path / "empty", per_class={4: 1})
    empty.write_bytes(b"")
    return f"nmnist:{tmp_path / 'empty'}", str(empty), "empty recording"


def _truncated_aedat4(tmp_path: Path) -> tuple[str, str, str]:
    (aedat,) = cifar_tree(tmp_path / "c1", classes=("cat",), count=1)
    _truncate(aedat, aedat.stat().st_size - 100)
    return f"cifar10dvs:{tmp_path / 'c1'}", str(aedat), "truncated or damaged AEDAT 4"


def _wide_aedat4(tmp_path: Path) -> tuple[str, str, str]:
    big = tmp_path / "c2" / "CIFAR10DVS" / "cat" / "wide.aedat4"
    big.parent.mkdir(parents=True)
    write_aedat4(big, nmnist_like_events(np.random.default_rng(0), sensor=(240, 180),
                                         n_events=500), sensor=(240, 180))
    return f"cifar10dvs:{tmp_path / 'c2'}", str(big), "declares a 240x180 sensor"


def _wide_npy(tmp_path: Path) -> tuple[str, str, str]:
    (npy,) = gesture_tree(tmp_path / "g1", users=("user01_led",), labels=(3,))
    events = nmnist_like_events(np.random.default_rng(1), sensor=(200, 128), n_events=800)
    events["t"] = events["t"] // 1000 * 1000
    write_gesture_npy(npy, events)
    return (f"dvsgesture:{tmp_path / 'g1'}", str(npy),
            "outside the DVS128 Gesture sensor (128x128)")


def _truncated_npy(tmp_path: Path) -> tuple[str, str, str]:
    (cut,) = gesture_tree(tmp_path / "g2", users=("user01_led",), labels=(3,))
    _truncate(cut, cut.stat().st_size - 40)
    return f"dvsgesture:{tmp_path / 'g2'}", str(cut), "is truncated"


def _empty_shd_sample(tmp_path: Path) -> tuple[str, str, str]:
    h5, _, _ = shd_file(tmp_path / "s1", empty=2)
    return f"shd:{tmp_path / 's1'}", f"{h5} (sample 2)", "empty recording"


def _truncated_h5(tmp_path: Path) -> tuple[str, str, str]:
    h5_cut, _, _ = shd_file(tmp_path / "s2")
    _truncate(h5_cut, 3000)
    return f"shd:{tmp_path / 's2'}", str(h5_cut), ""


#: case -> a builder of (spec, the file the message must name, what it must say)
BAD_INPUTS = {
    "missing split": _missing_split, "truncated .bin": _truncated_bin,
    "empty .bin": _empty_bin, "truncated .aedat4": _truncated_aedat4,
    "wrong sensor (aedat4)": _wide_aedat4, "wrong sensor (npy)": _wide_npy,
    "truncated .npy": _truncated_npy, "empty SHD sample": _empty_shd_sample,
    "truncated .h5": _truncated_h5,
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_dataset_input_exits_2_naming_file_and_problem(case, tmp_path, capsys) -> None:
    spec, where, message = BAD_INPUTS[case](tmp_path)
    code, err = _exit_code(capsys, tmp_path, spec)
    assert code == 2, err
    assert where in err and message in err, err
    assert not (tmp_path / "out").exists()                           # nothing written


def test_reader_errors_are_typed(tmp_path) -> None:
    (bad,) = nmnist_tree(tmp_path, per_class={4: 1})
    _truncate(bad, 7)
    with pytest.raises(FormatError, match="not a multiple of 5"):
        load_data(f"nmnist:{tmp_path}", dt=1e-3)
    with pytest.raises(DataError, match="no such file or folder"):
        load_data(f"shd:{tmp_path / 'nowhere'}", dt=1e-3)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(DataError, match="is a folder but neither an event dataset"):
        load_data(plain, dt=1e-3)
    with pytest.raises(DataError, match="holds no digit folders"):
        load_data(f"nmnist:{plain}", dt=1e-3)


def test_frames_beyond_the_memory_budget_are_refused_before_binning(tmp_path) -> None:
    from sbc_deploy.safeio import read_budget

    written = nmnist_tree(tmp_path, per_class={1: 2})
    steps = max((int(e["t"][-1]) - int(e["t"][0])) // 1000 + 1 for e in written.values())
    need = 2 * steps * 2 * 34 * 34 * 2                 # recordings x T x [2, 34, 34] x uint16
    # the events tonic read stay claimed while they are binned (tests/test_reader_budgets.py)
    kept = sum(p.stat().st_size // 5 for p in written) * tonic.datasets.NMNIST.dtype.itemsize
    with read_budget(kept + need - 1):
        with pytest.raises(DataError, match=f"declares {need:,} bytes.*hint: bin coarser"):
            load_data(f"nmnist:{tmp_path}", dt=1e-3)
    with read_budget(kept + need):
        assert load_data(f"nmnist:{tmp_path}", dt=1e-3).steps == steps
    with read_budget(kept + need // 2):                # binary frames: one byte per value
        assert load_data(f"nmnist:{tmp_path},binary", dt=1e-3).x.dtype == np.uint8


def test_reading_a_dataset_reports_progress(tmp_path) -> None:
    from sbc_deploy.pipeline import DeployRequest
    from sbc_deploy.validate import validate_request

    nmnist_tree(tmp_path, per_class={0: 2, 1: 2})
    calls: list[tuple] = []
    load_data(f"nmnist:{tmp_path}", dt=0.01, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    calls.clear()
    plan = validate_request(DeployRequest(targets=("loihi2",), calib=f"nmnist:{tmp_path}",
                                          calib_per_class=1, out_dir=tmp_path / "out"),
                            data_progress=lambda *a: calls.append(a))
    assert calls == [("--calib", 1, 2), ("--calib", 2, 2)] and len(plan.calib) == 2


def test_layouts_name_tonic_classes() -> None:
    for layout in DATASETS.values():
        cls = getattr(tonic.datasets, layout.tonic_class)
        assert tuple(cls.sensor_size) == layout.sensor_size
