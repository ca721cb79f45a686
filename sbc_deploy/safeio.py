"""A safety layer around every reader of user files (models, data, targets).

Two guarantees, whatever the bytes of the file:

1. :func:`reading` turns any failure inside a reader (h5py's ``RuntimeError`` / ``KeyError`` /
   ``OSError`` on a damaged file, numpy's ``ValueError`` or ``MemoryError`` on an absurd shape,
   a ``RecursionError`` ...) into a :class:`~sbc_deploy.errors.FormatError` that names the file
   and what it was expected to be. An :class:`~sbc_deploy.errors.SbcDeployError` raised by the
   reader itself passes through unchanged.
2. :func:`screen_hdf5` inspects an HDF5 file's links and datasets *before* a reader touches its
   data, without following anything: external links, virtual datasets (both point to other
   files) and object or region references are refused, and so are datasets that declare more
   bytes than a model file can hold (a flipped byte in a shape would otherwise make numpy
   allocate terabytes).
3. :func:`claim`: every reader states what it is about to allocate, from the sizes a file
   *declares* (an npz member's shape, a bit-packed array's unpacked size, an HDF5 file's
   datasets), before reading it. Inside :func:`read_budget` (the pipeline passes
   ``--memory-budget``) the claims of one run add up and may not exceed the budget; outside it
   each claim is held to half the machine's memory. A 4 MB compressed file that unpacks to
   gigabytes is refused, naming the size and the smallest budget that would read it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import stat
from pathlib import Path
from typing import Any, Iterator

from sbc_deploy.errors import FormatError, SbcDeployError
from sbc_deploy.untrusted import shown

# [limit, bytes claimed so far] of the enclosing read_budget(), or None
_BUDGET: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("sbc_read_budget",
                                                                           default=None)


def default_read_budget() -> int:
    """Half the machine's physical memory (the default of ``--memory-budget``)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 4 * 1024**3


@contextlib.contextmanager
def read_budget(limit: int | None) -> Iterator[None]:
    """Within this block the readers' :func:`claim` s add up and may not exceed ``limit``
    bytes (``None``: :func:`default_read_budget`)."""
    token = _BUDGET.set([int(limit) if limit else default_read_budget(), 0])
    try:
        yield
    finally:
        _BUDGET.reset(token)


_SPECIAL = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def special_file(path: str | Path) -> str | None:
    """What ``path`` is when it exists and is not a regular file or a folder (``"a FIFO (named
    pipe)"``, a device, a socket), else ``None``. Only ``stat``: nothing is opened, so a FIFO
    with no writer cannot block."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    for test, name in _SPECIAL:
        if test(mode):
            return name
    return None


def refuse_special(path: str | Path, error: type[SbcDeployError] = FormatError) -> None:
    """Raise ``error`` when ``path`` is a FIFO, a device or a socket (reading one could wait
    forever or never end), before anything opens it."""
    kind = special_file(path)
    if kind is not None:
        raise error(f"is {kind}, not a regular file; refused without reading it",
                    where=shown(path))


def _binary(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.3g} {unit}"
        count /= 1024
    return f"{count:.3g} TiB"


def _mib(count: int) -> str:
    return f"{-(-count // 1024**2)}MiB"


def claim(nbytes: int, what: str, where: str, transient: int = 0) -> None:
    """Account for ``nbytes`` that a reader is about to allocate for ``what`` (read from
    ``where``) and keep, before it reads them; ``transient`` more bytes the reader needs only
    while it reads (its working copies) must fit as well but are not added to the run's total.

    Raises:
        FormatError: the claims would exceed the budget; the message names the declared size,
            the budget and the smallest ``--memory-budget`` that would read the data.
    """
    state = _BUDGET.get()
    limit, used = (default_read_budget(), 0) if state is None else state
    total = used + int(nbytes)
    peak = total + int(transient)
    if peak > limit:
        scope = " (with the data read before it)" if used else ""
        working = f" (and {int(transient):,} more while reading)" if transient else ""
        raise FormatError(
            f"{what} declares {int(nbytes):,} bytes once read{working}{scope}, more than the "
            f"budget of {_binary(limit)} (--memory-budget) allows; the smallest budget that "
            f"reads it is about {_mib(peak)}", where=shown(where),
            hint=f"--memory-budget {_mib(peak)} or more if the file really holds that much; "
                 "a small file declaring that much is damaged or a decompression bomb")
    if state is not None:
        state[1] = total

#: Largest dataset a model file may declare (bytes); real models are far below it.
MAX_DATASET_BYTES = 1 << 30
#: Most objects an HDF5 model file may hold (NIR graphs have a handful per node).
MAX_OBJECTS = 200_000
_MAX_DEPTH = 64


@contextlib.contextmanager
def reading(path: str | Path, expected: str) -> Iterator[None]:
    """Turn any exception of the enclosed reader into a :class:`FormatError` naming ``path``.

    Args:
        path: the file (or folder) being read; named in the message.
        expected: what the file should be, e.g. ``"a NIR graph (HDF5)"``.
    """
    try:
        yield
    except SbcDeployError:
        raise
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except MemoryError as err:
        raise FormatError(f"cannot be read as {expected}: it declares more data than fits in "
                          "memory (a damaged size field?)", where=str(path)) from err
    except RecursionError as err:
        raise FormatError(f"cannot be read as {expected}: it is nested too deeply",
                          where=str(path)) from err
    except Exception as err:  # noqa: BLE001 - the point of this layer
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
        detail = f"{type(err).__name__}: {text}" if text else type(err).__name__
        raise FormatError(f"cannot be read as {expected} (damaged or not that format: "
                          f"{detail[:300]})", where=str(path)) from err


# Long: one walk over the file with its checks as closures sharing the walk's counters
# (objects seen, bytes declared, depth); the closures are short, the walk is one unit.
def screen_hdf5(path: str | Path, *, max_dataset_bytes: int = MAX_DATASET_BYTES,
                kind: str = "model") -> None:
    """Refuse an HDF5 file whose structure would make a reader leave the file or blow up.

    Walks every link from the root without following soft or external links (each object once).
    ``kind`` names the file in the messages (``"model"``, ``"SHD"``).

    Raises:
        FormatError: an external link, a virtual dataset, a reference-typed dataset or
            attribute, a dataset larger than ``max_dataset_bytes`` or larger than the file
            itself while stored uncompressed, too many objects or too deep a hierarchy, or a
            file h5py cannot walk at all.
    """
    import h5py
    import numpy as np

    path = Path(path)
    where = str(path)
    size = path.stat().st_size

    def refuse(message: str) -> FormatError:
        return FormatError(message, where=where,
                           hint="model files must be self-contained HDF5 (no links or "
                                "references to other files)")

    def check_attrs(obj: object, name: str) -> None:
        attrs = obj.attrs  # type: ignore[attr-defined]
        for key in attrs.keys():
            dtype = attrs.get_id(key).dtype
            if h5py.check_dtype(ref=dtype) is not None or _has_ref(dtype, h5py):
                raise refuse(f"attribute '{key}' of '{name}' holds HDF5 references")

    def check_dataset(ds: h5py.Dataset, name: str) -> None:
        if ds.is_virtual:
            raise refuse(f"'{name}' is a virtual dataset (its data lives in other files)")
        if h5py.check_dtype(ref=ds.dtype) is not None or _has_ref(ds.dtype, h5py):
            raise refuse(f"'{name}' holds HDF5 object or region references")
        if ds.external:
            raise refuse(f"'{name}' stores its data in external files")
        shape = ds.shape or ()
        count = int(np.prod(shape, dtype=object)) if shape else 1
        nbytes = count * max(int(ds.dtype.itemsize), 1)
        if nbytes > max_dataset_bytes:
            raise FormatError(f"dataset '{name}' declares shape {shape} ({nbytes:,} bytes), "
                              f"more than a {kind} file can hold", where=where)
        if ds.chunks is None and ds.compression is None and nbytes > size:
            raise FormatError(f"dataset '{name}' declares shape {shape} ({nbytes:,} bytes) but "
                              f"the file has only {size:,} bytes (truncated or damaged)",
                              where=where)

    seen: set[object] = set()
    count = 0

    def walk(group: h5py.Group, prefix: str, depth: int, on_dataset: Any) -> None:
        nonlocal count
        if depth > _MAX_DEPTH:
            raise FormatError(f"groups nest deeper than {_MAX_DEPTH} levels at '{prefix}'",
                              where=where)
        for key in group.keys():
            name = f"{prefix}/{key}"
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise refuse(f"'{name}' is an external link to {link.filename}:{link.path}; "
                             "it is not followed")
            if isinstance(link, h5py.SoftLink):
                continue  # points inside the file; readers see the object at its own path
            count += 1
            if count > MAX_OBJECTS:
                raise FormatError(f"holds more than {MAX_OBJECTS:,} objects", where=where)
            obj = group[key]
            token = obj.id.__hash__()
            check_attrs(obj, name)
            if isinstance(obj, h5py.Group):
                if token in seen:
                    continue
                seen.add(token)
                walk(obj, name, depth + 1, on_dataset)
            elif isinstance(obj, h5py.Dataset):
                on_dataset(obj, name)

    declared = 0

    def check_sized(ds: h5py.Dataset, name: str) -> None:
        nonlocal declared
        check_dataset(ds, name)
        shape = ds.shape or ()
        declared += (int(np.prod(shape, dtype=object)) if shape else 1) * \
            max(int(ds.dtype.itemsize), 1)

    with reading(path, f"an HDF5 {kind} file"):
        with h5py.File(path, "r") as handle:
            check_attrs(handle, "/")
            walk(handle, "", 0, check_sized)
    claim(declared, f"the {kind} file's datasets", where)


def _has_ref(dtype: object, h5py: object) -> bool:
    """True when a compound dtype has a reference-typed field."""
    fields = getattr(dtype, "fields", None)
    if not fields:
        return False
    return any(h5py.check_dtype(ref=sub) is not None or _has_ref(sub, h5py)  # type: ignore
               for sub, *_ in fields.values())


__all__ = ["MAX_DATASET_BYTES", "claim", "default_read_budget", "read_budget", "reading",
           "refuse_special", "screen_hdf5", "special_file"]
