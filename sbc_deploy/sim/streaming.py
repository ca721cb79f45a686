r"""Evaluation in bounded memory: SynOps counted chunk by chunk while the simulator streams.

:func:`sbc_deploy.report.synops.count_synops` takes every synapse layer's whole input
``[T, B, ...]`` at once; keeping those inputs for a large network is what made evaluation's
peak grow with ``T`` and the batch. :class:`SynOpsCounter` is an ``on_synapse_input`` hook that
reduces each chunk to its per-step counts as it arrives (the same counts: events times
fan-out, per step, summed over the batch) and keeps nothing else::

    synops[t] = sum_{b, i} |x[t, b, i]| * fan_out[i]        per chunk, concatenated over t

so its report equals ``count_synops`` on the whole sequence. Each chunk is first reduced over
the batch where it lives (on a GPU only the ``[t, n_in]`` event counts cross to the host). The one exception is a graded
(non-integer) layer input: ``count_synops`` decides per call whether the values are integers;
here each chunk decides, so a chunk of an analog input that happens to hold only integers
counts its values rather than its non-zeros (never the case for spikes).

Example::

    >>> counter = SynOpsCounter(graph, steps=x.shape[0], batch=x.shape[1])
    >>> simulate(graph, x, on_synapse_input=counter, memory_budget=64 << 20)
    >>> counter.report().per_sample
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sbc_deploy.errors import DataError
from sbc_deploy.ir import Graph, Neuron
from sbc_deploy.report.synops import (
    LayerSynOps,
    NeuronUpdates,
    SynOpsReport,
    _layer_counts,
    _source,
)


class SynOpsCounter:
    """An ``on_synapse_input`` hook for one :func:`~sbc_deploy.sim.simulate` call that counts
    SynOps per chunk (see the module docstring).

    Args:
        graph: the simulated network (its weights decide which synapses exist).
        steps, batch: ``T`` and ``B`` of the simulated inputs.
    """

    def __init__(self, graph: Graph, steps: int, batch: int) -> None:
        self.graph, self.steps, self.batch = graph, int(steps), int(batch)
        self.layers = {entry.name: entry.synapse for entry in graph.synapse_layers()}
        if not self.layers:
            raise DataError("the graph has no synapse layer to count", where="SynOpsCounter")
        self._totals: dict[str, LayerSynOps] = {}
        self._group: dict[str, list[LayerSynOps]] = {name: [] for name in self.layers}
        self._filled: dict[str, tuple[int, int]] = {name: (0, 0) for name in self.layers}

    def __call__(self, name: str, x: Tensor) -> None:
        synapse = self.layers[name]
        steps_in, samples_in = int(x.shape[0]), int(x.shape[1])
        # reduce over the batch where x lives (a GPU sends [t, N] counts, not [t, b, N] spikes)
        integer = not x.is_floating_point() or bool(torch.equal(x, torch.round(x)))
        if integer:
            # events[t, i] = sum_b |x[t, b, i]|: exact in float64 below 2**53
            events = x.abs().sum(dim=1, keepdim=True, dtype=torch.float64)
        else:
            # analog values: one event per non-zero value (count_synops' graded rule)
            events = (x != 0).sum(dim=1, keepdim=True, dtype=torch.float64)
        arr = events.cpu().numpy().reshape(steps_in, 1, *synapse.input_shape)
        counts = _layer_counts(name, synapse, _source(self.graph, name), arr)
        if not integer:
            counts = replace(counts, graded=True)
        group = self._group[name]
        group.append(counts)
        steps, samples = self._filled[name]
        steps += steps_in
        if steps > self.steps:
            raise DataError(f"received {steps} steps for one group of samples, expected "
                            f"{self.steps}", where=f"SynOpsCounter, synapse '{name}'")
        if steps == self.steps:   # a group of samples is complete: its counts join the total
            whole = _concat_time(group)
            group.clear()
            self._totals[name] = whole if name not in self._totals else \
                _add_samples(self._totals[name], whole)
            steps, samples = 0, samples + samples_in
        self._filled[name] = (steps, samples)

    def report(self) -> SynOpsReport:
        """The counts of the whole simulation (every layer must have seen every sample)."""
        incomplete = [name for name, (steps, samples) in self._filled.items()
                      if steps or samples != self.batch]
        if incomplete:
            raise DataError(f"layers {incomplete} did not receive all {self.steps} steps of all "
                            f"{self.batch} samples", where="SynOpsCounter.report")
        order = [entry.name for entry in self.graph.synapse_layers()]
        neurons = tuple(
            NeuronUpdates(name, int(np.prod(node.shape)),
                          np.full(self.steps, int(np.prod(node.shape)) * self.batch,
                                  dtype=np.int64))
            for name, node in self.graph.nodes.items() if isinstance(node, Neuron))
        return SynOpsReport(self.steps, self.batch, tuple(self._totals[n] for n in order),
                            neurons)


def _concat_time(parts: list[LayerSynOps]) -> LayerSynOps:
    first = parts[0]
    if len(parts) == 1:
        return first

    def cat(field: str) -> Any:
        return np.concatenate([getattr(p, field) for p in parts])

    return LayerSynOps(first.name, first.kind, first.source, cat("synops"),
                       cat("dense_synops"), cat("spikes_in"), first.synapses,
                       first.dense_synapses, first.ann_macs, first.ann_macs_nonzero,
                       any(p.graded for p in parts))


def _add_samples(a: LayerSynOps, b: LayerSynOps) -> LayerSynOps:
    return LayerSynOps(a.name, a.kind, a.source, a.synops + b.synops,
                       a.dense_synops + b.dense_synops, a.spikes_in + b.spikes_in, a.synapses,
                       a.dense_synapses, a.ann_macs, a.ann_macs_nonzero, a.graded or b.graded)


__all__ = ["SynOpsCounter"]
