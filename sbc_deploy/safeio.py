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
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from sbc_deploy.errors import FormatError, SbcDeployError

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


def screen_hdf5(path: str | Path, *, max_dataset_bytes: int = MAX_DATASET_BYTES) -> None:
    """Refuse an HDF5 file whose structure would make a reader leave the file or blow up.

    Walks every link from the root without following soft or external links (each object once).

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
                              f"more than a model file can hold", where=where)
        if ds.chunks is None and ds.compression is None and nbytes > size:
            raise FormatError(f"dataset '{name}' declares shape {shape} ({nbytes:,} bytes) but "
                              f"the file has only {size:,} bytes (truncated or damaged)",
                              where=where)

    seen: set[object] = set()
    count = 0

    def walk(group: h5py.Group, prefix: str, depth: int) -> None:
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
                walk(obj, name, depth + 1)
            elif isinstance(obj, h5py.Dataset):
                check_dataset(obj, name)

    with reading(path, "an HDF5 model file"):
        with h5py.File(path, "r") as handle:
            check_attrs(handle, "/")
            walk(handle, "", 0)


def _has_ref(dtype: object, h5py: object) -> bool:
    """True when a compound dtype has a reference-typed field."""
    fields = getattr(dtype, "fields", None)
    if not fields:
        return False
    return any(h5py.check_dtype(ref=sub) is not None or _has_ref(sub, h5py)  # type: ignore
               for sub, *_ in fields.values())


__all__ = ["MAX_DATASET_BYTES", "reading", "screen_hdf5"]
