"""Frontends: trained networks in other formats -> the IR.

``load_model`` picks the reader from the file's content, not its name: an HDF5 file with a
``/node`` group is NIR, one with a ``/layer`` group is lava-dl netx. Everything else (a missing
file, a folder, a text file, a truncated or foreign HDF5 file) is a :class:`FormatError` that
names the file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import h5py

from sbc_deploy.errors import ConfigError, FormatError
from sbc_deploy.frontends.conventions import CONVENTIONS, get_convention
from sbc_deploy.frontends.from_netx import from_netx
from sbc_deploy.frontends.from_nir import from_nir
from sbc_deploy.ir import Graph
from sbc_deploy.safeio import reading, refuse_special, screen_hdf5

__all__ = ["CONVENTIONS", "detect_format", "from_netx", "from_nir", "load_model"]

log = logging.getLogger(__name__)

def detect_format(path: str | Path) -> Literal["nir", "netx"]:
    """``"nir"`` or ``"netx"`` from the file's content; :class:`FormatError` otherwise."""
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise FormatError("file does not exist", where=where)
    if path.is_dir():
        raise FormatError("is a directory, expected a model file (.nir, .net, .h5)", where=where)
    refuse_special(path)  # a FIFO or device would block or never end
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as err:
        raise FormatError(f"cannot be opened: {err}", where=where) from err
    if not is_hdf5:
        raise FormatError("is not an HDF5 file, so neither NIR nor netx", where=where,
                          hint="models are .nir (NIR) or .net/.h5 (lava-dl netx) HDF5 files")
    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
    except (OSError, ValueError) as err:
        raise FormatError(f"is a truncated or corrupt HDF5 file: {err}", where=where) from err
    if "node" in keys:
        return "nir"
    if "layer" in keys:
        return "netx"
    raise FormatError(f"HDF5 file holds neither a NIR graph (/node) nor a netx network (/layer); "
                      f"top-level keys: {sorted(keys)}", where=where)


def load_model(path: str | Path, *, dt: float | None = None,
               reset: Literal["zero", "subtract"] | None = None,
               source: str | None = None,
               discretization: Literal["euler", "exact"] | None = None,
               input_shape: tuple[int, ...] | None = None) -> Graph:
    """Read a NIR or netx model file into the IR, choosing the reader from the content.

    Args:
        path: a ``.nir`` or netx ``.net``/``.h5`` file.
        dt: seconds per step (required for NIR files without ``dt`` metadata whose framework
            does not fix one; a label for netx).
        reset: ``"zero"`` or ``"subtract"`` for NIR files without a reset mode; netx models
            always use Lava's hard reset, so only ``"zero"`` (or None) is accepted for them.
        source: the framework that wrote the file (see
            :data:`~sbc_deploy.frontends.conventions.CONVENTIONS`); None detects it where the
            file gives it away. ``"lava-dl"`` requires a netx file.
        discretization: ``"euler"`` or ``"exact"`` for NIR files; None takes the file's
            metadata, else the framework's convention.
        input_shape: the per-sample input shape ``(C, H, W)`` of a netx file whose first layer
            is a convolution and that has no input layer.

    Raises:
        FormatError: the file is missing, not HDF5, truncated, or neither NIR nor netx.
        ConfigError: ``reset="subtract"`` for a netx model, missing NIR ``dt``/``reset``, an
            unknown ``source``, or a ``source`` that does not match the file's format.
    """
    if source is not None:
        get_convention(source)
    with reading(path, "a NIR graph or a lava-dl netx network (HDF5)"):
        kind = detect_format(path)
        screen_hdf5(path)  # no link out of the file is followed, no absurd shape is read
    if kind == "nir":
        if source == "lava-dl":
            raise ConfigError("--from lava-dl names a netx file, but this file is NIR",
                              where=str(path), hint="leave --from out, or name the framework "
                                                    "that wrote the NIR file")
        with reading(path, "a NIR graph (HDF5 with /node)"):
            return from_nir(path, dt=dt, reset=reset, discretization=discretization,
                            framework=source)
    if source not in (None, "lava-dl"):
        raise ConfigError(f"--from {source} names a NIR writer, but this file is lava-dl netx",
                          where=str(path), hint="leave --from out (or use --from lava-dl)")
    if discretization is not None:
        log.info("netx is discrete-time: --discretization %s does not apply", discretization)
    if reset not in (None, "zero"):
        raise ConfigError(f"netx models use Lava's hard reset; reset={reset!r} cannot apply",
                          where=str(path), hint="leave --reset out for netx files")
    with reading(path, "a lava-dl netx network (HDF5 with /layer)"):
        return from_netx(path, dt=dt, input_shape=input_shape)
