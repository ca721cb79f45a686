r"""Evaluation in bounded memory: SynOps counted chunk by chunk while the simulator streams.

:func:`sbc_deploy.report.synops.count_synops` takes every synapse layer's whole input
``[T, B, ...]`` at once; keeping those inputs for a large network is what made evaluation's
peak grow with ``T`` and the batch. :class:`SynOpsCounter` is an ``on_synapse_input`` hook that
reduces each chunk to its per-step counts as it arrives (the same counts: events times
fan-out, per step, summed over the batch) and keeps nothing else::

    events[t, i] = sum_b |x[t, b, i]|                       one reduction over the batch
    synops[t]    = sum_i events[t, i] * fan_out[i]          one int64 GEMV, fan-outs computed once

per chunk, concatenated over t, so its report equals ``count_synops`` on the whole sequence.
Each chunk is reduced over the batch where it lives, in the simulation's dtype (on a GPU only
the ``[t, n_in]`` event counts cross to the host). That sum is exact: the addends are
non-negative integers, so every partial sum is at most the total, and a total below
``2 / eps`` of the dtype (2**24 for float32) means every partial sum was an exact integer; a
larger total is summed again in float64 (exact below 2**53), as ``count_synops`` does.

Which values are integers is known from the graph where it can be: a spiking neuron (or a
Threshold) emits 0/1, and Flatten, SumPool2d, Delay and the sum of several such inputs keep
non-negative integers; those layers skip the per-chunk check. The values of an Input are
integers when the caller says so (``integer_inputs``: the data's dtype is integer or bool);
otherwise, and for every other layer, each chunk is checked. The one exception to the equality
with ``count_synops``: that function decides per call whether a layer's values are integers;
here each chunk decides, so a chunk of an analog input that happens to hold only integers
counts its values rather than its non-zeros (never the case for spikes).

Products of two activations are counted by :meth:`SynOpsCounter.operands`, the simulator's
``on_operands`` hook (``report.synops.product_terms``: non-zero product terms per step, apart
from the SynOps)::

    >>> counter = SynOpsCounter(graph, steps=x.shape[0], batch=x.shape[1])
    >>> simulate(graph, x, on_synapse_input=counter, on_operands=counter.operands,
    ...          memory_budget=64 << 20)
    >>> counter.report().per_sample, counter.report().product_ops
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from sbc_deploy.errors import DataError
from sbc_deploy.ir import (
    Delay,
    Flatten,
    Graph,
    Identity,
    Input,
    MatMul,
    MaxPool2d,
    Neuron,
    Permute,
    Product,
    Reduce,
    Reshape,
    Slice,
    SumPool2d,
    Threshold,
)
from sbc_deploy.report.synops import (
    LayerFanOut,
    LayerSynOps,
    NeuronUpdates,
    ProductOps,
    SynOpsReport,
    _source,
    dense_terms,
    product_terms,
)


class SynOpsCounter:
    """An ``on_synapse_input`` hook for one :func:`~sbc_deploy.sim.simulate` call that counts
    SynOps per chunk (see the module docstring).

    Args:
        graph: the simulated network (its weights decide which synapses exist).
        steps, batch: ``T`` and ``B`` of the simulated inputs.
        integer_inputs: the values of the graph's Inputs are integers (the data's dtype is
            integer or bool), so the layers they feed need no per-chunk check. Passing True
            for non-integer data makes those layers count values instead of non-zeros.
    """

    def __init__(self, graph: Graph, steps: int, batch: int, *,
                 integer_inputs: bool = False) -> None:
        self.graph, self.steps, self.batch = graph, int(steps), int(batch)
        self.layers = {entry.name: entry.synapse for entry in graph.synapse_layers()}
        if not self.layers:
            raise DataError("the graph has no synapse layer to count", where="SynOpsCounter")
        self._fans = {name: LayerFanOut.of(synapse) for name, synapse in self.layers.items()}
        self._sources = {name: _source(graph, name) for name in self.layers}
        values = integer_values(graph, integer_inputs)
        self._known = {name: _sum_of(graph, name, values) for name in self.layers}
        self._totals: dict[str, LayerSynOps] = {}
        self._group: dict[str, list[LayerSynOps]] = {name: [] for name in self.layers}
        self._filled: dict[str, tuple[int, int]] = {name: (0, 0) for name in self.layers}
        self.products = [name for name in graph.topological_order
                         if isinstance(graph.nodes[name], (Product, MatMul))]
        self._ops = {name: np.zeros(self.steps, dtype=np.int64) for name in self.products}
        self._at = {name: (0, 0) for name in self.products}  # (step in the group, samples)

    def operands(self, name: str, a: Tensor, b: Tensor) -> None:
        """The ``on_operands`` hook: count one chunk of product ``name``'s terms."""
        if name not in self._ops:
            raise DataError(f"'{name}' is no product of two activations of this graph",
                            where="SynOpsCounter.operands")
        start, samples = self._at[name]
        steps = int(a.shape[0])
        if start + steps > self.steps:
            raise DataError(f"received {start + steps} steps for one group of samples, "
                            f"expected {self.steps}", where=f"SynOpsCounter, product '{name}'")
        matmul = isinstance(self.graph.nodes[name], MatMul)
        self._ops[name][start:start + steps] += product_terms(a, b, matmul)
        start += steps
        if start == self.steps:
            start, samples = 0, samples + int(a.shape[1])
        self._at[name] = (start, samples)

    def __call__(self, name: str, x: Tensor) -> None:
        steps_in, samples_in = int(x.shape[0]), int(x.shape[1])
        integer, non_negative = self._known[name]
        flat = x.reshape(steps_in, samples_in, -1)
        # reduce over the batch where x lives (a GPU sends [t, N] counts, not [t, b, N] spikes)
        if not flat.is_floating_point():
            integer = True
            if not non_negative and flat.dtype != torch.bool and bool((flat < 0).any()):
                flat = flat.abs()
            events = flat.sum(dim=1, dtype=torch.int64)
        else:
            integer = integer or bool(torch.equal(flat, torch.round(flat)))
            if integer:
                events = _event_sum(flat if non_negative or bool(flat.amin() >= 0)
                                    else flat.abs())
            else:
                # analog values: one event per non-zero value (count_synops' graded rule)
                events = torch.count_nonzero(flat, dim=1)
        per_step = events.cpu().numpy().astype(np.int64, copy=False)
        counts = self._fans[name].counts(name, self._sources[name], per_step,
                                         graded=not integer)
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
        # products are counted when the simulation was given ``on_operands=self.operands``
        fed = any(at != (0, 0) for at in self._at.values())
        incomplete = [name for name, (steps, samples) in
                      (*self._filled.items(), *(self._at.items() if fed else ()))
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
        products = tuple(ProductOps(name, self.graph.nodes[name].kind, self._ops[name].copy(),
                                    dense_terms(self.graph.nodes[name]))
                         for name in self.products) if fed else ()
        return SynOpsReport(self.steps, self.batch, tuple(self._totals[n] for n in order),
                            neurons, products)


def integer_values(graph: Graph, integer_inputs: bool = False) -> dict[str, tuple[bool, bool]]:
    """Node -> (its output values are integers, they are non-negative) in the float simulator,
    where the graph shows it: a spiking neuron or a Threshold emits 0/1; Flatten, SumPool2d,
    Delay and the graph operations that move or select values (MaxPool2d, Identity, Reshape,
    Permute, Slice, a sum Reduce) keep what they receive; a Product (or an unscaled MatMul) of
    integers is an integer; an Input is integer (sign unknown) when
    ``integer_inputs``; any other node, unknown ``(False, False)``. A node on a cycle may be
    left unknown (it is then checked per chunk, never miscounted)."""
    known: dict[str, tuple[bool, bool]] = {}

    def visit(name: str) -> tuple[bool, bool]:
        if name in known:
            return known[name]
        known[name] = (False, False)   # on a cycle: unknown until shown otherwise
        node = graph.nodes[name]
        if isinstance(node, Input):
            result = (bool(integer_inputs), False)
        elif isinstance(node, Threshold) or (isinstance(node, Neuron) and node.spiking):
            result = (True, True)
        elif isinstance(node, (Flatten, SumPool2d, Delay, MaxPool2d, Identity, Reshape, Permute,
                               Slice)) or (isinstance(node, Reduce) and node.op == "sum"):
            result = _sum_of(graph, name, known, visit)
        elif isinstance(node, Product) or (isinstance(node, MatMul) and node.scale == 1.0):
            # products and sums of products of integers are integers; of non-negative ones,
            # non-negative (several edges into one port add up first)
            ports = [[visit(src) for src in sources]
                     for sources in graph.operands(name).values()]
            result = (all(p[0] for port in ports for p in port),
                      all(p[1] for port in ports for p in port))
        else:
            result = (False, False)
        known[name] = result
        return result

    for name in graph.topological_order:
        visit(name)
    return known


def _sum_of(graph: Graph, name: str, known: dict[str, tuple[bool, bool]],
            visit: Any = None) -> tuple[bool, bool]:
    """What is known of the sum of ``name``'s inputs (integer, non-negative)."""
    preds = graph.predecessors(name)
    parts = [visit(src) if visit is not None else known.get(src, (False, False))
             for src in preds]
    return (bool(parts) and all(p[0] for p in parts), bool(parts) and all(p[1] for p in parts))


def _event_sum(x: Tensor) -> Tensor:
    """``sum_b x[t, b, i]`` of non-negative integer values ``x`` ``[t, b, N]``, exactly.

    Summed in ``x``'s dtype: every partial sum of non-negative addends is at most the total,
    so a computed total below ``2 / eps`` (the dtype's largest run of exact integers; rounding
    is monotone, so a true total at or above it never comes out below it) means that no
    addition rounded. Otherwise summed again in float64, exact below 2**53.
    """
    events = x.sum(dim=1)
    if events.numel() and float(events.max()) >= 2.0 / torch.finfo(x.dtype).eps:
        events = x.sum(dim=1, dtype=torch.float64)
    return events


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


__all__ = ["SynOpsCounter", "integer_values"]
