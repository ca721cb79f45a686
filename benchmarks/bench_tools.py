"""What the benchmark scripts share: their paths, the process's memory counters, best-of
timing, and writing a result where its command says.

Imported by the scripts beside it (``python benchmarks/NAME.py`` puts this folder first on
``sys.path``); nothing here runs at import.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

T = TypeVar("T")


def memory_field(field: str) -> int:
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ...) in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Reset the process's peak resident memory (VmHWM) to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def best_time(call: Callable[[], T], repeats: int) -> tuple[float, T | None]:
    """The least wall time of ``repeats`` calls (the machine is shared), and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    return best, result


def publish(text: str, out: Path | str | None) -> None:
    """Write ``text`` to ``out`` atomically (when given) and to the terminal."""
    if out is not None:
        from sbc_deploy.fileio import write_text_atomic

        write_text_atomic(out, text)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


__all__ = ["HERE", "ROOT", "best_time", "memory_field", "publish", "reset_peak"]
