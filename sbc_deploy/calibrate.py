r"""Calibrate: run the float simulator on calibration data and sum one Hessian per synapse layer.

Stage contract: ``Graph`` + inputs ``x [N, T, *input_shape]`` -> :class:`Calibration` (frozen),
holding per synapse layer the float64 sums of :math:`(K X)^\top (K X)` and their counts
(:class:`~sbc_deploy.compress.hessian.HessianSum`). Streaming: batches of ``batch_size``
sequences go through :func:`sbc_deploy.sim.simulate`, whose ``on_synapse_input`` hook hands every
layer its input sequence; the sums never hold more than one batch of inputs, so memory does not
grow with ``N``. A batch whose sequence is longer than :func:`time_chunk` steps (its widest node
value over :data:`CHUNK_BYTES`) is simulated in time chunks, every neuron's state carried, and
each layer's chunk is filtered and summed as it arrives, the SMP filter's state carried
(:meth:`~sbc_deploy.compress.hessian.HessianAccumulator.begin`), so that memory does not grow
with ``T`` either. The simulator runs a feed-forward graph a layer at a time (each synapse over
all the chunk's steps at once, then a scan per neuron) and steps only recurrent cycles through
time; each layer's batch (or chunk) is filtered once and summed by GEMMs (float64 by default,
float32 on request) into float64
(:class:`~sbc_deploy.compress.hessian.HessianAccumulator`). ``metadata`` records the wall time,
the time in the sums, their floating-point operations and the time chunk.

Under :func:`sbc_deploy.distributed.session` batch ``b`` is simulated by rank
``b % world_size`` and every batch's sums are added in batch order on every rank: the
single-process sums, bit for bit when each batch is one chunk (with time chunks a single
process adds the chunks' GEMMs straight into its totals: equal within float64 rounding).

Kernels (``kernel=``): ``"smp"`` filters each layer's inputs by the SMP kernel of the neuron that
follows it (SBC); ``"current"`` uses ``K = I`` for every layer (OBC / GPTQ / SparseGPT).

Graph operations between a synapse and its neuron (issue 18): the neuron is found through
gains, BatchNorm (``ChannelAffine``), ``Identity`` merges, pools (``MaxPool2d`` included),
``Flatten``/``Reshape``/``Permute``/``Slice`` and ``Reduce`` (:meth:`~sbc_deploy.ir.Graph.
synapse_layers`); the layer's Hessian is then taken on its own output positions filtered by that
neuron's ``K``. For a max pool on the currents (Spikformer's Conv-BN-MaxPool-LIF) this covers
every candidate of each window, not the data-dependent winner. Where the rows reach the neuron
through a reshape, the neuron's parameters are taken per row by their mean
(:func:`~sbc_deploy.ir.transforms.neuron_per_row`; exact for one time constant per layer). A
``Product`` or ``MatMul`` after a synapse (its current times another activation) leaves the
layer without a neuron kernel: it is calibrated on its current, ``K = I``. Weightless nodes have
no Hessian: the Q, K, V, projection and MLP layers of an attention block are ordinary synapse
layers, each with the kernel of the neuron after it.

The :class:`Calibration` keeps a reference to its data, kernel and batch size, so that a
sequential compression (GPTQ-style, each layer calibrated on the already-compressed layers before
it) can re-run it on a partly compressed graph with :meth:`Calibration.recompute`; the pipeline
stays a straight line ``calibrate -> compress``.

Example::

    >>> calib = calibrate(graph, data.x, kernel="smp", batch_size=64)
    >>> H = calib.layers["fc1"].hessian()          # (kernel_groups, conv_groups, n_in, n_in)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from sbc_deploy.compress.hessian import (
    KERNELS,
    PRECISIONS,
    SCAN_BLOCK,
    BatchSum,
    HessianAccumulator,
    HessianSize,
    HessianSum,
    accumulation_bytes,
    conv_groups,
    final_copy_bytes,
    kernel_for_neuron,
    per_row,
    sums_bytes,
)
from sbc_deploy.devices import resolve_device, torch_threads
from sbc_deploy.errors import ConfigError, DataError
from sbc_deploy.ir import ChannelAffine, Graph, Neuron, Scale, SynapseLayer
from sbc_deploy.ir.transforms import neuron_per_row
from sbc_deploy.sim import simulate
from sbc_deploy.sim.float_sim import simulation_bytes

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

CHUNK_BYTES = 64 << 20
"""Default of ``calibrate(chunk_bytes=)``: bytes of the widest node value of one time chunk
(``[steps, batch, *shape]`` float32), as the evaluation's ``EVAL_MEMORY_BUDGET``."""

__all__ = ["CHUNK_BYTES", "Calibration", "calibrate", "calibration_bytes", "layer_row_weight",
           "time_chunk"]


@dataclass(frozen=True, eq=False)
class Calibration:
    """Hessian sums of every calibrated synapse layer, and how they were made.

    Attributes:
        layers: synapse node name -> :class:`HessianSum`.
        kernel: ``"smp"`` or ``"current"``.
        steps: time steps per sequence.
        n_samples: sequences seen.
        data: the calibration inputs ``[N, T, *input_shape]`` (a reference, for
            :meth:`recompute`), or ``None``.
        batch_size, device, max_groups, threads: the settings used.
        precision: dtype of the GEMMs (``"float64"`` by default; sums always float64).
        row_fraction, seed: row subsampling (1.0: every row; see :class:`HessianAccumulator`).
        blocks: layer name -> block size of its block-diagonal Hessian (absent: full).
    """

    layers: Mapping[str, HessianSum]
    kernel: str
    steps: int
    n_samples: int
    data: Any = None
    batch_size: int = 32
    device: str = "cpu"
    max_groups: int = 8
    threads: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    precision: str = "float64"
    row_fraction: float = 1.0
    seed: int = 0
    blocks: Mapping[str, int] = field(default_factory=dict)
    chunk_bytes: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", MappingProxyType(dict(self.layers)))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        object.__setattr__(self, "blocks", MappingProxyType(dict(self.blocks)))

    def settings(self) -> dict[str, Any]:
        """How the sums were made, for the report (approximations included)."""
        return {"kernel": self.kernel, "precision": self.precision,
                "row_fraction": self.row_fraction, "seed": self.seed,
                "block_diagonal": dict(self.blocks), "batch_size": self.batch_size,
                "samples": self.n_samples, "steps": self.steps}

    def recompute(self, graph: Graph, names: Sequence[str],
                  progress: Progress | None = None) -> Calibration:
        """The same calibration with the layers ``names`` re-summed on ``graph``."""
        if self.data is None:
            raise DataError("this calibration kept no data; sequential propagation needs it",
                            where="Calibration.recompute")
        fresh = calibrate(graph, self.data, kernel=self.kernel, batch_size=self.batch_size,
                          device=self.device, max_groups=self.max_groups, layers=tuple(names),
                          threads=self.threads, progress=progress, precision=self.precision,
                          row_fraction=self.row_fraction, seed=self.seed, blocks=self.blocks,
                          chunk_bytes=self.chunk_bytes)
        return replace(self, layers={**self.layers, **fresh.layers})

    def __add__(self, other: Calibration) -> Calibration:
        """Sums of two calibrations of the same graph (e.g. from two processes)."""
        if self.kernel != other.kernel or set(self.layers) != set(other.layers):
            raise DataError("cannot add calibrations of different kernels or layers")
        layers = {name: self.layers[name] + other.layers[name] for name in self.layers}
        return replace(self, layers=layers, n_samples=self.n_samples + other.n_samples,
                       data=None)


def layer_row_weight(graph: Graph, layer: SynapseLayer, kernel: str) -> np.ndarray:
    """Squared gain from a layer's output rows to the membrane of the neuron after it.

    The product of the ``Scale`` nodes on the way and the neuron's ``gain`` (times ``gain_syn``
    for current-based neurons), squared, per output row; ones for the ``"current"`` kernel or
    a readout (as SBC weights rows by the BatchNorm gain only in its SMP mode).
    """
    n_out = layer.synapse.out_channels
    weight = np.ones(n_out)
    if kernel == "current" or layer.neuron is None:
        return weight
    current = layer.name
    while current != layer.neuron_name:
        (current,) = graph.successors(current)
        node = graph.nodes[current]
        if isinstance(node, Scale):
            weight = weight * per_row(node.scale, n_out, f"{current}.scale")
        elif isinstance(node, ChannelAffine) and node.input_shape[0] == n_out:
            weight = weight * node.scale   # a BatchNorm left between synapse and neuron
    neuron: Neuron = neuron_per_row(graph, layer)  # type: ignore[assignment]
    weight = weight * per_row(neuron.gain, n_out, f"{layer.neuron_name}.gain")
    gain_syn = getattr(neuron, "gain_syn", None)
    if gain_syn is not None:
        weight = weight * per_row(gain_syn, n_out, f"{layer.neuron_name}.gain_syn")
    return weight**2


def _inputs(data: Any) -> np.ndarray | torch.Tensor | None:
    """``[N, T, *input_shape]`` inputs from an array, a tensor or a dataset with ``.x``."""
    if data is None:
        return None
    x = getattr(data, "x", data)
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise DataError(f"calibration data must be an array [N, T, *input_shape] or a dataset "
                        f"with .x, got {type(data).__name__}", where="calibrate(data)")
    if x.ndim < 3:
        raise DataError(f"calibration data must be [N, T, *input_shape], got shape "
                        f"{tuple(x.shape)}", where="calibrate(data)")
    return x


def calibrate(graph: Graph, data: Any, *, kernel: str | None = None, batch_size: int = 32,
              device: str | None = None, config: Any = None, max_groups: int = 8,
              layers: Sequence[str] | None = None, threads: int | None = None,
              progress: Progress | None = None, precision: str = "float64",
              row_fraction: float = 1.0, seed: int = 0,
              blocks: Mapping[str, int] | None = None,
              chunk_bytes: int | None = CHUNK_BYTES) -> Calibration:
    """Simulate ``graph`` on ``data`` and sum one Hessian per synapse layer, streaming.

    The simulator runs a feed-forward graph layer at a time (each synapse over all ``T`` at
    once, then a scan per neuron); every layer's whole input sequence goes to its accumulator,
    which filters it once and sums it with a few large GEMMs (see
    :class:`~sbc_deploy.compress.hessian.HessianAccumulator`). Under a
    :func:`sbc_deploy.distributed.session` the batches are shared out over the processes and
    their sums added in batch order on every process (the single-process result, bit for bit).

    Args:
        graph: the network (not modified).
        data: inputs ``[N, T, *input_shape]`` (array, tensor, or a dataset with ``.x``), or
            ``None`` for an empty calibration (magnitude baselines need none).
        kernel: ``"smp"`` or ``"current"`` (default: the config's, else ``"smp"``).
        batch_size: sequences per simulator call.
        device: torch device of the simulation and the sums (default: config's, else cpu).
        config: a compression config; supplies ``kernel``, ``device`` and ``threads``.
        max_groups: most distinct SMP kernels per layer (per-neuron decays are binned beyond).
        layers: names of the synapse layers to calibrate (default: all).
        threads: torch intra-op threads during the call (restored afterwards).
        progress: ``progress(done, total)`` after every batch.
        precision: ``"float64"`` GEMMs (default: the reference, compressed weights as
            before) or ``"float32"`` (faster; sums within ~1e-6 relative, which can flip
            near-tied mask choices).
        row_fraction: fraction of rows summed, an unbiased estimate when < 1 (seeded by
            ``seed`` and the batch index).
        blocks: layer name -> block size: sum only that layer's diagonal blocks (a
            block-diagonal Hessian, for layers whose full Hessian does not fit).
        chunk_bytes: bytes of the widest node value of one time chunk (:func:`time_chunk`;
            default :data:`CHUNK_BYTES`). When a batch's sequence is longer than a chunk it is
            simulated chunk by chunk (neuron states carried) and each chunk filtered and summed
            as it comes (filter states carried, :meth:`HessianAccumulator.begin`), so that the
            peak does not grow with ``T``; in one process the chunks' GEMMs go straight into
            the totals. The sums equal the whole-sequence ones (bit for bit when the chunks
            are multiples of 32 steps and each batch adds its own sums, as under
            torch.distributed; else within float64 rounding, ~1e-15 relative, exact for
            integer-valued sums such as spikes through IF or readout kernels). ``None``: the
            whole sequence at once.

    Raises:
        ConfigError: unknown kernel, bad batch size, device, precision, row fraction or block
            size, unknown layer names.
        DataError: the data is not ``[N, T, *input_shape]`` for this graph.
    """
    kernel, device, threads = _settings_from_config(config, kernel, device, threads)
    _check_settings(kernel, batch_size, precision)
    dev = resolve_device(device)
    synapse_layers = graph.synapse_layers()
    blocks = dict(blocks or {})
    wanted = _wanted_layers(synapse_layers, layers, blocks)
    _check_chunk_bytes(chunk_bytes)
    x = _inputs(data)
    settings = {"kernel": kernel, "batch_size": batch_size, "device": device,
                "max_groups": max_groups, "threads": threads, "precision": precision,
                "row_fraction": row_fraction, "seed": seed, "blocks": blocks,
                "chunk_bytes": chunk_bytes}
    accumulators = {layer.name: _accumulator(graph, layer, kernel, max_groups, dev, precision,
                                             row_fraction, seed, blocks.get(layer.name))
                    for layer in synapse_layers if layer.name in wanted}
    if x is None:
        return Calibration({}, steps=0, n_samples=0, data=None,
                           **settings)  # type: ignore[arg-type]
    total, steps = int(x.shape[0]), int(x.shape[1])
    t_chunk = time_chunk(graph, steps, min(batch_size, total), chunk_bytes)
    start = time.perf_counter()
    with torch_threads(threads):
        sum_seconds = _feed_batches(graph, x, accumulators, batch_size, t_chunk, dev, progress)
    log.debug("calibrated %d layers on %d sequences (%s kernel)", len(accumulators), total, kernel)
    timing = {"seconds": time.perf_counter() - start, "sum_seconds": sum_seconds,
              "sum_flops": sum(_gram_flops(acc) for acc in accumulators.values()),
              "time_chunk": t_chunk}
    return Calibration(_take_results(accumulators), steps=steps, n_samples=total, data=x,
                       metadata=timing, **settings)  # type: ignore[arg-type]


def _take_results(accumulators: dict[str, HessianAccumulator]) -> dict[str, Any]:
    """Each layer's totals, emptying ``accumulators`` as it goes: one layer's sums and their
    frozen copy are alive at a time."""
    sums = {}
    for name in list(accumulators):
        sums[name] = accumulators.pop(name).result()
    return sums


def _settings_from_config(config: Any, kernel: str | None, device: str | None,
                          threads: int | None) -> tuple[str, str, int | None]:
    """calibrate's kernel, device and threads: as given, else the config's, else the defaults
    (the SMP kernel on the cpu, torch's threads)."""
    if config is not None:
        kernel = kernel or getattr(config, "kernel", None)
        device = device or getattr(config, "device", None)
        threads = threads if threads is not None else getattr(config, "threads", None)
    return kernel or "smp", device or "cpu", threads


def _check_settings(kernel: str, batch_size: Any, precision: str) -> None:
    """Refuse an unknown kernel or precision and a batch size that is not a positive int."""
    if kernel not in KERNELS:
        raise ConfigError(f"unknown kernel {kernel!r}; known: {', '.join(KERNELS)}",
                          where="calibrate(kernel=)")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"must be an integer >= 1, got {batch_size!r}",
                          where="calibrate(batch_size=)")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}",
                          where="calibrate(precision=)")


def _wanted_layers(synapse_layers: Sequence[SynapseLayer], layers: Sequence[str] | None,
                   blocks: Mapping[str, int]) -> set[str]:
    """The names of the layers to calibrate (default: all); every name in ``layers`` and
    ``blocks`` must be a synapse layer of the graph."""
    known = {layer.name for layer in synapse_layers}
    wanted = known if layers is None else set(layers)
    unknown = sorted((wanted | set(blocks)) - known)
    if unknown:
        raise ConfigError(f"not synapse layers of the graph: {', '.join(unknown)}",
                          where="calibrate(layers=)" if not set(unknown) <= set(blocks)
                          else "calibrate(blocks=)")
    return wanted


def _check_chunk_bytes(chunk_bytes: Any) -> None:
    if chunk_bytes is not None and (not isinstance(chunk_bytes, int) or chunk_bytes < 1):
        raise ConfigError(f"must be a positive number of bytes or None, got {chunk_bytes!r}",
                          where="calibrate(chunk_bytes=)")


def _accumulator(graph: Graph, layer: SynapseLayer, kernel: str, max_groups: int,
                 dev: torch.device, precision: str, row_fraction: float, seed: int,
                 block: int | None) -> HessianAccumulator:
    """An empty accumulator of ``layer``'s sums, its rows grouped by the neuron's decays."""
    kernels, groups = kernel_for_neuron(neuron_per_row(graph, layer),
                                        layer.synapse.out_channels, kind=kernel,
                                        max_groups=max_groups)
    return HessianAccumulator(
        layer.synapse, kernels, groups, layer_row_weight(graph, layer, kernel), device=dev,
        precision=precision, row_fraction=row_fraction, seed=seed, block_size=block)


def _feed_batches(graph: Graph, x: Any, accumulators: Mapping[str, HessianAccumulator],
                  batch_size: int, t_chunk: int, dev: torch.device,
                  progress: Progress | None) -> float:
    """Simulate every batch and feed each layer's input to its accumulator; returns the
    seconds spent summing. Under torch.distributed each process simulates its share of the
    batches and every process adds every batch's sums in global batch order."""
    from sbc_deploy import distributed

    group = distributed.active()
    world, rank = (1, 0) if group is None else (group.world_size, group.rank)
    total = int(x.shape[0])
    n_batches = -(-total // batch_size)
    chunked = t_chunk < int(x.shape[1])
    sum_seconds = 0.0
    for first in range(0, n_batches, world):
        index = first + rank
        parts: dict[str, BatchSum] = {}
        if index < n_batches:
            feed = _feed_in_chunks if chunked else _feed_whole
            sum_seconds += feed(graph, x, index, batch_size, accumulators, parts,
                                group is None, dev, t_chunk)
        if group is not None:
            for name, acc in accumulators.items():  # every rank's batch, in batch order
                for got in _gather(acc, parts.get(name), group, dev):
                    if got is not None:
                        acc.add_batch_sum(got)
        if progress is not None:
            progress(min(total, (first + world) * batch_size), total)
    return sum_seconds


def _feed_in_chunks(graph: Graph, x: Any, index: int, batch_size: int,
                    accumulators: Mapping[str, HessianAccumulator], parts: dict[str, BatchSum],
                    alone: bool, dev: torch.device, t_chunk: int) -> float:
    """Batch ``index`` in time chunks, the neurons' and the filters' states carried; alone
    (one process) the chunks go straight into the totals, else the batch's sums into
    ``parts``. Returns the seconds spent summing."""
    seconds = 0.0
    batch = _batch(x, index, batch_size)
    for acc in accumulators.values():
        acc.begin(index, into_totals=alone)

    def feed(name: str, inputs: torch.Tensor) -> None:
        nonlocal seconds
        if name in accumulators:
            tick = time.perf_counter()
            accumulators[name].feed(inputs)
            seconds += time.perf_counter() - tick

    simulate(graph, batch, on_synapse_input=feed, device=dev, time_chunk=t_chunk,
             batch_chunk=int(batch.shape[1]))
    del batch  # before the sums are handed over
    tick = time.perf_counter()
    for name, acc in accumulators.items():
        part = acc.finish()
        if part is not None:
            parts[name] = part
    return seconds + time.perf_counter() - tick


def _feed_whole(graph: Graph, x: Any, index: int, batch_size: int,
                accumulators: Mapping[str, HessianAccumulator], parts: dict[str, BatchSum],
                alone: bool, dev: torch.device, t_chunk: int) -> float:
    """Batch ``index``'s whole sequence at once; alone each layer's batch sum is added at once
    (no batch kept), else it goes into ``parts`` (``t_chunk``: unused, the same call shape as
    :func:`_feed_in_chunks`). Returns the seconds spent summing."""
    seconds = 0.0
    batch = _batch(x, index, batch_size)

    def on_synapse_input(name: str, inputs: torch.Tensor) -> None:
        nonlocal seconds
        if name in accumulators:
            tick = time.perf_counter()
            if alone:  # at once: no batch kept, no per-batch permutation
                accumulators[name].accumulate(inputs, index)
            else:
                parts[name] = accumulators[name].batch_sum(inputs, index)
            seconds += time.perf_counter() - tick

    simulate(graph, batch, on_synapse_input=on_synapse_input, device=dev)
    return seconds


def time_chunk(graph: Graph, steps: int, batch: int, chunk_bytes: int | None) -> int:
    """Steps per time chunk of a calibration batch of ``batch`` sequences.

    The widest node value of a chunk (``[chunk, batch, *shape]`` float32) stays within
    ``chunk_bytes`` (at least one step); chunks of 32 steps or more are cut to a multiple of
    :data:`~sbc_deploy.compress.hessian.SCAN_BLOCK`, so that the filter's blocks are those of
    the whole sequence. ``None``: the whole sequence (no chunks).
    """
    if chunk_bytes is None or steps <= 1:
        return max(steps, 1)
    widest = max(max(math.prod(int(v) for v in node.output_shape),
                     math.prod(int(v) for v in node.input_shape))
                 for node in graph.nodes.values()) * 4 * max(batch, 1)
    chunk = max(1, int(chunk_bytes) // max(widest, 1))
    if chunk >= steps:
        return steps
    if chunk >= SCAN_BLOCK:
        chunk -= chunk % SCAN_BLOCK
    return chunk


def calibration_bytes(graph: Graph, sizes: Sequence[HessianSize], blocks: Mapping[str, int], *,
                      steps: int, batch: int, chunk_bytes: int | None,
                      world_size: int = 1) -> int:
    """Bytes :func:`calibrate` adds at its peak for batches of ``batch`` sequences of ``steps``
    (``sizes``: the calibrated layers' :func:`~sbc_deploy.compress.hessian.hessian_size`;
    ``blocks``: layer -> diagonal block size; ``chunk_bytes`` as in :func:`calibrate`).

    Every layer's float64 totals, plus the larger of feeding one time chunk (the simulator's
    chunk without a hook and the most expensive layer's summing of it) and the end's hand-over
    of one layer's totals; under torch.distributed also the exchange of the batch sums (every
    total once more and ``world_size`` of the largest). ``sbc_deploy.memory`` adds this up.
    """
    sums = sums_bytes(sizes, blocks)
    largest = max(s.values(blocks.get(s.name)) for s in sizes) * 8
    chunk = time_chunk(graph, steps, batch, chunk_bytes)
    summing = max(accumulation_bytes(s, batch, chunk, blocks.get(s.name)) for s in sizes)
    final = max(final_copy_bytes(s, blocks.get(s.name)) for s in sizes)
    exchange = (sums + world_size * largest) if world_size > 1 else 0
    feeding = simulation_bytes(graph, steps, batch, chunk, batch, False) + summing
    return sums + int(max(feeding, final)) + exchange


def _gram_flops(acc: HessianAccumulator) -> float:
    """Floating-point operations of the Hessian GEMMs (kept rows; every process's)."""
    per_row = math.prod(acc.sum_shape()[1:])  # conv_groups x n_in^2, or x blocks x b^2
    rows = acc.n_rows * acc.steps * acc.row_fraction
    return 2.0 * len(acc.kernels) * rows * per_row


def _batch(x: np.ndarray | torch.Tensor, index: int, batch_size: int) -> torch.Tensor:
    """Batch ``index`` of the data as ``[T, B, *input_shape]`` float32."""
    chunk = x[index * batch_size:(index + 1) * batch_size]
    # A copy: dataset arrays are read-only, and torch wants writable memory.
    tensor = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.array(chunk))
    return tensor.transpose(0, 1).to(torch.float32)


def _gather(acc: HessianAccumulator, part: BatchSum | None, group: Any,
            device: torch.device) -> list[BatchSum | None]:
    """Every rank's batch sums of one layer (``None`` where a rank had no batch), rank order."""
    from sbc_deploy import distributed

    shapes = [tuple(acc.sum_shape()), (conv_groups(acc.synapse), acc.n_in), (3,)]
    tensors = None
    if part is not None:
        counts = torch.tensor([part.n_samples, part.n_rows, part.steps], dtype=torch.float64)
        tensors = [part.xtx, part.x_sum, counts.to(part.xtx.device)]
    out: list[BatchSum | None] = []
    for got in distributed.gather_in_rank_order(tensors, shapes, group, device):
        if got is None:
            out.append(None)
            continue
        xtx, x_sum, counts = got
        n_samples, n_rows, steps = (int(v) for v in counts.tolist())
        out.append(BatchSum(xtx, x_sum, n_samples, n_rows, steps))
    return out
