"""Pure graph transforms: each takes a Graph and returns a new one (and what it did).

``fold_channel_affines`` folds every per-channel affine (a BatchNorm in eval mode) that follows
a synapse alone into that synapse, exactly (in real arithmetic; one float64 rounding per
weight)::

    y = scale[c] * (W x + b)[c] + shift[c]  =  (scale[c] W[c]) x + (scale[c] b[c] + shift[c])

so ``W' = scale[:, None] * W`` and ``b' = scale * b + shift``. Compression then acts on ``W'``
(the weights the chip stores). To put compressed weights back into a module that keeps its
BatchNorm (running statistics untouched), :meth:`AffineFold.unfold` inverts the fold per output
channel: ``W_module[c] = W'[c] / scale[c]`` and ``b_module[c] = (b'[c] - shift[c]) / scale[c]``;
the module then computes ``scale * (W_module x + b_module) + shift = W' x + b'`` again.

Example::

    >>> folded, folds = fold_channel_affines(graph)     # conv -> bn -> lif  =>  conv -> lif
    >>> weight, bias = folds[0].unfold(compressed.nodes["conv"].weight,
    ...                                compressed.nodes["conv"].bias)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from sbc_deploy.ir.encoding import frozen_array
from sbc_deploy.ir.graph import Graph, SynapseLayer
from sbc_deploy.ir.nodes import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    ChannelAffine,
    Flatten,
    Identity,
    MaxPool2d,
    Neuron,
    Node,
    Reduce,
    Scale,
    SumPool2d,
    Synapse,
)

log = logging.getLogger(__name__)

# Nodes between a synapse and its neuron after which neuron element k still belongs to the
# synapse's output row (channel) k // (size / rows), channel-major.
_KEEPS_ROWS = (Scale, ChannelAffine, Identity, SumPool2d, AvgPool2d, MaxPool2d,
               AdaptiveAvgPool2d, Flatten)


@dataclass(frozen=True)
class AffineFold:
    """One ``ChannelAffine`` node (``affine``) folded into the synapse before it (``synapse``).

    ``scale`` and ``shift`` are the affine's per-output-channel arrays.
    """

    affine: str
    synapse: str
    scale: np.ndarray
    shift: np.ndarray

    def unfold(self, weight: np.ndarray,
               bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """The synapse's weight and bias *before* the affine, from the folded ones.

        ``W[c] = W'[c] / scale[c]``, ``b[c] = (b'[c] - shift[c]) / scale[c]``. Where
        ``scale[c] == 0`` the channel's output is the constant ``shift[c]`` whatever its
        weights, so the row and its bias are returned as zeros. The bias is ``None`` where it
        is zero everywhere (a module whose layer has no bias parameter needs exactly that).
        """
        weight = np.asarray(weight, dtype=np.float64)
        live = self.scale != 0
        divisor = np.where(live, self.scale, 1.0)
        rows = (-1, *[1] * (weight.ndim - 1))
        out_weight = np.where(live.reshape(rows), weight / divisor.reshape(rows), 0.0)
        folded_bias = self.shift if bias is None else np.asarray(bias, dtype=np.float64)
        out_bias = np.where(live, (folded_bias - self.shift) / divisor, 0.0)
        return out_weight, (out_bias if np.any(out_bias) else None)


def fold_channel_affines(graph: Graph) -> tuple[Graph, tuple[AffineFold, ...]]:
    """Fold each ``ChannelAffine`` whose single input is a synapse that feeds it alone.

    A ``ChannelAffine`` after anything else (a residual sum, a neuron, a pool) stays a node.
    The folded synapse loses its weight encoding (its weights left their grid) and records
    ``metadata["folded_affine"]`` (the removed node's name); the affine's outgoing edges (and
    their ports) leave the synapse instead.

    Returns:
        The new graph and one :class:`AffineFold` per removed node, in topological order.
    """
    nodes: dict[str, Node] = dict(graph.nodes)
    edges = list(graph.edges)
    ports = dict(graph.ports)
    folds: list[AffineFold] = []
    for name in graph.topological_order:
        node = graph.nodes[name]
        if not isinstance(node, ChannelAffine):
            continue
        sources = [src for src, dst in edges if dst == name]
        if len(sources) != 1 or not isinstance(nodes[sources[0]], Synapse):
            continue
        src = sources[0]
        if [dst for s, dst in edges if s == src] != [name] or (src, name) in graph.recurrent_edges:
            continue
        synapse: Synapse = nodes[src]  # type: ignore[assignment]
        scale, shift = node.scale, node.shift
        weight = synapse.weight * scale.reshape(-1, *[1] * (synapse.weight.ndim - 1))
        if synapse.bias is None and not np.any(shift):
            bias = None
        else:
            base = np.zeros(shift.shape) if synapse.bias is None else synapse.bias
            bias = frozen_array(scale * base + shift)
        nodes[src] = synapse.replace(weight=weight, bias=bias, encoding=None,
                                     metadata={**synapse.metadata, "folded_affine": name})
        del nodes[name]
        rewired = []
        for s, d in edges:
            if (s, d) == (src, name):
                continue
            if s == name:
                if (s, d) in ports:
                    ports[(src, d)] = ports.pop((s, d))
                rewired.append((src, d))
            else:
                rewired.append((s, d))
        edges = rewired
        folds.append(AffineFold(name, src, scale, shift))
    if not folds:
        return graph, ()
    return Graph(nodes, tuple(edges), graph.dt, graph.metadata, ports), tuple(folds)


def lower_adaptive_pools(graph: Graph) -> Graph:
    """Each ``AdaptiveAvgPool2d`` whose output size divides its input size, as the equal
    ``AvgPool2d`` under the same name (the others stay)."""
    changes = {}
    for name, node in graph.nodes.items():
        if isinstance(node, AdaptiveAvgPool2d):
            lowered = node.as_avg_pool()
            if lowered is not None:
                changes[name] = lowered
    return graph.replace_nodes(changes) if changes else graph


def neuron_per_row(graph: Graph, layer: SynapseLayer) -> Neuron | None:
    """The layer's neuron as its output rows see it (for per-row SMP kernels and gains).

    Through nodes that keep the channel axis in place (gains, pools, Flatten, a Reduce over
    other axes) that is the neuron itself: element ``k`` of the neuron reads row
    ``k // (size / rows)``. Through a Permute, Reshape, Slice or a Reduce over the channel axis
    the rows no longer line up with the neuron's elements; the neuron is then returned with
    every parameter set to its mean, one value per row (exact for the usual neuron layer with
    one time constant and threshold; a logged approximation otherwise).
    """
    neuron = layer.neuron
    if neuron is None:
        return None
    current = layer.name
    aligned = True
    while current != layer.neuron_name:
        (current,) = graph.successors(current)
        node = graph.nodes[current]
        if isinstance(node, Neuron):
            break
        if isinstance(node, Reduce) and 0 not in node.axes:
            continue
        if not isinstance(node, _KEEPS_ROWS):
            aligned = False
    rows = layer.synapse.out_channels
    if aligned and neuron.shape and int(np.prod(neuron.shape)) % rows == 0:
        return neuron
    changes = {}
    for name in neuron._params:
        values = np.asarray(getattr(neuron, name), dtype=np.float64)
        if not np.all(values == values.reshape(-1)[0]):
            log.info("%s.%s varies across neurons; layer %s's rows reach the neurons through "
                     "a reshape, so each row uses its mean", layer.neuron_name, name, layer.name)
        changes[name] = np.full(rows, values.mean())
    return neuron.replace(**changes)  # type: ignore[return-value]
