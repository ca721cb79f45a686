"""N-MNIST recordings in the dataset's native binary format, one file or the split folders.

Each event takes 40 bits, five bytes, most significant first (the format described with the
dataset, Orchard et al. 2015)::

    byte 0      x address (0..33)
    byte 1      y address (0..33)
    byte 2      bit 7: polarity (1 ON, 0 OFF); bits 6..0: time stamp bits 22..16
    bytes 3, 4  time stamp bits 15..0

The time stamp counts microseconds from the start of the recording (23 bits, at most 8.4 s).
The dataset's folders are ``Train/<digit>/*.bin`` and ``Test/<digit>/*.bin``; the label is
the name of the digit folder.

Reading is tonic's (``tonic.io.read_mnist_file``, what ``tonic.datasets.NMNIST`` reads with),
after a check that the file holds whole events; the folder listing is the one of
:mod:`~sbc_deploy.data.tonic_sets`. Writing (tonic has no writer) is here.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from sbc_deploy.data.events import as_events, make_events
from sbc_deploy.errors import DataError, FormatError
from sbc_deploy.fileio import write_atomic

logger = logging.getLogger(__name__)

BYTES_PER_EVENT = 5
SPLITS: tuple[str, ...] = ("Train", "Test")


def decode_nmnist(raw: bytes | np.ndarray, where: str = "N-MNIST data") -> np.ndarray:
    """Decode the bytes of one recording into an event list (time stamps in microseconds).

    Raises:
        FormatError: the bytes are not a whole number of 5-byte events (a truncated file).
    """
    from sbc_deploy.data.tonic_sets import require_tonic

    data = bytes(raw) if isinstance(raw, (bytes, bytearray)) \
        else np.asarray(raw, dtype=np.uint8).reshape(-1).tobytes()
    if len(data) % BYTES_PER_EVENT:
        raise FormatError(f"has {len(data)} bytes, not a multiple of {BYTES_PER_EVENT} "
                          "(N-MNIST stores 40-bit events; truncated?)", where=where)
    from sbc_deploy.data.tonic_sets import check_nmnist_overflows
    from sbc_deploy.safeio import claim

    dtype = require_tonic().datasets.NMNIST.dtype
    count = len(data) // BYTES_PER_EVENT   # tonic keeps them in its dtype; its working copy
    claim(count * dtype.itemsize, f"{count:,} events as tonic reads them", where,
          transient=4 * len(data))
    check_nmnist_overflows(np.frombuffer(data, dtype=np.uint8), where)
    events = require_tonic().io.read_mnist_file(io.BytesIO(data), dtype=dtype, is_stream=True)
    return make_events(events["x"], events["y"], events["p"], events["t"])


def encode_nmnist(events: np.ndarray) -> bytes:
    """The native 40-bit encoding of an event list (the inverse of :func:`decode_nmnist`)."""
    events = as_events(events)
    if events.size and (events["x"].max() > 255 or events["y"].max() > 255):
        raise DataError("N-MNIST addresses are 8 bits; an event lies beyond 255")
    if events.size and events["t"].max() >= 1 << 23:
        raise DataError("N-MNIST time stamps are 23 bits (< 8,388,608 us)")
    t = events["t"].astype(np.int64)
    words = np.empty((events.size, BYTES_PER_EVENT), dtype=np.uint8)
    words[:, 0] = events["x"]
    words[:, 1] = events["y"]
    words[:, 2] = (events["p"].astype(np.int64) << 7) | (t >> 16)
    words[:, 3] = (t >> 8) & 0xFF
    words[:, 4] = t & 0xFF
    return words.tobytes()


def read_nmnist_bin(path: str | Path) -> np.ndarray:
    """Read one ``.bin`` recording.

    Raises:
        FormatError: the file is missing, unreadable, or not a whole number of events.
    """
    path = Path(path)
    from sbc_deploy.safeio import claim, refuse_special

    refuse_special(path)  # a FIFO named *.bin in a folder would block
    try:
        claim(0, "the file's bytes", str(path), transient=path.stat().st_size)  # before reading
        raw = path.read_bytes()
    except OSError as err:
        raise FormatError(f"cannot read: {err.strerror or err}", where=str(path)) from err
    events = decode_nmnist(raw, where=str(path))
    if events.size and np.any(np.diff(events["t"]) < 0):
        logger.debug("%s: time stamps are not monotone", path)
    return events


def write_nmnist_bin(path: str | Path, events: np.ndarray) -> Path:
    """Write an event list as a native N-MNIST ``.bin`` file (atomically)."""
    raw = encode_nmnist(events)
    return write_atomic(path, lambda tmp: tmp.write_bytes(raw))


def nmnist_files(root: str | Path) -> list[tuple[Path, int]]:
    """``(file, label)`` for every recording under an N-MNIST folder.

    ``root`` is a split folder holding digit folders (``.../Test``), or the dataset folder
    when it holds exactly one of ``Train`` / ``Test``. The files are interleaved across the
    classes (first file of each class, then the second, ...) so that a prefix is balanced.

    Raises:
        DataError: no digit folders, both splits present (ambiguous), or no ``.bin`` files.
    """
    from sbc_deploy.data.tonic_sets import Binning, EventSpec, list_recordings

    root = Path(root)
    if not root.is_dir():
        raise DataError("is not a folder", where=str(root))
    _, recordings = list_recordings(EventSpec("nmnist", root, None, Binning(), str(root)))
    return [(r.path, int(r.label)) for r in recordings if r.label is not None]


def read_nmnist_folder(root: str | Path, limit: int | None = None
                       ) -> tuple[list[np.ndarray], np.ndarray]:
    """Event lists and labels of the recordings under ``root`` (first ``limit``, interleaved)."""
    files = nmnist_files(root)
    if limit is not None:
        files = files[:limit]
    recordings = [read_nmnist_bin(path) for path, _ in files]
    labels = np.array([label for _, label in files], dtype=np.int64)
    return recordings, labels
