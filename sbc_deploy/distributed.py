r"""Many processes on ``torch.distributed``: sharded calibration, spread layer solves, one writer.

Run under ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...)::

    torchrun --nproc-per-node 2 -m sbc_deploy model.nir --calib c.npz --distributed -o out/

Backends: gloo on CPU, NCCL when the run's device is CUDA (one GPU per process, by
``LOCAL_RANK``).

What is spread, and why the result is the single-process result bit for bit:

- Calibration: batch ``b`` (the same global batches of ``batch_size`` sequences as one process
  makes) is simulated by rank ``b % world_size``. Each batch's float64 sums
  (:class:`~sbc_deploy.compress.hessian.BatchSum`) are gathered to every rank after each round
  and added **in global batch order**, the order one process adds them in. Float addition is
  not associative, so an all-reduce (whose order depends on the ring) would not do.
- Layer solves: with independent layers (not ``propagation="sequential"``), layer ``i`` is
  solved by rank ``i % world_size`` and its result broadcast; solves are deterministic for
  equal inputs and equal thread settings (torchrun sets ``OMP_NUM_THREADS=1``: compare with a
  one-thread single-process run).
- Outputs: only rank 0 writes (report, exports); the others return after compression.

The active process group is a context value (:func:`session`), so that the stages (calibrate,
compress) consult it without new arguments threading through the pipeline.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from sbc_deploy.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["ProcessGroup", "active", "broadcast_from", "gather_in_rank_order", "is_writer",
           "map_spread", "session"]

ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the run.

    Attributes:
        rank: this process (0 writes the outputs).
        world_size: processes in the run.
        backend: ``"gloo"`` or ``"nccl"``.
        device: torch device of this process's tensors.
    """

    rank: int
    world_size: int
    backend: str
    device: str = "cpu"

    @property
    def writer(self) -> bool:
        return self.rank == 0


_ACTIVE: contextvars.ContextVar[ProcessGroup | None] = contextvars.ContextVar(
    "sbc_deploy_process_group", default=None)


def active() -> ProcessGroup | None:
    """The process group of the current :func:`session`, or ``None`` (one process)."""
    return _ACTIVE.get()


def is_writer() -> bool:
    """Whether this process writes outputs (always, without a session)."""
    group = active()
    return group is None or group.writer


@contextlib.contextmanager
def session(device: str = "cpu") -> Iterator[ProcessGroup]:
    """Join the run that ``torchrun`` started, make it active for the block, then leave it.

    Raises:
        ConfigError: not started by torchrun (its environment variables are missing).
    """
    missing = [name for name in ENV if name not in os.environ]
    if missing:
        raise ConfigError(f"--distributed needs the environment torchrun sets; missing "
                          f"{', '.join(missing)}", where="--distributed",
                          hint="torchrun --nproc-per-node 2 -m sbc_deploy ... --distributed")
    cuda = torch.device(device).type == "cuda"
    backend = "nccl" if cuda else "gloo"
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend)
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    group = ProcessGroup(dist.get_rank(), dist.get_world_size(), backend, device)
    token = _ACTIVE.set(group)
    log.info("process %d of %d (%s)", group.rank, group.world_size, backend)
    try:
        yield group
    finally:
        _ACTIVE.reset(token)
        if owned:
            dist.barrier()
            dist.destroy_process_group()


def gather_in_rank_order(parts: Sequence[torch.Tensor] | None, shapes: Sequence[tuple[int, ...]],
                         group: ProcessGroup, device: torch.device | str = "cpu",
                         ) -> list[list[torch.Tensor] | None]:
    """Every rank's float64 tensors (or ``None``: nothing this round), on every rank.

    ``shapes``: the tensors' shapes (the same on every rank). Returns one entry per rank, in
    rank order, each the rank's tensors or ``None``.
    """
    sizes = [int(torch.Size(s).numel()) for s in shapes]
    flat = torch.zeros(sum(sizes) + 1, dtype=torch.float64, device=device)
    if parts is not None:
        flat[0] = 1.0  # present
        offset = 1
        for part, size in zip(parts, sizes):
            flat[offset:offset + size] = part.reshape(-1)
            offset += size
    gathered = [torch.empty_like(flat) for _ in range(group.world_size)]
    dist.all_gather(gathered, flat)
    out: list[list[torch.Tensor] | None] = []
    for g in gathered:
        if float(g[0]) == 0.0:
            out.append(None)
            continue
        tensors, offset = [], 1
        for shape, size in zip(shapes, sizes):
            tensors.append(g[offset:offset + size].reshape(shape))
            offset += size
        out.append(tensors)
    return out


def broadcast_from(obj: T | None, src: int, group: ProcessGroup) -> T:
    """``obj`` of rank ``src`` on every rank (pickled; tensors keep their bits)."""
    box = [obj if group.rank == src else None]
    device = torch.device(group.device) if group.backend == "nccl" else None
    dist.broadcast_object_list(box, src=src, device=device)
    return box[0]  # type: ignore[return-value]


def map_spread(fn: Callable[[int], T], count: int, group: ProcessGroup | None = None,
               to_cpu: Callable[[T], Any] | None = None) -> list[T]:
    """``[fn(0), ..., fn(count - 1)]``, item ``i`` computed by rank ``i % world_size``.

    Without a group every item is computed here. ``to_cpu`` prepares a result for pickling.
    """
    group = group if group is not None else active()
    if group is None or group.world_size == 1:
        return [fn(i) for i in range(count)]
    # every rank computes its own items first, then the results travel in item order
    mine = {}
    for i in range(group.rank, count, group.world_size):
        result = fn(i)
        mine[i] = to_cpu(result) if to_cpu is not None else result
    return [broadcast_from(mine.get(i), i % group.world_size, group) for i in range(count)]
