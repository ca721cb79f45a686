r"""IR primitives: pure, frozen data in discrete time. No torch, no I/O.

Shapes are per sample (no batch, no time axis). One step lasts ``Graph.dt`` seconds. Every
neuron is stored in discrete form; ``x[t]`` is the sum of everything that arrives at the node
at step ``t`` (several incoming edges add up).

Neuron equations, in the order they are applied within one step::

    CubaLIF / CubaLI:   i[t] = alpha * i[t-1] + gain_syn * x[t]
                        v[t] = beta * v[t-1] + (1 - beta) * v_leak + gain * i[t] + bias
    LIF / LI:           v[t] = beta * v[t-1] + (1 - beta) * v_leak + gain * x[t] + bias
    IF / Integrator:    v[t] = v[t-1] + gain * x[t] + bias
    spiking kinds:      s[t] = v[t] > v_threshold
                        reset "zero":     v[t] <- v_reset     where s[t]
                        reset "subtract": v[t] <- v[t] - v_threshold   where s[t]

Spiking kinds (LIF, CubaLIF, IF) output ``s``; the others (LI, CubaLI, Integrator) output ``v``.
From NIR's continuous equations with forward Euler (``discretization="euler"``) the importer sets
``beta = 1 - dt/tau_mem``, ``gain = dt * r / tau_mem``, ``alpha = 1 - dt/tau_syn`` and
``gain_syn = dt * w_in / tau_syn``; with ``"exact"`` it uses ``exp(-dt/tau)`` instead.

Spike variants. The frameworks and chips do not all fire and reset as above; four fields of the
spiking kinds say how a neuron does. Their defaults are the rule above, so a graph that does not
set them behaves as it always has. With ``u[t]`` the membrane after the decay and the input
(``beta * v[t-1] + ... + bias``, the second equation above) and ``thr = v_threshold``, one step
is, in this order::

    pending reset   (reset_timing "next_step" only) the reset of the previous step's count c[t-1]:
                      subtract: u[t] <- u[t] - c[t-1] * thr
                      zero:     u[t] <- v_reset               where c[t-1] > 0
    count           c[t] = count(u[t])
    same-step reset (reset_timing "same_step" / "same_step_raised"):
                      subtract: v[t] = u[t] - c[t] * thr
                      zero:     v[t] = v_reset where c[t] > 0, else u[t]
                    ("next_step": v[t] = u[t]; the reset waits for step t+1)
    lower clamp     v[t] <- max(v[t], v_min)                  (when v_min is given)
    output          s[t] = c[t]

``fires_at_equal`` (bool, default False): the spike test is ``u >= thr`` instead of ``u > thr``.
    spikingjelly's heaviside is ``x >= 0`` (``spikingjelly/activation_based/surrogate.py``,
    ``heaviside``); sinabs ``SingleSpike`` fires at ``v_mem - threshold >= 0`` and ``MultiSpike``
    counts ``trunc(v_mem / threshold)`` (``sinabs/activation/spike_generation.py``); rockpool's
    ``StepPWL`` counts ``(x >= threshold) * floor(x / threshold)``
    (``rockpool/nn/modules/torch/lif_torch.py``). snntorch (``Heaviside``: ``x > 0``), norse
    (``heaviside``: ``x > 0``), spyx (``axn.heaviside``: ``x > 0``) and NIR fire at ``u > thr``.
``max_spikes`` (int >= 1 or None, default 1): the most spikes one neuron sends in one step.
    1 is the binary rule ``c = [u > thr]`` (``[u >= thr]`` with ``fires_at_equal``). Above 1 or
    None (no cap) the neuron counts thresholds: ``c = floor(u / thr)`` with ``fires_at_equal``,
    ``c = ceil(u / thr) - 1`` without it (the number of whole thresholds ``u`` lies strictly
    above), clipped to ``[0, max_spikes]``; ``thr`` must then be positive everywhere. A
    subtractive reset removes ``c * thr``; a zero reset sets ``v_reset`` however many spikes
    were sent (sinabs ``MembraneReset``: ``v_mem * (spikes == 0)``,
    ``sinabs/activation/reset_mechanism.py``). sinabs ``MultiSpike`` is ``max_spikes=None``,
    ``MaxSpike(n)`` is ``n``; rockpool ``LIFTorch`` is ``max_spikes_per_dt`` (default ``2**16``,
    ``rockpool/nn/modules/torch/lif_torch.py``, ``StepPWL``); Xylo's hidden neurons send up to
    31 (``targets/xylo.toml``).
``reset_timing`` (default ``"same_step"``): when a spike's reset acts.
    ``"same_step"``: in the step of the spike, before the next decay (the rule above; snntorch
        with ``reset_delay=False`` and a zero reset, sinabs, rockpool, norse, Lava).
    ``"next_step"``: at step t+1, after that step's decay and input. A subtractive reset then
        removes the undecayed ``c[t] * thr`` (snntorch ``Leaky``/``Synaptic``/``RLeaky`` with
        ``reset_mechanism="subtract"`` and the default ``reset_delay=True``: ``_base_sub``,
        ``mem - reset * threshold`` with ``reset = H(mem[t-1] - threshold)``,
        ``snntorch/_neurons/leaky.py``; spyx ``LIF``/``IF``: ``V = beta V + x - spikes *
        threshold`` with ``spikes = H(V[t-1] - threshold)``, ``spyx/nn.py``). A zero reset sets
        the whole membrane of step t+1 to ``v_reset`` whatever that step's input: the one-step
        refractory zero reset of snntorch ``Synaptic`` and ``RLeaky`` (``_base_zero``:
        ``(1 - reset) * (beta * mem + input)``, ``snntorch/_neurons/synaptic.py``,
        ``rleaky.py``). snntorch ``Leaky``'s delayed zero reset (``beta * (1 - reset) * mem +
        input``) is ``"same_step"`` with ``v_reset = 0``. The spike itself is sent at step t in
        both (spyx sends it one step later: a ``Delay`` after the neuron, not a reset rule).
    ``"same_step_raised"``: snntorch's ``reset_delay=False`` with a subtractive reset
        (``leaky.py``, ``forward``: the state function subtracts ``H(mem[t-1] - threshold) *
        threshold`` first, the spike is tested on that, then ``(spk - reset) * threshold`` is
        taken off). With ``r[t] = [v[t-1] > thr]`` (the previous step ended above threshold
        after its reset): ``c[t] = [u[t] - r[t] * thr > thr]`` and ``v[t] = u[t] - c[t] * thr``:
        the same as ``"same_step"`` except that a step following one that ended above threshold
        fires only above ``2 * thr`` (it still removes one ``thr``). Only with ``reset
        "subtract"`` and ``max_spikes == 1`` (with a zero reset and ``thr > 0`` snntorch's rule
        is ``"same_step"`` exactly).
``v_min`` (array or None, default None): a lower bound of the membrane, applied at the end of
    every step after the reset (sinabs ``min_v_mem``: ``relu(v_mem - min_v_mem) + min_v_mem``
    after ``reset_fn``, ``sinabs/layers/functional/lif.py``, ``lif_forward_single``; sinabs'
    NIR importer sets ``min_v_mem = -v_threshold`` on every IF, ``sinabs/nir.py``).

The record ``"<neuron>:v"`` of the simulator is ``v[t]`` (after the same-step reset and the
clamp; with ``"next_step"`` before the pending reset, which step t+1 applies). sinabs'
``norm_input=True`` (``v = alpha v + (1 - alpha) x``) needs no field: it is ``gain = 1 - beta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Literal, Mapping

import numpy as np

from sbc_deploy.errors import IRError, ShapeError
from sbc_deploy.ir.encoding import WeightEncoding, frozen_array

Reset = Literal["zero", "subtract"]
RESETS: tuple[str, ...] = ("zero", "subtract")
ResetTiming = Literal["same_step", "next_step", "same_step_raised"]
RESET_TIMINGS: tuple[str, ...] = ("same_step", "next_step", "same_step_raised")
Shape = tuple[int, ...]


def _shape(values: Any, what: str) -> Shape:
    try:
        shape = tuple(int(v) for v in np.atleast_1d(np.asarray(values)).tolist())
    except (TypeError, ValueError) as err:
        raise ShapeError(f"{what} must be a sequence of positive integers, got {values!r}") from err
    if not shape or any(v <= 0 for v in shape):
        raise ShapeError(f"{what} must be a non-empty sequence of positive integers, got {shape}")
    return shape


def _pair(values: Any, what: str, minimum: int) -> tuple[int, int]:
    array = np.asarray(values).reshape(-1)
    if array.size == 1:
        array = np.repeat(array, 2)
    if array.size != 2 or not np.all(array == np.round(array)) or np.any(array < minimum):
        raise IRError(f"{what} must be one or two integers >= {minimum}, got {values!r}")
    return int(array[0]), int(array[1])


class Node:
    """Common interface of every IR node: a NIR-like ``kind`` and per-sample shapes."""

    kind: ClassVar[str]
    metadata: Mapping[str, Any]
    input_shape: Shape   # a field or a property in every subclass
    output_shape: Shape  # a property in every subclass
    # Named operands of a node whose inputs do not simply add up (``Product``, ``MatMul``):
    # every edge into such a node names its port in ``Graph.ports``. Empty: one input, the
    # sum of every incoming edge.
    ports: ClassVar[tuple[str, ...]] = ()

    def port_shape(self, port: str) -> Shape:
        """The per-sample shape the node expects at ``port`` (``input_shape`` without ports)."""
        if not self.ports:
            return self.input_shape
        raise IRError(f"{self.kind} has no port {port!r}; its ports are {self.ports}")

    def replace(self, **changes: Any) -> "Node":
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)  # type: ignore[type-var]

    def parameters(self) -> dict[str, Any]:
        """Field name -> value, for printing and round-trip comparisons."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


def _freeze_metadata(node: Node) -> None:
    object.__setattr__(node, "metadata", dict(node.metadata))


# --------------------------------------------------------------------------- graph ports


@dataclass(frozen=True, eq=False)
class _Port(Node):
    shape: Shape
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _shape(self.shape, f"{self.kind}.shape"))
        _freeze_metadata(self)

    @property
    def input_shape(self) -> Shape:
        return self.shape

    @property
    def output_shape(self) -> Shape:
        return self.shape


@dataclass(frozen=True, eq=False)
class Input(_Port):
    """Entry of the graph: ``y[t] = x[t]`` with ``x`` the user's data. ``shape``: per sample."""

    kind: ClassVar[str] = "Input"


@dataclass(frozen=True, eq=False)
class Output(_Port):
    """Exit of the graph: records ``x[t]``. ``shape``: per sample."""

    kind: ClassVar[str] = "Output"


# --------------------------------------------------------------------------- synapses


class Synapse(Node):
    """A layer with trainable weights: the thing compression acts on."""

    weight: np.ndarray
    bias: np.ndarray | None
    encoding: WeightEncoding | None

    def _check_weights(self, ndim: int, name: str) -> None:
        weight = np.asarray(self.weight)
        if weight.ndim != ndim:
            raise ShapeError(f"{name}.weight must be {ndim}-D, got shape {weight.shape}")
        if not np.all(np.isfinite(weight)):
            raise IRError(f"{name}.weight holds NaN or infinite values")
        object.__setattr__(self, "weight", frozen_array(weight))
        if self.bias is not None:
            bias = np.broadcast_to(np.asarray(self.bias, dtype=np.float64), (weight.shape[0],))
            if not np.all(np.isfinite(bias)):
                raise IRError(f"{name}.bias holds NaN or infinite values")
            object.__setattr__(self, "bias", frozen_array(bias))
        if self.encoding is not None:
            if self.encoding.mantissa.shape != weight.shape:
                raise ShapeError(f"{name}.encoding.mantissa has shape {self.encoding.mantissa.shape},"
                                 f" weight has {weight.shape}")
            if not np.allclose(self.encoding.dequantize(), weight, rtol=1e-9, atol=1e-12):
                raise IRError(f"{name}.weight differs from encoding.mantissa * encoding.scale")
        _freeze_metadata(self)

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    def fan_in(self) -> np.ndarray:
        """Non-zero synapses per output neuron (per output channel for convolutions)."""
        return np.count_nonzero(self.weight.reshape(self.weight.shape[0], -1), axis=1)

    def with_weight(self, weight: np.ndarray, encoding: WeightEncoding | None = None) -> "Synapse":
        """A copy with new weights (and their encoding, if they lie on a grid)."""
        return replace(self, weight=weight, encoding=encoding)  # type: ignore[type-var]


@dataclass(frozen=True, eq=False)
class Affine(Synapse):
    r"""Dense synapses :math:`y[t] = W x[t] + b`. ``weight``: (n_out, n_in); ``bias``: (n_out,) or None.

    NIR's ``Linear`` is an ``Affine`` without bias.
    """

    weight: np.ndarray
    bias: np.ndarray | None = None
    encoding: WeightEncoding | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "Affine"

    def __post_init__(self) -> None:
        self._check_weights(2, "Affine")

    @property
    def input_shape(self) -> Shape:
        return (int(self.weight.shape[1]),)

    @property
    def output_shape(self) -> Shape:
        return (int(self.weight.shape[0]),)


def conv_output_length(length: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """PyTorch's output length of a convolution or pooling along one axis."""
    return (length + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True, eq=False)
class Conv2d(Synapse):
    r"""2-D cross-correlation (PyTorch convention).

    ``weight``: (C_out, C_in/groups, kH, kW); ``input_shape``: (C_in, H, W); ``stride``,
    ``padding``, ``dilation``: (H, W) pairs of integers (zero padding on both sides).
    """

    weight: np.ndarray
    input_shape: Shape
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    encoding: WeightEncoding | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "Conv2d"

    def __post_init__(self) -> None:
        self._check_weights(4, "Conv2d")
        object.__setattr__(self, "input_shape", _shape(self.input_shape, "Conv2d.input_shape"))
        object.__setattr__(self, "stride", _pair(self.stride, "Conv2d.stride", 1))
        object.__setattr__(self, "padding", _pair(self.padding, "Conv2d.padding", 0))
        object.__setattr__(self, "dilation", _pair(self.dilation, "Conv2d.dilation", 1))
        _check_conv_channels(self, 3)

    @property
    def output_shape(self) -> Shape:
        _, h, w = self.input_shape
        kh, kw = self.weight.shape[2:]
        out = (conv_output_length(h, kh, self.stride[0], self.padding[0], self.dilation[0]),
               conv_output_length(w, kw, self.stride[1], self.padding[1], self.dilation[1]))
        return (int(self.weight.shape[0]), *out)


@dataclass(frozen=True, eq=False)
class Conv1d(Synapse):
    r"""1-D cross-correlation. ``weight``: (C_out, C_in/groups, k); ``input_shape``: (C_in, L)."""

    weight: np.ndarray
    input_shape: Shape
    bias: np.ndarray | None = None
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    encoding: WeightEncoding | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "Conv1d"

    def __post_init__(self) -> None:
        self._check_weights(3, "Conv1d")
        object.__setattr__(self, "input_shape", _shape(self.input_shape, "Conv1d.input_shape"))
        for name, minimum in (("stride", 1), ("padding", 0), ("dilation", 1)):
            value = np.asarray(getattr(self, name)).reshape(-1)
            if value.size != 1 or value[0] != round(float(value[0])) or value[0] < minimum:
                raise IRError(f"Conv1d.{name} must be one integer >= {minimum}, got {value.tolist()}")
            object.__setattr__(self, name, int(value[0]))
        _check_conv_channels(self, 2)

    @property
    def output_shape(self) -> Shape:
        length = conv_output_length(self.input_shape[1], int(self.weight.shape[2]), self.stride,
                                    self.padding, self.dilation)
        return (int(self.weight.shape[0]), length)


def _check_conv_channels(conv: Conv1d | Conv2d, ndim: int) -> None:
    name = type(conv).__name__
    if len(conv.input_shape) != ndim:
        raise ShapeError(f"{name}.input_shape must have {ndim} entries (C, ...), got {conv.input_shape}")
    groups = int(conv.groups)
    object.__setattr__(conv, "groups", groups)
    c_out, c_in_per_group = conv.weight.shape[:2]
    if groups < 1 or c_out % groups or conv.input_shape[0] != c_in_per_group * groups:
        raise ShapeError(f"{name}: input has {conv.input_shape[0]} channels but weight {conv.weight.shape}"
                         f" with groups={groups} expects {c_in_per_group * groups}")
    if any(v <= 0 for v in conv.output_shape):
        raise ShapeError(f"{name}: output shape {conv.output_shape} is empty for input {conv.input_shape}")


SYNAPSE_TYPES: tuple[type[Synapse], ...] = (Affine, Conv1d, Conv2d)


# --------------------------------------------------------------------------- shape and elementwise


@dataclass(frozen=True, eq=False)
class _Pool2d(Node):
    kernel_size: tuple[int, int]
    input_shape: Shape
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, f"{name}.kernel_size", 1))
        stride = self.kernel_size if self.stride is None else self.stride
        object.__setattr__(self, "stride", _pair(stride, f"{name}.stride", 1))
        object.__setattr__(self, "padding", _pair(self.padding, f"{name}.padding", 0))
        object.__setattr__(self, "input_shape", _shape(self.input_shape, f"{name}.input_shape"))
        if len(self.input_shape) != 3:
            raise ShapeError(f"{name}.input_shape must be (C, H, W), got {self.input_shape}")
        if any(v <= 0 for v in self.output_shape):
            raise ShapeError(f"{name}: output shape {self.output_shape} is empty")
        _freeze_metadata(self)

    @property
    def output_shape(self) -> Shape:
        c, h, w = self.input_shape
        assert self.stride is not None
        return (c,
                conv_output_length(h, self.kernel_size[0], self.stride[0], self.padding[0], 1),
                conv_output_length(w, self.kernel_size[1], self.stride[1], self.padding[1], 1))


@dataclass(frozen=True, eq=False)
class SumPool2d(_Pool2d):
    """Sum over each ``kernel_size`` window (zero padding). ``stride`` defaults to the kernel."""

    kind: ClassVar[str] = "SumPool2d"


@dataclass(frozen=True, eq=False)
class AvgPool2d(_Pool2d):
    """Mean over each window: a SumPool2d scaled by ``1 / (kH * kW)`` (padding counts as zeros)."""

    kind: ClassVar[str] = "AvgPool2d"


@dataclass(frozen=True, eq=False)
class Flatten(Node):
    """Merge per-sample axes ``start_dim..end_dim`` (inclusive, batch excluded) in C order."""

    input_shape: Shape
    start_dim: int = 0
    end_dim: int = -1
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "Flatten"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _shape(self.input_shape, "Flatten.input_shape"))
        ndim = len(self.input_shape)
        start, end = self.start_dim % ndim, self.end_dim % ndim
        if not (-ndim <= self.start_dim < ndim and -ndim <= self.end_dim < ndim) or start > end:
            raise ShapeError(f"Flatten dims ({self.start_dim}, {self.end_dim}) do not fit input "
                             f"shape {self.input_shape}")
        _freeze_metadata(self)

    @property
    def output_shape(self) -> Shape:
        ndim = len(self.input_shape)
        start, end = self.start_dim % ndim, self.end_dim % ndim
        merged = int(np.prod(self.input_shape[start:end + 1]))
        return (*self.input_shape[:start], merged, *self.input_shape[end + 1:])


class _Elementwise(Node):
    """A node whose input and output shapes are the shape of its parameter arrays."""

    _params: ClassVar[tuple[str, ...]]

    def _freeze_params(self) -> None:
        name = type(self).__name__
        arrays = [np.asarray(getattr(self, p), dtype=np.float64) for p in self._params]
        try:
            shape = np.broadcast_shapes(*(a.shape for a in arrays))
        except ValueError as err:
            detail = ", ".join(f"{p}{a.shape}" for p, a in zip(self._params, arrays))
            raise ShapeError(f"{name} parameters do not share one shape: {detail}") from err
        if not shape:
            raise ShapeError(f"{name} parameters are all scalars; give them the neuron shape "
                             "(the importer broadcasts scalars to the inferred shape)")
        for param, array in zip(self._params, arrays):
            if not np.all(np.isfinite(array)):
                raise IRError(f"{name}.{param} holds NaN or infinite values")
            object.__setattr__(self, param, frozen_array(np.broadcast_to(array, shape)))
        _freeze_metadata(self)

    @property
    def shape(self) -> Shape:
        return tuple(int(v) for v in np.shape(getattr(self, self._params[0])))

    @property
    def input_shape(self) -> Shape:
        return self.shape

    @property
    def output_shape(self) -> Shape:
        return self.shape


@dataclass(frozen=True, eq=False)
class Scale(_Elementwise):
    """Elementwise gain ``y[t] = scale * x[t]``."""

    scale: np.ndarray
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "Scale"
    _params: ClassVar[tuple[str, ...]] = ("scale",)

    def __post_init__(self) -> None:
        self._freeze_params()


@dataclass(frozen=True, eq=False)
class Delay(_Elementwise):
    """``y[t] = x[t - delay]`` per element; ``delay`` in whole steps (>= 0)."""

    delay: np.ndarray
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "Delay"
    _params: ClassVar[tuple[str, ...]] = ("delay",)

    def __post_init__(self) -> None:
        self._freeze_params()
        if np.any(self.delay < 0) or not np.array_equal(self.delay, np.round(self.delay)):
            raise IRError("Delay.delay must hold whole, non-negative numbers of steps")

    @property
    def max_delay(self) -> int:
        return int(self.delay.max())


@dataclass(frozen=True, eq=False)
class Threshold(_Elementwise):
    """Heaviside ``y[t] = x[t] > threshold`` (no state)."""

    threshold: np.ndarray
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "Threshold"
    _params: ClassVar[tuple[str, ...]] = ("threshold",)

    def __post_init__(self) -> None:
        self._freeze_params()


# --------------------------------------------------------------------------- graph operations
#
# Nodes without weights that the networks of spikingjelly's zoo need (SEW / spiking ResNets,
# spiking VGG, Spikformer, the spike-driven Transformer). Each is a pure function of one step's
# input (no state, no time mixing), applied to every step alike. Axes are per-sample axes
# (batch and time excluded), so ``axis=0`` is the channel axis of a (C, H, W) map.


def _axis(value: Any, ndim: int, what: str) -> int:
    try:
        axis = int(value)
    except (TypeError, ValueError) as err:
        raise IRError(f"{what} must be an integer axis, got {value!r}") from err
    if value != axis or not -ndim <= axis < ndim:
        raise IRError(f"{what} = {value!r} is not an axis of a {ndim}-D per-sample shape")
    return axis % ndim


@dataclass(frozen=True, eq=False)
class MaxPool2d(_Pool2d):
    r"""Max over each ``kernel_size`` window: :math:`y[c,i,j] = \max_{(p,q)\in w(i,j)} x[c,p,q]`.

    PyTorch's ``max_pool2d`` (``dilation=1``, ``ceil_mode=False``): ``stride`` defaults to the
    kernel; padding adds ``-inf`` (it is never the max), so ``padding <= kernel_size // 2``.
    On binary spikes the max is the OR of the window's spikes, which is exact in every number
    format; on other input (a current before the neuron) it is the max.
    """

    kind: ClassVar[str] = "MaxPool2d"

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise IRError(f"MaxPool2d.padding {self.padding} exceeds half the kernel "
                          f"{self.kernel_size} (a window would hold padding only)")


def adaptive_windows(length: int, out: int) -> tuple[tuple[int, int], ...]:
    """PyTorch's adaptive-pooling windows along one axis: output ``i`` averages
    ``x[floor(i * L / out) : ceil((i + 1) * L / out)]``."""
    return tuple(((i * length) // out, -((-(i + 1) * length) // out)) for i in range(out))


@dataclass(frozen=True, eq=False)
class AdaptiveAvgPool2d(Node):
    r"""Mean over PyTorch's adaptive windows (:func:`adaptive_windows`) to ``output_size``.

    :math:`y[c,i,j] = \operatorname{mean}_{p \in P_i, q \in Q_j} x[c,p,q]` with
    ``P_i = [floor(i H / H_out), ceil((i + 1) H / H_out))`` and likewise ``Q_j``. Where
    ``H_out`` divides ``H`` and ``W_out`` divides ``W`` this is an ``AvgPool2d`` with kernel and
    stride ``(H / H_out, W / W_out)`` (:meth:`as_avg_pool`).
    """

    output_size: tuple[int, int]
    input_shape: Shape
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "AdaptiveAvgPool2d"

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_size",
                           _pair(self.output_size, "AdaptiveAvgPool2d.output_size", 1))
        object.__setattr__(self, "input_shape",
                           _shape(self.input_shape, "AdaptiveAvgPool2d.input_shape"))
        if len(self.input_shape) != 3:
            raise ShapeError(f"AdaptiveAvgPool2d.input_shape must be (C, H, W), got "
                             f"{self.input_shape}")
        _freeze_metadata(self)

    @property
    def output_shape(self) -> Shape:
        return (self.input_shape[0], *self.output_size)

    def as_avg_pool(self) -> AvgPool2d | None:
        """The equal ``AvgPool2d`` where the output size divides the input size, else None."""
        _, h, w = self.input_shape
        oh, ow = self.output_size
        if h % oh or w % ow:
            return None
        kernel = (h // oh, w // ow)
        return AvgPool2d(kernel, self.input_shape, stride=kernel, metadata=self.metadata)


@dataclass(frozen=True, eq=False)
class ChannelAffine(Node):
    r"""Per-channel affine map: ``y[c, ...] = scale[c] * x[c, ...] + shift[c]``.

    ``scale``, ``shift``: (C,), channel axis 0 of ``input_shape``. A BatchNorm in eval mode is
    ``scale = gamma / sqrt(running_var + eps)``, ``shift = beta - running_mean * scale``
    (:func:`batchnorm_affine`). Where a synapse precedes it alone,
    :func:`sbc_deploy.ir.transforms.fold_channel_affine` folds it into that synapse.
    """

    scale: np.ndarray
    shift: np.ndarray
    input_shape: Shape
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "ChannelAffine"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape",
                           _shape(self.input_shape, "ChannelAffine.input_shape"))
        channels = self.input_shape[0]
        for name in ("scale", "shift"):
            array = np.asarray(getattr(self, name), dtype=np.float64)
            if array.ndim > 1 or (array.ndim == 1 and array.shape[0] not in (1, channels)):
                raise ShapeError(f"ChannelAffine.{name} must have shape ({channels},) for input "
                                 f"{self.input_shape}, got {array.shape}")
            if not np.all(np.isfinite(array)):
                raise IRError(f"ChannelAffine.{name} holds NaN or infinite values")
            object.__setattr__(self, name, frozen_array(np.broadcast_to(array, (channels,))))
        _freeze_metadata(self)

    @property
    def output_shape(self) -> Shape:
        return self.input_shape


def batchnorm_affine(gamma: Any, beta: Any, running_mean: Any, running_var: Any,
                     eps: float) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, shift)`` of a BatchNorm in eval mode, in float64 (``gamma``/``beta`` None:
    no affine part, as ``affine=False``)."""
    mean = np.asarray(running_mean, dtype=np.float64)
    var = np.asarray(running_var, dtype=np.float64)
    if np.any(var + eps <= 0):
        raise IRError(f"BatchNorm running_var + eps must be positive (eps={eps!r})")
    gamma_ = np.ones_like(mean) if gamma is None else np.asarray(gamma, dtype=np.float64)
    beta_ = np.zeros_like(mean) if beta is None else np.asarray(beta, dtype=np.float64)
    scale = gamma_ / np.sqrt(var + float(eps))
    return scale, beta_ - mean * scale


@dataclass(frozen=True, eq=False)
class LayerNorm(Node):
    r"""Layer normalisation over the last ``weight.ndim`` axes (PyTorch's ``layer_norm``).

    :math:`y = (x - \mu) / \sqrt{\sigma^2 + \epsilon} \cdot \mathrm{weight} + \mathrm{bias}`,
    with mean and (biased) variance over the normalised axes of each sample and step.
    ``weight``, ``bias``: the normalised shape (the trailing axes of ``input_shape``).
    """

    input_shape: Shape
    weight: np.ndarray
    bias: np.ndarray
    eps: float = 1e-5
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "LayerNorm"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _shape(self.input_shape, "LayerNorm.input_shape"))
        weight = np.asarray(self.weight, dtype=np.float64)
        normalized = self.input_shape[len(self.input_shape) - weight.ndim:]
        if weight.ndim < 1 or weight.ndim > len(self.input_shape) or weight.shape != normalized:
            raise ShapeError(f"LayerNorm.weight shape {weight.shape} is not a trailing part of "
                             f"input shape {self.input_shape}")
        bias = np.asarray(self.bias, dtype=np.float64)
        if bias.shape != weight.shape:
            raise ShapeError(f"LayerNorm.bias shape {bias.shape} differs from weight "
                             f"{weight.shape}")
        for name, array in (("weight", weight), ("bias", bias)):
            if not np.all(np.isfinite(array)):
                raise IRError(f"LayerNorm.{name} holds NaN or infinite values")
            object.__setattr__(self, name, frozen_array(array))
        eps = float(self.eps)
        if not math.isfinite(eps) or eps <= 0:
            raise IRError(f"LayerNorm.eps must be a positive number, got {self.eps!r}")
        object.__setattr__(self, "eps", eps)
        _freeze_metadata(self)

    @property
    def output_shape(self) -> Shape:
        return self.input_shape


@dataclass(frozen=True, eq=False)
class Identity(Node):
    """``y[t] = x[t]``: names the sum of its incoming edges (a residual merge that several
    nodes consume, e.g. SEW ``ADD`` or a transformer block's ``x + attn(x)``)."""

    shape: Shape
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "Identity"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _shape(self.shape, "Identity.shape"))
        _freeze_metadata(self)

    @property
    def input_shape(self) -> Shape:
        return self.shape

    @property
    def output_shape(self) -> Shape:
        return self.shape


@dataclass(frozen=True, eq=False)
class Reshape(Node):
    """``y = reshape(x, output_shape)`` in C order (per sample; the sizes must agree)."""

    input_shape: Shape
    output_shape: Shape
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "Reshape"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _shape(self.input_shape, "Reshape.input_shape"))
        object.__setattr__(self, "output_shape", _shape(self.output_shape, "Reshape.output_shape"))
        if np.prod(self.input_shape) != np.prod(self.output_shape):
            raise ShapeError(f"Reshape cannot turn {self.input_shape} into {self.output_shape} "
                             "(different sizes)")
        _freeze_metadata(self)


@dataclass(frozen=True, eq=False)
class Permute(Node):
    """``y = x.permute(dims)`` on the per-sample axes: output axis ``k`` is input axis
    ``dims[k]`` (a transpose is a permutation of two axes)."""

    input_shape: Shape
    dims: tuple[int, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "Permute"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _shape(self.input_shape, "Permute.input_shape"))
        ndim = len(self.input_shape)
        try:
            dims = tuple(_axis(d, ndim, "Permute.dims entry") for d in self.dims)
        except TypeError as err:
            raise IRError(f"Permute.dims must be a sequence of axes, got {self.dims!r}") from err
        if sorted(dims) != list(range(ndim)):
            raise IRError(f"Permute.dims {tuple(self.dims)} is not a permutation of the "
                          f"{ndim} axes of {self.input_shape}")
        object.__setattr__(self, "dims", dims)
        _freeze_metadata(self)

    @property
    def output_shape(self) -> Shape:
        return tuple(self.input_shape[d] for d in self.dims)


@dataclass(frozen=True, eq=False)
class Slice(Node):
    """``y = x[..., start:stop, ...]`` along per-sample ``axis`` (step 1), e.g. Q, K and V
    out of one ``qkv`` projection (``chunk``)."""

    input_shape: Shape
    axis: int
    start: int
    stop: int
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "Slice"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _shape(self.input_shape, "Slice.input_shape"))
        axis = _axis(self.axis, len(self.input_shape), "Slice.axis")
        object.__setattr__(self, "axis", axis)
        size = self.input_shape[axis]
        start, stop = int(self.start), int(self.stop)
        if start != self.start or stop != self.stop or not 0 <= start < stop <= size:
            raise IRError(f"Slice [{self.start}:{self.stop}] must satisfy 0 <= start < stop <= "
                          f"{size} (axis {axis} of {self.input_shape})")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "stop", stop)
        _freeze_metadata(self)

    @property
    def output_shape(self) -> Shape:
        shape = list(self.input_shape)
        shape[self.axis] = self.stop - self.start
        return tuple(shape)


REDUCTIONS: tuple[str, ...] = ("sum", "mean")


@dataclass(frozen=True, eq=False)
class Reduce(Node):
    """``y = op(x, axes, keepdims)`` over per-sample axes, ``op`` in ``REDUCTIONS``: the column
    sum of the spike-driven self-attention, a global average pool (``x.flatten(2).mean(-1)``)."""

    input_shape: Shape
    axes: tuple[int, ...]
    op: str = "sum"
    keepdims: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "Reduce"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _shape(self.input_shape, "Reduce.input_shape"))
        ndim = len(self.input_shape)
        raw = np.atleast_1d(np.asarray(self.axes)).tolist()
        axes = tuple(sorted({_axis(a, ndim, "Reduce.axes entry") for a in raw}))
        if not axes or len(axes) != len(raw):
            raise IRError(f"Reduce.axes must name distinct axes of {self.input_shape}, got "
                          f"{self.axes!r}")
        if self.op not in REDUCTIONS:
            raise IRError(f"Reduce.op must be one of {REDUCTIONS}, got {self.op!r}")
        if not self.keepdims and len(axes) == ndim:
            raise ShapeError("Reduce over every per-sample axis needs keepdims=True (a sample "
                             "keeps at least one axis)")
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "keepdims", bool(self.keepdims))
        _freeze_metadata(self)

    @property
    def output_shape(self) -> Shape:
        if self.keepdims:
            return tuple(1 if k in self.axes else n for k, n in enumerate(self.input_shape))
        return tuple(n for k, n in enumerate(self.input_shape) if k not in self.axes)

    @property
    def count(self) -> int:
        """How many inputs each output sums (the divisor of a mean)."""
        return int(np.prod([self.input_shape[a] for a in self.axes]))


class _Binary(Node):
    """A node with two ordered operands, ports ``"a"`` and ``"b"`` (``Graph.ports`` names the
    port of every edge into it; several edges into one port add up)."""

    a_shape: Shape
    b_shape: Shape
    ports: ClassVar[tuple[str, ...]] = ("a", "b")

    def _check_operands(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "a_shape", _shape(self.a_shape, f"{name}.a_shape"))
        object.__setattr__(self, "b_shape", _shape(self.b_shape, f"{name}.b_shape"))
        if len(self.a_shape) != len(self.b_shape):
            raise ShapeError(f"{name} operands must have the same number of axes (reshape one to "
                             f"keep size-1 axes), got a {self.a_shape} and b {self.b_shape}")
        _freeze_metadata(self)

    def port_shape(self, port: str) -> Shape:
        if port == "a":
            return self.a_shape
        if port == "b":
            return self.b_shape
        return super().port_shape(port)

    @property
    def input_shape(self) -> Shape:
        """The shape at port ``a`` (see :meth:`port_shape` for both)."""
        return self.a_shape


def _broadcast(a: Shape, b: Shape, what: str) -> Shape:
    try:
        return tuple(int(v) for v in np.broadcast_shapes(a, b))
    except ValueError as err:
        raise ShapeError(f"{what}: operand shapes a {a} and b {b} do not broadcast") from err


@dataclass(frozen=True, eq=False)
class Product(_Binary):
    r"""Elementwise product of two activations, :math:`y[t] = a[t] \odot b[t]`, broadcasting
    size-1 axes (NumPy rules, equal ranks).

    On binary spikes it is their AND (SEW ``AND``: ``a * b``; ``IAND``: ``a * (1 - b)``, the
    complement ``1 - b`` being a ``ChannelAffine`` with scale -1 and shift 1); the
    spike-driven self-attention uses it twice (``k * v``, ``q * kv``).
    """

    a_shape: Shape
    b_shape: Shape
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "Product"

    def __post_init__(self) -> None:
        self._check_operands()
        _broadcast(self.a_shape, self.b_shape, "Product")

    @property
    def output_shape(self) -> Shape:
        return _broadcast(self.a_shape, self.b_shape, "Product")


@dataclass(frozen=True, eq=False)
class MatMul(_Binary):
    r"""Matrix product of two activations over their last two axes, times a constant:
    :math:`y[t] = \mathrm{scale} \cdot a[t] \, b[t]`, i.e.
    ``y[..., i, j] = scale * sum_k a[..., i, k] * b[..., k, j]``; leading axes (heads)
    broadcast as in ``torch.matmul``.

    Spikformer's SSA is two of them on spikes, ``(V K^T) Q * 0.125`` with ``K^T`` a
    ``Permute``; no softmax.
    """

    a_shape: Shape
    b_shape: Shape
    scale: float = 1.0
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "MatMul"

    def __post_init__(self) -> None:
        self._check_operands()
        if len(self.a_shape) < 2:
            raise ShapeError(f"MatMul operands need at least 2 axes, got a {self.a_shape}")
        if self.a_shape[-1] != self.b_shape[-2]:
            raise ShapeError(f"MatMul: a {self.a_shape} has {self.a_shape[-1]} columns but b "
                             f"{self.b_shape} has {self.b_shape[-2]} rows")
        _broadcast(self.a_shape[:-2], self.b_shape[:-2], "MatMul (leading axes)")
        scale = float(self.scale)
        if not math.isfinite(scale):
            raise IRError(f"MatMul.scale must be finite, got {self.scale!r}")
        object.__setattr__(self, "scale", scale)

    @property
    def output_shape(self) -> Shape:
        lead = _broadcast(self.a_shape[:-2], self.b_shape[:-2], "MatMul")
        return (*lead, self.a_shape[-2], self.b_shape[-1])

    @property
    def inner(self) -> int:
        """The summed axis' length (``k``)."""
        return self.a_shape[-1]


OPERATION_TYPES: tuple[type[Node], ...] = (
    MaxPool2d, AdaptiveAvgPool2d, ChannelAffine, LayerNorm, Identity, Reshape, Permute, Slice,
    Reduce, Product, MatMul,
)


# --------------------------------------------------------------------------- neurons


class Neuron(_Elementwise):
    """Stateful neuron in discrete form (equations in the module docstring)."""

    spiking: ClassVar[bool]
    current_based: ClassVar[bool] = False
    gain: np.ndarray
    bias: np.ndarray

    def _check_neuron(self) -> None:
        self._freeze_params()
        name = type(self).__name__
        for decay in ("alpha", "beta"):
            if decay in self._params:
                value = getattr(self, decay)
                if np.any(value < 0) or np.any(value > 1):
                    raise IRError(f"{name}.{decay} must lie in [0, 1], got range "
                                  f"[{value.min():g}, {value.max():g}]")
        reset = getattr(self, "reset", None)
        if reset is not None and reset not in RESETS:
            raise IRError(f"{name}.reset must be one of {RESETS}, got {reset!r}")
        if self.spiking:
            self._check_spike_variant()

    def _check_spike_variant(self) -> None:
        """Validate the spike-variant fields (module docstring, "Spike variants")."""
        name = type(self).__name__
        fires_at_equal = self.fires_at_equal  # type: ignore[attr-defined]
        if not isinstance(fires_at_equal, (bool, np.bool_)):
            raise IRError(f"{name}.fires_at_equal must be True or False, got {fires_at_equal!r}")
        object.__setattr__(self, "fires_at_equal", bool(fires_at_equal))
        cap = self.max_spikes  # type: ignore[attr-defined]
        if cap is not None:
            if isinstance(cap, (bool, np.bool_)) or not isinstance(cap, (int, np.integer)) \
                    or cap < 1:
                raise IRError(f"{name}.max_spikes must be an integer >= 1 or None (no cap), "
                              f"got {cap!r}")
            object.__setattr__(self, "max_spikes", int(cap))
        timing = self.reset_timing  # type: ignore[attr-defined]
        if timing not in RESET_TIMINGS:
            raise IRError(f"{name}.reset_timing must be one of {RESET_TIMINGS}, got {timing!r}")
        threshold = self.v_threshold  # type: ignore[attr-defined]
        if self.multi_spike and not np.all(threshold > 0):
            raise IRError(f"{name}: max_spikes={cap} counts floor(v / v_threshold) spikes, which "
                          f"needs v_threshold > 0 everywhere; its minimum is {threshold.min():g}")
        if timing == "same_step_raised" and (self.reset != "subtract"  # type: ignore[attr-defined]
                                             or self.multi_spike):
            raise IRError(f"{name}: reset_timing 'same_step_raised' is snntorch's reset_delay=False "
                          "rule for a subtractive, single-spike neuron; this one has reset="
                          f"{self.reset!r}, max_spikes={cap!r}"  # type: ignore[attr-defined]
                          " (a zero reset is 'same_step')")
        v_min = self.v_min  # type: ignore[attr-defined]
        if v_min is not None:
            array = np.asarray(v_min, dtype=np.float64)
            try:
                array = np.broadcast_to(array, self.shape)
            except ValueError as err:
                raise ShapeError(f"{name}.v_min has shape {array.shape}, the neuron "
                                 f"{self.shape}") from err
            if not np.all(np.isfinite(array)):
                raise IRError(f"{name}.v_min holds NaN or infinite values (None: no clamp)")
            object.__setattr__(self, "v_min", frozen_array(array))

    @property
    def multi_spike(self) -> bool:
        """Whether the neuron may send more than one spike per step (``max_spikes != 1``)."""
        return bool(self.spiking and getattr(self, "max_spikes", 1) != 1)

    def spike_variant(self) -> dict[str, Any]:
        """The spike-variant fields that differ from the default rule, ``{field: value}``
        (empty for a neuron that fires and resets as the IR always has)."""
        if not self.spiking:
            return {}
        changed: dict[str, Any] = {}
        for key, default in SPIKE_VARIANT_DEFAULTS.items():
            value = getattr(self, key)
            if key == "v_min":
                if value is not None:
                    changed[key] = value
            elif value != default:
                changed[key] = value
        return changed

    @property
    def membrane_decay(self) -> np.ndarray:
        """Per-step decay of ``v`` (1 for integrators)."""
        return getattr(self, "beta", np.ones(self.shape))

    @property
    def synaptic_decay(self) -> np.ndarray | None:
        """Per-step decay of ``i`` for current-based neurons, else ``None``."""
        return getattr(self, "alpha", None)


@dataclass(frozen=True, eq=False)
class LIF(Neuron):
    """Leaky integrate-and-fire (see the module docstring)."""

    beta: np.ndarray
    v_threshold: np.ndarray
    gain: np.ndarray = 1.0  # type: ignore[assignment]
    v_leak: np.ndarray = 0.0  # type: ignore[assignment]
    v_reset: np.ndarray = 0.0  # type: ignore[assignment]
    bias: np.ndarray = 0.0  # type: ignore[assignment]
    reset: Reset = "zero"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    fires_at_equal: bool = False
    max_spikes: int | None = 1
    reset_timing: ResetTiming = "same_step"
    v_min: np.ndarray | None = None
    kind: ClassVar[str] = "LIF"
    spiking: ClassVar[bool] = True
    _params: ClassVar[tuple[str, ...]] = ("beta", "v_threshold", "gain", "v_leak", "v_reset", "bias")

    def __post_init__(self) -> None:
        self._check_neuron()


@dataclass(frozen=True, eq=False)
class CubaLIF(Neuron):
    """Current-based LIF: a synaptic current filter ``alpha`` before the membrane ``beta``."""

    alpha: np.ndarray
    beta: np.ndarray
    v_threshold: np.ndarray
    gain_syn: np.ndarray = 1.0  # type: ignore[assignment]
    gain: np.ndarray = 1.0  # type: ignore[assignment]
    v_leak: np.ndarray = 0.0  # type: ignore[assignment]
    v_reset: np.ndarray = 0.0  # type: ignore[assignment]
    bias: np.ndarray = 0.0  # type: ignore[assignment]
    reset: Reset = "zero"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    fires_at_equal: bool = False
    max_spikes: int | None = 1
    reset_timing: ResetTiming = "same_step"
    v_min: np.ndarray | None = None
    kind: ClassVar[str] = "CubaLIF"
    spiking: ClassVar[bool] = True
    current_based: ClassVar[bool] = True
    _params: ClassVar[tuple[str, ...]] = ("alpha", "beta", "v_threshold", "gain_syn", "gain",
                                          "v_leak", "v_reset", "bias")

    def __post_init__(self) -> None:
        self._check_neuron()


@dataclass(frozen=True, eq=False)
class IF(Neuron):
    """Integrate-and-fire: a LIF with ``beta = 1`` and no leak."""

    v_threshold: np.ndarray
    gain: np.ndarray = 1.0  # type: ignore[assignment]
    v_reset: np.ndarray = 0.0  # type: ignore[assignment]
    bias: np.ndarray = 0.0  # type: ignore[assignment]
    reset: Reset = "zero"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    fires_at_equal: bool = False
    max_spikes: int | None = 1
    reset_timing: ResetTiming = "same_step"
    v_min: np.ndarray | None = None
    kind: ClassVar[str] = "IF"
    spiking: ClassVar[bool] = True
    _params: ClassVar[tuple[str, ...]] = ("v_threshold", "gain", "v_reset", "bias")

    def __post_init__(self) -> None:
        self._check_neuron()


@dataclass(frozen=True, eq=False)
class LI(Neuron):
    """Leaky integrator: a LIF without threshold; outputs ``v``."""

    beta: np.ndarray
    gain: np.ndarray = 1.0  # type: ignore[assignment]
    v_leak: np.ndarray = 0.0  # type: ignore[assignment]
    bias: np.ndarray = 0.0  # type: ignore[assignment]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "LI"
    spiking: ClassVar[bool] = False
    _params: ClassVar[tuple[str, ...]] = ("beta", "gain", "v_leak", "bias")

    def __post_init__(self) -> None:
        self._check_neuron()


@dataclass(frozen=True, eq=False)
class CubaLI(Neuron):
    """Current-based leaky integrator: a CubaLIF without threshold; outputs ``v``."""

    alpha: np.ndarray
    beta: np.ndarray
    gain_syn: np.ndarray = 1.0  # type: ignore[assignment]
    gain: np.ndarray = 1.0  # type: ignore[assignment]
    v_leak: np.ndarray = 0.0  # type: ignore[assignment]
    bias: np.ndarray = 0.0  # type: ignore[assignment]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "CubaLI"
    spiking: ClassVar[bool] = False
    current_based: ClassVar[bool] = True
    _params: ClassVar[tuple[str, ...]] = ("alpha", "beta", "gain_syn", "gain", "v_leak", "bias")

    def __post_init__(self) -> None:
        self._check_neuron()


@dataclass(frozen=True, eq=False)
class Integrator(Neuron):
    """Pure integrator (NIR ``I``): ``v[t] = v[t-1] + gain * x[t] + bias``; outputs ``v``."""

    gain: np.ndarray
    bias: np.ndarray = 0.0  # type: ignore[assignment]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "Integrator"
    spiking: ClassVar[bool] = False
    _params: ClassVar[tuple[str, ...]] = ("gain", "bias")

    def __post_init__(self) -> None:
        self._check_neuron()


def spike_variant_text(variant: Mapping[str, Any]) -> str:
    """``Neuron.spike_variant()`` in words, for the messages of what cannot hold it."""
    words = []
    for key, value in variant.items():
        if key == "max_spikes":
            words.append("several spikes per step (max_spikes="
                         f"{'unbounded' if value is None else value})")
        elif key == "fires_at_equal":
            words.append("fires at v >= threshold")
        elif key == "reset_timing":
            words.append(f"reset_timing={value!r}")
        elif key == "v_min":
            words.append(f"a lower membrane clamp (v_min, min {float(np.min(value)):g})")
    return ", ".join(words)


# The spike-variant fields of the spiking kinds and their defaults (the IR's original rule).
SPIKE_VARIANT_DEFAULTS: Mapping[str, Any] = {"fires_at_equal": False, "max_spikes": 1,
                                              "reset_timing": "same_step", "v_min": None}
NEURON_TYPES: tuple[type[Neuron], ...] = (LIF, CubaLIF, IF, LI, CubaLI, Integrator)
NODE_TYPES: tuple[type[Node], ...] = (
    Input, Output, Affine, Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten, Scale, Delay, Threshold,
    *NEURON_TYPES, *OPERATION_TYPES,
)
