"""Shared by the framework drivers (run inside each framework's own environment, not the main one).

A driver is ``python <framework>_driver.py produce OUTDIR`` or
``python <framework>_driver.py consume MODEL.nir INPUT.npz OUTPUT.npz [MODEL INPUT OUTPUT ...]``
(several models in one process: the framework is imported once). Only numpy and the
standard library are used here, so that every framework environment can import it.

Exchange files (.npz): ``x`` is the input ``[T, B, *input_shape]`` (float32), ``spikes`` the output
``[T, B, *output_shape]`` of the network's last layer, as the framework computed it. ``produce``
also writes ``OUTDIR/manifest.json``: one entry per case with its name, the NIR file, the
neuron types, the framework's settings (dt, reset) and the versions of the packages involved.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

T, B = 12, 4  # time steps and samples per case: small, so that a case runs in well under 1 s


def versions(*packages: str) -> dict[str, str]:
    return {p: md.version(p) for p in packages}


def bernoulli(shape: tuple[int, ...], p: float, seed: int) -> np.ndarray:
    """Input spikes ``[T, B, *shape]`` with firing probability ``p`` (fixed seed)."""
    rng = np.random.default_rng(seed)
    return (rng.random((T, B, *shape)) < p).astype(np.float32)


def save_case(outdir: Path, name: str, x: np.ndarray, spikes: np.ndarray,
              **info: Any) -> dict[str, Any]:
    np.savez(outdir / f"{name}.npz", x=np.asarray(x, np.float32),
             spikes=np.asarray(spikes, np.float32))
    return {"name": name, "nir": f"{name}.nir", "data": f"{name}.npz", **info}


def main(produce: Callable[[Path], list[dict[str, Any]]],
         consume: Callable[[Path, np.ndarray], np.ndarray], packages: tuple[str, ...]) -> None:
    """Command-line entry of a driver: dispatch ``produce`` / ``consume`` (see the module doc)."""
    command, *args = sys.argv[1:]
    if command == "produce":
        outdir = Path(args[0])
        outdir.mkdir(parents=True, exist_ok=True)
        cases = produce(outdir)
        (outdir / "manifest.json").write_text(json.dumps(
            {"versions": versions(*packages), "cases": cases}, indent=1))
    elif command == "consume" and args and len(args) % 3 == 0:
        for i in range(0, len(args), 3):
            model, inputs, output = Path(args[i]), Path(args[i + 1]), Path(args[i + 2])
            try:
                spikes = consume(model, np.load(inputs)["x"])
            except Exception:  # one model failing in the framework must not hide the others
                np.savez(output, error=traceback.format_exc()[-4000:],
                         versions=json.dumps(versions(*packages)))
                continue
            np.savez(output, spikes=np.asarray(spikes, np.float32),
                     versions=json.dumps(versions(*packages)))
    else:
        sys.exit(f"unknown command {command!r}: produce OUTDIR | consume MODEL INPUT OUTPUT")
