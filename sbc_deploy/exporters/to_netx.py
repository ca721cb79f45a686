r"""IR -> lava-dl netx HDF5 (the format ``lava.lib.dl.netx.hdf5.Network`` loads).

netx holds a strictly sequential chain of layers (``/layer/0 .. n-1``): ``input`` (a shape, or
an input block with neurons), ``dense``, ``conv``, ``flatten`` and ``dense_rec`` (a dense layer
with a recurrent ``weight_rec`` onto its own neurons). Every synapse layer ends in Lava's
fixed-point CUBA LIF neuron (hard reset to 0)::

    u[t] = u[t-1] * (4096 - iDecay) / 4096 + a[t]              a: integer synaptic input
    v[t] = v[t-1] * (4096 - vDecay) / 4096 + u[t] + bias
    s[t] = v[t] > vThMant;   v[t] = 0 where s[t]

(each term carries Lava's ``<< 6``; ecosystem.md 2.4). The IR's CubaLIF is the same model in
float: ``i = alpha*i + gain_syn*x``, ``v = beta*v + (1-beta)*v_leak + gain*i + bias``. Integers:

    integer weight  = W * gain_syn * gain / unit          (must be whole numbers)
    vThMant         = round(v_threshold / unit)       (minus 1 for fires_at_equal: below)
    bias            = round((bias + (1 - beta) * v_leak) / unit)    (v_leak folds into the bias)
    iDecay          = round((1 - alpha) * 4096)           (4096 for a LIF/IF: no current memory)
    vDecay          = round((1 - beta) * 4096)            (0 for an IF)

``unit`` is the value of one integer step of the neuron's state (recorded per layer in
:class:`NetxLayer`): the ``unit`` of the synapse's
``int_exp`` :class:`~sbc_deploy.ir.WeightEncoding` (whose integer weight is ``mantissa *
2**exponent``); else the ``unit`` argument; else 1/64 (lava-dl's convention, float 1.0 = 64) for
a graph imported from netx. An input block has no synapse: its unit is the argument, else the
unit all ``int_exp`` synapses share (the integer core's rule), else 1/64. Graphs imported by
:func:`~sbc_deploy.frontends.from_netx.from_netx` carry the file's integers in
``metadata["netx"]``: this exporter recomputes every integer from the IR values (so compressed
weights are written as they are) and uses the metadata only for what the IR does not hold (the
neuron ``type`` and Lava-ignored extras such as ``refDelay``, whether an input layer was implicit,
a dense layer without neuron group, dataset shapes), so an uncompressed netx network is
re-exported bit for bit.

netx stores no weight exponent: its reader derives one per dense layer from integer weights in
[-256, 254] (``optimize_weight_bits``). An ``int_exp`` layer whose ``mantissa * 2**exponent``
leaves that range (a compressed layer with a large exponent) is written in the unit
``unit * 2**k`` (``k`` > 0, the smallest that fits while the weights stay whole): weights
exactly ``mantissa * 2**(exponent - k)``, threshold and bias rounded to the coarser unit
(logged; a threshold or bias that moves by more than 1 % is a warning). Dyadic fractions (an
AvgPool2d's 1/4) move the unit down the same way (``k`` < 0), exactly.

Rewrites into what netx can express (each exact in real arithmetic):

- ``Scale`` before a synapse (on its input) or between a synapse and its neuron folds into the
  weights; ``gain_syn * gain`` folds into the weights.
- ``SumPool2d`` / ``AvgPool2d`` (zero padding only) next to a ``Conv2d`` folds into one strided
  convolution with fixed weights: a pool after the conv (``Conv2d -> pool -> neuron``) gives the
  kernel ``W' = W (*) box`` with stride ``S * s_pool``; a pool before it (``neuron -> pool ->
  Conv2d``) gives stride ``S * s_pool`` and the kernel spread over the pool windows (with conv
  padding only when the windows tile the input exactly). A pool before a dense layer (through
  ``Flatten``) folds into its weight matrix. An AvgPool2d is a SumPool2d times ``1/(kH*kW)``,
  which fits when ``kH*kW`` is a power of two (see the unit rule above).
- A synapse bias becomes neuron bias when the neuron has no current memory (iDecay = 4096).
- ``Delay`` (whole steps, at most 62) on the input or output side of a dense synapse becomes
  netx's per-synapse ``delay`` (added to Lava's one step of synaptic delay).
- A trailing non-spiking integrator (CubaLI with alpha = 1 and beta = 0, or an Integrator; no
  bias) is a dense layer without neuron group: netx's default non-leaky integrator.

Refused with :class:`~sbc_deploy.errors.ExportError` (naming the node and the reason): branches,
merges and skip connections, recurrence other than a dense layer onto its own neurons, pool
padding, non-zero ``v_reset``, ``reset="subtract"``, per-neuron decays or thresholds, conv bias
varying within a channel, non-integer weights (no power-of-two unit makes them whole and keeps
them in netx's [-256, 254]; [-256, 255] for layers of one sign), an all-zero dense matrix (netx's
``optimize_weight_bits`` divides by its maximum), thresholds above 131071 (17 bits), biases
outside 13 bits, delays above 62, Conv1d, Threshold nodes and non-spiking hidden neurons.

A neuron that fires at ``v >= thr`` (``fires_at_equal``: spikingjelly, sinabs, rockpool) is
written with ``vThMant = round(v_threshold / unit) - 1``: on the integer grid ``v >= thr`` is
``v > thr - 1 unit`` exactly, as long as the membrane stays on that grid, which holds when its
decays are 0 or 1 (an IF; :func:`sbc_deploy.sim.fixed_point.at_or_above_vth` gives the
argument). A decaying membrane (Lava truncates ``v * (4096 - vDecay) >> 12``) or a threshold
below one unit is refused, saying so. Other spike variants (several spikes per step, a delayed
reset, a lower clamp) have no netx field and are refused.

Conv kernels are written in PyTorch correlation order ``(C_out, C_in/groups, kH, kW)`` (netx
flips them itself); stride, padding and dilation as (H, W) pairs; shapes as (C, H, W).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from sbc_deploy.errors import ExportError
from sbc_deploy.fileio import check_writable, write_atomic
from sbc_deploy.ir import (
    Affine,
    AvgPool2d,
    Conv2d,
    CubaLI,
    Delay,
    Flatten,
    Graph,
    Integrator,
    Neuron,
    Node,
    Output,
    Scale,
    SumPool2d,
    Synapse,
    conv_output_length,
    spike_variant_text,
)
from sbc_deploy.ir.transforms import lower_adaptive_pools
from sbc_deploy.sim.fixed_point import at_or_above_vth

log = logging.getLogger(__name__)

LAVA_DL_UNIT = 1.0 / 64  # lava-dl: one integer weight/threshold step is 1/64 of a float unit
DECAY_UNIT = 4096  # 12-bit decays
MAX_DELAY = 62  # netx DelayDense max_delay
MAX_V_TH_MANT = 2**17 - 1  # Lava LIF vth: 17-bit unsigned
BIAS_RANGE = (-(2**12), 2**12 - 1)  # Lava LIF bias_mant: 13-bit signed
WEIGHT_RANGE = (-256, 255)  # 8-bit mantissa plus sign (slayer, netx optimize_weight_bits)
MIXED_SIGN_MAX = 254  # netx clips mixed-sign weights above 254
# how far a value (in integer units) may sit from a whole number and still be one: float noise
_TOLERANCE_ABS, _TOLERANCE_REL = 1e-6, 1e-9
_STANDARD_NEURON_KEYS = ("type", "iDecay", "vDecay", "vThMant")


# --------------------------------------------------------------------------- plan values


@dataclass(frozen=True)
class NetxNeuron:
    """One layer's CUBA neuron group, in netx integers."""

    i_decay: int
    v_decay: int
    v_th_mant: int
    type: str = "CUBA"
    extras: Mapping[str, Any] = field(default_factory=lambda: {"refDelay": 1,
                                                                "gradedSpike": False})


@dataclass(frozen=True, eq=False)
class NetxLayer:
    """One ``/layer/<i>`` group: integers and shapes exactly as they will be written.

    Attributes:
        kind: ``input``, ``dense``, ``dense_rec``, ``conv`` or ``flatten``.
        shape: the layer's output shape, (C, H, W) or (N,).
        nodes: the IR nodes this layer was made from (for messages).
        weight: integer weights, (out, in) or (C_out, C_in/groups, kH, kW); for an input block
            the transform weight (one value).
        weight_rec: integer recurrent weights of a ``dense_rec`` layer.
        bias: integer bias per neuron (dense), per channel (conv) or one value (input block).
        neuron: the neuron group; ``None`` for a dense layer with netx's default integrator.
        delay: integer delays (out, in) of a dense layer, or ``None``.
        conv: ``stride``, ``padding``, ``dilation`` (pairs) and ``groups`` of a conv layer.
        weight_ndim: 4 or 5 (SLAYER appends a unit axis to conv kernels).
        float_dtype: dtype of the weight and bias datasets (netx stores integers as floats).
        unit: float value of one integer step of this layer's weights, threshold and bias.
    """

    kind: str
    shape: tuple[int, ...]
    nodes: tuple[str, ...]
    weight: np.ndarray | None = None
    weight_rec: np.ndarray | None = None
    bias: np.ndarray | None = None
    neuron: NetxNeuron | None = None
    delay: np.ndarray | None = None
    conv: Mapping[str, Any] | None = None
    weight_ndim: int = 4
    float_dtype: str = "float32"
    unit: float | None = None


# --------------------------------------------------------------------------- public API


def to_netx(graph: Graph, path: str | Path, *, unit: float | None = None) -> Path:
    """Write ``graph`` as a lava-dl netx HDF5 file, atomically.

    Args:
        graph: a sequential IR graph (a ``dense_rec`` recurrence is allowed).
        path: the output file (``.net`` by lava-dl's convention); its folder must exist.
        unit: value of one integer state step for synapses without an ``int_exp`` encoding
            and for an input block (default: 1/64 for those, lava-dl's convention).

    Returns:
        ``path``.

    Raises:
        ExportError: ``path`` cannot be written (checked before any work; no partial file is
            left), or the graph holds something netx cannot express (the error names the node).
    """
    path = check_writable(path)
    layers = plan_netx(graph, unit=unit)
    simulation = _simulation(graph)
    write_atomic(path, lambda tmp: _write(tmp, layers, simulation))
    log.debug("wrote %d netx layers to %s", len(layers), path)
    return path


def plan_netx(graph: Graph, *, unit: float | None = None) -> tuple[NetxLayer, ...]:
    """The netx layers ``graph`` becomes (pure: no I/O); see the module docstring.

    Raises:
        ExportError: the graph holds something netx cannot express.
    """
    if unit is not None and not (isinstance(unit, (int, float)) and math.isfinite(unit)
                                 and unit > 0):
        raise ExportError(f"unit must be a positive number, got {unit!r}", where="argument unit")
    graph = lower_adaptive_pools(graph)   # a dividing adaptive pool is an AvgPool2d
    _refuse_operations(graph)
    chain, recurrent = _chain(graph)
    return tuple(_Planner(graph, chain, recurrent, unit).run())


# What netx has no layer for, by graph operation (issue 18); the reason names what is missing.
_NO_NETX_LAYER = {
    "MaxPool2d": "netx has no max-pool layer (lava-dl's netx reader raises NotImplementedError "
                 "for pool blocks); the integer core runs it as the OR of spikes, the chip "
                 "cannot",
    "AdaptiveAvgPool2d": "an adaptive pool with windows of unequal size has no netx layer",
    "ChannelAffine": "a per-channel affine map with no synapse before it to fold into has no "
                     "netx layer",
    "LayerNorm": "netx has no normalisation layer",
    "Identity": "a named sum of edges (a residual merge) has no place in netx's chain",
    "Reshape": "netx flattens only (a Flatten before a dense layer)",
    "Permute": "netx has no transpose layer",
    "Slice": "netx has no slice layer",
    "Reduce": "netx has no sum or mean over axes",
    "Product": "netx has no product of two activations (its synapses multiply by weights)",
    "MatMul": "netx has no product of two activations (its synapses multiply by weights)",
}


def _refuse_operations(graph: Graph) -> None:
    """Refuse the first graph operation netx cannot hold, naming it and why."""
    for name in graph.topological_order:
        why = _NO_NETX_LAYER.get(graph.nodes[name].kind)
        if why is not None:
            raise ExportError(f"netx cannot express a {graph.nodes[name].kind} node: {why}",
                              where=f"node '{name}'")


# --------------------------------------------------------------------------- structure


def _chain(graph: Graph) -> tuple[list[str], dict[str, str]]:
    """The single Input -> ... -> Output chain, and neuron -> its recurrent Affine."""
    if len(graph.inputs) != 1:
        raise ExportError(f"netx has one input; the graph has {len(graph.inputs)}: "
                          f"{', '.join(graph.inputs)}", where="graph")
    if len(graph.outputs) != 1:
        raise ExportError(f"netx has one output; the graph has {len(graph.outputs)}: "
                          f"{', '.join(graph.outputs)}", where="graph")
    recurrent: dict[str, str] = {}
    for name, node in graph.nodes.items():
        preds, succs = graph.predecessors(name), graph.successors(name)
        if (isinstance(node, Synapse) and len(preds) == 1 and preds == succs
                and isinstance(graph.nodes[preds[0]], Neuron)
                and ((preds[0], name) in graph.recurrent_edges
                     or (name, preds[0]) in graph.recurrent_edges)):
            if not isinstance(node, Affine):
                raise ExportError("a recurrent synapse must be dense (netx dense_rec)",
                                  where=f"node '{name}'")
            if preds[0] in recurrent:
                raise ExportError(f"has two recurrent synapses ({recurrent[preds[0]]}, {name}); "
                                  "netx dense_rec holds one", where=f"node '{preds[0]}'")
            recurrent[preds[0]] = name
    loops = set(recurrent.values())
    for src, dst in graph.recurrent_edges:
        if src not in loops and dst not in loops:
            raise ExportError(f"closes a cycle through '{dst}'; netx expresses recurrence only as "
                              "a dense layer onto its own neurons (dense_rec)",
                              where=f"edge {src} -> {dst}")
    chain = [graph.inputs[0]]
    while True:
        name = chain[-1]
        succs = [s for s in graph.successors(name) if s not in loops]
        if len(succs) > 1:
            raise ExportError(f"branches to {', '.join(succs)}; netx holds a single chain of "
                              "layers (no branches or skip connections)", where=f"node '{name}'")
        if not succs:
            break
        nxt = succs[0]
        preds = [p for p in graph.predecessors(nxt) if p not in loops]
        if len(preds) > 1:
            raise ExportError(f"receives edges from {', '.join(preds)} (a merge or skip "
                              "connection); netx holds a single chain of layers",
                              where=f"node '{nxt}'")
        chain.append(nxt)
    if not isinstance(graph.nodes[chain[-1]], Output):
        raise ExportError("the chain from the input ends here, not at an Output",
                          where=f"node '{chain[-1]}'")
    missing = [n for n in graph.nodes if n not in chain and n not in loops]
    if missing:
        raise ExportError(f"not on the chain from the input to the output: {', '.join(missing)}",
                          where="graph")
    return chain, recurrent


# --------------------------------------------------------------------------- planner


@dataclass
class _Pending:
    """Elementwise/linear nodes met since the last spike source, before the next synapse."""

    names: list[str] = field(default_factory=list)
    scale: np.ndarray | None = None  # per source element, source shape
    delay: np.ndarray | None = None  # per source element, source shape
    pool: SumPool2d | AvgPool2d | None = None
    pool_name: str | None = None
    flatten: str | None = None


class _Planner:
    def __init__(self, graph: Graph, chain: list[str], recurrent: dict[str, str],
                 unit: float | None) -> None:
        self.graph = graph
        self.chain = chain
        self.recurrent = recurrent
        self.unit = unit
        self.layers: list[NetxLayer] = []

    def node(self, name: str) -> Node:
        return self.graph.nodes[name]

    def run(self) -> list[NetxLayer]:
        names = self.chain
        pos = self._input(names, tuple(self.node(names[0]).output_shape))
        while True:
            pending = _Pending()
            shape = tuple(self.node(names[pos - 1]).output_shape)
            while pos < len(names) and not isinstance(self.node(names[pos]), (Synapse, Output)):
                self._pre(names[pos], pending, shape)
                shape = tuple(self.node(names[pos]).output_shape)
                pos += 1
            current = self.node(names[pos])
            if isinstance(current, Output):
                leftover = [n for n in pending.names if not isinstance(self.node(n), Flatten)]
                if leftover:
                    raise ExportError("netx outputs the last layer's spikes as they are; nothing "
                                      "may follow the last neuron", where=f"node '{leftover[0]}'")
                if not self.layers:
                    raise ExportError("the graph has no synapse or neuron layer", where="graph")
                return self.layers
            pos = self._synapse_layer(names, pos, pending)

    # ---------------------------------------------------------------- input layer

    def _input(self, names: list[str], shape: tuple[int, ...]) -> int:
        """Plan layer 0 when the file needs one; return the chain position after it."""
        input_name = names[0]
        meta = _netx_meta(self.node(input_name))
        pos = 1
        scales: list[str] = []
        while isinstance(self.node(names[pos]), Scale):
            scales.append(names[pos])
            pos += 1
        if isinstance(self.node(names[pos]), Neuron):
            return self._input_block(names, input_name, scales, pos)
        first = next((self.node(n) for n in names[1:] if isinstance(self.node(n), Synapse)), None)
        implicit = meta.get("type") == "implicit input" and isinstance(first, Affine)
        if not implicit:
            self.layers.append(NetxLayer("input", shape, (input_name,)))
        return 1

    def _input_block(self, names: list[str], input_name: str, scales: list[str],
                     pos: int) -> int:
        neuron_name = names[pos]
        neuron = self.node(neuron_name)
        assert isinstance(neuron, Neuron)
        where = f"node '{neuron_name}'"
        unit = self._input_unit()
        scale = np.ones(neuron.shape)
        for name in scales:
            scale = scale * np.asarray(self.node(name).scale)  # type: ignore[attr-defined]
        gain = _gain(neuron)
        transform = _uniform(scale * gain / unit, "input scale",
                             f"node '{(scales or [neuron_name])[0]}'",
                             "netx's input transform weight is one number")
        weight = _whole(np.array([transform]), "input transform weight", where)
        if self.recurrent.get(neuron_name):
            raise ExportError("an input block cannot be recurrent", where=where)
        nx_neuron, bias = self._neuron(neuron_name, neuron, unit, synapse_bias=None)
        if nx_neuron is None or bias is None:
            raise ExportError("a netx input block needs a spiking neuron", where=where)
        bias_value = _uniform(bias, "input bias", where, "netx's input bias is one number")
        meta = _netx_meta(neuron)
        keep_weight = not (meta.get("input_weight") is None and int(weight[0]) == 64)
        keep_bias = meta.get("input_bias") is not None or bias_value != 0
        self.layers.append(NetxLayer(
            "input", tuple(neuron.shape), (input_name, *scales, neuron_name),
            weight=weight if keep_weight else None,
            bias=np.array([bias_value], dtype=np.int64) if keep_bias else None,
            neuron=nx_neuron, unit=unit))
        return pos + 1

    # ---------------------------------------------------------------- pre-synapse nodes

    def _pre(self, name: str, pending: _Pending, shape: tuple[int, ...]) -> None:
        node = self.node(name)
        where = f"node '{name}'"
        pending.names.append(name)
        if isinstance(node, Flatten):
            if pending.flatten is not None:
                raise ExportError("two Flatten nodes in a row", where=where)
            if len(node.output_shape) != 1:
                raise ExportError(f"netx flattens to one axis; this Flatten gives "
                                  f"{node.output_shape}", where=where)
            pending.flatten = name
            return
        if pending.flatten is not None:
            raise ExportError("only a synapse may follow a Flatten in netx", where=where)
        if isinstance(node, Scale):
            scale = np.broadcast_to(np.asarray(node.scale), shape)
            if pending.pool is not None:
                if not np.all(scale == scale.reshape(-1)[0]):
                    raise ExportError("a non-uniform Scale after a pool cannot be folded",
                                      where=where)
                factor = float(scale.reshape(-1)[0])
                pending.scale = np.asarray(factor if pending.scale is None
                                           else pending.scale * factor)
                return
            pending.scale = scale if pending.scale is None else pending.scale * scale
        elif isinstance(node, Delay):
            if pending.pool is not None:
                raise ExportError("a Delay after a pool cannot be expressed in netx", where=where)
            delay = np.broadcast_to(np.asarray(node.delay), shape)
            pending.delay = delay if pending.delay is None else pending.delay + delay
        elif isinstance(node, (SumPool2d, AvgPool2d)):
            if pending.pool is not None:
                raise ExportError("two pools in a row cannot be folded", where=where)
            _check_pool(node, where)
            if pending.scale is not None:
                scale = np.asarray(pending.scale)
                if not np.all(scale == scale.reshape(-1)[0]):
                    raise ExportError("a non-uniform Scale before a pool cannot be folded",
                                      where=where)
            pending.pool, pending.pool_name = node, name
        elif isinstance(node, Neuron):
            raise ExportError(f"a {node.kind} with no synapse before it cannot be expressed in "
                              "netx (each layer is a synapse and its neuron)", where=where)
        else:
            raise ExportError(f"netx cannot express a {node.kind} node", where=where)

    # ---------------------------------------------------------------- a synapse layer

    # Long: one netx layer is one synapse, its pass-through nodes and its neuron, folded into
    # one set of integers (gain, recurrence, bias, unit shift) and then written as a conv or a
    # dense block; the checks between the steps need the values of the steps before them.
    def _synapse_layer(self, names: list[str], pos: int, pending: _Pending) -> int:
        syn_name = names[pos]
        synapse = self.node(syn_name)
        where = f"node '{syn_name}'"
        if not isinstance(synapse, (Affine, Conv2d)):
            raise ExportError(f"netx has dense and 2-D conv layers, not {synapse.kind}",
                              where=where)
        post: list[str] = []
        pos += 1
        while pos < len(names) and isinstance(self.node(names[pos]),
                                              (Scale, Delay, SumPool2d, AvgPool2d)):
            post.append(names[pos])
            pos += 1
        if pos >= len(names) or not isinstance(self.node(names[pos]), Neuron):
            stop = names[min(pos, len(names) - 1)]
            raise ExportError(f"is followed by '{stop}' ({self.node(stop).kind}), not a neuron; "
                              "every netx layer ends in a neuron", where=where)
        neuron_name = names[pos]
        neuron = self.node(neuron_name)
        assert isinstance(neuron, Neuron)
        folded = self._fold(syn_name, synapse, pending, post)
        unit = self._unit(syn_name, synapse)
        gain = _gain(neuron)
        nodes = (*pending.names, syn_name, *post, neuron_name)

        if folded.conv is not None:
            _check_conv_shape(folded, neuron, where)
            gain_rows = _per_channel(gain, neuron.shape, "neuron gain", f"node '{neuron_name}'")
        else:
            gain_rows = np.asarray(gain).reshape(-1)
        weight = folded.weight * gain_rows.reshape((-1,) + (1,) * (folded.weight.ndim - 1))
        parts = [(weight / unit, "weight", where)]
        synapse_bias = None if folded.bias is None else folded.bias * gain
        rec_name = self.recurrent.get(neuron_name)
        if rec_name is not None:
            rec = self.node(rec_name)
            assert isinstance(rec, Affine)
            # one neuron, one unit: the recurrent weights are counted in the layer's unit
            parts.append((np.asarray(rec.weight) * gain_rows[:, None] / unit,
                          "recurrent weight", f"node '{rec_name}'"))
            if rec.bias is not None and np.any(np.asarray(rec.bias) != 0):
                rec_bias = np.asarray(rec.bias) * gain
                synapse_bias = rec_bias if synapse_bias is None else synapse_bias + rec_bias
            nodes = (*nodes, rec_name)
        integers, shift = _fit_weights(parts, dense=folded.conv is None)
        weight, weight_rec = integers[0], (integers[1] if rec_name is not None else None)
        if shift:
            log.info("%s: integer weights in units of %g do not fit netx's 8-bit weights; "
                     "weights, thresholds and biases are counted in units of %g (2**%d times) "
                     "instead", where, unit, unit * 2.0**shift, shift)
            unit = unit * 2.0**shift
        if synapse_bias is not None and np.any(synapse_bias != 0) and folded.delay is not None:
            raise ExportError("a synapse bias and a Delay in one layer cannot be expressed",
                              where=where)
        nx_neuron, bias = self._neuron(neuron_name, neuron, unit, synapse_bias)
        meta = _netx_meta(synapse)
        float_dtype = str(meta.get("weight_dtype", "float32"))
        if not float_dtype.startswith("float"):
            float_dtype = "float32"
        neuron_meta = _netx_meta(neuron)
        keep_bias = neuron_meta.get("bias") is not None or (bias is not None and np.any(bias))

        if folded.conv is not None:
            if weight_rec is not None:
                raise ExportError("netx has recurrence only for dense layers", where=where)
            if folded.delay is not None and np.any(folded.delay):
                raise ExportError("netx reads no delays for conv layers", where=where)
            if nx_neuron is None:
                raise ExportError("a netx conv layer needs a spiking neuron", where=where)
            channel_bias = _per_channel(bias, neuron.shape, "neuron bias",
                                        f"node '{neuron_name}'")
            layer = NetxLayer(
                "conv", tuple(neuron.shape), nodes, weight=weight,
                bias=channel_bias.astype(np.int64) if keep_bias else None, neuron=nx_neuron,
                conv=folded.conv, weight_ndim=int(meta.get("weight_ndim", 4)),
                float_dtype=float_dtype, unit=unit)
        else:
            source_shape = self._source_shape(pending, syn_name)
            if pending.flatten is not None and len(source_shape) > 1:
                self.layers.append(NetxLayer("flatten", (int(np.prod(source_shape)),),
                                             (pending.flatten,)))
            delay = None
            if folded.delay is not None and np.any(folded.delay):
                delay = _whole(folded.delay, "delay", where)
                if delay.max() > MAX_DELAY:
                    raise ExportError(f"delay {int(delay.max())} exceeds netx's maximum "
                                      f"{MAX_DELAY}", where=where)
            layer = NetxLayer(
                "dense_rec" if weight_rec is not None else "dense", tuple(neuron.shape), nodes,
                weight=weight, weight_rec=weight_rec,
                bias=bias.reshape(-1).astype(np.int64) if keep_bias and bias is not None
                else None,
                neuron=nx_neuron, delay=delay, float_dtype=float_dtype, unit=unit)
        if nx_neuron is None and not isinstance(self.node(names[pos + 1]), Output):
            raise ExportError("a non-spiking neuron can only end the network (its output is a "
                              "voltage, netx layers pass spikes)", where=f"node '{neuron_name}'")
        self.layers.append(layer)
        return pos + 1

    def _source_shape(self, pending: _Pending, syn_name: str) -> tuple[int, ...]:
        first = pending.names[0] if pending.names else syn_name
        preds = self.graph.predecessors(first)
        return tuple(self.node(preds[0]).output_shape)

    def _input_unit(self) -> float:
        """An input block's unit: the argument, else the one unit all int_exp synapses share
        (as the integer core does), else lava-dl's 1/64."""
        if self.unit is not None:
            return float(self.unit)
        units = {float(node.encoding.unit) for node in self.graph.nodes.values()
                 if isinstance(node, Synapse) and node.encoding is not None
                 and node.encoding.grid == "int_exp" and node.encoding.unit is not None}
        return units.pop() if len(units) == 1 else LAVA_DL_UNIT

    def _unit(self, name: str, synapse: Synapse) -> float:
        encoding = synapse.encoding
        if encoding is not None and encoding.grid == "int_exp" and encoding.unit is not None:
            return float(encoding.unit)
        if self.unit is not None:
            return float(self.unit)
        if "netx" in synapse.metadata:
            return LAVA_DL_UNIT
        grid = "no encoding" if encoding is None else f"a {encoding.grid!r} encoding"
        raise ExportError(f"weights have {grid}, so their integer unit is unknown; compress "
                          "them onto an int_exp grid or pass unit=", where=f"node '{name}'")

    # ---------------------------------------------------------------- folding

    def _fold(self, syn_name: str, synapse: Affine | Conv2d, pending: _Pending,
              post: list[str]) -> _Folded:
        """The synapse with the pending (input side) and post (output side) nodes folded in."""
        where = f"node '{syn_name}'"
        weight = np.asarray(synapse.weight, dtype=np.float64)
        bias = None if synapse.bias is None else np.asarray(synapse.bias, dtype=np.float64)
        delay_in = pending.delay
        if isinstance(synapse, Affine):
            if pending.pool is not None:
                weight = _pool_then_dense(weight, pending.pool, where)
                if pending.scale is not None:
                    weight = weight * float(np.asarray(pending.scale).reshape(-1)[0])
            elif pending.scale is not None:
                weight = weight * np.asarray(pending.scale).reshape(1, -1)
            delay = None
            if delay_in is not None:
                delay = np.broadcast_to(delay_in.reshape(1, -1), weight.shape).copy()
            for name in post:
                node = self.node(name)
                if isinstance(node, Scale):
                    scale = np.asarray(node.scale).reshape(-1)
                    weight = weight * scale[:, None]
                    bias = None if bias is None else bias * scale
                elif isinstance(node, Delay):
                    out_delay = np.broadcast_to(np.asarray(node.delay).reshape(-1, 1),
                                                weight.shape)
                    delay = out_delay.copy() if delay is None else delay + out_delay
                else:
                    raise ExportError("a pool after a dense synapse cannot be expressed",
                                      where=f"node '{name}'")
            return _Folded(weight, bias, delay, None, ())
        stride, padding, dilation = synapse.stride, synapse.padding, synapse.dilation
        if delay_in is not None and np.any(delay_in):
            raise ExportError("netx reads no delays for conv layers",
                              where=f"node '{pending.names[0]}'")
        if pending.scale is not None:
            in_scale = _per_channel(np.broadcast_to(pending.scale, synapse.input_shape),
                                    synapse.input_shape, "Scale before a conv",
                                    f"node '{pending.names[0]}'")
            weight = _scale_conv_inputs(weight, in_scale, synapse.groups)
        if pending.pool is not None:
            weight, stride, padding, dilation = _pool_then_conv(
                weight, stride, padding, dilation, pending.pool, f"node '{pending.pool_name}'")
        for name in post:
            node = self.node(name)
            if isinstance(node, Scale):
                out_scale = _per_channel(np.asarray(node.scale), node.shape, "Scale after a conv",
                                         f"node '{name}'")
                weight = weight * out_scale.reshape(-1, 1, 1, 1)
                bias = None if bias is None else bias * out_scale
            elif isinstance(node, (SumPool2d, AvgPool2d)):
                _check_pool(node, f"node '{name}'")
                weight, stride, dilation = _conv_then_pool(weight, stride, dilation, node)
                kh, kw = node.kernel_size
                if bias is not None and isinstance(node, SumPool2d):
                    bias = bias * (kh * kw)
            elif isinstance(node, Delay) and np.any(np.asarray(node.delay)):
                raise ExportError("netx reads no delays for conv layers", where=f"node '{name}'")
        conv = {"stride": tuple(stride), "padding": tuple(padding), "dilation": tuple(dilation),
                "groups": int(synapse.groups)}
        source_shape = self._source_shape(pending, syn_name)
        full_bias = None
        if bias is not None:
            out_shape = self.node(post[-1]).output_shape if post else synapse.output_shape
            full_bias = np.broadcast_to(bias.reshape(-1, 1, 1), tuple(out_shape)).copy()
        return _Folded(weight, full_bias, None, conv, source_shape)

    # ---------------------------------------------------------------- neurons

    def _neuron(self, name: str, neuron: Neuron, unit: float,
                synapse_bias: np.ndarray | None) -> tuple[NetxNeuron | None, np.ndarray | None]:
        """The neuron group (``None``: netx's default integrator) and the integer bias."""
        where = f"node '{name}'"
        reset = getattr(neuron, "reset", "zero")
        if reset != "zero":
            raise ExportError(f"reset {reset!r}: Lava's CUBA neuron resets v to 0 (hard reset)",
                              where=where)
        if np.any(np.asarray(getattr(neuron, "v_reset", 0.0)) != 0):
            raise ExportError("non-zero v_reset: Lava's CUBA neuron resets v to 0", where=where)
        variant = {k: v for k, v in neuron.spike_variant().items() if k != "fires_at_equal"}
        if variant:
            raise ExportError(f"{spike_variant_text(variant)}: netx has no field for it; Lava's "
                              "CUBA neuron sends one spike per step when v > vth and resets v "
                              "to 0 in that step, with no lower clamp", where=where)
        alpha = np.asarray(neuron.synaptic_decay if neuron.synaptic_decay is not None else 0.0)
        beta = np.asarray(neuron.membrane_decay)
        v_leak = np.asarray(getattr(neuron, "v_leak", 0.0))
        bias = np.broadcast_to(np.asarray(neuron.bias, dtype=np.float64), neuron.shape)
        bias = bias + (1.0 - beta) * v_leak
        if synapse_bias is not None:
            if np.any(synapse_bias != 0) and np.any(alpha != 0):
                raise ExportError("a synapse bias feeds a neuron with current memory (alpha "
                                  "> 0); netx has a neuron bias only", where=where)
            bias = bias + np.broadcast_to(synapse_bias, neuron.shape)
        i_decay = _decay(1.0 - alpha, "alpha", where)
        v_decay = _decay(1.0 - beta, "beta", where)
        if not neuron.spiking:
            default = isinstance(neuron, CubaLI) and i_decay == 0 and v_decay == DECAY_UNIT
            if isinstance(neuron, Integrator) and np.any(bias != 0):
                raise ExportError("an Integrator with bias has no netx equivalent (netx's "
                                  "default integrator adds its bias to v, not to the sum)",
                                  where=where)
            if default or isinstance(neuron, Integrator):
                return None, self._bias_integers(bias, unit, where, neuron.shape)
            raise ExportError(f"a non-spiking {neuron.kind} has no netx equivalent (netx's only "
                              "non-spiking neuron is the default integrator of a dense layer "
                              "without neuron group: alpha = 1, beta = 0, no bias)", where=where)
        threshold = _uniform(np.asarray(neuron.v_threshold) / unit, "v_threshold", where,
                             "Lava's CUBA threshold is one number per layer")
        v_th = _rounded(threshold, "v_threshold / unit", where)
        if getattr(neuron, "fires_at_equal", False):   # v >= thr is v > thr - 1 unit (above)
            equal_th, problem = at_or_above_vth(v_th, 1.0 - i_decay / DECAY_UNIT,
                                                1.0 - v_decay / DECAY_UNIT)
            if equal_th is None:
                raise ExportError(f"fires_at_equal: netx has no field for it; {problem}",
                                  where=where)
            v_th = equal_th
        if not 0 <= v_th <= MAX_V_TH_MANT:
            raise ExportError(f"threshold {v_th} (in units of {unit:g}) lies outside Lava's 17-bit "
                              f"range 0..{MAX_V_TH_MANT}", where=where)
        bias_int = self._bias_integers(bias, unit, where, neuron.shape)
        meta = _netx_meta(neuron)
        config = meta.get("neuron") or {}
        unchanged = (meta.get("iDecay") == i_decay and meta.get("vDecay") == v_decay
                     and meta.get("vThMant") == v_th and config.get("type") in ("CUBA", "LOIHI"))
        if unchanged:
            extras = {k: v for k, v in config.items() if k not in _STANDARD_NEURON_KEYS}
            return NetxNeuron(i_decay, v_decay, v_th, str(config["type"]), extras), bias_int
        return NetxNeuron(i_decay, v_decay, v_th), bias_int

    @staticmethod
    def _bias_integers(bias: np.ndarray, unit: float, where: str,
                       shape: tuple[int, ...]) -> np.ndarray:
        values = (np.asarray(bias, dtype=np.float64) / unit).reshape(-1)
        bias_int = np.array([_rounded(b, "bias / unit", where) for b in values],
                            dtype=np.int64).reshape(shape)
        if bias_int.size and (bias_int.min() < BIAS_RANGE[0] or bias_int.max() > BIAS_RANGE[1]):
            raise ExportError(f"bias range [{bias_int.min()}, {bias_int.max()}] (in units of "
                              f"{unit:g}) exceeds Lava's 13-bit bias {list(BIAS_RANGE)}",
                              where=where)
        return bias_int


@dataclass(frozen=True, eq=False)
class _Folded:
    """A synapse with its neighbours folded in: float weights (out, ...) before the unit."""

    weight: np.ndarray
    bias: np.ndarray | None
    delay: np.ndarray | None
    conv: Mapping[str, Any] | None
    input_shape: tuple[int, ...]


def _check_conv_shape(folded: _Folded, neuron: Neuron, where: str) -> None:
    """The folded conv must produce the neuron's shape (a guard on the pool rewrites)."""
    assert folded.conv is not None
    _, h, w = folded.input_shape
    kh, kw = folded.weight.shape[2:]
    (sh, sw), (ph, pw), (dh, dw) = (folded.conv[k] for k in ("stride", "padding", "dilation"))
    shape = (folded.weight.shape[0], conv_output_length(h, kh, sh, ph, dh),
             conv_output_length(w, kw, sw, pw, dw))
    if shape != tuple(neuron.shape):
        raise ExportError(f"the folded conv gives shape {shape}, the neuron has {neuron.shape}",
                          where=where)


# --------------------------------------------------------------------------- pools as convs


def _check_pool(pool: SumPool2d | AvgPool2d, where: str) -> None:
    if tuple(pool.padding) != (0, 0):
        raise ExportError(f"pool padding {pool.padding} cannot be folded into a conv (netx has "
                          "no pooling layer)", where=where)


def _pool_factor(pool: SumPool2d | AvgPool2d) -> float:
    kh, kw = pool.kernel_size
    return 1.0 / (kh * kw) if isinstance(pool, AvgPool2d) else 1.0


def _dilate(weight: np.ndarray, dilation: tuple[int, int]) -> np.ndarray:
    """A kernel with ``dilation - 1`` zeros between its taps (dilation 1 afterwards)."""
    dh, dw = dilation
    c_out, c_in, kh, kw = weight.shape
    dilated = np.zeros((c_out, c_in, (kh - 1) * dh + 1, (kw - 1) * dw + 1))
    dilated[:, :, ::dh, ::dw] = weight
    return dilated


def _conv_then_pool(weight: np.ndarray, stride: tuple[int, int], dilation: tuple[int, int],
                    pool: SumPool2d | AvgPool2d) -> tuple[np.ndarray, tuple[int, int],
                                                          tuple[int, int]]:
    """``pool(conv(x))`` as one conv: the kernel summed over the pool window's shifts.

    With conv stride S and pool window k, stride s (no pool padding), output ``y`` sums conv
    outputs ``y*s + e`` (``0 <= e < k``), which read the input at ``(y*s + e)*S + j``, so
    ``W'[j'] = sum_e Wd[j' - e*S]`` with stride ``S*s`` and the conv's padding.
    """
    w = _dilate(weight, dilation)
    sh, sw = stride
    (ph, pw), (qh, qw) = pool.kernel_size, pool.stride  # type: ignore[misc]
    c_out, c_in, kh, kw = w.shape
    out = np.zeros((c_out, c_in, kh + (ph - 1) * sh, kw + (pw - 1) * sw))
    for e in range(ph):
        for f in range(pw):
            out[:, :, e * sh:e * sh + kh, f * sw:f * sw + kw] += w
    return out * _pool_factor(pool), (sh * qh, sw * qw), (1, 1)


def _pool_then_conv(weight: np.ndarray, stride: tuple[int, int], padding: tuple[int, int],
                    dilation: tuple[int, int], pool: SumPool2d | AvgPool2d, where: str
                    ) -> tuple[np.ndarray, tuple[int, int], tuple[int, int], tuple[int, int]]:
    """``conv(pool(x))`` as one conv over ``x``.

    Pooled position ``z = y*S - P + d*D`` (kernel tap ``d``) sums inputs ``z*s + e``
    (``0 <= e < k``), so tap ``d`` spreads over ``W'[d*D*s + e]``, with stride ``S*s`` and
    padding ``P*s``. With conv padding ``P > 0`` this is exact only when the conv's zero padding
    maps onto input positions outside ``x``: windows that do not overlap (``k <= s``) and that
    cover each axis exactly (``(H - k) % s == 0``); otherwise the rewrite is refused.
    """
    (dh, dw), (sh, sw) = dilation, stride
    (ph, pw), (qh, qw) = pool.kernel_size, pool.stride  # type: ignore[misc]
    _, h, w = pool.input_shape
    for axis, pad, k, s, length in (("H", padding[0], ph, qh, h), ("W", padding[1], pw, qw, w)):
        if pad and (k > s or (length - k) % s):
            raise ExportError(f"a pool (kernel {k}, stride {s}) over {length} positions along "
                              f"{axis} followed by a conv with padding {pad} cannot be folded "
                              "into one conv exactly", where=where)
    c_out, c_in, kh, kw = weight.shape
    out = np.zeros((c_out, c_in, (kh - 1) * dh * qh + ph, (kw - 1) * dw * qw + pw))
    for a in range(kh):
        for b in range(kw):
            top, left = a * dh * qh, b * dw * qw
            out[:, :, top:top + ph, left:left + pw] += weight[:, :, a:a + 1, b:b + 1]
    return (out * _pool_factor(pool), (sh * qh, sw * qw), (padding[0] * qh, padding[1] * qw),
            (1, 1))


def _pool_then_dense(weight: np.ndarray, pool: SumPool2d | AvgPool2d, where: str) -> np.ndarray:
    """``W @ flatten(pool(x))`` as ``W' @ flatten(x)``: pooled columns spread over windows."""
    c, h, w = pool.input_shape
    oc, oh, ow = pool.output_shape
    if weight.shape[1] != oc * oh * ow:
        raise ExportError(f"dense input {weight.shape[1]} does not match the pool output "
                          f"{pool.output_shape}", where=where)
    (ph, pw), (qh, qw) = pool.kernel_size, pool.stride  # type: ignore[misc]
    pooled = weight.reshape(-1, oc, oh, ow)
    out = np.zeros((weight.shape[0], c, h, w))
    for e in range(ph):
        for f in range(pw):
            out[:, :, e:e + qh * (oh - 1) + 1:qh, f:f + qw * (ow - 1) + 1:qw] += pooled
    return out.reshape(weight.shape[0], -1) * _pool_factor(pool)


def _scale_conv_inputs(weight: np.ndarray, in_scale: np.ndarray, groups: int) -> np.ndarray:
    """Multiply each kernel's input-channel slice by the scale of the channel it reads."""
    c_out, c_per_group = weight.shape[:2]
    out_per_group = c_out // groups
    channel = (np.arange(c_out)[:, None] // out_per_group) * c_per_group + \
        np.arange(c_per_group)[None, :]
    return weight * in_scale[channel][:, :, None, None]


# --------------------------------------------------------------------------- number helpers


def _netx_meta(node: Node) -> Mapping[str, Any]:
    meta = node.metadata.get("netx") if isinstance(node.metadata, Mapping) else None
    return meta if isinstance(meta, Mapping) else {}


def _gain(neuron: Neuron) -> np.ndarray:
    """``gain_syn * gain``: the factor between a synapse's output and the neuron's ``u``."""
    gain = np.asarray(getattr(neuron, "gain", 1.0), dtype=np.float64)
    gain_syn = np.asarray(getattr(neuron, "gain_syn", 1.0), dtype=np.float64)
    return np.broadcast_to(gain * gain_syn, neuron.shape)


def _uniform(values: Any, what: str, where: str, why: str) -> float:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ExportError(f"{what} is empty", where=where)
    if not np.allclose(array, array[0], rtol=1e-12, atol=0.0):
        raise ExportError(f"{what} varies within the layer "
                          f"([{array.min():g}, {array.max():g}]); {why}", where=where)
    return float(array[0])


def _per_channel(values: Any, shape: tuple[int, ...], what: str, where: str) -> np.ndarray:
    """(C, H, W) values that are constant over H, W -> (C,)."""
    array = np.broadcast_to(np.asarray(values, dtype=np.float64), tuple(shape))
    if array.ndim == 1:
        return array.copy()
    flat = array.reshape(array.shape[0], -1)
    if not np.allclose(flat, flat[:, :1], rtol=1e-12, atol=0.0):
        raise ExportError(f"{what} varies within a channel; netx conv layers hold one value per "
                          "channel", where=where)
    return flat[:, 0].copy()


def _whole(values: np.ndarray, what: str, where: str) -> np.ndarray:
    """Whole numbers as int64, or ExportError when any value is not (close to) one."""
    values = np.asarray(values, dtype=np.float64)
    rounded = np.rint(values)
    error = np.abs(values - rounded)
    tolerance = _tolerance(values)
    if np.any(error > tolerance):
        index = np.unravel_index(int(np.argmax(error - tolerance)), values.shape)
        raise ExportError(f"{what} holds non-integer values (e.g. {values[index]:.6g} at "
                          f"{tuple(int(i) for i in index)}); netx stores integers: quantize onto "
                          "an int_exp grid first", where=where)
    return rounded.astype(np.int64)


_ROUNDING_WARNING = 0.01  # relative change of a threshold or bias worth a warning


def _rounded(value: float, what: str, where: str) -> int:
    """Round to the integer grid (thresholds and biases are quantized by the export, as the
    integer core does); a change above 1 % is logged as a warning, smaller ones at debug."""
    rounded = int(np.rint(value))
    error = abs(value - rounded)
    if error > _tolerance(np.asarray(value)):
        level = logging.WARNING if error > _ROUNDING_WARNING * abs(value) else logging.DEBUG
        log.log(level, "%s: %s = %.6g is not a whole number; rounded to %d", where, what, value,
                rounded, extra={"deviation": error / max(abs(value), 1e-30)})  # worst repeat
    return rounded


def _decay(value: Any, what: str, where: str) -> int:
    """``(1 - decay) * 4096`` rounded to 12 bits; one value per layer."""
    one = _uniform(np.asarray(value) * DECAY_UNIT, f"1 - {what}", where,
                   "Lava's CUBA decays are one number per layer")
    return int(np.rint(one))


_MAX_SHIFT = 24  # the largest power of two by which _fit_weights moves a unit


def _range_error(values: np.ndarray, low_limit: int, high_limit: int) -> str | None:
    low, high = int(values.min()), int(values.max())
    if low < low_limit or high > high_limit:
        return f"integer weights span [{low}, {high}]; netx holds [{low_limit}, {high_limit}]"
    return None


def _limits(parts: list[np.ndarray]) -> tuple[int, int]:
    """netx's weight range: [-256, 255], and at most 254 when signs mix (optimize_weight_bits)."""
    low = min(float(p.min()) for p in parts)
    high = max(float(p.max()) for p in parts)
    return WEIGHT_RANGE[0], MIXED_SIGN_MAX if low < 0 < high else WEIGHT_RANGE[1]


def _fit_weights(parts: list[tuple[np.ndarray, str, str]], dense: bool
                 ) -> tuple[list[np.ndarray], int]:
    """Whole weights in netx's 8-bit range: ``values / 2**k`` for the first ``k`` that fits.

    ``k = 0`` keeps the given unit (every lava-dl file). Weights with a large shared power of
    two (an ``int_exp`` grid's ``mantissa * 2**exponent``, whose exponent netx cannot store) are
    divided by ``2**k``; dyadic fractions (an AvgPool's 1/4) are multiplied. Either way the
    weights stay exact and the neuron's threshold and bias move to the unit ``unit * 2**k``
    (where they may round).

    Args:
        parts: ``(values in units, what, where)`` sharing one neuron (weight and recurrent
            weight of a dense_rec layer).
        dense: dense layers also refuse an all-zero matrix (netx divides by its maximum).

    Raises:
        ExportError: no power of two makes every value whole and in range.
    """
    if _is_whole_all(parts, 0):
        integers = [np.rint(values).astype(np.int64) for values, _, _ in parts]
        if dense and not any(np.any(v) for v in integers):
            raise ExportError("all weights are zero; netx's optimize_weight_bits divides by the "
                              "largest weight and fails", where=parts[0][2])
        candidates: range = range(0, _MAX_SHIFT + 1)  # divide while the weights stay whole
    else:
        candidates = range(-1, -_MAX_SHIFT - 1, -1)  # multiply until they become whole
    for k in candidates:
        whole = _is_whole_all(parts, k)
        if not whole and k >= 0:
            break
        if not whole:
            continue
        integers = [np.rint(values / 2.0**k).astype(np.int64) for values, _, _ in parts]
        if all(v.size for v in integers) and not any(
                _range_error(v, *_limits(integers)) for v in integers):
            return integers, k
        if k < 0:
            break  # larger factors only make the weights larger
    for values, what, where in parts:
        _whole(values, what, where)  # names the first non-integer value
    integers = [np.rint(values).astype(np.int64) for values, _, _ in parts]
    for values, (_, _, where) in zip(integers, parts, strict=True):
        if not values.size:
            raise ExportError("has no weights", where=where)
        message = _range_error(values, *_limits(integers))
        if message:
            raise ExportError(f"{message} (8-bit mantissa plus sign), and no power-of-two rescale "
                              "of the unit keeps them whole and in range", where=where)
    raise ExportError("no power-of-two rescale keeps the weights whole and in netx's range",
                      where=parts[0][2])


def _is_whole_all(parts: list[tuple[np.ndarray, str, str]], k: int) -> bool:
    return all(_is_whole(values / 2.0**k) for values, _, _ in parts)


def _is_whole(values: np.ndarray) -> bool:
    values = np.asarray(values, dtype=np.float64)
    return bool(np.all(np.abs(values - np.rint(values)) <= _tolerance(values)))


def _tolerance(values: np.ndarray) -> np.ndarray:
    return _TOLERANCE_ABS + _TOLERANCE_REL * np.abs(np.asarray(values, dtype=np.float64))


# --------------------------------------------------------------------------- writing


def _simulation(graph: Graph) -> dict[str, Any]:
    """``/simulation``: as imported from a netx file (netx ignores it), else ``Ts`` = dt in ms."""
    stored = graph.metadata.get("netx_simulation")
    if isinstance(stored, Mapping):
        return dict(stored)
    return {"Ts": graph.dt * 1e3}  # milliseconds, SLAYER's convention


def _write(path: Path, layers: tuple[NetxLayer, ...], simulation: Mapping[str, Any]) -> None:
    with h5py.File(path, "w") as f:
        group = f.create_group("layer")
        for index, layer in enumerate(layers):
            _write_layer(group.create_group(str(index)), layer)
        if simulation:
            sim = f.create_group("simulation")
            for key, value in simulation.items():
                sim.create_dataset(key, data=value)


def _write_layer(g: h5py.Group, layer: NetxLayer) -> None:
    g.create_dataset("type", (1,), "S10", [layer.kind.encode("ascii")])
    g.create_dataset("shape", data=np.asarray(layer.shape, dtype=np.int64))
    dtype = np.dtype(layer.float_dtype)
    if layer.kind in ("dense", "dense_rec"):
        assert layer.weight is not None
        g.create_dataset("inFeatures", data=np.int64(layer.weight.shape[1]))
        g.create_dataset("outFeatures", data=np.int64(layer.weight.shape[0]))
    if layer.kind == "conv":
        assert layer.weight is not None and layer.conv is not None
        g.create_dataset("inChannels", data=np.int64(layer.weight.shape[1] * layer.conv["groups"]))
        g.create_dataset("outChannels", data=np.int64(layer.weight.shape[0]))
        g.create_dataset("kernelSize", data=np.asarray(layer.weight.shape[2:4], dtype=np.int64))
        for key in ("stride", "padding", "dilation"):
            g.create_dataset(key, data=np.asarray(layer.conv[key], dtype=np.int64))
        g.create_dataset("groups", data=np.int64(layer.conv["groups"]))
    if layer.weight is not None:
        weight = layer.weight
        if layer.kind == "conv" and layer.weight_ndim == 5:
            weight = weight[..., None]
        g.create_dataset("weight", data=weight.astype(dtype))
    if layer.weight_rec is not None:
        g.create_dataset("weight_rec", data=layer.weight_rec.astype(dtype))
    if layer.bias is not None:
        g.create_dataset("bias", data=np.asarray(layer.bias).astype(dtype))
    if layer.delay is not None:
        g.create_dataset("delay", data=layer.delay.astype(np.int64))
    if layer.neuron is not None:
        n = g.create_group("neuron")
        n.create_dataset("type", data=layer.neuron.type)
        n.create_dataset("iDecay", data=np.int64(layer.neuron.i_decay))
        n.create_dataset("vDecay", data=np.int64(layer.neuron.v_decay))
        n.create_dataset("vThMant", data=np.int64(layer.neuron.v_th_mant))
        for key, value in layer.neuron.extras.items():
            if value is None or isinstance(value, (dict, list)) and not value:
                continue
            n.create_dataset(key, data=value)


__all__ = ["NetxLayer", "NetxNeuron", "plan_netx", "to_netx"]
