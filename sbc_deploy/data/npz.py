"""Datasets as ``.npz`` files: ``x`` [N, T, *input_shape], optional ``y`` [N] and ``dt``.

Keys read:

- ``x``: inputs per time step, ``[N, T, *input_shape]``, numeric, finite;
- or, for binary spikes stored compactly, ``x_packbits`` (``np.packbits`` of the 0/1 array,
  C order) with ``x_shape`` (the array's shape); :func:`write_npz` writes this form for 0/1
  data, which keeps the bundled evaluation set small;
- ``y`` (optional): ``[N]`` integer class labels (whole-valued floats are accepted);
- ``dt`` (optional): the step length in seconds.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import Literal

import numpy as np

from sbc_deploy.data.dataset import Dataset
from sbc_deploy.errors import DataError, FormatError
from sbc_deploy.fileio import write_atomic
from sbc_deploy.safeio import claim

_READ = ("x", "y", "dt", "x_packbits", "x_shape")  # the members read_npz reads


def _scalar_dt(value: np.ndarray, where: str) -> float:
    array = np.asarray(value)
    if array.size != 1 or not (np.issubdtype(array.dtype, np.integer)
                               or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"'dt' must be one number of seconds, got {array!r}", where=where)
    dt = float(array.reshape(-1)[0])
    if not math.isfinite(dt) or dt <= 0:
        raise DataError(f"'dt' must be a positive number of seconds, got {dt}", where=where)
    return dt


def _labels(value: np.ndarray, n: int, where: str) -> np.ndarray:
    y = np.asarray(value)
    if y.ndim != 1:
        raise DataError(f"'y' must be 1-D [N] class labels, got shape {y.shape}", where=where)
    if y.shape[0] != n:
        raise DataError(f"'y' has {y.shape[0]} labels but 'x' has {n} samples", where=where)
    if y.dtype == np.bool_ or not (np.issubdtype(y.dtype, np.integer)
                                   or np.issubdtype(y.dtype, np.floating)):
        raise DataError(f"'y' must hold integer class labels, got dtype {y.dtype}", where=where)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)):
            raise DataError("'y' holds NaN or infinite labels", where=where)
        if not np.array_equal(y, np.round(y)):
            bad = y[y != np.round(y)][:3]
            raise DataError(f"'y' must hold integer class labels, got non-integer values such as "
                            f"{bad.tolist()}", where=where)
    if y.size and y.max() > 2**62:  # no int64 wrap-around into a "valid" label
        raise DataError(f"'y' holds a label of {y.max()}, far beyond any class count",
                        where=where)
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise DataError(f"'y' holds a negative label ({y.min()})", where=where)
    return y


def _inputs(archive: np.lib.npyio.NpzFile, where: str) -> np.ndarray:
    keys = set(archive.files)
    if "x" in keys:
        x = archive["x"]
    elif {"x_packbits", "x_shape"} <= keys:
        shape = tuple(int(v) for v in np.asarray(archive["x_shape"]).reshape(-1))
        count = math.prod(shape)
        if any(v < 0 for v in shape):
            raise DataError(f"'x_shape' holds a negative axis: {shape}", where=where)
        bits = np.asarray(archive["x_packbits"], dtype=np.uint8).reshape(-1)  # claimed
        if bits.size != (count + 7) // 8:
            raise DataError(f"'x_packbits' holds {bits.size} bytes; shape {shape} needs "
                            f"{(count + 7) // 8}", where=where)
        claim(count, "'x' (bit-packed, unpacked to one byte per value)", where)
        x = np.unpackbits(bits, count=count).reshape(shape)
    else:
        raise DataError(f"has no 'x' array (keys: {sorted(keys) or 'none'}); expected 'x' of "
                        "shape [N, T, *input_shape] and optional 'y' [N] and 'dt'", where=where)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"'x' must be numeric, got dtype {x.dtype}", where=where)
    if np.iscomplexobj(x):
        raise DataError(f"'x' must hold real numbers, got dtype {x.dtype}", where=where)
    if x.ndim < 3:
        raise DataError(f"'x' must have shape [N, T, *input_shape] (3-D or more), got {x.shape}",
                        where=where, hint="a single sample needs a leading axis of 1")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise DataError(f"'x' holds {int(np.count_nonzero(~np.isfinite(x)))} NaN or infinite "
                        "values", where=where)
    return x.astype(np.uint8) if x.dtype == np.bool_ else x


def _screen(path: Path, where: str, keys: Collection[str] | None = None) -> None:
    """Refuse members whose header declares more bytes than the member holds (a damaged shape
    would otherwise make numpy allocate it before reading) and members that are not arrays;
    claim the declared sizes of the members read (safeio.claim: --memory-budget) before any
    is decompressed (``keys``: the members a reader will read; default this module's)."""
    declared: dict[str, tuple[tuple[int, ...], int]] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            if dtype.hasobject:
                raise DataError(f"'{info.filename[:-4]}' holds Python objects (pickled data is "
                                "never loaded)", where=where)
            nbytes = math.prod(int(v) for v in shape) * dtype.itemsize
            if nbytes > info.file_size:
                raise FormatError(f"'{info.filename[:-4]}' declares shape {tuple(shape)} "
                                  f"({nbytes:,} bytes) but holds {info.file_size:,} bytes "
                                  "(truncated or damaged)", where=where)
            if info.filename[:-4] in (_READ if keys is None else keys):  # before it is read
                declared[info.filename[:-4]] = (tuple(shape), nbytes)
    if declared:
        claim(sum(n for _, n in declared.values()),
              "its arrays " + ", ".join(f"'{k}' {shape}" for k, (shape, _) in declared.items()),
              where)


def _check_magic(path: Path, where: str) -> None:
    """Refuse a file that is no zip archive before numpy reads it (numpy would take any other
    file for a pickle and answer with its allow_pickle advice)."""
    try:
        with open(path, "rb") as file:
            head = file.read(4)
    except FileNotFoundError as err:
        raise FormatError("no such file", where=where) from err
    except OSError as err:
        raise FormatError(f"cannot be read ({err.strerror or err})", where=where) from err
    if head == b"PK\x03\x04" or head == b"PK\x05\x06":  # a zip archive (an empty one)
        return
    if head == b"\x93NUM":
        raise FormatError("holds a single array (.npy), not an .npz archive with 'x' (and 'y')",
                          where=where)
    kind = ("empty" if not head else
            "text" if all(32 <= c < 127 or c in (9, 10, 13) for c in head) else "binary data")
    raise FormatError(f"is not a readable .npz archive: the file is {kind}, not a zip archive",
                      where=where, hint="calibration and evaluation data are an .npz with x "
                                        "[N, T, *input] (and optional y), an N-MNIST .bin file "
                                        "or an N-MNIST folder")


def read_npz(path: str | Path, *, dt: float | None = None) -> Dataset:
    """Read a dataset from ``path``.

    Args:
        path: the ``.npz`` file.
        dt: the step length to use when the file stores none. When both are given they must
            agree (to 1e-9 relative): frames cannot be re-binned.

    Raises:
        FormatError: missing or not an npz archive.
        DataError: missing keys, wrong dimensions, non-integer labels, NaNs, no ``dt``.
    """
    path = Path(path)
    where = str(path)
    _check_magic(path, where)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError as err:
        raise FormatError("no such file", where=where) from err
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise FormatError(f"is not a readable .npz archive ({err})", where=where) from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise FormatError("holds a single array, not an .npz archive with 'x' (and 'y')",
                          where=where)
    try:
        _screen(path, where)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        archive.close()
        raise FormatError(f"is not a readable .npz archive ({err})", where=where) from err
    except BaseException:
        archive.close()
        raise
    with archive:
        try:
            x = _inputs(archive, where)
            y = _labels(archive["y"], x.shape[0], where) if "y" in archive.files else None
            file_dt = _scalar_dt(archive["dt"], where) if "dt" in archive.files else None
        except ValueError as err:  # object arrays refused by allow_pickle=False
            raise DataError(f"holds an array numpy cannot read without pickle ({err})",
                            where=where) from err
    if file_dt is None and dt is None:
        raise DataError("stores no 'dt' and none was given", where=where,
                        hint="add a 'dt' entry (seconds per step) or pass dt / --dt")
    if file_dt is not None and dt is not None and not math.isclose(file_dt, dt, rel_tol=1e-9):
        raise DataError(f"was recorded with dt={file_dt:g} s but dt={dt:g} s was asked for; "
                        "frames cannot be re-binned", where=where)
    return Dataset(x=x, y=y, dt=file_dt if file_dt is not None else float(dt), source=where)


def write_npz(path: str | Path, dataset: Dataset,
              pack: Literal["auto", "always", "never"] = "auto") -> Path:
    """Write ``dataset`` atomically (compressed); 0/1 inputs are bit-packed unless ``pack="never"``.

    Raises:
        DataError: ``pack="always"`` for inputs that are not all 0 or 1.
    """
    x = dataset.x
    binary = bool(np.all((x == 0) | (x == 1)))
    if pack == "always" and not binary:
        raise DataError("cannot bit-pack inputs that are not all 0 or 1", where=str(path))
    arrays: dict[str, np.ndarray] = {"dt": np.asarray(dataset.dt, dtype=np.float64)}
    if binary and pack != "never":
        arrays["x_packbits"] = np.packbits(x.astype(np.uint8).reshape(-1))
        arrays["x_shape"] = np.asarray(x.shape, dtype=np.int64)
    else:
        arrays["x"] = x
    if dataset.y is not None:
        arrays["y"] = dataset.y.astype(np.int64)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    return write_atomic(path, write)
