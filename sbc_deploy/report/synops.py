r"""Synaptic operations counted from recorded spikes, per layer and per time step.

A SynOp is one input spike delivered over one non-zero synapse. For a synapse layer with
weight ``W`` and input events ``x[t, b, i]`` (spikes, or integer event counts)::

    synops[t]       = sum_{b, i} |x[t, b, i]| * fan_out[i]
    fan_out[i]      = #{ synapses (j, i) with W != 0 }      dense: non-zeros of column i
                      conv: the (output position, non-zero tap) pairs that input position i
                      reaches, exactly, at the borders too

The conv fan-out map is the transposed convolution of an all-ones output map with the binary
mask ``W != 0`` (each input position collects the taps that read it). Because the count is
linear in the mask, pruning changes it by exactly the pruned synapses that would have carried
spikes. ``dense_synops`` counts the same spikes over every structural synapse (all weights
non-zero). Inputs that are not integers (an analog first layer fed by the float simulator)
count one event per non-zero value (NeuroBench's effective MACs) and flag the layer ``graded``.

Also counted: ``spikes_in`` (events delivered to the layer: the spikes routed to it; a spike
sent to two synapse layers is routed twice), neuron updates (every neuron of the graph, every
step: a time-stepped core updates them all) and, per sample, the MACs of the equivalent ANN
(one pass, each kernel tap that lands on a real input counted once: zero padding is skipped).

Products of two activations (``Product``, ``MatMul``: attention, SEW AND / IAND) involve no
synapse weight, so they are no SynOps; they are counted apart, as ``products``, one operation
per product term whose two factors are both non-zero (:func:`product_terms`)::

    MatMul  y = s a b:  ops[t] = sum_{B, ..., k} nnz_i(a[t, B, ..., i, k]) nnz_j(b[t, B, ..., k, j])
    Product y = a * b:  ops[t] = #{ elements with a != 0 and b != 0 }

On spikes a term is one accumulation (the spike-driven Transformer's "all matrix
multiplications associated with the spike matrix can be transformed into sparse additions",
Yao et al., NeurIPS 2023; Q K^T V in Spikformer's SSA); a Hadamard product of spikes is a mask
whose ones the column sum after it adds (SDSA's "mask and addition"). Spikingformer's energy
script (zhouchenlin2096/Spikingformer, energy_consumption_calculation/flops_counter.py) counts
SSA's accumulations as the dense product count ``T N d^2`` per head times the operands' firing
rates; counting the non-zero terms themselves is the exact form of that estimate. ``dense``
beside it is every product term (the ANN's count).

Example::

    >>> inputs = {}
    >>> simulate(graph, x, on_synapse_input=inputs.__setitem__)        # float simulator
    >>> report = count_synops(graph, inputs)
    >>> report.per_sample, report.layer("fc1").synops                   # SynOps/sample, [T]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sbc_deploy.errors import DataError
from sbc_deploy.ir import Affine, Conv1d, Conv2d, Flatten, Graph, Neuron, Synapse


@dataclass(frozen=True, eq=False)
class LayerSynOps:
    """Counts of one synapse layer; per-step arrays ``[T]`` are totals over the batch.

    Attributes:
        name: the synapse node; ``kind`` its type; ``source`` the node whose output it reads.
        synops: SynOps per step (non-zero synapses only).
        dense_synops: the same input events over every structural synapse.
        spikes_in: input events per step (spikes routed to this layer).
        synapses: non-zero weights; ``dense_synapses``: all weights.
        ann_macs: MACs of one pass of the equivalent dense ANN layer (per sample).
        ann_macs_nonzero: the same with the zero weights skipped.
        graded: the input was not integer-valued (one event per non-zero value).
    """

    name: str
    kind: str
    source: str
    synops: np.ndarray
    dense_synops: np.ndarray
    spikes_in: np.ndarray
    synapses: int
    dense_synapses: int
    ann_macs: int
    ann_macs_nonzero: int
    graded: bool = False


@dataclass(frozen=True, eq=False)
class NeuronUpdates:
    """Neuron updates of one neuron node: ``neurons`` per sample, ``updates`` per step ``[T]``
    (totals over the batch)."""

    name: str
    neurons: int
    updates: np.ndarray


@dataclass(frozen=True, eq=False)
class ProductOps:
    """Operations of one product of two activations (``Product`` / ``MatMul``): ``ops`` per
    step ``[T]`` (product terms with both factors non-zero, totals over the batch) and
    ``dense`` (every product term, per sample and step)."""

    name: str
    kind: str
    ops: np.ndarray
    dense: int


def product_terms(a: Any, b: Any, matmul: bool) -> np.ndarray:
    """Per step, the product terms of ``a`` and ``b`` (``[t, batch, *port]`` each) whose two
    factors are non-zero, summed over the batch (int64; the module docstring's rule)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    steps = int(a.shape[0])
    if matmul:
        left = (a != 0).sum(dim=-2)     # [t, B, *lead_a, k]: non-zero rows per column k of a
        right = (b != 0).sum(dim=-1)    # [t, B, *lead_b, k]: non-zero columns per row k of b
    else:
        left, right = (a != 0), (b != 0)
    rank = max(left.dim(), right.dim())  # leading axes broadcast from the right, after [t, B]
    left, right = (x.reshape(*x.shape[:2], *(1,) * (rank - x.dim()), *x.shape[2:])
                   for x in (left, right))
    terms = left.to(torch.int64) * right.to(torch.int64)
    return terms.reshape(steps, -1).sum(dim=1).cpu().numpy().astype(np.int64)


def dense_terms(node: Any) -> int:
    """Every product term of one step and sample: ``prod(out) * k`` for a MatMul, the output
    size for a Product."""
    size = int(np.prod(node.output_shape))
    return size * int(node.inner) if node.kind == "MatMul" else size


@dataclass(frozen=True, eq=False)
class SynOpsReport:
    """SynOps, spikes routed and neuron updates of a simulation, per layer and per step.

    Attributes:
        steps: ``T``; ``samples``: the batch size ``B`` (summed over merged reports).
        layers: one :class:`LayerSynOps` per synapse layer, in topological order.
        neurons: one :class:`NeuronUpdates` per neuron node.
        products: one :class:`ProductOps` per product of two activations (empty when they
            were not counted), apart from the SynOps.
    """

    steps: int
    samples: int
    layers: tuple[LayerSynOps, ...]
    neurons: tuple[NeuronUpdates, ...]
    products: tuple[ProductOps, ...] = ()

    # ------------------------------------------------------------------ totals (all samples)

    @property
    def synops(self) -> int:
        return int(sum(int(layer.synops.sum()) for layer in self.layers))

    @property
    def dense_synops(self) -> int:
        return int(sum(int(layer.dense_synops.sum()) for layer in self.layers))

    @property
    def spikes_routed(self) -> int:
        return int(sum(int(layer.spikes_in.sum()) for layer in self.layers))

    @property
    def neuron_updates(self) -> int:
        return int(sum(int(n.updates.sum()) for n in self.neurons))

    @property
    def product_ops(self) -> int:
        """Operations of the products of two activations (not SynOps; module docstring)."""
        return int(sum(int(p.ops.sum()) for p in self.products))

    # ------------------------------------------------------------------ per sample

    @property
    def per_sample(self) -> float:
        """SynOps per sample (what ``report.json``'s ``synops`` holds)."""
        return self.synops / self.samples

    @property
    def ann_macs(self) -> int:
        """MACs of one pass of the equivalent ANN, per sample."""
        return int(sum(layer.ann_macs for layer in self.layers))

    def per_sample_counts(self) -> dict[str, float]:
        """Every count per sample: synops, dense_synops, spikes_routed, neuron_updates,
        ann_macs, ann_macs_nonzero, product_ops (products of two activations) and steps."""
        n = self.samples
        return {
            "synops": self.synops / n,
            "dense_synops": self.dense_synops / n,
            "spikes_routed": self.spikes_routed / n,
            "neuron_updates": self.neuron_updates / n,
            "ann_macs": float(self.ann_macs),
            "ann_macs_nonzero": float(sum(layer.ann_macs_nonzero for layer in self.layers)),
            "product_ops": self.product_ops / n,
            "steps": float(self.steps),
        }

    def restricted(self, nodes: Any) -> SynOpsReport:
        """The counts of the layers, neurons and products named in ``nodes`` only (the part of
        the network one side of a chip / host split runs)."""
        keep = set(nodes)
        return SynOpsReport(self.steps, self.samples,
                            tuple(x for x in self.layers if x.name in keep),
                            tuple(x for x in self.neurons if x.name in keep),
                            tuple(x for x in self.products if x.name in keep))

    def layer(self, name: str) -> LayerSynOps:
        """The counts of synapse layer ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise DataError(f"no synapse layer '{name}' in the report; layers: "
                        f"{', '.join(layer.name for layer in self.layers)}", where="SynOpsReport")

    def merge(self, other: SynOpsReport) -> SynOpsReport:
        """The counts of both batches together (same graph and number of steps)."""
        if self.steps != other.steps or [l.name for l in self.layers] != \
                [l.name for l in other.layers]:
            raise DataError(f"cannot merge reports of different runs ({self.steps} vs "
                            f"{other.steps} steps, or other layers)", where="SynOpsReport.merge")
        layers = tuple(
            LayerSynOps(a.name, a.kind, a.source, a.synops + b.synops,
                        a.dense_synops + b.dense_synops, a.spikes_in + b.spikes_in, a.synapses,
                        a.dense_synapses, a.ann_macs, a.ann_macs_nonzero, a.graded or b.graded)
            for a, b in zip(self.layers, other.layers))
        neurons = tuple(NeuronUpdates(a.name, a.neurons, a.updates + b.updates)
                        for a, b in zip(self.neurons, other.neurons))
        if [p.name for p in self.products] != [p.name for p in other.products]:
            raise DataError("cannot merge reports that counted different products",
                            where="SynOpsReport.merge")
        products = tuple(ProductOps(a.name, a.kind, a.ops + b.ops, a.dense)
                         for a, b in zip(self.products, other.products))
        return SynOpsReport(self.steps, self.samples + other.samples, layers, neurons,
                            products)

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for JSON: totals per sample and per layer."""
        n = self.samples
        return {
            "steps": self.steps,
            "samples": n,
            "per_sample": self.per_sample_counts(),
            "layers": [{
                "name": layer.name, "kind": layer.kind, "source": layer.source,
                "synops": int(layer.synops.sum()) / n,
                "dense_synops": int(layer.dense_synops.sum()) / n,
                "spikes_in": int(layer.spikes_in.sum()) / n,
                "synapses": layer.synapses, "dense_synapses": layer.dense_synapses,
                "ann_macs": layer.ann_macs, "ann_macs_nonzero": layer.ann_macs_nonzero,
                "graded": layer.graded,
            } for layer in self.layers],
            "neurons": [{"name": x.name, "neurons": x.neurons,
                         "updates": int(x.updates.sum()) / n} for x in self.neurons],
            "products": [{"name": x.name, "kind": x.kind, "ops": int(x.ops.sum()) / n,
                          "dense_ops": x.dense * self.steps} for x in self.products],
        }


# --------------------------------------------------------------------------- fan-out


def fan_out(synapse: Synapse, mask: np.ndarray | None = None) -> np.ndarray:
    """Synapses leaving each input element, exactly (conv borders included).

    Args:
        synapse: an ``Affine``, ``Conv1d`` or ``Conv2d`` node.
        mask: which synapses count (default ``weight != 0``); all ones gives the structural
            fan-out.

    Returns:
        int64 array of the synapse's per-sample input shape.
    """
    weight = np.asarray(synapse.weight)
    m = (weight != 0) if mask is None else np.asarray(mask, dtype=bool)
    if isinstance(synapse, Affine):
        return m.sum(axis=0).astype(np.int64)
    if not isinstance(synapse, (Conv1d, Conv2d)):
        raise DataError(f"cannot count the fan-out of a {synapse.kind}", where="fan_out")
    # each input position collects the (output position, tap) pairs that read it: the
    # transposed convolution of an all-ones output map with the binary mask
    out_shape = synapse.output_shape
    ones = torch.ones((1, *out_shape), dtype=torch.float64)
    k = torch.from_numpy(m.astype(np.float64))
    if isinstance(synapse, Conv2d):
        stride, padding, dilation = synapse.stride, synapse.padding, synapse.dilation
        sizes = synapse.input_shape[1:]
        extra = tuple(int(size + 2 * p - d * (kk - 1) - 1) % s for size, kk, s, p, d in
                      zip(sizes, m.shape[2:], stride, padding, dilation))
        fan = F.conv_transpose2d(ones, k, stride=stride, padding=padding, dilation=dilation,
                                 groups=synapse.groups, output_padding=extra)
    else:
        size, kk = synapse.input_shape[1], m.shape[2]
        extra = (size + 2 * synapse.padding - synapse.dilation * (kk - 1) - 1) % synapse.stride
        fan = F.conv_transpose1d(ones, k, stride=synapse.stride, padding=synapse.padding,
                                 dilation=synapse.dilation, groups=synapse.groups,
                                 output_padding=extra)
    fan = fan[0].round().to(torch.int64).numpy()
    if fan.shape != tuple(synapse.input_shape):
        raise DataError(f"fan-out map has shape {fan.shape}, expected {synapse.input_shape}",
                        where="fan_out")
    return fan


# --------------------------------------------------------------------------- counting


def synops_sources(graph: Graph) -> dict[str, str]:
    """Synapse name -> the node whose recorded output is its input (through Flatten nodes).

    Record these names in either simulator to count SynOps from its result.
    """
    sources = {}
    for layer in graph.synapse_layers():
        sources[layer.name] = _source(graph, layer.name)
    return sources


def _source(graph: Graph, synapse: str) -> str:
    preds = graph.predecessors(synapse)
    if len(preds) != 1:
        return synapse   # a merge: only the synapse's own input (its name) will do
    node = preds[0]
    while isinstance(graph.nodes[node], Flatten) and len(graph.predecessors(node)) == 1:
        node = graph.predecessors(node)[0]
    return node


def _as_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _input_of(graph: Graph, name: str, spikes: Mapping[str, Any]) -> tuple[np.ndarray, str]:
    synapse = graph.nodes[name]
    candidates = [name]
    node = name
    while len(graph.predecessors(node)) == 1:
        node = graph.predecessors(node)[0]
        candidates.append(node)
        if not isinstance(graph.nodes[node], Flatten):
            break
    for key in candidates:
        if key in spikes:
            x = _as_numpy(spikes[key])
            lead = x.shape[:2]
            if x.ndim < 2 or int(np.prod(x.shape[2:])) != int(np.prod(synapse.input_shape)):
                raise DataError(f"'{key}' holds shape {x.shape}; synapse '{name}' reads "
                                f"[T, B, {', '.join(map(str, synapse.input_shape))}]",
                                where="count_synops")
            return x.reshape(*lead, *synapse.input_shape), (key if key != name
                                                            else _source(graph, name))
    raise DataError(f"no recorded input for synapse '{name}': pass its input under its own "
                    f"name or record one of {', '.join(candidates[1:]) or name}",
                    where="count_synops", hint="see synops_sources(graph)")


def count_synops(graph: Graph, layer_input_spikes: Mapping[str, Any]) -> SynOpsReport:
    """Count SynOps, spikes routed and neuron updates from recorded spikes.

    Args:
        graph: the network whose weights decide which synapses exist (zeros are pruned).
        layer_input_spikes: ``[T, B, ...]`` arrays or tensors keyed by synapse name (the input
            it consumed, e.g. from the float simulator's ``on_synapse_input``) or by the node
            whose output feeds it (a neuron's spikes, the Input, a Flatten; see
            :func:`synops_sources`), from either simulator.

    Returns:
        A :class:`SynOpsReport`.

    Raises:
        DataError: a synapse's input is missing, or the arrays disagree on ``T`` and ``B``.
    """
    layers = []
    lead: tuple[int, int] | None = None
    for entry in graph.synapse_layers():
        syn = entry.synapse
        x, source = _input_of(graph, entry.name, layer_input_spikes)
        if lead is not None and tuple(x.shape[:2]) != lead:
            raise DataError(f"input of '{entry.name}' has [T, B] = {list(x.shape[:2])}, another "
                            f"layer's has {list(lead)}", where="count_synops")
        lead = (int(x.shape[0]), int(x.shape[1]))
        layers.append(_layer_counts(entry.name, syn, source, x))
    if lead is None:
        raise DataError("the graph has no synapse layer to count", where="count_synops")
    steps, batch = lead
    neurons = tuple(
        NeuronUpdates(name, int(np.prod(node.shape)),
                      np.full(steps, int(np.prod(node.shape)) * batch, dtype=np.int64))
        for name, node in graph.nodes.items() if isinstance(node, Neuron))
    return SynOpsReport(steps, batch, tuple(layers), neurons)


def _layer_counts(name: str, synapse: Synapse, source: str, x: np.ndarray) -> LayerSynOps:
    steps, batch = x.shape[:2]
    flat = x.reshape(steps, batch, -1)
    graded = False
    if flat.dtype == np.bool_ or np.issubdtype(flat.dtype, np.integer):
        signed = flat.dtype != np.bool_ and flat.size and flat.min() < 0
        per_step = (np.abs(flat) if signed else flat).sum(axis=1, dtype=np.int64)
    elif np.all(flat == np.round(flat)):
        # integer-valued floats (spikes, event counts): exact in float64 below 2**53
        per_step = np.abs(flat).sum(axis=1, dtype=np.float64).round().astype(np.int64)
    else:
        # analog values: one event per non-zero value
        per_step, graded = np.count_nonzero(flat, axis=1).astype(np.int64), True
    return LayerFanOut.of(synapse).counts(name, source, per_step, graded)


@dataclass(frozen=True, eq=False)
class LayerFanOut:
    """What a layer's counts need besides its events, computed once per synapse layer.

    Attributes:
        kind: the synapse's type.
        fan, fan_dense: :func:`fan_out` of the non-zero / of every structural synapse,
            flattened, int64.
        synapses, dense_synapses: non-zero weights, all weights.
    """

    kind: str
    fan: np.ndarray
    fan_dense: np.ndarray
    synapses: int
    dense_synapses: int

    @classmethod
    def of(cls, synapse: Synapse) -> LayerFanOut:
        return cls(synapse.kind, fan_out(synapse).reshape(-1),
                   fan_out(synapse, np.ones(synapse.weight.shape, dtype=bool)).reshape(-1),
                   int(np.count_nonzero(synapse.weight)), int(synapse.weight.size))

    def counts(self, name: str, source: str, per_step: np.ndarray,
               graded: bool = False) -> LayerSynOps:
        """The layer's counts from its events ``per_step`` ``[T, N]`` (int64, summed over the
        batch)::

            synops[t] = sum_i per_step[t, i] * fan_out[i]      (one int64 GEMV per layer)
        """
        # exact integer dot products (int64): events x fan-out, summed over the batch
        synops = per_step @ self.fan
        dense = per_step @ self.fan_dense
        return LayerSynOps(
            name=name, kind=self.kind, source=source, synops=synops.astype(np.int64),
            dense_synops=dense.astype(np.int64), spikes_in=per_step.sum(axis=1).astype(np.int64),
            synapses=self.synapses, dense_synapses=self.dense_synapses,
            ann_macs=int(self.fan_dense.sum()), ann_macs_nonzero=int(self.fan.sum()),
            graded=graded)


__all__ = ["LayerSynOps", "NeuronUpdates", "ProductOps", "SynOpsReport", "count_synops",
           "dense_terms", "fan_out", "product_terms", "synops_sources"]
