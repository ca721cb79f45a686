"""Progress inside one layer's solve: the solvers say how far their loops have come.

The compression passes report whole layers through their ``progress(done, total)`` argument; a
large layer can take minutes, so the solvers also tick their own units (ADMM iterations, OBS
columns, rows) through this module. A pass opens :func:`layer` around each layer's solve with
the caller's listener; outside such a block :func:`tick` does nothing, so the solvers stay pure
functions for every other caller (tests, loss curves, benchmarks).

    with layer(i, listener):           # listener(i, phase, done, total, unit)
        admm_prune(...)                # tick("prune", it + 1, iters, "iterations")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Listener = Callable[[int, str, int, int, str], None]  # (layer index, phase, done, total, unit)

_current: ContextVar[tuple[int, Listener] | None] = ContextVar("sbc_compress_meter",
                                                               default=None)

__all__ = ["Listener", "layer", "tick"]


@contextmanager
def layer(index: int, listener: Listener | None) -> Iterator[None]:
    """Send the ticks of the solves inside this block to ``listener`` as layer ``index``."""
    if listener is None:
        yield
        return
    token = _current.set((index, listener))
    try:
        yield
    finally:
        _current.reset(token)


def tick(phase: str, done: int, total: int, unit: str) -> None:
    """``done`` of ``total`` ``unit`` of ``phase`` (``"prune"`` or ``"quantize"``) are solved."""
    current = _current.get()
    if current is not None:
        current[1](current[0], phase, int(done), int(total), unit)
