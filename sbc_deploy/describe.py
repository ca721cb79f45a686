"""A summary of a graph for people: what ``sbc-deploy inspect MODEL`` prints.

:func:`describe` turns a :class:`Graph` into a frozen :class:`GraphSummary` (numbers only, no
text), and :func:`format_summary` renders it as a plain-text table. Counting rules:

- ``parameters``: the values stored in a node's arrays (weights and biases of synapses; every
  per-neuron array of a neuron, e.g. alpha, beta, threshold, gain, v_leak, v_reset, bias; the
  array of Scale, Delay and Threshold). Ports, pooling and Flatten have none.
- ``weights`` / ``nonzero_weights`` / ``sparsity``: synapse weights only (biases excluded);
  ``sparsity = 1 - nonzero / weights``.
- ``fan_in_max``: the most non-zero synapses onto one output neuron (one output channel for a
  convolution: kernel entries, not counting positions).
- ``neurons``: units of the neuron nodes (the product of their shapes).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from sbc_deploy.ir import Graph, Neuron, Node, Synapse

_PROVENANCE_KEYS = ("source_format", "source_file", "dt_source", "reset", "reset_source",
                    "discretization")


@dataclass(frozen=True)
class NeuronSummary:
    """A neuron node's model: decays, threshold and reset as (min, max) over its units."""

    model: str
    spiking: bool
    alpha: tuple[float, float] | None
    beta: tuple[float, float]
    threshold: tuple[float, float] | None
    reset: str | None
    nonzero_bias: int


@dataclass(frozen=True)
class NodeSummary:
    """One node: shapes and counts (``None`` where a count does not apply)."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    parameters: int
    weights: int
    nonzero_weights: int | None
    sparsity: float | None
    fan_in_max: int | None
    weight_bits: int | None
    recurrent: bool
    neurons: int
    neuron: NeuronSummary | None


@dataclass(frozen=True)
class GraphSummary:
    """Every node in topological order, the graph's time step and provenance, and totals."""

    nodes: tuple[NodeSummary, ...]
    dt: float
    provenance: tuple[tuple[str, Any], ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    recurrent_edges: tuple[tuple[str, str], ...]
    synapse_layers: int
    parameters: int
    weights: int
    nonzero_weights: int
    sparsity: float
    neurons: int
    fan_in_max: int


def _range(values: np.ndarray) -> tuple[float, float]:
    return float(np.min(values)), float(np.max(values))


def _parameters(node: Node) -> int:
    total = 0
    for f in fields(node):  # type: ignore[arg-type]
        value = getattr(node, f.name)
        if isinstance(value, np.ndarray) and f.name != "metadata":
            total += int(value.size)
    return total


def _neuron_summary(node: Neuron) -> NeuronSummary:
    threshold = getattr(node, "v_threshold", None)
    return NeuronSummary(
        model=node.kind,
        spiking=bool(node.spiking),
        alpha=None if node.synaptic_decay is None else _range(node.synaptic_decay),
        beta=_range(node.membrane_decay),
        threshold=None if threshold is None else _range(threshold),
        reset=getattr(node, "reset", None) if node.spiking else None,
        nonzero_bias=int(np.count_nonzero(node.bias)),
    )


def _node_summary(graph: Graph, name: str) -> NodeSummary:
    node = graph.nodes[name]
    recurrent = any(name in edge for edge in graph.recurrent_edges)
    weights = nonzero = fan_in = bits = sparsity = None
    if isinstance(node, Synapse):
        weights = int(node.weight.size)
        nonzero = int(np.count_nonzero(node.weight))
        sparsity = 1.0 - nonzero / weights if weights else 0.0
        fan_in = int(node.fan_in().max()) if node.weight.size else 0
        bits = node.encoding.bits if node.encoding is not None else None
    neuron = _neuron_summary(node) if isinstance(node, Neuron) else None
    return NodeSummary(
        name=name, kind=node.kind, input_shape=tuple(node.input_shape),
        output_shape=tuple(node.output_shape), parameters=_parameters(node),
        weights=weights or 0, nonzero_weights=nonzero, sparsity=sparsity, fan_in_max=fan_in,
        weight_bits=bits, recurrent=recurrent,
        neurons=int(np.prod(node.output_shape)) if neuron is not None else 0, neuron=neuron)


def describe(graph: Graph) -> GraphSummary:
    """Count what the graph holds (see the module docstring for the rules)."""
    nodes = tuple(_node_summary(graph, name) for name in graph.topological_order)
    weights = sum(n.weights for n in nodes)
    nonzero = sum(n.nonzero_weights or 0 for n in nodes)
    return GraphSummary(
        nodes=nodes,
        dt=graph.dt,
        provenance=tuple((k, graph.metadata[k]) for k in _PROVENANCE_KEYS if k in graph.metadata),
        inputs=graph.inputs,
        outputs=graph.outputs,
        recurrent_edges=tuple(sorted(graph.recurrent_edges)),
        synapse_layers=sum(1 for n in nodes if n.nonzero_weights is not None),
        parameters=sum(n.parameters for n in nodes),
        weights=weights,
        nonzero_weights=nonzero,
        sparsity=1.0 - nonzero / weights if weights else 0.0,
        neurons=sum(n.neurons for n in nodes),
        fan_in_max=max((n.fan_in_max or 0 for n in nodes), default=0),
    )


# --------------------------------------------------------------------------- text


def _num(value: float) -> str:
    return f"{value:.4g}"


def _span(name: str, bounds: tuple[float, float] | None) -> str | None:
    if bounds is None:
        return None
    low, high = bounds
    return f"{name}={_num(low)}" if low == high else f"{name}={_num(low)}..{_num(high)}"


def _neuron_text(neuron: NeuronSummary | None) -> str:
    if neuron is None:
        return ""
    parts = [_span("alpha", neuron.alpha), _span("beta", neuron.beta),
             _span("thr", neuron.threshold)]
    if neuron.reset is not None:
        parts.append(f"reset={neuron.reset}")
    if neuron.nonzero_bias:
        parts.append(f"bias on {neuron.nonzero_bias}")
    return " ".join(p for p in parts if p)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)


def format_summary(summary: GraphSummary) -> str:
    """A readable table of the summary, with provenance and totals below it."""
    header = ("node", "kind", "in", "out", "params", "non-zero/weights", "sparsity", "fan-in",
              "bits", "neuron")
    rows = []
    for n in summary.nodes:
        weights = f"{n.nonzero_weights}/{n.weights}" if n.nonzero_weights is not None else ""
        rows.append((
            n.name + (" (rec)" if n.recurrent else ""), n.kind, _shape(n.input_shape),
            _shape(n.output_shape), str(n.parameters) if n.parameters else "", weights,
            f"{100 * n.sparsity:.1f}%" if n.sparsity is not None else "",
            str(n.fan_in_max) if n.fan_in_max is not None else "",
            str(n.weight_bits) if n.weight_bits is not None else "", _neuron_text(n.neuron)))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    numeric = {4, 5, 6, 7, 8}

    def line(cells: tuple[str, ...]) -> str:
        text = "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
        return text.rstrip()

    out = [line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in rows), ""]
    provenance = dict(summary.provenance)
    dt_text = f"dt: {_num(summary.dt)} s"
    if "dt_source" in provenance:
        dt_text += f" ({provenance['dt_source']})"
    out.append(dt_text)
    if provenance.get("reset") is not None:
        out.append(f"reset: {provenance['reset']} ({provenance.get('reset_source', '?')})")
    if "discretization" in provenance:
        out.append(f"discretization: {provenance['discretization']}")
    if "source_format" in provenance:
        out.append(f"source: {provenance['source_format']} {provenance.get('source_file') or ''}"
                   .rstrip())
    edges = ", ".join(f"{s} -> {d}" for s, d in summary.recurrent_edges) or "none"
    out.append(f"recurrent edges: {edges}")
    out.append(
        f"totals: {len(summary.nodes)} nodes, {summary.synapse_layers} synapse layers, "
        f"{summary.nonzero_weights}/{summary.weights} non-zero weights "
        f"(sparsity {100 * summary.sparsity:.1f}%), {summary.parameters} parameters, "
        f"{summary.neurons} neurons, max fan-in {summary.fan_in_max}")
    return "\n".join(out)
