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
- Layer solves: with independent layers (not ``propagation="sequential"``), the layers are
  dealt out over the ranks by their estimated cost (:func:`assign`) and the results gathered to
  every rank in layer order; solves are deterministic for equal inputs and equal thread
  settings (torchrun sets ``OMP_NUM_THREADS=1``: compare with a one-thread single-process run).
- The global allocation's loss curves: every (layer, prune count) point of every curve is an
  independent solve, dealt out and gathered the same way (:func:`map_spread`), so each rank
  measures its share and all of them allocate from the same complete curves.
- Sequential propagation: layer ``l``'s re-calibration on the already-compressed layers before
  it is a calibration like the first one (batches shared out, sums added in batch order); the
  solve of layer ``l`` itself needs that calibration and the next one needs its result, so it
  runs on every rank (a broadcast would only make the others wait for it).
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

__all__ = ["ProcessGroup", "active", "assign", "broadcast_from", "gather_in_rank_order",
           "is_writer", "map_spread", "session"]

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

    With a CUDA ``device`` each process binds the GPU of its ``LOCAL_RANK`` and joins with NCCL
    (one process on one GPU works too: ``torchrun --nproc-per-node 1``); otherwise gloo.

    Raises:
        ConfigError: not started by torchrun (its environment variables are missing); CUDA
            asked for but absent, fewer GPUs than processes on this machine, or ``cuda:N``
            naming another GPU than the process's.
    """
    missing = [name for name in ENV if name not in os.environ]
    if missing:
        raise ConfigError(f"--distributed needs the environment torchrun sets; missing "
                          f"{', '.join(missing)}", where="--distributed",
                          hint="torchrun --nproc-per-node 2 -m sbc_deploy ... --distributed")
    cuda = torch.device(device).type == "cuda"
    backend = "nccl" if cuda else "gloo"
    bound: torch.device | None = None
    if cuda:  # one GPU per process, chosen by torchrun's LOCAL_RANK, before NCCL starts
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA device",
                              where="--device", hint="--device cpu (gloo)")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        index = torch.device(device).index
        if index is not None and index != local:
            raise ConfigError(f"--device {device} under torchrun: process {local} of this "
                              f"machine runs on GPU {local} (its LOCAL_RANK)",
                              where="--device", hint="--device cuda")
        if local >= torch.cuda.device_count():
            raise ConfigError(f"process {local} of this machine needs GPU {local}, but only "
                              f"{torch.cuda.device_count()} are visible", where="--distributed",
                              hint="torchrun --nproc-per-node <= the number of GPUs")
        bound = torch.device("cuda", local)
        torch.cuda.set_device(bound)
        device = str(bound)
    owned = not dist.is_initialized()
    if owned:
        # NCCL bound to this process's GPU (collectives and barrier use it without guessing)
        dist.init_process_group(backend, device_id=bound)
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


def assign(costs: Sequence[float], world_size: int) -> list[int]:
    """The rank of each item: longest first, each to the least-loaded rank (lowest on a tie).

    Deterministic in ``costs`` alone, so every rank computes the same assignment without
    talking to the others. ``costs``: any estimate proportional to an item's work.
    """
    owners = [0] * len(costs)
    load = [0.0] * world_size
    for i in sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owners[i] = rank
        load[rank] += float(costs[i])
    return owners


def map_spread(fn: Callable[[int], T], count: int, group: ProcessGroup | None = None,
               to_cpu: Callable[[T], Any] | None = None,
               costs: Sequence[float] | None = None) -> list[T]:
    """``[fn(0), ..., fn(count - 1)]``, each item computed by one rank, the list on every rank.

    Items go to ranks by :func:`assign` on ``costs`` (default: equal costs, i.e. item ``i`` to
    rank ``i % world_size``); after each rank computed its items they are gathered to every
    rank in one collective and put back in item order. Without a group (or with one process)
    every item is computed here, in order. ``to_cpu`` prepares a result for pickling. ``fn``
    must not itself use collectives (the ranks run different items).
    """
    group = group if group is not None else active()
    if group is None or group.world_size == 1:
        return [fn(i) for i in range(count)]
    if costs is not None and len(costs) != count:
        raise ValueError(f"{len(costs)} costs for {count} items")
    owners = assign([1.0] * count if costs is None else costs, group.world_size)
    mine = {}
    for i in range(count):
        if owners[i] == group.rank:
            result = fn(i)
            mine[i] = to_cpu(result) if to_cpu is not None else result
    parts: list[dict[int, Any] | None] = [None] * group.world_size
    dist.all_gather_object(parts, mine)  # pickled: tensors keep their bits
    merged = {i: value for part in parts for i, value in (part or {}).items()}
    return [merged[i] for i in range(count)]
