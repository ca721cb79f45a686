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
    *NEURON_TYPES,
)
