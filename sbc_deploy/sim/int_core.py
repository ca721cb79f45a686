r"""Integer core: Lava's bit-accurate fixed-point CUBA LIF, Dense and Conv, batched over samples.

What runs here is what ``lava.lib.dl.netx`` builds from a netx file and Lava's ``fixed_pt``
process models compute (``PyLifModelBitAcc``, ``PyDenseModelBitAcc``, ``PyConvModelBinaryFixed``),
for many samples at once. Per neuron layer and step ``t``, in integers::

    a[t]  = A(s_in[t - 1])                       one step of synaptic delay per synapse layer
    A(s)  = (W s) << e    (or >> -e, flooring)   Dense: integer mantissa W, layer exponent e
    A(s)  = wrap24(conv(s, W << e))              Conv: no exponent in Lava, 24-bit wrap-around
    u[t]  = trunc(u[t-1] * (4096 - (du + 1)) / 4096) + (a[t] << 6)    wrapped once to 24 bits
    v[t]  = trunc(v[t-1] * (4096 - dv) / 4096) + u[t] + (bias_mant << bias_exp)  clipped, 24 bits
    s[t]  = v[t] > (vth << 6);  v[t] <- 0 where s[t]                  hard reset

``du + 1`` is Lava's ``ds_offset``: netx sets ``du = iDecay - 1`` so the current decays by
``iDecay / 4096`` (slayer's ``current_decay``); ``dv = vDecay``. ``trunc`` rounds toward zero
(Lava's ``sign(x) * (|x| >> 12)``). A recurrent dense layer adds ``A_rec(s[t - 1])`` to ``a[t]``.
A first netx ``input`` block is a neuron layer with no synapse: the input enters ``a[t]`` in the
same step (Lava's source connected to ``in_layer.neuron.a_in``), with the block's transform
applied as lava-dl's data loaders apply it: ``a[t] = weight * x[t]`` and ``bias_mant`` = the
transform bias (the IR's ``Input -> Scale(weight / 64) -> CubaLIF(bias = bias / 64)`` of
:mod:`sbc_deploy.frontends.from_netx`). netx's read-out integrator (a dense layer without a
neuron group: the IR's ``CubaLI`` with ``alpha = 1``, ``beta = 0``) is a LIF that never fires;
its output is ``v``.

The core is checked against Lava itself: lava-dl's tinynet ground truth spike for spike,
and Lava 0.10's fixed-point run of the oxford network (``tests/test_int_core.py``).

The network it runs comes from :func:`~sbc_deploy.sim.fixed_point.to_fixed_point` (the IR's
numbers as Lava's registers); :func:`simulate_integer` is also where the numpy core or the torch
core (:mod:`.int_core_torch`, for any other device) is chosen.

Example::

    >>> net = to_fixed_point(graph)                      # graph from frontends.from_netx
    >>> result = simulate_integer(net, spikes, record=["lif1", "lif1:v"])   # [T, B, 200]
    >>> result.outputs["output"].shape                    # [T, B, 200], int8 spikes
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sbc_deploy.devices import resolve_device, torch_threads
from sbc_deploy.errors import ConfigError, DataError
from sbc_deploy.ir import Graph
from sbc_deploy.sim.fixed_point import (
    ACT_SHIFT,
    CONV_BITS,
    DECAY_SHIFT,
    DECAY_UNITY,
    DEVICE_WHERE,
    THREADS_WHERE,
    UV_MAX,
    VTH_SHIFT,
    FixedPointLayer,
    FixedPointNetwork,
    IntSimResult,
    LifParameters,
    LifState,
    check_blocks,
    lif_parameters,
    pool_source,
    reset_due,
    run_blocks,
    to_fixed_point,
)
from sbc_deploy.sim.int_core_torch import simulate_integer_torch

log = logging.getLogger(__name__)

_FLOAT32_EXACT = 1 << 24          # integers up to 2**24 are exact in float32 sums


# --------------------------------------------------------------------------- neuron numerics


def lif_initial_state(p: LifParameters, batch: int) -> LifState:
    """All-zero ``u`` and ``v`` for ``batch`` samples (``p.bias``'s dtype)."""
    shape = (batch, *p.bias.shape)
    return LifState(np.zeros(shape, dtype=p.bias.dtype), np.zeros(shape, dtype=p.bias.dtype))


def _decay(x: np.ndarray, factor: int) -> np.ndarray:
    """``trunc(x * factor / 4096)`` (Lava: ``sign(y) * (|y| >> 12)``), as a new array."""
    if factor == 0:
        return np.zeros_like(x)
    if factor == DECAY_UNITY:
        return x.copy()
    if x.dtype.kind == "f":
        # factor / 4096 is exact in binary and |x * factor| < 2**53: the product is exact
        y = x * (factor / DECAY_UNITY)
        return np.trunc(y, out=y)
    y = x * factor
    rounding = y >> 63                    # -1 where y < 0, else 0
    rounding &= DECAY_UNITY - 1           # 4095 where y < 0: the floor becomes a trunc
    rounding += y
    rounding >>= DECAY_SHIFT
    return rounding


def lif_step(a_in: np.ndarray, state: LifState, p: LifParameters, *,
             saturate: bool = True) -> tuple[np.ndarray, LifState]:
    """One step of Lava's ``PyLifModelBitAcc`` on ``[B, *shape]`` integer arrays.

    Args:
        a_in: synaptic input ``a[t]`` in weight units (int64, or integer-valued float64).
        state: ``u``, ``v`` after the previous step (not modified); same dtype as ``a_in``.
        p: the layer's registers (``p.bias`` of that dtype too).
        saturate: apply the 24-bit wrap of ``u`` and the clip of ``v``; a caller may pass
            ``False`` only when it has proven that no value can reach them (the result is the
            same then).

    Returns:
        ``(spikes, state)``: bool spikes and the new state.
    """
    # u[t] = trunc(u[t-1] * (4096 - (du + 1)) / 4096) + (a[t] << 6)
    u = _decay(state.u, DECAY_UNITY - (p.du + 1))
    u += a_in * (1 << ACT_SHIFT)
    if saturate:
        # u wraps once into (-2**23, 2**23]: > 2**23 loses 2**24, <= -2**23 gains 2**24
        u = np.where(u > UV_MAX, u - 2 * UV_MAX, np.where(u <= -UV_MAX, u + 2 * UV_MAX, u))
    # v[t] = trunc(v[t-1] * (4096 - dv) / 4096) + u[t] + (bias_mant << bias_exp)
    v = _decay(state.v, DECAY_UNITY - p.dv)
    v += u
    v += p.bias
    if saturate:
        # v clips to +-(2**23 - 1)
        np.clip(v, -(UV_MAX - 1), UV_MAX - 1, out=v)
    # s[t] = v[t] > vth << 6
    s = v > (p.vth << VTH_SHIFT)
    # hard reset: v[t] <- 0 where s[t]
    np.copyto(v, 0, where=s)
    return s, LifState(u, v)


def _reach(start: int, add: int, factor: int, steps: int) -> int:
    """A bound on ``|x|`` after ``steps`` of ``x <- trunc(x * factor / 4096) + d``, ``|d| <= add``.

    Below the fixed point ``add * 4096 / (4096 - factor)`` the magnitude stays below it, above
    it it shrinks; without decay it grows by ``add`` per step at most.
    """
    if factor >= DECAY_UNITY:
        return start + steps * add
    return max(start, -(-add * DECAY_UNITY // (DECAY_UNITY - factor)))


# --------------------------------------------------------------------------- synapses


def _wrap(a: np.ndarray, bits: int) -> np.ndarray:
    """Lava's ``signed_clamp``: two's complement wrap-around to ``bits`` bits."""
    half = 1 << (bits - 1)
    if a.size == 0 or (a.max() < half and a.min() >= -half):
        return a
    base = 1 << bits
    return (a + half) % base - half


class _SynapseOp:
    """``A(s)`` of one synapse over a block of steps, exact in integers.

    Products run in torch (BLAS matmul, conv2d) in float32 when every partial sum provably
    stays below 2**24 (exact there), else in float64 (exact below 2**53). Dense's exponent is a
    power-of-two scaling (exact) followed by a floor: Lava's ``<< e`` or arithmetic ``>> -e``.
    """

    def __init__(self, weight: np.ndarray, exponent: int, conv: FixedPointLayer | None,
                 input_shape: tuple[int, ...], input_max: int) -> None:
        self.conv = conv
        self.exponent = exponent
        self.input_shape = input_shape
        w = np.asarray(weight, dtype=np.int64)
        self.reach = int(np.abs(w.reshape(w.shape[0], -1)).sum(axis=1).max(initial=0))
        exact32 = self.reach * max(input_max, 1) < _FLOAT32_EXACT
        self.dtype = torch.float32 if exact32 else torch.float64
        self.weight = torch.from_numpy(w.copy()).to(self.dtype)
        if conv is None:
            self.weight_t = self.weight.t().contiguous()

    def bound(self, input_max: int) -> int:
        """Largest ``|A(s)|`` for inputs bounded by ``input_max``."""
        a = self.reach * input_max
        if self.conv is not None:
            return min(a, 1 << (CONV_BITS - 1))
        return a << self.exponent if self.exponent > 0 else a >> -self.exponent

    def __call__(self, s: np.ndarray) -> np.ndarray:
        """``s``: ``[N, *input_shape]`` integers -> ``[N, *out]`` integer-valued float64."""
        x = torch.from_numpy(np.ascontiguousarray(s)).reshape(s.shape[0], *self.input_shape)
        if self.conv is None:
            a = (x.to(self.dtype) @ self.weight_t).to(torch.float64)
            if self.exponent:
                a = a.mul_(2.0 ** self.exponent).floor_()   # << e, or >> -e (flooring)
            return a.numpy()
        c = self.conv
        a = F.conv2d(x.to(self.dtype), self.weight, stride=c.stride, padding=c.padding,
                     dilation=c.dilation, groups=c.groups).to(torch.float64).numpy()
        return _wrap(a, CONV_BITS)


# --------------------------------------------------------------------------- simulate


def simulate_integer(net: FixedPointNetwork, spikes: Tensor | np.ndarray, *,
                     record: Iterable[str] | str = (),
                     graded_input: bool = False,
                     reset_interval: int | None = None,
                     reset_offset: int = 0,
                     chunk: int = 64,
                     threads: int | None = None,
                     device: str | torch.device | None = None) -> IntSimResult:
    """Run the integer core on a batch of input sequences, bit-exactly as Lava's ``fixed_pt``.

    The sequence is run in blocks of ``chunk`` steps, every layer through a block before the
    next block starts (each layer's state, recurrent input and the source step that its
    one-step synaptic delay needs carry over): a synapse layer is one integer matrix product
    or convolution per block over all samples, and only the neurons step through time (a
    recurrent layer also steps its recurrent synapse). Memory is one block of every layer
    plus the outputs and whatever is recorded; it does not grow with ``T`` otherwise. Neuron
    state is held in float64, where every value is an integer that float64 represents and
    every operation computes exactly; blocks in which no value can reach the 24-bit limits
    skip the wrap and clip.

    Args:
        net: from :func:`to_fixed_point`.
        spikes: ``[T, B, *input_shape]`` integer spikes (bool, int, or integer-valued float).
        record: names to return: neuron layers (their spikes), synapses (their ``a[t]``), the
            Input, ``"<neuron>:u"`` / ``"<neuron>:v"``; ``"all"`` for every layer and the input.
        graded_input: deliver integer input values to a first synapse (netx
            ``input_message_bits > 0``); by default it sees binary spikes (any non-zero value is
            one spike), like Lava's unary spike ports. An input layer always takes the values.
        reset_interval: when given, layer ``k`` (0 = first) zeroes ``u`` and ``v`` before every
            step ``t`` (0-based) with ``(t - reset_offset - k) % reset_interval == 0``: netx's
            ``Network(reset_interval=, reset_offset=)`` for back-to-back samples in one stream,
            which starts every layer when the sample's first data reaches it.
        reset_offset: phase of that reset.
        chunk: steps per block (memory vs. speed; results do not depend on it).
        threads: torch intra-op threads for the synapse products (restored afterwards).
        device: ``None`` or a CPU device: this numpy core (the reference, and the faster one
            on the CPU: ``benchmarks/results/int_core_device.md``); any other torch device
            (``"cuda"``): :func:`sbc_deploy.sim.int_core_torch.simulate_integer_torch`, the same
            integers computed there (equal bit for bit, ``tests/test_int_core_device.py``).

    Returns:
        An :class:`IntSimResult` (on the host, whatever the device).

    Raises:
        DataError: ``spikes`` has the wrong shape or non-integer values.
        ConfigError: unknown record names, bad ``chunk`` or reset settings.
    """
    if device is not None and resolve_device(device, where=DEVICE_WHERE).type != "cpu":
        return simulate_integer_torch(
            net, spikes, record=record, graded_input=graded_input,
            reset_interval=reset_interval, reset_offset=reset_offset, chunk=chunk,
            threads=threads, device=device)
    check_blocks(chunk, reset_interval)
    with torch_threads(threads, where=THREADS_WHERE), torch.no_grad():
        runs, outputs, recorded, steps, batch = run_blocks(
            net, spikes, record, graded_input, chunk,
            lambda layer, index, batch, keys, source_max: _LayerRun(
                layer, index, batch, keys, reset_interval, reset_offset, source_max),
            to_core=lambda host: host, to_host=lambda block: block)
    final = {run.layer.name: LifState(run.state.u.astype(np.int64), run.state.v.astype(np.int64))
             for run in runs}
    log.debug("integer core: %d layers, T=%d, B=%d", len(net.layers), steps, batch)
    return IntSimResult(
        MappingProxyType({net.output: torch.from_numpy(np.concatenate(outputs))}),
        MappingProxyType({k: torch.from_numpy(np.ascontiguousarray(np.concatenate(v)))
                          for k, v in recorded.items()}),
        MappingProxyType(final))


class _LayerRun:
    """One neuron layer's state across blocks of steps (never escapes simulate_integer)."""

    def __init__(self, layer: FixedPointLayer, index: int, batch: int, keys: Mapping[str, str],
                 reset_interval: int | None, reset_offset: int, source_max: int) -> None:
        self.layer, self.index, self.batch = layer, index, batch
        self.keys = dict(keys)
        if not layer.spiking:
            self.keys.setdefault("v", "")   # a read-out's output is its v
        self.reset_interval, self.reset_offset = reset_interval, reset_offset
        self.p = p = lif_parameters(layer, np.float64)   # exact integer arithmetic in float64
        self.bias_max = int(np.abs(self.p.bias).max(initial=0))
        self.state = lif_initial_state(p, batch)
        self.feed = None
        if layer.kind != "input":
            assert layer.weight is not None
            self.feed = _SynapseOp(layer.weight, layer.weight_exp,
                                   layer if layer.kind == "conv2d" else None,
                                   layer.synapse_input_shape, source_max)
        self.rec = None
        self.rec_bound = 0
        if layer.recurrent_weight is not None:
            self.rec = _SynapseOp(layer.recurrent_weight, layer.recurrent_weight_exp, None,
                                  (layer.neurons,), 1)
            self.rec_bound = abs(self.rec.bound(1))
        self.rec_a: np.ndarray | None = None   # recurrent input of the next step (1 step delay)
        self.last: np.ndarray | None = None    # the source's step before the block (delay)
        self.u_max = self.v_max = 0

    def block(self, source: np.ndarray, t0: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Steps ``t0 .. t0 + n - 1`` of the layer; ``source`` is ``[n, B, *source_shape]``
        integers (the same steps of what feeds it). Returns the spikes (int8) and the traces
        of ``a``, ``u``, ``v`` asked for."""
        layer, batch, p = self.layer, self.batch, self.p
        n = source.shape[0]
        out = np.zeros((n, batch, *layer.shape), dtype=np.int8)
        traces = {what: np.empty((n, batch, *layer.shape), dtype=np.int64)
                  for what in ("a", "u", "v") if what in self.keys}
        a_block = self._input_block(source)
        # skip the wrap of u and the clip of v in blocks where they are out of reach
        a_max = int(np.abs(a_block).max(initial=0)) + self.rec_bound
        u_reach = _reach(self.u_max, a_max << ACT_SHIFT, DECAY_UNITY - (p.du + 1), n)
        v_reach = _reach(self.v_max, u_reach + self.bias_max, DECAY_UNITY - p.dv, n)
        saturate = u_reach >= UV_MAX or v_reach >= UV_MAX - 1
        state, rec_a = self.state, self.rec_a
        for k in range(n):
            a_t = a_block[k]
            if rec_a is not None:
                a_t = a_t + rec_a
            if reset_due(t0 + k, self.index, self.reset_interval, self.reset_offset):
                state = lif_initial_state(p, batch)
            s, state = lif_step(a_t, state, p, saturate=saturate)
            out[k] = s
            if self.rec is not None:
                rec_a = self.rec(s.reshape(batch, -1).view(np.int8)).reshape(state.u.shape)
                rec_a = rec_a.astype(np.float64)
            if "a" in traces:
                traces["a"][k] = a_t
            if "u" in traces:
                traces["u"][k] = state.u
            if "v" in traces:
                traces["v"][k] = state.v
        self.state, self.rec_a = state, rec_a
        self.u_max = int(np.abs(state.u).max(initial=0))
        self.v_max = int(np.abs(state.v).max(initial=0))
        return out, traces

    def _input_block(self, source: np.ndarray) -> np.ndarray:
        """``a[t]`` for the block's steps, ``[n, B, *shape]`` integers in float64."""
        layer, batch, n = self.layer, self.batch, source.shape[0]
        if self.feed is None:
            # input layer: a[t] = x[t] * weight (no synapse, no delay)
            assert layer.input_scale is not None
            x = source.reshape(n, batch, *layer.shape)
            a = x * layer.input_scale
            if not np.all(a == np.round(a)):
                raise DataError("the input times the input layer's weight / unit is not an "
                                "integer; Lava's a_in carries integers",
                                where=f"layer '{layer.name}'")
            return a.astype(np.float64)
        # a[t] = A(s_in[t - 1]); a[0] = 0 (Lava's synapse buffer starts empty)
        a_block = np.zeros((n, batch, *layer.shape), dtype=np.float64)
        s = source[:-1] if self.last is None else np.concatenate([self.last[None], source[:-1]])
        self.last = source[-1].copy()
        if s.shape[0]:
            flat = s.reshape(s.shape[0] * batch, *s.shape[2:])
            if layer.max_pool is not None:   # the OR of each window's spikes, exact
                flat = pool_source(layer, torch.from_numpy(np.ascontiguousarray(flat))).numpy()
            a = self.feed(flat)
            a_block[n - s.shape[0]:] = a.reshape(s.shape[0], batch, *layer.shape)
        return a_block


# --------------------------------------------------------------------------- accuracy as deployed


@dataclass(frozen=True)
class DeployedAccuracy:
    """Classification accuracy of the float graph and of the integer core on the same data.

    Attributes:
        float_accuracy: the float simulator's accuracy on the graph.
        integer_accuracy: the integer core's.
        agreement: fraction of samples on which both predict the same class.
        decoding: the read-out used for both.
        samples: number of samples.
    """

    float_accuracy: float
    integer_accuracy: float
    agreement: float
    decoding: str
    samples: int


def integer_accuracy(outputs: Tensor | np.ndarray, labels: Tensor | np.ndarray,
                     mode: str = "spike_count") -> float:
    """Accuracy of the core's ``[T, B, C]`` outputs (spikes, or a ``":v"`` trace for the
    membrane read-outs) against integer ``labels`` ``[B]``, decoded with
    :func:`sbc_deploy.sim.decode.classify`."""
    from sbc_deploy.sim.decode import accuracy, classify
    return accuracy(classify(_as_classes(outputs), mode), labels)  # type: ignore[arg-type]


def _as_classes(outputs: Tensor | np.ndarray) -> Tensor:
    y = torch.as_tensor(outputs)
    return y.reshape(y.shape[0], y.shape[1], -1)


def evaluate_deployed(graph: Graph, spikes: Tensor | np.ndarray, labels: Tensor | np.ndarray,
                      *, mode: str | None = None, net: FixedPointNetwork | None = None,
                      batch_size: int = 256, threads: int | None = None,
                      memory_budget: int | None = None,
                      device: str | torch.device | None = None,
                      **core_options: Any) -> DeployedAccuracy:
    """Accuracy as deployed: the integer core next to the float simulator on labelled data.

    Args:
        graph: the (compressed, integer-encoded) network.
        spikes: ``[T, N, *input_shape]`` evaluation inputs.
        labels: ``[N]`` integer classes.
        mode: a :data:`sbc_deploy.sim.decode.DECODINGS` read-out (default: the graph's
            natural one, :func:`sbc_deploy.sim.decode.default_decoding`). Membrane read-outs use
            the last layer's ``v`` on the core.
        net: the fixed-point network (default: ``to_fixed_point(graph)``).
        batch_size: samples per simulation call.
        memory_budget: bytes of the largest value per chunk of either simulator (see
            :func:`sbc_deploy.sim.float_sim.chunk_plan`; the core's blocks get the same number
            of sample-steps); None: whole batches and the core's default block.
        threads: torch threads for both simulators.
        device: torch device of both simulators (``None``: the CPU; the integer core's
            ``device`` of :func:`simulate_integer`); predictions are compared on the host.
        **core_options: passed to :func:`simulate_integer` (``graded_input``, ``reset_*``).

    Returns:
        A :class:`DeployedAccuracy`.
    """
    from sbc_deploy.sim.decode import DECODINGS, classify, default_decoding
    from sbc_deploy.sim.float_sim import chunk_plan, simulate

    mode = default_decoding(graph) if mode is None else mode
    if mode not in DECODINGS:
        raise ConfigError(f"unknown decoding {mode!r}; known: {', '.join(DECODINGS)}",
                          where="evaluate_deployed(mode=)")
    net = to_fixed_point(graph) if net is None else net
    x = torch.as_tensor(spikes)
    y = torch.as_tensor(labels).reshape(-1).to(torch.long)
    if x.dim() < 2 or x.shape[1] != y.shape[0] or y.numel() == 0:
        raise DataError(f"spikes [T, N, ...] {tuple(x.shape)} and labels [N] {tuple(y.shape)} "
                        "must hold the same non-zero number of samples",
                        where="evaluate_deployed")
    last = net.layers[-1].name
    float_pred, int_pred = [], []
    if memory_budget is not None and "chunk" not in core_options:
        # the core's widest block value is float64 a[t]: the float plan's steps x samples
        steps, samples = chunk_plan(graph, int(x.shape[0]), min(batch_size, int(y.shape[0])),
                                    memory_budget // 2)
        batch_size = samples
        core_options = {**core_options, "chunk": steps}
    for b0 in range(0, int(y.shape[0]), batch_size):
        xb = x[:, b0:b0 + batch_size]
        fres = simulate(graph, xb, threads=threads, memory_budget=memory_budget,
                        device="cpu" if device is None else device)
        scores = fres.outputs[net.output]
        float_pred.append(classify(_as_classes(scores), mode).cpu())  # type: ignore[arg-type]
        trace = mode != "spike_count" and net.layers[-1].spiking
        ires = simulate_integer(net, xb, record=[f"{last}:v"] if trace else [], threads=threads,
                                device=device, **core_options)
        scores = ires.recorded[f"{last}:v"] if trace else ires.outputs[net.output]
        int_pred.append(classify(_as_classes(scores), mode).cpu())  # type: ignore[arg-type]
    fp, ip = torch.cat(float_pred), torch.cat(int_pred)
    return DeployedAccuracy(float_accuracy=float((fp == y).double().mean()),
                            integer_accuracy=float((ip == y).double().mean()),
                            agreement=float((fp == ip).double().mean()), decoding=mode,
                            samples=int(y.shape[0]))


__all__ = [
    "DeployedAccuracy", "evaluate_deployed", "integer_accuracy", "lif_initial_state", "lif_step",
    "simulate_integer",
]
