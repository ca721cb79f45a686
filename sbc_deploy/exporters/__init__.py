"""Exporters: one table from format name to writer, all with the same call shape.

    EXPORTERS["netx"](graph, path, steps=T)   # lava-dl netx HDF5 (Loihi)
    EXPORTERS["nir"](graph, path, steps=T)    # NIR, dt and reset mode in its metadata
    EXPORTERS["nir"](graph, path, steps=T, nir_for="snntorch")  # NIR for one framework's importer
    EXPORTERS["onnx"](graph, path, steps=T)   # ONNX, one Scan over T steps with explicit state

Every writer checks the path before any work and writes atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

# Import the writers under private names: binding `to_netx` here would shadow the submodule
# sbc_deploy.exporters.to_netx with the function of the same name.
from sbc_deploy.exporters.to_netx import to_netx as _write_netx
from sbc_deploy.exporters.to_nir import write_nir as _write_nir
from sbc_deploy.exporters.to_onnx import to_onnx as _write_onnx
from sbc_deploy.ir import Graph

Exporter = Callable[..., Path]

FILE_NAMES: dict[str, str] = {"netx": "model.net", "nir": "model.nir", "onnx": "model.onnx"}


def _netx(graph: Graph, path: str | Path, *, steps: int) -> Path:
    return _write_netx(graph, path)


def _nir(graph: Graph, path: str | Path, *, steps: int, nir_for: str = "nir") -> Path:
    return _write_nir(graph, path, nir_for=nir_for)


def _onnx(graph: Graph, path: str | Path, *, steps: int) -> Path:
    return _write_onnx(graph, path, steps=steps)


EXPORTERS: dict[str, Exporter] = {"netx": _netx, "nir": _nir, "onnx": _onnx}


def export_path(out_dir: str | Path, fmt: str) -> Path:
    """Where ``fmt`` is written inside ``out_dir`` (model.net, model.nir, model.onnx)."""
    return Path(out_dir) / FILE_NAMES[fmt]


__all__ = ["EXPORTERS", "FILE_NAMES", "export_path"]
