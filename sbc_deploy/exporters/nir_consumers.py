r"""Rewrite an IR graph so that one framework's NIR importer runs it like the simulator.

Plain NIR (``nir_for="nir"``) is written as the spec says and needs none of this. Every other
consumer reads NIR's numbers its own way (:mod:`sbc_deploy.frontends.conventions`), so the graph
is adapted first, as values (the input graph is not changed), and every adaptation is returned
as a sentence for the report:

- **pools**: a consumer that maps only ``AvgPool2d`` (snntorch) or only ``SumPool2d`` (norse,
  sinabs) gets the other one, with the window size ``k = kH kW`` folded into the synapses that
  read the pool (``SumPool = k AvgPool``; everything downstream of a pool up to its synapse is
  linear);
- **gains**: a consumer that ignores ``r``/``w_in`` (or hard-codes what they mean) applies its
  own per-step input gain ``g_c`` (1 for snntorch, sinabs, spyx; ``1 - beta`` for norse's box
  cells; ``alpha`` for rockpool's synaptic current). The IR's gain is folded into the weights of
  the synapses that feed the neuron, row by row: ``W' = W * (gain gain_syn) / (g_c g_syn_c)``
  (per output channel for convolutions, so the factor must be uniform over H, W). snntorch also
  needs one threshold per layer: each neuron's membrane is divided by its threshold (the
  dynamics are linear between spikes and both resets scale with it), giving threshold 1;
- **dt**: relabelled to what the consumer assumes (snntorch's hard-coded 1e-4 s, norse's default
  argument 1e-3 s, one step for sinabs and spyx); the per-step numbers do not change.

What no adaptation can express (a constant drive ``(1 - beta) v_leak + bias`` where the consumer
has none, a non-zero ``v_reset``, a reset mode the importer does not build, a node type it does
not map) raises :class:`ExportError` naming the node and the consumer.

The neuron model. A consumer's importer builds its own neurons whatever the file says: sinabs
``MultiSpike`` / ``MembraneSubtract`` layers with IF membranes clamped at ``-v_threshold``,
rockpool ``LIFTorch`` with ``max_spikes_per_dt = 2**16``, spyx neurons that send each spike one
step late and (LIF, IF) subtract the threshold after the next decay, snntorch and norse
single-spike zero-reset neurons. :func:`consumer_model` converts a graph to that model (the
spike-variant fields of :func:`~sbc_deploy.frontends.conventions.spike_fields`, and for spyx a
one-step ``Delay`` after every spiking neuron), so that what is compressed and evaluated is what
the consumer will run; the pipeline does it before calibration when ``--nir-for`` names a
framework. :func:`adapt` (the exporter) refuses a graph that is not in that model, naming the
neuron, so a file written for a consumer is always run exactly as the simulator runs the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sbc_deploy.errors import ExportError
from sbc_deploy.frontends.conventions import CONVENTIONS, Convention, Side, spike_fields
from sbc_deploy.frontends.nir_fixups import chw_to_hwc_columns
from sbc_deploy.ir import (
    IF,
    SPIKE_VARIANT_DEFAULTS,
    Affine,
    AvgPool2d,
    Conv1d,
    Conv2d,
    CubaLI,
    Delay,
    Flatten,
    Graph,
    Integrator,
    Neuron,
    Node,
    SumPool2d,
    Synapse,
    spike_variant_text,
)


@dataclass(frozen=True)
class Adapted:
    """The graph as the consumer will run it, and what was changed to get there."""

    graph: Graph
    notes: tuple[str, ...]


def _where(name: str, convention: Convention) -> str:
    return f"node '{name}' (--nir-for {convention.name})"


def consumer_gains(node: Neuron, side: Side) -> tuple[np.ndarray, np.ndarray]:
    """``(g_c, g_syn_c)``: the per-step input gains the consumer applies to ``node``."""
    shape = node.shape
    beta = np.asarray(getattr(node, "beta", np.ones(shape)), dtype=np.float64)
    alpha = np.asarray(getattr(node, "alpha", np.zeros(shape)), dtype=np.float64)
    if isinstance(node, (IF, Integrator)):
        gain = np.ones(shape)
    elif side.gain == "one_minus_decay":
        gain = 1.0 - beta
    else:
        gain = np.ones(shape)
    if not node.current_based:
        syn = np.ones(shape)
    elif side.syn_gain == "decay":
        syn = alpha.copy()
    elif side.syn_gain == "one" or side.gain != "one_minus_decay":
        syn = np.ones(shape)
    else:
        syn = 1.0 - alpha
    return gain, syn


def drive(node: Neuron) -> np.ndarray:
    """The constant per-step input of a neuron: ``(1 - beta) v_leak + bias``."""
    beta = np.asarray(getattr(node, "beta", np.ones(node.shape)))
    v_leak = np.asarray(getattr(node, "v_leak", np.zeros(node.shape)))
    return (1.0 - beta) * v_leak + np.asarray(node.bias)


# --------------------------------------------------------------------------- pools


def _downstream_synapses(graph: Graph, name: str, convention: Convention) -> list[str]:
    """The synapses a node's output reaches through linear shape nodes (Flatten)."""
    found, frontier = [], list(graph.successors(name))
    while frontier:
        current = frontier.pop()
        node = graph.nodes[current]
        if isinstance(node, Synapse):
            found.append(current)
        elif isinstance(node, Flatten):
            frontier.extend(graph.successors(current))
        else:
            raise ExportError(f"a pool that feeds {node.kind} '{current}' cannot be rewritten "
                              f"into the pool type {convention.name}'s importer maps (the "
                              "window size must fold into a synapse)",
                              where=_where(name, convention))
    return found


def _swap_pools(graph: Graph, convention: Convention, knows: tuple[str, ...]
                ) -> tuple[Graph, list[str]]:
    notes: list[str] = []
    nodes: dict[str, Node] = dict(graph.nodes)
    for name, node in graph.nodes.items():
        if not isinstance(node, (SumPool2d, AvgPool2d)) or node.kind in knows:
            continue
        other = AvgPool2d if isinstance(node, SumPool2d) else SumPool2d
        if other.kind not in knows:
            continue  # refused with the other unknown nodes
        window = float(np.prod(node.kernel_size))
        factor = window if isinstance(node, SumPool2d) else 1.0 / window
        for syn in _downstream_synapses(graph, name, convention):
            current = nodes[syn]
            assert isinstance(current, Synapse)
            nodes[syn] = current.with_weight(np.asarray(current.weight) * factor)
        nodes[name] = other(kernel_size=node.kernel_size, input_shape=node.input_shape,
                            stride=node.stride, padding=node.padding,
                            metadata={**node.metadata, "sbc_rewritten_from": node.kind})
        notes.append(f"{node.kind} '{name}' written as {other.kind} ({convention.name} maps no "
                     f"{node.kind}); the synapses it feeds carry the factor {factor:g}")
    return Graph(nodes, graph.edges, graph.dt, graph.metadata), notes


# --------------------------------------------------------------------------- gains


def _per_channel(factor: np.ndarray, shape: tuple[int, ...], name: str, syn: str,
                 convention: Convention) -> np.ndarray:
    flat = factor.reshape(shape[0], -1)
    if not np.allclose(flat, flat[:, :1], rtol=1e-12, atol=0):
        raise ExportError(f"the input gain to fold into convolution '{syn}' differs within a "
                          "channel", where=_where(name, convention))
    return flat[:, 0]


def _scale_synapse(syn: Synapse, factor: np.ndarray, name: str, syn_name: str,
                   convention: Convention) -> Synapse:
    if isinstance(syn, Affine):
        weight = np.asarray(syn.weight) * factor.reshape(-1, 1)
        bias = None if syn.bias is None else np.asarray(syn.bias) * factor.reshape(-1)
        return Affine(weight, bias=bias, metadata=syn.metadata)
    per = _per_channel(factor, syn.output_shape, name, syn_name, convention)
    weight = np.asarray(syn.weight) * per.reshape(-1, *([1] * (syn.weight.ndim - 1)))
    bias = None if syn.bias is None else np.asarray(syn.bias) * per
    return syn.replace(weight=weight, bias=bias, encoding=None)  # type: ignore[return-value]


def _fold_gains(graph: Graph, convention: Convention, side: Side
                ) -> tuple[Graph, list[str]]:
    notes: list[str] = []
    nodes: dict[str, Node] = dict(graph.nodes)
    normalise = convention.name == "snntorch"
    for name, node in graph.nodes.items():
        if not isinstance(node, Neuron):
            continue
        g_c, syn_c = consumer_gains(node, side)
        own_syn = np.asarray(getattr(node, "gain_syn", np.ones(node.shape)))
        factor = np.asarray(node.gain) * own_syn / (g_c * syn_c)
        threshold = getattr(node, "v_threshold", None)
        if normalise and threshold is not None and np.ptp(threshold) > 0:
            factor = factor / np.asarray(threshold)
            notes.append(f"{node.kind} '{name}': membrane divided by its threshold (snntorch "
                         "takes one threshold per layer); threshold 1")
            threshold = np.ones(node.shape)
        if np.allclose(factor, 1.0, rtol=1e-12, atol=0):
            factor = np.ones(node.shape)
        else:
            for src in graph.predecessors(name):
                syn = nodes[src]
                if not isinstance(syn, (Affine, Conv1d, Conv2d)) or len(graph.successors(src)) != 1:
                    raise ExportError(
                        f"{convention.name} applies its own input gain to {node.kind}, so the "
                        f"gain must fold into the weights that feed it, but '{src}' is a "
                        f"{syn.kind}" + ("" if isinstance(syn, Synapse) else
                                         " (no weights)") + " or feeds other nodes too",
                        where=_where(name, convention))
                nodes[src] = _scale_synapse(syn, factor, name, src, convention)
            notes.append(f"{node.kind} '{name}': input gain folded into the weights of "
                         f"{', '.join(graph.predecessors(name))} ({convention.name} ignores "
                         "r/w_in or fixes what they mean)")
        changes: dict[str, Any] = {"gain": g_c}
        if node.current_based:
            changes["gain_syn"] = syn_c
        if threshold is not None:
            changes["v_threshold"] = threshold
            if normalise and np.ptp(np.asarray(getattr(node, "v_threshold"))) > 0:
                base = np.asarray(getattr(node, "v_threshold"))
                changes["v_reset"] = np.asarray(getattr(node, "v_reset")) / base
                if hasattr(node, "v_leak"):
                    changes["v_leak"] = np.asarray(getattr(node, "v_leak")) / base
                changes["bias"] = np.asarray(node.bias) / base
        nodes[name] = node.replace(**changes)
    return Graph(nodes, graph.edges, graph.dt, graph.metadata), notes


# --------------------------------------------------------------------------- checks


# Consumers whose pooling ignores NIR's padding (norse: LPPool2d; sinabs: SumPool2d(k, s);
# spyx: any padding means SAME).
_POOL_PADDING_IGNORED = ("norse", "sinabs", "spyx")


def _check_expressible(graph: Graph, convention: Convention, side: Side) -> list[str]:
    notes: list[str] = []
    for name, node in graph.nodes.items():
        if (isinstance(node, (SumPool2d, AvgPool2d)) and any(node.padding)
                and convention.name in _POOL_PADDING_IGNORED):
            raise ExportError(f"{node.kind} has padding {node.padding}, which "
                              f"{convention.name}'s importer drops", where=_where(name, convention))
        if not isinstance(node, Neuron):
            continue
        if (convention.name == "norse" and node.current_based
                and np.any(np.abs(drive(node)) > 0)):
            raise ExportError(f"{node.kind} has a constant drive (v_leak or bias); norse's "
                              "importer adds v_leak to the synaptic current too",
                              where=_where(name, convention))
        if convention.name not in ("norse", "rockpool") and np.any(np.abs(drive(node)) > 0):
            raise ExportError(f"{node.kind} has a constant drive (v_leak or bias), which "
                              f"{convention.name}'s importer cannot hold (it requires or "
                              "ignores v_leak = 0)", where=_where(name, convention))
        if isinstance(node, IF) and convention.name == "norse" and np.any(drive(node) != 0):
            raise ExportError("IF has a bias, which norse's IAF cell cannot hold",
                              where=_where(name, convention))
        reset = getattr(node, "reset", None)
        if reset == "zero" and not side.reads_v_reset and np.any(np.asarray(node.v_reset) != 0):
            raise ExportError(f"{node.kind} resets to a non-zero v_reset, which "
                              f"{convention.name}'s importer does not read",
                              where=_where(name, convention))
        if reset is not None and side.reset is not None and reset != side.reset:
            raise ExportError(_reset_refusal(node, reset, convention),
                              where=_where(name, convention))
    return notes


# --------------------------------------------------------------------------- neuron model


# Why a consumer cannot run a reset mode (its importer's source).
_RESET_REASONS = {
    "snntorch": "snntorch 1.0.0's importer builds reset_mechanism='zero', reset_delay=False "
                "(snntorch/import_nir.py, _nir_to_snntorch_module)",
    "norse": "norse 1.1.0's importer builds reset-to-value neurons (reset_method=reset_value, "
             "norse/torch/utils/import_nir.py)",
    "sinabs": "sinabs 3.1.3's importer builds MembraneSubtract layers (sinabs/nir.py, "
              "_import_sinabs_module)",
    "rockpool": "rockpool 3.1.0's LIFTorch subtracts the threshold "
                "(rockpool/nn/modules/torch/lif_torch.py, LIFTorch.forward)",
    "spyx": "spyx 1.0.0's neurons subtract the threshold (spyx/nn.py, LIF/IF/CuBaLIF.__call__)",
}


def _reset_refusal(node: Node, reset: str, convention: Convention) -> str:
    side = convention.consumer
    assert side is not None
    why = _RESET_REASONS.get(convention.name, f"{convention.name}'s importer resets by "
                                               f"{side.reset}")
    return (f"{node.kind} resets by {reset}, but {why}: no file can make it reset by {reset}, "
            f"so the network would run differently there")


def _on_cycle(graph: Graph, name: str) -> bool:
    seen, frontier = set(), list(graph.successors(name))
    while frontier:
        current = frontier.pop()
        if current == name:
            return True
        if current not in seen:
            seen.add(current)
            frontier.extend(graph.successors(current))
    return False


def _variant_changes(node: Neuron, target: dict[str, Any]) -> dict[str, Any]:
    """The spike-variant fields of ``node`` that differ from ``target``."""
    changes = {}
    for key, value in target.items():
        current = getattr(node, key)
        if key == "v_min":
            same = (current is None and value is None) or (
                current is not None and value is not None
                and np.array_equal(np.asarray(current), np.asarray(value)))
        else:
            same = current == value
        if not same:
            changes[key] = value
    return changes


def _non_default(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items()
            if ((v is not None) if k == "v_min" else v != SPIKE_VARIANT_DEFAULTS[k])}


def _targets(graph: Graph, convention: Convention) -> dict[str, dict[str, Any]]:
    """Per spiking neuron: the spike-variant fields the consumer's importer builds."""
    side = convention.consumer
    assert side is not None
    found = {}
    for name, node in graph.nodes.items():
        if isinstance(node, Neuron) and node.spiking and (side.knows is None
                                                          or _nir_kind(node, side) in side.knows):
            reset = getattr(node, "reset")
            if side.reset is not None and reset != side.reset:
                raise ExportError(_reset_refusal(node, reset, convention),
                                  where=_where(name, convention))
            found[name] = spike_fields(side, node.kind, reset, _on_cycle(graph, name),
                                       np.asarray(getattr(node, "v_threshold")))
    return found


def _late_neurons(graph: Graph, steps: int) -> dict[str, list[tuple[str, str]]]:
    """Spiking neurons not followed by the consumer's own spike delay: name -> the edges that
    leave its loop (a recurrent cell's own weights read it without the delay)."""
    late = {}
    for name, node in graph.nodes.items():
        if not getattr(node, "spiking", False):
            continue
        leaving = [(s, d) for s, d in graph.edges if s == name and not
                   (d in graph.nodes and _reaches(graph, d, name))]
        delayed = [d for _, d in leaving if isinstance(graph.nodes[d], Delay)
                   and np.all(np.asarray(graph.nodes[d].delay) == steps)
                   and graph.predecessors(d) == (name,)]
        if leaving and len(delayed) != len(leaving):
            late[name] = leaving
    return late


def _reaches(graph: Graph, start: str, goal: str) -> bool:
    seen, frontier = {start}, [start]
    while frontier:
        current = frontier.pop()
        if current == goal:
            return True
        for nxt in graph.successors(current):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return False


def consumer_model(graph: Graph, consumer: str | Convention) -> Adapted:
    """``graph`` converted to the neuron model ``consumer``'s importer builds (see the module
    docstring), with one note per change; the graph itself when it already is (and for spec
    NIR, ``"nir"``, which carries the IR's fields in its metadata).

    Raises:
        ExportError: a reset mode the importer cannot build (the node and the importer's
            source named).
    """
    convention = CONVENTIONS[consumer] if isinstance(consumer, str) else consumer
    if convention.consumer is None:
        raise ExportError(f"{convention.name} reads no NIR", where="--nir-for")
    if convention.name == "nir":
        return Adapted(graph, ())
    nodes: dict[str, Node] = dict(graph.nodes)
    notes = []
    for name, target in _targets(graph, convention).items():
        node = graph.nodes[name]
        assert isinstance(node, Neuron)
        changes = _variant_changes(node, target)
        if changes:
            nodes[name] = node.replace(**changes)
            notes.append(f"{node.kind} '{name}' converted to {convention.name}'s model: "
                         f"{spike_variant_text(_non_default(changes)) or 'the default rule'}")
    edges = list(graph.edges)
    steps = convention.consumer.spike_delay
    if steps:
        for name, leaving in _late_neurons(graph, steps).items():
            delay = f"{name}.{convention.name}_delay"
            nodes[delay] = Delay(np.full(graph.nodes[name].output_shape, float(steps)),
                                 metadata={"inserted_for": f"{convention.name} spike timing"})
            edges = [(delay, d) if (s, d) in leaving else (s, d) for s, d in edges]
            edges.append((name, delay))
            notes.append(f"{graph.nodes[name].kind} '{name}': a {steps}-step Delay inserted "
                         f"after it ({convention.name} sends each spike {steps} step(s) late)")
    if not notes:
        return Adapted(graph, ())
    metadata = {**graph.metadata, "consumer_model": convention.name}
    return Adapted(Graph(nodes, tuple(edges), graph.dt, metadata), tuple(notes))


def _check_model(graph: Graph, convention: Convention) -> None:
    """ExportError unless every spiking neuron already runs as the consumer builds it."""
    for name, target in _targets(graph, convention).items():
        node = graph.nodes[name]
        assert isinstance(node, Neuron)
        changes = _variant_changes(node, target)
        if changes:
            have = spike_variant_text(node.spike_variant()) or "the IR's default rule"
            builds = spike_variant_text(_non_default(target)) or "the IR's default rule"
            raise ExportError(
                f"{convention.name}'s importer builds {node.kind} neurons with {builds}, but "
                f"this one has {have}: "
                f"the file would run differently there",
                where=_where(name, convention),
                hint=f"convert the graph first (nir_consumers.consumer_model(graph, "
                     f"{convention.name!r}); the pipeline does it before calibration when "
                     f"--nir-for {convention.name} is given)")
    steps = convention.consumer.spike_delay if convention.consumer else 0
    if steps:
        for name in _late_neurons(graph, steps):
            raise ExportError(
                f"{convention.name} sends each spike {steps} step(s) late, but no {steps}-step "
                "Delay follows this neuron: every layer behind it would run early there",
                where=_where(name, convention),
                hint=f"convert the graph first (nir_consumers.consumer_model(graph, "
                     f"{convention.name!r}); the pipeline does it before calibration when "
                     f"--nir-for {convention.name} is given)")


def adapt(graph: Graph, convention: Convention) -> Adapted:
    """The graph rewritten for ``convention``'s importer (see the module docstring)."""
    side = convention.consumer
    if side is None:
        raise ExportError(f"{convention.name} reads no NIR", where="--nir-for")
    _check_model(graph, convention)
    knows = side.knows or ()
    graph, notes = _swap_pools(graph, convention, knows) if knows else (graph, [])
    if side.spike_delay:
        graph, delays = _fold_spike_delays(graph, convention, side.spike_delay)
        notes += delays
    unknown = [(n, node.kind) for n, node in graph.nodes.items()
               if knows and _nir_kind(node, side) not in knows]
    if unknown:
        listing = ", ".join(f"'{n}' ({k})" for n, k in unknown)
        raise ExportError(f"{convention.name}'s NIR importer maps none of {listing}; it maps "
                          f"{', '.join(knows)}", where=f"--nir-for {convention.name}")
    if graph.recurrent_edges:
        notes += _recurrent_notes(graph, convention)
    graph, folded = _fold_gains(graph, convention, side)
    notes += folded
    notes += _check_expressible(graph, convention, side)
    if side.flatten_order == "hwc":
        graph, reordered = _hwc_columns(graph, convention)
        notes += reordered
    return Adapted(graph, tuple(notes))


def _fold_spike_delays(graph: Graph, convention: Convention, steps: int
                       ) -> tuple[Graph, list[str]]:
    """A consumer that sends every spike ``steps`` late (spyx) supplies, by itself, the Delay of
    ``steps`` that follows each spiking neuron in its model (:func:`consumer_model` puts it
    there; :func:`_check_model` has made sure it is there): the Delay is dropped and its edges
    rejoined to the neuron. A recurrent cell's own weights read the neuron directly."""
    nodes: dict[str, Node] = dict(graph.nodes)
    edges = list(graph.edges)
    notes: list[str] = []
    for name, node in graph.nodes.items():
        if not getattr(node, "spiking", False):
            continue
        leaving = [d for s, d in graph.edges if s == name and not _reaches(graph, d, name)]
        for delay in leaving:
            del nodes[delay]
            edges = [(s, d) for s, d in edges if (s, d) != (name, delay)]
            edges = [(name if s == delay else s, d) for s, d in edges]
        if leaving:
            notes.append(f"{node.kind} '{name}': the {steps}-step Delay after it ("
                         f"{', '.join(leaving)}) left out; {convention.name} delays its spikes "
                         "by itself")
    return Graph(nodes, tuple(edges), graph.dt, graph.metadata), notes


def _recurrent_notes(graph: Graph, convention: Convention) -> list[str]:
    edges = ", ".join(f"{s} -> {d}" for s, d in sorted(graph.recurrent_edges))
    if convention.name == "norse":
        raise ExportError(f"norse 1.1.0's NIR importer has no recurrent support (it is commented "
                          f"out); recurrent edges: {edges}", where="--nir-for norse")
    if convention.name == "snntorch":
        return ["snntorch 1.0.0's import_from_nir runs a nested recurrent cell through "
                "nirtorch, which keeps the cell's last output in the module's state: call it as "
                "out, state = net(x, state) step by step (net(x) alone starts every step from "
                "zero)"]
    if convention.name == "sinabs":
        return ["sinabs 3.1.3's NIR bridge has no recurrent layer; how its importer runs a cycle "
                "is not confirmed"]
    return []


def _hwc_columns(graph: Graph, convention: Convention) -> tuple[Graph, list[str]]:
    """Spyx flattens channels-last: an Affine behind a (C, H, W) Flatten gets its columns in
    (H, W, C) order."""
    nodes: dict[str, Node] = dict(graph.nodes)
    notes = []
    for src, dst in graph.edges:
        flat, affine = graph.nodes[src], graph.nodes[dst]
        if (isinstance(flat, Flatten) and isinstance(affine, Affine)
                and len(flat.input_shape) == 3 and len(flat.output_shape) == 1):
            nodes[dst] = affine.with_weight(chw_to_hwc_columns(np.asarray(affine.weight),
                                                               flat.input_shape))
            notes.append(f"Affine '{dst}': columns put in {convention.name}'s (H, W, C) "
                         f"flatten order after Flatten '{src}'")
    return Graph(nodes, graph.edges, graph.dt, graph.metadata), notes


def _nir_kind(node: Node, side: Side) -> str:
    """The NIR node type an IR node is written as for this consumer."""
    if isinstance(node, Affine) and node.bias is None:
        return "Linear" if side.knows_linear else "Affine"
    if isinstance(node, Integrator):
        return "I"
    if isinstance(node, CubaLI) and np.all(node.alpha == 1) and np.all(node.beta == 0):
        return "I"
    return node.kind


__all__ = ["Adapted", "adapt", "consumer_gains", "consumer_model", "drive"]
