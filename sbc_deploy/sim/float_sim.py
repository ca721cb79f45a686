r"""Float simulator: the IR's discrete-time semantics in torch, batched over samples.

Every tensor is ``[T, B, *shape]`` (time, batch, the node's per-sample shape). The semantics are
exactly the IR's (``sbc_deploy.ir.nodes`` and ``sbc_deploy.ir.graph``): several edges into a node
add up (per port for ``Product`` / ``MatMul``, whose operands ``a`` and ``b`` the graph's
``ports`` name), a node may feed several nodes, a recurrent edge carries its source's value of the
previous step (at ``t = 0`` its value at rest: a synapse's bias, a neuron's zero) and every other
edge propagates within the same step.

Schedule. The graph is cut into its strongly connected components. A node on no cycle is run
node by node over the whole sequence: a synapse layer is one batched op over ``T * B`` samples,
a Delay one gather, and only neurons loop over time, on ``[B, *shape]`` tensors. The nodes of a
cycle (a recurrent layer and its feedback synapse) are stepped through time together. A
feed-forward graph therefore never steps the whole network through time.

Streaming. The schedule runs on chunks of ``time_chunk`` steps x ``batch_chunk`` samples (or
chunks that :func:`chunk_plan` sizes from a ``memory_budget``), carrying every neuron's state,
every delay's history and every cycle's last step from one chunk to the next, so memory is
bounded by the chunk instead of growing with ``T`` and ``B``.

Neurons are pure step functions on named-tuple state, like norse's functional API::

    s, state = neuron_step(x, state, p)

with the equations of ``sbc_deploy.ir.nodes``, one comment per equation; ``neuron_sequence`` is
the same recurrence over a whole sequence (bit for bit). Parameters are converted to tensors
once per call; ``threads`` sets torch's intra-op threads for the call and restores them.

Example::

    >>> result = simulate(graph, spikes, record=["lif1", "lif1:v"])   # spikes: [T, B, 784]
    >>> result.outputs["output"].shape, result.recorded["lif1:v"].shape

A record name is a node name (its output) or ``"<node>:v"`` / ``"<node>:i"`` for a neuron's
membrane potential / synaptic current after each step (after the reset).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sbc_deploy.devices import default_threads, torch_threads
from sbc_deploy.errors import ConfigError, DataError, UnsupportedNodeError
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
    Node,
    Output,
    Permute,
    Product,
    Reduce,
    Reshape,
    Scale,
    Slice,
    SumPool2d,
    Synapse,
    Threshold,
)

log = logging.getLogger(__name__)

SynapseInputHook = Callable[[str, Tensor], None]
OperandsHook = Callable[[str, Tensor, Tensor], None]  # (node, a, b) of a Product / MatMul


# --------------------------------------------------------------------------- neuron numerics


class NeuronConstants(NamedTuple):
    """A neuron's discrete-time parameters as float64 arrays of the neuron's shape.

    Shared by the simulator and the exporters so that both compute the same numbers. IF and
    Integrator have ``beta = 1`` and no leak; kinds without a synaptic filter have
    ``alpha = gain_syn = None``; kinds without a threshold have ``v_threshold = v_reset = None``.

    Attributes:
        alpha: synaptic current decay per step.
        gain_syn: input gain of the synaptic current.
        beta: membrane decay per step.
        gain: gain of the membrane's input (the current, or ``x`` without a synaptic filter).
        drive: the input-independent part of a step, ``(1 - beta) * v_leak + bias``.
        v_threshold: spike threshold.
        v_reset: value after a spike (reset ``"zero"``).
        subtract: reset by subtracting the threshold instead of setting ``v_reset``.
        fires_at_equal, max_spikes, reset_timing, v_min: the spike variant (the IR's fields of
            the same names, ``sbc_deploy.ir.nodes``); their defaults are the plain rule.
    """

    alpha: np.ndarray | None
    gain_syn: np.ndarray | None
    beta: np.ndarray
    gain: np.ndarray
    drive: np.ndarray
    v_threshold: np.ndarray | None
    v_reset: np.ndarray | None
    subtract: bool
    fires_at_equal: bool = False
    max_spikes: int | None = 1
    reset_timing: str = "same_step"
    v_min: np.ndarray | None = None

    @property
    def plain(self) -> bool:
        """Whether the neuron fires and resets by the IR's plain rule (no spike variant)."""
        return is_plain(self)


def is_plain(p: "NeuronConstants | NeuronParameters") -> bool:
    """Whether ``p`` has no spike variant: one spike at ``v > thr``, reset in the same step,
    no clamp (every neuron before the variants existed, and the simulator's fast paths)."""
    return (not p.fires_at_equal and p.max_spikes == 1 and p.reset_timing == "same_step"
            and p.v_min is None)


def neuron_constants(node: Neuron) -> NeuronConstants:
    """The discrete-time constants of any IR neuron (see :class:`NeuronConstants`)."""
    shape = node.shape
    beta = np.broadcast_to(np.asarray(node.membrane_decay, dtype=np.float64), shape)
    v_leak = np.asarray(getattr(node, "v_leak", 0.0), dtype=np.float64)
    drive = np.broadcast_to((1.0 - beta) * v_leak + np.asarray(node.bias, np.float64), shape)
    fields: dict[str, Any] = node.parameters()
    alpha = gain_syn = v_threshold = v_reset = None
    if node.current_based:
        alpha, gain_syn = np.asarray(fields["alpha"]), np.asarray(fields["gain_syn"])
    variant: dict[str, Any] = {}
    if node.spiking:
        v_threshold, v_reset = np.asarray(fields["v_threshold"]), np.asarray(fields["v_reset"])
        variant = {key: fields[key] for key in
                   ("fires_at_equal", "max_spikes", "reset_timing", "v_min")}
    subtract = getattr(node, "reset", "zero") == "subtract"
    return NeuronConstants(alpha, gain_syn, beta.copy(), np.asarray(node.gain), drive.copy(),
                           v_threshold, v_reset, subtract, **variant)


def _tensor(values: Any, dtype: torch.dtype, device: str | torch.device) -> Tensor:
    """A tensor copy of an IR array (IR arrays are read-only; the copy keeps them so)."""
    return torch.tensor(np.asarray(values), dtype=dtype, device=device)


class NeuronParameters(NamedTuple):
    """:class:`NeuronConstants` as tensors on the simulation's device and dtype."""

    alpha: Tensor | None
    gain_syn: Tensor | None
    beta: Tensor
    gain: Tensor
    drive: Tensor
    v_threshold: Tensor | None
    v_reset: Tensor | None
    subtract: bool
    fires_at_equal: bool = False
    max_spikes: int | None = 1
    reset_timing: str = "same_step"
    v_min: Tensor | None = None


class NeuronState(NamedTuple):
    """State of one neuron population: synaptic current ``i`` (or None), membrane ``v`` and,
    for ``reset_timing="next_step"``, the previous step's spike counts ``c`` whose reset is
    still to come (else None)."""

    i: Tensor | None
    v: Tensor
    c: Tensor | None = None


def neuron_parameters(node: Neuron, dtype: torch.dtype = torch.float32,
                      device: str | torch.device = "cpu") -> NeuronParameters:
    """Convert a neuron's constants to tensors once (not once per step)."""
    c = neuron_constants(node)

    def tensor(value: np.ndarray | None) -> Tensor | None:
        return None if value is None else _tensor(value, dtype, device)

    return NeuronParameters(tensor(c.alpha), tensor(c.gain_syn), tensor(c.beta),  # type: ignore[arg-type]
                            tensor(c.gain), tensor(c.drive), tensor(c.v_threshold),  # type: ignore[arg-type]
                            tensor(c.v_reset), c.subtract, c.fires_at_equal, c.max_spikes,
                            c.reset_timing, tensor(c.v_min))


def neuron_initial_state(p: NeuronParameters, batch: int) -> NeuronState:
    """The state before the first step: everything zero."""
    v = torch.zeros((batch, *p.beta.shape), dtype=p.beta.dtype, device=p.beta.device)
    return NeuronState(i=None if p.alpha is None else torch.zeros_like(v), v=v,
                       c=torch.zeros_like(v) if p.reset_timing == "next_step" else None)


def spike_count(u: Tensor, p: NeuronParameters) -> Tensor:
    """Spikes of one step from the membrane ``u`` (after the decay, the input and any pending
    reset), as floats: ``[u > thr]`` (``[u >= thr]`` with ``fires_at_equal``) for a single-spike
    neuron; ``floor(u / thr)`` (``fires_at_equal``) or ``ceil(u / thr) - 1`` clipped to
    ``[0, max_spikes]`` for a multi-spike one. ``floor(u / thr)`` is rockpool's ``StepPWL`` and
    sinabs' ``trunc`` of the same quotient for ``u > 0``, so the counts are theirs bit for bit."""
    threshold = p.v_threshold
    assert threshold is not None
    if p.max_spikes == 1:
        above = torch.ge(u, threshold) if p.fires_at_equal else torch.gt(u, threshold)
        return above.to(u.dtype)
    quotient = u / threshold
    count = torch.floor(quotient) if p.fires_at_equal else torch.ceil(quotient) - 1
    return count.clamp_(min=0, max=p.max_spikes)


def _fire(u: Tensor, state: NeuronState, p: NeuronParameters) -> tuple[Tensor, Tensor]:
    """The spike-variant end of a step (``sbc_deploy.ir.nodes``, "Spike variants"): the
    pending reset, the count, the same-step reset and the clamp. ``u`` is the membrane after
    the decay and the input; ``state`` the state before the step. Returns ``(c[t], v[t])``."""
    threshold, v_reset = p.v_threshold, p.v_reset
    assert threshold is not None and v_reset is not None
    if p.reset_timing == "next_step" and state.c is not None:
        if p.subtract:
            # u[t] <- u[t] - c[t-1] * v_threshold
            u = u - state.c * threshold
        else:
            # u[t] <- v_reset where c[t-1] > 0 (the refractory zero reset)
            u = torch.where(state.c > 0, v_reset, u)
    if p.reset_timing == "same_step_raised":
        # r[t] = [v[t-1] > thr];  c[t] = [u[t] - r[t] * thr > thr]
        raised = spike_count(state.v, p)
        count = spike_count(u - raised * threshold, p)
    else:
        # c[t] = count(u[t])
        count = spike_count(u, p)
    v = u
    if p.reset_timing != "next_step":
        if p.subtract:
            # v[t] = u[t] - c[t] * v_threshold
            v = u - count * threshold
        else:
            # v[t] = v_reset where c[t] > 0
            v = torch.where(count > 0, v_reset, u)
    if p.v_min is not None:
        # v[t] <- max(v[t], v_min), as sinabs computes it: relu(v - v_min) + v_min
        v = torch.relu(v - p.v_min) + p.v_min
    return count, v


def neuron_step(x: Tensor, state: NeuronState,
                p: NeuronParameters) -> tuple[Tensor, NeuronState]:
    """One step of any IR neuron: ``x`` is everything arriving at step ``t``, ``[B, *shape]``.

    Returns:
        The output (spikes ``s[t]`` as 0/1 floats for spiking kinds -- spike counts for a
        multi-spike neuron -- else ``v[t]``) and the new state.
    """
    i = state.i
    if p.alpha is not None:
        # i[t] = alpha * i[t-1] + gain_syn * x[t]
        i = p.alpha * state.i + p.gain_syn * x
        x = i
    # v[t] = beta * v[t-1] + (gain * x[t] + drive),  drive = (1 - beta) * v_leak + bias
    v = p.beta * state.v + (p.gain * x + p.drive)
    if p.v_threshold is None:
        return v, NeuronState(i, v)
    if not is_plain(p):
        count, v = _fire(v, state, p)
        return count, NeuronState(i, v, count if p.reset_timing == "next_step" else None)
    # s[t] = v[t] > v_threshold
    spike = v > p.v_threshold
    if p.subtract:
        # v[t] <- v[t] - v_threshold where s[t]
        v = torch.where(spike, v - p.v_threshold, v)
    else:
        # v[t] <- v_reset where s[t]
        v = torch.where(spike, p.v_reset, v)  # type: ignore[arg-type]
    return spike.to(v.dtype), NeuronState(i, v)


# Long: a third is the docstring that states the bit-for-bit argument; the rest is one
# time loop whose in-place ops (and the skipped ones) must stay side by side to be checked
# against neuron_step line by line.
def neuron_sequence(x: Tensor, p: NeuronParameters, state: NeuronState | None = None,
                    trace: Iterable[str] = ()) -> tuple[Tensor, NeuronState, dict[str, Tensor]]:
    """:func:`neuron_step` over a whole sequence ``x`` ``[T, B, *shape]``, bit for bit.

    The input terms that need no state (``gain * x + drive``, or ``gain_syn * x`` with a
    synaptic filter) are computed for all steps in one op; only the recurrences loop over time,
    in place on one membrane buffer, writing into preallocated outputs (spikes straight into
    the output dtype). Ops that cannot change a bit are skipped: ``1 * x`` (a gain of one),
    ``1 * v`` (a decay of one, IF) and, for an IF neuron with a zero drive, ``x + 0`` (see
    :func:`_drive_is_input`). With a subtractive reset by a positive finite threshold the
    reset is one fused op, ``v <- v + (-1) * s[t] * v_threshold``: the product is exactly
    ``0`` or ``v_threshold``, so the sum is rounded once, as ``v - v_threshold`` is, and
    ``v + (-0) = v`` for every ``v``. A neuron with a spike variant (multi-spike, ``>=``, a
    delayed reset, a clamp) takes the same input terms and ends each step with the same ops as
    :func:`neuron_step` (:func:`_fire`).

    Args:
        x: everything arriving at the neuron, per step.
        p: the neuron's parameters.
        state: the state before ``x[0]`` (default: zero); not modified.
        trace: state fields (``"v"``, ``"i"``) whose value after every step to return.

    Returns:
        The output sequence, the final state and ``{field: [T, B, *shape]}`` for ``trace``.
    """
    steps, batch = x.shape[:2]
    state = neuron_initial_state(p, batch) if state is None else state
    i, v, pending = state
    v = v.clone()   # the recurrence runs in place on this buffer
    unit_beta = bool((p.beta == 1).all())
    spiking = p.v_threshold is not None
    variant = spiking and not is_plain(p)
    if p.alpha is None:
        if _drive_is_input(p, v, unit_beta):
            drive = x
        else:
            # gain * x[t] + drive, for every t at once (1 * x[t] is x[t], bit for bit)
            drive = (x if bool((p.gain == 1).all()) else p.gain * x) + p.drive
    else:
        # gain_syn * x[t], for every t at once
        syn_in = p.gain_syn * x
    fused_reset = spiking and p.subtract and bool(
        (torch.isfinite(p.v_threshold) & (p.v_threshold > 0)).all())  # type: ignore[arg-type]
    spikes = torch.empty(x.shape, dtype=x.dtype, device=x.device) if spiking else None
    traces = {f: torch.empty_like(x) for f in trace}
    if not spiking:
        traces.setdefault("v", torch.empty_like(x))
    for t in range(steps):
        if p.alpha is None:
            drive_t = drive[t]
        else:
            # i[t] = alpha * i[t-1] + gain_syn * x[t]
            i = p.alpha * i + syn_in[t]
            drive_t = p.gain * i + p.drive
        if variant:
            before = NeuronState(i, v, pending)
            # u[t] = beta * v[t-1] + (gain * x[t] + drive)
            u = v + drive_t if unit_beta else p.beta * v + drive_t
            count, v = _fire(u, before, p)
            pending = count if p.reset_timing == "next_step" else None
            spikes[t] = count  # type: ignore[index]
            for field, values in traces.items():
                values[t] = i if field == "i" else v
            continue
        # v[t] = beta * v[t-1] + (gain * x[t] + drive)
        if not unit_beta:
            v.mul_(p.beta)
        v.add_(drive_t)
        if spiking:
            if fused_reset:
                # s[t] = v[t] > v_threshold
                spike = torch.gt(v, p.v_threshold, out=spikes[t])  # type: ignore[index]
                # v[t] <- v[t] - v_threshold * s[t]
                v.addcmul_(spike, p.v_threshold, value=-1)  # type: ignore[arg-type]
            else:
                # s[t] = v[t] > v_threshold
                spike = torch.gt(v, p.v_threshold)
                spikes[t] = spike  # type: ignore[index]
                if p.subtract:
                    # v[t] <- v[t] - v_threshold where s[t]
                    v = torch.where(spike, v - p.v_threshold, v)
                else:
                    # v[t] <- v_reset where s[t]
                    v = torch.where(spike, p.v_reset, v)  # type: ignore[arg-type]
        for field, values in traces.items():
            values[t] = i if field == "i" else v
    out = spikes if spikes is not None else traces["v"]
    return out, NeuronState(i, v, pending), {f: traces[f] for f in trace}


def _negative_zero(values: Tensor) -> bool:
    return bool(((values == 0) & torch.signbit(values)).any())


def _drive_is_input(p: NeuronParameters, v: Tensor, unit_beta: bool) -> bool:
    """Whether ``drive[t] = gain * x[t] + drive`` may be taken as ``x[t]`` itself, bit for bit.

    True for a neuron without synaptic filter, with ``gain == 1``, ``beta == 1`` and
    ``drive == +0`` everywhere (IF without bias). ``1 * x`` is ``x``; ``x + (+0)`` differs from
    ``x`` only for ``x = -0``, and then ``v + (+0)`` and ``v + (-0)`` differ only for
    ``v = -0``. With ``beta == 1`` the membrane is never ``-0`` unless it starts or is reset
    there: ``+0 + d`` and ``v + d`` with ``v != 0`` are never ``-0``, and a subtractive reset
    leaves ``v - v_threshold > 0``. So the condition also asks for no ``-0`` in the initial
    membrane and, with a reset to ``v_reset``, none in ``v_reset``.
    """
    if p.alpha is not None or not unit_beta or not bool((p.gain == 1).all()):
        return False
    if not bool((p.drive == 0).all()) or _negative_zero(p.drive) or _negative_zero(v):
        return False
    return p.v_reset is None or p.subtract or not _negative_zero(p.v_reset)


# --------------------------------------------------------------------------- node kernels


class _Kernel:
    """One node compiled for one call (parameters converted once).

    Stateless kernels implement ``apply`` on ``[N, *in]``; stateful ones ``initial`` and
    ``step`` on ``[B, *in]`` (and may add a faster ``sequence``).
    """

    stateful = False

    def apply(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def initial(self, batch: int) -> Any:
        return None

    def step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        return self.apply(x), state

    def sequence(self, x: Tensor) -> Tensor:
        """``[T, B, *in] -> [T, B, *out]`` for a stateless kernel: one op over ``T * B``."""
        return self.apply(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class _Identity(_Kernel):
    def apply(self, x: Tensor) -> Tensor:
        return x

    def sequence(self, x: Tensor) -> Tensor:
        return x


class _AffineKernel(_Kernel):
    def __init__(self, node: Affine, dtype: torch.dtype, device: torch.device) -> None:
        self.weight = _tensor(node.weight, dtype=dtype, device=device)
        self.bias = None if node.bias is None else _tensor(node.bias, dtype=dtype,
                                                                    device=device)

    def apply(self, x: Tensor) -> Tensor:
        # y = W x + b
        return F.linear(x, self.weight, self.bias)

    def sequence(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class _ConvKernel(_Kernel):
    def __init__(self, node: Conv1d | Conv2d, dtype: torch.dtype, device: torch.device) -> None:
        self.weight = _tensor(node.weight, dtype=dtype, device=device)
        self.bias = None if node.bias is None else _tensor(node.bias, dtype=dtype,
                                                                    device=device)
        self.conv = F.conv2d if isinstance(node, Conv2d) else F.conv1d
        self.options = dict(stride=node.stride, padding=node.padding, dilation=node.dilation,
                            groups=node.groups)

    def apply(self, x: Tensor) -> Tensor:
        # y = W (*) x + b, PyTorch cross-correlation
        return self.conv(x, self.weight, self.bias, **self.options)


class _PoolKernel(_Kernel):
    """Sum or mean over windows; padding is explicit zeros, which the mean counts."""

    def __init__(self, node: SumPool2d | AvgPool2d) -> None:
        ph, pw = node.padding
        self.pad = (pw, pw, ph, ph)
        self.kernel_size, self.stride = node.kernel_size, node.stride
        self.divisor = 1 if isinstance(node, SumPool2d) else None

    def apply(self, x: Tensor) -> Tensor:
        x = F.pad(x, self.pad) if any(self.pad) else x
        return F.avg_pool2d(x, self.kernel_size, self.stride, divisor_override=self.divisor)


class _ReshapeKernel(_Kernel):
    def __init__(self, node: Flatten | Reshape) -> None:
        self.shape = node.output_shape

    def apply(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.shape)


class _ScaleKernel(_Kernel):
    def __init__(self, node: Scale, dtype: torch.dtype, device: torch.device) -> None:
        self.scale = _tensor(node.scale, dtype=dtype, device=device)

    def apply(self, x: Tensor) -> Tensor:
        # y = scale * x
        return self.scale * x


class _ThresholdKernel(_Kernel):
    def __init__(self, node: Threshold, dtype: torch.dtype, device: torch.device) -> None:
        self.threshold = _tensor(node.threshold, dtype=dtype, device=device)

    def apply(self, x: Tensor) -> Tensor:
        # y = x > threshold
        return (x > self.threshold).to(x.dtype)


class _MaxPoolKernel(_Kernel):
    """Max over windows; PyTorch pads with -inf (never the max). On 0/1 spikes: their OR."""

    def __init__(self, node: MaxPool2d) -> None:
        self.options = {"kernel_size": node.kernel_size, "stride": node.stride,
                        "padding": node.padding}

    def apply(self, x: Tensor) -> Tensor:
        # y[c, i, j] = max over the window of x
        return F.max_pool2d(x, **self.options)


class _AdaptivePoolKernel(_Kernel):
    def __init__(self, node: AdaptiveAvgPool2d) -> None:
        self.output_size = node.output_size

    def apply(self, x: Tensor) -> Tensor:
        # y[c, i, j] = mean of x over PyTorch's adaptive window (i, j)
        return F.adaptive_avg_pool2d(x, self.output_size)


class _ChannelAffineKernel(_Kernel):
    def __init__(self, node: ChannelAffine, dtype: torch.dtype, device: torch.device) -> None:
        view = (-1, *[1] * (len(node.input_shape) - 1))
        self.scale = _tensor(node.scale, dtype=dtype, device=device).reshape(view)
        self.shift = _tensor(node.shift, dtype=dtype, device=device).reshape(view)

    def apply(self, x: Tensor) -> Tensor:
        # y[c, ...] = scale[c] * x[c, ...] + shift[c]
        return torch.addcmul(self.shift, x, self.scale)


class _LayerNormKernel(_Kernel):
    def __init__(self, node: LayerNorm, dtype: torch.dtype, device: torch.device) -> None:
        self.weight = _tensor(node.weight, dtype=dtype, device=device)
        self.bias = _tensor(node.bias, dtype=dtype, device=device)
        self.eps = node.eps

    def apply(self, x: Tensor) -> Tensor:
        # y = (x - mean) / sqrt(var + eps) * weight + bias over the trailing axes
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class _PermuteKernel(_Kernel):
    def __init__(self, node: Permute) -> None:
        self.dims = (0, *(d + 1 for d in node.dims))

    def apply(self, x: Tensor) -> Tensor:
        # y = x.permute(dims), per sample (a view: consumers copy when they need to)
        return x.permute(self.dims)


class _SliceKernel(_Kernel):
    def __init__(self, node: Slice) -> None:
        self.axis, self.start, self.length = node.axis + 1, node.start, node.stop - node.start

    def apply(self, x: Tensor) -> Tensor:
        # y = x[..., start:stop, ...] along the axis
        return x.narrow(self.axis, self.start, self.length)


class _ReduceKernel(_Kernel):
    def __init__(self, node: Reduce) -> None:
        self.dims = tuple(a + 1 for a in node.axes)
        self.keepdims = node.keepdims
        self.mean = node.op == "mean"

    def apply(self, x: Tensor) -> Tensor:
        # y = sum (or mean) of x over the axes
        if self.mean:
            return x.mean(dim=self.dims, keepdim=self.keepdims)
        return x.sum(dim=self.dims, keepdim=self.keepdims)


class _BinaryKernel(_Kernel):
    """Two ordered operands (ports ``a``, ``b``): ``combine`` replaces ``apply``."""

    def __init__(self, node: Product | MatMul) -> None:
        self.matmul = isinstance(node, MatMul)
        self.scale = node.scale if isinstance(node, MatMul) else 1.0

    def combine(self, a: Tensor, b: Tensor) -> Tensor:
        if not self.matmul:
            # y = a * b, size-1 axes broadcast
            return a * b
        # y = scale * (a @ b) over the last two axes
        y = torch.matmul(a, b)
        return y if self.scale == 1.0 else y * self.scale

    def sequence_of(self, a: Tensor, b: Tensor) -> Tensor:
        """``[T, B, *a], [T, B, *b] -> [T, B, *out]``: one op over ``T * B``."""
        return self.combine(a, b)

    def step_of(self, a: Tensor, b: Tensor) -> Tensor:
        return self.combine(a, b)


class _DelayKernel(_Kernel):
    """``y[t] = x[t - delay]`` per element; the state holds the last ``D`` inputs."""

    stateful = True

    def __init__(self, node: Delay, dtype: torch.dtype, device: torch.device) -> None:
        self.delay = _tensor(node.delay, dtype=torch.long, device=device)
        self.depth = node.max_delay
        self.dtype = dtype

    def initial(self, batch: int) -> Tensor:
        # history[k] = x[t - 1 - k], zero before the first step
        return torch.zeros((self.depth, batch, *self.delay.shape), dtype=self.dtype,
                           device=self.delay.device)

    def step(self, x: Tensor, history: Tensor) -> tuple[Tensor, Tensor]:
        window = torch.cat([x[None], history])  # window[k] = x[t - k]
        index = self.delay.expand(1, *x.shape)
        return window.gather(0, index)[0], window[:self.depth]

    def sequence(self, x: Tensor) -> Tensor:
        return self.sequence_from(x, None)[0]

    def sequence_from(self, x: Tensor, history: Tensor | None) -> tuple[Tensor, Tensor]:
        """The whole sequence ``x`` after ``history`` (``history[k] = x[t0 - 1 - k]``, zero
        before the first step): the delayed sequence and the history after its last step."""
        steps = x.shape[0]
        if history is None:
            padded = F.pad(x, (0, 0) * (x.dim() - 1) + (self.depth, 0))  # padded[t + D] = x[t]
        else:
            padded = torch.cat([history.flip(0), x])  # padded[t + D] = x[t], t >= -D
        time = torch.arange(steps, device=x.device).reshape(-1, *[1] * (x.dim() - 1))
        index = (time + self.depth - self.delay).expand(*x.shape)
        return padded.gather(0, index), padded[steps:].flip(0)


class _NeuronKernel(_Kernel):
    stateful = True

    def __init__(self, node: Neuron, dtype: torch.dtype, device: torch.device) -> None:
        self.p = neuron_parameters(node, dtype, device)

    def initial(self, batch: int) -> NeuronState:
        return neuron_initial_state(self.p, batch)

    def step(self, x: Tensor, state: NeuronState) -> tuple[Tensor, NeuronState]:
        return neuron_step(x, state, self.p)


def _compile(name: str, node: Node, dtype: torch.dtype, device: torch.device) -> _Kernel:
    if isinstance(node, (Input, Output)):
        return _Identity()
    if isinstance(node, Affine):
        return _AffineKernel(node, dtype, device)
    if isinstance(node, (Conv1d, Conv2d)):
        return _ConvKernel(node, dtype, device)
    if isinstance(node, MaxPool2d):
        return _MaxPoolKernel(node)
    if isinstance(node, (SumPool2d, AvgPool2d)):
        return _PoolKernel(node)
    if isinstance(node, (Flatten, Reshape)):
        return _ReshapeKernel(node)
    if isinstance(node, Identity):
        return _Identity()
    if isinstance(node, AdaptiveAvgPool2d):
        return _AdaptivePoolKernel(node)
    if isinstance(node, ChannelAffine):
        return _ChannelAffineKernel(node, dtype, device)
    if isinstance(node, LayerNorm):
        return _LayerNormKernel(node, dtype, device)
    if isinstance(node, Permute):
        return _PermuteKernel(node)
    if isinstance(node, Slice):
        return _SliceKernel(node)
    if isinstance(node, Reduce):
        return _ReduceKernel(node)
    if isinstance(node, (Product, MatMul)):
        return _BinaryKernel(node)
    if isinstance(node, Scale):
        return _ScaleKernel(node, dtype, device)
    if isinstance(node, Threshold):
        return _ThresholdKernel(node, dtype, device)
    if isinstance(node, Delay):
        return _DelayKernel(node, dtype, device)
    if isinstance(node, Neuron):
        return _NeuronKernel(node, dtype, device)
    raise UnsupportedNodeError(f"the float simulator has no kernel for {type(node).__name__}",
                               where=f"node '{name}'")


# --------------------------------------------------------------------------- schedule


def _cycles(graph: Graph) -> list[frozenset[str]]:
    """The strongly connected components that hold a cycle (each holds a recurrent edge)."""
    successors: dict[str, list[str]] = {n: [] for n in graph.nodes}
    predecessors: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        successors[src].append(dst)
        predecessors[dst].append(src)

    def reach(start: str, links: Mapping[str, list[str]]) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for nxt in links[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    components: list[frozenset[str]] = []
    for src, _ in sorted(graph.recurrent_edges):
        if any(src in c for c in components):
            continue
        components.append(frozenset(reach(src, successors) & reach(src, predecessors)))
    return components


def _schedule(graph: Graph) -> list[tuple[tuple[str, ...], bool]]:
    """Units in execution order, each ``(nodes, is_cycle)``: a single node on no cycle, or the
    nodes of one cycle in topological order. A unit runs once all its inputs from outside
    it are known."""
    order = {name: k for k, name in enumerate(graph.topological_order)}
    unit_of = {name: (name,) for name in graph.nodes}
    cycles = set()
    for component in _cycles(graph):
        unit = tuple(sorted(component, key=order.__getitem__))
        unit_of.update({name: unit for name in unit})
        cycles.add(unit)
    pending = sorted(set(unit_of.values()), key=lambda u: order[u[0]])
    done: set[str] = set()
    units = []
    while pending:
        for k, unit in enumerate(pending):
            outside = {src for src, dst in graph.edges if dst in unit and src not in unit}
            if outside <= done:
                units.append((pending.pop(k), unit in cycles))
                done.update(unit)
                break
    return units


# --------------------------------------------------------------------------- simulate


@dataclass(frozen=True)
class SimResult:
    """What one simulation returns: every tensor is ``[T, B, *shape]``.

    Attributes:
        outputs: Output node name -> what arrived at that node.
        recorded: record name -> the node's output (or a neuron's ``:v`` / ``:i`` state).
    """

    outputs: Mapping[str, Tensor]
    recorded: Mapping[str, Tensor]


def _input_tensors(graph: Graph, inputs: Tensor | np.ndarray | Mapping[str, Any],
                   dtype: torch.dtype, device: torch.device) -> dict[str, Tensor]:
    names = graph.inputs
    if not isinstance(inputs, Mapping):
        if len(names) != 1:
            raise DataError(f"the graph has {len(names)} Input nodes ({', '.join(names)}); pass a "
                            "mapping from Input name to tensor", where="simulate(inputs=)")
        inputs = {names[0]: inputs}
    unknown = sorted(set(inputs) - set(names))
    missing = [n for n in names if n not in inputs]
    if unknown or missing:
        raise DataError(f"inputs must name exactly the Input nodes {list(names)}; missing "
                        f"{missing}, unknown {unknown}", where="simulate(inputs=)")
    tensors: dict[str, Tensor] = {}
    lead: tuple[int, int] | None = None
    for name in names:
        # kept as given (device, dtype): each chunk is converted when it runs
        x = torch.as_tensor(inputs[name])
        expected = graph.nodes[name].output_shape
        if x.dim() != len(expected) + 2 or tuple(x.shape[2:]) != tuple(expected):
            raise DataError(f"expected [T, B, {', '.join(map(str, expected))}], got shape "
                            f"{tuple(x.shape)} (per-sample shape {tuple(expected)})",
                            where=f"Input '{name}'")
        if lead is not None and tuple(x.shape[:2]) != lead:
            raise DataError(f"has [T, B] = {list(x.shape[:2])} but another Input has "
                            f"{list(lead)}", where=f"Input '{name}'")
        lead = (int(x.shape[0]), int(x.shape[1]))
        if lead[0] < 1 or lead[1] < 1:
            raise DataError(f"needs at least one step and one sample, got shape "
                            f"{tuple(x.shape)}", where=f"Input '{name}'")
        tensors[name] = x
    return tensors


def _parse_record(graph: Graph, record: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """record name -> (node name, None for its output or the neuron state field)."""
    if isinstance(record, str):
        record = [record]
    parsed: dict[str, tuple[str, str | None]] = {}
    for key in record:
        if key in graph.nodes:
            parsed[key] = (key, None)
            continue
        node_name, _, field = key.rpartition(":")
        node = graph.nodes.get(node_name)
        if node is None:
            raise ConfigError(f"'{key}' names no node of the graph", where="simulate(record=)")
        if not isinstance(node, Neuron) or field not in ("v", "i") or (
                field == "i" and not node.current_based):
            raise ConfigError(f"'{key}': ':v' needs a neuron and ':i' a current-based neuron; "
                              f"'{node_name}' is a {node.kind}", where="simulate(record=)")
        parsed[key] = (node_name, field)
    return parsed


class _Run:
    """The mutable bookkeeping of one chunk of one ``simulate`` call (never escapes it).

    ``carry`` holds what crosses a chunk boundary: every stateful node's state and, for each
    cycle, the previous step's outputs of its nodes; it is read at the start and updated in
    place at the end of the chunk.
    """

    def __init__(self, graph: Graph, kernels: Mapping[str, _Kernel],
                 record: Mapping[str, tuple[str, str | None]],
                 hook: SynapseInputHook | None, inputs: Mapping[str, Tensor],
                 carry: dict[str, Any], operands: OperandsHook | None = None) -> None:
        self.graph, self.kernels, self.hook = graph, kernels, hook
        self.operands = operands
        self.inputs, self.carry = inputs, carry
        self.steps, self.batch = next(iter(inputs.values())).shape[:2]
        self.like = next(iter(inputs.values()))  # dtype and device of every value
        self.predecessors = {n: graph.predecessors(n) for n in graph.nodes}
        self.state_fields: dict[str, tuple[str, ...]] = {}
        for node, field in record.values():
            if field is not None:
                self.state_fields[node] = (*self.state_fields.get(node, ()), field)
        self.keep = {node for node, f in record.values() if f is None} | set(graph.outputs)
        self.uses = {n: len(graph.successors(n)) for n in graph.nodes}
        self.values: dict[str, Tensor] = {}
        self.states: dict[tuple[str, str], Tensor] = {}

    def release(self, consumer: str) -> None:
        """Forget outputs whose last consumer has run (unless recorded)."""
        for src in self.predecessors[consumer]:
            self.uses[src] -= 1
            if self.uses[src] == 0 and src not in self.keep:
                self.values.pop(src, None)

    def run_node(self, name: str) -> None:
        """One node on no cycle, over the whole chunk."""
        kernel = self.kernels[name]
        if isinstance(kernel, _BinaryKernel):
            a, b = (_sum([self.values[src] for src in sources])
                    for sources in self.graph.operands(name).values())
            self.release(name)
            if self.operands is not None:
                self.operands(name, a, b)
            self.values[name] = kernel.sequence_of(a, b)
            return
        if name in self.inputs:
            x = self.inputs[name]
        else:
            x = _sum([self.values[src] for src in self.predecessors[name]])
            self.release(name)
        if isinstance(self.graph.nodes[name], Synapse) and self.hook is not None:
            self.hook(name, x)
        if isinstance(kernel, _NeuronKernel):
            fields = self.state_fields.get(name, ())
            y, state, traces = neuron_sequence(x, kernel.p, self.carry.get(name), trace=fields)
            self.carry[name] = state
            self.states.update({(name, field): traces[field] for field in fields})
            self.values[name] = y
        elif isinstance(kernel, _DelayKernel):
            self.values[name], self.carry[name] = kernel.sequence_from(x, self.carry.get(name))
        else:
            self.values[name] = kernel.sequence(x)
        del x

    def at_rest(self, unit: Sequence[str]) -> dict[str, Tensor]:
        """The outputs of a cycle's nodes at step -1 (see :func:`_rest_outputs`)."""
        return _rest_outputs(self.graph, self.kernels, unit, self.like, self.batch)

    def run_cycle(self, unit: Sequence[str]) -> None:
        """The nodes of one cycle, stepped through the chunk together."""
        graph = self.graph
        members = set(unit)
        recurrent = graph.recurrent_edges
        key = "\0cycle:" + unit[0]
        states, previous = self.carry.get(key) or (
            {n: self.kernels[n].initial(self.batch) for n in unit}, self.at_rest(unit))
        current: dict[str, Tensor] = {}
        outputs: dict[str, list[Tensor]] = {n: [] for n in unit}
        traces = {(n, f): [] for n in unit for f in self.state_fields.get(n, ())}
        fed: dict[str, list[Tensor]] = {n: [] for n in unit
                                        if isinstance(graph.nodes[n], Synapse) and self.hook}
        pairs: dict[str, list[tuple[Tensor, Tensor]]] = {
            n: [] for n in unit if isinstance(self.kernels[n], _BinaryKernel) and self.operands}
        def arriving(name: str, sources: Sequence[str], shape: tuple[int, ...], t: int,
                     previous: Mapping[str, Tensor | None]) -> Tensor:
            terms = []
            for src in sources:
                if src not in members:
                    terms.append(self.values[src][t])
                elif (src, name) in recurrent:
                    if previous[src] is not None:
                        terms.append(previous[src])  # type: ignore[arg-type]
                else:
                    terms.append(current[src])
            if terms:
                return _sum(terms)
            # only recurrent inputs, at t = 0: they are zero
            return self.like.new_zeros((self.batch, *shape))

        for t in range(self.steps):
            for name in unit:
                node, kernel = graph.nodes[name], self.kernels[name]
                if isinstance(kernel, _BinaryKernel):
                    a, b = (arriving(name, sources, node.port_shape(port), t, previous)
                            for port, sources in graph.operands(name).items())
                    if name in pairs:
                        pairs[name].append((a, b))
                    current[name] = kernel.step_of(a, b)
                    outputs[name].append(current[name])
                    continue
                x_t = arriving(name, self.predecessors[name], node.input_shape, t, previous)
                if name in fed:
                    fed[name].append(x_t)
                current[name], states[name] = kernel.step(x_t, states[name])
                outputs[name].append(current[name])
                for field in self.state_fields.get(name, ()):
                    traces[name, field].append(getattr(states[name], field))
            previous = dict(current)
        self.carry[key] = (states, previous)
        for name in unit:
            if name in fed:
                self.hook(name, torch.stack(fed[name]))  # type: ignore[misc]
            if name in pairs:
                self.operands(name, *(torch.stack(side)  # type: ignore[misc]
                                      for side in zip(*pairs[name])))
            self.values[name] = torch.stack(outputs[name])
        for key_, trace in traces.items():
            self.states[key_] = torch.stack(trace)
        for name in unit:
            for src in self.predecessors[name]:
                if src not in members:
                    self.uses[src] -= 1
                    if self.uses[src] == 0 and src not in self.keep:
                        self.values.pop(src, None)  # the unit's last use of an outside value


def _rest_outputs(graph: Graph, kernels: Mapping[str, _Kernel], unit: Sequence[str],
                  like: Tensor, batch: int) -> dict[str, Tensor]:
    """The outputs of a cycle's nodes at step -1, which its recurrent edges carry into step 0.

    Every state and every input is zero then, so a neuron or a Delay gives zero and a stateless
    node its value at rest (a synapse its bias, passed on by the stateless nodes after it).
    snntorch's RLeaky adds its recurrent layer's bias from the first step (``recurrent(spk)``
    with ``spk = 0``, ``snntorch/_neurons/rleaky.py``, ``_base_state_function``), as this does.
    ``unit`` is in topological order; ``like`` gives the dtype and device.
    """
    members, recurrent = set(unit), graph.recurrent_edges
    rest: dict[str, Tensor] = {}
    for name in unit:
        node = graph.nodes[name]
        kernel = kernels[name]
        if kernel.stateful:
            rest[name] = like.new_zeros((batch, *node.output_shape))
            continue
        if isinstance(kernel, _BinaryKernel):   # a product of the operands at rest
            operands = []
            for port, sources in graph.operands(name).items():
                terms = [rest[src] for src in sources
                         if src in members and (src, name) not in recurrent]
                operands.append(_sum(terms) if terms else
                                like.new_zeros((batch, *node.port_shape(port))))
            rest[name] = kernel.combine(*operands)
            continue
        terms = [rest[src] for src in graph.predecessors(name)
                 if src in members and (src, name) not in recurrent]
        x = _sum(terms) if terms else like.new_zeros((batch, *node.input_shape))
        rest[name] = kernel.apply(x)
    return rest


def recurrent_rest_values(graph: Graph, dtype: torch.dtype = torch.float32) -> dict[str, np.ndarray]:
    """Per-sample value that each recurrent edge's source carries into step 0 (its output at
    rest, :func:`_rest_outputs`), for exporters that hold the previous step as state."""
    device = torch.device("cpu")
    like = torch.zeros((), dtype=dtype)
    values: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for unit, is_cycle in _schedule(graph):
            if not is_cycle:
                continue
            kernels = {name: _compile(name, graph.nodes[name], dtype, device) for name in unit}
            rest = _rest_outputs(graph, kernels, unit, like, 1)
            values.update({src: rest[src][0].numpy() for src, _ in graph.recurrent_edges
                           if src in rest})
    return values


def _sum(terms: Sequence[Tensor]) -> Tensor:
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def chunk_plan(graph: Graph, steps: int, batch: int, budget_bytes: int | None, *,
               dtype: torch.dtype = torch.float32) -> tuple[int, int]:
    """Chunk sizes ``(time_chunk, batch_chunk)`` for :func:`simulate` within a memory budget.

    A chunk's largest value is one node's ``[time_chunk, batch_chunk, *shape]`` tensor; its
    size is held at or below ``budget_bytes`` (never below one sample-step). Batch is cut
    first (the whole sequence of fewer samples), time only once a single sample does not fit,
    so that the batched ops stay as large as the budget allows. The simulation's peak is a
    small multiple of the budget (a neuron holds its input, its drive and its output), and it
    does not grow with ``T`` or ``B`` beyond it.

    Args:
        graph: the network.
        steps, batch: ``T`` and ``B`` of the inputs.
        budget_bytes: bytes of the largest value per chunk; None: one chunk (no limit).
        dtype: the simulation's dtype.

    Returns:
        ``(time_chunk, batch_chunk)``, each at least 1 and at most ``steps`` / ``batch``.
    """
    if budget_bytes is None:
        return steps, batch
    if budget_bytes < 1:
        raise ConfigError(f"memory budget must be >= 1 byte, got {budget_bytes}",
                          where="simulate(memory_budget=)")
    itemsize = torch.empty((), dtype=dtype).element_size()
    widest = max(max(int(np.prod(node.output_shape)), int(np.prod(node.input_shape)))
                 for node in graph.nodes.values()) * itemsize
    units = max(1, int(budget_bytes) // max(widest, 1))   # sample-steps per chunk
    if units >= steps:
        return steps, max(1, min(batch, units // steps))
    return units, 1


# Long: over half is the docstring (the streaming contract and the hooks' order, which
# calibration and evaluation rely on); the body is one loop over sample groups and time
# chunks, each run by _Run, and reads best whole.
def simulate(graph: Graph, inputs: Tensor | Mapping[str, Tensor], *,
             record: Iterable[str] = (),
             on_synapse_input: SynapseInputHook | None = None,
             on_operands: OperandsHook | None = None,
             dtype: torch.dtype = torch.float32,
             device: str | torch.device = "cpu",
             threads: int | None = None,
             time_chunk: int | None = None,
             batch_chunk: int | None = None,
             memory_budget: int | None = None,
             on_recorded: Callable[[Mapping[str, Tensor]], None] | None = None) -> SimResult:
    """Run ``graph`` on a batch of input sequences.

    Streaming. With ``time_chunk`` / ``batch_chunk`` (or a ``memory_budget`` that chooses
    them, see :func:`chunk_plan`) the samples are run in groups of ``batch_chunk`` and each
    group's sequence in chunks of ``time_chunk`` steps; every neuron's state, every delay's
    history and every cycle's previous step are carried from one chunk to the next, so the
    outputs are those of one whole run: each step computes the same ops on the same values,
    except that BLAS may round a synapse product's row differently when a chunk holds fewer
    rows (it picks its kernel by the row count: measured <= 7e-7 in float32, 1e-16 in
    float64 on the bundled MLP); spikes agree unless a membrane lands within that rounding of
    its threshold. Only the outputs and the recorded sequences are kept whole; the inputs stay
    where they are (device, dtype) and each chunk is converted when it runs.

    Args:
        graph: the network (not modified).
        inputs: ``[T, B, *input_shape]`` for a graph with one Input, else a mapping from Input
            name to such a tensor (all with the same ``T`` and ``B``). Spikes may be bool or
            integer; they are converted to ``dtype``.
        record: node names whose outputs to return, and ``"<neuron>:v"`` / ``"<neuron>:i"`` for
            a neuron's membrane potential / synaptic current after each step.
        on_synapse_input: called as ``on_synapse_input(name, x)`` once per synapse layer and
            chunk, with the layer's input ``x`` ``[t, b, *input_shape]`` for that chunk as the
            layer consumed it (for a synapse on a cycle: the sequence it was fed, step by
            step); chunks come in time order within each group of samples, groups in sample
            order. Without chunking that is exactly one call with the whole sequence. Used by
            calibration (Hessians) and by evaluation (SynOps); it must not modify ``x``.
        on_operands: called as ``on_operands(name, a, b)`` once per ``Product`` / ``MatMul``
            node and chunk with its two operands ``[t, b, *port_shape]`` as it multiplies them
            (evaluation counts their operations, ``report.synops.product_terms``); same order
            and the same rule as ``on_synapse_input``.
        dtype: floating dtype of the simulation.
        device: torch device.
        threads: torch intra-op threads for this call (default: torch's current setting,
            capped at the cores this process may use); restored afterwards.
        time_chunk: steps per chunk (default: all, or what ``memory_budget`` allows).
        batch_chunk: samples per group (default: all, or what ``memory_budget`` allows).
        memory_budget: bytes of the largest value of a chunk, when the chunks are not given.
        on_recorded: called once per chunk with that chunk's recorded values (``record``
            name -> ``[t, b, ...]``), in the hook's order; when given, nothing recorded is kept
            whole and the result's ``recorded`` is empty (a running statistic stays bounded).

    Returns:
        A :class:`SimResult` with every Output's sequence and the recorded sequences.

    Raises:
        DataError: the inputs do not fit the graph (names the Input and both shapes).
        ConfigError: a record name is unknown, ``dtype`` is not floating, or a chunk size is
            not a positive integer.
        UnsupportedNodeError: a node type has no kernel.
    """
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ConfigError(f"dtype must be a floating torch dtype, got {dtype!r}",
                          where="simulate(dtype=)")
    for what, value in (("time_chunk", time_chunk), ("batch_chunk", batch_chunk)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise ConfigError(f"{what} must be a positive integer, got {value!r}",
                              where=f"simulate({what}=)")
    device = torch.device(device)
    wanted = _parse_record(graph, record)
    threads = default_threads() if threads is None else threads
    with torch_threads(threads, where="simulate(threads=)"), torch.no_grad():
        tensors = _input_tensors(graph, inputs, dtype, device)
        steps, batch = (int(v) for v in next(iter(tensors.values())).shape[:2])
        planned = chunk_plan(graph, steps, batch, memory_budget, dtype=dtype)
        t_chunk = min(steps, int(time_chunk or planned[0]))
        b_chunk = min(batch, int(batch_chunk or planned[1]))
        kernels = {name: _compile(name, node, dtype, device) for name, node in graph.nodes.items()}
        units = _schedule(graph)
        outputs: dict[str, list[list[Tensor]]] = {name: [] for name in graph.outputs}
        recorded: dict[str, list[list[Tensor]]] = {key: [] for key in wanted}
        for b0 in range(0, batch, b_chunk):
            carry: dict[str, Any] = {}
            for parts in (*outputs.values(), *recorded.values()):
                parts.append([])
            for t0 in range(0, steps, t_chunk):
                chunk = {name: x[t0:t0 + t_chunk, b0:b0 + b_chunk].to(device=device, dtype=dtype)
                         for name, x in tensors.items()}
                run = _Run(graph, kernels, wanted, on_synapse_input, chunk, carry,
                           on_operands)
                for unit, is_cycle in units:
                    if is_cycle:
                        run.run_cycle(unit)
                    else:
                        run.run_node(unit[0])
                for name in graph.outputs:
                    outputs[name][-1].append(run.values[name])
                values = {key: run.values[node] if field is None else run.states[node, field]
                          for key, (node, field) in wanted.items()}
                if on_recorded is not None:
                    on_recorded(MappingProxyType(values))
                else:
                    for key, value in values.items():
                        recorded[key][-1].append(value)
                del values
                del run, chunk
        result = SimResult(MappingProxyType({k: _join(v) for k, v in outputs.items()}),
                           MappingProxyType({} if on_recorded is not None else
                                            {k: _join(v) for k, v in recorded.items()}))
    log.debug("simulated %d nodes, T=%d, B=%d in chunks of %d steps x %d samples",
              len(graph.nodes), steps, batch, t_chunk, b_chunk)
    return result


def _join(groups: list[list[Tensor]]) -> Tensor:
    """Chunks back into one ``[T, B, ...]`` tensor: time within a group, then the groups."""
    rows = [parts[0] if len(parts) == 1 else torch.cat(parts) for parts in groups]
    return rows[0] if len(rows) == 1 else torch.cat(rows, dim=1)


# --------------------------------------------------------------------------- memory


def _node_values(node: Any, attr: str) -> int:
    shape = getattr(node, attr, None)
    return 0 if shape is None else math.prod(int(v) for v in shape)


def _live_values(graph: Graph, *, hook: bool) -> int:
    """The most node values (per sample and step) alive at once while the simulator runs a
    chunk: each value lives from its node to its last consumer; a node also holds its own
    temporaries (a neuron its drive, spikes and output: 3x; a convolution its im2col columns;
    a synapse with a hook the hook's two copies of its input, for the SynOps count)."""
    try:
        units = [unit for unit, _ in _schedule(graph)]
    except Exception:  # pragma: no cover - a schedule the simulator would refuse anyway
        units = [(name,) for name in graph.topological_order]
    uses = {name: len(graph.successors(name)) for name in graph.nodes}
    alive: dict[str, int] = {}
    peak = 0
    for unit in units:
        members = set(unit)
        work = 0
        for name in unit:
            node = graph.nodes[name]
            out = _node_values(node, "output_shape")
            preds = graph.predecessors(name)
            summed = _node_values(node, "input_shape") if len(preds) > 1 else 0
            if node.ports:   # Product / MatMul: the sum of each port's edges, then the output
                summed = sum(math.prod(node.port_shape(port))
                             for port, sources in graph.operands(name).items()
                             if len(sources) > 1)
            if isinstance(node, Neuron):
                work += 3 * out + summed
            elif isinstance(node, Synapse):
                work += out + summed + (2 * _node_values(node, "input_shape") if hook else 0)
                if len(getattr(node.weight, "shape", ())) > 2:  # a convolution's im2col
                    positions = out // max(int(node.weight.shape[0]), 1)
                    work += math.prod(int(v) for v in node.weight.shape[1:]) * positions * int(
                        getattr(node, "groups", 1))
            else:
                work += out + summed
        if len(unit) > 1:  # a cycle: every step's outputs listed, then stacked
            work *= 2
        peak = max(peak, sum(alive.values()) + work)
        for name in unit:
            alive[name] = _node_values(graph.nodes[name], "output_shape")
        for name in unit:
            for src in graph.predecessors(name):
                if src in members:
                    continue
                uses[src] -= 1
                if uses[src] <= 0 and src not in graph.outputs:
                    alive.pop(src, None)
        for name in unit:
            if uses[name] == 0 and name not in graph.outputs:
                alive.pop(name, None)
    return max(peak, 1)


def _input_values(graph: Graph) -> int:
    return sum(_node_values(graph.nodes[name], "shape")
               or _node_values(graph.nodes[name], "output_shape") for name in graph.inputs)


def _output_values(graph: Graph) -> int:
    return sum(_node_values(graph.nodes[name], "shape")
               or _node_values(graph.nodes[name], "input_shape") for name in graph.outputs)


NEURON_PARAMETERS = 8
"""Per-neuron float32 tensors the simulator compiles for each neuron node (decays, gains,
threshold, reset, drive, state), an upper bound."""


def _neurons(graph: Graph) -> int:
    return sum(_node_values(node, "output_shape") for node in graph.nodes.values()
               if isinstance(node, Neuron))


def simulation_bytes(graph: Graph, steps: int, batch: int, t_chunk: int, b_chunk: int,
                     hook: bool) -> int:
    """Bytes :func:`simulate` adds for one batch of ``steps x batch`` run in float32 chunks of
    ``t_chunk x b_chunk`` (:func:`chunk_plan`), with (``hook``) or without a synapse-input
    hook: the node values alive at once in a chunk, the outputs and the inputs kept whole
    (twice each: the chunks and their concatenation; the caller's input and the float copy),
    and the compiled float32 weights and :data:`NEURON_PARAMETERS` values per neuron.
    ``sbc_deploy.memory`` adds this to its stage estimates."""
    chunk = 4 * t_chunk * b_chunk * _live_values(graph, hook=hook)
    whole = 4 * steps * batch
    compiled = 4 * (sum(math.prod(layer.synapse.weight.shape)
                        for layer in graph.synapse_layers())
                    + NEURON_PARAMETERS * _neurons(graph))
    return chunk + 2 * whole * _output_values(graph) + 2 * whole * _input_values(graph) + compiled
