r"""Calibrate: run the float simulator on calibration data and sum one Hessian per synapse layer.

Stage contract: ``Graph`` + inputs ``x [N, T, *input_shape]`` -> :class:`Calibration` (frozen),
holding per synapse layer the float64 sums of :math:`(K X)^\top (K X)` and their counts
(:class:`~sbc_deploy.compress.hessian.HessianSum`). Streaming: batches of ``batch_size``
sequences go through :func:`sbc_deploy.sim.simulate`, whose ``on_synapse_input`` hook hands every
layer its whole input sequence; the sums never hold more than one batch of inputs, so memory
does not grow with ``N``.

Kernels (``kernel=``): ``"smp"`` filters each layer's inputs by the SMP kernel of the neuron that
follows it (SBC); ``"current"`` uses ``K = I`` for every layer (OBC / GPTQ / SparseGPT).

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from sbc_deploy.compress.hessian import (
    KERNELS,
    HessianAccumulator,
    HessianSum,
    kernel_for_neuron,
    per_row,
    resolve_device,
    torch_threads,
)
from sbc_deploy.errors import ConfigError, DataError
from sbc_deploy.ir import Graph, Neuron, Scale, SynapseLayer
from sbc_deploy.sim import simulate

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

__all__ = ["Calibration", "calibrate", "layer_row_weight"]


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", MappingProxyType(dict(self.layers)))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    def recompute(self, graph: Graph, names: Sequence[str],
                  progress: Progress | None = None) -> Calibration:
        """The same calibration with the layers ``names`` re-summed on ``graph``."""
        if self.data is None:
            raise DataError("this calibration kept no data; sequential propagation needs it",
                            where="Calibration.recompute")
        fresh = calibrate(graph, self.data, kernel=self.kernel, batch_size=self.batch_size,
                          device=self.device, max_groups=self.max_groups, layers=tuple(names),
                          threads=self.threads, progress=progress)
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
    neuron: Neuron = layer.neuron
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


def _batches(x: np.ndarray | torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, int(x.shape[0]), batch_size):
        chunk = x[start:start + batch_size]
        # A copy: dataset arrays are read-only, and torch wants writable memory.
        tensor = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.array(chunk))
        yield tensor.transpose(0, 1).to(torch.float32)  # [T, B, *input_shape]


def calibrate(graph: Graph, data: Any, *, kernel: str | None = None, batch_size: int = 32,
              device: str | None = None, config: Any = None, max_groups: int = 8,
              layers: Sequence[str] | None = None, threads: int | None = None,
              progress: Progress | None = None) -> Calibration:
    """Simulate ``graph`` on ``data`` and sum one Hessian per synapse layer, streaming.

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

    Raises:
        ConfigError: unknown kernel, bad batch size or device, unknown layer names.
        DataError: the data is not ``[N, T, *input_shape]`` for this graph.
    """
    if config is not None:
        kernel = kernel or getattr(config, "kernel", None)
        device = device or getattr(config, "device", None)
        threads = threads if threads is not None else getattr(config, "threads", None)
    kernel = kernel or "smp"
    device = device or "cpu"
    if kernel not in KERNELS:
        raise ConfigError(f"unknown kernel {kernel!r}; known: {', '.join(KERNELS)}",
                          where="calibrate(kernel=)")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"must be an integer >= 1, got {batch_size!r}",
                          where="calibrate(batch_size=)")
    dev = resolve_device(device)
    synapse_layers = graph.synapse_layers()
    known = {layer.name for layer in synapse_layers}
    wanted = known if layers is None else set(layers)
    unknown = sorted(wanted - known)
    if unknown:
        raise ConfigError(f"not synapse layers of the graph: {', '.join(unknown)}",
                          where="calibrate(layers=)")
    x = _inputs(data)
    settings = {"kernel": kernel, "batch_size": batch_size, "device": device,
                "max_groups": max_groups, "threads": threads}
    if x is None:
        return Calibration({}, steps=0, n_samples=0, data=None, **settings)  # type: ignore[arg-type]
    accumulators: dict[str, HessianAccumulator] = {}
    for layer in synapse_layers:
        if layer.name not in wanted:
            continue
        kernels, groups = kernel_for_neuron(layer.neuron, layer.synapse.out_channels, kind=kernel,
                                            max_groups=max_groups)
        accumulators[layer.name] = HessianAccumulator(
            layer.synapse, kernels, groups, layer_row_weight(graph, layer, kernel), device=dev)

    def on_synapse_input(name: str, inputs: torch.Tensor) -> None:
        if name in accumulators:
            accumulators[name].add(inputs)

    total, done = int(x.shape[0]), 0
    with torch_threads(threads):
        for batch in _batches(x, batch_size):
            simulate(graph, batch, on_synapse_input=on_synapse_input, device=dev)
            done += int(batch.shape[1])
            if progress is not None:
                progress(done, total)
    log.debug("calibrated %d layers on %d sequences (%s kernel)", len(accumulators), total, kernel)
    return Calibration({name: acc.result() for name, acc in accumulators.items()},
                       steps=int(x.shape[1]), n_samples=total, data=x, **settings)  # type: ignore[arg-type]
