"""The main-environment side of the framework interop tests (imported by the test modules as
``frameworks.harness``; the drivers beside it run in the frameworks' own environments and never
import this file).

- :func:`env_python` / :func:`run_driver`: a framework's driver command in its environment
  (scripts/make_framework_envs.sh, default ``.fw-venvs/<env>``; ``SBC_FW_VENVS`` points
  elsewhere), skipping the test when that environment is absent. One process per environment
  (tests/frameworks/serve.py) runs every command of the test session, so each framework is
  imported once; :func:`shutdown` ends them (a test module's teardown, or the session's end).
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

import atexit
import json
import os
import select
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVERS = ROOT / "tests" / "frameworks"
RESULTS_DIR = Path(os.environ.get("SBC_COMPAT_DIR", ROOT / "build" / "compat-results"))

# framework -> the environment (scripts/make_framework_envs.sh) that runs its driver
ENVS = {"snntorch": "torch", "norse": "torch", "rockpool": "torch", "sinabs": "sinabs",
        "spyx": "spyx", "spikingjelly": "spikingjelly"}

MIN_RATE = 0.05  # fraction of a spiking layer's neurons that fire per step, averaged
MIN_OUTPUT_SPIKES = 300
MIN_STEPS = 50


def env_interpreter(env: str) -> Path:
    """Where the interpreter of the framework environment ``env`` is (it may be absent)."""
    return Path(os.environ.get("SBC_FW_VENVS", ROOT / ".fw-venvs")) / env / "bin" / "python"


def env_python(framework: str | None = None, env: str | None = None) -> Path:
    """The interpreter of ``framework``'s environment, or of the environment named ``env``;
    skips the test when it is absent."""
    env = env or ENVS[str(framework)]
    python = env_interpreter(env)
    if not python.exists():
        pytest.skip(f"the {env} framework environment ({python.parent.parent}) is absent; "
                    "create it with scripts/make_framework_envs.sh (CI does)")
    return python


class _Server:
    """tests/frameworks/serve.py running in one framework environment (see the module doc)."""

    def __init__(self, python: Path) -> None:
        self.log: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
        self.process = subprocess.Popen(
            [str(python), str(DRIVERS / "serve.py")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})

    def call(self, driver: str, argv: list[str], timeout: float) -> dict[str, Any]:
        """Run one command; its answer, or ``{"ok": False, "error": ...}`` when the process
        died or ran past ``timeout`` (then it is killed)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps({"driver": driver, "argv": argv}) + "\n")
            self.process.stdin.flush()
            ready, _, _ = select.select([self.process.stdout], [], [], timeout)
            line = self.process.stdout.readline() if ready else ""
        except OSError:
            line = ""
        if line:
            return json.loads(line)
        why = f"ran past {timeout:g} s" if self.process.poll() is None else \
            f"exited with {self.process.returncode}"
        self.close(kill=True)
        return {"ok": False, "error": f"the driver process {why}"}

    def log_tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def close(self, kill: bool = False) -> None:
        """End the process: stdin closed (it exits when its command is done), or killed."""
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            elif self.process.stdin is not None:
                try:
                    self.process.stdin.close()
                except OSError:
                    pass
            try:  # it has answered every command: nothing is lost if its exit is slow
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


_SERVERS: dict[Path, _Server] = {}


def run_driver(framework: str, *args: str | Path, env: str | None = None,
               timeout: float = 600) -> None:
    """Run the command ``args`` of tests/frameworks/<framework>_driver.py in the framework's
    environment (its environment's process, started on first use); AssertionError with the
    traceback and the process's log when it fails."""
    python = env_python(framework, env)
    server = _SERVERS.get(python)
    if server is None or server.process.poll() is not None:
        server = _SERVERS[python] = _Server(python)
    answer = server.call(framework, [str(a) for a in args], timeout)
    if not answer["ok"]:
        if server.process.poll() is not None:
            _SERVERS.pop(python, None)
        raise AssertionError(f"{framework} driver {args[0]} failed:\n{answer['error']}\n"
                             f"--- its environment's log:\n{server.log_tail()}")


@atexit.register
def shutdown() -> None:
    """End every environment's process (they also end when this process does)."""
    while _SERVERS:
        _SERVERS.popitem()[1].close()


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
