r"""Per-stage memory estimates, made before any work starts, and the cheaper forms they choose.

Stage contract: ``Graph`` + the run's sizes (samples per batch, steps) + a budget in bytes ->
:class:`MemoryPlan` (frozen): the estimated peak of every stage, the layers whose Hessian is
made block-diagonal so that the run fits, and notes saying so. :func:`plan_memory` raises
:class:`MemoryBudgetError` when no allowed form fits.

The estimates are upper bounds from shapes alone (every value ``float32`` in the simulator,
Hessian sums ``float64``):

    every      RUNTIME (Python, torch and the package: 512 MiB)
    simulate   sum over nodes of B * T * |node output| * 4      (every value of a batch alive)
               + the weights
    calibrate  simulate(calibration batch)
               + sum over layers of 2 * |H_l| * 8               (the sums and one batch's sums)
               + B * T * |largest layer input| * 4 * 2          (the filtered copy, its layout)
               + one im2col chunk (chunk_elements * 4 * 3)
    compress   sum over layers of 3 * |H_l| * 8                 (the calibration, the solver's
                                                                 copy of every layer's H, and
                                                                 the scaled copy being made)
               + 6 * |H of the largest single block solved| * 8 (damped H, its inverse, the
                                                                 Cholesky factors, temporaries)
               + 8 * |W_l| * 8 for the largest layer            (W, Q, mask, ADMM state)

with ``|H_l| = kernel_groups * conv_groups * n_in**2`` for a full Hessian and
``kernel_groups * conv_groups * n_blocks * b**2`` for blocks of ``b`` inputs.

A layer whose full Hessian would not fit gets a block-diagonal Hessian (the largest power-of-two
block size, at least :data:`MIN_BLOCK`, that fits; the largest layers first): blocks of
consecutive inputs, couplings between blocks dropped, each block solved on its own
(``sbc_deploy.compress``). That is an approximation of the SBC objective; the report says
which layers got it (benchmarks/results/calibrate.md measures its loss).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sbc_deploy.compress.hessian import conv_groups, kernel_for_neuron
from sbc_deploy.errors import ConfigError
from sbc_deploy.ir import Graph

log = logging.getLogger(__name__)

__all__ = ["MIN_BLOCK", "MemoryBudgetError", "MemoryPlan", "StageEstimate", "cifar10_dvs_csnn",
           "default_budget", "format_bytes", "parse_size", "plan_memory"]

MIN_BLOCK = 64
"""Smallest block of a block-diagonal Hessian the planner chooses."""

DEFAULT_FRACTION = 0.5
"""Default budget: this fraction of the machine's physical memory."""

CHUNK_ELEMENTS = 1 << 22  # HessianAccumulator.chunk_elements
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


@dataclass(frozen=True)
class _LayerSize:
    name: str
    n_in: int
    hessians: int   # kernel groups x conv groups
    weights: int
    input_values: int  # per sample and step


def _layers(graph: Graph, kernel: str, max_groups: int) -> list[_LayerSize]:
    sizes = []
    for layer in graph.synapse_layers():
        syn = layer.synapse
        n_in = math.prod(int(v) for v in syn.weight.shape[1:])
        kernels, _ = kernel_for_neuron(layer.neuron, syn.out_channels, kind=kernel,
                                       max_groups=max_groups)
        sizes.append(_LayerSize(layer.name, n_in, len(kernels) * conv_groups(syn),
                                int(math.prod(syn.weight.shape)),
                                math.prod(int(v) for v in syn.input_shape)))
    return sizes


def _hessian_values(size: _LayerSize, block: int | None) -> int:
    if block is None:
        return size.hessians * size.n_in**2
    return size.hessians * -(-size.n_in // block) * block**2


def _activations(graph: Graph, batch: int, steps: int) -> int:
    values = sum(math.prod(int(v) for v in node.output_shape) for node in graph.nodes.values()
                 if getattr(node, "output_shape", None) is not None)
    return 4 * batch * steps * values


def _weights(graph: Graph) -> int:
    return 4 * sum(math.prod(layer.synapse.weight.shape) for layer in graph.synapse_layers())


def estimate(graph: Graph, *, steps: int, batch_size: int, calib_batch_size: int,
             calibrate: bool, kernel: str = "smp", max_groups: int = 8,
             blocks: Mapping[str, int] | None = None, world_size: int = 1,
             budget: int | None = None) -> tuple[StageEstimate, ...]:
    """The estimate of every stage with the given block sizes (see the module docstring)."""
    blocks = dict(blocks or {})
    layers = _layers(graph, kernel, max_groups) if calibrate else []
    stages = [StageEstimate(
        "simulate", RUNTIME + _activations(graph, batch_size, steps) + _weights(graph),
        f"{batch_size} samples x {steps} steps, every node's values alive")]
    if not layers:
        return tuple(stages)
    sums = sum(_hessian_values(s, blocks.get(s.name)) for s in layers) * 8
    largest_input = max(s.input_values for s in layers)
    exchange = max(_hessian_values(s, blocks.get(s.name)) for s in layers) * 8 * (
        world_size if world_size > 1 else 0)
    calib = (RUNTIME + _activations(graph, calib_batch_size, steps) + _weights(graph) + 2 * sums
             + 8 * calib_batch_size * steps * largest_input + 12 * CHUNK_ELEMENTS + exchange)
    stages.append(StageEstimate(
        "calibrate", calib, f"Hessian sums {format_bytes(sums)} (x2: totals and one batch)"))
    solve = max(6 * 8 * _block_values(s, blocks.get(s.name)) for s in layers)
    weights = max(8 * 8 * s.weights for s in layers)
    stages.append(StageEstimate(
        "compress", RUNTIME + 3 * sums + solve + weights,
        f"every layer's H three times {format_bytes(3 * sums)}, largest solve "
        f"{format_bytes(solve)}"))
    return tuple(stages)


def _block_values(size: _LayerSize, block: int | None) -> int:
    """Hessian values of the largest single solve (one block, or the whole layer)."""
    side = size.n_in if block is None else min(block, size.n_in)
    return size.hessians * side**2


def plan_memory(graph: Graph, *, steps: int, batch_size: int, calib_batch_size: int = 32,
                calibrate: bool = True, budget: int | None = None, kernel: str = "smp",
                max_groups: int = 8, world_size: int = 1,
                allow_blocks: bool = True) -> MemoryPlan:
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

    Raises:
        MemoryBudgetError: a stage does not fit even in the cheapest form; the message names the
            stage, its estimate, the budget and what would help.
    """
    budget = default_budget() if budget is None else int(budget)
    args = dict(steps=steps, batch_size=batch_size, calib_batch_size=calib_batch_size,
                calibrate=calibrate, kernel=kernel, max_groups=max_groups,
                world_size=world_size)
    blocks: dict[str, int] = {}
    notes: list[str] = []
    stages = estimate(graph, blocks=blocks, **args)
    layers = sorted(_layers(graph, kernel, max_groups) if calibrate else [],
                    key=lambda s: -s.n_in)

    def over(found: tuple[StageEstimate, ...]) -> list[StageEstimate]:
        return [s for s in found if s.stage != "simulate" and s.bytes > budget]

    if allow_blocks:
        for size in layers:
            if not over(stages):
                break
            block = 1 << max(int(math.log2(max(size.n_in - 1, 1))), 0)  # < n_in
            while block >= MIN_BLOCK:
                blocks[size.name] = block
                stages = estimate(graph, blocks=blocks, **args)
                if not over(stages):
                    break
                if block // 2 < MIN_BLOCK:
                    break
                block //= 2
            if blocks.get(size.name, size.n_in) >= size.n_in:
                blocks.pop(size.name, None)
    for name, block in blocks.items():
        notes.append(f"layer {name}: block-diagonal Hessian (blocks of {block} consecutive "
                     f"inputs; couplings between blocks dropped) to fit the memory budget of "
                     f"{format_bytes(budget)}")
    for stage in stages:
        if stage.bytes > budget:
            help_text = ("a smaller --batch-size" if stage.stage == "simulate" else
                         "a larger --memory-budget, fewer calibration samples per batch, or "
                         "--method magnitude")
            raise MemoryBudgetError(
                f"the {stage.stage} stage needs about {format_bytes(stage.bytes)} "
                f"({stage.detail}), more than the budget of {format_bytes(budget)}",
                where="--memory-budget", hint=help_text)
    for note in notes:
        log.info("%s", note)
    return MemoryPlan(budget, stages, blocks, tuple(notes))


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
