r"""NIR -> IR: read a NIR graph (file or ``nir.NIRGraph``) into a discrete-time :class:`Graph`.

NIR is continuous time and stores neither a time step nor a reset mode, so both are explicit
inputs here and both are recorded in ``Graph.metadata`` with where they came from:

- ``dt``: the NIR graph's metadata ``"dt"`` when present, else the ``dt`` argument, else a
  :class:`ConfigError` (CLI flag ``--dt``). When both are given and differ the argument wins and
  the metadata records both. Each framework assumes its own ``dt`` when it writes NIR (snntorch
  1e-4 s hard-coded, norse 1e-3 s, rockpool derives it from ``r``), so no default is safe.
- ``reset``: the graph's metadata ``"reset"`` or ``"reset_mode"`` when present, else the
  argument, else a :class:`ConfigError` when the graph holds a spiking neuron (LIF, CubaLIF, IF).
  The argument wins over the metadata, as for ``dt``.

Continuous parameters become the IR's discrete ones (the input ``x[t]`` is an amplitude held for
one step, as the framework exporters assume: snntorch writes ``r = tau/dt`` so that
``dt * r / tau == 1``)::

    euler:  beta  = 1 - dt/tau_mem     gain     = dt * r / tau_mem      (= r * (1 - beta))
            alpha = 1 - dt/tau_syn     gain_syn = dt * w_in / tau_syn   (= w_in * (1 - alpha))
    exact:  beta  = exp(-dt/tau_mem)   gain     = r * (1 - beta)        (zero-order hold)
            alpha = exp(-dt/tau_syn)   gain_syn = w_in * (1 - alpha)
    IF, I:  v' = R I  ->  gain = dt * r  (both discretizations are exact for a held input)

``v_leak``, ``v_threshold`` and ``v_reset`` are copied; NIR neurons have no bias (0), except
that a node written by :mod:`sbc_deploy.exporters.to_nir` carries its IR bias in its metadata
(``"sbc_bias"``, folded into ``v_leak`` for other readers) and gets it back here.
``Delay`` is stored in seconds and becomes whole steps ``delay / dt`` (anything else is refused).

How the neurons fire and reset (the IR's spike variants: several spikes per step, ``>=``, the
reset timing, a lower clamp) is the writer's, which NIR does not store: it comes from the
framework's convention and its options (:func:`~sbc_deploy.frontends.conventions.spike_fields`;
``--from sinabs`` gives sinabs' MultiSpike, ``--from snntorch`` its delayed reset, the one-step
refractory zero reset of a recurrent or current-based snntorch neuron), and a node written by
sbc-deploy gets its own back from its metadata. An snntorch LIF with ``tau = r = inf`` (its
``beta = 1``) is an IF with gain 1.

Structure: nested ``NIRGraph`` nodes are flattened with names ``"sub.node"``; the subgraph's own
``Input``/``Output`` nodes are dropped and the parent's edges are rewired through them.
Recurrence is kept as it is (the IR finds the back edges). Roots that are not ``Input`` and
leaves that are not ``Output`` get an ``Input``/``Output`` named ``input_<key>``/``output_<key>``,
as ``nir.NIRGraph`` does on type checking. Shapes are inferred from the ``Input`` nodes and the
weights, so scalar (0-d) neuron parameters are broadcast to the shape of what feeds them (NIR
issue: 0-d ``tau`` from snntorch).

Flatten rule: torch-based exporters may count the batch axis in ``start_dim``/``end_dim``
(snntorch wrote ``start_dim=1`` for "after the batch"), while NIR and the IR index per-sample
axes. Both readings are computed from the inferred per-sample input shape; the one whose output
shape is what the consuming node expects (an Affine's ``n_in``, a convolution's input shape) is
taken. With no such constraint, or when both fit, the per-sample (NIR) reading is taken. The
stored dims are kept in the node metadata (``nir_start_dim``, ``nir_end_dim``, ``flatten_rule``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import h5py
import nir
import numpy as np

from sbc_deploy.errors import (
    ConfigError,
    FormatError,
    IRError,
    SbcDeployError,
    UnsupportedNodeError,
)
from sbc_deploy.frontends.conventions import (
    CONVENTIONS,
    Convention,
    Side,
    get_convention,
    parse_source,
    spike_fields,
    time_step_advice,
)
from sbc_deploy.frontends.nir_fixups import (
    detect_convention,
    hwc_to_chw_columns,
    rewire_spyx_recurrence,
    rockpool_dt,
    strip_batch_axes,
)
from sbc_deploy.ir import (
    IF,
    LI,
    LIF,
    RESETS,
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
    Node,
    Output,
    Scale,
    SumPool2d,
    Threshold,
    conv_output_length,
)

log = logging.getLogger(__name__)

NIR_CONVENTION = CONVENTIONS["nir"]
NIR_SIDE: Side = NIR_CONVENTION.producer  # type: ignore[assignment]

Discretization = Literal["euler", "exact"]
DISCRETIZATIONS: tuple[str, ...] = ("euler", "exact")
Shape = tuple[int, ...]

# NIR node types that produce spikes: a reset mode is needed only when one of them is present.
_SPIKING = (nir.LIF, nir.CubaLIF, nir.IF)


# --------------------------------------------------------------------------- reading


def _nir_type_names() -> tuple[str, ...]:
    return tuple(t.__name__ for t in _CONVERTERS) + ("NIRGraph",)


def _scan_types(group: Any, prefix: str, found: list[tuple[str, str]]) -> None:
    """Collect ``(node name, type)`` of every node under a NIR ``nodes`` group, recursively."""
    for key, node in group.items():
        name = f"{prefix}{key}"
        raw = node["type"][()] if "type" in node else b"<no type>"
        kind = raw.decode("utf8") if isinstance(raw, bytes) else str(raw)
        found.append((name, kind))
        if kind == "NIRGraph" and "nodes" in node:
            _scan_types(node["nodes"], f"{name}.", found)


def read_nir_file(path: str | Path) -> nir.NIRGraph:
    """Read a ``.nir`` file with the ``nir`` package, turning every failure into a clear error.

    Raises:
        FormatError: the file is missing, a directory, not HDF5, truncated, or not NIR.
        UnsupportedNodeError: the file holds node types this importer does not know (all named).
    """
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise FormatError("file does not exist", where=where)
    if path.is_dir():
        raise FormatError("is a directory, expected a .nir file", where=where)
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f or not isinstance(f["node"], h5py.Group):
                raise FormatError("HDF5 file is not a NIR graph (no /node group)", where=where,
                                  hint="netx files have a /layer group; load them with from_netx")
            found: list[tuple[str, str]] = []
            if "nodes" in f["node"]:
                _scan_types(f["node"]["nodes"], "", found)
            version = f["version"][()] if "version" in f else b"unknown"
    except FormatError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise FormatError(f"cannot be read as HDF5 (not HDF5, truncated or corrupt): {err}",
                          where=where) from err
    known = set(_nir_type_names())
    unsupported = [(name, kind) for name, kind in found if kind not in known]
    if unsupported:
        listing = ", ".join(f"'{name}' ({kind})" for name, kind in unsupported)
        raise UnsupportedNodeError(
            f"unsupported NIR node types: {listing}; supported: {', '.join(sorted(known))}",
            where=where)
    try:
        graph = nir.read(path, type_check=False)
    except (OSError, KeyError, ValueError, TypeError, AssertionError) as err:
        raise FormatError(f"is not a readable NIR graph: {type(err).__name__}: {err}",
                          where=where) from err
    if not isinstance(graph, nir.NIRGraph):
        raise FormatError(f"top-level NIR node is a {type(graph).__name__}, not a NIRGraph",
                          where=where)
    log.debug("read %s (NIR version %r)", path, version)
    return graph


# --------------------------------------------------------------------------- flattening


def _flatten_graph(graph: nir.NIRGraph, prefix: str = ""
                   ) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
    """Nested NIRGraphs -> one level, names ``"sub.node"``; subgraph ports are contracted."""
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    ports: list[str] = []  # subgraph Input/Output nodes, removed below (in a stable order)
    entry: dict[str, list[str]] = {}  # subgraph name -> its Input node names (flattened)
    exit_: dict[str, list[str]] = {}  # subgraph name -> its Output node names (flattened)
    for key, node in graph.nodes.items():
        name = f"{prefix}{key}"
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _flatten_graph(node, f"{name}.")
            inputs = [f"{name}.{k}" for k, n in node.nodes.items() if isinstance(n, nir.Input)]
            outputs = [f"{name}.{k}" for k, n in node.nodes.items() if isinstance(n, nir.Output)]
            if len(inputs) != 1 or len(outputs) != 1:
                raise UnsupportedNodeError(
                    f"a nested NIRGraph needs exactly one Input and one Output node, found "
                    f"{len(inputs)} and {len(outputs)}", where=f"node '{name}'")
            entry[name], exit_[name] = inputs, outputs
            ports.extend(inputs + outputs)
            nodes.update(sub_nodes)
            edges.extend(sub_edges)
        else:
            nodes[name] = node
    for src, dst in graph.edges:
        src, dst = f"{prefix}{src}", f"{prefix}{dst}"
        edges.append((exit_[src][0] if src in exit_ else src,
                      entry[dst][0] if dst in entry else dst))
    # contract the ports: p -> port -> s becomes p -> s, placed where the port's first edge was
    for port in ports:
        preds = [s for s, d in edges if d == port]
        succs = [d for s, d in edges if s == port]
        kept = [e for e in edges if port not in e]
        new = [(p, s) for p in preds for s in succs]
        duplicated = sorted({e for e in new if e in kept or new.count(e) > 1})
        if duplicated:
            raise UnsupportedNodeError(
                f"rewiring through subgraph port '{port}' would duplicate edges {duplicated}",
                where=f"node '{port}'")
        rewired: list[tuple[str, str]] = []
        for edge in edges:
            if port not in edge:
                rewired.append(edge)
            elif new:
                rewired.extend(new)
                new = []
        edges = rewired
        nodes.pop(port, None)
    return nodes, edges


# --------------------------------------------------------------------------- shapes


def _shape_of(value: Any) -> Shape | None:
    if value is None:
        return None
    array = np.asarray(value).reshape(-1)
    if array.size == 0:
        return None
    return tuple(int(v) for v in array)


def _pair(values: Any) -> tuple[int, int]:
    array = np.asarray(values).reshape(-1)
    if array.size == 1:
        array = np.repeat(array, 2)
    return int(array[0]), int(array[1])


def _params_shape(node: nir.NIRNode, names: tuple[str, ...]) -> Shape | None:
    shapes = [np.shape(np.asarray(getattr(node, n))) for n in names
              if getattr(node, n, None) is not None]
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        return None
    return tuple(int(v) for v in shape) or None


def _declared_input_shape(node: nir.NIRNode) -> Shape | None:
    """The per-sample input shape a node fixes by itself (None when its predecessor decides)."""
    if isinstance(node, nir.Input):
        return _shape_of(node.input_type.get("input"))
    if isinstance(node, (nir.Affine, nir.Linear)):
        return (int(np.asarray(node.weight).shape[-1]),)
    if isinstance(node, nir.Conv2d):
        if node.input_shape is None:
            return None
        return (int(node.weight.shape[1]) * int(node.groups), *_pair(node.input_shape))
    if isinstance(node, nir.Conv1d):
        if node.input_shape is None:
            return None
        length = int(np.asarray(node.input_shape).reshape(-1)[0])
        return (int(node.weight.shape[1]) * int(node.groups), length)
    params = _PARAMS.get(type(node))
    if params:
        return _params_shape(node, params)
    return None


def _conv_padding(node: nir.NIRNode, name: str, ndim: int) -> tuple[int, ...]:
    """NIR padding (int, pair, 'same', 'valid') -> symmetric integer padding per axis."""
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode("utf8")
    if isinstance(padding, np.ndarray) and padding.dtype.kind in "SUO":
        padding = str(padding.reshape(-1)[0])
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * ndim
        if padding != "same":
            raise UnsupportedNodeError(f"unknown padding {padding!r}", where=f"node '{name}'")
        stride = np.broadcast_to(np.asarray(node.stride).reshape(-1), (ndim,))
        dilation = np.broadcast_to(np.asarray(node.dilation).reshape(-1), (ndim,))
        kernel = node.weight.shape[2:]
        total = [int(d) * (int(k) - 1) for d, k in zip(dilation, kernel)]
        if np.any(stride != 1) or any(t % 2 for t in total):
            raise UnsupportedNodeError(
                "'same' padding needs stride 1 and an odd effective kernel (otherwise it is "
                f"asymmetric); stride={stride.tolist()}, kernel={list(kernel)}",
                where=f"node '{name}'")
        return tuple(t // 2 for t in total)
    array = np.asarray(padding).reshape(-1)
    if array.size == 1:
        array = np.repeat(array, ndim)
    return tuple(int(v) for v in array)


def _output_shape(node: nir.NIRNode, name: str, in_shape: Shape | None) -> Shape | None:
    if isinstance(node, nir.Input):
        return _shape_of(node.input_type.get("input"))
    if isinstance(node, nir.Output):
        return in_shape
    if isinstance(node, (nir.Affine, nir.Linear)):
        return (int(np.asarray(node.weight).shape[-2]),)
    if in_shape is None:
        return _declared_input_shape(node)
    if isinstance(node, nir.Conv2d):
        padding = _conv_padding(node, name, 2)
        stride, dilation = _pair(node.stride), _pair(node.dilation)
        kh, kw = node.weight.shape[2:]
        return (int(node.weight.shape[0]),
                conv_output_length(in_shape[-2], kh, stride[0], padding[0], dilation[0]),
                conv_output_length(in_shape[-1], kw, stride[1], padding[1], dilation[1]))
    if isinstance(node, nir.Conv1d):
        (padding,) = _conv_padding(node, name, 1)
        stride = int(np.asarray(node.stride).reshape(-1)[0])
        dilation = int(np.asarray(node.dilation).reshape(-1)[0])
        return (int(node.weight.shape[0]),
                conv_output_length(in_shape[-1], int(node.weight.shape[2]), stride, padding,
                                   dilation))
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        kernel, stride = _pair(node.kernel_size), _pair(node.stride)
        padding = _pair(node.padding)
        return (in_shape[0],
                *(conv_output_length(in_shape[1 + i], kernel[i], stride[i], padding[i], 1)
                  for i in range(2)))
    if isinstance(node, nir.Flatten):
        return None  # decided with the consumer, in _resolve_flatten
    return in_shape


def _flatten_shape(shape: Shape, start: int, end: int) -> Shape | None:
    ndim = len(shape)
    if not (-ndim <= start < ndim and -ndim <= end < ndim):
        return None
    start, end = start % ndim, end % ndim
    if start > end:
        return None
    return (*shape[:start], int(np.prod(shape[start:end + 1])), *shape[end + 1:])


@dataclass(frozen=True)
class _FlattenChoice:
    start_dim: int
    end_dim: int
    rule: str


def _resolve_flatten(node: nir.Flatten, in_shape: Shape, expected: Shape | None) -> _FlattenChoice:
    start, end = int(node.start_dim), int(node.end_dim)
    per_sample = _flatten_shape(in_shape, start, end)
    batch_end = end - 1 if end >= 0 else end
    with_batch = _flatten_shape(in_shape, start - 1, batch_end) if start >= 1 else None
    if expected is not None:
        if per_sample == expected:
            return _FlattenChoice(start, end, "per-sample dims (fits the consumer)")
        if with_batch == expected:
            return _FlattenChoice(start - 1, batch_end, "dims counted the batch axis "
                                  "(shifted by one to fit the consumer)")
    if per_sample is None and with_batch is not None:
        return _FlattenChoice(start - 1, batch_end, "dims counted the batch axis (only fit)")
    return _FlattenChoice(start, end, "per-sample dims (NIR semantics; no consumer constraint)")


# --------------------------------------------------------------------------- conversion


@dataclass(frozen=True)
class _Context:
    """Everything a node converter needs besides the NIR node."""

    name: str
    dt: float
    discretization: str
    reset: str | None
    in_shape: Shape | None
    flatten: _FlattenChoice | None = None
    side: Side = NIR_SIDE
    recurrent: bool = False  # the node lies on a cycle (a recurrent cell)

    @property
    def where(self) -> str:
        return f"node '{self.name}'"


def _array(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def _broadcast(ctx: _Context, **params: Any) -> dict[str, np.ndarray]:
    """Neuron/elementwise parameters; all-scalar ones take the shape of what feeds the node."""
    arrays = {k: _array(v) for k, v in params.items()}
    if all(a.ndim == 0 for a in arrays.values()):
        if ctx.in_shape is None:
            raise UnsupportedNodeError(
                "all parameters are scalars and no predecessor fixes the node's shape",
                where=ctx.where)
        return {k: np.broadcast_to(a, ctx.in_shape) for k, a in arrays.items()}
    if ctx.in_shape is not None and all(_fits(a.shape, ctx.in_shape) for a in arrays.values()):
        # broadcast parameters, e.g. one value per channel (C, 1, 1) behind a convolution
        return {k: np.broadcast_to(a, ctx.in_shape) for k, a in arrays.items()}
    return arrays


def _fits(shape: Shape, target: Shape) -> bool:
    """``shape`` broadcasts to ``target`` without changing it."""
    try:
        return np.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


def _tau_seconds(tau: np.ndarray, ctx: _Context) -> np.ndarray:
    """The producer's ``tau`` in seconds: as written (NIR), counted in steps (sinabs), or
    written as seconds times dt (norse 1.1.0: ``tau = dt / tau_mem_inv``)."""
    if ctx.side.tau_unit == "steps":
        return tau * ctx.dt
    if ctx.side.tau_unit == "seconds_times_dt":
        return tau / ctx.dt
    return tau


def _decay(tau: np.ndarray, ctx: _Context, what: str) -> np.ndarray:
    if np.any(tau <= 0):
        raise ConfigError(f"{what} must be positive, got minimum {tau.min():g}", where=ctx.where)
    tau = _tau_seconds(tau, ctx)
    if ctx.discretization == "exact":
        return np.exp(-ctx.dt / tau)
    decay = 1.0 - ctx.dt / tau
    if np.any(decay < 0):
        raise ConfigError(
            f"forward Euler needs dt <= {what}, but dt={ctx.dt:g} s and {what} has minimum "
            f"{tau.min():g} s (decay {decay.min():g} < 0)", where=ctx.where,
            hint="pass a smaller dt, or discretization='exact'")
    return decay


def _meta(node: nir.NIRNode, **extra: Any) -> dict[str, Any]:
    return {"nir_type": type(node).__name__, **extra}


def _restored_bias(node: nir.NIRNode, shape: Shape) -> np.ndarray:
    bias = (node.metadata or {}).get("sbc_bias")
    return np.zeros(shape) if bias is None else np.broadcast_to(_array(bias), shape)


def _restored_spike_variant(node: nir.NIRNode, converted: Node) -> Node:
    """A spiking neuron's spike variant as sbc-deploy's NIR exporter records it in the node's
    metadata (``sbc_fires_at_equal``, ``sbc_max_spikes`` with 0 for no cap,
    ``sbc_reset_timing``, ``sbc_v_min``; see ``exporters.to_nir._keep_spike_variant``)."""
    meta = node.metadata or {}
    if not (isinstance(converted, Neuron) and converted.spiking):
        return converted
    changes: dict[str, Any] = {}
    if "sbc_fires_at_equal" in meta:
        changes["fires_at_equal"] = bool(np.asarray(meta["sbc_fires_at_equal"]))
    if "sbc_max_spikes" in meta:
        cap = int(np.asarray(meta["sbc_max_spikes"]))
        changes["max_spikes"] = None if cap == 0 else cap
    if "sbc_reset_timing" in meta:
        timing = meta["sbc_reset_timing"]
        changes["reset_timing"] = timing.decode() if isinstance(timing, bytes) else str(timing)
    if "sbc_v_min" in meta:
        changes["v_min"] = _array(meta["sbc_v_min"])
    return converted.replace(**changes) if changes else converted


def _leaky(node: nir.NIRNode, ctx: _Context, tau: np.ndarray, r: np.ndarray,
           v_leak: np.ndarray) -> dict[str, np.ndarray]:
    beta = _decay(tau, ctx, "tau_mem")
    if ctx.side.gain == "one":  # the input is added as it is (r ignored or a label)
        gain = np.ones_like(beta)
    elif ctx.side.gain == "norm_input":  # sinabs: (1 - alpha) x, computed in float32 as sinabs
        gain = (np.float32(1.0) - beta.astype(np.float32)).astype(np.float64)
    elif ctx.side.gain == "one_minus_decay":  # norse box cells: dt / tau, r ignored
        gain = 1.0 - beta
    elif ctx.discretization == "exact":  # NIR, zero-order hold: r (1 - beta)
        gain = r * (1.0 - beta)
    else:  # NIR, forward Euler: dt r / tau (not r (1 - beta), which rounds to 0 for huge tau)
        gain = ctx.dt * r / _tau_seconds(tau, ctx)
    bias = _restored_bias(node, beta.shape)
    if ctx.side.v_leak_is_bias:  # rockpool: v_leak is the bias added per step
        return {"beta": beta, "gain": gain, "v_leak": np.zeros_like(beta),
                "bias": np.broadcast_to(v_leak, beta.shape).copy()}
    # an exported IR bias was folded into v_leak: (1 - beta) * v_leak_nir = (1-beta) v_leak + bias
    with np.errstate(divide="ignore", invalid="ignore"):
        v_leak = np.where(bias != 0, v_leak - bias / (1.0 - beta), v_leak)
    return {"beta": beta, "gain": gain, "v_leak": v_leak, "bias": bias}


def _synaptic(ctx: _Context, tau_syn: np.ndarray, w_in: np.ndarray) -> dict[str, np.ndarray]:
    alpha = _decay(tau_syn, ctx, "tau_syn")
    if ctx.side.syn_gain == "one":
        return {"alpha": alpha, "gain_syn": np.ones_like(alpha)}
    if ctx.side.syn_gain == "decay":  # rockpool: the input is added before the decay
        return {"alpha": alpha, "gain_syn": alpha.copy()}
    return {"alpha": alpha, "gain_syn": w_in * (1.0 - alpha)}


def _if_gain(r: np.ndarray, ctx: _Context) -> np.ndarray:
    """IF / I: NIR's ``v' = r I`` gives ``dt r`` per step; frameworks that count in steps
    (sinabs, norse's IAF, spyx) and snntorch (a Leaky with beta = 1) add ``r`` times the input
    per step."""
    return r.copy() if ctx.side.if_gain == "one" else ctx.dt * r


def _v_reset(node: Any, threshold: np.ndarray) -> np.ndarray:
    return np.zeros_like(threshold) if node.v_reset is None else _array(node.v_reset)


def _convert_input(node: nir.Input, ctx: _Context) -> Node:
    shape = _shape_of(node.input_type.get("input"))
    if shape is None:
        raise UnsupportedNodeError("Input node has no shape", where=ctx.where)
    return Input(shape, metadata=_meta(node))


def _convert_output(node: nir.Output, ctx: _Context) -> Node:
    shape = ctx.in_shape or _shape_of(node.output_type.get("output"))
    declared = _shape_of(node.output_type.get("output"))
    if declared is not None and ctx.in_shape is not None and declared != ctx.in_shape:
        stripped = declared
        while len(stripped) > len(ctx.in_shape) and stripped[0] == 1:
            stripped = stripped[1:]  # a batch axis in the port type (rockpool, nirtorch)
        if stripped == ctx.in_shape:
            log.info("Output '%s': dropped a batch axis from %s -> %s", ctx.name, declared,
                     stripped)
        else:
            shape = declared  # let the graph report the mismatch on the edge
    if shape is None:
        raise UnsupportedNodeError("Output node has no shape and nothing feeds it",
                                   where=ctx.where)
    return Output(shape, metadata=_meta(node))


def _convert_affine(node: nir.Affine, ctx: _Context) -> Node:
    return Affine(_array(node.weight), bias=_array(node.bias), metadata=_meta(node))


def _convert_linear(node: nir.Linear, ctx: _Context) -> Node:
    return Affine(_array(node.weight), bias=None, metadata=_meta(node))


def _conv_bias(node: Any) -> np.ndarray:
    return np.broadcast_to(_array(node.bias), (int(node.weight.shape[0]),))


def _convert_conv2d(node: nir.Conv2d, ctx: _Context) -> Node:
    in_shape = ctx.in_shape or _declared_input_shape(node)
    if in_shape is None:
        raise UnsupportedNodeError("cannot infer the input shape", where=ctx.where)
    return Conv2d(_array(node.weight), input_shape=in_shape, bias=_conv_bias(node),
                  stride=_pair(node.stride), padding=_conv_padding(node, ctx.name, 2),
                  dilation=_pair(node.dilation), groups=int(node.groups), metadata=_meta(node))


def _convert_conv1d(node: nir.Conv1d, ctx: _Context) -> Node:
    in_shape = ctx.in_shape or _declared_input_shape(node)
    if in_shape is None:
        raise UnsupportedNodeError("cannot infer the input shape", where=ctx.where)
    (padding,) = _conv_padding(node, ctx.name, 1)
    return Conv1d(_array(node.weight), input_shape=in_shape, bias=_conv_bias(node),
                  stride=int(np.asarray(node.stride).reshape(-1)[0]), padding=padding,
                  dilation=int(np.asarray(node.dilation).reshape(-1)[0]),
                  groups=int(node.groups), metadata=_meta(node))


def _pool(cls: type, node: Any, ctx: _Context) -> Node:
    if ctx.in_shape is None:
        raise UnsupportedNodeError("cannot infer the input shape", where=ctx.where)
    return cls(kernel_size=_pair(node.kernel_size), input_shape=ctx.in_shape,
               stride=_pair(node.stride), padding=_pair(node.padding), metadata=_meta(node))


def _convert_sumpool(node: nir.SumPool2d, ctx: _Context) -> Node:
    return _pool(SumPool2d, node, ctx)


def _convert_avgpool(node: nir.AvgPool2d, ctx: _Context) -> Node:
    return _pool(AvgPool2d, node, ctx)


def _convert_flatten(node: nir.Flatten, ctx: _Context) -> Node:
    in_shape = ctx.in_shape or _shape_of(node.input_type.get("input"))
    if in_shape is None:
        raise UnsupportedNodeError("cannot infer the input shape", where=ctx.where)
    choice = ctx.flatten or _FlattenChoice(int(node.start_dim), int(node.end_dim), "per-sample")
    return Flatten(in_shape, start_dim=choice.start_dim, end_dim=choice.end_dim,
                   metadata=_meta(node, nir_start_dim=int(node.start_dim),
                                  nir_end_dim=int(node.end_dim), flatten_rule=choice.rule))


def _convert_scale(node: nir.Scale, ctx: _Context) -> Node:
    return Scale(**_broadcast(ctx, scale=node.scale), metadata=_meta(node))


def _convert_threshold(node: nir.Threshold, ctx: _Context) -> Node:
    return Threshold(**_broadcast(ctx, threshold=node.threshold), metadata=_meta(node))


def _convert_delay(node: nir.Delay, ctx: _Context) -> Node:
    seconds = _broadcast(ctx, delay=node.delay)["delay"]
    steps = seconds / ctx.dt
    whole = np.round(steps)
    if np.any(np.abs(steps - whole) > 1e-6 * np.maximum(1.0, np.abs(steps))) or np.any(whole < 0):
        bad = seconds.reshape(-1)[np.argmax(np.abs(steps - whole).reshape(-1))]
        raise ConfigError(
            f"delay {bad:g} s is not a whole number of steps of dt={ctx.dt:g} s "
            f"({bad / ctx.dt:g} steps)", where=ctx.where,
            hint="choose a dt that divides every delay")
    return Delay(whole, metadata=_meta(node, delay_seconds=seconds.tolist()))


def _convert_i(node: nir.I, ctx: _Context) -> Node:
    params = _broadcast(ctx, r=node.r)
    bias = _restored_bias(node, params["r"].shape)
    return Integrator(gain=_if_gain(params["r"], ctx), bias=bias, metadata=_meta(node))


def _spiking(kind: str, ctx: _Context, v_threshold: np.ndarray) -> dict[str, Any]:
    """The spike-variant fields of a spiking node under the producer's convention."""
    return spike_fields(ctx.side, kind, ctx.reset or "zero", ctx.recurrent, v_threshold)


def _convert_if(node: nir.IF, ctx: _Context) -> Node:
    params = _broadcast(ctx, r=node.r, v_threshold=node.v_threshold,
                        v_reset=_v_reset(node, _array(node.v_threshold)))
    bias = _restored_bias(node, np.broadcast_shapes(*(p.shape for p in params.values())))
    if ctx.side.if_beta != 1.0:  # snntorch's importer: every IF is a Leaky(beta=0.9)
        r, v_thr, v_reset = np.broadcast_arrays(params["r"], params["v_threshold"],
                                                params["v_reset"])
        return LIF(beta=np.full(v_thr.shape, ctx.side.if_beta), gain=_if_gain(r, ctx),
                   v_threshold=v_thr.copy(), v_reset=v_reset.copy(), bias=bias,
                   reset=ctx.reset, metadata=_meta(node, read_as=f"LIF (IF with beta = "
                                                                 f"{ctx.side.if_beta:g})"),
                   **_spiking("LIF", ctx, v_thr))
    return IF(v_threshold=params["v_threshold"], gain=_if_gain(params["r"], ctx),
              v_reset=params["v_reset"], bias=bias, reset=ctx.reset, metadata=_meta(node),
              **_spiking("IF", ctx, params["v_threshold"]))


def _convert_li(node: nir.LI, ctx: _Context) -> Node:
    p = _broadcast(ctx, tau=node.tau, r=node.r, v_leak=node.v_leak)
    tau, r, v_leak = np.broadcast_arrays(p["tau"], p["r"], p["v_leak"])
    return LI(**_leaky(node, ctx, tau, r, v_leak), metadata=_meta(node))


def _convert_lif(node: nir.LIF, ctx: _Context) -> Node:
    p = _broadcast(ctx, tau=node.tau, r=node.r, v_leak=node.v_leak,
                   v_threshold=node.v_threshold, v_reset=_v_reset(node, _array(node.v_threshold)))
    tau, r, v_leak, v_thr, v_reset = np.broadcast_arrays(
        p["tau"], p["r"], p["v_leak"], p["v_threshold"], p["v_reset"])
    if ctx.side.r_is_tau_over_dt and np.all(np.isinf(tau)):
        # snntorch's beta = 1: tau = dt / (1 - beta) = inf and r = tau / dt = inf, gain
        # r dt / tau = 1 by construction: an integrate-and-fire neuron
        if np.any(v_leak != 0) or not np.all(np.isinf(r)):
            raise ConfigError("tau is infinite (beta = 1) but r or v_leak is not what "
                              "snntorch writes for it (r = tau / dt, v_leak = 0)",
                              where=ctx.where)
        return IF(v_threshold=v_thr, gain=np.ones_like(v_thr), v_reset=v_reset,
                  reset=ctx.reset, metadata=_meta(node, read_as="IF (tau = inf, beta = 1)"),
                  **_spiking("IF", ctx, v_thr))
    return LIF(**_leaky(node, ctx, tau, r, v_leak), v_threshold=v_thr, v_reset=v_reset,
               reset=ctx.reset, metadata=_meta(node), **_spiking("LIF", ctx, v_thr))


def _convert_cubali(node: nir.CubaLI, ctx: _Context) -> Node:
    p = _broadcast(ctx, tau_syn=node.tau_syn, tau_mem=node.tau_mem, r=node.r,
                   v_leak=node.v_leak, w_in=node.w_in)
    tau_syn, tau_mem, r, v_leak, w_in = np.broadcast_arrays(
        p["tau_syn"], p["tau_mem"], p["r"], p["v_leak"], p["w_in"])
    return CubaLI(**_synaptic(ctx, tau_syn, w_in), **_leaky(node, ctx, tau_mem, r, v_leak),
                  metadata=_meta(node))


def _convert_cubalif(node: nir.CubaLIF, ctx: _Context) -> Node:
    p = _broadcast(ctx, tau_syn=node.tau_syn, tau_mem=node.tau_mem, r=node.r,
                   v_leak=node.v_leak, w_in=node.w_in, v_threshold=node.v_threshold,
                   v_reset=_v_reset(node, _array(node.v_threshold)))
    tau_syn, tau_mem, r, v_leak, w_in, v_thr, v_reset = np.broadcast_arrays(
        p["tau_syn"], p["tau_mem"], p["r"], p["v_leak"], p["w_in"], p["v_threshold"],
        p["v_reset"])
    return CubaLIF(**_synaptic(ctx, tau_syn, w_in), **_leaky(node, ctx, tau_mem, r, v_leak),
                   v_threshold=v_thr, v_reset=v_reset, reset=ctx.reset, metadata=_meta(node),
                   **_spiking("CubaLIF", ctx, v_thr))


# NIR node type -> converter: the single dispatch table of this importer.
_CONVERTERS: dict[type, Callable[[Any, _Context], Node]] = {
    nir.Input: _convert_input,
    nir.Output: _convert_output,
    nir.Affine: _convert_affine,
    nir.Linear: _convert_linear,
    nir.Conv1d: _convert_conv1d,
    nir.Conv2d: _convert_conv2d,
    nir.SumPool2d: _convert_sumpool,
    nir.AvgPool2d: _convert_avgpool,
    nir.Flatten: _convert_flatten,
    nir.Scale: _convert_scale,
    nir.Delay: _convert_delay,
    nir.Threshold: _convert_threshold,
    nir.I: _convert_i,
    nir.IF: _convert_if,
    nir.LI: _convert_li,
    nir.LIF: _convert_lif,
    nir.CubaLI: _convert_cubali,
    nir.CubaLIF: _convert_cubalif,
}

# Parameters that fix the shape of elementwise nodes and neurons.
_PARAMS: dict[type, tuple[str, ...]] = {
    nir.Scale: ("scale",),
    nir.Delay: ("delay",),
    nir.Threshold: ("threshold",),
    nir.I: ("r",),
    nir.IF: ("r", "v_threshold"),
    nir.LI: ("tau", "r", "v_leak"),
    nir.LIF: ("tau", "r", "v_leak", "v_threshold"),
    nir.CubaLI: ("tau_syn", "tau_mem", "r", "v_leak"),
    nir.CubaLIF: ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold"),
}

SUPPORTED_NIR_TYPES: tuple[str, ...] = tuple(t.__name__ for t in _CONVERTERS)


# --------------------------------------------------------------------------- dt and reset


def _scalar(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf8")
    return value


def _resolve_dt(meta: Mapping[str, Any], dt: float | None, where: str) -> tuple[float, str]:
    file_dt = _scalar(meta["dt"]) if "dt" in meta else None
    if file_dt is not None:
        try:
            file_dt = float(file_dt)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"metadata 'dt' is not a number: {file_dt!r}", where=where) from err
        if not math.isfinite(file_dt) or file_dt <= 0:
            raise ConfigError(f"metadata 'dt' must be a positive number of seconds, got {file_dt}",
                              where=where)
    if dt is not None:
        if not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
            raise ConfigError(f"dt must be a positive number of seconds, got {dt!r}",
                              where="argument dt")
        if file_dt is None:
            return float(dt), "argument"
        if math.isclose(file_dt, dt, rel_tol=1e-12):
            return float(dt), "file metadata 'dt' (argument agrees)"
        return float(dt), f"argument (overrides file metadata dt={file_dt!r})"
    if file_dt is not None:
        return file_dt, "file metadata 'dt'"
    raise ConfigError("the NIR graph stores no time step and none was given", where=where,
                      hint="pass --from FRAMEWORK or dt in seconds (CLI flag --dt): "
                           + time_step_advice())


def _resolve_reset(meta: Mapping[str, Any], reset: str | None, needed: bool,
                   where: str) -> tuple[str | None, str]:
    file_reset = None
    for key in ("reset", "reset_mode"):
        if key in meta:
            value = _scalar(meta[key])
            if value not in RESETS:
                raise ConfigError(f"metadata '{key}' must be one of {RESETS}, got {value!r}",
                                  where=where)
            if file_reset is not None and value != file_reset:
                raise ConfigError(f"metadata 'reset' and 'reset_mode' disagree "
                                  f"({file_reset!r} vs {value!r})", where=where)
            file_reset = value
    if reset is not None:
        if reset not in RESETS:
            raise ConfigError(f"reset must be one of {RESETS}, got {reset!r}",
                              where="argument reset")
        if file_reset is None:
            return reset, "argument"
        if file_reset == reset:
            return reset, "file metadata (argument agrees)"
        return reset, f"argument (overrides file metadata reset={file_reset!r})"
    if file_reset is not None:
        return file_reset, "file metadata"
    if needed:
        raise ConfigError("the NIR graph holds spiking neurons but stores no reset mode and none "
                          "was given", where=where,
                          hint="pass reset='zero' or 'subtract' (CLI flag --reset); snntorch's "
                               "default is subtract, norse's and Lava's is zero")
    return None, "not needed (no spiking neurons)"


# --------------------------------------------------------------------------- the importer


def _graph_ports(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]]) -> None:
    """Add Input/Output nodes to roots/leaves that lack them (as nir.NIRGraph type checking)."""
    has_in = {d for _, d in edges}
    has_out = {s for s, _ in edges}
    for name in list(nodes):
        node = nodes[name]
        if name not in has_in and not isinstance(node, nir.Input):
            shape = _declared_input_shape(node)
            if shape is None:
                raise UnsupportedNodeError("has no incoming edge and no known input shape, so no "
                                           "Input node can be added", where=f"node '{name}'")
            nodes[f"input_{name}"] = nir.Input(input_type={"input": np.array(shape)})
            edges.insert(0, (f"input_{name}", name))
        if name not in has_out and not isinstance(node, nir.Output):
            nodes[f"output_{name}"] = nir.Output(output_type={"output": None})
            edges.append((name, f"output_{name}"))


def _infer_shapes(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]]
                  ) -> tuple[dict[str, Shape | None], dict[str, _FlattenChoice]]:
    """Per-node input shapes, propagated from the Inputs and the weights until nothing changes."""
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in edges:
        preds[dst].append(src)
        succs[src].append(dst)
    in_shape: dict[str, Shape | None] = {n: _declared_input_shape(nodes[n]) for n in nodes}
    out_shape: dict[str, Shape | None] = {}
    flatten: dict[str, _FlattenChoice] = {}
    for _ in range(len(nodes) + 1):
        changed = False
        for name, node in nodes.items():
            known = [out_shape[p] for p in preds[name] if out_shape.get(p) is not None]
            if in_shape[name] is None:
                if known:
                    in_shape[name], changed = known[0], True
            elif (known and type(node) in _PARAMS and known[0] != in_shape[name]
                  and _fits(in_shape[name], known[0])):
                in_shape[name], changed = known[0], True  # broadcast parameters
            if isinstance(node, nir.Flatten):
                source = in_shape[name] or _shape_of(node.input_type.get("input"))
                if source is None:
                    continue
                expected = [shape for shape in (_declared_input_shape(nodes[s])
                                                for s in succs[name]) if shape is not None]
                choice = _resolve_flatten(node, source, expected[0] if expected else None)
                shape = _flatten_shape(source, choice.start_dim, choice.end_dim)
                flatten[name] = choice
            else:
                shape = _output_shape(node, name, in_shape[name])
            if shape is not None and out_shape.get(name) != shape:
                out_shape[name], changed = shape, True
        if not changed:
            break
    return in_shape, flatten


def from_nir(source: str | Path | nir.NIRGraph, *, dt: float | None = None,
             reset: Literal["zero", "subtract"] | None = None,
             discretization: Discretization | None = None,
             framework: str | None = None) -> Graph:
    """Import a NIR graph into the discrete-time IR.

    Args:
        source: a ``.nir`` file path or an in-memory ``nir.NIRGraph``.
        dt: time step in seconds; used when the graph's metadata has no ``"dt"`` and wins over
            it when given (both are recorded).
        reset: ``"zero"`` or ``"subtract"``; needed when the graph has spiking neurons and its
            metadata has no ``"reset"``/``"reset_mode"``; wins over the metadata when given.
        discretization: ``"euler"`` (forward Euler) or ``"exact"``; None takes the graph's
            metadata ``"discretization"`` (sbc-deploy writes it), else the framework's own.
        framework: whose convention the numbers follow (a name in
            :data:`~sbc_deploy.frontends.conventions.CONVENTIONS`: ``"nir"``, ``"snntorch"``,
            ``"norse"``, ``"sinabs"``, ``"rockpool"``, ``"spyx"``); None detects it from the
            file where it gives its writer away (logged), else reads the NIR spec.

    Returns:
        A validated :class:`Graph` whose metadata records ``source_format``, ``source_file``,
        ``dt``, ``dt_source``, ``reset``, ``reset_source``, ``discretization`` (and its
        source), ``convention`` (and how it was chosen) and ``import_notes`` (what was adapted).

    Raises:
        FormatError: unreadable or non-NIR file.
        UnsupportedNodeError: node types (all named) or structures the IR cannot hold.
        ConfigError: missing or invalid ``dt``/``reset``, a delay that is not whole steps, an
            unknown framework, or a framework convention the file does not follow.
        ShapeError: shapes disagree along an edge (the edge is named).
    """
    if discretization is not None and discretization not in DISCRETIZATIONS:
        raise ConfigError(f"discretization must be one of {DISCRETIZATIONS}, got "
                          f"{discretization!r}", where="argument discretization")
    if framework is not None:
        get_convention(framework)
    if isinstance(source, nir.NIRGraph):
        graph, source_file, where = source, None, "NIR graph"
    elif isinstance(source, (str, Path)):
        graph, source_file, where = read_nir_file(source), str(source), str(source)
    else:
        raise ConfigError(f"source must be a path or a nir.NIRGraph, got {type(source).__name__}",
                          where="argument source")
    try:
        return _import(graph, source_file, dt, reset, discretization, framework, where)
    except SbcDeployError as err:
        if source_file is None or not (err.where or "").startswith(("node", "edge", "graph")):
            raise
        raise type(err)(err.message, where=f"{source_file}: {err.where}", hint=err.hint) from err


def _choose_convention(graph: nir.NIRGraph, nodes: Mapping[str, nir.NIRNode],
                       framework: str | None, where: str) -> tuple[Convention, str]:
    """The convention to read with: the argument (``NAME[:OPTION=VALUE,...]``), else the one
    the file gives away. Two frameworks that both fit are never chosen between silently: a
    :class:`ConfigError` asks for ``--from``."""
    detected, why, candidates = detect_convention(graph, nodes)
    if framework is not None:
        name, _ = parse_source(framework)
        if detected is not None and detected != name and detected in CONVENTIONS:
            log.warning("--from %s overrides the detected convention %s (%s)", framework,
                        detected, why)
            return get_convention(framework), f"argument (overrides detected {detected}: {why})"
        return get_convention(framework), "argument"
    if detected is None and len(candidates) > 1:
        raise ConfigError(f"cannot tell which framework wrote this file: {why}", where=where,
                          hint=f"pass --from {' or --from '.join(candidates)}")
    if detected is None or detected not in CONVENTIONS:
        if detected is not None:
            why = f"{why}, which names no known convention"
        log.log(logging.WARNING if "--from" in why else logging.INFO,
                "NIR convention: nir (spec); %s", why)
        return NIR_CONVENTION, f"default ({why})"
    log.info("NIR convention: %s, detected: %s", detected, why)
    return get_convention(detected), f"detected: {why}"


def _resolve_discretization(meta: Mapping[str, Any], argument: str | None, side: Side
                            ) -> tuple[str, str]:
    file_value = _scalar(meta["discretization"]) if "discretization" in meta else None
    if file_value not in DISCRETIZATIONS:
        file_value = None
    if argument is not None:
        if file_value is not None and file_value != argument:
            return argument, f"argument (overrides file metadata {file_value!r})"
        return argument, "argument"
    if file_value is not None:
        return file_value, "file metadata"
    return side.decay, "framework convention"


def _convention_dt(side: Side, name: str, nodes: Mapping[str, nir.NIRNode], where: str
                   ) -> tuple[float | None, str]:
    """The step a framework's numbers imply when neither the file nor the user gives one."""
    if side.dt_rule in ("fixed", "argument") and side.dt is not None:
        how = "hard-codes" if side.dt_rule == "fixed" else "defaults to"
        return side.dt, f"convention {name} ({name} {how} dt = {side.dt:g})"
    if side.dt_rule == "from_r":
        found = rockpool_dt(nodes)
        if found is None:
            raise ConfigError(f"the {name} convention encodes dt in r = tau exp(-dt/tau)/dt, but "
                              "the neurons' r values give no single dt", where=where,
                              hint="pass --dt, or --from nir if the file follows the spec")
        return found[0], f"convention {name} ({found[1]})"
    if side.dt_rule == "steps":
        raise ConfigError(f"{name} counts time in steps, so the file cannot say how long a step "
                          "is", where=where,
                          hint="pass --dt with the duration of one step (the bin width of your "
                               "data, e.g. 0.001)")
    return None, ""


# Long: the import's decisions in the order they depend on each other (convention, dt,
# discretization, reset, then the node conversions and the fix-ups they need), and the record of
# each decision and its source in the graph's metadata; each step is already one call.
def _import(graph: nir.NIRGraph, source_file: str | None, dt: float | None, reset: str | None,
            discretization: str | None, framework: str | None, where: str) -> Graph:
    nodes, edges = _flatten_graph(graph)
    for src, dst in edges:
        for end in (src, dst):
            if end not in nodes:
                raise IRError(f"names unknown node '{end}'", where=f"edge {src} -> {dst}")
    unsupported = [(n, type(v).__name__) for n, v in nodes.items() if type(v) not in _CONVERTERS]
    if unsupported:
        listing = ", ".join(f"'{n}' ({t})" for n, t in unsupported)
        raise UnsupportedNodeError(f"unsupported NIR node types: {listing}; supported: "
                                   f"{', '.join(SUPPORTED_NIR_TYPES)}", where=where)
    meta = dict(graph.metadata or {})
    convention, convention_source = _choose_convention(graph, nodes, framework, where)
    side = convention.producer or NIR_SIDE
    written_for = _scalar(meta["sbc_nir_for"]) if "sbc_nir_for" in meta else None
    if written_for == convention.name and convention.consumer is not None:
        # sbc-deploy wrote it for this framework's importer: its numbers and neurons follow the
        # consumer's convention (the model the importer builds, which the graph was converted
        # to before it was written), so the graph it was written from comes back
        side = convention.consumer
        convention_source += "; read as that framework's importer reads it (the file was " \
                             f"written by sbc-deploy for {convention.name})"
    notes: list[str] = []
    if "dt" in meta or dt is not None:
        step, dt_source = _resolve_dt(meta, dt, where)
    else:
        found, dt_source = _convention_dt(side, convention.name, nodes, where)
        step, dt_source = (found, dt_source) if found is not None else _resolve_dt(meta, dt, where)
    method, method_source = _resolve_discretization(meta, discretization, side)
    needed = any(isinstance(n, _SPIKING) for n in nodes.values())
    if reset is None and not any(k in meta for k in ("reset", "reset_mode")) and side.reset:
        reset_mode: str | None = side.reset
        reset_source = f"convention {convention.name}"
    else:
        reset_mode, reset_source = _resolve_reset(meta, reset, needed, where)
    notes += strip_batch_axes(nodes, edges, _declared_input_shape)
    if convention.name == "spyx":
        edges, rewired = rewire_spyx_recurrence(nodes, edges)
        notes += rewired
    _graph_ports(nodes, edges)
    in_shapes, flatten = _infer_shapes(nodes, edges)
    converted: dict[str, Node] = {}
    for name, node in nodes.items():
        ctx = _Context(name=name, dt=step, discretization=method,
                       reset=reset_mode or "zero", in_shape=in_shapes[name],
                       flatten=flatten.get(name), side=side,
                       recurrent=any(_reaches(edges, d, name) for s, d in edges if s == name))
        try:
            converted[name] = _restored_spike_variant(node, _CONVERTERS[type(node)](node, ctx))
        except SbcDeployError as err:
            if err.where is not None:
                raise
            raise type(err)(err.message, where=f"{ctx.where} (convention {convention.name})",
                            hint=err.hint) from err
    if side.flatten_order == "hwc":
        notes += _hwc_affines(converted, edges)
    if side.spike_delay:
        edges, delayed = _delay_spikes(converted, edges, side.spike_delay, convention.name)
        notes += delayed
    caveats = _caveats(convention, side, converted, reset_source,
                       {type(node).__name__ for node in nodes.values()})
    for line in notes:
        log.info("%s", line)
    for line in caveats:
        log.warning("%s", line)
    metadata = {
        "source_format": "nir",
        "source_file": source_file,
        "dt": step,
        "dt_source": dt_source,
        "reset": reset_mode,
        "reset_source": reset_source,
        "discretization": method,
        "discretization_source": method_source,
        "convention": convention.name,
        "convention_source": convention_source,
        "import_notes": tuple(notes),
        "convention_caveats": tuple(caveats),
    }
    if "dt" in meta:
        metadata["dt_file"] = float(_scalar(meta["dt"]))
    for key in ("reset", "reset_mode"):
        if key in meta:
            metadata["reset_file"] = _scalar(meta[key])
    log.info("imported NIR graph with %d nodes (convention %s, dt=%g s from %s, reset=%s from "
             "%s, %s discretization from %s)", len(converted), convention.name, step, dt_source,
             reset_mode, reset_source, method, method_source)
    return Graph(converted, tuple(edges), step, metadata)


def _hwc_affines(converted: dict[str, Node], edges: list[tuple[str, str]]) -> list[str]:
    """Spyx flattens channels-last tensors: put the columns behind a (C, H, W) Flatten back in
    NIR's (C, H, W) order."""
    notes = []
    for src, dst in edges:
        flat, affine = converted[src], converted[dst]
        if (isinstance(flat, Flatten) and isinstance(affine, Affine)
                and len(flat.input_shape) == 3 and len(flat.output_shape) == 1):
            weight = hwc_to_chw_columns(np.asarray(affine.weight), flat.input_shape)
            converted[dst] = affine.replace(weight=weight)
            notes.append(f"Affine '{dst}': columns reordered from spyx's (H, W, C) flatten "
                         f"order to (C, H, W) after Flatten '{src}'")
    return notes


def _reaches(edges: list[tuple[str, str]], start: str, goal: str) -> bool:
    seen, frontier = {start}, [start]
    while frontier:
        current = frontier.pop()
        if current == goal:
            return True
        for src, dst in edges:
            if src == current and dst not in seen:
                seen.add(dst)
                frontier.append(dst)
    return False


def _delay_spikes(converted: dict[str, Node], edges: list[tuple[str, str]], steps: int,
                  name: str) -> tuple[list[tuple[str, str]], list[str]]:
    """A framework whose spike at step t is the threshold crossing of step t-1 (spyx): each
    spiking neuron gets a Delay on the edges that leave its loop (its own recurrent weights
    read the crossing one step later through the recurrent edge already)."""
    notes = []
    for neuron in [n for n, node in converted.items()
                   if getattr(node, "spiking", False)]:
        leaving = [(s, d) for s, d in edges if s == neuron and not _reaches(edges, d, neuron)]
        if not leaving:
            continue
        delay = f"{neuron}.{name}_delay"
        converted[delay] = Delay(np.full(converted[neuron].output_shape, float(steps)),
                                 metadata={"inserted_for": f"{name} spike timing"})
        edges = [(delay, d) if (s, d) in leaving else (s, d) for s, d in edges]
        edges.append((neuron, delay))
        notes.append(f"{converted[neuron].kind} '{neuron}': a {steps}-step Delay on its output "
                     f"({name} sends the spike of the previous step's membrane)")
    return edges, notes


def _caveats(convention: Convention, side: Side, converted: Mapping[str, Node],
             reset_source: str, nir_types: set[str]) -> list[str]:
    """What the import assumed because the file cannot say it: the framework's defaults for
    its options (sinabs' spike_fn, snntorch's reset_delay, ...) that bear on the file's node
    types (``nir_types``) and its default reset. Said, so that a network built with other
    settings is read with the right ``--from`` options."""
    if not any(getattr(node, "spiking", False) for node in converted.values()):
        return []
    found = []
    assumed = [f"{o.name}={convention.settings.get(o.name, o.default)}"
               for o in convention.options if not o.concerns or set(o.concerns) & nir_types]
    if assumed:
        found.append(f"assumed {convention.name}'s settings {', '.join(assumed)} (the file does "
                     f"not record them; --from {convention.name}:OPTION=VALUE for others)")
    if reset_source.startswith("convention") and len(convention.resets) > 1:
        found.append(f"the file does not record the reset; assumed {convention.name}'s default "
                     f"{side.reset!r} (--reset for the other)")
    return found
