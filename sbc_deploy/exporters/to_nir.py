r"""IR -> NIR: the inverse of :func:`sbc_deploy.frontends.from_nir.from_nir`.

Nodes keep their IR names; edges are copied (recurrent edges included: NIR keeps cycles). The
graph's ``dt``, its neurons' reset mode and the discretization go into the NIR graph's metadata
(``"dt"``, ``"reset"``, ``"discretization"``), where :func:`from_nir` reads them back. Weights
are written as they act, in float (NIR has no integer encodings). An ``Affine`` without bias
becomes ``nir.Linear``; a convolution without bias gets a zero bias (NIR requires one).

Discrete neuron parameters become NIR's continuous ones with the discretization recorded in the
graph (``metadata["discretization"]``; ``"euler"`` when it is neither ``"euler"`` nor
``"exact"``, e.g. for a netx import)::

    euler:  tau = dt / (1 - beta)          exact:  tau = -dt / ln(beta)
    both:   r = gain / (1 - beta)          w_in = gain_syn / (1 - alpha)
    IF, I:  r = gain / dt
    Delay:  seconds = steps * dt

NIR neurons have no bias. For leaky neurons an IR bias is folded into the leak voltage, which is
exact: ``(1 - beta) * v_leak' = (1 - beta) * v_leak + bias`` with
``v_leak' = v_leak + bias / (1 - beta)``; the bias is also kept in the node's metadata
(``"sbc_bias"``) so that :func:`from_nir` restores the IR parameters. A non-zero bias on IF or
Integrator (no leak to fold into), a decay of 1 (``tau`` infinite), a decay of 0 with
``"exact"`` (``tau`` zero) and mixed reset modes cannot be written and raise
:class:`ExportError` naming the node. One such case has an exact NIR form and is written as it:
a ``CubaLI`` with ``alpha = 1``, ``beta = 0`` and no bias or leak (netx's default readout, whose
``v`` is the running sum of ``gain * gain_syn * x``) becomes ``nir.I`` with
``r = gain * gain_syn / dt``, read back as an ``Integrator``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import h5py
import nir
import numpy as np

from sbc_deploy.version import __version__
from sbc_deploy.errors import ExportError
from sbc_deploy.exporters.nir_consumers import adapt
from sbc_deploy.exporters.nir_ops import OPERATION_WRITERS, refusal
from sbc_deploy.fileio import check_writable, write_atomic
from sbc_deploy.frontends.conventions import CONSUMERS, CONVENTIONS, Convention
from sbc_deploy.ir import (
    IF,
    LI,
    LIF,
    Affine,
    AvgPool2d,
    Conv1d,
    Conv2d,
    CubaLI,
    CubaLIF,
    Delay,
    Flatten,
    Graph,
    Input,
    Integrator,
    Neuron,
    Output,
    Scale,
    SumPool2d,
    Threshold,
)

log = logging.getLogger(__name__)


class _Ctx:
    """What a node writer needs besides the node: its name, ``dt``, the discretization and the
    consumer (``"nir"``: the spec; else the framework whose importer reads the file)."""

    def __init__(self, name: str, dt: float, discretization: str,
                 consumer: str = "nir") -> None:
        self.name, self.dt, self.discretization = name, dt, discretization
        self.consumer = consumer
        self.per_channel = False  # parameters written once per channel (sinabs)

    @property
    def where(self) -> str:
        return f"node '{self.name}'"


def _tau(decay: np.ndarray, ctx: _Ctx, what: str) -> np.ndarray:
    """Time constant from a per-step decay (the inverse of from_nir's discretization)."""
    if np.any(decay >= 1):
        raise ExportError(f"{what} = 1 (no decay) means an infinite NIR time constant",
                          where=ctx.where, hint="use IF/Integrator for non-leaky neurons")
    if ctx.discretization == "exact":
        if np.any(decay <= 0):
            raise ExportError(f"{what} = 0 has no finite time constant with exact "
                              "discretization", where=ctx.where)
        return -ctx.dt / np.log(decay)
    return ctx.dt / (1.0 - decay)


def _consumer_r(node: Any, tau: np.ndarray, ctx: _Ctx) -> np.ndarray:
    """The ``r`` a consumer's importer expects once the gain is folded into the weights
    (:mod:`~sbc_deploy.exporters.nir_consumers`): snntorch asserts ``r = tau/dt`` (gain 1);
    rockpool recovers ``dt = min(tau / (1 + r))``; spyx writes ``r = beta``; norse and sinabs
    ignore it (1)."""
    if ctx.consumer == "snntorch":
        return tau / ctx.dt
    if ctx.consumer == "rockpool":
        return tau / ctx.dt - 1.0
    if ctx.consumer == "spyx":
        return np.array(node.beta, dtype=np.float64)
    return np.ones_like(tau)


def _leaky(node: Any, ctx: _Ctx) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """tau, r and v_leak (bias folded in) of a leaky neuron, and the metadata keeping the bias."""
    tau = _tau(node.beta, ctx, "beta")
    one_minus = 1.0 - node.beta
    metadata: dict[str, Any] = {}
    if ctx.consumer != "nir":
        v_leak = node.v_leak + node.bias / one_minus
        if ctx.consumer == "rockpool":  # rockpool adds v_leak per step as its bias
            v_leak = one_minus * node.v_leak + node.bias
        return {"tau": tau, "r": _consumer_r(node, tau, ctx), "v_leak": v_leak}, metadata
    params = {"r": node.gain / one_minus, "v_leak": node.v_leak + node.bias / one_minus}
    if np.any(node.bias != 0):
        metadata["sbc_bias"] = np.array(node.bias, dtype=np.float64)
    return {"tau": tau, **params}, metadata


def _no_bias(node: Any, ctx: _Ctx) -> None:
    if np.any(node.bias != 0):
        raise ExportError(f"{node.kind} has a non-zero bias, which NIR's {node.kind} cannot "
                          "hold (it has no leak to fold it into)", where=ctx.where)


def _write_input(node: Input, ctx: _Ctx) -> nir.NIRNode:
    return nir.Input(input_type={"input": np.array(node.shape)})


def _write_output(node: Output, ctx: _Ctx) -> nir.NIRNode:
    return nir.Output(output_type={"output": np.array(node.shape)})


def _write_affine(node: Affine, ctx: _Ctx) -> nir.NIRNode:
    weight = np.array(node.weight, dtype=np.float64)
    if node.bias is None and ctx.consumer == "sinabs":  # sinabs maps no nir.Linear
        return nir.Affine(weight=weight, bias=np.zeros(weight.shape[0]))
    if node.bias is None:
        return nir.Linear(weight=weight)
    return nir.Affine(weight=weight, bias=np.array(node.bias, dtype=np.float64))


def _conv_bias(node: Conv1d | Conv2d) -> np.ndarray:
    if node.bias is None:
        return np.zeros(node.out_channels)
    return np.array(node.bias, dtype=np.float64)


def _write_conv2d(node: Conv2d, ctx: _Ctx) -> nir.NIRNode:
    return nir.Conv2d(input_shape=tuple(node.input_shape[1:]),
                      weight=np.array(node.weight, dtype=np.float64),
                      stride=np.array(node.stride), padding=np.array(node.padding),
                      dilation=np.array(node.dilation), groups=int(node.groups),
                      bias=_conv_bias(node))


def _write_conv1d(node: Conv1d, ctx: _Ctx) -> nir.NIRNode:
    return nir.Conv1d(input_shape=int(node.input_shape[1]),
                      weight=np.array(node.weight, dtype=np.float64), stride=int(node.stride),
                      padding=int(node.padding), dilation=int(node.dilation),
                      groups=int(node.groups), bias=_conv_bias(node))


def _write_sumpool(node: SumPool2d, ctx: _Ctx) -> nir.NIRNode:
    return nir.SumPool2d(kernel_size=np.array(node.kernel_size), stride=np.array(node.stride),
                         padding=np.array(node.padding))


def _write_avgpool(node: AvgPool2d, ctx: _Ctx) -> nir.NIRNode:
    return nir.AvgPool2d(kernel_size=np.array(node.kernel_size), stride=np.array(node.stride),
                         padding=np.array(node.padding))


def _write_flatten(node: Flatten, ctx: _Ctx) -> nir.NIRNode:
    start, end = int(node.start_dim), int(node.end_dim)
    if ctx.consumer != "nir":
        # negative dims count from the end: the same axes with or without a batch axis in
        # front (snntorch and norse build torch.nn.Flatten(start, end) on batched tensors)
        ndim = len(node.input_shape)
        start, end = start % ndim - ndim, end % ndim - ndim
    return nir.Flatten(input_type={"input": np.array(node.input_shape)},
                       start_dim=start, end_dim=end)


def _write_scale(node: Scale, ctx: _Ctx) -> nir.NIRNode:
    return nir.Scale(scale=np.array(node.scale))


def _write_delay(node: Delay, ctx: _Ctx) -> nir.NIRNode:
    return nir.Delay(delay=np.array(node.delay) * ctx.dt)


def _write_threshold(node: Threshold, ctx: _Ctx) -> nir.NIRNode:
    return nir.Threshold(threshold=np.array(node.threshold))


def _write_integrator(node: Integrator, ctx: _Ctx) -> nir.NIRNode:
    _no_bias(node, ctx)
    return nir.I(r=node.gain / ctx.dt)


def _write_if(node: IF, ctx: _Ctx) -> nir.NIRNode:
    _no_bias(node, ctx)
    if ctx.consumer == "snntorch":
        # snntorch 1.0.0 imports nir.IF as Leaky(beta=0.9); a LIF whose tau is so long that
        # 1 - dt/tau rounds to 1.0 in float64 is exactly an IF there (gain r dt / tau = 1)
        tau = np.full(node.shape, ctx.dt * 1e20)
        return nir.LIF(tau=tau, r=tau / ctx.dt, v_leak=np.zeros(node.shape),
                       v_threshold=np.array(node.v_threshold), v_reset=np.array(node.v_reset),
                       metadata={"sbc_written_for": "IF as a LIF with beta = 1.0"})
    r = node.gain / ctx.dt if ctx.consumer == "nir" else np.array(node.gain, dtype=np.float64)
    return nir.IF(r=r, v_threshold=np.array(node.v_threshold),
                  v_reset=np.array(node.v_reset))


def _per_channel(params: dict[str, np.ndarray], ctx: _Ctx) -> dict[str, np.ndarray]:
    """sinabs 3.1.3's importer tests ``any(node.v_leak)``, which fails on parameters of two or
    more axes: behind a convolution they are written once per channel, ``(C, 1, 1)`` (it
    broadcasts them over H and W; the file is then not type-checked by nir)."""
    if ctx.consumer != "sinabs":
        return params
    out = {}
    for key, value in params.items():
        value = np.asarray(value, dtype=np.float64)
        if value.ndim < 2:
            return params
        flat = value.reshape(value.shape[0], -1)
        if not np.all(flat == flat[:, :1]):
            raise ExportError(f"{key} varies within a channel; sinabs 3.1.3's importer reads "
                              "LIF/LI parameters of two or more axes only as one value per "
                              "channel", where=f"{ctx.where} (--nir-for sinabs)")
        out[key] = flat[:, :1].reshape(value.shape[0], *([1] * (value.ndim - 1)))
    ctx.per_channel = True
    return out


def _write_li(node: LI, ctx: _Ctx) -> nir.NIRNode:
    params, metadata = _leaky(node, ctx)
    return nir.LI(**_per_channel(params, ctx), metadata=metadata)


def _write_lif(node: LIF, ctx: _Ctx) -> nir.NIRNode:
    params, metadata = _leaky(node, ctx)
    params = {**params, "v_threshold": np.array(node.v_threshold),
              "v_reset": np.array(node.v_reset)}
    return nir.LIF(**_per_channel(params, ctx), metadata=metadata)


def _synaptic(node: CubaLI | CubaLIF, ctx: _Ctx) -> dict[str, np.ndarray]:
    tau_syn = _tau(node.alpha, ctx, "alpha")
    if ctx.consumer == "snntorch":  # w_in dt / tau_syn = 1: snntorch's gain of one
        return {"tau_syn": tau_syn, "w_in": tau_syn / ctx.dt}
    if ctx.consumer != "nir":  # folded into the weights; the importer's own gain applies
        return {"tau_syn": tau_syn, "w_in": np.ones_like(tau_syn)}
    return {"tau_syn": tau_syn, "w_in": node.gain_syn / (1.0 - node.alpha)}


def _write_cubali(node: CubaLI, ctx: _Ctx) -> nir.NIRNode:
    if (np.all(node.alpha == 1) and np.all(node.beta == 0) and not np.any(node.bias)
            and not np.any(node.v_leak)):
        # netx's default readout: i sums the input, v = gain * i, i.e. an integrator of x
        return nir.I(r=node.gain * node.gain_syn / ctx.dt,
                     metadata={"sbc_written_for": "CubaLI with alpha=1, beta=0"})
    params, metadata = _leaky(node, ctx)
    return nir.CubaLI(tau_mem=params.pop("tau"), **params, **_synaptic(node, ctx),
                      metadata=metadata)


def _write_cubalif(node: CubaLIF, ctx: _Ctx) -> nir.NIRNode:
    params, metadata = _leaky(node, ctx)
    return nir.CubaLIF(tau_mem=params.pop("tau"), **params, **_synaptic(node, ctx),
                       v_threshold=np.array(node.v_threshold), v_reset=np.array(node.v_reset),
                       metadata=metadata)


# IR node type -> NIR node writer: the single dispatch table of this exporter.
_WRITERS: dict[type, Callable[[Any, _Ctx], nir.NIRNode]] = {
    Input: _write_input,
    Output: _write_output,
    Affine: _write_affine,
    Conv1d: _write_conv1d,
    Conv2d: _write_conv2d,
    SumPool2d: _write_sumpool,
    AvgPool2d: _write_avgpool,
    Flatten: _write_flatten,
    Scale: _write_scale,
    Delay: _write_delay,
    Threshold: _write_threshold,
    Integrator: _write_integrator,
    IF: _write_if,
    LI: _write_li,
    LIF: _write_lif,
    CubaLI: _write_cubali,
    CubaLIF: _write_cubalif,
}


def _reset_mode(graph: Graph) -> str | None:
    modes: dict[str, list[str]] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, Neuron) and node.spiking:
            modes.setdefault(getattr(node, "reset"), []).append(name)
    if len(modes) > 1:
        listing = "; ".join(f"{mode}: {', '.join(names)}" for mode, names in modes.items())
        raise ExportError(f"NIR stores one reset mode per graph, this graph mixes them ({listing})",
                          where="graph")
    return next(iter(modes), None)


@dataclass(frozen=True)
class NirExport:
    """A NIR graph written for one consumer, and what was adapted for it (report notes)."""

    graph: nir.NIRGraph
    nir_for: str
    notes: tuple[str, ...]
    path: Path | None = None


def _consumer_dt(graph: Graph, convention: Convention) -> tuple[float, str | None]:
    """The step the consumer's importer assumes (the graph is relabelled to it)."""
    side = convention.consumer
    assert side is not None
    if side.dt_rule in ("fixed", "argument") and side.dt is not None:
        how = "hard-codes" if side.dt_rule == "fixed" else "defaults to"
        return side.dt, f"dt relabelled {graph.dt:g} s -> {side.dt:g} ({convention.name} {how} it)"
    if side.dt_rule == "steps":
        return 1.0, f"time constants written in steps ({convention.name} counts steps)"
    return graph.dt, None


def export_nir(graph: Graph, *, nir_for: str = "nir") -> NirExport:
    """The NIR graph of an IR graph for the consumer ``nir_for`` (``"nir"``: the spec, see the
    module docstring; a framework name: adapted by :mod:`sbc_deploy.exporters.nir_consumers`
    and written in its importer's convention).

    Raises:
        ExportError: a node NIR or the consumer cannot express (named), NIR's own type check
            failing, or an unknown consumer.
    """
    if nir_for not in CONSUMERS:
        raise ExportError(f"unknown NIR consumer {nir_for!r}; known: {', '.join(CONSUMERS)}",
                          where="--nir-for")
    for name in graph.topological_order:   # before any consumer adaptation rebuilds the graph
        why = refusal(graph.nodes[name])
        if why:
            raise ExportError(f"no NIR equivalent for IR node kind {graph.nodes[name].kind}: "
                              f"{why}", where=f"node '{name}'")
    discretization = graph.metadata.get("discretization")
    if discretization not in ("euler", "exact"):
        discretization = "euler"
    notes: list[str] = []
    dt = graph.dt
    if nir_for != "nir":
        convention = CONVENTIONS[nir_for]
        adapted = adapt(graph, convention)
        graph, notes = adapted.graph, list(adapted.notes)
        dt, relabel = _consumer_dt(graph, convention)
        if relabel:
            notes.append(relabel)
        assert convention.consumer is not None
        discretization = convention.consumer.decay
    nodes: dict[str, nir.NIRNode] = {}
    per_channel: list[str] = []
    for name, node in graph.nodes.items():
        writer = _WRITERS.get(type(node)) or OPERATION_WRITERS.get(type(node))
        if writer is None:
            why = refusal(node)   # the graph operations NIR lacks say what it lacks
            raise ExportError(f"no NIR equivalent for IR node kind {node.kind}"
                              + (f": {why}" if why else ""), where=f"node '{name}'")
        ctx = _Ctx(name, dt, discretization, nir_for)
        nodes[name] = _keep_spike_variant(writer(node, ctx), node)
        if ctx.per_channel:
            per_channel.append(name)
    edges = [tuple(e) for e in graph.edges]
    if nir_for == "spyx":
        nodes, edges, renamed = _spyx_port_names(nodes, edges, graph)
        notes += renamed
    if nir_for in ("rockpool", "snntorch"):
        nodes, edges, nested = _nest_recurrent(nodes, edges, nir_for)
        notes += nested
    if nir_for == "snntorch" and any(isinstance(n, nir.NIRGraph) for n in nodes.values()):
        nodes, edges, renamed = _topological_names(nodes, edges)
        notes += renamed
    metadata: dict[str, Any] = {"dt": float(dt), "discretization": discretization,
                                "generator": f"sbc-deploy {__version__}", "sbc_nir_for": nir_for}
    reset = _reset_mode(graph)
    if reset is not None:
        metadata["reset"] = reset
    try:
        result = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata,
                              type_check=not per_channel)
    except (ValueError, TypeError, KeyError, AssertionError) as err:
        raise ExportError(f"nir rejected the graph: {type(err).__name__}: {err}",
                          where="graph") from err
    if per_channel:
        notes.append(f"parameters of {', '.join(per_channel)} written once per channel, "
                     "(C, 1, 1) (sinabs' importer fails on per-neuron arrays behind a "
                     "convolution)")
    for line in notes:
        log.info("--nir-for %s: %s", nir_for, line)
    return NirExport(result, nir_for, tuple(notes))


def _keep_spike_variant(written: nir.NIRNode, node: Any) -> nir.NIRNode:
    """Record a spiking neuron's spike variant (``sbc_deploy.ir.nodes``: fields that NIR has no
    parameter for) in the NIR node's metadata, flat keys ``sbc_fires_at_equal``,
    ``sbc_max_spikes`` (0: no cap), ``sbc_reset_timing``, ``sbc_v_min``, so that from_nir
    restores them (NIR -> sbc-deploy -> NIR keeps them). Only non-default fields are written."""
    if not (isinstance(node, Neuron) and node.spiking):
        return written
    variant = node.spike_variant()
    if not variant:
        return written
    keep: dict[str, Any] = {}
    for key, value in variant.items():
        if key == "max_spikes":
            keep["sbc_max_spikes"] = 0 if value is None else int(value)
        elif key == "v_min":
            keep["sbc_v_min"] = np.array(value, dtype=np.float64)
        else:
            keep[f"sbc_{key}"] = value
    written.metadata = {**(written.metadata or {}), **keep}
    return written


def _spyx_port_names(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]],
                     graph: Graph) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]],
                                            list[str]]:
    """spyx's importer walks the edges from the node named ``"input"`` to the one named
    ``"output"``: the single Input and Output get those names."""
    renames = {}
    for ports, wanted in ((graph.inputs, "input"), (graph.outputs, "output")):
        if len(ports) != 1:
            raise ExportError(f"spyx's importer follows one chain from 'input' to 'output'; "
                              f"this graph has {len(ports)} {wanted} nodes", where="--nir-for spyx")
        if ports[0] != wanted:
            if wanted in nodes:
                raise ExportError(f"a node other than the graph's {wanted} is named "
                                  f"'{wanted}'", where=f"node '{wanted}' (--nir-for spyx)")
            renames[ports[0]] = wanted
    if not renames:
        return nodes, edges, []
    nodes = {renames.get(k, k): v for k, v in nodes.items()}
    edges = [(renames.get(a, a), renames.get(b, b)) for a, b in edges]
    return nodes, edges, [f"'{old}' renamed '{new}' (spyx starts at 'input', stops at 'output')"
                          for old, new in renames.items()]


def _nest_recurrent(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]],
                    consumer: str) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]],
                                            list[str]]:
    """Wrap each ``neuron <-> weights`` cycle into the 4-node nested graph {input, lif, w_rec,
    output} with edges input -> lif, lif -> w_rec, w_rec -> lif, lif -> output.

    rockpool's importer maps such a graph (with a CubaLIF) to a recurrent LIFTorch and flat
    cycles to nothing. snntorch's importer nests a flat cycle itself
    (``_replace_rnn_subgraph_with_nirgraph``) but wires its input into the recurrent weights
    (``(input, w_rec)`` in ``_create_rnn_subgraph``) and nirtorch 2.6 then runs the subgraph's
    nodes one by one: nested here, the input reaches the neuron, as in RLeaky/RSynaptic."""
    kinds = (nir.CubaLIF,) if consumer == "rockpool" else (nir.LIF, nir.CubaLIF)
    notes = []
    for w_name, w_node in list(nodes.items()):
        if not isinstance(w_node, (nir.Affine, nir.Linear)):
            continue
        outs = [d for s, d in edges if s == w_name]
        ins = [s for s, d in edges if d == w_name]
        if len(outs) != 1 or ins != outs or not isinstance(nodes.get(outs[0]), kinds):
            continue
        lif_name = outs[0]
        if (consumer == "rockpool" and isinstance(w_node, nir.Affine)
                and np.any(np.asarray(w_node.bias) != 0)):
            raise ExportError("rockpool's recurrent LIF has no bias on its recurrent weights",
                              where=f"node '{w_name}' (--nir-for rockpool)")
        shape = np.array(nodes[lif_name].input_type["input"])
        sub = nir.NIRGraph(
            nodes={"input": nir.Input(input_type={"input": shape}), "lif": nodes[lif_name],
                   "w_rec": w_node, "output": nir.Output(output_type={"output": shape})},
            edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
            type_check=False)
        del nodes[w_name]
        nodes[lif_name] = sub
        edges = [e for e in edges if e not in ((lif_name, w_name), (w_name, lif_name))]
        notes.append(f"recurrent {type(nodes[lif_name].nodes['lif']).__name__} "
                     f"'{lif_name}' and weights '{w_name}' nested as one 4-node NIRGraph "
                     f"({consumer}'s recurrent layout)")
    return nodes, edges, notes


def _topological_names(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]]
                       ) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]], list[str]]:
    """Prefix every top-level name with its position in a topological order (``n00_input``,
    ``n01_...``): nirtorch 2.6 (snntorch's importer) visits the nodes in the file's order, which
    is the order of the names, and wires a nested graph a second time -- failing with
    "'GraphModule' object has no attribute 'items'" -- when it meets it before its input."""
    preds: dict[str, set[str]] = {n: {s for s, d in edges if d == n} for n in nodes}
    order: list[str] = []
    while len(order) < len(nodes):
        ready = sorted(n for n in nodes if n not in order and preds[n] <= set(order))
        if not ready:
            raise ExportError("the graph has a cycle outside a nested recurrent cell, which "
                              "snntorch's importer cannot order", where="--nir-for snntorch")
        order.extend(ready)
    width = len(str(len(order)))
    names = {old: f"n{i:0{width}d}_{old}" for i, old in enumerate(order)}
    return ({names[k]: v for k, v in nodes.items()},
            [(names[a], names[b]) for a, b in edges],
            ["node names prefixed with their topological position (n0_, n1_, ...): nirtorch 2.6 "
             "visits nodes in name order and fails on a nested graph met before its input"])


def to_nir(graph: Graph, *, nir_for: str = "nir") -> nir.NIRGraph:
    """The NIR graph of an IR graph (see the module docstring for the conventions).

    Raises:
        ExportError: a node NIR cannot express (named), or NIR's own type check failing.
    """
    return export_nir(graph, nir_for=nir_for).graph


def _old_layout(path: Path) -> None:
    """Make a file nir <= 1.0.4 reads: its reader passes every stored field to the node class,
    and ``v_reset`` (added in 1.0.5) is not one (sinabs pins nir <= 1.0.4). Only zero resets
    reach here (the adaptation refuses others)."""
    with h5py.File(path, "r+") as f:
        def strip(group: h5py.Group) -> None:
            for key in list(group.keys()):
                item = group[key]
                if isinstance(item, h5py.Group):
                    strip(item)
                elif key == "v_reset":
                    del group[key]
        strip(f["node"])


def write_nir_for(graph: Graph, path: str | Path, *, nir_for: str = "nir") -> NirExport:
    """Write ``graph`` as NIR for ``nir_for``, atomically; returns what was adapted."""
    path = check_writable(path)
    export = export_nir(graph, nir_for=nir_for)  # fail before touching the file system
    log.debug("writing %d NIR nodes to %s", len(export.graph.nodes), path)
    consumer = CONVENTIONS[nir_for].consumer
    old = nir_for != "nir" and consumer is not None and consumer.nir_layout == "1.0.4"

    def write(tmp: Path) -> None:
        nir.write(tmp, export.graph)
        if old:
            _old_layout(Path(tmp))

    notes = export.notes + (("written in nir 1.0.4's layout (no v_reset datasets)",)
                            if old else ())
    return NirExport(export.graph, nir_for, notes, write_atomic(path, write))


def write_nir(graph: Graph, path: str | Path, *, nir_for: str = "nir") -> Path:
    """Write ``graph`` as a NIR HDF5 file, atomically (a failure leaves ``path`` untouched).

    ``nir_for`` names the framework whose importer will read it (default ``"nir"``: the
    spec); :func:`write_nir_for` also returns what was adapted.

    Raises:
        ExportError: the graph cannot be expressed in NIR, or ``path`` is not writable.
    """
    result = write_nir_for(graph, path, nir_for=nir_for)
    assert result.path is not None
    return result.path
