"""Design rules: one small function per rule, named after what it enforces.

Each rule takes ``(graph, target)`` and yields every :class:`Violation` it finds (never stops at
the first). A rule applies to what the chip runs: ``check`` passes ``host``, the nodes the chip /
host split leaves to the host (``check.split.offloaded``), and each rule skips them (their
synapses are no chip synapses, their neurons hold no chip register or core); called without it,
a rule judges every node as if the chip ran it. A target lists the rules that apply to it
(``rules = [...]`` in its TOML file); :data:`RULES` maps each name to its function. A violation carries the layer, the rule, the limit,
the actual value, a message that states both, and a severity: ``"error"``, or ``"warning"`` when
the limit is itself an estimate (no public number) or the value will only be rounded.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sbc_deploy.check.mapping import (
    POOLS,
    Mapping,
    Population,
    map_to_cores,
    neuron_fan_in,
    populations,
    source_fan_out,
    synapse_source,
    synapse_target,
)
from sbc_deploy.errors import SbcDeployError
from sbc_deploy.ir import (
    OPERATION_TYPES,
    Affine,
    Conv2d,
    Delay,
    Graph,
    Input,
    MaxPool2d,
    Neuron,
    Synapse,
    WeightEncoding,
)
from sbc_deploy.ir.encoding import mantissa_range
from sbc_deploy.targets import Target

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Violation:
    """One broken rule: where, which rule, the limit, the actual value, and a message."""

    layer: str | None
    rule: str
    limit: Any
    actual: Any
    message: str
    severity: Severity = "error"
    neurons: tuple[int, ...] = ()  # flat indices of the offending neurons (C order), if known
    remedy: str | None = None  # what to change, per neuron where it differs


Rule = Callable[..., Iterator[Violation]]  # (graph, target, host=frozenset()) -> violations
NONE: frozenset[str] = frozenset()


def _severity(target: Target, key: str) -> Severity:
    """Error for a sourced limit, warning when the limit is an estimate."""
    return "warning" if target.is_estimate(key) else "error"


def _kinds(values: tuple[str, ...]) -> str:
    return ", ".join(values) if values else "none"


def neuron_kinds_phrase(target: Target) -> str:
    """What neurons ``target`` runs, said as a reason: ``"speck runs IF neurons only"``."""
    kinds = target.neurons.kinds
    if not kinds:
        return f"{target.name} runs no spiking neuron model (no membrane state between steps)"
    listing = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " and " + kinds[-1]
    return f"{target.name} runs {listing} neurons only"


@functools.lru_cache(maxsize=4)
def _mapping(graph: Graph, target: Target, host: frozenset[str] = NONE) -> Mapping:
    return map_to_cores(graph, target, host)


def refusing_errors(graph: Graph, target: Target) -> frozenset[str]:
    """Nodes with an error of the rules no compression can satisfy (the neuron model and the
    layer types, judged on every node): ``validate.REFUSING_RULES``."""
    return frozenset(v.layer or "" for rule in (supported_neuron_model, supported_layer_types)
                     for v in rule(graph, target) if v.severity == "error")


def host_placement(graph: Graph, target: Target, name: str, reason: str) -> Violation:
    """The one warning a node the split runs on the host gets instead of the chip's rules."""
    node = graph.nodes[name]
    rule, limit, actual = ("supported_layer_types", _kinds(target.layers.node_kinds), node.kind)
    if isinstance(node, Neuron):
        spec, reset = target.neurons, getattr(node, "reset", None)
        rule = "supported_neuron_model"
        if node.kind in spec.kinds and reset not in spec.reset_modes:
            limit, actual = _kinds(spec.reset_modes), reset
        elif node.kind in spec.kinds:
            cap = getattr(node, "max_spikes", 1)
            limit, actual = spec.max_spikes_per_step, "unbounded" if cap is None else cap
        else:
            limit = _kinds(spec.kinds)
    return Violation(name, rule, limit, actual,
                     f"{reason}; it runs on the host (see the chip / host split)", "warning")


def _layer_name(pop: Population) -> str:
    """The synapse layer to blame for a population's inputs (its neuron when several feed it)."""
    return pop.synapses[0] if len(pop.synapses) == 1 else pop.name


def _supported_neurons(graph: Graph, target: Target, host: frozenset[str] = NONE
                       ) -> Iterator[tuple[str, Neuron]]:
    """Neurons on the chip whose kind the target runs (the others are reported once, by
    :func:`supported_neuron_model`)."""
    for name in graph.topological_order:
        node = graph.nodes[name]
        if isinstance(node, Neuron) and node.kind in target.neurons.kinds and name not in host:
            yield name, node


# =========================================================================== node kinds


@functools.lru_cache(maxsize=8)
def _netx_fold_error(graph: Graph) -> str | None:
    """Why the netx exporter cannot fold this graph's pools (``None``: it can; kept per graph:
    the split and the layer-type rule both ask)."""
    from sbc_deploy.exporters.to_netx import plan_netx  # the exporter decides what folds

    synapses = {name: node for name, node in graph.nodes.items() if isinstance(node, Synapse)}
    encoded = all(node.encoding is not None for node in synapses.values())
    if not encoded:
        # whether pools fold is structural: decide it on a copy with integer weights (+-1, 0)
        # and unit 1 (weights_on_grid reports the float weights themselves)
        graph = graph.replace_nodes({
            name: dataclasses.replace(node, weight=np.sign(node.weight), encoding=None)
            for name, node in synapses.items()})
    try:
        plan_netx(graph, unit=None if encoded else 1.0)
    except SbcDeployError as err:
        return str(err)
    return None


def supported_layer_types(graph: Graph, target: Target, host: frozenset[str] = NONE
                          ) -> Iterator[Violation]:
    """Every non-neuron node is of a kind the target supports (neurons: next rule).

    A pool on a target that exports netx is accepted when the netx exporter folds it into the
    neighbouring convolution or dense layer (netx has no pool layer; the folded layer is what
    runs, and :func:`fan_in` counts its synapses). A weightless graph operation (max pool,
    product of activations, reshape, ... ``ir.OPERATION_TYPES``) the target cannot run is a
    warning: it runs on the host, and the chip / host split (``check.split``) says where.
    """
    allowed = target.layers.node_kinds
    pools = [name for name in graph.topological_order
             if isinstance(graph.nodes[name], POOLS) and graph.nodes[name].kind not in allowed]
    fold_error = (_netx_fold_error(graph) if pools and "netx" in target.export_formats
                  else "the target has no netx export to fold it")
    for name in graph.topological_order:
        node = graph.nodes[name]
        if isinstance(node, Neuron) or node.kind in allowed or name in host:
            continue
        if name in pools and fold_error is None:
            continue
        reason = f"; the netx export cannot fold it ({fold_error})" if name in pools else ""
        if isinstance(node, OPERATION_TYPES):
            # a weightless operation stays on the host; the split says where the data crosses
            yield Violation(name, "supported_layer_types", _kinds(allowed), node.kind,
                            f"{target.name} has no {node.kind} layer: it runs on the host "
                            "(see the chip / host split)", "warning")
            continue
        yield Violation(name, "supported_layer_types", _kinds(allowed), node.kind,
                        f"{target.name} has no {node.kind} layer (supported: {_kinds(allowed)})"
                        + reason, _severity(target, "layers.node_kinds"))


def supported_neuron_model(graph: Graph, target: Target, host: frozenset[str] = NONE
                           ) -> Iterator[Violation]:
    """Neuron kind, reset mode, resting potential, reset value and bias are expressible."""
    spec = target.neurons
    rule = "supported_neuron_model"
    for name in graph.topological_order:
        node = graph.nodes[name]
        if not isinstance(node, Neuron) or name in host:
            continue
        if node.kind not in spec.kinds:
            yield Violation(name, rule, _kinds(spec.kinds), node.kind,
                            f"{target.name} cannot run {node.kind} neurons: "
                            f"{neuron_kinds_phrase(target)}", _severity(target, "neurons.kinds"))
            continue
        reset = getattr(node, "reset", None)
        if node.spiking and reset not in spec.reset_modes:
            yield Violation(name, rule, _kinds(spec.reset_modes), reset,
                            f"{target.name} resets by {_kinds(spec.reset_modes)}, not "
                            f"'{reset}'", _severity(target, "neurons.reset_modes"))
        v_leak = getattr(node, "v_leak", None)
        if v_leak is not None and not spec.v_leak:
            pull = np.abs((1.0 - node.membrane_decay) * v_leak)
            if np.any(pull > 0):
                yield Violation(name, rule, 0.0, float(np.max(np.abs(v_leak))),
                                f"{target.name} has no resting potential: v_leak must be 0 "
                                f"(max |v_leak| = {np.max(np.abs(v_leak)):g})",
                                _severity(target, "neurons.v_leak"))
        v_reset = getattr(node, "v_reset", None)
        if (v_reset is not None and reset == "zero" and not spec.v_reset
                and np.any(v_reset != 0)):
            yield Violation(name, rule, 0.0, float(np.max(np.abs(v_reset))),
                            f"{target.name} resets to 0: v_reset must be 0 (max |v_reset| = "
                            f"{np.max(np.abs(v_reset)):g})", _severity(target, "neurons.v_reset"))
        if not spec.bias and np.any(node.bias != 0):
            yield Violation(name, rule, 0.0, float(np.max(np.abs(node.bias))),
                            f"{target.name} neurons have no bias (max |bias| = "
                            f"{np.max(np.abs(node.bias)):g})", _severity(target, "neurons.bias"))


def spikes_per_step(graph: Graph, target: Target, host: frozenset[str] = NONE
                    ) -> Iterator[Violation]:
    """No neuron may send more spikes in one step than the chip emits (``max_spikes_per_step``;
    a neuron's ``max_spikes``, ``None`` when it has no cap: sinabs MultiSpike, rockpool's
    default ``max_spikes_per_dt``)."""
    limit = target.neurons.max_spikes_per_step
    if limit is None:
        return
    for name in graph.topological_order:
        node = graph.nodes[name]
        if not isinstance(node, Neuron) or not node.spiking or name in host:
            continue
        cap = getattr(node, "max_spikes", 1)
        if cap is not None and cap <= limit:
            continue
        actual = "unbounded" if cap is None else cap
        yield Violation(name, "spikes_per_step", limit, actual,
                        f"sends up to {actual} spikes per step; {target.name} emits at most "
                        f"{limit} per neuron and step",
                        _severity(target, "neurons.max_spikes_per_step"),
                        remedy=f"cap the neuron at {limit} spikes per step (max_spikes={limit}; "
                               f"rockpool max_spikes_per_dt={limit}) and retrain or re-import")


def synapse_bias_foldable(graph: Graph, target: Target, host: frozenset[str] = NONE
                          ) -> Iterator[Violation]:
    """A synapse bias exists on the chip, or folds exactly into the neuron's bias (possible
    when the neuron keeps no input current between steps: not current-based, or alpha = 0);
    a chip synapse whose values go to the host has its bias added there."""
    if target.neurons.synapse_bias:
        return
    for name in graph.topological_order:
        syn = graph.nodes[name]
        if (not isinstance(syn, Synapse) or syn.bias is None or not np.any(syn.bias != 0)
                or name in host):
            continue
        neuron_name, chain = synapse_target(graph, name, host)
        following = graph.successors(chain[-1] if chain else name)
        if neuron_name is None and len(following) == 1 and following[0] in host:
            continue
        neuron = graph.nodes[neuron_name] if neuron_name is not None else None
        persists = (neuron is None or (neuron.current_based  # type: ignore[union-attr]
                                       and np.any(neuron.synaptic_decay != 0)))  # type: ignore
        if not persists and target.neurons.bias:
            continue
        why = ("it feeds no neuron" if neuron is None else
               f"'{neuron_name}' keeps its input current (alpha > 0)" if persists else
               "the neurons have no bias either")
        yield Violation(name, "synapse_bias_foldable", 0.0, float(np.max(np.abs(syn.bias))),
                        f"{target.name} synapses carry no bias and this one cannot fold into a "
                        f"neuron bias: {why}", _severity(target, "neurons.synapse_bias"))


def _window(size: tuple[int, int], stride: tuple[int, int]) -> str:
    text = f"{size[0]}x{size[1]}" if size[0] != size[1] else f"{size[0]}x{size[0]}"
    step = f"{stride[0]}x{stride[1]}" if stride[0] != stride[1] else f"{stride[0]}"
    return f"{text} stride {step}"


def _reads_the_input(graph: Graph, name: str) -> bool:
    """The nearest synapse before ``name`` reads a graph Input (Akida's InputConv2D)."""
    current = name
    while True:
        before = graph.predecessors(current)
        if len(before) != 1:
            return False
        node = graph.nodes[before[0]]
        if isinstance(node, Synapse):
            return synapse_source(graph, before[0])[0] in graph.inputs
        if isinstance(node, Input):
            return True
        current = before[0]


def _next_synapse(graph: Graph, name: str) -> str | None:
    """The kind of the first node after ``name`` that is a synapse, an Output or a branch."""
    current = name
    while True:
        after = graph.successors(current)
        if len(after) != 1:
            return "a branch" if after else None
        node = graph.nodes[after[0]]
        if isinstance(node, Synapse) or not isinstance(node, (Neuron, *POOLS)):
            return node.kind
        current = after[0]


def max_pool_windows(graph: Graph, target: Target, host: frozenset[str] = NONE
                     ) -> Iterator[Violation]:
    """Max pooling on the chip uses a window and stride the chip computes
    (``[layers] max_pool``, ``max_pool_first`` after the layer that reads the input: Akida's
    InputConv2D), square, and feeds a convolution (Akida 2.0: "layer with max pooling must be
    followed by another Conv2D or DepthwiseConv2D layer")."""
    spec = target.layers
    if spec.max_pool is None and spec.max_pool_first is None:
        return
    for name in graph.topological_order:
        node = graph.nodes[name]
        if not isinstance(node, MaxPool2d) or name in host or node.kind not in spec.node_kinds:
            continue
        first = _reads_the_input(graph, name)
        allowed = (spec.max_pool_first if first and spec.max_pool_first is not None
                   else spec.max_pool)
        size, stride = tuple(node.kernel_size), tuple(node.stride)
        where = "after the layer that reads the input" if first else "after a convolution"
        if allowed is not None and not (size[0] == size[1] and stride[0] == stride[1]
                                        and (size[0], stride[0]) in allowed):
            limit = ", ".join(_window((k, k), (t, t)) for k, t in allowed)
            yield Violation(name, "max_pool_windows", limit, _window(size, stride),
                            f"{target.name} max-pools {where} with {limit} only; '{name}' "
                            f"pools {_window(size, stride)}",
                            _severity(target, "layers.max_pool_first" if first
                                      else "layers.max_pool"))
        following = _next_synapse(graph, name)
        if following not in (None, "Conv2d"):
            yield Violation(name, "max_pool_windows", "Conv2d", following,
                            f"{target.name}'s max pooling must be followed by a Conv2D (or "
                            f"DepthwiseConv2D) layer; '{name}' is followed by {following}",
                            _severity(target, "layers.max_pool"))


# =========================================================================== graph shape


def _dense_self_recurrences(graph: Graph) -> dict[str, str]:
    """Affine nodes that read and feed the same neuron over a recurrent edge (netx
    ``dense_rec``): synapse name -> neuron name."""
    found = {}
    for src, dst in graph.recurrent_edges:
        for syn, neuron in ((src, dst), (dst, src)):
            node = graph.nodes[syn]
            if (isinstance(node, Affine) and isinstance(graph.nodes[neuron], Neuron)
                    and graph.predecessors(syn) == (neuron,)
                    and graph.successors(syn) == (neuron,)):
                found[syn] = neuron
    return found


def _on_host(node: Any, target: Target) -> bool:
    """A weightless graph operation the target lacks: it runs on the host (``check.split``)."""
    return isinstance(node, OPERATION_TYPES) and node.kind not in target.layers.node_kinds


def topology(graph: Graph, target: Target, host: frozenset[str] = NONE
             ) -> Iterator[Violation]:
    """The graph has a shape the target's format can express (``[layers] topology``); branches
    and merges at graph operations the host runs (a product's two operands, a residual sum the
    target has no layer for) are the host's, not the chip's."""
    kind = target.layers.topology
    rule, severity = "topology", _severity(target, "layers.topology")
    if kind == "any":
        return
    if kind == "feedforward":
        for src, dst in sorted(graph.recurrent_edges):
            yield Violation(dst, rule, "feed-forward", f"recurrent edge {src} -> {dst}",
                            f"{target.name} runs feed-forward graphs only; {src} -> {dst} closes "
                            "a cycle", severity)
        return
    # "sequential": one chain, recurrence only as a dense layer's self-recurrence (dense_rec)
    allowed = _dense_self_recurrences(graph)
    for syn, neuron in allowed.items():
        forward = [p for p in graph.predecessors(neuron) if p != syn]
        if not forward or not isinstance(graph.nodes[forward[0]], Affine):
            fed_by = graph.nodes[forward[0]].kind if forward else "no"
            yield Violation(syn, rule, "recurrence on a dense layer (dense_rec)",
                            f"recurrent {syn} on a {fed_by} layer",
                            f"{target.name}'s format has recurrence only as a dense layer's "
                            f"self-recurrence; '{neuron}' is not fed by a dense layer", severity)
    edges = [(s, d) for s, d in graph.edges if s not in allowed and d not in allowed]
    for count, what in ((len(graph.inputs), "inputs"), (len(graph.outputs), "outputs")):
        if count != 1:
            yield Violation("graph", rule, 1, count, f"{target.name}'s format holds one chain: "
                            f"1 input and 1 output, this graph has {count} {what}", severity)
    outs_of: dict[str, list[str]] = {}
    ins_of: dict[str, list[str]] = {}
    for s, d in edges:  # one pass: linear in the edges (was a scan per node)
        outs_of.setdefault(s, []).append(d)
        ins_of.setdefault(d, []).append(s)
    for name in graph.topological_order:
        if name in allowed or name in host or _on_host(graph.nodes[name], target):
            continue   # a graph operation the host runs may branch and merge as it likes
        outs, ins = outs_of.get(name, []), ins_of.get(name, [])
        if len(outs) > 1:
            yield Violation(name, rule, 1, len(outs),
                            f"{target.name}'s format is a sequential chain; '{name}' branches to "
                            f"{len(outs)} nodes ({', '.join(outs)})", severity)
        if len(ins) > 1:
            yield Violation(name, rule, 1, len(ins),
                            f"{target.name}'s format is a sequential chain; '{name}' merges "
                            f"{len(ins)} inputs ({', '.join(ins)})", severity)
    for src, dst in sorted(graph.recurrent_edges):
        if src not in allowed and dst not in allowed:
            yield Violation(dst, rule, "dense self-recurrence only", f"{src} -> {dst}",
                            f"{target.name}'s format has recurrence only as a dense layer's "
                            f"self-recurrence; {src} -> {dst} is not one", severity)


def destinations(graph: Graph, target: Target, host: frozenset[str] = NONE
                 ) -> Iterator[Violation]:
    """Each layer sends to at most ``max_destinations`` synapse layers (on the chip)."""
    limit = target.limits.max_destinations
    if limit is None:
        return
    sent: dict[str, list[str]] = {}
    for name in graph.topological_order:
        if isinstance(graph.nodes[name], Synapse) and name not in host:
            source, _ = synapse_source(graph, name, host)
            if source is not None and source not in host:
                sent.setdefault(source, []).append(name)
    for source, layers in sent.items():
        if len(layers) > limit:
            yield Violation(source, "destinations", limit, len(layers),
                            f"{target.name} sends a layer to at most {limit} layers; '{source}' "
                            f"feeds {len(layers)} ({', '.join(layers)})",
                            _severity(target, "limits.max_destinations"))


def io_channels(graph: Graph, target: Target, host: frozenset[str] = NONE
                ) -> Iterator[Violation]:
    """Input channels and output neurons fit the chip's input and output ports."""
    max_in, max_out = target.limits.max_input_channels, target.limits.max_output_neurons
    if max_in is not None:
        for name in graph.inputs:
            size = int(np.prod(graph.nodes[name].output_shape))
            if size > max_in:
                yield Violation(name, "io_channels", max_in, size,
                                f"{target.name} has {max_in} input channels; '{name}' has {size}",
                                _severity(target, "limits.max_input_channels"))
    if max_out is not None:
        readouts = [p for p in populations(graph, host) if p.readout]
        total = sum(p.size for p in readouts)
        if total > max_out:
            yield Violation(readouts[0].name if len(readouts) == 1 else "graph", "io_channels",
                            max_out, total,
                            f"{target.name} has {max_out} output neurons; the graph's readout "
                            f"has {total}", _severity(target, "limits.max_output_neurons"))


# =========================================================================== weights

_GRID_ACCEPTS = {"int": ("int", "int_exp", "ternary"), "int_exp": ("int_exp",),
                 "ternary": ("ternary",)}


_COMPRESS_FIRST = ("compress the network for it first (sbc-deploy MODEL --target {0} puts "
                   "the weights on its grid)")


def weights_on_grid(graph: Graph, target: Target, host: frozenset[str] = NONE
                    ) -> Iterator[Violation]:
    """Weights lie on the target's integer grid: right grid, exponent range, shared scale."""
    spec = target.weights
    if spec.grid == "float":
        return
    rule = "weights_on_grid"
    for name in graph.topological_order:
        syn = graph.nodes[name]
        if not isinstance(syn, Synapse) or name in host:
            continue
        enc: WeightEncoding | None = syn.encoding
        wanted = f"{spec.bits}-bit {spec.grid}"
        if enc is None:
            yield Violation(name, rule, wanted, "float",
                            f"float weights on {target.name}, which takes {wanted} weights only: "
                            f"{_COMPRESS_FIRST.format(target.name)}",
                            _severity(target, "weights.grid"))
            continue
        if enc.grid not in _GRID_ACCEPTS[spec.grid]:
            yield Violation(name, rule, spec.grid, enc.grid,
                            f"weights are on an '{enc.grid}' grid; {target.name} needs "
                            f"'{spec.grid}': {_COMPRESS_FIRST.format(target.name)}",
                            _severity(target, "weights.grid"))
            continue
        if spec.exp_range is not None and enc.exponent is not None:
            low, high = spec.exp_range
            if not low <= enc.exponent <= high:
                yield Violation(name, rule, f"[{low}, {high}]", enc.exponent,
                                f"weight exponent {enc.exponent} lies outside {target.name}'s "
                                f"[{low}, {high}]", _severity(target, "weights.exp_range"))
        if spec.scale_sharing == "per_layer" and not np.allclose(enc.scale, enc.scale[0],
                                                                 rtol=1e-9, atol=0.0):
            yield Violation(name, rule, "one scale per layer",
                            f"{len(np.unique(enc.scale))} scales",
                            f"{target.name} shares one weight scale per layer; this layer has "
                            f"{len(np.unique(enc.scale))} different channel scales",
                            _severity(target, "weights.scale_sharing"))


def _bits_needed(low: int, high: int, signed: bool) -> int:
    bits = 1
    while True:
        lo, hi = mantissa_range(bits, signed)
        if lo <= low and high <= hi:
            return bits
        bits += 1


def weight_bits(graph: Graph, target: Target, host: frozenset[str] = NONE
                ) -> Iterator[Violation]:
    """Integer weights fit the target's width and sign (judged by the values actually held)."""
    spec = target.weights
    if spec.grid == "float":
        return
    for name in graph.topological_order:
        syn = graph.nodes[name]
        if (not isinstance(syn, Synapse) or syn.encoding is None
                or syn.encoding.mantissa.size == 0 or name in host):
            continue
        low, high = int(syn.encoding.mantissa.min()), int(syn.encoding.mantissa.max())
        if not spec.signed and low < 0:
            yield Violation(name, "weight_bits", "unsigned", f"min {low}",
                            f"{target.name} weights are unsigned; this layer has negative "
                            f"weights (min mantissa {low})", _severity(target, "weights.signed"))
            continue
        needed = _bits_needed(low, high, spec.signed)
        if needed > spec.bits:
            yield Violation(name, "weight_bits", spec.bits, needed,
                            f"mantissas in [{low}, {high}] need {needed} bits; {target.name} "
                            f"stores {spec.bits}", _severity(target, "weights.bits"))


# =========================================================================== connectivity


def fan_in(graph: Graph, target: Target, host: frozenset[str] = NONE) -> Iterator[Violation]:
    """Non-zero synapses into each neuron stay within the per-neuron limit; where the chip
    limits inputs per core instead (Loihi: in-axons), a neuron must at least fit one core."""
    per_neuron, per_core = target.limits.max_fan_in, target.cores.max_in_axons
    if per_neuron is None and per_core is None:
        return
    for pop in populations(graph, host):
        if not pop.synapses:
            continue
        counts = neuron_fan_in(graph, pop, host)
        worst = int(counts.max(initial=0))
        if per_neuron is not None and worst > per_neuron:
            over = int(np.count_nonzero(counts > per_neuron))
            yield Violation(_layer_name(pop), "fan_in", per_neuron, worst,
                            f"{target.name} allows fan-in <= {per_neuron} per neuron; {over} of "
                            f"{pop.size} neurons of '{pop.name}' exceed it (max {worst})",
                            _severity(target, "limits.max_fan_in"))
        elif per_neuron is None and per_core is not None and worst > per_core:
            over = int(np.count_nonzero(counts > per_core))
            yield Violation(_layer_name(pop), "fan_in", per_core, worst,
                            f"{target.name} limits in-axons per core ({per_core}), not synapses "
                            f"per neuron; {over} neurons of '{pop.name}' have more inputs (max "
                            f"{worst}) and fit no core", _severity(target, "cores.max_in_axons"))


def fan_out(graph: Graph, target: Target, host: frozenset[str] = NONE
            ) -> Iterator[Violation]:
    """Non-zero synapses leaving each neuron (or input) stay within the per-neuron limit."""
    limit = target.limits.max_fan_out
    if limit is None:
        return
    for source, counts in source_fan_out(graph, host).items():
        worst = int(counts.max(initial=0))
        if worst > limit:
            over = int(np.count_nonzero(counts > limit))
            yield Violation(source, "fan_out", limit, worst,
                            f"{target.name} allows fan-out <= {limit} per neuron; {over} "
                            f"neurons of '{source}' exceed it (max {worst})",
                            _severity(target, "limits.max_fan_out"))


def delays(graph: Graph, target: Target, host: frozenset[str] = NONE) -> Iterator[Violation]:
    """Delays exist on the chip and stay within its longest delay (in steps)."""
    limit = target.limits.max_delay
    if limit is None:
        return
    for name in graph.topological_order:
        node = graph.nodes[name]
        if isinstance(node, Delay) and node.max_delay > limit and name not in host:
            text = (f"{target.name} has no delays" if limit == 0 else
                    f"{target.name} delays by at most {limit} steps")
            yield Violation(name, "delays", limit, node.max_delay,
                            f"{text}; '{name}' delays by up to {node.max_delay}",
                            _severity(target, "limits.max_delay"))


# =========================================================================== neuron registers


_FEEDERS: "weakref.WeakKeyDictionary[Graph, dict[str, tuple[str, tuple[str, ...]]]]" = \
    weakref.WeakKeyDictionary()


def _first_encoded_feeders(graph: Graph) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Neuron -> (the first encoded synapse, in topological order, that feeds it, the nodes
    between): one pass over the graph, kept per graph (was a scan of every node per neuron)."""
    found = _FEEDERS.get(graph)
    if found is None:
        found = {}
        for syn_name in graph.topological_order:
            syn = graph.nodes[syn_name]
            if isinstance(syn, Synapse) and syn.encoding is not None:
                target_name, chain = synapse_target(graph, syn_name)
                if target_name is not None:
                    found.setdefault(target_name, (syn_name, chain))
        _FEEDERS[graph] = found
    return found


def _state_unit(graph: Graph, name: str, neuron: Neuron) -> np.ndarray | None:
    """Float value of one integer step of ``neuron``'s state, per element, from the encoding
    of the first synapse that feeds it (``None`` when none is encoded)."""
    feeder = _first_encoded_feeders(graph).get(name)
    if feeder is not None:
        syn_name, chain = feeder
        syn = graph.nodes[syn_name]
        enc = syn.encoding
        if enc.grid == "int_exp":
            unit = np.full(neuron.shape, float(enc.unit))  # type: ignore[arg-type]
        else:
            per_channel = enc.scale.reshape((-1,) + (1,) * (len(syn.output_shape) - 1))
            values = np.broadcast_to(per_channel, syn.output_shape)
            if any(graph.nodes[n].kind in ("SumPool2d", "AvgPool2d") for n in chain):
                unit = np.broadcast_to(enc.scale.reshape(-1, 1, 1), neuron.shape)
            else:
                unit = np.asarray(values).reshape(neuron.shape)
        gain = np.asarray(neuron.gain)
        if neuron.current_based:
            gain = gain * np.asarray(neuron.gain_syn)  # type: ignore[attr-defined]
        return np.asarray(unit * gain, dtype=np.float64)
    return None


def thresholds_fit_bits(graph: Graph, target: Target, host: frozenset[str] = NONE
                        ) -> Iterator[Violation]:
    """Thresholds and biases, in integer state units, fit the chip's registers (rounding to an
    integer is a warning; out of range an error)."""
    spec = target.neurons
    rule = "thresholds_fit_bits"
    for name, neuron in _supported_neurons(graph, target, host):
        unit = _state_unit(graph, name, neuron)
        if unit is None or np.any(unit == 0):
            continue
        for param, limits, key in (("v_threshold", spec.threshold_range, "neurons.threshold_range"),
                                   ("bias", spec.bias_range, "neurons.bias_range")):
            values = getattr(neuron, param, None)
            if values is None or limits is None:
                continue
            scaled = np.broadcast_to(np.asarray(values) / unit, np.shape(unit))
            low, high = limits
            if scaled.min() < low - 0.5 or scaled.max() > high + 0.5:
                worst = float(scaled.max() if scaled.max() > high + 0.5 else scaled.min())
                bad, remedy = _register_remedy(param, np.asarray(values), unit, scaled, limits)
                shown = ", ".join(f"neuron {i} ({scaled.reshape(-1)[i]:.3g} units)"
                                  for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
                yield Violation(name, rule, f"[{low}, {high}]", round(worst, 3),
                                f"{param} is {worst:.6g} integer state units; {target.name}'s "
                                f"register holds [{low}, {high}]; {len(bad)} neuron(s) out of "
                                f"range: {shown}", _severity(target, key),
                                neurons=tuple(bad), remedy=remedy)
                continue
            error = np.abs(scaled - np.round(scaled))
            if error.max() > 1e-6:
                yield Violation(name, rule, "integer state units", round(float(error.max()), 6),
                                f"{param} is not a whole number of state units (off by up to "
                                f"{error.max():.3g} units); {target.name} will round it",
                                "warning")


def _register_remedy(param: str, values: np.ndarray, unit: np.ndarray, scaled: np.ndarray,
                     limits: tuple[int, int]) -> tuple[list[int], str]:
    """The neurons whose ``param`` leaves the register, and what to change for each kind.

    A neuron whose state unit is far below the layer's (its incoming weights are all ~0, so its
    per-channel scale collapses) can never reach its threshold: remove it, or give it the layer's
    scale. Otherwise the value itself is too large for the register at this weight scale.
    """
    low, high = limits
    flat, units = scaled.reshape(-1), np.broadcast_to(unit, scaled.shape).reshape(-1)
    values = np.broadcast_to(values, scaled.shape).reshape(-1)
    bad = [int(i) for i in np.flatnonzero((flat < low - 0.5) | (flat > high + 0.5))]
    typical = float(np.median(np.abs(units)))
    dead = [i for i in bad if abs(units[i]) < 1e-3 * typical]
    parts = []
    if dead:
        i = dead[0]
        parts.append(
            f"neuron(s) {_indices(dead)} receive weights that are all ~0 (state unit "
            f"{units[i]:.3g} vs the layer's typical {typical:.3g}), so they can never fire: "
            f"prune them (their output is always 0), or quantise them with the layer's scale, "
            f"which puts neuron {i}'s {param} at {values[i] / typical:.4g} units")
    rest = [i for i in bad if i not in dead]
    if rest:
        i = rest[0]
        edge = high if flat[i] > high else low
        parts.append(
            f"neuron(s) {_indices(rest)}: {param} {values[i]:.4g} is {flat[i]:.4g} units; set it "
            f"to at most {edge * units[i]:.6g} (the register's {edge}), or scale this neuron's "
            f"weights and {param} up together (a larger weight unit)")
    return bad, "; ".join(parts)


def _indices(items: list[int], shown: int = 8) -> str:
    text = ", ".join(str(i) for i in items[:shown])
    return text + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _nearest_bitshift(decay: np.ndarray, bits: int) -> np.ndarray:
    shifts = np.arange(2**bits)
    grid = 1.0 - 2.0 ** -shifts.astype(np.float64)
    return grid[np.argmin(np.abs(decay.reshape(-1, 1) - grid[None, :]), axis=1)].reshape(
        decay.shape)


def decays_fit_bits(graph: Graph, target: Target, host: frozenset[str] = NONE
                    ) -> Iterator[Violation]:
    """Decays are representable in the chip's decay format (off-grid decays are rounded: a
    warning; a leak on a chip without decays: an error)."""
    spec = target.neurons
    if spec.decay_format == "float":
        return
    for name, neuron in _supported_neurons(graph, target, host):
        decays = [("beta", neuron.membrane_decay)]
        if neuron.synaptic_decay is not None:
            decays.append(("alpha", neuron.synaptic_decay))
        for param, values in decays:
            values = np.asarray(values, dtype=np.float64)
            if spec.decay_format == "none":
                if param == "beta" and np.any(values != 1.0):
                    yield Violation(name, "decays_fit_bits", 1.0, float(values.min()),
                                    f"{target.name} neurons do not decay; {param} is as low as "
                                    f"{values.min():g}", _severity(target, "neurons.decay_format"))
                continue
            bits = spec.decay_bits
            assert bits is not None  # enforced by the loader
            if spec.decay_format == "linear":
                nearest = np.round(values * 2**bits) / 2**bits
                grid = f"k / {2**bits}"
            else:
                nearest = _nearest_bitshift(values, bits)
                grid = f"1 - 2^-k, k < {2**bits}"
            error = float(np.max(np.abs(values - nearest)))
            if error > 1e-9:
                yield Violation(name, "decays_fit_bits", grid, round(error, 9),
                                f"{param} is off {target.name}'s decay grid ({grid}) by up to "
                                f"{error:.3g}; it will be rounded", "warning")


# =========================================================================== mapping


def _mapping_rule(resources: tuple[str, ...], rule: str, key: Callable[[str], str]) -> Rule:
    def check(graph: Graph, target: Target, host: frozenset[str] = NONE) -> Iterator[Violation]:
        for issue in _mapping(graph, target, host).issues:
            if issue.resource in resources:
                yield Violation(issue.layer, rule, issue.limit, issue.actual, issue.message,
                                _severity(target, key(issue.resource)))
    return check


_neurons_rule = _mapping_rule(("neurons_per_core",), "neurons_per_core",
                              lambda r: "cores.neurons_per_core")
_memory_rule = _mapping_rule(("synapse_memory_per_core",), "synapse_memory_per_core",
                             lambda r: "cores.synapse_memory_bits")
_axons_rule = _mapping_rule(("in_axons_per_core", "out_axons_per_core"), "axons_per_core",
                            lambda r: "cores.max_in_axons" if r.startswith("in")
                            else "cores.max_out_axons")
_cores_rule = _mapping_rule(("total_cores",), "total_cores", lambda r: "cores.cores")


def neurons_per_core(graph: Graph, target: Target, host: frozenset[str] = NONE
                     ) -> Iterator[Violation]:
    """A layer that must sit in one core (``split_layers = false``) fits its neurons."""
    return _neurons_rule(graph, target, host)


def synapse_memory_per_core(graph: Graph, target: Target, host: frozenset[str] = NONE
                            ) -> Iterator[Violation]:
    """No core's synapse memory overflows (a neuron, or an unsplittable layer, fits a core)."""
    return _memory_rule(graph, target, host)


def axons_per_core(graph: Graph, target: Target, host: frozenset[str] = NONE
                   ) -> Iterator[Violation]:
    """Each core's distinct inputs (in-axons) and (neuron, destination core) pairs (out-axons)
    stay within the per-core limits."""
    return _axons_rule(graph, target, host)


def total_cores(graph: Graph, target: Target, host: frozenset[str] = NONE
                ) -> Iterator[Violation]:
    """The mapping estimate uses no more cores than the chip has."""
    return _cores_rule(graph, target, host)


RULES: dict[str, Rule] = {
    "supported_layer_types": supported_layer_types,
    "supported_neuron_model": supported_neuron_model,
    "synapse_bias_foldable": synapse_bias_foldable,
    "topology": topology,
    "destinations": destinations,
    "io_channels": io_channels,
    "weights_on_grid": weights_on_grid,
    "weight_bits": weight_bits,
    "fan_in": fan_in,
    "fan_out": fan_out,
    "delays": delays,
    "thresholds_fit_bits": thresholds_fit_bits,
    "decays_fit_bits": decays_fit_bits,
    "neurons_per_core": neurons_per_core,
    "synapse_memory_per_core": synapse_memory_per_core,
    "axons_per_core": axons_per_core,
    "total_cores": total_cores,
    "spikes_per_step": spikes_per_step,
    "max_pool_windows": max_pool_windows,
}
MAPPING_RULES: tuple[str, ...] = ("neurons_per_core", "synapse_memory_per_core",
                                  "axons_per_core", "total_cores")
