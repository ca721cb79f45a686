r"""snntorch -> IR: walk an ``nn.Sequential`` of torch layers and snntorch neurons.

snntorch is discrete time already, so nothing is discretised: ``beta``, ``alpha`` and
``threshold`` are copied as they are (``beta`` and ``alpha`` clamped to [0, 1], as snntorch
does on every step) and ``dt`` only says how long a step lasts (the graph's ``dt``; recorded in
the metadata, with ``discretization="euler"`` because snntorch's ``v = beta v + x`` is the
forward-Euler form that snntorch's own NIR export assumes: ``tau = dt / (1 - beta)``, ``r = tau
/ dt``).

snntorch 1.0.0's neurons (``_neurons/leaky.py``, ``synaptic.py``, ``rleaky.py``, default
``reset_delay=True``) compute the reset from the membrane of the *previous* step and apply it
after the decay::

    Leaky:     r[t] = H(m[t-1] - thr)
               m[t] = beta m[t-1] + x[t] - r[t] thr                 ("subtract")
               m[t] = beta (1 - r[t]) m[t-1] + x[t]                 ("zero")
               s[t] = H(m[t] - thr)       (H(z) = z > 0; r[t] = s[t-1])
    Synaptic:  c[t] = alpha c[t-1] + x[t];  m[t] = beta m[t-1] + c[t] - r[t] thr   ("subtract")
               m[t] = (1 - r[t]) (beta m[t-1] + c[t])                              ("zero")
    RLeaky:    m[t] = beta m[t-1] + x[t] + V(s[t-1]) - r[t] thr                   ("subtract")
               m[t] = (1 - r[t]) (beta m[t-1] + x[t] + V(s[t-1]))                  ("zero")

The IR resets in the step of the spike, before the next decay (``sbc_deploy.ir.nodes``)::

    v[t] = beta v[t-1] + x[t];  s[t] = v[t] > thr;  v[t] <- v[t] - thr | v_reset  where s[t]

Spikes happen in the same step in both; only what the reset leaves behind differs:

- Leaky "zero" is the IR's zero reset exactly (``v_reset = 0``).
- "subtract": snntorch removes ``thr`` after the decay, the IR ``beta thr``, so the IR's
  membrane is higher by ``(1 - beta) thr`` one step after every spike (and decays from there).
  By default the importer bridges this exactly with an elementwise recurrent ``Scale`` node
  ``<neuron>_reset`` of ``-(1 - beta) thr`` from the neuron's spikes back into its input (left
  out where ``beta == 1``). A Synaptic neuron's input passes its current filter, so there the
  correction ``c s[t-1]`` is fed as ``c s[t-1] - alpha c s[t-2]`` (a second path through a
  one-step ``Delay``), which the filter turns back into exactly ``c s[t-1]``.
- Synaptic and RLeaky "zero" clear the whole membrane one step after a spike, that step's input
  included; no IR neuron does that, so these are refused unless ``reset=`` is given.
- "none" (no reset) becomes a non-spiking ``LI`` / ``CubaLI`` followed by a ``Threshold``.

Passing ``reset="zero"`` or ``"subtract"`` instead maps every spiking neuron to a plain IR
``LIF`` / ``CubaLIF`` with that reset and no correction nodes: a deliberate choice for targets
that only have one reset (Loihi: zero), which differs from snntorch after each spike whenever
the modes differ (see above); the metadata records it.

RLeaky's recurrent layer becomes an ``Affine`` (``linear_features``), a ``Conv2d``
(``conv2d_channels``, ``kernel_size``; padding ``k // 2``) or a ``Scale`` (one-to-one ``V``) on a
recurrent edge from the neuron back to itself. snntorch adds the recurrent layer's bias at every
step, the first included (``V(0) = b``), while a recurrent IR edge carries zero at the first
step, so the bias moves into the neuron's ``bias``.

Layers: ``nn.Linear`` -> ``Affine``; ``nn.Conv1d`` / ``nn.Conv2d`` -> ``Conv1d`` / ``Conv2d``;
``nn.AvgPool2d`` -> ``AvgPool2d``; ``nn.LPPool2d(norm_type=1)`` (a sum pool) -> ``SumPool2d``;
``nn.Flatten`` -> ``Flatten`` (torch counts the batch axis, the IR does not); ``nn.Dropout`` and
``nn.Identity`` are skipped (inference). ``nn.MaxPool2d`` is refused: a max of spikes is an OR
that no linear synapse and no target here computes.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from sbc_deploy.errors import ConfigError, ShapeError, UnsupportedNodeError
from sbc_deploy.ir import (
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
    Node,
    Output,
    Scale,
    SumPool2d,
    Threshold,
)

log = logging.getLogger(__name__)

Shape = tuple[int, ...]
SUPPORTED_LAYERS = ("Linear", "Conv1d", "Conv2d", "AvgPool2d", "LPPool2d(norm_type=1)", "Flatten",
                    "Dropout", "Identity", "snntorch.Leaky", "snntorch.Synaptic", "snntorch.RLeaky")


def _snntorch() -> Any:
    try:
        import snntorch
    except ImportError as err:  # pragma: no cover - snntorch models need snntorch installed
        raise ConfigError("snntorch is not installed", where="from_snntorch",
                          hint="pip install 'sbc-deploy[snntorch]'") from err
    return snntorch


def _array(value: Any, shape: Shape | None = None) -> np.ndarray:
    array = value.detach().cpu().double().numpy() if torch.is_tensor(value) \
        else np.asarray(value, dtype=np.float64)
    return np.array(np.broadcast_to(array, shape) if shape is not None else array)


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


@dataclass
class _Builder:
    """Nodes and edges in order; ``tail`` is the node whose output feeds the next layer."""

    reset: str | None
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    tail: str = "input"
    shape: Shape = ()
    resets: dict[str, str] = field(default_factory=dict)   # neuron -> snntorch mechanism

    def add(self, name: str, node: Node, source: str | None = None) -> str:
        if name in self.nodes:
            raise ConfigError(f"two nodes would be called '{name}'", where="from_snntorch")
        self.nodes[name] = node
        self.edges.append((source if source is not None else self.tail, name))
        return name

    def chain(self, name: str, node: Node) -> None:
        self.tail = self.add(name, node)
        self.shape = tuple(node.output_shape)


# --------------------------------------------------------------------------- torch layers


def _conv_padding(layer: nn.Module, kernel: tuple[int, ...], where: str) -> tuple[int, ...]:
    padding = layer.padding
    if layer.padding_mode != "zeros":
        raise UnsupportedNodeError(f"padding_mode={layer.padding_mode!r}; only zero padding is "
                                   "supported", where=where)
    if padding == "valid":
        return (0,) * len(kernel)
    if padding == "same":
        span = [d * (k - 1) for d, k in zip(layer.dilation, kernel)]
        if any(s % 2 for s in span):
            raise UnsupportedNodeError("padding='same' with an even kernel span pads unevenly",
                                       where=where)
        return tuple(s // 2 for s in span)
    return tuple(int(p) for p in padding)


def _convert_layer(layer: nn.Module, key: str, name: str, b: _Builder) -> None:
    where = f"layer '{key}' ({type(layer).__name__})"
    if isinstance(layer, nn.Linear):
        if b.shape != (layer.in_features,):
            raise ShapeError(f"expects {layer.in_features} inputs but receives shape {b.shape}",
                             where=where, hint="add nn.Flatten() before it")
        bias = None if layer.bias is None else _array(layer.bias)
        b.chain(name, Affine(_array(layer.weight), bias=bias))
    elif isinstance(layer, nn.Conv2d):
        kernel = tuple(layer.kernel_size)
        b.chain(name, Conv2d(_array(layer.weight), input_shape=b.shape,
                             bias=None if layer.bias is None else _array(layer.bias),
                             stride=tuple(layer.stride),
                             padding=_conv_padding(layer, kernel, where),
                             dilation=tuple(layer.dilation), groups=layer.groups))
    elif isinstance(layer, nn.Conv1d):
        kernel = tuple(layer.kernel_size)
        b.chain(name, Conv1d(_array(layer.weight), input_shape=b.shape,
                             bias=None if layer.bias is None else _array(layer.bias),
                             stride=layer.stride[0],
                             padding=_conv_padding(layer, kernel, where)[0],
                             dilation=layer.dilation[0], groups=layer.groups))
    elif isinstance(layer, nn.AvgPool2d):
        padding = _pair(layer.padding)
        if layer.ceil_mode or layer.divisor_override is not None or \
                (not layer.count_include_pad and any(padding)):
            raise UnsupportedNodeError("ceil_mode, divisor_override and count_include_pad=False "
                                       "are not supported", where=where)
        b.chain(name, AvgPool2d(_pair(layer.kernel_size), input_shape=b.shape,
                                stride=_pair(layer.stride or layer.kernel_size), padding=padding))
    elif isinstance(layer, nn.LPPool2d):
        if float(layer.norm_type) != 1.0 or layer.ceil_mode:
            raise UnsupportedNodeError(f"only LPPool2d(norm_type=1) (a sum pool) without ceil_mode"
                                       f" is supported, got norm_type={layer.norm_type}",
                                       where=where)
        b.chain(name, SumPool2d(_pair(layer.kernel_size), input_shape=b.shape,
                                stride=_pair(layer.stride or layer.kernel_size)))
    elif isinstance(layer, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        raise UnsupportedNodeError(
            "max pooling of spikes is an OR, not a linear synapse, and no target runs it",
            where=where, hint="train with nn.AvgPool2d or a sum pool (nn.LPPool2d(1, k))")
    elif isinstance(layer, nn.Flatten):
        ndim = len(b.shape) + 1  # torch counts the batch axis
        if not (-ndim <= layer.start_dim < ndim and -ndim <= layer.end_dim < ndim):
            raise ShapeError(f"dims ({layer.start_dim}, {layer.end_dim}) do not fit the input "
                             f"[B, {', '.join(map(str, b.shape))}]", where=where)
        start, end = layer.start_dim % ndim, layer.end_dim % ndim
        if start == 0:
            raise UnsupportedNodeError("flattens the batch axis (start_dim=0)", where=where)
        if start > end:
            raise ShapeError(f"start_dim {layer.start_dim} lies after end_dim {layer.end_dim}",
                             where=where)
        b.chain(name, Flatten(input_shape=b.shape, start_dim=start - 1, end_dim=end - 1))
    else:
        raise UnsupportedNodeError(f"no IR equivalent; supported: {', '.join(SUPPORTED_LAYERS)}",
                                   where=where)


# --------------------------------------------------------------------------- snntorch neurons


def _check_neuron(neuron: nn.Module, where: str) -> str:
    if getattr(neuron, "inhibition", False):
        raise UnsupportedNodeError("inhibition=True (winner-take-all) has no IR equivalent",
                                   where=where)
    if getattr(neuron, "state_quant", False):
        raise UnsupportedNodeError("state_quant quantises the membrane; not supported",
                                   where=where, hint="compress the network with SBC instead")
    if not torch.all(torch.as_tensor(neuron.graded_spikes_factor) == 1):
        raise UnsupportedNodeError("graded_spikes_factor != 1 (graded spikes) is not supported",
                                   where=where)
    if not getattr(neuron, "reset_delay", True):
        raise UnsupportedNodeError("reset_delay=False is not supported (the default True is)",
                                   where=where)
    mechanism = str(neuron.reset_mechanism)
    if mechanism not in ("subtract", "zero", "none"):
        raise UnsupportedNodeError(f"unknown reset_mechanism {mechanism!r}", where=where)
    return mechanism


def _reset_fix(b: _Builder, name: str, scale: np.ndarray, alpha: np.ndarray | None) -> None:
    """Recurrent path(s) adding ``scale * s[t-1]`` to the membrane (module docstring)."""
    if not np.any(scale):
        return
    b.add(f"{name}_reset", Scale(scale), source=name)
    b.edges.append((f"{name}_reset", name))
    if alpha is not None and np.any(alpha):
        b.add(f"{name}_reset_delay", Delay(np.ones(scale.shape)), source=name)
        b.add(f"{name}_reset_filter", Scale(-alpha * scale), source=f"{name}_reset_delay")
        b.edges.append((f"{name}_reset_filter", name))


def _recurrent(neuron: nn.Module, shape: Shape, where: str) -> tuple[Node, np.ndarray]:
    """RLeaky's recurrent layer as an IR node, and its bias (moved into the neuron)."""
    layer = neuron.recurrent
    if isinstance(layer, nn.Linear):
        if shape != (layer.in_features,) or layer.out_features != layer.in_features:
            raise ShapeError(f"recurrent Linear({layer.in_features}, {layer.out_features}) does "
                             f"not fit the neuron shape {shape}", where=where)
        bias = np.zeros(shape) if layer.bias is None else _array(layer.bias)
        return Affine(_array(layer.weight)), bias
    if isinstance(layer, nn.Conv2d):
        node = Conv2d(_array(layer.weight), input_shape=shape, stride=tuple(layer.stride),
                      padding=_conv_padding(layer, tuple(layer.kernel_size), where),
                      dilation=tuple(layer.dilation), groups=layer.groups)
        if tuple(node.output_shape) != shape:
            raise ShapeError(f"recurrent convolution maps {shape} to {node.output_shape}",
                             where=where, hint="use an odd kernel_size")
        bias = np.zeros(shape) if layer.bias is None else \
            np.broadcast_to(_array(layer.bias)[:, None, None], shape)
        return node, np.array(bias)
    if hasattr(layer, "V"):  # snntorch's RecurrentOneToOne: x * V
        return Scale(_array(layer.V, shape)), np.zeros(shape)
    raise UnsupportedNodeError(f"recurrent layer {type(layer).__name__} is not supported",
                               where=where)


def _convert_neuron(neuron: nn.Module, key: str, name: str, b: _Builder, kind: str) -> None:
    where = f"layer '{key}' (snntorch.{kind})"
    mechanism = _check_neuron(neuron, where)
    shape = b.shape
    beta = np.clip(_array(neuron.beta, shape), 0.0, 1.0)
    thr = _array(neuron.threshold, shape)
    alpha = np.clip(_array(neuron.alpha, shape), 0.0, 1.0) if kind == "Synaptic" else None
    rec_node, bias = (_recurrent(neuron, shape, where) if kind == "RLeaky"
                      else (None, np.zeros(shape)))
    if b.reset is None and mechanism == "zero" and kind != "Leaky":
        raise UnsupportedNodeError(
            f"snntorch's {kind} 'zero' reset clears the whole membrane one step after a spike, "
            "that step's input included; no IR neuron does that", where=where,
            hint="pass reset='zero' to import it with the IR's zero reset (keeps that input)")
    mode = b.reset or mechanism
    b.resets[name] = mechanism
    meta = {"snntorch": kind, "snntorch_reset": mechanism}
    if mode == "none":
        if alpha is None:
            membrane: Node = LI(beta=beta, bias=bias, metadata=meta)
        else:
            membrane = CubaLI(alpha=alpha, beta=beta, bias=bias, metadata=meta)
        b.add(name, membrane)
        spikes = b.add(f"{name}_spike", Threshold(thr), source=name)
    else:
        if alpha is None:
            node: Node = LIF(beta=beta, v_threshold=thr, bias=bias, reset=mode, metadata=meta)
        else:
            node = CubaLIF(alpha=alpha, beta=beta, v_threshold=thr, bias=bias, reset=mode,
                           metadata=meta)
        spikes = b.add(name, node)
        if b.reset is None and mechanism == "subtract":
            _reset_fix(b, name, -(1.0 - beta) * thr, alpha)
    if rec_node is not None:
        b.add(f"{name}_rec", rec_node, source=spikes)
        b.edges.append((f"{name}_rec", name))
    b.tail, b.shape = spikes, shape


# --------------------------------------------------------------------------- the importer


def _layers(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The leaves of (nested) ``nn.Sequential`` containers, in order, with unique names."""
    layers = []
    for key, child in module.named_children():
        name = f"{prefix}{key}"
        if isinstance(child, nn.Sequential):
            layers.extend(_layers(child, f"{name}."))
        else:
            layers.append((name, child))
    return layers


def _node_name(key: str, layer: nn.Module) -> str:
    """Sequential keys are indices ('0', '1.2'); prefix them with the layer type."""
    parts = key.split(".")
    if all(p.isdigit() for p in parts):
        return f"{type(layer).__name__.lower()}{'_'.join(parts)}"
    return key.replace(".", "_")


def _torch_shapes(module: nn.Module, layers: list[tuple[str, nn.Module]],
                  sample: torch.Tensor) -> list[Shape]:
    """Per-sample output shape of each layer, from one step of a copy of the module."""
    shapes = []
    copied = copy.deepcopy(module).cpu().eval()
    by_name = dict(_layers(copied))
    x = sample.detach().cpu().to(torch.float32)
    with torch.no_grad():
        for key, _ in layers:
            layer = by_name[key]
            # snntorch emits float32 spikes whatever its dtype; follow each layer's own dtype
            x = x.to(next((p.dtype for p in layer.parameters() if p.is_floating_point()),
                          x.dtype))
            if hasattr(layer, "reset_mem"):
                layer.reset_mem()
            try:
                x = layer(x)
            except Exception as err:
                raise ShapeError(f"fails on the sample: {type(err).__name__}: {err}",
                                 where=f"layer '{key}' ({type(layer).__name__})") from err
            if isinstance(x, tuple):  # snntorch neurons return (spk, state...) without init_hidden
                x = x[0]
            shapes.append(tuple(int(v) for v in x.shape[1:]))
    return shapes


# Long: a quarter is the docstring; the rest is the import's straight line (argument checks,
# one pass over the layers, the reset mechanism resolved, the metadata), each step short.
def from_snntorch(module: nn.Module, sample: torch.Tensor, *, dt: float = 1e-3,
                  reset: Literal["zero", "subtract"] | None = None) -> Graph:
    """Import an snntorch network (an ``nn.Sequential``) into the IR.

    Args:
        module: the network, an ``nn.Sequential`` (nested ones are flattened) of the layers and
            neurons listed in the module docstring. It is not modified.
        sample: one time step of input with a batch axis, ``[B, *input_shape]``; it fixes the
            input shape and is run through a copy of ``module`` to check every layer's shape.
        dt: seconds per step (snntorch is discrete; ``dt`` only labels the step).
        reset: ``None`` keeps each neuron's snntorch ``reset_mechanism`` exactly (module
            docstring); ``"zero"`` / ``"subtract"`` maps every spiking neuron to a plain IR
            neuron with that reset instead.

    Returns:
        A sequential graph ``input -> ... -> output`` whose nodes are named after the layers
        (``linear0``, ``leaky1``, ... for an unnamed Sequential), plus the reset-correction and
        recurrent nodes named after their neuron (``<neuron>_reset``, ``<neuron>_rec``).

    Raises:
        UnsupportedNodeError: a layer or neuron option with no exact IR equivalent (named).
        ShapeError: the sample does not fit the network.
        ConfigError: bad ``dt`` or ``reset``, or a module that is not an ``nn.Sequential``.
    """
    snn = _snntorch()
    if not isinstance(module, nn.Sequential):
        raise ConfigError(f"expected an nn.Sequential, got {type(module).__name__}",
                          where="from_snntorch(module=)",
                          hint="wrap the layers in nn.Sequential with init_hidden=True neurons")
    if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
        raise ConfigError(f"dt must be a positive number of seconds, got {dt!r}",
                          where="from_snntorch(dt=)")
    if reset is not None and reset not in RESETS:
        raise ConfigError(f"reset must be None or one of {RESETS}, got {reset!r}",
                          where="from_snntorch(reset=)")
    sample = torch.as_tensor(sample)
    if sample.dim() < 2:
        raise ShapeError(f"sample must be one step [B, *input_shape], got shape "
                         f"{tuple(sample.shape)}", where="from_snntorch(sample=)")
    layers = [(key, layer) for key, layer in _layers(module)
              if not isinstance(layer, (nn.Dropout, nn.Identity))]
    if not layers:
        raise ConfigError("the Sequential holds no layers", where="from_snntorch(module=)")
    neuron_kinds = {snn.Leaky: "Leaky", snn.Synaptic: "Synaptic", snn.RLeaky: "RLeaky"}
    b = _Builder(reset=reset)
    b.nodes["input"] = Input(tuple(int(v) for v in sample.shape[1:]))
    b.shape = b.nodes["input"].output_shape
    torch_shapes = _torch_shapes(module, layers, sample)
    for (key, layer), torch_shape in zip(layers, torch_shapes):
        name = _node_name(key, layer)
        kind = neuron_kinds.get(type(layer))
        if kind is not None:
            _convert_neuron(layer, key, name, b, kind)
        elif isinstance(layer, snn.SpikingNeuron):
            raise UnsupportedNodeError(
                f"snntorch.{type(layer).__name__} is not supported; supported neurons: "
                "Leaky, Synaptic, RLeaky", where=f"layer '{key}'")
        else:
            _convert_layer(layer, key, name, b)
        if b.shape != torch_shape:
            raise ShapeError(f"the IR computes output shape {b.shape}, torch {torch_shape}",
                             where=f"layer '{key}' ({type(layer).__name__})")
    b.add("output", Output(b.shape))
    mechanisms = sorted(set(b.resets.values()))
    if reset is not None:
        reset_mode, source = reset, (f"argument (snntorch modules use "
                                     f"{', '.join(mechanisms) or 'no neuron'})")
    else:
        spiking = {m for m in mechanisms if m != "none"}
        reset_mode = spiking.pop() if len(spiking) == 1 else None
        source = "snntorch reset_mechanism" + (
            ", 'subtract' bridged by <neuron>_reset correction nodes"
            if "subtract" in mechanisms else "")
    if reset is not None and any(m != reset for m in mechanisms):
        log.warning("from_snntorch: reset=%r replaces snntorch's %s; outputs differ from "
                    "snntorch after spikes", reset, mechanisms)
    metadata = {
        "source_format": "snntorch",
        "snntorch_version": str(getattr(snn, "__version__", "unknown")),
        "dt": float(dt),
        "dt_source": "argument dt of from_snntorch (snntorch is discrete: dt labels the step)",
        "reset": reset_mode,
        "reset_source": source,
        "snntorch_reset": {name: m for name, m in b.resets.items()},
        "discretization": "euler",
    }
    log.debug("imported snntorch network: %d nodes, resets %s", len(b.nodes), b.resets)
    return Graph(b.nodes, tuple(b.edges), float(dt), metadata)
