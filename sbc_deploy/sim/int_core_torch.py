r"""The integer core on any torch device, bit for bit the numpy core of :mod:`.int_core`.

:func:`simulate_integer_torch` runs the same fixed-point network
(:func:`.fixed_point.to_fixed_point`) with the same equations as :func:`.int_core.simulate_integer`
(Lava's ``PyLifModelBitAcc``, ``PyDenseModelBitAcc``, ``PyConvModelBinaryFixed``), with every
value a torch tensor on ``device``. Per neuron layer and step, in int64::

    a[t] = A(s_in[t - 1])                          Dense: (W s) << e, or >> -e (arithmetic)
                                                   Conv:  wrap24(conv(s, W << e))
    u[t] = trunc(u[t-1] * (4096 - (du + 1)) / 4096) + (a[t] << 6),  wrapped once to 24 bits
    v[t] = trunc(v[t-1] * (4096 - dv) / 4096) + u[t] + bias,         clipped to +-(2**23 - 1)
    s[t] = v[t] > (vth << 6);  v[t] <- 0 where s[t]

Every elementwise operation is an int64 tensor operation (``torch.div(rounding_mode="trunc")``
for Lava's ``sign(y) * (|y| >> 12)``, ``torch.where`` for the single wrap, ``clamp`` for the
clip), which every device computes exactly. The synapse products are not: CUDA has no int64
matmul or convolution, so ``W s`` and ``conv(s, W)`` run in float64 (float32 on the CPU when
every partial sum is below 2**24, as the numpy core does) and are converted back to int64.

Exactness of the products: every product of an integer weight and an integer input, and every
partial sum of them, is an integer; float64 represents every integer below 2**53 and adds such
integers exactly in any order, so the result is exact whatever order a kernel sums in, **as long
as** ``max_row sum|W| * max|s| < 2**53``. That bound (the numpy core's ``_SynapseOp.reach``
times the input's largest magnitude) is checked for every synapse before the run; a network
that could exceed it is refused with a :class:`~sbc_deploy.errors.ConfigError` naming the
synapse (it would need weights or graded inputs of ~2**40; Lava's registers are far narrower).
On CUDA the convolution runs with cuDNN disabled: cuDNN may pick FFT or Winograd algorithms,
whose intermediate values are not integers; PyTorch's native kernels (im2col and a GEMM) are
sums of exact products.

Streaming is the numpy core's: blocks of ``chunk`` steps, every layer through a block before
the next block starts, state carried over; only one block of every layer lives on the device,
and every block's outputs and records are copied to the host as it ends, so device memory is
flat in ``T``. The results (:class:`.fixed_point.IntSimResult`) are on the host, with the numpy
core's dtypes, so both paths are interchangeable.

Example::

    >>> net = to_fixed_point(graph)
    >>> result = simulate_integer_torch(net, spikes, record=["lif1:v"], device="cuda")
    >>> result.outputs["output"]                         # [T, B, ...] int8, on the host
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sbc_deploy.devices import resolve_device, torch_threads
from sbc_deploy.errors import ConfigError, DataError
from sbc_deploy.sim.fixed_point import (
    ACT_SHIFT,
    CONV_BITS,
    DECAY_UNITY,
    DEVICE_WHERE,
    THREADS_WHERE,
    UV_MAX,
    VTH_SHIFT,
    FixedPointLayer,
    FixedPointNetwork,
    IntSimResult,
    LifState,
    check_blocks,
    lif_parameters,
    pool_source,
    reset_due,
    run_blocks,
)

log = logging.getLogger(__name__)

FLOAT64_EXACT = 1 << 53    # integers below 2**53 are exact in float64 sums
FLOAT32_EXACT = 1 << 24    # and below 2**24 in float32 ones


# --------------------------------------------------------------------------- neuron numerics


def decay(x: Tensor, factor: int) -> Tensor:
    """``trunc(x * factor / 4096)`` on int64 (Lava: ``sign(y) * (|y| >> 12)``), a new tensor."""
    if factor == 0:
        return torch.zeros_like(x)
    if factor == DECAY_UNITY:
        return x.clone()
    return torch.div(x * factor, DECAY_UNITY, rounding_mode="trunc")


def lif_step_int(a_in: Tensor, u: Tensor, v: Tensor, u_factor: int, v_factor: int, bias: Tensor,
                 vth: int) -> tuple[Tensor, Tensor, Tensor]:
    """One step of Lava's ``PyLifModelBitAcc`` on int64 tensors of one device (pure).

    Args:
        a_in: synaptic input ``a[t]``, ``[B, *shape]``.
        u, v: the state after the previous step (not modified).
        u_factor: ``4096 - (du + 1)``; ``v_factor``: ``4096 - dv``.
        bias: ``bias_mant << bias_exp`` per neuron, ``[*shape]``.
        vth: the threshold mantissa (compared after ``<< 6``).

    Returns:
        ``(spikes, u, v)``: bool spikes and the new state.
    """
    # u[t] = trunc(u[t-1] * (4096 - (du + 1)) / 4096) + (a[t] << 6)
    u = decay(u, u_factor) + a_in * (1 << ACT_SHIFT)
    # u wraps once into (-2**23, 2**23]: > 2**23 loses 2**24, <= -2**23 gains 2**24
    u = torch.where(u > UV_MAX, u - 2 * UV_MAX, torch.where(u <= -UV_MAX, u + 2 * UV_MAX, u))
    # v[t] = trunc(v[t-1] * (4096 - dv) / 4096) + u[t] + (bias_mant << bias_exp), clipped
    v = (decay(v, v_factor) + u + bias).clamp_(-(UV_MAX - 1), UV_MAX - 1)
    # s[t] = v[t] > vth << 6; hard reset v[t] <- 0 where s[t]
    s = v > (vth << VTH_SHIFT)
    return s, u, v.masked_fill_(s, 0)


# --------------------------------------------------------------------------- synapses


def _wrap(a: Tensor, bits: int) -> Tensor:
    """Lava's ``signed_clamp``: two's complement wrap-around to ``bits`` bits (int64)."""
    half = 1 << (bits - 1)
    return torch.remainder(a + half, 1 << bits) - half


class _Synapse:
    """``A(s)`` of one synapse over a block of steps on ``device``, exact (see the module)."""

    def __init__(self, name: str, weight: np.ndarray, exponent: int,
                 conv: FixedPointLayer | None, input_shape: tuple[int, ...], input_max: int,
                 device: torch.device) -> None:
        self.conv, self.exponent, self.input_shape = conv, exponent, input_shape
        self.device = device
        w = np.asarray(weight, dtype=np.int64)
        reach = int(np.abs(w.reshape(w.shape[0], -1)).sum(axis=1).max(initial=0))
        bound = reach * max(int(input_max), 1)   # |every partial sum| <= bound
        if bound >= FLOAT64_EXACT:
            raise ConfigError(
                f"a partial sum of its products can reach {bound} (largest row sum |W| "
                f"{reach} x largest input {input_max}) >= 2**53: float64 products, the only "
                "integer-exact form on every device, would round", where=f"synapse '{name}'",
                hint="run the numpy core (device=None), or use narrower weights or inputs")
        # float32 only on the CPU (the numpy core's kernels); float64 on an accelerator, where
        # float32 products may run in TF32
        self.dtype = torch.float32 if (bound < FLOAT32_EXACT and device.type == "cpu") \
            else torch.float64
        self.weight = torch.tensor(w, dtype=self.dtype, device=device)   # a copy
        if conv is None:
            self.weight_t = self.weight.t().contiguous()

    def __call__(self, s: Tensor) -> Tensor:
        """``s``: ``[N, *input_shape]`` integers on the device -> ``[N, *out]`` int64."""
        x = s.reshape(s.shape[0], *self.input_shape).to(self.dtype)
        if self.conv is None:
            a = (x @ self.weight_t).to(torch.int64)
            e = self.exponent
            return a << e if e > 0 else (a >> -e if e < 0 else a)   # arithmetic: floors
        c = self.conv
        # cuDNN may convolve by FFT or Winograd (not exact); the native kernels sum products
        with torch.backends.cudnn.flags(enabled=False):
            a = F.conv2d(x, self.weight, stride=c.stride, padding=c.padding,
                         dilation=c.dilation, groups=c.groups)
        return _wrap(a.to(torch.int64), CONV_BITS)


# --------------------------------------------------------------------------- one layer


class _LayerRun:
    """One neuron layer's state on the device across blocks (never escapes the simulation)."""

    def __init__(self, layer: FixedPointLayer, index: int, batch: int, keys: Mapping[str, str],
                 reset_interval: int | None, reset_offset: int, source_max: int,
                 device: torch.device) -> None:
        self.layer, self.index, self.batch, self.device = layer, index, batch, device
        self.keys = dict(keys)
        if not layer.spiking:
            self.keys.setdefault("v", "")   # a read-out's output is its v
        self.reset_interval, self.reset_offset = reset_interval, reset_offset
        p = lif_parameters(layer, np.int64)
        self.u_factor, self.v_factor = DECAY_UNITY - (p.du + 1), DECAY_UNITY - p.dv
        self.vth = p.vth
        self.bias = torch.tensor(p.bias, dtype=torch.int64, device=device)
        self.u, self.v = self._zeros(), self._zeros()
        self.scale: Tensor | None = None
        self.feed: _Synapse | None = None
        if layer.kind == "input":
            assert layer.input_scale is not None
            self.scale = torch.tensor(np.broadcast_to(layer.input_scale, layer.shape),
                                      dtype=torch.float64, device=device)
        else:
            assert layer.weight is not None and layer.synapse is not None
            self.feed = _Synapse(layer.synapse, layer.weight, layer.weight_exp,
                                 layer if layer.kind == "conv2d" else None,
                                 layer.synapse_input_shape, source_max, device)
        self.rec: _Synapse | None = None
        if layer.recurrent_weight is not None:
            assert layer.recurrent is not None
            self.rec = _Synapse(layer.recurrent, layer.recurrent_weight,
                                layer.recurrent_weight_exp, None, (layer.neurons,), 1, device)
        self.rec_a: Tensor | None = None   # recurrent input of the next step (1 step delay)
        self.last: Tensor | None = None    # the source's step before the block (delay)

    def _zeros(self) -> Tensor:
        return torch.zeros((self.batch, *self.layer.shape), dtype=torch.int64,
                           device=self.device)

    def block(self, source: Tensor, t0: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Steps ``t0 .. t0 + n - 1``; ``source`` ``[n, B, *source_shape]`` on the device.
        Returns the spikes (int8) and the traces of ``a``, ``u``, ``v`` asked for (int64)."""
        layer, batch, dev = self.layer, self.batch, self.device
        n = int(source.shape[0])
        shape = (n, batch, *layer.shape)
        out = torch.empty(shape, dtype=torch.int8, device=dev)
        traces = {what: torch.empty(shape, dtype=torch.int64, device=dev)
                  for what in ("a", "u", "v") if what in self.keys}
        a_block = self._input_block(source)
        u, v, rec_a = self.u, self.v, self.rec_a
        for k in range(n):
            a_t = a_block[k] if rec_a is None else a_block[k] + rec_a
            if reset_due(t0 + k, self.index, self.reset_interval, self.reset_offset):
                u, v = self._zeros(), self._zeros()
            s, u, v = lif_step_int(a_t, u, v, self.u_factor, self.v_factor, self.bias, self.vth)
            out[k] = s
            if self.rec is not None:
                rec_a = self.rec(s.reshape(batch, -1)).reshape(u.shape)
            for what, value in (("a", a_t), ("u", u), ("v", v)):
                if what in traces:
                    traces[what][k] = value
        self.u, self.v, self.rec_a = u, v, rec_a
        return out, traces

    def _input_block(self, source: Tensor) -> Tensor:
        """``a[t]`` for the block's steps, ``[n, B, *shape]`` int64 on the device."""
        layer, batch, n = self.layer, self.batch, int(source.shape[0])
        if self.feed is None:
            # input layer: a[t] = x[t] * weight (no synapse, no delay)
            assert self.scale is not None
            a = source.reshape(n, batch, *layer.shape).to(torch.float64) * self.scale
            if not bool(torch.equal(a, torch.round(a))):
                raise DataError("the input times the input layer's weight / unit is not an "
                                "integer; Lava's a_in carries integers",
                                where=f"layer '{layer.name}'")
            return a.to(torch.int64)
        # a[t] = A(s_in[t - 1]); a[0] = 0 (Lava's synapse buffer starts empty)
        a_block = torch.zeros((n, batch, *layer.shape), dtype=torch.int64, device=self.device)
        s = source[:-1] if self.last is None else torch.cat([self.last[None], source[:-1]])
        self.last = source[-1].clone()
        if s.shape[0]:
            # the OR of each window's spikes (a max pool before the synapse), exact
            a = self.feed(pool_source(layer, s.reshape(s.shape[0] * batch, *s.shape[2:])))
            a_block[n - s.shape[0]:] = a.reshape(s.shape[0], batch, *layer.shape)
        return a_block


# --------------------------------------------------------------------------- simulate


def _on_host(block: Tensor | np.ndarray) -> Tensor:
    """A recorded block as a host tensor (the input's blocks are host arrays: copied)."""
    return torch.tensor(block) if isinstance(block, np.ndarray) else block


def simulate_integer_torch(net: FixedPointNetwork, spikes: Tensor | np.ndarray, *,
                           record: Iterable[str] | str = (),
                           graded_input: bool = False,
                           reset_interval: int | None = None,
                           reset_offset: int = 0,
                           chunk: int = 64,
                           threads: int | None = None,
                           device: str | torch.device = "cpu") -> IntSimResult:
    """:func:`.int_core.simulate_integer` on ``device``: the same arguments, the same result.

    Args:
        net, spikes, record, graded_input, reset_interval, reset_offset, chunk, threads: as
            :func:`.int_core.simulate_integer` (the input is checked on the host, then moved
            to ``device`` one block at a time).
        device: the torch device of every tensor of the run.

    Returns:
        An :class:`.fixed_point.IntSimResult` on the host (the numpy core's dtypes).

    Raises:
        DataError: ``spikes`` has the wrong shape or non-integer values.
        ConfigError: unknown record names, bad ``chunk``, reset settings or device, or a
            synapse whose partial sums could reach 2**53 (see the module).
    """
    check_blocks(chunk, reset_interval)
    dev = resolve_device(device, where=DEVICE_WHERE)
    with torch_threads(threads, where=THREADS_WHERE), torch.no_grad():
        runs, outputs, recorded, steps, batch = run_blocks(
            net, spikes, record, graded_input, chunk,
            lambda layer, index, batch, keys, source_max: _LayerRun(
                layer, index, batch, keys, reset_interval, reset_offset, source_max, dev),
            to_core=lambda host: torch.tensor(host, device=dev),   # a copy on the device
            to_host=lambda block: block.cpu())
        final = {run.layer.name: LifState(run.u.cpu().numpy(), run.v.cpu().numpy())
                 for run in runs}
    log.debug("integer core on %s: %d layers, T=%d, B=%d", dev, len(net.layers), steps, batch)
    return IntSimResult(MappingProxyType({net.output: torch.cat(outputs)}),
                        MappingProxyType({k: torch.cat([_on_host(b) for b in v])
                                          for k, v in recorded.items()}),
                        MappingProxyType(final))


__all__ = ["decay", "lif_step_int", "simulate_integer_torch"]
