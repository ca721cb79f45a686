"""Chip / host split: which nodes a target runs, which stay on the host, and what crosses.

A target may run part of a network: its neurons and synapse layers on the chip, an operation it
has no circuit for (a max pool, a product of two activations, a layer norm) on the host CPU, as
Akida's MetaTF and Vitis AI partition a model and show it in their model summaries. The split is
decided per node:

- ``Input`` / ``Output`` are the I/O ports (``io``): the host's data enters and leaves there;
- a neuron runs on the chip when the chip's neuron circuit, as the target's toolchain programs
  it, computes its update (:func:`neuron_off_chip`): its kind (``[neurons] kinds``), its reset
  (``[neurons] reset_modes``) and its spike rule (a chip that sends one spike per neuron and
  step, ``max_spikes_per_step = 1``, sends no spike counts);
- any other node runs on the chip when its kind is one of the target's ``[layers] node_kinds``,
  or when it is a sum / average pool that the netx export folds into the next layer;
- everything else runs on the host, with the reason.

Host or violation (the rule for neurons of a kind the chip runs): what the chip's circuit does
not compute at all is a host node; what it computes with other numbers is a violation on the
chip. A reset the chip lacks (Xylo resets by subtraction only, rockpool's Xylo neuron; Lava's
fixed-point CUBA neuron that netx writes for Loihi resets to 0 only) or a spike count on a
binary-spike chip (Lava's CUBA neuron sends one bit per step) changes the dynamics themselves:
no compression, rounding or parameter choice turns a zero reset into a subtraction, so such a
neuron runs on the host, exactly like a neuron of a kind the chip lacks, and a network none of
whose neuron layers the chip can run is refused (``validate.refusal``). Numbers the circuit
holds differently stay violations of the chip's rules, each with its remedy: thresholds,
decays and biases outside their registers or off their grids, a resting potential or reset
value the chip lacks (foldable or settable to 0), a spike cap above a counting chip's cap
(Xylo's 31: ``spikes_per_step``), weights, fan-in and cores. Spike variants no target file
states (``fires_at_equal``, ``reset_timing``, ``v_min``) are judged by the export that writes
them (netx refuses what it cannot hold, before any work), not by the split.

:func:`offloaded` is what the check leaves to the host: the split's host nodes when the chip
runs part of the network; none when it runs none of its neuron layers (a refused target is
judged whole, so that its check lists everything the chip would need).

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
    Synapse,
)
from sbc_deploy.targets import Target

__all__ = ["ChipHostSplit", "HostNode", "Segment", "Transfer", "binary_nodes",
           "chip_host_split", "neuron_off_chip", "offloaded", "runs_part"]

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

    Spiking neurons emit 0/1 (multi-spike ones a count); a max pool, reshape, permute, slice
    or flatten of one binary value stays binary; a product of two binary values is their AND (binary); an Identity fed
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


def neuron_off_chip(node: Neuron, target: Target) -> str | None:
    """Why ``target``'s neuron circuit cannot compute ``node``'s update (``None``: it can).

    Kind, reset mode and spike rule, in that order (the module docstring says why these and
    not the numbers)."""
    spec = target.neurons
    if node.kind not in spec.kinds:
        return (f"{target.name} cannot run {node.kind} neurons (it runs "
                f"{', '.join(spec.kinds) or 'none'})")
    if not node.spiking:
        return None
    reset = getattr(node, "reset", None)
    if reset not in spec.reset_modes:
        modes = " or ".join(spec.reset_modes) or "no"
        return (f"{target.name} resets by {modes} only, not by {reset}: the reset rule is the "
                "circuit's, not a number compression could change")
    cap = getattr(node, "max_spikes", 1)
    if spec.max_spikes_per_step == 1 and cap != 1:
        sends = "any number of spikes" if cap is None else f"up to {cap} spikes"
        return (f"{target.name} sends one spike per neuron and step, not {sends}: a spike "
                "count is another spike rule")
    return None


def _reason(node: Any, target: Target) -> str:
    if isinstance(node, Neuron):
        return neuron_off_chip(node, target) or ""
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
            why = neuron_off_chip(node, target)
            (chip.append(name) if why is None else host.append(HostNode(name, node.kind, why)))
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


def runs_part(graph: Graph, split: ChipHostSplit, errors: Any = ()) -> bool:
    """The chip runs at least one synapse layer with the neuron it drives (both on the chip
    side of ``split`` and neither named by a node in ``errors``: the refusing rules' errors,
    ``validate.REFUSING_RULES``); a network of readouts only needs its synapses on the chip.
    The neuron a synapse drives is found through pass-through nodes (``check.mapping``:
    scales, flattens, sum pools, delays). The condition under which ``validate.refusal`` does
    not refuse a target."""
    from sbc_deploy.check.mapping import synapse_target  # the neuron a synapse feeds

    bad = set(errors)
    synapses = [n for n in graph.topological_order if isinstance(graph.nodes[n], Synapse)]
    pairs = [(s, synapse_target(graph, s)[0]) for s in synapses]
    driving = [(s, n) for s, n in pairs if n is not None] or pairs
    for synapse, neuron in driving:
        nodes = [synapse] + ([neuron] if neuron is not None else [])
        if all(split.placement(n) == "chip" and n not in bad for n in nodes):
            return True
    return False


def offloaded(graph: Graph, target: Target, split: ChipHostSplit | None = None
              ) -> frozenset[str]:
    """The nodes the check and the core mapping leave to the host (module docstring): the
    split's host nodes when the chip runs part of ``graph``, else none (judged whole)."""
    split = split if split is not None else chip_host_split(graph, target)
    if split.all_on_chip:
        return frozenset()
    from sbc_deploy.check.rules import refusing_errors  # the rules decide what is an error

    if not runs_part(graph, split, refusing_errors(graph, target)):
        return frozenset()
    return frozenset(h.name for h in split.host)
