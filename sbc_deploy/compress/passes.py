"""The compression passes: one per config type, and :func:`compress`, which picks one.

A pass takes the graph's synapse layers (or ``config.layers``), builds each layer's problem
(:mod:`.layer_solve`), fixes how many weights each layer loses (:mod:`.allocate`: uniform, LAMP,
or global from measured loss curves), solves the layers (in parallel or, with ``propagation=
"sequential"``, each on a re-calibration of the graph whose earlier layers are already
compressed) and returns the new graph with its :class:`CompressionStats`. Under
:mod:`sbc_deploy.distributed` the independent solves are dealt out over the processes by cost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
import torch

from sbc_deploy import distributed
from sbc_deploy.compress import meter
from sbc_deploy.compress.allocate import (
    LayerBounds,
    allocate_global,
    allocate_lamp,
    allocate_uniform,
    curve_counts,
)
from sbc_deploy.compress.config import (
    Budget,
    CompressionConfig,
    MagnitudeConfig,
    OBCConfig,
    SBCConfig,
)
from sbc_deploy.compress.hessian import HessianSize, sums_bytes
from sbc_deploy.compress.layer_solve import (
    LayerProblem,
    LayerStats,
    SolveResult,
    compressed_node,
    fit_layer_grid,
    layer_problem,
    layer_stats,
    loss_and_energy,
    result_to,
    solve_bytes,
    solve_cost,
    solve_problem,
)
from sbc_deploy.compress.masks import magnitude_mask, min_prune_count
from sbc_deploy.devices import resolve_device, torch_threads
from sbc_deploy.errors import ConfigError, DataError
from sbc_deploy.ir import Graph, SynapseLayer

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CompressionStats:
    """Per-layer statistics and totals of one ``compress`` call."""

    method: str
    layers: tuple[LayerStats, ...]
    allocation: str
    propagation: str
    seconds: float
    allocation_seconds: float = 0.0

    @property
    def layer_loss(self) -> Mapping[str, float | None]:
        """Layer name -> layer loss (see :class:`LayerStats`)."""
        return MappingProxyType({layer.name: layer.loss for layer in self.layers})

    @property
    def sparsity(self) -> float:
        """Zero fraction over all compressed layers."""
        total = sum(math.prod(layer.shape) for layer in self.layers)
        zeros = sum(layer.sparsity * math.prod(layer.shape) for layer in self.layers)
        return zeros / total if total else 0.0

    def layer(self, name: str) -> LayerStats:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


def _result_to_cpu(item: tuple[SolveResult, float]) -> tuple[SolveResult, float]:
    return result_to(item[0], torch.device("cpu")), item[1]


def _layers(graph: Graph, config: CompressionConfig) -> list[SynapseLayer]:
    layers = list(graph.synapse_layers())
    if config.layers is None:
        return layers
    known = {layer.name for layer in layers}
    unknown = sorted(set(config.layers) - known)
    if unknown:
        raise ConfigError(f"not synapse layers of the graph: {', '.join(unknown)}",
                          where="config.layers")
    return [layer for layer in layers if layer.name in config.layers]


def _bounds(layer: SynapseLayer, config: CompressionConfig) -> LayerBounds:
    W = torch.tensor(np.asarray(layer.synapse.weight, dtype=np.float64))
    W = W.reshape(W.shape[0], -1)
    n_out, n_in = W.shape
    minimum = min_prune_count(n_out, n_in, config.n_m, config.fan_in)
    maximum = max(minimum, math.floor(config.max_sparsity * W.numel()))
    return LayerBounds(layer.name, W, minimum, maximum)


def _allocate(layers: list[SynapseLayer], problems: Mapping[str, LayerProblem],
              config: CompressionConfig,
              loss_curve: Callable[[str, Any], list[float]] | None) -> dict[str, int]:
    bounds = [_bounds(layer, config) for layer in layers]
    if not config.prune:
        return {b.name: 0 for b in bounds}
    allocation = config.allocation
    numel = sum(b.numel for b in bounds)
    if isinstance(allocation, Budget):
        total = max(0, numel - allocation.max_synapses(config.bits))
        allocation = allocation.allocation
        if allocation == "uniform":
            return allocate_uniform(bounds, total / numel if numel else 0.0)
    else:
        if allocation == "uniform":
            return allocate_uniform(bounds, config.sparsity)
        total = round(config.sparsity * numel)
    if allocation == "lamp":
        return allocate_lamp(bounds, total, config.lamp_power)
    if loss_curve is None or any(problems[b.name].H is None for b in bounds):
        raise ConfigError("global allocation needs a calibration of every compressed layer",
                          where="config.allocation")
    energy = {b.name: loss_and_energy(problems[b.name],
                                      torch.zeros_like(problems[b.name].W))[0] or 0.0
              for b in bounds}
    return allocate_global(bounds, total, _measured_curves(bounds, problems, loss_curve), energy)


def _measured_curves(bounds: list[LayerBounds], problems: Mapping[str, LayerProblem],
                     loss_curve: Callable[[str, Any], list[float]],
                     ) -> Callable[[str, Any], list[float]]:
    """Every layer's loss curve at :func:`curve_counts`, measured up front, point by point.

    Each point (a layer pruned by one count) is an independent solve; under
    :mod:`sbc_deploy.distributed` the points are dealt out over the processes by their cost
    and gathered, so every process allocates from the same curves a single process measures.
    """
    points = [(b.name, count) for b in bounds for count in curve_counts(b)]
    costs = [solve_cost(problems[name], count) for name, count in points]

    def measure(i: int) -> float:
        name, count = points[i]
        return float(loss_curve(name, [count])[0])

    table = dict(zip(points, distributed.map_spread(measure, len(points), costs=costs)))

    def lookup(name: str, counts: Any) -> list[float]:
        return [table[(name, int(c))] for c in counts]

    return lookup


def _pass_stats(config: CompressionConfig, stats: list[LayerStats], start: float,
                allocation_seconds: float) -> CompressionStats:
    """A pass's statistics: its layers' and the seconds since ``start``."""
    allocation = config.allocation if isinstance(config.allocation, str) else "budget"
    return CompressionStats(config.method, tuple(stats), allocation, config.propagation,
                            time.perf_counter() - start, allocation_seconds)


def _obs_pass(graph: Graph, calibration: Any, config: CompressionConfig,
              progress: Progress | None) -> tuple[Graph, CompressionStats]:
    """SBC and OBC: OBS solvers on the calibration's Hessians (``config.kernel``)."""
    listener = getattr(progress, "within_layer", None)  # see compress(progress=)
    if calibration is None:
        raise DataError(f"method {config.method!r} needs a calibration", where="compress")
    if calibration.kernel != config.kernel:
        raise ConfigError(f"method {config.method!r} needs a calibration with the "
                          f"{config.kernel!r} kernel, got {calibration.kernel!r}",
                          where="compress(calibration=)",
                          hint=f"calibrate(graph, data, kernel={config.kernel!r})")
    device = resolve_device(config.device)
    start = time.perf_counter()
    layers = _layers(graph, config)
    missing = [layer.name for layer in layers if layer.name not in calibration.layers]
    if missing:
        raise DataError(f"calibration has no Hessian for {', '.join(missing)}",
                        where="compress(calibration=)")
    problems = {layer.name: layer_problem(layer, calibration.layers[layer.name], device)
                for layer in layers}

    def loss_curve(name: str, counts: Any) -> list[float]:
        problem = problems[name]
        return [loss_and_energy(problem, solve_problem(problem, int(c), config, quantize=False,
                                                       curve=True).Q)[0] or 0.0
                for c in counts]

    counts = _allocate(layers, problems, config, loss_curve)
    allocation_seconds = time.perf_counter() - start
    current, stats = graph, []
    solved: list[tuple[SolveResult, float]] | None = None
    if config.propagation != "sequential":
        # independent layers: under torch.distributed each process solves its share
        def solve(i: int) -> tuple[SolveResult, float]:
            tick = time.perf_counter()
            with meter.layer(i, listener):  # the solvers' ticks inside the layer
                result = solve_problem(problems[layers[i].name], counts[layers[i].name], config)
            return result, time.perf_counter() - tick

        solved = distributed.map_spread(
            solve, len(layers), to_cpu=_result_to_cpu,
            costs=[solve_cost(problems[layer.name], counts[layer.name]) for layer in layers])
    for i, layer in enumerate(layers):
        tick = time.perf_counter()
        problem = problems[layer.name]
        if solved is not None:
            result, seconds = solved[i]
            result = result_to(result, problem.W.device)
        else:
            if i > 0:  # under torch.distributed the batches are shared out (calibrate)
                calibration = calibration.recompute(current, [layer.name])
                problem = layer_problem(layer, calibration.layers[layer.name], device)
            with meter.layer(i, listener):
                result = solve_problem(problem, counts[layer.name], config)
            seconds = 0.0
        node = compressed_node(layer, result)
        current = current.replace_nodes({layer.name: node})
        stats.append(layer_stats(problem, result, node, config.solver,
                                 seconds + time.perf_counter() - tick))
        if progress is not None:
            progress(i + 1, len(layers))
    return current, _pass_stats(config, stats, start, allocation_seconds)


def _magnitude_pass(graph: Graph, calibration: Any, config: CompressionConfig,
                    progress: Progress | None) -> tuple[Graph, CompressionStats]:
    """Magnitude pruning and round-to-nearest; the calibration (optional) measures the loss."""
    device = resolve_device(config.device)
    start = time.perf_counter()
    layers = _layers(graph, config)
    sums = {} if calibration is None else calibration.layers
    problems = {layer.name: layer_problem(layer, sums.get(layer.name), device) for layer in layers}

    def loss_curve(name: str, counts: Any) -> list[float]:
        problem = problems[name]
        return [loss_and_energy(problem, problem.W * ~magnitude_mask(
                    problem.W, int(c), n_m=config.n_m, fan_in=config.fan_in))[0] or 0.0
                for c in counts]

    counts = _allocate(layers, problems, config, loss_curve)
    allocation_seconds = time.perf_counter() - start
    current, stats = graph, []
    for i, layer in enumerate(layers):
        tick = time.perf_counter()
        problem = problems[layer.name]
        mask = magnitude_mask(problem.W, counts[layer.name], n_m=config.n_m, fan_in=config.fan_in)
        Q = problem.W.masked_fill(mask, 0.0)
        grid = None
        if config.quantize:
            grid = fit_layer_grid(layer, Q, config)
            Q = grid.quantize(Q)
        result = SolveResult(Q, mask, grid, None, 0)
        node = compressed_node(layer, result)
        current = current.replace_nodes({layer.name: node})
        stats.append(layer_stats(problem, result, node, "magnitude", time.perf_counter() - tick))
        if progress is not None:
            progress(i + 1, len(layers))
    return current, _pass_stats(config, stats, start, allocation_seconds)


PASSES: dict[type, Callable[..., tuple[Graph, CompressionStats]]] = {
    SBCConfig: _obs_pass,
    OBCConfig: _obs_pass,
    MagnitudeConfig: _magnitude_pass,
}


def compress(graph: Graph, calibration: Any, config: CompressionConfig, *,
             progress: Progress | None = None) -> tuple[Graph, CompressionStats]:
    """Compress every synapse layer of ``graph`` (or ``config.layers``) as ``config`` says.

    Args:
        graph: the network (not modified).
        calibration: a :class:`~sbc_deploy.calibrate.Calibration` with the config's kernel
            (``None`` allowed for :class:`MagnitudeConfig`: no loss is reported then).
        config: :class:`SBCConfig`, :class:`OBCConfig` or :class:`MagnitudeConfig`.
        progress: ``progress(done_layers, total_layers)`` after each layer. A callback with a
            ``within_layer(layer_index, phase, done, total, unit)`` attribute also hears the
            solvers' progress inside each layer (:mod:`sbc_deploy.compress.meter`).

    Returns:
        ``(graph, stats)``: a new graph with compressed synapse nodes and the statistics.

    Raises:
        ConfigError: unknown config type, a kernel mismatch, impossible bounds.
        DataError: a calibration that lacks a layer or belongs to another graph.
        NumericalError: a Hessian that stays indefinite after the damping raises.
    """
    handler = PASSES.get(type(config))
    if handler is None:
        raise ConfigError(f"no compression pass for {type(config).__name__}; known: "
                          f"{', '.join(t.__name__ for t in PASSES)}", where="compress(config=)")
    with torch_threads(config.threads), torch.no_grad():
        return handler(graph, calibration, config, progress)



# --------------------------------------------------------------------------- memory


class CompressionBytes(NamedTuple):
    """What :func:`compress` holds at its peak with an OBS pass, term by term (bytes)."""

    hessians: int
    """The calibration's sums and the solver's float64 copy of every layer's H (every
    layer's problem is built before the allocation)."""
    weights_and_results: int
    """Every layer's W in float64 and its result: Q in float64, the mask, the new float64
    weights (8 + 17 bytes per weight)."""
    largest_solve: int
    """The largest :func:`~.layer_solve.solve_bytes` (a whole layer, or one diagonal block)."""

    @property
    def total(self) -> int:
        return self.hessians + self.weights_and_results + self.largest_solve


def compression_bytes(sizes: Sequence[HessianSize], blocks: Mapping[str, int]
                      ) -> CompressionBytes:
    """The peak of compressing the layers of ``sizes`` (``blocks``: layer -> diagonal block
    size); ``sbc_deploy.memory`` adds it to the graph and the data."""
    return CompressionBytes(2 * sums_bytes(sizes, blocks),
                            sum(s.weights for s in sizes) * (8 + 17),
                            max(solve_bytes(s, blocks.get(s.name)) for s in sizes))

__all__ = ["PASSES", "CompressionBytes", "CompressionStats", "Progress", "compress",
           "compression_bytes"]
