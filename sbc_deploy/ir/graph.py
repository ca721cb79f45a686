"""The graph: named nodes, directed edges, an explicit time step.

Semantics (as NIR, in discrete time):

- several edges into one node add up (a residual merge is two edges into one node);
- a node with named operands (``Product``, ``MatMul``: ports ``"a"`` and ``"b"``) takes each
  edge into it at the port that ``Graph.ports[(source, destination)]`` names; edges into one
  port add up. Operand order is thus data, not the order of the edge list. An edge into a node
  without ports has no entry in ``ports``. One source feeds one port of a node at most (edges
  are unique): for ``x * x`` put an ``Identity`` on one side;
- one node may feed several nodes (branching);
- an edge that closes a cycle is *recurrent*: it carries its source's output of the previous
  step. At the first step that is the source's output at rest (every state and input zero): zero
  from a neuron or a Delay, the bias from a synapse (snntorch's RLeaky adds its recurrent
  layer's bias from the first step). Recurrent edges are the back edges of a depth-first search
  from the inputs, visiting nodes and edges in the order they were given.

A ``Graph`` validates itself at construction and raises an error naming the node or edge at
fault. It is immutable: ``replace_nodes`` returns a new, validated graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from sbc_deploy.errors import IRError, ShapeError
from sbc_deploy.ir.nodes import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    ChannelAffine,
    Flatten,
    Identity,
    Input,
    MaxPool2d,
    Neuron,
    Node,
    Output,
    Permute,
    Reduce,
    Reshape,
    Scale,
    Slice,
    SumPool2d,
    Synapse,
)

# Nodes that pass a synapse's current on to a neuron without changing its time course: the
# neuron behind them still defines the synapse's membrane kernel. All are linear (or affine)
# maps of one step's current except MaxPool2d, which selects one current per window (see
# Graph.synapse_layers for what the Hessian then measures).
_LINEAR_PASS_THROUGH = (Scale, SumPool2d, AvgPool2d, Flatten, AdaptiveAvgPool2d, ChannelAffine,
                        Identity, Reshape, Permute, Slice, Reduce, MaxPool2d)


@dataclass(frozen=True)
class SynapseLayer:
    """A synapse node and the neuron that integrates its output (``None`` for a readout)."""

    name: str
    synapse: Synapse
    neuron_name: str | None
    neuron: Neuron | None
    recurrent: bool


@dataclass(frozen=True, eq=False)
class Graph:
    """Named nodes and directed ``(source, destination)`` edges, with a time step ``dt`` (s).

    ``metadata`` records where the graph came from and every semantic choice made on import
    (``dt`` and its source, reset mode, discretization). ``ports`` maps each edge into a node
    with named operands to its port (``{("q", "attn"): "a", ("k_t", "attn"): "b"}``).
    """

    nodes: Mapping[str, Node]
    edges: tuple[tuple[str, str], ...]
    dt: float
    metadata: Mapping[str, Any] = field(default_factory=dict)
    ports: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", MappingProxyType(dict(self.nodes)))
        object.__setattr__(self, "edges", tuple((str(s), str(d)) for s, d in self.edges))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        object.__setattr__(self, "ports", MappingProxyType(
            {(str(s), str(d)): str(p) for (s, d), p in dict(self.ports).items()}))
        if not isinstance(self.dt, (int, float)) or not math.isfinite(self.dt) or self.dt <= 0:
            raise IRError(f"dt must be a positive number of seconds, got {self.dt!r}", where="graph")
        object.__setattr__(self, "dt", float(self.dt))
        # adjacency in edge order, built once: predecessors()/successors() are O(degree), so
        # the graph rules and the mapping stay linear in the node count (issue 21)
        succ: dict[str, list[str]] = {}
        pred: dict[str, list[str]] = {}
        for src, dst in self.edges:
            succ.setdefault(src, []).append(dst)
            pred.setdefault(dst, []).append(src)
        object.__setattr__(self, "_succ", {k: tuple(v) for k, v in succ.items()})
        object.__setattr__(self, "_pred", {k: tuple(v) for k, v in pred.items()})
        self._check_structure()
        self._check_ports()
        order, recurrent = self._order()
        object.__setattr__(self, "_topological_order", order)
        object.__setattr__(self, "_recurrent_edges", recurrent)
        self._check_shapes()

    # ------------------------------------------------------------------ validation

    def _check_structure(self) -> None:
        for name, node in self.nodes.items():
            if not isinstance(node, Node):
                raise IRError(f"is a {type(node).__name__}, not an IR node", where=f"node '{name}'")
        seen: set[tuple[str, str]] = set()
        for src, dst in self.edges:
            for end in (src, dst):
                if end not in self.nodes:
                    raise IRError(f"names unknown node '{end}'", where=f"edge {src} -> {dst}")
            if (src, dst) in seen:
                raise IRError("appears twice", where=f"edge {src} -> {dst}")
            seen.add((src, dst))
        if not self.inputs:
            raise IRError("has no Input node", where="graph")
        if not self.outputs:
            raise IRError("has no Output node", where="graph")
        for name in self.nodes:
            has_in, has_out = bool(self.predecessors(name)), bool(self.successors(name))
            node = self.nodes[name]
            if isinstance(node, Input) and has_in:
                raise IRError("is an Input but has incoming edges", where=f"node '{name}'")
            if isinstance(node, Output) and has_out:
                raise IRError("is an Output but has outgoing edges", where=f"node '{name}'")
            if not isinstance(node, Input) and not has_in:
                raise IRError("receives no edge", where=f"node '{name}'")

    def _check_ports(self) -> None:
        edges = set(self.edges)
        for (src, dst), port in self.ports.items():
            if (src, dst) not in edges:
                raise IRError(f"names port {port!r} of an edge the graph does not have",
                              where=f"ports[{src} -> {dst}]")
            node = self.nodes[dst]
            if port not in node.ports:
                detail = (f"its ports are {', '.join(node.ports)}" if node.ports
                          else "it has one input (the sum of its edges) and no named ports")
                raise IRError(f"'{dst}' ({node.kind}) has no port {port!r}: {detail}",
                              where=f"edge {src} -> {dst}")
        for name, node in self.nodes.items():
            if not node.ports:
                continue
            fed = {port: 0 for port in node.ports}
            for src in self.predecessors(name):
                port = self.ports.get((src, name))
                if port is None:
                    raise IRError(f"enters a {node.kind} without naming its port (one of "
                                  f"{', '.join(node.ports)}) in Graph.ports",
                                  where=f"edge {src} -> {name}")
                fed[port] += 1
            missing = [port for port, count in fed.items() if not count]
            if missing:
                raise IRError(f"receives nothing at port(s) {', '.join(missing)}",
                              where=f"node '{name}' ({node.kind})")

    def _order(self) -> tuple[tuple[str, ...], frozenset[tuple[str, str]]]:
        successors: dict[str, list[str]] = {name: [] for name in self.nodes}
        for src, dst in self.edges:
            successors[src].append(dst)
        state: dict[str, int] = {}  # 1: on the stack, 2: done
        recurrent: set[tuple[str, str]] = set()
        for root in self.inputs:
            if root in state:
                continue
            state[root] = 1
            stack = [(root, iter(successors[root]))]
            while stack:
                name, children = stack[-1]
                child = next(children, None)
                if child is None:
                    state[name] = 2
                    stack.pop()
                elif state.get(child) == 1:
                    recurrent.add((name, child))
                elif child not in state:
                    state[child] = 1
                    stack.append((child, iter(successors[child])))
        unreachable = [name for name in self.nodes if name not in state]
        if unreachable:
            raise IRError(f"cannot be reached from any Input: {', '.join(unreachable)}", where="graph")
        indegree = {name: 0 for name in self.nodes}
        for edge in self.edges:
            if edge not in recurrent:
                indegree[edge[1]] += 1
        ready = [name for name in self.nodes if indegree[name] == 0]
        order: list[str] = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for child in successors[name]:
                if (name, child) in recurrent:
                    continue
                indegree[child] -= 1
                if indegree[child] == 0:
                    ready.append(child)
        return tuple(order), frozenset(recurrent)

    def _check_shapes(self) -> None:
        for src, dst in self.edges:
            out_shape = self.nodes[src].output_shape
            port = self.ports.get((src, dst))
            node = self.nodes[dst]
            in_shape = node.input_shape if port is None else node.port_shape(port)
            if tuple(out_shape) != tuple(in_shape):
                at = "" if port is None else f" at port {port!r}"
                raise ShapeError(
                    f"'{src}' ({self.nodes[src].kind}) outputs shape {tuple(out_shape)} but "
                    f"'{dst}' ({node.kind}) expects {tuple(in_shape)}{at}",
                    where=f"edge {src} -> {dst}")

    # ------------------------------------------------------------------ queries

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of the Input nodes, in insertion order."""
        return tuple(n for n, node in self.nodes.items() if isinstance(node, Input))

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the Output nodes, in insertion order."""
        return tuple(n for n, node in self.nodes.items() if isinstance(node, Output))

    @property
    def topological_order(self) -> tuple[str, ...]:
        """Every node once, each after all its non-recurrent predecessors."""
        return self._topological_order  # type: ignore[attr-defined,no-any-return]

    @property
    def recurrent_edges(self) -> frozenset[tuple[str, str]]:
        """Edges that carry the previous step's value (they close a cycle)."""
        return self._recurrent_edges  # type: ignore[attr-defined,no-any-return]

    def predecessors(self, name: str) -> tuple[str, ...]:
        """Sources of the edges into ``name``, in edge order."""
        return self._pred.get(name, ())  # type: ignore[attr-defined,no-any-return]

    def successors(self, name: str) -> tuple[str, ...]:
        """Destinations of the edges out of ``name``, in edge order."""
        return self._succ.get(name, ())  # type: ignore[attr-defined,no-any-return]

    def operands(self, name: str) -> dict[str, tuple[str, ...]]:
        """Port -> the sources feeding it, for a node with named ports (``{}`` without)."""
        node = self.nodes[name]
        return {port: tuple(src for src in self.predecessors(name)
                            if self.ports.get((src, name)) == port) for port in node.ports}

    def is_sequential(self) -> bool:
        """True for a single chain Input -> ... -> Output with no branch, merge or cycle."""
        if len(self.inputs) != 1 or len(self.outputs) != 1 or self.recurrent_edges:
            return False
        return all(len(self.successors(n)) <= 1 and len(self.predecessors(n)) <= 1
                   for n in self.nodes)

    def synapse_layers(self) -> tuple[SynapseLayer, ...]:
        """Every synapse node in topological order, with the neuron that integrates it.

        The neuron is found by following the synapse's single successor through pass-through
        nodes that act on one step's current alone (Scale, ChannelAffine, Identity, pooling,
        Flatten, Reshape, Permute, Slice, Reduce); a branch, a Delay, a LayerNorm, a product of
        two activations or an Output ends the search with ``neuron=None`` (the layer is then
        treated as a readout).

        What the layer's SMP Hessian then measures (the kernel ``K`` is always the neuron's):
        through a linear pass-through (pools, Reduce, reshapes) the loss is taken on the
        synapse's own output positions, filtered by ``K``, as if each position fed the neuron
        alone (the pooled sum is not formed; a pool weights all positions alike, so this is the
        layer-wise loss up to the pool's mixing). Through a ``MaxPool2d`` between synapse and
        neuron (Spikformer's ``Conv-BN-MaxPool-LIF``) the same all-positions loss is used: the
        window's winner depends on the data and the channel, so the loss covers every
        candidate current instead of the (unknown, per-channel) selected one. A ``Product`` or
        ``MatMul`` after a synapse multiplies its current by another activation: no neuron
        kernel applies and the layer is compressed on its current (plain OBC, ``K = I``).
        """
        layers = []
        for name in self.topological_order:
            node = self.nodes[name]
            if not isinstance(node, Synapse):
                continue
            neuron_name: str | None = None
            current = name
            while True:
                following = self.successors(current)
                if len(following) != 1:
                    break
                nxt = self.nodes[following[0]]
                if isinstance(nxt, Neuron):
                    neuron_name = following[0]
                    break
                if isinstance(nxt, _LINEAR_PASS_THROUGH):
                    current = following[0]
                    continue
                break
            recurrent = any(name in edge for edge in self.recurrent_edges)
            neuron = self.nodes[neuron_name] if neuron_name is not None else None
            layers.append(SynapseLayer(name, node, neuron_name, neuron, recurrent))  # type: ignore[arg-type]
        return tuple(layers)

    # ------------------------------------------------------------------ new graphs

    def replace_nodes(self, changes: Mapping[str, Node]) -> Graph:
        """A new graph with the named nodes replaced (names must exist)."""
        unknown = [name for name in changes if name not in self.nodes]
        if unknown:
            raise IRError(f"cannot replace unknown nodes: {', '.join(unknown)}", where="graph")
        nodes = {name: changes.get(name, node) for name, node in self.nodes.items()}
        return Graph(nodes, self.edges, self.dt, self.metadata, self.ports)

    def with_metadata(self, **entries: Any) -> Graph:
        """A new graph with ``entries`` added to its metadata."""
        return Graph(self.nodes, self.edges, self.dt, {**self.metadata, **entries}, self.ports)

    @classmethod
    def chain(cls, named_nodes: Iterable[tuple[str, Node]], dt: float,
              metadata: Mapping[str, Any] | None = None) -> Graph:
        """A sequential graph: each node feeds the next, in the order given."""
        items = list(named_nodes)
        edges = tuple((a, b) for (a, _), (b, _) in zip(items, items[1:]))
        return cls(dict(items), edges, dt, metadata or {})
