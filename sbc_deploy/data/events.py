"""Address events (x, y, polarity, time) and their binning into frames of ``dt`` seconds.

An event list is a structured array with the fields of :data:`EVENT_DTYPE`: ``x`` (column),
``y`` (row), ``p`` (polarity: 1 ON, 0 OFF) and ``t`` (time stamp in microseconds). An
``[N, 4]`` array with the columns ``x, y, p, t`` is accepted wherever an event list is.

Frames have the shape ``[T, 2, H, W]``: channel 0 holds OFF events, channel 1 ON events, row
``y``, column ``x``. Frame ``k`` covers the time stamps ``k * dt <= t < (k + 1) * dt``
(``t`` counted from ``t_start``). ``mode="count"`` keeps the number of events per pixel and
bin; ``mode="binary"`` keeps whether there was at least one (a spike), which is the default
because the networks consume spikes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from sbc_deploy.errors import DataError

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])
NMNIST_SENSOR: tuple[int, int] = (34, 34)  # (width, height)
BinMode = Literal["binary", "count"]


def make_events(x: np.ndarray, y: np.ndarray, p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A structured event list from four equally long columns (``t`` in microseconds)."""
    columns = [np.asarray(c).reshape(-1) for c in (x, y, p, t)]
    if len({c.size for c in columns}) != 1:
        raise DataError(f"event columns differ in length: {[c.size for c in columns]}")
    events = np.empty(columns[0].size, dtype=EVENT_DTYPE)
    for name, column in zip("xypt", columns):
        events[name] = column
    return events


def as_events(events: np.ndarray, where: str = "events") -> np.ndarray:
    """Validate an event list (structured or ``[N, 4]`` x, y, p, t) and return it structured.

    Raises:
        DataError: missing fields, a wrong shape, negative coordinates or times, a polarity
            other than 0/1, or non-integer values.
    """
    array = np.asarray(events)
    if array.dtype.names is not None:
        missing = [f for f in "xypt" if f not in array.dtype.names]
        if missing:
            raise DataError(f"structured events lack the fields {missing}; have "
                            f"{list(array.dtype.names)}", where=where)
        columns = [array[f].reshape(-1) for f in "xypt"]
    else:
        if array.ndim != 2 or array.shape[1] != 4:
            raise DataError(f"events must be a structured array or an [N, 4] array of x, y, p, t;"
                            f" got shape {array.shape}", where=where)
        columns = [array[:, i] for i in range(4)]
    for name, column in zip("xypt", columns):
        if column.size and not np.issubdtype(column.dtype, np.integer) and (
                not np.all(np.isfinite(column)) or not np.array_equal(column, np.round(column))):
            raise DataError(f"event field {name!r} holds non-integer values", where=where)
        if column.size and column.min() < 0:
            raise DataError(f"event field {name!r} holds negative values", where=where)
    if columns[2].size and not np.all(np.isin(columns[2], (0, 1))):
        raise DataError("event polarity must be 0 (OFF) or 1 (ON)", where=where)
    return make_events(*columns)


def _bin_index(t_us: np.ndarray, dt: float) -> np.ndarray:
    """Bin of each time stamp: ``floor(t / dt)``, exact when ``dt`` is a whole number of us."""
    dt_us = dt * 1e6
    if abs(dt_us - round(dt_us)) < 1e-6 and round(dt_us) >= 1:
        return t_us // round(dt_us)
    return np.floor(t_us / dt_us).astype(np.int64)


def default_steps(durations_us: Sequence[int] | np.ndarray, dt: float) -> int:
    """Enough bins of ``dt`` seconds to hold the longest recording (last stamp included)."""
    longest = int(np.max(durations_us)) if len(durations_us) else 0
    return max(1, int(_bin_index(np.asarray([longest]), dt)[0]) + 1)


def bin_events(events: np.ndarray, dt: float, steps: int | None = None, *,
               sensor_size: tuple[int, int] = NMNIST_SENSOR, mode: BinMode = "binary",
               t_start: int = 0) -> np.ndarray:
    """Frames ``[T, 2, H, W]`` of the events (see the module docstring for the layout).

    Args:
        events: an event list (time stamps in microseconds).
        dt: bin length in seconds.
        steps: number of bins ``T``; events at or after ``t_start + T * dt`` are dropped.
            ``None``: as many as the last event needs.
        sensor_size: ``(width, height)``; events outside it raise.
        mode: ``"count"`` (``uint16`` event counts) or ``"binary"`` (``uint8`` 0/1).
        t_start: time stamp (us) of the start of bin 0; earlier events are dropped.

    Returns:
        ``uint8`` (binary) or ``uint16`` (count) frames.
    """
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise DataError(f"dt must be a positive number of seconds, got {dt!r}")
    if mode not in ("binary", "count"):
        raise DataError(f"mode must be 'binary' or 'count', got {mode!r}")
    events = as_events(events)
    width, height = sensor_size
    if events.size and (events["x"].max() >= width or events["y"].max() >= height):
        raise DataError(f"events reach x={events['x'].max()}, y={events['y'].max()}, outside the "
                        f"{width}x{height} sensor")
    t = events["t"] - int(t_start)
    index = _bin_index(t, dt)
    if steps is None:
        steps = int(index.max()) + 1 if index.size else 1
    if steps < 1:
        raise DataError(f"steps must be >= 1, got {steps}")
    keep = (t >= 0) & (index < steps)
    flat = np.ravel_multi_index((index[keep], events["p"][keep].astype(np.int64),
                                 events["y"][keep].astype(np.int64),
                                 events["x"][keep].astype(np.int64)), (steps, 2, height, width))
    counts = np.bincount(flat, minlength=steps * 2 * height * width).reshape(steps, 2, height,
                                                                              width)
    if mode == "binary":
        return (counts > 0).astype(np.uint8)
    if counts.max(initial=0) > np.iinfo(np.uint16).max:
        raise DataError("more than 65535 events in one pixel and bin; use a shorter dt")
    return counts.astype(np.uint16)


def bin_recordings(recordings: Sequence[np.ndarray], dt: float, steps: int | None = None, *,
                   sensor_size: tuple[int, int] = NMNIST_SENSOR,
                   mode: BinMode = "binary") -> np.ndarray:
    """Frames ``[N, T, 2, H, W]`` for several recordings binned on one common ``T``.

    ``steps=None`` takes the ``T`` that holds the longest recording.
    """
    if not len(recordings):
        raise DataError("no recordings to bin")
    if steps is None:
        durations = [int(as_events(r)["t"].max()) if len(r) else 0 for r in recordings]
        steps = default_steps(durations, dt)
    from sbc_deploy.safeio import claim  # frames by their size, before allocating them

    width, height = sensor_size
    claim(len(recordings) * int(steps) * 2 * width * height * (1 if mode == "binary" else 2),
          f"{len(recordings)} recording(s) binned into {int(steps):,} steps of {dt:g} s",
          "event data")
    first = bin_events(recordings[0], dt, steps, sensor_size=sensor_size, mode=mode)
    frames = np.empty((len(recordings), *first.shape), dtype=first.dtype)
    frames[0] = first
    for i, events in enumerate(recordings[1:], start=1):
        frames[i] = bin_events(events, dt, steps, sensor_size=sensor_size, mode=mode)
    return frames
