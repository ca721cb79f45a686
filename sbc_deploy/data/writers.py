"""Small event recordings in the native formats of the datasets tonic reads, and events to put
in them.

These make the test files and the example's miniature datasets (nothing is downloaded); each
writer follows the format's own description:

- N-MNIST ``.bin``: :func:`sbc_deploy.data.nmnist.write_nmnist_bin` (40-bit events, Orchard et
  al. 2015);
- CIFAR10-DVS ``.aedat4`` (:func:`write_aedat4`): AEDAT 4.0 as the ``aedat`` decoder that tonic
  uses reads it (the ``#!AER-DAT4.0\\r\\n`` magic, a little-endian ``uint32`` length and an
  ``IOHE`` flatbuffer header whose description is DV's XML, with one ``EVTS`` stream of
  ``sizeX`` x ``sizeY``; then packets of ``uint32`` stream id, ``uint32`` length and a
  size-prefixed ``EVTS`` flatbuffer ``EventPacket`` whose ``elements`` are 16-byte ``Event``
  structs ``t: int64, x: int16, y: int16, on: bool``; the schema is in
  neuromorphicsystems/aedat's ``flatbuffers/``),
  uncompressed, no trailing data table (``file_data_position = -1``: read to the end);
- DVS128 Gesture ``.npy`` (:func:`write_gesture_npy`): tonic's preprocessed form, an ``[N, 4]``
  integer array of x, y, p, t in milliseconds;
- SHD ``.h5`` (:func:`write_shd_h5`): ``spikes/times`` (variable-length float16 seconds, as
  tonic's own SHD test files), ``spikes/units`` (variable-length uint16), ``labels`` (uint16),
  ``extra/keys`` and ``extra/speaker`` (the layout on the dataset's page).

:func:`nmnist_like_events` draws recordings that match the statistics of real N-MNIST
recordings (shared/reference/nmnist-statistics.md): ~4,100 events (5th-95th percentile
2,259-6,003), half ON, 297-336 ms in three saccades holding 35.8 / 32.6 / 31.6 % of the events,
at most two events per pixel per millisecond.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sbc_deploy.data.events import make_events
from sbc_deploy.errors import DataError
from sbc_deploy.fileio import write_atomic

AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
#: N-MNIST statistics (shared/reference/nmnist-statistics.md)
NMNIST_EVENTS_MEAN, NMNIST_EVENTS_SD = 4108, 1140        # 5th / 95th pct 2,259 / 6,003
SACCADE_SHARES = (0.358, 0.326, 0.316)


def nmnist_like_events(rng: np.random.Generator, *, sensor: tuple[int, int] = (34, 34),
                       n_events: int | None = None, duration_us: int | None = None,
                       shape_seed: int | None = None) -> np.ndarray:
    """One recording of a digit-like shape moved in three saccades (``EVENT_DTYPE``, sorted).

    Args:
        rng: the generator.
        sensor: ``(width, height)``; the shape is scaled to it.
        n_events: events before thinning (default: drawn from N-MNIST's distribution).
        duration_us: length (default: 297-336 ms as N-MNIST's).
        shape_seed: seed of the stroke pattern (the "digit"); ``None``: drawn from ``rng``.
    """
    width, height = sensor
    if n_events is None:
        n_events = int(np.clip(rng.normal(NMNIST_EVENTS_MEAN, NMNIST_EVENTS_SD), 1500, 8000))
    if duration_us is None:
        duration_us = int(rng.uniform(296_800, 336_000))
    shape_rng = np.random.default_rng(shape_seed if shape_seed is not None
                                      else int(rng.integers(1 << 31)))
    side_x, side_y = max(2, int(width * 28 / 34)), max(1, int(height * 28 / 34))
    strokes = shape_rng.integers(0, [side_x, side_y], size=(max(8, side_x * side_y // 6), 2))
    saccade = rng.choice(3, size=n_events, p=SACCADE_SHARES)
    third = duration_us / 3
    t = ((saccade + rng.uniform(0, 1, n_events)) * third).astype(np.int64)
    phase = (t - saccade * third) / third                       # 0..1 within the saccade
    # N-MNIST's three saccades: up-right, down-right, then left back to the start (pixels)
    sx = np.select([saccade == 0, saccade == 1], [3.5 * phase, 3.5 + 3.5 * phase], 7 - 7 * phase)
    sy = np.select([saccade == 0, saccade == 1], [7 * phase, 7 - 7 * phase], 0 * phase)
    scale = np.array([width / 34, height / 34])
    pick = strokes[rng.integers(0, len(strokes), n_events)]
    margin = ((width - side_x) // 2, (height - side_y) // 2)
    x = np.clip(np.round(pick[:, 0] + margin[0] - 3 * scale[0] + sx * scale[0]), 0, width - 1)
    y = np.clip(np.round(pick[:, 1] + margin[1] - 3 * scale[1] + sy * scale[1]), 0, height - 1)
    p = rng.integers(0, 2, n_events)
    order = np.argsort(t, kind="stable")
    events = make_events(x[order], y[order], p[order], t[order])
    # at most two events per pixel and millisecond, as in the real recordings
    key = (events["t"] // 1000) * (width * height) + events["y"].astype(np.int64) * width \
        + events["x"]
    return events[_rank_within(key) < 2]


def _rank_within(key: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements share its key."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    start = np.r_[0, np.flatnonzero(np.diff(sorted_key)) + 1]
    run = np.repeat(start, np.diff(np.r_[start, len(key)]))
    rank = np.empty(len(key), dtype=np.int64)
    rank[order] = np.arange(len(key)) - run
    return rank


def _aedat4_description(width: int, height: int) -> str:
    base = "/mainloop/Recorder/outInfo/"
    return ("<dv version=\"2.0\">"
            f"<node name=\"outInfo\" path=\"{base}\">"
            f"<node name=\"0\" path=\"{base}0/\">"
            "<attr key=\"compression\" type=\"string\">NONE</attr>"
            "<attr key=\"originalModuleName\" type=\"string\">capture</attr>"
            "<attr key=\"originalOutputName\" type=\"string\">events</attr>"
            "<attr key=\"typeIdentifier\" type=\"string\">EVTS</attr>"
            f"<node name=\"info\" path=\"{base}0/info/\">"
            f"<attr key=\"sizeX\" type=\"int\">{width}</attr>"
            f"<attr key=\"sizeY\" type=\"int\">{height}</attr>"
            "<attr key=\"source\" type=\"string\">DVS128</attr>"
            "</node></node></node></dv>")


def _ioheader(description: str) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(len(description) + 64)
    text = builder.CreateString(description)
    builder.StartObject(3)
    builder.PrependInt32Slot(0, 0, 0)                   # compression: None
    builder.PrependInt64Slot(1, -1, -1)                 # file_data_position: -1 (read to end)
    builder.PrependUOffsetTRelativeSlot(2, text, 0)     # description
    builder.Finish(builder.EndObject(), file_identifier=b"IOHE")
    return bytes(builder.Output())


def _event_packet(t: np.ndarray, x: np.ndarray, y: np.ndarray, on: np.ndarray) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(16 * len(t) + 64)
    builder.StartVector(16, len(t), 8)
    for i in range(len(t) - 1, -1, -1):                 # flatbuffers build back to front
        builder.Prep(8, 16)                             # struct Event, 16 bytes, 8-aligned
        builder.Pad(3)
        builder.PrependBool(bool(on[i]))
        builder.PrependInt16(int(y[i]))
        builder.PrependInt16(int(x[i]))
        builder.PrependInt64(int(t[i]))
    elements = builder.EndVector()
    builder.StartObject(1)
    builder.PrependUOffsetTRelativeSlot(0, elements, 0)
    builder.FinishSizePrefixed(builder.EndObject(), file_identifier=b"EVTS")
    return bytes(builder.Output())


def write_aedat4(path: str | Path, events: np.ndarray, *, sensor: tuple[int, int] = (128, 128),
                 packet_events: int = 1024, t_offset_us: int = 0) -> Path:
    """Write events (fields ``x, y, p, t``, ``t`` in us) as an uncompressed AEDAT 4 file.

    ``t_offset_us`` is added to every time stamp (DV files carry wall-clock microseconds).
    """
    import struct

    description = _aedat4_description(*sensor)
    chunks = [AEDAT4_MAGIC]
    header = _ioheader(description)
    chunks += [struct.pack("<I", len(header)), header]
    t = np.asarray(events["t"], dtype=np.int64) + int(t_offset_us)
    for start in range(0, len(t), packet_events):
        part = slice(start, start + packet_events)
        packet = _event_packet(t[part], np.asarray(events["x"])[part],
                               np.asarray(events["y"])[part], np.asarray(events["p"])[part])
        chunks += [struct.pack("<II", 0, len(packet)), packet]
    raw = b"".join(chunks)
    return write_atomic(path, lambda tmp: tmp.write_bytes(raw))


def write_gesture_npy(path: str | Path, events: np.ndarray) -> Path:
    """Write events (``t`` in us, whole milliseconds) as tonic's DVS Gesture ``[N, 4]`` array
    of x, y, p, t (ms)."""
    t = np.asarray(events["t"], dtype=np.int64)
    if np.any(t % 1000):
        raise DataError("DVS Gesture files keep whole milliseconds; round t first",
                        where=str(path))
    table = np.stack([np.asarray(events[f], dtype=np.int64) for f in "xyp"] + [t // 1000],
                     axis=1)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, table)

    return write_atomic(path, write)


def write_shd_h5(path: str | Path, samples: Sequence[tuple[np.ndarray, np.ndarray]],
                 labels: Sequence[int], *, keys: Sequence[str] | None = None,
                 speakers: Sequence[int] | None = None) -> Path:
    """Write SHD samples, each ``(times in seconds, units)``, with their labels."""
    import h5py

    keys = list(keys) if keys is not None else [f"class-{i}" for i in range(20)]
    speakers = list(speakers) if speakers is not None else [0] * len(samples)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as handle:
            times = handle.create_dataset("spikes/times", (len(samples),),
                                          dtype=h5py.vlen_dtype(np.float16))
            units = handle.create_dataset("spikes/units", (len(samples),),
                                          dtype=h5py.vlen_dtype(np.uint16))
            for i, (t, u) in enumerate(samples):
                times[i] = np.asarray(t, dtype=np.float16)
                units[i] = np.asarray(u, dtype=np.uint16)
            handle.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
            handle.create_dataset("extra/keys", data=np.array(keys, dtype="S"))
            handle.create_dataset("extra/speaker", data=np.asarray(speakers, dtype=np.uint16))

    return write_atomic(path, write)


__all__ = ["nmnist_like_events", "write_aedat4", "write_gesture_npy", "write_shd_h5"]
