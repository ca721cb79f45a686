"""The main-environment side of the framework interop tests (imported by the test modules as
``frameworks.harness``; the drivers beside it run in the frameworks' own environments and never
import this file).

- :func:`env_python` / :func:`run_driver`: a framework's driver in its environment
  (scripts/make_framework_envs.sh, default ``.fw-venvs/<env>``; ``SBC_FW_VENVS`` points
  elsewhere), skipping the test when that environment is absent.
- :func:`compare`: spike for spike (counts for multi-spike neurons), every step, sample and
  neuron.
- :func:`check_activity`: the network really works: ``>= MIN_RATE`` of the neurons of every
  spiking layer fire per step, ``>= MIN_OUTPUT_SPIKES`` output spikes, ``>= MIN_STEPS`` steps.
- :class:`Results`: every comparison, written at the end of the test module as
  ``build/compat-results/<module>.json`` (``SBC_COMPAT_DIR`` points elsewhere), from which
  scripts/compat_matrix.py renders README's table; a test module of another framework adds its
  rows by using one ``Results`` of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVERS = ROOT / "tests" / "frameworks"
RESULTS_DIR = Path(os.environ.get("SBC_COMPAT_DIR", ROOT / "build" / "compat-results"))

# framework -> the environment (scripts/make_framework_envs.sh) that runs its driver
ENVS = {"snntorch": "torch", "norse": "torch", "rockpool": "torch", "sinabs": "sinabs",
        "spyx": "spyx"}

MIN_RATE = 0.05  # fraction of a spiking layer's neurons that fire per step, averaged
MIN_OUTPUT_SPIKES = 300
MIN_STEPS = 50


def env_python(framework: str, env: str | None = None) -> Path:
    """The interpreter of ``framework``'s environment; skips the test when it is absent."""
    env = env or ENVS[framework]
    base = Path(os.environ.get("SBC_FW_VENVS", ROOT / ".fw-venvs"))
    python = base / env / "bin" / "python"
    if not python.exists():
        pytest.skip(f"the {env} framework environment ({python.parent.parent}) is absent; "
                    "create it with scripts/make_framework_envs.sh (CI does)")
    return python


def run_driver(framework: str, *args: str | Path, env: str | None = None,
               timeout: float = 600) -> None:
    """Run tests/frameworks/<framework>_driver.py with ``args`` in the framework's
    environment; AssertionError with its stderr when it fails."""
    driver = DRIVERS / f"{framework}_driver.py"
    done = subprocess.run([str(env_python(framework, env)), str(driver), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        raise AssertionError(f"{framework} driver {args[0]} failed (exit {done.returncode}):\n"
                             f"{done.stderr[-4000:]}")


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    """Entry-by-entry comparison of two spike arrays ``[T, B, ...]`` (counts allowed)."""
    candidate = np.asarray(candidate).reshape(reference.shape)
    differ = reference != candidate
    steps = np.flatnonzero(differ.reshape(differ.shape[0], -1).any(1))
    return {"exact": bool(not differ.any()), "spikes_reference": int(reference.sum()),
            "spikes_candidate": int(candidate.sum()), "differing": int(differ.sum()),
            "entries": int(reference.size),
            "first_differing_step": int(steps[0]) if steps.size else None,
            "max_count": float(reference.max()) if reference.size else 0.0}


def layer_rates(layers: list[np.ndarray]) -> list[float]:
    """Per spiking layer ``[T, B, ...]``: the fraction of its entries with at least one spike."""
    return [float((np.asarray(s) > 0).mean()) for s in layers]


def check_activity(rates: list[float], output: np.ndarray, what: str) -> None:
    """AssertionError unless the network really works (see the module docstring)."""
    assert output.shape[0] >= MIN_STEPS, f"{what}: {output.shape[0]} steps < {MIN_STEPS}"
    assert rates, f"{what}: no spiking layer recorded"
    quiet = [f"layer {k}: {r:.3f}" for k, r in enumerate(rates) if r < MIN_RATE]
    assert not quiet, f"{what}: layers fire < {MIN_RATE:.0%} per step ({', '.join(quiet)})"
    spikes = float(np.asarray(output).sum())
    assert spikes >= MIN_OUTPUT_SPIKES, f"{what}: {spikes:g} output spikes < {MIN_OUTPUT_SPIKES}"


class Results:
    """The comparisons of one test module, written as JSON when :meth:`write` is called
    (a module-scoped autouse fixture does it after the module's last test)."""

    def __init__(self, module: str) -> None:
        self.path = RESULTS_DIR / f"{module}.json"
        self.records: list[dict[str, Any]] = []
        self.versions: dict[str, dict[str, str]] = {}

    def record(self, **entry: Any) -> None:
        self.records.append(entry)

    def write(self) -> None:
        if not self.records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"versions": self.versions, "results": self.records},
                                  indent=1, default=str))
        tmp.replace(self.path)
