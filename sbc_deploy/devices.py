"""Devices and threads: where tensors live and how many CPU threads torch may use.

One room for every stage (calibration, compression, both simulators, the pipeline): a device
name is checked once here, with one message, and torch's intra-op thread count is changed only
inside :func:`torch_threads`, which restores it.

Example::

    >>> dev = resolve_device("cpu")                 # a ConfigError for "cuda" without CUDA
X
    ...     pass
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from sbc_deploy.errors import ConfigError

__all__ = ["available_cores", "default_threads", "resolve_device", "torch_threads"]


def resolve_device(device: str | torch.device, where: str = "device") -> torch.device:
    """The torch device; a ConfigError (at ``where``) when it is malformed, or CUDA (or the
    numbered GPU) is asked for and absent."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"not a torch device: {device!r}", where=where) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA was asked for but is not available", where=where)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"{device!r} names GPU {dev.index}, but this machine has "
                          f"{torch.cuda.device_count()}", where=where)
    return dev


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """Torch's current intra-op thread count, capped at :func:`available_cores`."""
    return min(torch.get_num_threads(), available_cores())


@contextlib.contextmanager
def torch_threads(threads: int | None, where: str = "threads") -> Iterator[int]:
    """Run a block with ``threads`` torch intra-op threads (``None``: leave them) and restore
    the previous setting afterwards; yields the count in force.

    Raises:
        ConfigError: ``threads`` is below 1 (at ``where``).
    """
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}", where=where)
        torch.set_num_threads(int(threads))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
