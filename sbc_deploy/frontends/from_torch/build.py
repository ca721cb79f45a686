"""Build an IR graph from the events of one captured forward pass.

Stage contract: the events of :mod:`.capture` (leaf calls, ops) -> :class:`~sbc_deploy.ir.Graph`.

Every tensor the pass computes from the sample is bound to a :class:`Value`: a sum of IR node
outputs with coefficients (``x + identity`` is two terms, ``2 * x`` one term with coefficient 2),
its per-sample shape, and whether it was averaged or summed over time. A leaf call becomes one
IR node fed by its input's terms (several edges into one node add up, as in NIR; a coefficient
other than 1 becomes a ``Scale`` node). Ops that only move the batch and time axes
(``x_seq.flatten(0, 1)``, ``.view`` back, ``x[t]`` in a time loop, ``torch.stack`` of the steps)
leave the value as it is; a flatten of per-sample axes becomes a ``Flatten`` node. Anything else
binds an *unmappable* value that records what it was and where: it is refused only if it
reaches a node or the output, so a forward that computes side statistics still imports.

Products of two layers' outputs (SEW AND / IAND, spiking attention's ``k * v``, ``q @ k^T``)
become ``Product`` / ``MatMul`` nodes whose operands arrive at the ports ``a`` and ``b``; a
constant offset (IAND's ``1 - y``) becomes a ``ChannelAffine``. Per-sample ``permute`` /
``transpose``, ``reshape``, ``chunk`` / ``split`` and ``sum`` / ``mean`` over per-sample axes
become ``Permute``, ``Reshape`` (``Flatten`` for a merge of adjacent axes), ``Slice`` and
``Reduce`` nodes.

Loops over time repeat the same calls every step. The builder keys every node by what it is (a
leaf by its module path, a flatten or scale by its input and parameters), so step ``t`` finds
the nodes of step 0 again instead of unrolling the loop; a leaf called on a different input in
the same pass (weight sharing) is refused.

Batch and time axes. The sample is ``[T, B, *input]`` for sequence modules and ``[B, *input]``
for single-step ones, with ``B >= 2`` and ``B != T`` (``from_torch`` makes it so). A tensor's
per-sample shape is what follows the shortest prefix of its axes whose product is ``B`` or
``T * B``: ``[T, B, C, H, W]``, ``[T * B, C, H, W]`` and ``[B, C, H, W]`` all have ``(C, H, W)``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from sbc_deploy.errors import ShapeError, UnsupportedNodeError
from sbc_deploy.ir import (
    ChannelAffine,
    Flatten,
    Graph,
    Identity,
    Input,
    MatMul,
    Node,
    Output,
    Permute,
    Product,
    Reduce,
    Reshape,
    Scale,
    Slice,
    Synapse,
)

Shape = tuple[int, ...]

# Ops that never change a value, only its batch/time layout or dtype (checked by shape).
_LAYOUT_OPS = frozenset({"getitem", "view", "reshape", "flatten", "unflatten", "contiguous",
                         "clone", "detach", "to", "float", "double", "type_as", "view_as",
                         "reshape_as", "squeeze", "unsqueeze", "requires_grad_", "cpu",
                         "stack"})
_RESHAPE_OPS = frozenset({"view", "reshape", "flatten", "unflatten", "view_as", "reshape_as"})
_LINEAR_OPS = frozenset({"add", "radd", "iadd", "sub", "rsub", "isub", "mul", "rmul", "imul",
                         "truediv", "rtruediv", "itruediv", "div", "neg"})
_PERMUTE_OPS = frozenset({"permute", "transpose", "swapaxes", "swapdims"})
_SPLIT_OPS = frozenset({"chunk", "split", "tensor_split"})
_DROPOUT_OPS = frozenset({"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
                          "feature_alpha_dropout"})
SUPPORTED_OPS = ("+, - and * or / by a number between layers (residual sums, SEW ADD)",
                 "* and @ of two layers' outputs (SEW AND / IAND, spiking attention)",
                 "flatten / view / reshape / permute / transpose / chunk / split of per-sample "
                 "axes", "sum / mean over per-sample axes",
                 "moves of the batch and time axes (x_seq.flatten(0, 1), x[t], torch.stack)",
                 "mean or sum over time, followed only by linear layers (output decoding)",
                 "dropout in eval mode")


@dataclass(frozen=True)
class Value:
    """What a tensor of the pass is in IR terms.

    Attributes:
        terms: ``(node, coefficient)`` pairs: the tensor is ``sum(coefficient * node output)``.
        shape: per-sample shape.
        offset: a constant added to every element (``1 - y``); refused where it reaches a node.
        time_reduction: ``"mean"`` / ``"sum"`` when the tensor was reduced over time (only
            linear layers may follow; the output is then decoded that way).
        error: why the tensor cannot be mapped (raised where it reaches a node or the output).
    """

    terms: tuple[tuple[str, float], ...]
    shape: Shape
    offset: float = 0.0
    time_reduction: str | None = None
    error: str | None = None

    @staticmethod
    def node(name: str, shape: Shape, time_reduction: str | None = None) -> Value:
        return Value(((name, 1.0),), tuple(shape), time_reduction=time_reduction)

    @staticmethod
    def unmappable(message: str) -> Value:
        return Value((), (), error=message)


LeafHandler = Callable[["GraphBuilder", str, nn.Module, Value, Shape], Value]


def node_name(path: str) -> str:
    """An IR node name for a module path: ``layer1.0.conv1`` -> ``layer1_0_conv1``."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", path) or "module"
    return name if not name[0].isdigit() else f"m{name}"


def where(path: str, module: nn.Module | None = None) -> str:
    kind = f" ({type(module).__name__})" if module is not None else ""
    return f"module '{path}'{kind}" if path else f"the top-level forward{kind}"


class GraphBuilder:
    """The :class:`~.capture.Sink` that turns the events into IR nodes and edges."""

    def __init__(self, sample: torch.Tensor, *, sequence: bool, handler_for: Callable[
                 [str, nn.Module], LeafHandler], root_type: str):
        self.sequence = sequence
        self.steps = int(sample.shape[0]) if sequence else 1
        self.batch = int(sample.shape[1] if sequence else sample.shape[0])
        self.lead = {self.batch, self.steps * self.batch}
        self.handler_for = handler_for
        self.root_type = root_type
        self.nodes: dict[str, Node] = {}
        self.edges: list[tuple[str, str]] = []
        self.ports: dict[tuple[str, str], str] = {}   # edges into Product / MatMul nodes
        self._edge_set: set[tuple[str, str]] = set()
        self.values: dict[int, Value] = {}
        self._alive: list[torch.Tensor] = []   # keeps ids unique while they are mapped
        self.leaves: dict[str, tuple[Value, Value]] = {}
        self._keyed: dict[Any, str] = {}
        self.origin: dict[str, str] = {}       # node -> module path it came from
        self.resets: dict[str, str] = {}       # neuron node -> its framework's reset mode
        shape = self.per_sample(tuple(sample.shape))
        if shape is None:
            raise ShapeError(f"sample of shape {tuple(sample.shape)} has no per-sample axes",
                             where="from_torch(sample=)")
        self.nodes["input"] = Input(shape)
        self.bind(sample, Value.node("input", shape))

    # ------------------------------------------------------------------ values

    def per_sample(self, shape: Iterable[int]) -> Shape | None:
        """The axes after the shortest prefix whose product is ``B`` or ``T * B``."""
        dims = tuple(int(v) for v in shape)
        size = 1
        for i, d in enumerate(dims):
            size *= d
            if size in self.lead:
                rest = dims[i + 1:]
                return rest if rest else None
        return None

    def bind(self, tensor: torch.Tensor, value: Value) -> None:
        self.values[id(tensor)] = value
        self._alive.append(tensor)

    def value_of(self, obj: Any) -> Value | None:
        return self.values.get(id(obj)) if isinstance(obj, torch.Tensor) else None

    # ------------------------------------------------------------------ nodes and edges

    def unique(self, base: str) -> str:
        name, k = base, 1
        while name in self.nodes:
            k += 1
            name = f"{base}_{k}"
        return name

    def add_node(self, name: str, node: Node, source: Value | None, origin: str) -> str:
        if name in self.nodes:
            raise UnsupportedNodeError(f"two nodes would be called '{name}'", where=origin)
        self.nodes[name] = node
        self.origin[name] = origin
        if source is not None:
            self.connect(source, name)
        return name

    def add_edge(self, src: str, dst: str, port: str | None = None) -> None:
        if (src, dst) not in self._edge_set:
            self._edge_set.add((src, dst))
            self.edges.append((src, dst))
            if port is not None:
                self.ports[(src, dst)] = port

    def keyed(self, key: Any, make: Callable[[], str]) -> str:
        """The node made for ``key`` before (same op on the same input), else a new one."""
        if key not in self._keyed:
            self._keyed[key] = make()
        return self._keyed[key]

    def connect(self, value: Value, dst: str, port: str | None = None) -> None:
        """Edges that make ``value`` arrive at ``dst`` (at ``port`` of a Product / MatMul):
        ``Scale`` nodes for coefficients other than 1, a ``ChannelAffine`` for an offset."""
        check_mappable(value, f"the input of '{dst}'")
        if value.offset:
            self.add_edge(self.materialize(value), dst, port)
            return
        for src, coefficient in value.terms:
            if coefficient == 1.0:
                self.add_edge(src, dst, port)
                continue
            scale = self.keyed(("scale", src, coefficient), lambda s=src, c=coefficient: (
                self.add_node(self.unique(f"{s}_x{_number(c)}"),
                              Scale(np.full(value.shape, c)), Value.node(s, value.shape),
                              self.origin.get(s, ""))))
            self.add_edge(scale, dst, port)

    def materialize(self, value: Value) -> str:
        """One node whose output is ``value``: the node itself, else an ``Identity`` summing
        the terms, then a ``ChannelAffine`` for a scale and offset (``1 - y``)."""
        check_mappable(value, "an operand")
        if not value.offset and len(value.terms) == 1 and value.terms[0][1] == 1.0:
            return value.terms[0][0]
        key = ("materialize", value.terms, value.offset, value.shape)

        def make() -> str:
            base = "_".join(n for n, _ in value.terms[:2]) or "constant"
            if len(value.terms) == 1 and value.offset and len(value.shape) >= 1:
                (src, coefficient), = value.terms
                channels = value.shape[0]
                return self.add_node(self.unique(f"{src}_affine"), ChannelAffine(
                    np.full(channels, coefficient), np.full(channels, value.offset),
                    value.shape), Value.node(src, value.shape), self.origin.get(src, ""))
            total = self.add_node(self.unique(f"{base}_sum"), Identity(value.shape),
                                  replace(value, offset=0.0), "")
            if not value.offset:
                return total
            channels = value.shape[0]
            return self.add_node(self.unique(f"{base}_offset"), ChannelAffine(
                np.ones(channels), np.full(channels, value.offset), value.shape),
                Value.node(total, value.shape), "")

        return self.keyed(key, make)

    # ------------------------------------------------------------------ the sink

    def on_leaf(self, path: str, module: nn.Module, args: tuple[Any, ...],
                kwargs: dict[str, Any], output: Any) -> None:
        outputs = _tensors(output)
        inputs = [a for a in args if isinstance(a, torch.Tensor)]
        value = self.value_of(inputs[0]) if inputs else None
        if value is None:
            raise UnsupportedNodeError("is called on a tensor that was not computed from the "
                                       "sample (a constant or a stored state)",
                                       where=where(path, module))
        if not outputs:
            raise UnsupportedNodeError("returns no tensor", where=where(path, module))
        check_mappable(value, f"the input of {where(path, module)}")
        if path in self.leaves:   # the same call again (a loop over time)
            seen_input, result = self.leaves[path]
            if seen_input.terms != value.terms or seen_input.offset != value.offset:
                raise UnsupportedNodeError(
                    "is called twice on different inputs in one pass (a shared layer); each "
                    "layer must be one node of the graph", where=where(path, module))
        else:
            out_shape = self.per_sample(outputs[0].shape)
            if out_shape is None:
                raise ShapeError(f"output of shape {tuple(outputs[0].shape)} has no batch axis "
                                 "of the sample's size", where=where(path, module))
            result = self.handler_for(path, module)(self, path, module, value, out_shape)
            self.leaves[path] = (value, result)
        self.bind(outputs[0], result)
        for extra in outputs[1:]:   # e.g. snntorch's (spk, mem): the state is not an output
            if extra is outputs[0]:   # norse's LICell returns v and a state holding v itself
                continue
            self.bind(extra, Value.unmappable(
                f"{where(path, module)} returns a state tensor (a membrane potential) that is "
                "used as data; only its spikes (the first output) map to the IR"))

    def on_op(self, path: str, name: str, func: Callable[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any], output: Any) -> None:
        outputs = _tensors(output)
        if not outputs:
            return
        flat = list(_flatten_args(args)) + list(_flatten_args(tuple(kwargs.values())))
        traced = [a for a in flat if self.value_of(a) is not None]
        if not traced:
            return   # computed from constants only
        short = name.strip("_")
        if len(outputs) != 1:
            values = self._split(path, short, args, kwargs, traced, outputs)
            for out, value in zip(outputs, values):
                self.bind(out, value)
            return
        try:
            value = self._op(path, short, args, kwargs, traced, outputs[0])
        except Refused as err:
            value = Value.unmappable(str(err))
        self.bind(outputs[0], value)

    # ------------------------------------------------------------------ ops

    def _op(self, path: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
            traced: list[torch.Tensor], out: torch.Tensor) -> Value:
        """The value of one op outside the leaves (see the module docstring)."""
        values = [self.values[id(t)] for t in traced]
        for value in values:
            if value.error:
                return value
        first, x = values[0], traced[0]
        if name in _LINEAR_OPS:
            return self._linear(path, name, args, kwargs, out)
        out_shape = self.per_sample(out.shape)
        if name == "stack":
            if out_shape is not None and all(v == first for v in values) and \
                    out_shape == first.shape:
                return first
            raise Refused(f"torch.stack at {where(path)} stacks different tensors; only the "
                           "steps of one layer (a loop over time) can be stacked")
        if name in ("mean", "sum") and self._reduces_time(x, out):
            if first.time_reduction:
                raise Refused(f"{name} over time twice at {where(path)}")
            return replace(first, time_reduction=name)
        if name == "matmul" and len(values) == 2:
            return self.binary(path, "matmul", first, values[1], out_shape)
        if name in ("mean", "sum") and len(values) == 1 and out_shape is not None:
            return self._reduce(path, name, first, x, args, kwargs, out_shape)
        if name in _PERMUTE_OPS and len(values) == 1 and out_shape is not None:
            return self._permute(path, name, first, x, args, kwargs, out_shape)
        if name in _DROPOUT_OPS and not bool(kwargs.get("training", args[2] if len(args) > 2
                                                        else False)):
            return first
        if name == "get" and tuple(out.shape) == tuple(x.shape):   # a property: x.data
            return first
        if name in _LAYOUT_OPS and len(values) == 1 and out_shape is not None:
            if out_shape == first.shape:
                return first
            if name in _RESHAPE_OPS:
                return self.reshape(first, out_shape, path)
        raise Refused(f"torch op '{name}' at {where(path)} on a tensor of shape "
                       f"{tuple(x.shape)} has no IR equivalent; supported between layers: "
                       f"{'; '.join(SUPPORTED_OPS)}")

    def _reduces_time(self, x: torch.Tensor, out: torch.Tensor) -> bool:
        return (self.sequence and x.dim() >= 3 and tuple(x.shape[:2]) == (self.steps, self.batch)
                and tuple(out.shape) == tuple(x.shape[1:]))

    def _operand(self, obj: Any, path: str) -> Value | float:
        value = self.value_of(obj)
        if value is not None:
            return value
        if isinstance(obj, (int, float)) and not isinstance(obj, bool):
            return float(obj)
        if isinstance(obj, torch.Tensor) and obj.numel() == 1:
            return float(obj.item())
        raise Refused(f"an op at {where(path)} combines a layer's output with a constant "
                       f"tensor of shape {tuple(getattr(obj, 'shape', ()))}; not supported")

    def _linear(self, path: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                out: torch.Tensor) -> Value:
        """``+ - * /`` of values and numbers: a new linear combination of the same nodes."""
        out_shape = self.per_sample(out.shape)
        a = self._operand(args[0], path)
        if name == "neg":
            return _scaled(a, -1.0)  # type: ignore[arg-type]
        b = self._operand(args[1] if len(args) > 1 else kwargs.get("other"), path)
        alpha = float(kwargs.get("alpha", 1.0))
        both = isinstance(a, Value) and isinstance(b, Value)
        for operand in (a, b):
            if name in ("mul", "rmul", "imul") and both:
                break   # a Product broadcasts size-1 axes (checked by the node)
            if isinstance(operand, Value) and operand.shape != out_shape:
                raise Refused(f"'{name}' at {where(path)} broadcasts a tensor of per-sample "
                               f"shape {operand.shape} to {out_shape}; not supported")
        if name in ("add", "radd", "iadd"):
            return _combine(a, b, alpha)
        if name in ("sub", "isub"):
            return _combine(a, b, -alpha)
        if name == "rsub":   # Tensor.__rsub__(self, other) = other - self
            return _combine(b, a, -alpha)
        if name in ("mul", "rmul", "imul"):
            if isinstance(a, Value) and isinstance(b, Value):
                return self.binary(path, "product", a, b, out_shape)
            return (_scaled(a, b) if isinstance(a, Value)  # type: ignore[arg-type]
                    else _scaled(b, a))  # type: ignore[arg-type]
        if name in ("truediv", "itruediv", "div") and isinstance(a, Value) and \
                isinstance(b, float) and b != 0:
            return _scaled(a, 1.0 / b)
        raise Refused(f"'{name}' at {where(path)} divides by a layer's output; not supported")

    def reshape(self, value: Value, out_shape: Shape, path: str) -> Value:
        """A ``Flatten`` node when ``out_shape`` merges adjacent axes of ``value.shape``."""
        span = _merged_axes(value.shape, out_shape)
        if span is None:
            key = ("reshape", value.terms, value.offset, value.shape, out_shape)
            name = self.keyed(key, lambda: self.add_node(
                self.unique(f"{node_name(path) if path else 'forward'}_reshape"),
                Reshape(value.shape, out_shape), replace(value, time_reduction=None), path))
            return Value.node(name, out_shape, value.time_reduction)
        start, end = span
        key = ("flatten", value.terms, value.shape, start, end)
        name = self.keyed(key, lambda: self.add_node(
            self.unique(f"{node_name(path) if path else 'forward'}_flatten"),
            Flatten(input_shape=value.shape, start_dim=start, end_dim=end),
            replace(value, time_reduction=None), path))
        return Value.node(name, out_shape, value.time_reduction)

    def binary(self, path: str, kind: str, a: Value, b: Value, out_shape: Shape | None) -> Value:
        """A ``Product`` (``a * b``) or ``MatMul`` (``a @ b``) of two values."""
        if a.time_reduction or b.time_reduction:
            raise Refused(f"a product at {where(path)} of a tensor reduced over time")
        key = (kind, a.terms, a.offset, b.terms, b.offset, a.shape, b.shape)

        def make() -> str:
            node: Node = (Product(a.shape, b.shape) if kind == "product"
                          else MatMul(a.shape, b.shape))
            name = self.add_node(self.unique(f"{node_name(path) if path else 'forward'}_{kind}"),
                                 node, None, path)
            self.connect(a, name, "a")
            overlap = {n for n, _ in a.terms} & {n for n, _ in b.terms}
            if overlap:   # one source feeds one port of a node: name the other operand
                self.add_edge(self.keyed(("identity", b.terms, b.offset, b.shape),
                                         lambda: self._identity(b, path)), name, "b")
            else:
                self.connect(b, name, "b")
            return name

        name = self.keyed(key, make)
        shape = tuple(self.nodes[name].output_shape)
        if out_shape is not None and shape != out_shape:
            raise Refused(f"the IR's {kind} at {where(path)} gives shape {shape}, torch "
                           f"{out_shape}")
        return Value.node(name, shape)

    def _identity(self, value: Value, path: str) -> str:
        return self.add_node(self.unique(f"{node_name(path) if path else 'forward'}_operand"),
                             Identity(value.shape), value, path)

    def _lead(self, x: torch.Tensor, value: Value) -> int:
        return x.dim() - len(value.shape)

    def _reduce(self, path: str, name: str, value: Value, x: torch.Tensor, args: tuple[Any, ...],
                kwargs: dict[str, Any], out_shape: Shape) -> Value:
        """``x.sum(dims)`` / ``x.mean(dims)`` over per-sample axes: a ``Reduce`` node."""
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        keep = bool(kwargs.get("keepdim", args[2] if len(args) > 2 else False))
        if dims is None:
            raise Refused(f"'{name}' at {where(path)} reduces every axis, the batch included")
        lead = self._lead(x, value)
        axes = tuple(sorted(int(d) % x.dim() - lead for d in
                            (dims if isinstance(dims, (tuple, list)) else (dims,))))
        if any(a < 0 for a in axes):
            raise Refused(f"'{name}' at {where(path)} reduces the batch or time axis")
        key = ("reduce", value.terms, value.offset, value.shape, axes, name, keep)
        node_name_ = self.keyed(key, lambda: self.add_node(
            self.unique(f"{node_name(path) if path else 'forward'}_{name}"),
            Reduce(value.shape, axes, op=name, keepdims=keep),
            replace(value, time_reduction=None), path))
        if tuple(self.nodes[node_name_].output_shape) != out_shape:
            raise Refused(f"'{name}' at {where(path)}: the IR's Reduce gives "
                           f"{self.nodes[node_name_].output_shape}, torch {out_shape}")
        return Value.node(node_name_, out_shape, value.time_reduction)

    def _permute(self, path: str, name: str, value: Value, x: torch.Tensor,
                 args: tuple[Any, ...], kwargs: dict[str, Any], out_shape: Shape) -> Value:
        """``permute`` / ``transpose`` of per-sample axes: a ``Permute`` node."""
        ndim, lead = x.dim(), self._lead(x, value)
        if name == "permute":
            raw = kwargs.get("dims", args[1:] if len(args) > 2 or not isinstance(
                args[1] if len(args) > 1 else None, (tuple, list)) else args[1])
            order = [int(d) % ndim for d in raw]
        else:
            i = int(kwargs.get("dim0", args[1])) % ndim
            j = int(kwargs.get("dim1", args[2])) % ndim
            order = list(range(ndim))
            order[i], order[j] = order[j], order[i]
        if order[:lead] != list(range(lead)):
            raise Refused(f"'{name}' at {where(path)} moves the batch or time axis")
        dims = tuple(d - lead for d in order[lead:])
        if dims == tuple(range(len(dims))):
            return value
        key = ("permute", value.terms, value.offset, value.shape, dims)
        node = self.keyed(key, lambda: self.add_node(
            self.unique(f"{node_name(path) if path else 'forward'}_permute"),
            Permute(value.shape, dims), replace(value, time_reduction=None), path))
        return Value.node(node, out_shape, value.time_reduction)

    def _split(self, path: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
               traced: list[torch.Tensor], outputs: list[torch.Tensor]) -> list[Value]:
        """``chunk`` / ``split`` along a per-sample axis: one ``Slice`` node per piece."""
        x = traced[0]
        value = self.values[id(x)]
        if value.error or name not in _SPLIT_OPS or len(traced) != 1:
            message = value.error or f"torch op '{name}' at {where(path)} splits a tensor; " \
                                     "only chunk / split along a per-sample axis are supported"
            return [Value.unmappable(message)] * len(outputs)
        axis = next((d for d in range(x.dim()) if any(o.shape[d] != x.shape[d]
                                                      for o in outputs)), None)
        lead = self._lead(x, value)
        if axis is None or axis < lead:
            return [Value.unmappable(f"'{name}' at {where(path)} splits the batch or time "
                                     "axis")] * len(outputs)
        results, start = [], 0
        for piece in outputs:
            stop = start + int(piece.shape[axis])
            key = ("slice", value.terms, value.offset, value.shape, axis - lead, start, stop)
            node = self.keyed(key, lambda s=start, e=stop: self.add_node(
                self.unique(f"{node_name(path) if path else 'forward'}_slice"),
                Slice(value.shape, axis - lead, s, e), replace(value, time_reduction=None),
                path))
            shape = self.per_sample(piece.shape)
            results.append(Value.node(node, shape or (), value.time_reduction))
            start = stop
        return results

    # ------------------------------------------------------------------ the graph

    def finish(self, output: Any, metadata: Mapping[str, Any]) -> Graph:
        """Add the Output node, drop what does not reach it; the Graph (BatchNorms still as
        ``ChannelAffine`` nodes: ``layers.fold_batchnorms`` folds them)."""
        outputs = _tensors(output)
        value = self.value_of(outputs[0]) if outputs else None
        if value is None:
            raise UnsupportedNodeError("the forward returns no tensor computed from the sample",
                                       where=f"{self.root_type}.forward")
        check_mappable(value, "the output")
        self.nodes["output"] = Output(value.shape, metadata={"decoding": _decoding(self, value)})
        self.origin["output"] = ""
        self.connect(value, "output")
        self._prune()
        meta = {**metadata, "output_time_reduction": value.time_reduction,
                "torch_modules": {n: p for n, p in self.origin.items()
                                  if n in self.nodes and p}}
        return Graph(self.nodes, tuple(self.edges), float(metadata["dt"]), meta, self.ports)

    def _prune(self) -> None:
        """Remove every node from which the Output cannot be reached (unused side outputs)."""
        keep, todo = {"output"}, ["output"]
        while todo:
            name = todo.pop()
            for src, dst in self.edges:
                if dst == name and src not in keep:
                    keep.add(src)
                    todo.append(src)
        self.nodes = {n: node for n, node in self.nodes.items() if n in keep}
        self.edges = [(s, d) for s, d in self.edges if s in keep and d in keep]
        self.ports = {e: p for e, p in self.ports.items() if e[0] in keep and e[1] in keep}

    def successors(self, name: str) -> list[str]:
        return [d for s, d in self.edges if s == name]

    def predecessors(self, name: str) -> list[str]:
        return [s for s, d in self.edges if d == name]

    def synapse(self, name: str) -> Synapse | None:
        node = self.nodes.get(name)
        return node if isinstance(node, Synapse) else None


class Refused(Exception):
    """An op the IR cannot express; becomes an unmappable value (raised only if used)."""


def check_mappable(value: Value, what: str) -> None:
    if value.error:
        raise UnsupportedNodeError(value.error, where=what)


def _decoding(builder: GraphBuilder, value: Value) -> str:
    """How the output is read: spike counts of neurons, else the mean of the read-out."""
    from sbc_deploy.ir import Neuron

    sources = [builder.nodes.get(src) for src, _ in value.terms]
    spiking = all(isinstance(n, Neuron) and n.spiking for n in sources)
    return "spike_count" if spiking and value.time_reduction is None else "membrane_mean"


def _scaled(value: Value, factor: float) -> Value:
    terms = tuple((n, c * factor) for n, c in value.terms if c * factor != 0)
    return replace(value, terms=terms, offset=value.offset * factor)


def _combine(a: Value | float, b: Value | float, sign: float) -> Value:
    """``a + sign * b`` for values and numbers."""
    if isinstance(a, float) and isinstance(b, float):
        raise Refused("adds two numbers")
    base: Value = a if isinstance(a, Value) else b  # type: ignore[assignment]
    if isinstance(a, Value) and isinstance(b, Value) and a.time_reduction != b.time_reduction:
        raise Refused("adds a tensor reduced over time to one that is not")
    terms: dict[str, float] = {}
    offset = 0.0
    for operand, factor in ((a, 1.0), (b, sign)):
        if isinstance(operand, float):
            offset += factor * operand
            continue
        offset += factor * operand.offset
        for name, coefficient in operand.terms:
            terms[name] = terms.get(name, 0.0) + factor * coefficient
    return Value(tuple((n, c) for n, c in terms.items() if c != 0), base.shape, offset,
                 base.time_reduction)


def _merged_axes(before: Shape, after: Shape) -> tuple[int, int] | None:
    """``(start, end)`` when ``after`` is ``before`` with axes ``start..end`` merged."""
    for start in range(len(before)):
        if before[:start] != after[:start] or start >= len(after):
            break
        for end in range(start + 1, len(before)):
            if (after[start] == math.prod(before[start:end + 1])
                    and before[end + 1:] == after[start + 1:]):
                return start, end
    return None


def _number(value: float) -> str:
    text = f"{value:g}".replace("-", "m").replace(".", "p").replace("+", "")
    return re.sub(r"[^0-9A-Za-z]", "_", text)


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _tensors(item)]
    return []


def _flatten_args(args: tuple[Any, ...]) -> Iterable[Any]:
    for arg in args:
        if isinstance(arg, (tuple, list)):
            yield from _flatten_args(tuple(arg))
        else:
            yield arg
