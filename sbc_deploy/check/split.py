"""Chip / host split: which nodes a target runs, which stay on the host, and what crosses.

A target may run part of a network: its neurons and synapse layers on the chip, an operation it
has no circuit for (a max pool, a product of two activations, a layer norm) on the host CPU, as
Akida's MetaTF and Vitis AI partition a model and show it in their model summaries. The split is
decided per node:

- ``Input`` / ``Output`` are the I/O ports (``io``): the host's data enters and leaves there;
- a neuron runs on the chip when the target runs its kind (``[neurons] kinds``);
- any other node runs on the chip when its kind is one of the target's ``[layers] node_kinds``,
  or when it is a sum / average pool that the netx export folds into the next layer;
- everything else runs on the host, with the reason.

``segments`` are the connected parts of the graph that run on one side (in topological order of
their first node); ``transfers`` are the edges between the chip and the host, each with the
number of values per sample and step it carries and whether they are spikes (binary) or graded
values. A network without host nodes has one chip segment and no transfers.

Example::

    >>> split = chip_host_split(graph, load_target("loihi2"))
    >>> [(h.name, h.reason) for h in split.host]
    [('attn', 'loihi2 has no MatMul layer: a product of two activations ...')]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sbc_deploy.ir import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    ChannelAffine,
    Flatten,
    Graph,
    Identity,
    Input,
    LayerNorm,
    MatMul,
    MaxPool2d,
    Neuron,
    Output,
    Permute,
    Product,
    Reduce,
    Reshape,
    Slice,
    SumPool2d,
)
from sbc_deploy.targets import Target

__all__ = ["ChipHostSplit", "HostNode", "Segment", "Transfer", "binary_nodes",
           "chip_host_split"]

# What the node computes that a neuromorphic core has no circuit for (said in each reason).
_WHY: dict[type, str] = {
    MaxPool2d: "max pooling (on spikes an OR of the window; no synapse layer computes it)",
    AdaptiveAvgPool2d: "adaptive average pooling (windows of unequal size)",
    ChannelAffine: "a per-channel affine map with no synapse layer to fold into",
    LayerNorm: "normalisation by each sample's own mean and variance",
    Identity: "a named sum of edges the chip's layer chain cannot express",
    Reshape: "a reshape of the neuron layout",
    Permute: "a permutation of axes (transpose) of the neuron layout",
    Slice: "a slice of a layer's neurons",
    Reduce: "a sum or mean over axes",
    Product: "a product of two activations (no synapse weight is involved)",
    MatMul: "a matrix product of two activations (attention; no synapse weight is involved)",
}


@dataclass(frozen=True)
class HostNode:
    """A node the target cannot run, and why."""

    name: str
    kind: str
    reason: str


@dataclass(frozen=True)
class Segment:
    """Connected nodes that run on one side (``device``: ``"chip"`` or ``"host"``)."""

    device: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Transfer:
    """An edge between chip and host: ``values`` per sample and step, spikes or graded."""

    source: str
    destination: str
    direction: str   # "chip->host" or "host->chip"
    values: int
    spikes: bool


@dataclass(frozen=True)
class ChipHostSplit:
    """Where each node of a graph runs on one target (see the module docstring)."""

    target: str
    chip: tuple[str, ...]
    host: tuple[HostNode, ...]
    io: tuple[str, ...]
    segments: tuple[Segment, ...]
    transfers: tuple[Transfer, ...]

    @property
    def all_on_chip(self) -> bool:
        return not self.host

    def placement(self, name: str) -> str:
        """``"chip"``, ``"host"`` or ``"io"`` for node ``name``."""
        if name in self.io:
            return "io"
        return "host" if any(h.name == name for h in self.host) else "chip"

    def summary(self) -> str:
        """One line: ``"14 nodes on the chip, 6 on the host, 8 transfers"``."""
        if self.all_on_chip:
            return f"all {len(self.chip)} nodes run on the chip"
        return (f"{len(self.chip)} nodes on the chip, {len(self.host)} on the host, "
                f"{len(self.transfers)} chip/host transfer(s) per step, "
                f"{sum(t.values for t in self.transfers)} values per sample and step")

    def to_dict(self) -> dict[str, Any]:
        """The ``chip_host_split`` entry of report.json."""
        return {
            "summary": self.summary(),
            "all_on_chip": self.all_on_chip,
            "chip": list(self.chip),
            "host": [{"node": h.name, "kind": h.kind, "reason": h.reason} for h in self.host],
            "segments": [{"device": s.device, "nodes": list(s.nodes)} for s in self.segments],
            "transfers": [{"from": t.source, "to": t.destination, "direction": t.direction,
                           "values_per_step": t.values, "spikes": t.spikes}
                          for t in self.transfers],
        }


def binary_nodes(graph: Graph) -> frozenset[str]:
    """Nodes whose output is always 0 or 1 (the graph's inputs are not assumed binary).

    Spiking neurons emit 0/1 (multi-spike ones a count); a max pool, reshape, permute, slice or flatten of one binary
    value stays binary; a product of two binary values is their AND (binary); an Identity fed
    by one binary edge is binary. Sums of several edges are not.
    """
    binary: set[str] = set()
    keeps = (MaxPool2d, Reshape, Permute, Slice, Flatten, Identity)
    for name in graph.topological_order:
        node = graph.nodes[name]
        sources = graph.predecessors(name)
        if isinstance(node, Neuron):
            if node.spiking and not node.multi_spike:
                binary.add(name)
        elif isinstance(node, keeps):
            if len(sources) == 1 and sources[0] in binary:
                binary.add(name)
        elif isinstance(node, Product):
            operands = graph.operands(name)
            if all(len(s) == 1 and s[0] in binary for s in operands.values()):
                binary.add(name)
    return frozenset(binary)


def _foldable_pools(graph: Graph, target: Target) -> set[str]:
    """Sum / average pools the netx export folds (they run as part of the next layer)."""
    pools = {n for n, node in graph.nodes.items()
             if isinstance(node, (SumPool2d, AvgPool2d)) and node.kind not in
             target.layers.node_kinds}
    if not pools or "netx" not in target.export_formats:
        return set()
    from sbc_deploy.check.rules import _netx_fold_error  # the rule and the split agree

    return pools if _netx_fold_error(graph) is None else set()


def _reason(node: Any, target: Target) -> str:
    if isinstance(node, Neuron):
        return (f"{target.name} cannot run {node.kind} neurons (it runs "
                f"{', '.join(target.neurons.kinds) or 'none'})")
    why = _WHY.get(type(node))
    return f"{target.name} has no {node.kind} layer" + (f": {why}" if why else "")


def chip_host_split(graph: Graph, target: Target) -> ChipHostSplit:
    """Place every node of ``graph`` on ``target``'s chip or on the host (module docstring)."""
    folded = _foldable_pools(graph, target)
    chip: list[str] = []
    host: list[HostNode] = []
    io: list[str] = []
    for name in graph.topological_order:
        node = graph.nodes[name]
        if isinstance(node, (Input, Output)):
            io.append(name)
        elif isinstance(node, Neuron):
            (chip.append(name) if node.kind in target.neurons.kinds
             else host.append(HostNode(name, node.kind, _reason(node, target))))
        elif node.kind in target.layers.node_kinds or name in folded:
            chip.append(name)
        else:
            host.append(HostNode(name, node.kind, _reason(node, target)))
    side = {**{n: "chip" for n in chip}, **{h.name: "host" for h in host}}
    binary = binary_nodes(graph)
    transfers = tuple(
        Transfer(src, dst, f"{side[src]}->{side[dst]}",
                 int(np.prod(graph.nodes[src].output_shape)), src in binary)
        for src, dst in graph.edges
        if src in side and dst in side and side[src] != side[dst])
    return ChipHostSplit(target.name, tuple(chip), tuple(host), tuple(io),
                         _segments(graph, side), transfers)


def _segments(graph: Graph, side: dict[str, str]) -> tuple[Segment, ...]:
    """Connected components of same-side nodes, each in topological order."""
    order = {name: k for k, name in enumerate(graph.topological_order)}
    parent = {name: name for name in side}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for src, dst in graph.edges:
        if src in side and dst in side and side[src] == side[dst]:
            parent[root(src)] = root(dst)
    groups: dict[str, list[str]] = {}
    for name in sorted(side, key=order.__getitem__):
        groups.setdefault(root(name), []).append(name)
    return tuple(Segment(side[nodes[0]], tuple(nodes))
                 for nodes in sorted(groups.values(), key=lambda g: order[g[0]]))
