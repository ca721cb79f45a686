r"""Per-stage memory estimates, made before any work starts, and the cheaper forms they choose.

Stage contract: ``Graph`` + the run's sizes (samples per batch, steps) + a budget in bytes ->
:class:`MemoryPlan` (frozen): the estimated peak of every stage, the layers whose Hessian is
made block-diagonal so that the run fits, and notes saying so. :func:`plan_memory` raises
:class:`MemoryBudgetError` when no allowed form fits.

The estimates are upper bounds of the process's peak resident memory during each stage, from
shapes alone, term by term what the code allocates (simulator values ``float32``, Hessians and
the solver's weights ``float64``; ``|W_l| = n_out * n_in`` weights, ``|H_l|`` Hessian values,
``S = sum_l |H_l| * 8`` bytes of Hessian sums). benchmarks/memory_accuracy.py measures them
against the peaks of real runs (benchmarks/results/memory_accuracy.md).

Each stage states its own need beside its code, and this module only adds them up:
:func:`sbc_deploy.sim.float_sim.simulation_bytes` (simulate),
:func:`sbc_deploy.calibrate.calibration_bytes` (calibrate, with the Hessian sums' sizes of
:mod:`sbc_deploy.compress.hessian`: ``hessian_size``, ``accumulation_bytes``,
``final_copy_bytes``), :func:`sbc_deploy.compress.passes.compression_bytes` (compress, with
``compress.layer_solve.solve_bytes``); the terms, stage by stage::

    every      RUNTIME (Python, torch and the package: 512 MiB) + the graph's arrays (weights
               and per-neuron parameters)
               + the data held by the caller (``data_bytes``)
    simulate   the chunk actually simulated: (time_chunk, batch_chunk) from
               sim.chunk_plan(sim_memory_budget), times the largest set of node values alive
               at once in the schedule (a value lives from its node to its last consumer; a
               synapse also holds two copies of its input for the SynOps count and a
               convolution its im2col columns, a neuron its drive and spikes: 3 x its output)
               + the outputs kept whole (twice: the chunks and their concatenation)
               + the batch's input sequence (twice: the caller's and the float copy)
               + the simulator's float32 copy of the weights and NEURON_PARAMETERS float32
                 values per neuron
    calibrate  the same for one calibration batch in time chunks of calibrate.time_chunk
               (the whole batch, chunks of CHUNK_BYTES of the widest value)
               + S (the totals: one buffer per layer, the chunks' GEMMs go straight in)
               + the summing of one layer's chunk: its input in float64, the filtered copy,
                 its channels-last copy and the carried frames (4 x 8 bytes per input value),
                 the carried frames of every kernel and the unfolded rows
                 ((kernels + 3) * CHUNK_ELEMENTS * 8) and one GEMM's result (|H_l| * 8)
               (or, at the end, instead of the chunk: the frozen copy of one layer's totals,
                 and for a Conv2d's channels-last sums their permuted clone: max_l of
                 |H_l| * 8 * (1, or 2 + 2 / kernels))
               + S and world x max_l |H_l| * 8 more under torch.distributed (batch sums)
    evaluate compressed (the pipeline's evaluation after compress)
               simulate + S (the calibration, kept for further targets) + sum_l |W_l| * 12
               (the compressed graph's float64 weights and the simulator's float32 copy)
    compress   2 * S (the calibration's sums and the solver's float64 copy of every
               layer's H, made for all layers before the allocation)
               + sum_l |W_l| * 8 (every layer's W in float64)
               + sum_l |W_l| * 17 (every layer's result: Q float64, the mask, the new
               float64 weights)
               + max over layers of the solve: C_H * |H of one solve| * 8 + C_W * n_out *
                 (inputs of one solve) * 8 (+ 9 * |W_l| for the block-diagonal form's Q and
                 mask), one solve = the whole layer, or one diagonal block

with ``|H_l| = kernel_groups * conv_groups * n_in**2`` for a full Hessian and
``kernel_groups * conv_groups * n_blocks * b**2`` for blocks of ``b`` inputs. ``C_H`` and ``C_W``
count the solver's (ADMM, the default) Hessian- and weight-sized buffers alive at its peak:
the damped H and its inverse per row group, their stack, the preconditioned H in float64 and
float32 and the Cholesky factors (``C_H = 5.5 * groups + 1``); W's copies (``C_W``, measured:
:data:`sbc_deploy.compress.layer_solve.SOLVE_W_COPIES`).

When the run would not fit, layers get block-diagonal Hessians: one power-of-two block size
(at least :data:`MIN_BLOCK`) for every layer wider than it, the largest that fits; then each
layer, narrowest first, gets back its full Hessian or the coarsest blocks that still fit, so
that the approximation stays where it is needed. Blocks of consecutive inputs, couplings
between blocks dropped, each block solved on its own (``sbc_deploy.compress``). That is an
approximation of the SBC objective; the report says which layers got it
(benchmarks/results/calibrate.md measures its loss).

Not modelled: the ``"exact"`` solver (greedy OBS keeps one inverse Hessian per row: far more
than ADMM), sequential propagation (a compress that re-calibrates each layer: add the
calibrate stage of one layer), and memory the allocator keeps after a stage (the pipeline
returns it between its large stages, :func:`release_freed_memory`).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sbc_deploy.calibrate import CHUNK_BYTES, calibration_bytes, time_chunk
from sbc_deploy.compress.hessian import HessianSize, hessian_size, sums_bytes
from sbc_deploy.compress.passes import compression_bytes
from sbc_deploy.errors import ConfigError
from sbc_deploy.ir import Graph
from sbc_deploy.ir.transforms import neuron_per_row
from sbc_deploy.sim.float_sim import chunk_plan, simulation_bytes

log = logging.getLogger(__name__)

__all__ = ["MIN_BLOCK", "MemoryBudgetError", "MemoryPlan", "StageEstimate", "cifar10_dvs_csnn",
           "default_budget", "estimate", "format_bytes", "parse_size", "plan_memory",
           "release_freed_memory"]

MIN_BLOCK = 64
"""Smallest block of a block-diagonal Hessian the planner chooses."""

DEFAULT_FRACTION = 0.5
"""Default budget: this fraction of the machine's physical memory."""

EVAL_CHUNK_BYTES = 64 << 20  # sbc_deploy.pipeline.EVAL_MEMORY_BUDGET (the evaluation's chunks)
CALIB_CHUNK_BYTES = CHUNK_BYTES  # the calibration's chunks
RUNTIME = 512 * 1024**2
"""The process itself (Python, torch, the package) before any tensor: added to every stage."""
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2,
          "gib": 1024**3, "tib": 1024**4}


class MemoryBudgetError(ConfigError):
    """The run would not fit the memory budget in any form the planner may choose."""


def parse_size(text: str | int) -> int:
    """``"8GiB"``, ``"512 MiB"``, ``"2e9"``, ``"3GB"`` -> bytes.

    Raises:
        ConfigError: not a size.
    """
    if isinstance(text, int):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", text)
        if match is None or match.group(2).lower() not in _UNITS:
            raise ConfigError(f"not a memory size: {text!r} (e.g. 8GiB, 512MiB, 2e9)",
                              where="--memory-budget")
        value, unit = float(match.group(1)), match.group(2).lower()
    size = int(value * _UNITS[unit])
    if size <= 0:
        raise ConfigError(f"must be positive, got {text!r}", where="--memory-budget")
    return size


def release_freed_memory() -> bool:
    """Give the heap's freed pages back to the operating system (glibc ``malloc_trim``).

    Tensors under glibc's mmap threshold (up to 32 MiB) are allocated on the heap; once freed
    their pages stay resident, so a stage would start with the previous stages' garbage on top
    of what it holds (measured: 640 -> 386 MiB after two DVS128 calibrations). The pipeline
    calls this between its large stages, so that each stage's peak is what the estimates
    above count. Returns whether anything was released; a no-op without glibc.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False


def default_budget(fraction: float = DEFAULT_FRACTION) -> int:
    """``fraction`` of the machine's physical memory (bytes)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        total = 8 * 1024**3
    return int(total * fraction)


def format_bytes(n: float) -> str:
    """Bytes in binary units, three significant digits."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"  # pragma: no cover


@dataclass(frozen=True)
class StageEstimate:
    """The estimated peak of one stage, and its largest terms."""

    stage: str
    bytes: int
    detail: str


@dataclass(frozen=True)
class MemoryPlan:
    """Estimates of every stage, and the cheaper forms chosen to fit the budget.

    Attributes:
        budget: bytes allowed.
        stages: the estimate of each stage (with the chosen forms).
        blocks: layer name -> block size of its block-diagonal Hessian.
        notes: what was chosen and why (for the report).
    """

    budget: int
    stages: tuple[StageEstimate, ...]
    blocks: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", MappingProxyType(dict(self.blocks)))

    @property
    def peak(self) -> int:
        return max((s.bytes for s in self.stages), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {"budget_bytes": self.budget, "peak_bytes": self.peak,
                "stages": {s.stage: s.bytes for s in self.stages},
                "block_diagonal": dict(self.blocks), "notes": list(self.notes)}


def _hessian_sizes(graph: Graph, kernel: str, max_groups: int) -> list[HessianSize]:
    return [hessian_size(layer, neuron_per_row(graph, layer), kernel, max_groups)
            for layer in graph.synapse_layers()]


def _graph_array_bytes(graph: Graph) -> int:
    """Bytes of the graph's arrays as held: weights, biases, neuron parameters (which are per
    neuron, as large as a convolution's output, for conv-shaped neurons)."""
    import numpy as np

    total = 0
    for node in graph.nodes.values():
        for value in vars(node).values():
            if isinstance(value, np.ndarray):
                total += int(value.nbytes)
    return total


def estimate(graph: Graph, *, steps: int, batch_size: int, calib_batch_size: int,
             calibrate: bool, kernel: str = "smp", max_groups: int = 8,
             blocks: Mapping[str, int] | None = None, world_size: int = 1,
             budget: int | None = None, sim_memory_budget: int | None = EVAL_CHUNK_BYTES,
             calib_chunk_bytes: int | None = CALIB_CHUNK_BYTES,
             data_bytes: int = 0) -> tuple[StageEstimate, ...]:
    """The estimate of every stage with the given block sizes (see the module docstring):
    each stage's own need (the simulator's, the calibration's, the compression's), added to
    what every stage holds."""
    blocks = dict(blocks or {})
    base = RUNTIME + _graph_array_bytes(graph) + int(data_bytes)
    t_chunk, b_chunk = chunk_plan(graph, steps, batch_size, sim_memory_budget)
    stages = [StageEstimate(
        "simulate",
        base + simulation_bytes(graph, steps, batch_size, t_chunk, b_chunk, True),
        f"{batch_size} samples x {steps} steps in chunks of {b_chunk} samples x {t_chunk} "
        f"steps")]
    layers = _hessian_sizes(graph, kernel, max_groups) if calibrate else []
    if not layers:
        return tuple(stages)
    sums = sums_bytes(layers, blocks)
    c_chunk = time_chunk(graph, steps, calib_batch_size, calib_chunk_bytes)
    stages.append(StageEstimate(
        "calibrate",
        base + calibration_bytes(graph, layers, blocks, steps=steps, batch=calib_batch_size,
                                 chunk_bytes=calib_chunk_bytes, world_size=world_size),
        f"Hessian sums {format_bytes(sums)}, chunks of {c_chunk} steps"))
    need = compression_bytes(layers, blocks)
    stages.append(StageEstimate(
        "compress", base + need.total,
        f"every layer's H twice {format_bytes(need.hessians)}, weights and results "
        f"{format_bytes(need.weights_and_results)}, largest solve "
        f"{format_bytes(need.largest_solve)}"))
    # the pipeline evaluates the compressed graph while it holds the calibration (for the
    # next target) and both graphs: the compressed one's float64 weights and its copies
    compressed = sum(s.weights for s in layers) * (8 + 4)
    stages.append(StageEstimate(
        "evaluate compressed", stages[0].bytes + sums + compressed,
        f"the evaluation with the Hessian sums {format_bytes(sums)} and the compressed "
        f"graph held"))
    return tuple(stages)


def _wider(block: int, n_in: int) -> list[int | None]:
    """Coarser forms than blocks of ``block``, the coarsest first (``None``: full Hessian)."""
    out: list[int | None] = [None]
    wider = 1 << max(int(math.log2(max(n_in - 1, 1))), 0)
    while wider > block:
        out.append(wider)
        wider //= 2
    return out


def plan_memory(graph: Graph, *, steps: int, batch_size: int, calib_batch_size: int = 32,
                calibrate: bool = True, budget: int | None = None, kernel: str = "smp",
                max_groups: int = 8, world_size: int = 1,
                allow_blocks: bool = True, sim_memory_budget: int | None = EVAL_CHUNK_BYTES,
                calib_chunk_bytes: int | None = CALIB_CHUNK_BYTES,
                data_bytes: int = 0) -> MemoryPlan:
    """Estimate every stage; give the largest layers block-diagonal Hessians until it fits.

    Args:
        graph: the network.
        steps: time steps per sample.
        batch_size: evaluation samples per simulator call.
        calib_batch_size: calibration samples per simulator call.
        calibrate: whether the run calibrates and compresses with Hessians.
        budget: bytes (default: :func:`default_budget`).
        kernel, max_groups: as in ``calibrate``.
        world_size: processes (each holds the sums; calibration gathers one layer's batch sums
            from every process).
        allow_blocks: whether block-diagonal Hessians may be chosen.
        sim_memory_budget: the evaluation's ``simulate(memory_budget=)`` (default: the
            pipeline's ``EVAL_MEMORY_BUDGET``; ``None``: whole batches).
        calib_chunk_bytes: ``calibrate(chunk_bytes=)`` (``None``: whole sequences).
        data_bytes: the calibration and evaluation data the caller holds in memory.

    Raises:
        MemoryBudgetError: a stage does not fit even in the cheapest form; the message names the
            stage, its estimate, the budget and what would help.
    """
    budget = default_budget() if budget is None else int(budget)
    args = dict(steps=steps, batch_size=batch_size, calib_batch_size=calib_batch_size,
                calibrate=calibrate, kernel=kernel, max_groups=max_groups,
                world_size=world_size, sim_memory_budget=sim_memory_budget,
                calib_chunk_bytes=calib_chunk_bytes, data_bytes=data_bytes)
    blocks: dict[str, int] = {}
    stages = estimate(graph, blocks=blocks, **args)
    layers = sorted(_hessian_sizes(graph, kernel, max_groups) if calibrate else [],
                    key=lambda s: -s.n_in)
    if allow_blocks and layers and _over_budget(stages, budget):
        blocks, stages = _fit_blocks(graph, layers, budget, args)
    notes = [f"layer {name}: block-diagonal Hessian (blocks of {block} consecutive "
             f"inputs; couplings between blocks dropped) to fit the memory budget of "
             f"{format_bytes(budget)}" for name, block in blocks.items()]
    _refuse_what_does_not_fit(graph, stages, layers, blocks, budget, args,
                              allow_blocks=allow_blocks, calibrate=calibrate)
    for note in notes:
        log.info("%s", note)
    return MemoryPlan(budget, stages, blocks, tuple(notes))


def _over_budget(stages: Sequence[StageEstimate], budget: int) -> list[StageEstimate]:
    """The stages above ``budget`` that block-diagonal Hessians can shrink (all but the
    simulation)."""
    return [s for s in stages if s.stage != "simulate" and s.bytes > budget]


def _fit_blocks(graph: Graph, layers: list[HessianSize], budget: int, args: dict[str, Any]
                ) -> tuple[dict[str, int], tuple[StageEstimate, ...]]:
    """Block sizes (layer -> block) for the layers, widest first in ``layers``, and the
    estimates with them.

    One block size for every layer wider than it, halved until the run fits (the largest that
    fits); then each layer, narrowest first, gets its full Hessian (or twice its block, and so
    on) back wherever the run still fits: the approximation only where it is needed, as coarse
    as the budget allows. When even the smallest block does not fit, that plan is returned.
    """
    block = 1 << max(int(math.log2(max(layers[0].n_in - 1, 1))), 0)  # < widest n_in
    while True:
        blocks = {s.name: block for s in layers if s.n_in > block}
        stages = estimate(graph, blocks=blocks, **args)
        if not _over_budget(stages, budget) or block // 2 < MIN_BLOCK:
            break
        block //= 2
    if _over_budget(stages, budget):
        return blocks, stages
    for size in reversed(layers):
        if size.name not in blocks:
            continue
        for wider in _wider(blocks[size.name], size.n_in):
            trial = {**blocks}
            if wider is None:
                trial.pop(size.name)
            else:
                trial[size.name] = wider
            found = estimate(graph, blocks=trial, **args)
            if not _over_budget(found, budget):
                blocks, stages = trial, found
                break
    return blocks, stages


def _refuse_what_does_not_fit(graph: Graph, stages: Sequence[StageEstimate],
                              layers: list[HessianSize], blocks: dict[str, int], budget: int,
                              args: dict[str, Any], *, allow_blocks: bool, calibrate: bool
                              ) -> None:
    """Raise :class:`MemoryBudgetError` for the first stage above ``budget``, naming the
    smallest budget any plan of this run fits (every layer at the smallest block size)."""
    for stage in stages:
        if stage.bytes > budget:
            cheapest = {s.name: MIN_BLOCK for s in layers if s.n_in > MIN_BLOCK} \
                if allow_blocks else blocks
            smallest = max(s.bytes for s in estimate(graph, blocks=cheapest, **args))
            size = f"{math.ceil(smallest / 1024**2)}MiB"
            help_text = f"--memory-budget {size} or more" + (
                ", or --method magnitude (no Hessians)" if calibrate and
                stage.stage != "simulate" else "")
            raise MemoryBudgetError(
                f"the {stage.stage} stage needs about {format_bytes(stage.bytes)} "
                f"({stage.detail}), more than the budget of {format_bytes(budget)}; the "
                f"smallest budget this run can be planned in is about {size}",
                where="--memory-budget", hint=help_text)


def cifar10_dvs_csnn(rng: Any = None, side: int = 128, classes: int = 10) -> Graph:
    """A random-weight stand-in of the SBC paper's CIFAR10-DVS CSNN shape, at ``side`` pixels.

    ``2 x side x side`` -> 4 x (3x3 conv + LIF), 2x2 sum pools after the first three ->
    ``128 x side/8 x side/8`` flattened -> dense -> LIF readout. At 128 x 128 the dense layer's
    fan-in is 32,768: its full Hessian alone is 8 GiB of float64. Used by the memory tests and
    benchmarks (no weights of the paper; only the shapes matter there).
    """
    import numpy as np

    from sbc_deploy.ir import LIF, Affine, Conv2d, Flatten, Input, Output, SumPool2d

    rng = np.random.default_rng(0) if rng is None else rng
    nodes: list[tuple[str, Any]] = [("in", Input((2, side, side)))]
    channels, size = 2, side
    for k, out in enumerate((32, 64, 128, 128)):
        fan_in = channels * 9
        weight = rng.normal(0, 2.0 / np.sqrt(fan_in), (out, channels, 3, 3))
        nodes.append((f"conv{k}", Conv2d(weight, input_shape=(channels, size, size), padding=1)))
        nodes.append((f"lif{k}", LIF(beta=np.full((out, size, size), 0.9),
                                     v_threshold=np.ones((out, size, size)))))
        channels = out
        if k < 3:
            nodes.append((f"pool{k}", SumPool2d(kernel_size=2, input_shape=(out, size, size))))
            size //= 2
    n_in = channels * size * size
    nodes += [("flat", Flatten(input_shape=(channels, size, size))),
              ("fc", Affine(rng.normal(0, 1.0 / np.sqrt(n_in), (classes, n_in)))),
              ("readout", LIF(beta=np.full(classes, 0.9), v_threshold=np.ones(classes))),
              ("out", Output((classes,)))]
    return Graph.chain(nodes, dt=1e-3)
