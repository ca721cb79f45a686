"""Event datasets as tonic keeps them: N-MNIST, CIFAR10-DVS, DVS128-Gesture and SHD.

A user who downloaded a dataset with tonic (``tonic.datasets.NMNIST(save_to="/data")`` ...)
has it in the folder layout tonic writes under ``save_to``::

    NMNIST/Train/<digit>/*.bin, NMNIST/Test/<digit>/*.bin          N-MNIST's 40-bit events
    CIFAR10DVS/<class name>/*.aedat4                                AEDAT 4 (no split)
    DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/<label>.npy
                                                                    [N, 4] x, y, p, t (ms)
    SHD/shd_{train,test}.h5                                         spikes/times, spikes/units,
                                                                    labels

Each recording is read by tonic's own dataset code (the class's ``__getitem__``: its file
readers, unit conversions and field names) and binned into frames by tonic's ``ToFrame`` with the
dataset's sensor size; labels come from the dataset (folder names, file names, the HDF5
``labels``). Tonic's dataset *constructors* are not called: they download the archives when the
folder does not hold them, and nothing downloads at run time. The file listing follows the
constructors' rules instead; recordings are ordered round-robin across classes (the first of
every class, then the second, ...) so that any prefix (``--eval-limit``) is balanced.

Binning (:class:`Binning`): a time window (``window=``, frame ``k`` holds the events of
``[t0 + k w, t0 + (k+1) w)``, ``t0`` the recording's first event as in ``ToFrame``; the data's
``dt`` is the window), a number of events per frame (``events=``), or a fixed number of frames
per recording sliced by time or by events (``time-bins=``, ``event-bins=``); the last three
carry no time, so ``dt`` is the model's step. Frames hold event counts (``ToFrame``'s output);
``binary`` keeps whether a pixel had an event. Recordings binned to different lengths are padded
with empty frames at the end (or cut at ``steps=``).

Every file is checked before tonic reads it, so bad input is a :class:`DataError` /
:class:`FormatError` naming the file: a missing split, events outside the sensor, a truncated
file, an empty recording.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sbc_deploy.data.dataset import Dataset
from sbc_deploy.data.sampling import balanced_indices
from sbc_deploy.errors import DataError, FormatError

#: Largest dataset an SHD file may declare (its spike lists are variable-length arrays)
MAX_SHD_DATASET_BYTES = 4 << 30
#: tonic's N-MNIST reader adds 2**13 us to every later event once per time-stamp overflow marker
#: (a Python loop over the markers, each adding to the rest of the recording): the most such
#: additions a file may ask for. A real recording (~300 ms, a few thousand events) asks ~10**5;
#: a 2 MB file of nothing but markers asks 8 * 10**10 (9 s here), 20 MB would take 15 minutes.
MAX_NMNIST_OVERFLOW_STEPS = 2_000_000_000
#: y of an N-MNIST time-stamp overflow marker (tonic's read_mnist_file)
_NMNIST_OVERFLOW_Y = 240


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class Binning:
    """How events become frames (exactly one of the four slicings, or none: ``window = dt``).

    Attributes:
        window_us: time window per frame in microseconds.
        event_count: events per frame.
        time_bins: frames per recording, equal spans of time.
        event_bins: frames per recording, equal numbers of events.
        steps: number of frames kept (``None``: as many as the longest recording needs).
        binary: 0/1 frames (a pixel had at least one event) instead of counts.
    """

    window_us: float | None = None
    event_count: int | None = None
    time_bins: int | None = None
    event_bins: int | None = None
    steps: int | None = None
    binary: bool = False

    @property
    def timed(self) -> bool:
        """True when frames have a duration (time window or none given yet)."""
        return self.event_count is None and self.time_bins is None and self.event_bins is None


@dataclass(frozen=True)
class EventSpec:
    """A parsed ``DATASET:PATH[,option...]`` data source (see :func:`parse_spec`)."""

    dataset: str | None
    path: Path
    split: str | None
    binning: Binning
    text: str


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|ms|us|µs)?\s*$")
_UNITS = {None: 1e6, "s": 1e6, "ms": 1e3, "us": 1.0, "µs": 1.0}
OPTIONS = ("split", "window", "events", "time-bins", "event-bins", "steps", "binary", "counts")


def _duration_us(text: str, where: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise DataError(f"window={text!r} is not a duration (e.g. 1ms, 500us, 0.001)", where=where)
    value = _whole_us(float(match.group(1)) * _UNITS[match.group(2)])
    if not math.isfinite(value) or value <= 0:
        raise DataError(f"window={text!r} must be a positive duration", where=where)
    return value


def _whole_us(value: float) -> float:
    """A window within 1e-6 us of a whole number of microseconds is that number (``0.001 *
    1e6`` must not put an event stamped 1000 us into the first frame)."""
    return float(round(value)) if abs(value - round(value)) < 1e-6 else value


def _positive(key: str, text: str, where: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise DataError(f"{key}={text!r} must be a positive whole number", where=where)
    return int(text)


def _options(tokens: Sequence[str], where: str) -> tuple[str | None, Binning]:
    split, fields_, binary = None, {}, False
    for token in tokens:
        key, eq, value = (t.strip() for t in token.partition("="))
        if key not in OPTIONS or (bool(eq) == (key in ("binary", "counts"))):
            raise DataError(f"unknown option {token!r}; options: split=train|test|all, "
                            "window=DURATION, events=N, time-bins=N, event-bins=N, steps=N, "
                            "binary, counts", where=where)
        if key == "split":
            if value not in ("train", "test", "all"):
                raise DataError(f"split={value!r}: use train, test or all", where=where)
            split = value
        elif key == "window":
            fields_["window_us"] = _duration_us(value, where)
        elif key == "binary":
            binary = True
        elif key == "counts":
            binary = False
        else:
            name = {"events": "event_count", "time-bins": "time_bins",
                    "event-bins": "event_bins", "steps": "steps"}[key]
            fields_[name] = _positive(key, value, where)
    slicings = [k for k in ("window_us", "event_count", "time_bins", "event_bins") if k in fields_]
    if len(slicings) > 1:
        raise DataError("give one of window=, events=, time-bins=, event-bins= (they are "
                        "alternative ways to slice the events)", where=where)
    return split, Binning(binary=binary, **fields_)


def parse_spec(text: str) -> EventSpec | None:
    """Parse a data source naming an event dataset; ``None`` when ``text`` is not one.

    Syntax: ``[DATASET:]PATH[,OPTION...]`` with ``DATASET`` one of :data:`DATASETS`
    (``nmnist``, ``cifar10dvs``, ``dvsgesture``, ``shd``; omitted: detected from the folder)
    and the options ``split=train|test|all``, ``window=DURATION`` (``1ms``, ``500us``, ``0.01``
    seconds), ``events=N``, ``time-bins=N``, ``event-bins=N``, ``steps=N``, ``binary`` or
    ``counts`` (the default). A ``PATH`` that exists as written is taken whole (commas and all).

    Without a ``DATASET:`` prefix, ``text`` is an event dataset only when its path is a folder
    or file that :func:`detect` recognises (anything else, e.g. an ``.npz``, returns ``None``).
    """
    head, colon, rest = text.partition(":")
    named = head.strip().lower() if colon else None
    if named is not None and named not in DATASETS:
        named, rest = None, text
    elif named is None:
        rest = text
    if Path(rest).exists():
        path, tokens = Path(rest), []
    else:
        path_text, *tokens = rest.split(",")
        path = Path(path_text)
    if named is None:
        if tokens and not path.exists():
            return None
        if detect_dataset(path) is None:
            return None
    split, binning = _options(tokens, text)
    return EventSpec(named, path, split, binning, text)


# --------------------------------------------------------------------------- the datasets


@dataclass(frozen=True)
class Recording:
    """One recording: its file (and index inside the file for SHD) and its label."""

    path: Path
    label: int | None
    index: int | None = None

    @property
    def where(self) -> str:
        return str(self.path) if self.index is None else f"{self.path} (sample {self.index})"


@dataclass(frozen=True)
class Layout:
    """A tonic dataset: its class (``tonic.datasets.<tonic_class>``), folder names, sensor."""

    name: str
    tonic_class: str
    sensor_size: tuple[int, int, int]       # (width, height, polarities), tonic's order
    splits: dict[str, str]                  # split -> sub-folder or file inside the root
    suffix: str
    describe: str


DATASETS: dict[str, Layout] = {
    "nmnist": Layout("nmnist", "NMNIST", (34, 34, 2), {"train": "Train", "test": "Test"},
                     ".bin", "N-MNIST (NMNIST/<Train|Test>/<digit>/*.bin)"),
    "cifar10dvs": Layout("cifar10dvs", "CIFAR10DVS", (128, 128, 2), {}, ".aedat4",
                         "CIFAR10-DVS (CIFAR10DVS/<class>/*.aedat4)"),
    "dvsgesture": Layout("dvsgesture", "DVSGesture", (128, 128, 2),
                         {"train": "ibmGestureTrain", "test": "ibmGestureTest"}, ".npy",
                         "DVS128 Gesture (DVSGesture/ibmGesture<Train|Test>/<user>/<label>.npy)"),
    "shd": Layout("shd", "SHD", (700, 1, 1), {"train": "shd_train.h5", "test": "shd_test.h5"},
                  ".h5", "SHD (SHD/shd_<train|test>.h5)"),
}
#: CIFAR10-DVS has no split in tonic: ``split=train`` is the first 90 % of each class's
#: recordings in file-name order, ``split=test`` the rest.
CIFAR_TRAIN_FRACTION = 0.9


def require_tonic() -> Any:
    try:
        import tonic
    except ImportError as err:
        raise DataError("event datasets are read with tonic, which is not installed",
                        where="tonic", hint="pip install 'sbc-deploy[events]'") from err
    return tonic


def _cifar_classes() -> dict[str, int]:
    return dict(require_tonic().datasets.CIFAR10DVS.classes)


def _digit_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def detect_dataset(path: Path) -> str | None:
    """The dataset a folder or file holds (``None``: not recognisably one of them)."""
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".bin":
            return "nmnist"
        if suffix == ".aedat4":
            return "cifar10dvs"
        if suffix == ".h5" and path.name.lower().startswith(("shd_", "shd")):
            return "shd"
        return None
    if not path.is_dir():
        return None
    for layout in DATASETS.values():
        if path.name == layout.tonic_class:
            return layout.name
    names = {p.name for p in path.iterdir()}
    inside = [layout.name for layout in DATASETS.values() if layout.tonic_class in names]
    if len(inside) == 1:
        return inside[0]
    if len(inside) > 1:
        raise DataError(f"holds several tonic datasets ({', '.join(sorted(inside))}); name one, "
                        f"e.g. {inside[0]}:{path}", where=str(path))
    if names & {"Train", "Test"} or any(next(d.glob("*.bin"), None) is not None
                                         for d in _digit_dirs(path)):
        return "nmnist"
    if names & {"ibmGestureTrain", "ibmGestureTest"} or any(
            re.match(r"^user\d+_", n) for n in names):
        return "dvsgesture"
    if names & {"shd_train.h5", "shd_test.h5"}:
        return "shd"
    if any(next((path / n).glob("*.aedat4"), None) is not None
           for n in names & set(_CIFAR_NAMES) if (path / n).is_dir()):
        return "cifar10dvs"
    return None


_CIFAR_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck")


def _root(path: Path, layout: Layout) -> Path:
    """The dataset's own folder (``.../NMNIST``) from the path the user gave."""
    if path.is_dir() and path.name != layout.tonic_class and (path / layout.tonic_class).is_dir():
        return path / layout.tonic_class
    return path


def _pick_split(root: Path, layout: Layout, split: str | None) -> tuple[Path, str]:
    """The split's folder (or file) and the split's name."""
    present = {s: root / sub for s, sub in layout.splits.items() if (root / sub).exists()}
    if split in layout.splits and not present and root.name == layout.splits[split]:
        return root, split   # the path is that split's folder (or file) already
    if split in (None, "all") and not present:
        return root, "all"   # the path is a split folder itself (or CIFAR10-DVS)
    if split is None:
        if len(present) > 1:
            raise DataError(f"holds both {' and '.join(layout.splits[s] for s in present)}; "
                            "say which: split=train or split=test", where=str(root),
                            hint=f"{layout.name}:{root},split=test")
        (split, where), = present.items()
        return where, split
    if split == "all":
        raise DataError(f"split=all: {layout.name} keeps its splits apart; use split=train or "
                        "split=test", where=str(root))
    if split not in present:
        expected = root / layout.splits[split]
        raise DataError(f"has no {split} split (expected {expected})", where=str(root),
                        hint=f"present: {', '.join(sorted(present)) or 'none'}")
    return present[split], split


def _interleave(by_class: dict[int, list[Recording]]) -> list[Recording]:
    out: list[Recording] = []
    groups = [by_class[c] for c in sorted(by_class)]
    for rank in range(max((len(g) for g in groups), default=0)):
        out += [g[rank] for g in groups if rank < len(g)]
    return out


def _recordings_in(folder: Path, suffix: str) -> list[Path]:
    """The files in ``folder`` whose names end with ``suffix``, sorted. A FIFO, device or socket
    under such a name is refused, not skipped: reading it could block, and skipping it would hide
    a recording the user meant to give."""
    from sbc_deploy.safeio import refuse_special

    found = []
    for path in sorted(folder.iterdir()):
        if path.name.endswith(suffix):
            refuse_special(path, DataError)
            if path.is_file():
                found.append(path)
    return found


def _list_nmnist(folder: Path) -> list[Recording]:
    digits = _digit_dirs(folder)
    if not digits:
        raise DataError("holds no digit folders (expected <Train|Test>/<digit>/*.bin)",
                        where=str(folder))
    by_class = {int(d.name): [Recording(p, int(d.name)) for p in _recordings_in(d, "bin")]
                for d in digits}
    if not any(by_class.values()):
        raise DataError("holds digit folders but no .bin files", where=str(folder))
    return _interleave(by_class)


def _list_cifar(folder: Path, split: str) -> list[Recording]:
    classes = _cifar_classes()
    by_class: dict[int, list[Recording]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name not in classes:
            continue
        files = _recordings_in(sub, "aedat4")
        cut = round(CIFAR_TRAIN_FRACTION * len(files))
        files = files[:cut] if split == "train" else files[cut:] if split == "test" else files
        by_class[classes[sub.name]] = [Recording(p, classes[sub.name]) for p in files]
    if not any(by_class.values()):
        raise DataError("holds no <class>/*.aedat4 recordings (classes: "
                        f"{', '.join(classes)})", where=str(folder))
    return _interleave(by_class)


def _list_gesture(folder: Path) -> list[Recording]:
    by_class: dict[int, list[Recording]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if not re.match(r"^user\d+_.+$", sub.name):
            continue
        for file in _recordings_in(sub, "npy"):
            if not file.name[:-4].isdigit():
                raise DataError("a DVS Gesture recording is named <label>.npy", where=str(file))
            label = int(file.name[:-4])
            by_class.setdefault(label, []).append(Recording(file, label))
    if not by_class:
        raise DataError("holds no user<NN>_<lighting>/<label>.npy recordings", where=str(folder))
    return _interleave(by_class)


def _list_shd(file: Path) -> list[Recording]:
    import h5py

    from sbc_deploy.safeio import screen_hdf5

    if not file.is_file():
        raise DataError("no such SHD file", where=str(file))
    screen_hdf5(file, max_dataset_bytes=MAX_SHD_DATASET_BYTES, kind="SHD")
    with h5py.File(file, "r") as handle:
        missing = [k for k in ("spikes/times", "spikes/units", "labels") if k not in handle]
        if missing:
            raise DataError(f"lacks {', '.join(missing)} (an SHD file holds spikes/times, "
                            "spikes/units and labels)", where=str(file))
        labels = np.asarray(handle["labels"][()])
        n_times, n_units = len(handle["spikes/times"]), len(handle["spikes/units"])
    if labels.ndim != 1 or not (labels.size == n_times == n_units):
        raise DataError(f"has {labels.size} labels, {n_times} spike-time and {n_units} unit "
                        "lists; they must match", where=str(file))
    if labels.size == 0:
        raise DataError("holds no samples", where=str(file))
    by_class: dict[int, list[Recording]] = {}
    for i, label in enumerate(labels.tolist()):
        by_class.setdefault(int(label), []).append(Recording(file, int(label), i))
    return _interleave(by_class)


def list_recordings(spec: EventSpec) -> tuple[str, list[Recording]]:
    """``(dataset, recordings)`` of a spec, labels included, without reading any events.

    Raises:
        DataError: an unrecognised folder, a missing split, a layout without recordings.
    """
    path = spec.path
    if not path.exists():
        raise DataError("no such file or folder", where=str(path))
    name = spec.dataset or detect_dataset(path)
    if name is None:
        raise DataError("is not a folder of a known event dataset; name it, e.g. "
                        f"nmnist:{path} (datasets: {', '.join(DATASETS)})", where=str(path))
    layout = DATASETS[name]
    if path.is_file():
        if spec.split is not None:
            raise DataError("split= names a split of a dataset folder, not of one file",
                            where=str(path))
        if name == "shd":
            return name, _list_shd(path)
        if not path.name.lower().endswith(layout.suffix):
            raise DataError(f"is not a {layout.describe} recording", where=str(path))
        return name, [Recording(path, None)]
    root = _root(path, layout)
    if name == "cifar10dvs":
        if spec.split == "all" or spec.split is None:
            return name, _list_cifar(root, "all")
        return name, _list_cifar(root, spec.split)
    where, _ = _pick_split(root, layout, spec.split)
    if name == "shd":
        if where.is_dir():
            raise DataError("holds no shd_train.h5 or shd_test.h5", where=str(where))
        return name, _list_shd(where)
    if name == "nmnist":
        return name, _list_nmnist(where)
    return name, _list_gesture(where)


# --------------------------------------------------------------------------- reading


def _tonic_reader(name: str, recordings: Sequence[Recording]) -> Any:
    """A tonic dataset object over ``recordings`` whose ``__getitem__`` is tonic's own reader.

    The object is made without calling the class's constructor: the constructor downloads the
    dataset's archives when the folder lacks them (nothing may download at run time) and lists
    the folder, which :func:`list_recordings` has done. The attributes set are the ones the
    class's ``__getitem__`` reads (tonic 1.7).
    """
    cls = getattr(require_tonic().datasets, DATASETS[name].tonic_class)
    reader = cls.__new__(cls)
    reader.transform = reader.target_transform = reader.transforms = None
    reader.data = [str(r.path) for r in recordings]
    reader.targets = [r.label for r in recordings]
    if name == "nmnist":
        reader.first_saccade_only = False
        reader.stabilize = False
    if name == "shd":
        reader.location_on_system = str(recordings[0].path.parent)
        reader.data_filename = recordings[0].path.name
    return reader


def _check_nmnist(recording: Recording) -> None:
    """Whole 40-bit events, claimed from the budget, and few enough time-stamp overflow
    markers for tonic's reader (:data:`MAX_NMNIST_OVERFLOW_STEPS`)."""
    size = recording.path.stat().st_size
    if size % 5:
        raise FormatError(f"has {size} bytes, not a multiple of 5 (N-MNIST stores 40-bit "
                          "events; truncated?)", where=recording.where)
    _claim_recording(recording, "nmnist", size // 5, transient=5 * size)  # before reading it
    check_nmnist_overflows(np.fromfile(recording.path, dtype=np.uint8), recording.where)


def check_nmnist_overflows(raw: np.ndarray, where: str) -> None:
    """Refuse the bytes of an N-MNIST recording whose time-stamp overflow markers would keep
    tonic's reader busy for more than :data:`MAX_NMNIST_OVERFLOW_STEPS` additions.

    Raises:
        DataError: too many markers, saying how many and the work they ask for.
    """
    events = raw.size // 5
    at = np.flatnonzero(raw[1:events * 5:5] == _NMNIST_OVERFLOW_Y)
    steps = int((events - at).sum())
    if steps > MAX_NMNIST_OVERFLOW_STEPS:
        raise DataError(f"holds {len(at):,} time-stamp overflow markers among {events:,} "
                        "events (a real N-MNIST recording holds tens); tonic's reader would "
                        f"take {steps:,} steps", where=where)


def _check_aedat4(recording: Recording, sensor: tuple[int, int, int]) -> None:
    import aedat

    try:
        streams = aedat.Decoder(str(recording.path)).id_to_stream()
    except Exception as err:  # noqa: BLE001 - the decoder's errors are plain exceptions
        raise FormatError(f"is not a readable AEDAT 4 file ({err})", where=recording.where) from err
    events = [s for s in streams.values() if s.get("type") == "events"]
    if not events:
        raise DataError("holds no event stream", where=recording.where)
    first = events[0]
    if (first.get("width"), first.get("height")) != sensor[:2]:
        raise DataError(f"declares a {first.get('width')}x{first.get('height')} sensor; "
                        f"CIFAR10-DVS recordings are {sensor[0]}x{sensor[1]}",
                        where=recording.where)
    # AEDAT 4 packets are compressed and their headers give no decompressed size: count the
    # events of the stream tonic reads (the lowest events stream id) packet by packet, one in
    # memory at a time, before tonic keeps them all and joins them
    stream = min(i for i, s in streams.items() if s.get("type") == "events")
    try:
        count = sum(len(packet["events"]) for packet in aedat.Decoder(str(recording.path))
                    if packet["stream_id"] == stream)
    except Exception as err:  # noqa: BLE001 - the decoder's errors are plain exceptions
        raise FormatError(f"is a truncated or damaged AEDAT 4 file (the decoder: {err})",
                          where=recording.where) from err
    _claim_recording(recording, "cifar10dvs", count, transient=count * _AEDAT_EVENT_BYTES)


#: bytes of one event as the aedat decoder returns it (t u8, x u2, y u2, on bool)
_AEDAT_EVENT_BYTES = 13


def _check_gesture(recording: Recording) -> None:
    with open(recording.path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(handle)
        except ValueError as err:
            raise FormatError(f"is not a .npy array ({err})", where=recording.where) from err
        start = handle.tell()
    if dtype.hasobject or len(shape) != 2 or shape[1] != 4:
        raise DataError(f"holds a {dtype} array of shape {shape}; a DVS Gesture recording is an "
                        "[N, 4] array of x, y, p, t (ms)", where=recording.where)
    need = start + math.prod(shape) * dtype.itemsize
    size = recording.path.stat().st_size
    if size < need:
        raise FormatError(f"is truncated: its header declares {shape[0]} events "
                          f"({need:,} bytes) but the file has {size:,}", where=recording.where)
    _claim_recording(recording, "dvsgesture", shape[0], transient=need)


def _claim_recording(recording: Recording, name: str, events: int, transient: int) -> None:
    """Claim (:func:`sbc_deploy.safeio.claim`, ``--memory-budget``) what tonic's reader keeps
    of one recording -- ``events`` in its dataset's dtype -- and its working copies
    (``transient``: the raw file and its widened copy), from the sizes the file declares,
    before tonic reads it; refused with the hint to read fewer recordings."""
    from sbc_deploy.safeio import claim

    dtype = getattr(require_tonic().datasets, DATASETS[name].tonic_class).dtype
    try:
        claim(events * dtype.itemsize, f"{events:,} events as tonic reads them",
              recording.where, transient=transient)
    except FormatError as err:
        raise DataError(err.message, where=recording.where,
                        hint="read fewer recordings (--eval-limit, --calib-per-class) or raise "
                             "--memory-budget; a small file declaring that much is damaged"
                        ) from err


def _check_events(events: np.ndarray, recording: Recording, layout: Layout) -> None:
    if len(events) == 0:
        raise DataError("is an empty recording (no events)", where=recording.where)
    width, height, polarities = layout.sensor_size
    for field, limit in (("x", width), ("y", height)):
        if field in events.dtype.names:
            column = np.asarray(events[field]).astype(np.int64)
            if column.min() < 0 or column.max() >= limit:
                raise DataError(f"has events at {field} = {column.min()}..{column.max()}, "
                                f"outside the {layout.describe.split(' (')[0]} sensor "
                                f"({width}x{height})", where=recording.where)
    p = np.asarray(events["p"]).astype(np.int64)
    allowed = (1,) if polarities == 1 else (0, 1)
    if not np.all(np.isin(p, allowed)):
        raise DataError(f"has polarities {sorted(set(np.unique(p).tolist()))[:5]}; expected "
                        f"{' or '.join(map(str, allowed))}", where=recording.where)
    t = np.asarray(events["t"])
    if t.min() < 0 or not np.all(np.isfinite(t)):
        raise DataError("has negative or non-finite time stamps", where=recording.where)


def read_events(name: str, recordings: Sequence[Recording],
                progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """The events of each recording as tonic reads them, checked (time-sorted, stably);
    ``progress(done, total)`` after each recording.

    Raises:
        FormatError: a truncated or unreadable file.
        DataError: an empty recording, events outside the sensor, bad polarities or labels.
    """
    from sbc_deploy.safeio import reading

    layout = DATASETS[name]
    reader = _tonic_reader(name, recordings)
    out = []
    for i, recording in enumerate(recordings):
        if name == "nmnist":
            _check_nmnist(recording)
        elif name == "cifar10dvs":
            _check_aedat4(recording, layout.sensor_size)
        elif name == "dvsgesture":
            _check_gesture(recording)
        with reading(recording.where, layout.describe + " recording"):
            try:
                events, label = reader[recording.index if name == "shd" else i]
            except RuntimeError as err:   # the AEDAT 4 decoder's errors
                if name != "cifar10dvs":
                    raise
                raise FormatError(f"is a truncated or damaged AEDAT 4 file (the decoder: "
                                  f"{err})", where=recording.where) from err
        if recording.label is not None and int(label) != recording.label:
            raise DataError(f"tonic read label {label}, the layout says {recording.label}",
                            where=recording.where)
        _check_events(events, recording, layout)
        t = np.asarray(events["t"])
        if np.any(np.diff(t) < 0):
            events = events[np.argsort(t, kind="stable")]
        out.append(events)
        if progress is not None:
            progress(i + 1, len(recordings))
    return out


# --------------------------------------------------------------------------- binning


def frames_of(events: np.ndarray, sensor_size: tuple[int, int, int], binning: Binning,
              steps: int | None) -> np.ndarray:
    """Frames ``[T, P, H, W]`` (``[T, P, W]`` without ``y``) of one recording by tonic's
    ``ToFrame``; ``steps`` fixes ``T`` for time windows (frames start at the first event)."""
    transforms = require_tonic().transforms
    if binning.window_us is not None:
        t0 = float(np.asarray(events["t"])[0])
        if steps is None:
            steps = int((float(np.asarray(events["t"])[-1]) - t0) // binning.window_us) + 1
        to_frame = transforms.ToFrame(sensor_size=sensor_size, time_window=binning.window_us,
                                      start_time=t0, end_time=t0 + steps * binning.window_us)
    elif binning.event_count is not None:
        to_frame = transforms.ToFrame(sensor_size=sensor_size, event_count=binning.event_count)
    elif binning.time_bins is not None:
        to_frame = transforms.ToFrame(sensor_size=sensor_size, n_time_bins=binning.time_bins)
    else:
        to_frame = transforms.ToFrame(sensor_size=sensor_size, n_event_bins=binning.event_bins)
    return np.asarray(to_frame(events.copy()))


def frame_count(events: np.ndarray, binning: Binning) -> int:
    """How many frames tonic's ``ToFrame`` makes of one recording (before ``steps=``)."""
    if binning.window_us is not None:
        t = np.asarray(events["t"])
        return int((float(t[-1]) - float(t[0])) // binning.window_us) + 1
    if binning.event_count is not None:   # tonic drops the incomplete last slice
        count = binning.event_count
        return (len(events) - min(count, len(events))) // count + 1
    return int(binning.time_bins or binning.event_bins)  # type: ignore[arg-type]


def bin_dataset(events: Sequence[np.ndarray], sensor_size: tuple[int, int, int],
                binning: Binning, where: str,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Frames ``[N, T, *frame_shape]`` of several recordings on one ``T`` (see the module doc).

    The frame array is claimed from the run's read budget (:func:`sbc_deploy.safeio.claim`,
    ``--memory-budget``) before it is allocated.

    Raises:
        DataError: the frames would not fit the budget (the hint says how to bin coarser).
    """
    from sbc_deploy.safeio import claim

    steps = binning.steps or max(frame_count(e, binning) for e in events)
    width, height, polarities = sensor_size      # ToFrame: [P, H, W], or [P, W] without y
    frame_shape = (polarities, height, width) if _has_y(events[0]) else (polarities, width)
    itemsize = 1 if binning.binary else 2
    try:
        claim(len(events) * steps * math.prod(frame_shape) * itemsize,
              f"{len(events)} recordings binned into {steps} frames of {frame_shape}", where)
    except FormatError as err:
        raise DataError(err.message, where=where,
                        hint="bin coarser (a longer window=, fewer steps=), read fewer "
                             "recordings (--eval-limit, --calib-per-class) or raise "
                             "--memory-budget") from err
    out = np.zeros((len(events), steps, *frame_shape), dtype=np.uint8 if binning.binary
                   else np.uint16)
    for i, recording in enumerate(events):
        frames = frames_of(recording, sensor_size, binning,
                           steps if binning.window_us is not None else None)[:steps]
        out[i, :frames.shape[0]] = (frames > 0) if binning.binary else frames
        if progress is not None:
            progress(i + 1, len(events))
    if not binning.binary and int(out.max(initial=0)) <= np.iinfo(np.uint8).max:
        out = out.astype(np.uint8)
    return out


def _has_y(events: np.ndarray) -> bool:
    return "y" in (events.dtype.names or ())


# --------------------------------------------------------------------------- loading


def _window(binning: Binning, dt: float | None, where: str) -> Binning:
    """Resolve the time window against the model's ``dt`` (the window is the data's ``dt``)."""
    if binning.timed:
        if binning.window_us is None:
            if dt is None:
                raise DataError("event data needs dt (seconds per frame) or window= to be "
                                "binned", where=where,
                                hint="add window=1ms (or events=N, time-bins=N, ...) or pass "
                                     "--dt (the model's step)")
            return replace(binning, window_us=_whole_us(dt * 1e6))
        if dt is not None and not math.isclose(binning.window_us, dt * 1e6, rel_tol=1e-9):
            raise DataError(f"window={binning.window_us:g} us differs from the model's step "
                            f"dt={dt:g} s; a frame is one step", where=where,
                            hint="leave window= out to bin at dt, or import with --dt")
    elif dt is None:
        raise DataError("frames sliced by event count or by a number of bins carry no time; "
                        "their step dt is the model's", where=where, hint="pass --dt")
    return binning


def load_event_spec(spec: EventSpec, *, dt: float | None = None, steps: int | None = None,
                    limit: int | None = None, per_class: float | None = None, seed: int = 0,
                    progress: Callable[[int, int], None] | None = None) -> Dataset:
    """Read and bin an event dataset (see the module docstring).

    Args:
        spec: the parsed source.
        dt: the model's step in seconds (sets the window when the spec gives none; must equal
            it when it does).
        steps: frames per recording (the spec's ``steps=`` wins when both agree; they may not
            differ).
        limit: read only the first ``limit`` recordings (balanced across classes).
        per_class: read only a class-balanced draw (:mod:`~sbc_deploy.data.sampling`).
        seed: the draw's seed.
        progress: ``(done, total)`` after each recording is read.
    """
    where = spec.text
    binning = spec.binning
    if steps is not None and binning.steps is not None and steps != binning.steps:
        raise DataError(f"steps={binning.steps} in the spec but {steps} asked for", where=where)
    if steps is not None:
        binning = replace(binning, steps=int(steps))
    binning = _window(binning, dt, where)
    name, recordings = list_recordings(spec)
    if per_class is not None:
        labels = np.array([r.label if r.label is not None else -1 for r in recordings])
        if np.any(labels < 0):
            raise DataError("has no labels; samples per class needs labelled data", where=where)
        recordings = [recordings[i] for i in balanced_indices(labels, per_class, seed, where)]
    if limit is not None:
        recordings = recordings[:limit]
    events = read_events(name, recordings, progress)
    frames = bin_dataset(events, DATASETS[name].sensor_size, binning, where)
    labels = None if any(r.label is None for r in recordings) else \
        np.array([r.label for r in recordings], dtype=np.int64)
    step = binning.window_us * 1e-6 if binning.window_us is not None else float(dt)  # type: ignore[arg-type]
    return Dataset(x=frames, y=labels, dt=step, source=where)


__all__ = ["DATASETS", "Binning", "EventSpec", "Recording", "bin_dataset", "detect_dataset",
           "frames_of", "list_recordings", "load_event_spec", "parse_spec", "read_events"]
