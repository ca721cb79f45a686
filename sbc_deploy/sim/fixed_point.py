r"""The integer network both integer cores run, and the block loop they share.

What the cores compute is in :mod:`.int_core` (numpy, the reference) and :mod:`.int_core_torch`
(any torch device); this module holds what they have in common: Lava's register widths and
shifts, the fixed-point layers and network (:class:`FixedPointLayer`, :class:`FixedPointNetwork`),
how a Graph becomes one (:func:`to_fixed_point`), the per-layer LIF registers and state, the
result (:class:`IntSimResult`), and :func:`run_blocks`, the time-major loop over blocks of steps
that both cores drive with their own layer runs.

Integers from the IR (:func:`to_fixed_point`): a synapse layer must carry an ``int_exp``
:class:`~sbc_deploy.ir.WeightEncoding` (``W = mantissa``, ``e = exponent``, both in units of
``unit``, lava-dl's 1/64); its neuron gets ``vth = round(v_threshold / unit)``, ``bias_mant =
round(bias / unit)`` with ``bias_exp = 6``, ``du = round((1 - alpha) * 4096) - 1`` and ``dv =
round((1 - beta) * 4096)``. A ``LIF`` is a CUBA neuron whose current decays instantly
(``alpha = 0``); an ``IF`` also has ``beta = 1``. A neuron that fires at ``v >= thr``
(``fires_at_equal``: spikingjelly, sinabs, rockpool) gets ``vth - 1`` where that is exact (its
membrane on the threshold's grid: :func:`at_or_above_vth`) and is refused, saying why, elsewhere.

Register widths (8-bit weights, 13-bit bias, 17-bit threshold) are the target checker's
business: the cores compute what Lava's Python models compute for any integers.

Example::

    >>> net = to_fixed_point(graph)                      # graph from frontends.from_netx
    >>> [layer.kind for layer in net.layers]             # e.g. ["input", "dense", "dense"]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sbc_deploy.errors import ConfigError, DataError
from sbc_deploy.ir import (
    IF,
    LIF,
    Affine,
    Conv2d,
    CubaLI,
    CubaLIF,
    Flatten,
    Graph,
    Integrator,
    MaxPool2d,
    Neuron,
    Node,
    Output,
    Scale,
    Synapse,
    spike_variant_text,
)

UV_BITS = 24                      # u and v are 24-bit two's complement registers
UV_MAX = 1 << (UV_BITS - 1)       # 2**23
DECAY_SHIFT = 12                  # decays are 12-bit fractions of 4096
DECAY_UNITY = 1 << DECAY_SHIFT    # 4096
ACT_SHIFT = 6                     # synaptic input is MSB-aligned by 6 bits
VTH_SHIFT = 6                     # so is the threshold
BIAS_EXP = 6                      # netx's bias exponent: bias_mant shares the weights' unit
CONV_BITS = 24                    # Lava's fixed-point Conv wraps its output to 24 bits
DEVICE_WHERE = "simulate_integer(device=)"     # where a bad device or thread count is reported
THREADS_WHERE = "simulate_integer(threads=)"

LayerKind = Literal["input", "dense", "conv2d"]


# --------------------------------------------------------------------------- fixed-point network


@dataclass(frozen=True, eq=False)
class FixedPointLayer:
    """One neuron layer of the core with the synapses that feed it (all integers).

    Attributes:
        name: the neuron node.
        kind: ``"input"`` (no synapse: a netx input block), ``"dense"`` or ``"conv2d"``.
        synapse: the feed-forward synapse node (``None`` for an input layer).
        shape: per-sample shape of the neurons (the IR's, channels first).
        source_shape: per-sample shape of what feeds the layer (previous layer or the input).
        synapse_input_shape: what the synapse expects (a Flatten in between reshapes to it).
        weight: integer mantissas ``(n_out, n_in)`` or ``(C_out, C_in/groups, kH, kW)``; for a
            conv already shifted by its exponent (Lava's Conv has none).
        weight_exp: Dense weight exponent applied to the accumulated input (0 for conv).
        stride, padding, dilation, groups: conv geometry, (H, W) pairs.
        recurrent: the recurrent dense synapse node (neuron -> synapse -> neuron), or ``None``.
        recurrent_weight, recurrent_weight_exp: its mantissas and exponent.
        input_scale: input layers only: ``a[t] = x[t] * input_scale`` (integers required).
        du, dv: Lava's current and voltage decay registers (``du = iDecay - 1``).
        vth: threshold mantissa (compared with ``v`` after ``<< 6``).
        bias_mant: per-neuron bias mantissa, ``shape``; ``bias_exp``: its exponent.
        unit: the float value of one weight/threshold step.
        spiking: ``False`` for netx's read-out integrator (a dense layer without neuron
            group: ``iDecay = 0``, ``vDecay = 4096``, ``vThMant = 1 << 17``, never reached
            because ``v`` clips below ``2**23``); its output is ``v``.
        max_pool: ``(kernel, stride, padding)`` of a ``MaxPool2d`` on the source's spikes
            before the synapse (``None``: none): the OR of each window's spikes (the max of
            integer event counts), exact; ``max_pool_node`` names it.
    """

    name: str
    kind: LayerKind
    synapse: str | None
    shape: tuple[int, ...]
    source_shape: tuple[int, ...]
    synapse_input_shape: tuple[int, ...]
    weight: np.ndarray | None
    weight_exp: int
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray
    bias_exp: int
    unit: float
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    recurrent: str | None = None
    recurrent_weight: np.ndarray | None = None
    recurrent_weight_exp: int = 0
    input_scale: np.ndarray | None = None
    spiking: bool = True
    max_pool: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None
    max_pool_node: str | None = None

    @property
    def neurons(self) -> int:
        return int(np.prod(self.shape))


def pool_source(layer: FixedPointLayer, s: Tensor) -> Tensor:
    """``s`` ``[N, *source_shape]`` integers (any device) after the layer's max pool, if any:
    the OR of each window's spikes, the max of integer counts (exact: float32 holds every
    integer below 2**24, and a max adds nothing). Padding never wins (PyTorch's -inf)."""
    if layer.max_pool is None:
        return s
    kernel, stride, padding = layer.max_pool
    x = s.reshape(s.shape[0], *layer.source_shape)
    return F.max_pool2d(x.to(torch.float32), kernel, stride, padding).to(s.dtype)


@dataclass(frozen=True, eq=False)
class FixedPointNetwork:
    """A sequential chain of :class:`FixedPointLayer` as Lava runs it (netx's layer order).

    Attributes:
        layers: neuron layers from input to output.
        input: the graph's Input node; ``input_shape`` its per-sample shape.
        output: the graph's Output node (fed by the last layer).
        dt: seconds per step (from the graph).
    """

    layers: tuple[FixedPointLayer, ...]
    input: str
    input_shape: tuple[int, ...]
    output: str
    dt: float
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def layer(self, name: str) -> FixedPointLayer:
        """The layer whose neuron (or synapse) is called ``name``."""
        for layer in self.layers:
            if name in (layer.name, layer.synapse, layer.recurrent):
                return layer
        raise ConfigError(f"no layer of the fixed-point network is called '{name}'; layers: "
                          f"{', '.join(layer.name for layer in self.layers)}", where="network")


def _uniform(values: np.ndarray, what: str, where: str) -> float:
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.allclose(flat, flat[0], rtol=1e-12, atol=1e-12):
        raise ConfigError(f"{what} varies across neurons ({flat.min():g} .. {flat.max():g}) but "
                          "Lava's LIF has one value per layer", where=where,
                          hint="give every neuron of the layer the same value")
    return float(flat[0])


def _decay_register(decay: float, name: str, where: str) -> int:
    """``round((1 - decay) * 4096)``: slayer's iDecay / vDecay for a per-step decay factor."""
    register = int(np.round((1.0 - decay) * DECAY_UNITY))
    if not 0 <= register <= DECAY_UNITY:
        raise ConfigError(f"{name}={decay:g} gives a decay register {register} outside 0..4096",
                          where=where)
    return register


def _to_units(values: np.ndarray, unit: float) -> np.ndarray:
    return np.round(np.asarray(values, dtype=np.float64) / unit).astype(np.int64)


READOUT_VTH = 1 << 17   # netx's default integrator: vThMant = 1 << 18 - 1, i.e. 1 << 17


def at_or_above_problem(alpha: float, beta: float) -> str | None:
    """Why Lava cannot fire a neuron with decays ``alpha``, ``beta`` at ``v >= thr`` exactly
    (``fires_at_equal``), or None when it can (see :func:`at_or_above_vth`)."""
    problems = [f"its {what} decays by {name} = {value:g} per step, so Lava's truncated "
                f"{what} products leave the threshold's grid"
                for what, name, value in (("current", "alpha", alpha), ("membrane", "beta", beta))
                if round((1.0 - value) * DECAY_UNITY) not in (0, DECAY_UNITY)]
    if not problems:
        return None
    return ("fires at v >= threshold, which Lava's v > vth << 6 holds exactly only while v "
            "stays on the threshold register's grid (multiples of 1 << 6): " + "; ".join(problems))


def at_or_above_vth(vth: int, alpha: float, beta: float) -> tuple[int | None, str]:
    """Lava's threshold mantissa for a neuron that fires at ``v >= thr`` (``fires_at_equal``),
    or ``(None, why not)``.

    Lava fires at ``v > vth << 6``. Every term it adds to ``v`` is a multiple of ``1 << 6``: the
    synaptic input (``a << 6``, ``a`` an integer), the bias (``bias_mant << 6``), the reset (0)
    and the wrap of ``u`` (``2**24``); a decay keeps that grid only when its factor is 0 or 4096
    (``alpha`` and ``beta`` in {0, 1}: an IF, a LIF with ``beta = 0``, a CubaLIF that never
    forgets its current). On that grid ``v >= vth << 6`` is ``v > (vth - 1) << 6`` exactly, so
    the register holds ``vth - 1`` (``vth >= 1``: Lava's register is unsigned). One case leaves
    the grid all the same: ``v`` clipped at Lava's lower bound ``-(2**23 - 1)`` (the float model
    has no bound there either); the upper clip spikes and resets at once.
    """
    problem = at_or_above_problem(alpha, beta)
    if problem is not None:
        return None, problem
    if vth < 1:
        return None, (f"fires at v >= threshold with a threshold of {vth} units: Lava would "
                      "need vth - 1 < 0 (its threshold register is unsigned)")
    return vth - 1, ""


def _neuron_registers(name: str, node: Neuron, unit: float) -> dict[str, Any]:
    """du, dv, vth, bias of a Lava LIF for an IR neuron; raises for what Lava cannot express."""
    where = f"node '{name}'"
    if isinstance(node, (CubaLI, Integrator)):
        return _readout_registers(name, node, unit)
    if not isinstance(node, (LIF, CubaLIF, IF)):
        raise ConfigError(
            f"is a {node.kind}: Lava's fixed-point core has spiking CUBA LIF neurons and netx's "
            "read-out integrator only", where=where,
            hint="end the network with a spiking layer (decode spike counts) or with a CubaLI "
                 "of alpha = 1, beta = 0 (netx's dense layer without neuron group)")
    if node.reset != "zero":
        raise ConfigError(f"uses {node.reset!r} reset; Lava's LIF resets v to 0", where=where,
                          hint="re-import with reset='zero' (--reset zero)")
    variant = {k: v for k, v in node.spike_variant().items() if k != "fires_at_equal"}
    if variant:
        raise ConfigError(f"fires by a rule Lava's fixed-point LIF does not have ("
                          f"{spike_variant_text(variant)}); Lava sends one spike per step when "
                          "v > vth and resets v to 0 in that step, with no lower clamp",
                          where=where)
    if np.any(node.v_reset != 0):
        raise ConfigError("has a non-zero v_reset; Lava's LIF resets v to 0", where=where)
    if np.any(getattr(node, "v_leak", np.zeros(1)) != 0):
        raise ConfigError("has a non-zero v_leak; Lava's LIF decays toward 0", where=where,
                          hint="fold (1 - beta) * v_leak into the bias")
    _check_gain(node, where)
    alpha = _uniform(node.alpha, "alpha", where) if isinstance(node, CubaLIF) else 0.0
    beta = _uniform(node.beta, "beta", where) if isinstance(node, (LIF, CubaLIF)) else 1.0
    threshold = _uniform(node.v_threshold, "v_threshold", where)
    if threshold < 0:
        raise ConfigError(f"has a negative threshold {threshold:g}; Lava's vth is unsigned",
                          where=where)
    vth = int(np.round(threshold / unit))
    if node.fires_at_equal:   # v >= thr as v > thr - 1 unit, where that is exact
        vth, problem = at_or_above_vth(vth, alpha, beta)  # type: ignore[assignment]
        if vth is None:
            raise ConfigError(problem, where=where)
    return {
        "du": _decay_register(alpha, "alpha", where) - 1,   # Lava adds ds_offset = 1 back
        "dv": _decay_register(beta, "beta", where),
        "vth": vth,
        "bias_mant": _to_units(node.bias, unit),
        "bias_exp": BIAS_EXP,
    }


def _check_gain(node: Neuron, where: str) -> None:
    gain = node.gain * (node.gain_syn if isinstance(node, (CubaLIF, CubaLI)) else 1.0)
    if not np.allclose(gain, 1.0, rtol=1e-9, atol=0.0):
        raise ConfigError(f"has input gain {float(np.max(gain)):g}; Lava adds the synaptic "
                          "input with gain 1", where=where,
                          hint="fold the gain into the weights before quantizing them")


def _readout_registers(name: str, node: CubaLI | Integrator, unit: float) -> dict[str, Any]:
    """netx's non-spiking read-out: ``u`` sums the input, ``v = u + bias``, never spikes."""
    where = f"node '{name}'"
    _check_gain(node, where)
    if isinstance(node, Integrator):
        if np.any(node.bias != 0):
            raise ConfigError("is an Integrator with bias; netx's read-out adds its bias to v, "
                              "not to the running sum", where=where)
    else:
        alpha = _uniform(node.alpha, "alpha", where)
        beta = _uniform(node.beta, "beta", where)
        if np.any(node.v_leak != 0) or alpha != 1.0 or beta != 0.0:
            raise ConfigError(
                f"is a CubaLI with alpha={alpha:g}, beta={beta:g}: Lava runs only netx's "
                "read-out integrator (alpha = 1, beta = 0, no v_leak) as a non-spiking layer",
                where=where, hint="use a spiking layer, or that integrator, as the read-out")
    return {"du": -1, "dv": DECAY_UNITY, "vth": READOUT_VTH,
            "bias_mant": _to_units(node.bias, unit), "bias_exp": BIAS_EXP, "spiking": False}


def _integer_weights(name: str, node: Synapse) -> tuple[np.ndarray, int, float]:
    """(mantissa, exponent, unit) of a synapse on an ``int_exp`` grid."""
    enc = node.encoding
    if enc is None or enc.grid != "int_exp":
        grid = "float weights" if enc is None else f"a {enc.grid!r} grid"
        raise ConfigError(f"has {grid}; the integer core needs Loihi's integer mantissa times "
                          "a per-layer power of two (an 'int_exp' WeightEncoding)",
                          where=f"node '{name}'",
                          hint="quantize it for a Loihi target first (compress with --bits)")
    assert enc.exponent is not None and enc.unit is not None
    return np.asarray(enc.mantissa, dtype=np.int64), int(enc.exponent), float(enc.unit)


def _common_unit(graph: Graph) -> float:
    units = {float(node.encoding.unit) for node in graph.nodes.values()
             if isinstance(node, Synapse) and node.encoding is not None
             and node.encoding.unit is not None}
    if len(units) != 1:
        found = ", ".join(f"{u:g}" for u in sorted(units)) or "none"
        raise ConfigError(f"an input neuron layer needs the unit of its input; the synapse "
                          f"layers have {found}", where="to_fixed_point(input_unit=)",
                          hint="pass input_unit=1/64 for lava-dl's convention")
    return units.pop()


class _Chain:
    """Walks a graph as netx's sequential chain of blocks."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def recurrent_synapse(self, neuron: str) -> str | None:
        """A synapse that reads ``neuron`` and feeds only ``neuron`` (Lava's RecurrentDense)."""
        for succ in self.graph.successors(neuron):
            node = self.graph.nodes[succ]
            if isinstance(node, Synapse) and self.graph.successors(succ) == (neuron,) \
                    and self.graph.predecessors(succ) == (neuron,):
                return succ
        return None

    def forward(self, name: str) -> str:
        """The single node ``name`` feeds (besides its recurrent synapse)."""
        graph = self.graph
        rec = self.recurrent_synapse(name) if isinstance(graph.nodes[name], Neuron) else None
        succ = [s for s in graph.successors(name) if s != rec]
        if len(succ) != 1:
            raise ConfigError(
                f"feeds {len(succ)} nodes ({', '.join(succ) or 'none'}); the integer core runs "
                "netx's sequential chains of layers only", where=f"node '{name}'",
                hint="netx has no branches, merges or intermediate outputs")
        return succ[0]


def to_fixed_point(graph: Graph, *, input_unit: float | None = None) -> FixedPointNetwork:
    """The integers Lava would run for ``graph`` (pure: ``graph`` is not modified).

    The graph must be a chain ``Input -> [Scale -> neuron] -> ([MaxPool2d] -> [Flatten] ->
    synapse -> neuron)* -> Output`` (a max pool of the previous layer's spikes runs as their OR,
    exactly; a max pool of synaptic currents, between a synapse and its neuron, is refused)
    where every synapse is an ``Affine`` or ``Conv2d`` on an ``int_exp`` grid and every neuron a CUBA-expressible ``LIF`` / ``CubaLIF`` / ``IF`` (zero reset to 0, no leak
    potential, unit gain, one decay and threshold per layer). A neuron may also have one
    recurrent ``Affine`` from itself to itself (netx's ``dense_rec``).

    Args:
        graph: the network.
        input_unit: float value of one integer input step for a first neuron layer fed by the
            Input directly (netx's input block); default: the unit shared by the synapses.

    Returns:
        The :class:`FixedPointNetwork`.

    Raises:
        ConfigError: float weights, neuron features Lava cannot express, or a topology netx
            cannot express; the message names the node and what to do.
    """
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ConfigError(f"has {len(graph.inputs)} Inputs and {len(graph.outputs)} Outputs; the "
                          "integer core runs one chain from one Input to one Output",
                          where="graph")
    chain = _Chain(graph)
    nodes = graph.nodes
    input_name = graph.inputs[0]
    current = input_name
    current_shape = tuple(nodes[input_name].output_shape)
    layers: list[FixedPointLayer] = []
    while True:
        nxt = chain.forward(current)
        passed: list[str] = []
        while isinstance(nodes[nxt], (Flatten, Scale, MaxPool2d)):
            passed.append(nxt)
            nxt = chain.forward(nxt)
        node = nodes[nxt]
        if isinstance(node, Output):
            if not layers or passed:
                raise ConfigError("is fed by something other than a neuron layer; the core's "
                                  "output is the last layer's spikes", where=f"node '{nxt}'")
            break
        if isinstance(node, Synapse):
            layer = _synapse_layer(graph, chain, current_shape, passed, nxt)
        elif isinstance(node, Neuron):
            if layers:
                raise ConfigError("follows a neuron layer without a synapse", where=f"node '{nxt}'")
            unit = _common_unit(graph) if input_unit is None else float(input_unit)
            layer = _input_layer(graph, current_shape, passed, nxt, unit)
        else:
            raise ConfigError(f"is a {node.kind}, which Lava's netx chain cannot run",
                              where=f"node '{nxt}'",
                              hint="netx has dense, conv, flatten and recurrent dense layers only"
                                   "; fold pooling and scaling into the weights")
        layers.append(layer)
        current, current_shape = layer.name, layer.shape
    for layer in layers[:-1]:
        if not layer.spiking:
            raise ConfigError("is a non-spiking read-out but feeds another layer; Lava's "
                              "synapses take spikes", where=f"node '{layer.name}'")
    return FixedPointNetwork(tuple(layers), input_name, tuple(nodes[input_name].output_shape),
                             graph.outputs[0], graph.dt, {"source": graph.metadata.get("source")})


def _input_layer(graph: Graph, source_shape: tuple[int, ...], passed: Sequence[str], name: str,
                 unit: float) -> FixedPointLayer:
    node = graph.nodes[name]
    assert isinstance(node, Neuron)
    scale = np.ones(node.shape)
    for p in passed:
        between = graph.nodes[p]
        if isinstance(between, Scale):
            scale = scale * np.broadcast_to(between.scale, node.shape)
    regs = _neuron_registers(name, node, unit)
    return FixedPointLayer(name=name, kind="input", synapse=None, shape=tuple(node.shape),
                           source_shape=source_shape, synapse_input_shape=tuple(node.shape),
                           weight=None, weight_exp=0, unit=unit, input_scale=scale / unit,
                           **regs)


def _synapse_layer(graph: Graph, chain: _Chain, source_shape: tuple[int, ...],
                   passed: Sequence[str], name: str) -> FixedPointLayer:
    nodes = graph.nodes
    synapse = nodes[name]
    assert isinstance(synapse, Synapse)
    for p in passed:
        if isinstance(nodes[p], Scale):
            raise ConfigError("scales spikes before a synapse; Lava's synapses take spikes",
                              where=f"node '{p}'", hint="fold the scale into the weights")
    max_pool, pool_name = _max_pool(graph, passed)
    if not isinstance(synapse, (Affine, Conv2d)):
        raise ConfigError(f"is a {synapse.kind}; Lava has Dense and 2-D Conv synapses only",
                          where=f"node '{name}'", hint="express a 1-D convolution as a Conv2d "
                                                       "with height 1")
    neuron_name = chain.forward(name)
    neuron = nodes[neuron_name]
    if isinstance(neuron, MaxPool2d):
        raise ConfigError(f"feeds the max pool '{neuron_name}' of its synaptic currents; Lava's "
                          "synapse feeds its neuron directly and no Lava process takes a max "
                          "of currents (a max pool of spikes, after the neuron, runs)",
                          where=f"node '{name}'")
    if not isinstance(neuron, Neuron):
        raise ConfigError(f"feeds a {neuron.kind}; a Lava synapse feeds its neuron directly",
                          where=f"node '{name}'")
    mantissa, exponent, unit = _integer_weights(name, synapse)
    rec = chain.recurrent_synapse(neuron_name)
    expected = {name} | ({rec} if rec else set())
    if set(graph.predecessors(neuron_name)) != expected:
        extra = sorted(set(graph.predecessors(neuron_name)) - expected)
        raise ConfigError(f"also receives {', '.join(extra)}; a Lava neuron has one synapse "
                          "(plus an optional recurrent dense one)", where=f"node '{neuron_name}'")
    regs = _neuron_registers(neuron_name, neuron, unit)
    for syn_name in sorted(expected):
        regs["bias_mant"] = regs["bias_mant"] + _synapse_bias(
            syn_name, nodes[syn_name], tuple(neuron.shape), regs["du"], unit)
    common = dict(name=neuron_name, synapse=name, shape=tuple(neuron.shape),
                  source_shape=source_shape, synapse_input_shape=tuple(synapse.input_shape),
                  unit=unit, max_pool=max_pool, max_pool_node=pool_name, **regs)
    if isinstance(synapse, Conv2d):
        if exponent < 0:
            raise ConfigError(f"has weight exponent {exponent}; Lava's Conv has no weight "
                              "exponent and netx stores integer conv weights",
                              where=f"node '{name}'",
                              hint="re-encode the layer with an exponent >= 0")
        layer = FixedPointLayer(kind="conv2d", weight=mantissa << exponent, weight_exp=0,
                                stride=synapse.stride, padding=synapse.padding,
                                dilation=synapse.dilation, groups=synapse.groups, **common)
    else:
        layer = FixedPointLayer(kind="dense", weight=mantissa, weight_exp=exponent, **common)
    if rec is not None:
        rec_node = nodes[rec]
        if not isinstance(rec_node, Affine):
            raise ConfigError(f"is a recurrent {rec_node.kind}; Lava's recurrent synapse is dense",
                              where=f"node '{rec}'")
        rec_mantissa, rec_exponent, rec_unit = _integer_weights(rec, rec_node)
        if not np.isclose(rec_unit, unit, rtol=1e-12, atol=0.0):
            raise ConfigError(f"has unit {rec_unit:g} but '{name}' feeding the same neuron has "
                              f"{unit:g}", where=f"node '{rec}'")
        layer = replace(layer, recurrent=rec, recurrent_weight=rec_mantissa,
                        recurrent_weight_exp=rec_exponent)
    return layer


def _max_pool(graph: Graph, passed: Sequence[str]
              ) -> tuple[tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None,
                         str | None]:
    """The one MaxPool2d on the spikes before a synapse (before any Flatten), if any."""
    pools = [p for p in passed if isinstance(graph.nodes[p], MaxPool2d)]
    if not pools:
        return None, None
    if len(pools) > 1 or passed[0] != pools[0]:
        raise ConfigError("the integer core takes one max pool, right after a neuron layer "
                          "(before any Flatten)", where=f"node '{pools[-1]}'")
    node = graph.nodes[pools[0]]
    assert isinstance(node, MaxPool2d) and node.stride is not None
    return (node.kernel_size, node.stride, node.padding), pools[0]


def _synapse_bias(name: str, synapse: Node, shape: tuple[int, ...], du: int,
                  unit: float) -> np.ndarray:
    """A synapse bias as neuron bias mantissas (netx has no synapse bias).

    Exact when the neuron's current has no memory (``iDecay = 4096``): the bias then reaches
    ``v`` once per step, like a neuron bias.
    """
    bias = getattr(synapse, "bias", None)
    if bias is None or not np.any(bias != 0):
        return np.zeros(shape, dtype=np.int64)
    if du != DECAY_UNITY - 1:
        raise ConfigError("has a bias but its neuron keeps synaptic current (alpha > 0); Lava "
                          "has a neuron bias only", where=f"node '{name}'",
                          hint="fold the bias into the neuron's or set alpha = 0")
    per_channel = np.asarray(bias, dtype=np.float64).reshape((-1,) + (1,) * (len(shape) - 1))
    return _to_units(np.broadcast_to(per_channel, shape), unit)


# --------------------------------------------------------------------------- LIF registers


class LifState(NamedTuple):
    """Lava LIF state: current ``u`` and voltage ``v``, 24-bit integers (``[B, *shape]``).

    Held as int64, or as float64 by the core's fast path (every value is an integer below
    2**36 in magnitude, exact in float64, and every operation below is exact on them).
    """

    u: np.ndarray
    v: np.ndarray


class LifParameters(NamedTuple):
    """Per-layer registers; ``bias`` is the effective ``bias_mant << bias_exp`` per neuron."""

    du: int
    dv: int
    vth: int
    bias: np.ndarray


def lif_parameters(layer: FixedPointLayer, dtype: Any = np.int64) -> LifParameters:
    """The step function's parameters of ``layer`` (``bias`` as ``dtype``)."""
    mant = np.asarray(layer.bias_mant, dtype=np.int64)
    bias = mant << layer.bias_exp if layer.bias_exp >= 0 else mant >> -layer.bias_exp
    return LifParameters(int(layer.du), int(layer.dv), int(layer.vth), bias.astype(dtype))


# --------------------------------------------------------------------------- the block loop


@dataclass(frozen=True)
class IntSimResult:
    """What :func:`simulate_integer` returns; sequences are ``[T, B, *shape]`` torch tensors.

    Attributes:
        outputs: Output node name -> the last layer's spikes (int8), or its ``v`` (int64) when
            that layer is netx's non-spiking read-out integrator.
        recorded: record name -> spikes of a neuron layer (int8), the input as the core took it,
            a synapse's integer output ``a[t]`` as its neuron received it (int64), or a
            neuron's ``":u"`` / ``":v"`` state after each step (int64).
        final: neuron name -> its :class:`LifState` after the last step (``[B, *shape]``).
    """

    outputs: Mapping[str, Tensor]
    recorded: Mapping[str, Tensor]
    final: Mapping[str, LifState]


def _parse_record(net: FixedPointNetwork,
                  record: Iterable[str] | str) -> dict[str, tuple[str, str]]:
    """record name -> (layer name or input, what): what in spikes|input|a|u|v."""
    if isinstance(record, str):
        record = [layer.name for layer in net.layers] + [net.input] if record == "all" \
            else [record]
    parsed: dict[str, tuple[str, str]] = {}
    for key in record:
        if key == net.input:
            parsed[key] = (key, "input")
            continue
        base, _, what = key.rpartition(":")
        if not base:
            base, what = key, ""
        matches = [layer for layer in net.layers if base in (layer.name, layer.synapse)]
        if not matches or (what and (what not in ("u", "v") or base != matches[0].name)):
            raise ConfigError(f"'{key}' is not a neuron layer, a synapse, the Input, or "
                              "'<neuron>:u' / '<neuron>:v' of the fixed-point network",
                              where="simulate_integer(record=)")
        layer = matches[0]
        parsed[key] = (layer.name, what or ("spikes" if base == layer.name else "a"))
    return parsed


def _input_array(net: FixedPointNetwork, spikes: Any) -> np.ndarray:
    x = spikes.detach().cpu().numpy() if isinstance(spikes, Tensor) else np.asarray(spikes)
    shape = tuple(net.input_shape)
    if x.ndim != len(shape) + 2 or tuple(x.shape[2:]) != shape or x.shape[0] < 1 \
            or x.shape[1] < 1:
        raise DataError(f"expected [T, B, {', '.join(map(str, shape))}] with T, B >= 1, got "
                        f"shape {tuple(x.shape)}", where=f"Input '{net.input}'")
    if not (x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer)
            or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"has dtype {x.dtype}; expected spikes or integer counts",
                        where=f"Input '{net.input}'")
    return x


def _integers(block: np.ndarray, where: str) -> np.ndarray:
    """An input block as int64, refusing non-integer values."""
    if np.issubdtype(block.dtype, np.floating) and not np.all(block == np.round(block)):
        raise DataError("holds non-integer values; the integer core takes spikes or "
                        "integer event counts", where=where)
    return block.astype(np.int64)


def reset_due(t: int, index: int, interval: int | None, offset: int) -> bool:
    return interval is not None and (t - offset - index) % interval == 0


def check_blocks(chunk: int, reset_interval: int | None) -> None:
    """The block length and reset interval of a run: both at least one step."""
    if chunk < 1:
        raise ConfigError(f"chunk must be >= 1, got {chunk}", where="simulate_integer(chunk=)")
    if reset_interval is not None and reset_interval < 1:
        raise ConfigError(f"reset_interval must be >= 1, got {reset_interval}",
                          where="simulate_integer(reset_interval=)")


def run_blocks(net: FixedPointNetwork, spikes: Tensor | np.ndarray, record: Iterable[str] | str,
               graded_input: bool, chunk: int, make_run: Any, to_core: Any, to_host: Any
               ) -> tuple[list[Any], list[Any], dict[str, list[Any]], int, int]:
    """The block loop both cores share (:mod:`.int_core` and :mod:`.int_core_torch`).

    ``make_run(layer, index, batch, keys, source_max)`` builds a layer's run (its ``block(x,
    t0)`` steps one block); ``to_core`` takes a host input block to the core's arrays,
    ``to_host`` a core array to what the result holds. Time-major: every layer runs one block
    of steps before the next block starts, so only one block of every layer's values is alive
    (the state carries over). Returns the runs, the output blocks, the recorded blocks (the
    input's as host arrays), ``T`` and ``B``.
    """
    wanted = _parse_record(net, record)
    x = _input_array(net, spikes)
    steps, batch = int(x.shape[0]), int(x.shape[1])
    where = f"Input '{net.input}'"
    values = net.layers[0].kind == "input" or graded_input
    source_max = int(max(abs(x.max(initial=0)), abs(x.min(initial=0)))) if values else 1
    recorded: dict[str, list[Any]] = {key: [] for key in wanted}
    outputs: list[Any] = []
    runs = []
    for index, layer in enumerate(net.layers):
        keys = {what: key for key, (name, what) in wanted.items() if name == layer.name}
        runs.append(make_run(layer, index, batch, keys, source_max))
        source_max = 1
    for t0 in range(0, steps, chunk):
        host = _input_block(x[t0:min(steps, t0 + chunk)], values, where)
        for key, (_, what) in wanted.items():
            if what == "input":
                recorded[key].append(host)
        block = to_core(host)
        traces: dict[str, Any] = {}
        for run in runs:
            block, traces = run.block(block, t0)
            for what, key in run.keys.items():
                if key:
                    recorded[key].append(to_host(block if what == "spikes" else traces[what]))
        # a read-out integrator outputs its v (like the IR's CubaLI), a spiking layer spikes
        outputs.append(to_host(block if net.layers[-1].spiking else traces["v"]))
    return runs, outputs, recorded, steps, batch


def _input_block(x: np.ndarray, values: bool, where: str) -> np.ndarray:
    """One block of the input as the core takes it: integer values (an input layer, or a
    graded first synapse) or binary spikes (any non-zero value is one spike)."""
    if values:
        return _integers(x, where)
    if x.dtype.kind == "f" and not np.all(x == np.round(x)):
        raise DataError("holds non-integer values; the integer core takes spikes or "
                        "integer event counts", where=where)
    return x.view(np.int8) if x.dtype == np.bool_ else (x != 0).view(np.int8)


__all__ = [
    "ACT_SHIFT", "BIAS_EXP", "CONV_BITS", "DECAY_SHIFT", "DECAY_UNITY", "DEVICE_WHERE",
    "THREADS_WHERE", "UV_BITS", "UV_MAX", "VTH_SHIFT", "FixedPointLayer", "FixedPointNetwork",
    "IntSimResult", "LifParameters", "LifState", "check_blocks", "lif_parameters", "reset_due",
    "run_blocks", "to_fixed_point",
]
