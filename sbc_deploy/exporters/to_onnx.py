r"""IR -> ONNX: the network over time, with its state explicit, in one ``Scan``.

The model maps each Input ``[T, B, *shape]`` to each Output ``[T, B, *shape]``. ``T`` is a
symbolic dimension (``"time"``): the same file runs any number of steps (the Scan iterates over
whatever time axis it is given); ``B`` is fixed or symbolic (``"batch"``). Outputs come in
float32, with exactly the float simulator's semantics
(:mod:`sbc_deploy.sim.float_sim`). Layout::

    graph inputs   x_<Input>            [T, B, *shape]
    Scan(initial state..., x_<Input>...)        scan axis 0 = time
      body(state..., x_t...) -> (state'..., y_t...)
        one step of every node, in topological order
    graph outputs  y_<Output>           [T, B, *shape]   (the Scan outputs stacked over time)

Loop-carried state (zero before the first step, except a recurrent edge's previous value, which
starts at its source's value at rest: a synapse's bias; shapes per sample behind a batch axis):

- every neuron: ``v`` (and the synaptic current ``i`` of CubaLIF / CubaLI);
- every Delay with a non-zero delay: its last ``D`` inputs, ``[D, B, *shape]``;
- every source of a recurrent edge: its output of the previous step.

Weights and neuron constants are initializers of the outer graph that the Scan body reads
(outer-scope references). Each neuron step is the float simulator's equation, operation for
operation (``Mul``/``Add`` in the same order); a spike is ``Greater -> Cast``, the reset a
``Where`` on the comparison. Every spike variant of ``sbc_deploy.ir.nodes`` is expressed too:
``v >= thr`` is ``GreaterOrEqual``; a multi-spike count ``Div -> Floor`` (or ``Ceil`` minus one)
``-> Clip``; a reset after the next decay keeps the previous step's counts as one more
loop-carried state (``<neuron>/c``); the lower clamp is ``Relu(v - v_min) + v_min``. Convolutions are ONNX ``Conv`` (cross-correlation, as PyTorch);
a SumPool2d is a grouped ``Conv`` with a kernel of ones; an AvgPool2d an explicit zero ``Pad``
and an ``AveragePool``.

Graph operations (issue 18): MaxPool2d is ``MaxPool`` (ONNX ignores its padding, as PyTorch's
-inf padding); an AdaptiveAvgPool2d whose sizes divide is an ``AveragePool``, otherwise two
``MatMul`` with PyTorch's window-averaging matrices (``y = A_h x A_w^T``: the windows are
rectangles, so the mean is separable); ChannelAffine ``Mul`` + ``Add``; LayerNorm
``LayerNormalization``; Identity, Reshape, Permute (``Transpose``), Slice, Reduce (``ReduceSum``
/ ``ReduceMean``) as named; Product ``Mul`` and MatMul ``MatMul`` (times its scale) on the two
operands in their port order.

The file is checked with ``onnx.checker.check_model(full_check=True)`` before it is written,
atomically. Graph metadata (``dt``, the layout, the reset modes) goes into
``metadata_props``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sbc_deploy.errors import ConfigError, ExportError
from sbc_deploy.fileio import check_writable, write_atomic
from sbc_deploy.ir import (
    AdaptiveAvgPool2d,
    Affine,
    AvgPool2d,
    ChannelAffine,
    Conv1d,
    Conv2d,
    Delay,
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
    Scale,
    Slice,
    SumPool2d,
    Threshold,
    adaptive_windows,
)
from sbc_deploy.sim.float_sim import (
    NeuronConstants,
    is_plain,
    neuron_constants,
    recurrent_rest_values,
)

log = logging.getLogger(__name__)

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17; onnxruntime reads it
FLOAT = TensorProto.FLOAT
TIME = "time"  # the symbolic time dimension of every graph input and output


class _Builder:
    """Collects the outer graph's initializers and nodes and the Scan body's nodes."""

    def __init__(self) -> None:
        self.initializers: list[TensorProto] = []
        self.outer: list[onnx.NodeProto] = []
        self.body: list[onnx.NodeProto] = []
        self._count = 0

    def constant(self, name: str, values: Any, dtype: type = np.float32) -> str:
        """An outer-graph initializer (the Scan body may read it)."""
        self.initializers.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None,
           outer: bool = False, **attrs: Any) -> str:
        """Append one node and return the name of its (single) output."""
        self._count += 1
        output = output or f"t{self._count}/{op_type}"
        node = helper.make_node(op_type, inputs, [output], name=f"n{self._count}/{op_type}",
                                **attrs)
        (self.outer if outer else self.body).append(node)
        return output


class _State:
    """One loop-carried value: its name in the body, its initial value's shape (no batch)."""

    def __init__(self, name: str, shape: tuple[int, ...], lead: tuple[int, ...] = ()) -> None:
        self.name, self.shape, self.lead = name, shape, lead
        self.next: str | None = None  # the body output holding the next step's value


def _value_info(name: str, dims: list[Any]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, FLOAT, dims)


def _add_all(b: _Builder, terms: list[str]) -> str:
    total = terms[0]
    for term in terms[1:]:
        total = b.op("Add", [total, term])
    return total


def _neuron(b: _Builder, name: str, node: Neuron, x: str,
            states: dict[str, _State]) -> str:
    """One neuron step, the float simulator's ``neuron_step`` op for op."""
    c = neuron_constants(node)
    used = ["alpha", "gain_syn", "beta", "gain", "drive", "v_threshold"]
    used += [] if c.subtract else ["v_reset"]
    p = {field: b.constant(f"{name}/{field}", getattr(c, field)) for field in used
         if getattr(c, field) is not None}
    if c.alpha is not None:
        i_state = states[f"{name}/i"]
        # i[t] = alpha * i[t-1] + gain_syn * x[t]
        i = b.op("Add", [b.op("Mul", [p["alpha"], i_state.name]), b.op("Mul", [p["gain_syn"], x])])
        i_state.next = b.op("Identity", [i], f"{name}/i_next")
        x = i
    v_state = states[f"{name}/v"]
    # v[t] = beta * v[t-1] + (gain * x[t] + drive),  drive = (1 - beta) * v_leak + bias
    v = b.op("Add", [b.op("Mul", [p["beta"], v_state.name]),
                     b.op("Add", [b.op("Mul", [p["gain"], x]), p["drive"]])])
    if c.v_threshold is None:
        v_state.next = b.op("Identity", [v], f"{name}/v_next")
        return v
    if not is_plain(c):
        return _fire(b, name, c, v, v_state, states)
    # s[t] = v[t] > v_threshold  (Heaviside as a comparison)
    spike = b.op("Greater", [v, p["v_threshold"]])
    if c.subtract:
        # v[t] <- v[t] - v_threshold where s[t]
        reset = b.op("Sub", [v, p["v_threshold"]])
    else:
        # v[t] <- v_reset where s[t]
        reset = p["v_reset"]
    v_state.next = b.op("Where", [spike, reset, v], f"{name}/v_next")
    return b.op("Cast", [spike], to=FLOAT)


def _count(b: _Builder, name: str, c: NeuronConstants, u: str, tag: str) -> str:
    """``spike_count`` of the float simulator: ``[u > thr]`` / ``[u >= thr]``, or
    ``floor(u / thr)`` / ``ceil(u / thr) - 1`` clipped to ``[0, max_spikes]``, as floats."""
    thr = f"{name}/v_threshold"
    if c.max_spikes == 1:
        above = b.op("GreaterOrEqual" if c.fires_at_equal else "Greater", [u, thr])
        return b.op("Cast", [above], to=FLOAT)
    quotient = b.op("Div", [u, thr])
    if c.fires_at_equal:
        count = b.op("Floor", [quotient])
    else:
        count = b.op("Sub", [b.op("Ceil", [quotient]), b.constant(f"{name}/one{tag}", 1.0)])
    high = [] if c.max_spikes is None else [b.constant(f"{name}/cap{tag}", float(c.max_spikes))]
    return b.op("Clip", [count, b.constant(f"{name}/clip_low{tag}", 0.0), *high])


def _fire(b: _Builder, name: str, c: NeuronConstants, u: str, v_state: _State,
          states: dict[str, _State]) -> str:
    """The spike-variant end of a step, the float simulator's ``_fire`` op for op."""
    thr, v_reset = f"{name}/v_threshold", f"{name}/v_reset"
    zero = b.constant(f"{name}/zero", 0.0)
    if c.reset_timing == "next_step":
        pending = states[f"{name}/c"].name
        if c.subtract:
            # u[t] <- u[t] - c[t-1] * v_threshold
            u = b.op("Sub", [u, b.op("Mul", [pending, thr])])
        else:
            # u[t] <- v_reset where c[t-1] > 0
            u = b.op("Where", [b.op("Greater", [pending, zero]), v_reset, u])
    if c.reset_timing == "same_step_raised":
        # r[t] = [v[t-1] > thr];  c[t] = [u[t] - r[t] * thr > thr]
        raised = _count(b, name, c, v_state.name, "r")
        count = _count(b, name, c, b.op("Sub", [u, b.op("Mul", [raised, thr])]), "")
    else:
        count = _count(b, name, c, u, "")
    v = u
    if c.reset_timing != "next_step":
        if c.subtract:
            # v[t] = u[t] - c[t] * v_threshold
            v = b.op("Sub", [u, b.op("Mul", [count, thr])])
        else:
            # v[t] = v_reset where c[t] > 0
            v = b.op("Where", [b.op("Greater", [count, zero]), v_reset, u])
    if c.v_min is not None:
        # v[t] <- relu(v[t] - v_min) + v_min
        v_min = b.constant(f"{name}/v_min", c.v_min)
        v = b.op("Add", [b.op("Relu", [b.op("Sub", [v, v_min])]), v_min])
    v_state.next = b.op("Identity", [v], f"{name}/v_next")
    if c.reset_timing == "next_step":
        states[f"{name}/c"].next = b.op("Identity", [count], f"{name}/c_next")
    return count


def _step(b: _Builder, name: str, node: Any, x: str, states: dict[str, _State]) -> str:
    """The body nodes of one graph node; returns its output at step t, ``[B, *shape]``."""
    if isinstance(node, Output):
        return x
    if isinstance(node, Affine):
        weight = b.constant(f"{name}/weight", node.weight)
        inputs = [x, weight] + ([b.constant(f"{name}/bias", node.bias)]
                                if node.bias is not None else [])
        # y = W x + b
        return b.op("Gemm", inputs, transB=1)
    if isinstance(node, (Conv1d, Conv2d)):
        pads = list(np.atleast_1d(node.padding))
        inputs = [x, b.constant(f"{name}/weight", node.weight)]
        if node.bias is not None:
            inputs.append(b.constant(f"{name}/bias", node.bias))
        # y = W (*) x + b, cross-correlation
        return b.op("Conv", inputs, strides=list(np.atleast_1d(node.stride)), pads=pads + pads,
                    dilations=list(np.atleast_1d(node.dilation)), group=node.groups)
    if isinstance(node, SumPool2d):
        channels = node.input_shape[0]
        ones = b.constant(f"{name}/ones", np.ones((channels, 1, *node.kernel_size)))
        # y = sum over each window (zero padding)
        return b.op("Conv", [x, ones], strides=list(node.stride), group=channels,
                    pads=list(node.padding) * 2)
    if isinstance(node, AvgPool2d):
        ph, pw = node.padding
        if ph or pw:
            pads = b.constant(f"{name}/pads", [0, 0, ph, pw, 0, 0, ph, pw], np.int64)
            x = b.op("Pad", [x, pads])
        # y = mean over each window, padding counted as zeros
        return b.op("AveragePool", [x], kernel_shape=list(node.kernel_size),
                    strides=list(node.stride))
    if isinstance(node, Flatten):
        shape = b.constant(f"{name}/shape", [-1, *node.output_shape], np.int64)
        return b.op("Reshape", [x, shape])
    if isinstance(node, Scale):
        return b.op("Mul", [b.constant(f"{name}/scale", node.scale), x])
    if isinstance(node, Threshold):
        # y = x > threshold
        above = b.op("Greater", [x, b.constant(f"{name}/threshold", node.threshold)])
        return b.op("Cast", [above], to=FLOAT)
    if isinstance(node, Delay):
        if node.max_delay == 0:
            return x
        history = states[f"{name}/history"]
        # window[k] = x[t - k]; y = window[delay] per element; history' = window[:D]
        axis0 = b.constant(f"{name}/axis0", [0], np.int64)
        window = b.op("Concat", [b.op("Unsqueeze", [x, axis0]), history.name], axis=0)
        onehot = (np.arange(node.max_delay + 1).reshape(-1, *[1] * len(node.shape))
                  == node.delay[None]).astype(np.float32)[:, None]
        picked = b.op("Mul", [window, b.constant(f"{name}/onehot", onehot)])
        starts = b.constant(f"{name}/start", [0], np.int64)
        ends = b.constant(f"{name}/end", [node.max_delay], np.int64)
        history.next = b.op("Slice", [window, starts, ends, axis0], f"{name}/history_next")
        return b.op("ReduceSum", [picked, axis0], keepdims=0)
    if isinstance(node, Neuron):
        return _neuron(b, name, node, x, states)
    op = _operation(b, name, node, x)
    if op is not None:
        return op
    raise ExportError(f"ONNX export has no translation for node type {type(node).__name__}",
                      where=f"node '{name}'")


def _averaging(length: int, out: int) -> np.ndarray:
    """``[out, length]``: row ``i`` averages PyTorch's adaptive window ``i``."""
    matrix = np.zeros((out, length))
    for i, (start, stop) in enumerate(adaptive_windows(length, out)):
        matrix[i, start:stop] = 1.0 / (stop - start)
    return matrix


def _operation(b: _Builder, name: str, node: Any, x: str) -> str | None:
    """The body nodes of one weightless graph operation (None: not one of them)."""
    if isinstance(node, MaxPool2d):
        # y = max over each window (padding never wins)
        return b.op("MaxPool", [x], kernel_shape=list(node.kernel_size),
                    strides=list(node.stride), pads=list(node.padding) * 2)
    if isinstance(node, AdaptiveAvgPool2d):
        lowered = node.as_avg_pool()
        if lowered is not None:
            return b.op("AveragePool", [x], kernel_shape=list(lowered.kernel_size),
                        strides=list(lowered.stride))
        _, h, w = node.input_shape
        rows = b.constant(f"{name}/rows", _averaging(h, node.output_size[0]))
        cols = b.constant(f"{name}/cols", _averaging(w, node.output_size[1]).T)
        # y = A_h x A_w^T: the mean over each (rectangular) adaptive window
        return b.op("MatMul", [b.op("MatMul", [rows, x]), cols])
    if isinstance(node, ChannelAffine):
        view = (-1, *[1] * (len(node.input_shape) - 1))
        scale = b.constant(f"{name}/scale", node.scale.reshape(view))
        shift = b.constant(f"{name}/shift", node.shift.reshape(view))
        # y[c] = scale[c] * x[c] + shift[c]
        return b.op("Add", [b.op("Mul", [x, scale]), shift])
    if isinstance(node, LayerNorm):
        # y = (x - mean) / sqrt(var + eps) * weight + bias over the trailing axes
        return b.op("LayerNormalization", [x, b.constant(f"{name}/weight", node.weight),
                                           b.constant(f"{name}/bias", node.bias)],
                    axis=-node.weight.ndim, epsilon=node.eps)
    if isinstance(node, Identity):
        return b.op("Identity", [x])
    if isinstance(node, Reshape):
        shape = b.constant(f"{name}/shape", [-1, *node.output_shape], np.int64)
        return b.op("Reshape", [x, shape])
    if isinstance(node, Permute):
        return b.op("Transpose", [x], perm=[0, *(d + 1 for d in node.dims)])
    if isinstance(node, Slice):
        return b.op("Slice", [x, b.constant(f"{name}/start", [node.start], np.int64),
                              b.constant(f"{name}/stop", [node.stop], np.int64),
                              b.constant(f"{name}/axis", [node.axis + 1], np.int64)])
    if isinstance(node, Reduce):
        axes = [a + 1 for a in node.axes]
        if node.op == "sum":
            return b.op("ReduceSum", [x, b.constant(f"{name}/axes", axes, np.int64)],
                        keepdims=int(node.keepdims))
        return b.op("ReduceMean", [x], axes=axes, keepdims=int(node.keepdims))
    return None


def _binary(b: _Builder, name: str, node: Product | MatMul, a: str, bb: str) -> str:
    """``a * b`` or ``scale * (a @ b)`` on the operands in port order."""
    if isinstance(node, Product):
        return b.op("Mul", [a, bb])
    y = b.op("MatMul", [a, bb])
    if node.scale == 1.0:
        return y
    return b.op("Mul", [y, b.constant(f"{name}/scale", np.float32(node.scale))])


def _states(graph: Graph) -> dict[str, _State]:
    states: dict[str, _State] = {}
    for name in graph.topological_order:
        node = graph.nodes[name]
        if isinstance(node, Neuron):
            if node.current_based:
                states[f"{name}/i"] = _State(f"{name}/i", node.shape)
            states[f"{name}/v"] = _State(f"{name}/v", node.shape)
            if node.spiking and getattr(node, "reset_timing", "") == "next_step":
                states[f"{name}/c"] = _State(f"{name}/c", node.shape)
        elif isinstance(node, Delay) and node.max_delay > 0:
            states[f"{name}/history"] = _State(f"{name}/history", node.shape,
                                               lead=(node.max_delay,))
    for src in sorted({src for src, _ in graph.recurrent_edges}):
        states[f"{src}/previous"] = _State(f"{src}/previous", graph.nodes[src].output_shape)
    return states


def build_onnx(graph: Graph, *, steps: int | None = None,
               batch: int | None = None) -> onnx.ModelProto:
    """The ONNX model of ``graph`` (see the module docstring), checked, not written.

    ``steps`` is only recorded (metadata ``"steps"``: the T the network was evaluated with);
    the time axis of the model is symbolic and accepts any T at run time.

    Raises:
        ConfigError: ``steps`` or ``batch`` is not a positive integer.
        ExportError: a node cannot be expressed (the node is named), or the checker fails.
    """
    for what, value in (("steps", steps), ("batch", batch)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ConfigError(f"{what} must be a positive integer, got {value!r}",
                              where=f"to_onnx({what}=)")
    b = _Builder()
    states = _states(graph)
    batch_dim: Any = batch if batch is not None else "batch"
    body = _step_graph(b, graph, states, batch_dim)
    initial = _initial_states(b, graph, states)
    outputs = list(graph.outputs)
    b.outer.append(helper.make_node(
        "Scan", initial + list(graph.inputs),
        [f"{s.name}/final" for s in states.values()] + outputs, name="time",
        body=body, num_scan_inputs=len(graph.inputs)))

    main = helper.make_graph(
        b.outer, "sbc_deploy",
        [_value_info(n, [TIME, batch_dim, *graph.nodes[n].output_shape]) for n in graph.inputs],
        [_value_info(n, [TIME, batch_dim, *graph.nodes[n].output_shape]) for n in graph.outputs],
        initializer=b.initializers)
    model = helper.make_model(main, producer_name="sbc-deploy",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    _describe(model, graph, steps)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"the ONNX checker rejects the model: {err}", where="to_onnx") from err
    return model


def _step_graph(b: _Builder, graph: Graph, states: dict[str, _State], batch_dim: Any
                ) -> onnx.GraphProto:
    """The Scan body: one time step of every node in topological order, reading the states'
    previous values and writing their next ones (the nodes' ops go into ``b.body``)."""
    step_inputs = {name: f"{name}/x_t" for name in graph.inputs}
    current: dict[str, str] = dict(step_inputs)
    for name in graph.topological_order:
        node = graph.nodes[name]
        if isinstance(node, Input):
            continue
        def arriving(sources: tuple[str, ...], name: str = name) -> str:
            return _add_all(b, [states[f"{src}/previous"].name
                                if (src, name) in graph.recurrent_edges else current[src]
                                for src in sources])

        if isinstance(node, (Product, MatMul)):
            operands = graph.operands(name)
            current[name] = _binary(b, name, node, arriving(operands["a"]),
                                    arriving(operands["b"]))
            continue
        current[name] = _step(b, name, node, arriving(graph.predecessors(name)), states)
    for src in sorted({src for src, _ in graph.recurrent_edges}):
        states[f"{src}/previous"].next = b.op("Identity", [current[src]], f"{src}/previous_next")
    step_outputs = {name: b.op("Identity", [current[name]], f"{name}/y_t")
                    for name in graph.outputs}

    return helper.make_graph(
        b.body, "step",
        [_value_info(s.name, [*s.lead, batch_dim, *s.shape]) for s in states.values()]
        + [_value_info(step_inputs[n], [batch_dim, *graph.nodes[n].output_shape])
           for n in graph.inputs],
        [_value_info(s.next or "", [*s.lead, batch_dim, *s.shape]) for s in states.values()]
        + [_value_info(step_outputs[n], [batch_dim, *graph.nodes[n].output_shape])
           for n in graph.outputs])


def _initial_states(b: _Builder, graph: Graph, states: dict[str, _State]) -> list[str]:
    """The Scan's initial state values: zeros, with the batch size read from the first input;
    a recurrent edge starts from its source's value at rest (ops go into ``b.outer``)."""
    first = graph.inputs[0]
    batch_size = b.op("Shape", [first], "batch_size", outer=True, start=1, end=2)
    initial = []
    at_rest = {f"{src}/previous": value for src, value in recurrent_rest_values(graph).items()}
    for state in states.values():
        dims = b.constant(f"{state.name}/dims", list(state.shape), np.int64)
        lead = b.constant(f"{state.name}/lead", list(state.lead), np.int64)
        shape = b.op("Concat", [lead, batch_size, dims], f"{state.name}/init_shape",
                     outer=True, axis=0)
        zero = numpy_helper.from_array(np.zeros(1, np.float32))
        rest = at_rest.get(state.name)
        if rest is None or not np.any(rest):
            initial.append(b.op("ConstantOfShape", [shape], f"{state.name}/init", outer=True,
                                value=zero))
            continue
        # a recurrent edge carries its source's value at rest into step 0 (a synapse's bias)
        zeros = b.op("ConstantOfShape", [shape], f"{state.name}/zeros", outer=True, value=zero)
        initial.append(b.op("Add", [zeros, b.constant(f"{state.name}/rest", rest)],
                            f"{state.name}/init", outer=True))
    return initial


def _describe(model: onnx.ModelProto, graph: Graph, steps: int | None) -> None:
    """The model's version, doc string and properties (dt, steps, layout, resets, source)."""
    model.ir_version = IR_VERSION
    model.doc_string = ("Spiking network over time: inputs and outputs are [T, B, *shape]; the "
                        "state (membranes, currents, delay lines, recurrent values) is carried "
                        "by one Scan over time.")
    resets = {n: getattr(node, "reset") for n, node in graph.nodes.items()
              if isinstance(node, Neuron) and node.spiking}
    helper.set_model_props(model, {
        "dt": repr(graph.dt), "steps": "any" if steps is None else str(steps),
        "layout": "[T, B, *shape], T symbolic ('time')",
        "resets": json.dumps(resets),
        "source": json.dumps({k: str(v) for k, v in graph.metadata.items()}),
    })


def to_onnx(graph: Graph, path: str | Path, *, steps: int | None = None,
            batch: int | None = None) -> Path:
    """Write ``graph`` as an ONNX model over ``steps`` time steps (see the module docstring).

    Args:
        graph: the network (not modified).
        path: the ``.onnx`` file to write (atomically: an old file stays intact on failure).
        steps: the ``T`` the network is used with, recorded in the metadata only: the model's
            time axis is symbolic and accepts any ``T``.
        batch: a fixed batch size, or None for a symbolic ``"batch"`` dimension.

    Returns:
        ``path``.

    Raises:
        ConfigError: bad ``steps``/``batch``.
        ExportError: unwritable path, a node that cannot be expressed (named), checker failure.
    """
    path = check_writable(path)
    model = build_onnx(graph, steps=steps, batch=batch)
    write_atomic(path, lambda tmp: onnx.save_model(model, str(tmp)))
    log.debug("wrote %s: %d initializers", path, len(model.graph.initializer))
    return path
