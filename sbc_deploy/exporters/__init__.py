"""Exporters: one table from format name to writer, all with the same call shape.

    EXPORTERS["netx"](graph, path, steps=T)   # lava-dl netx HDF5 (Loihi)
    EXPORTERS["nir"](graph, path, steps=T)    # NIR, dt and reset mode in its metadata
    EXPORTERS["onnx"](graph, path, steps=T)   # ONNX, one Scan over T steps with explicit state

Every writer checks the path before any work and writes atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from sbc_deploy.exporters.to_netx import plan_netx, to_netx
from sbc_deploy.exporters.to_nir import to_nir, write_nir
from sbc_deploy.exporters.to_onnx import build_onnx, to_onnx
from sbc_deploy.ir import Graph

Exporter = Callable[..., Path]

FILE_NAMES: dict[str, str] = {"netx": "model.net", "nir": "model.nir", "onnx": "model.onnx"}


def _netx(graph: Graph, path: str | Path, *, steps: int) -> Path:
    return to_netx(graph, path)


def _nir(graph: Graph, path: str | Path, *, steps: int) -> Path:
    return write_nir(graph, path)


def _onnx(graph: Graph, path: str | Path, *, steps: int) -> Path:
    return to_onnx(graph, path, steps=steps)


EXPORTERS: dict[str, Exporter] = {"netx": _netx, "nir": _nir, "onnx": _onnx}


def export_path(out_dir: str | Path, fmt: str) -> Path:
    """Where ``fmt`` is written inside ``out_dir`` (model.net, model.nir, model.onnx)."""
    return Path(out_dir) / FILE_NAMES[fmt]


__all__: list[Any] = ["EXPORTERS", "FILE_NAMES", "build_onnx", "export_path", "plan_netx",
                      "to_netx", "to_nir", "to_onnx", "write_nir"]
