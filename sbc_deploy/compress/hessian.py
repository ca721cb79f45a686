r"""Layer Hessians of the SBC objective: temporal (SMP) kernels, streaming sums, damped inverses.

Stage contract: the input sequences of one synapse layer ``x [T, B, *input_shape]`` ->
float64 sums of :math:`(K X)^\top (K X)` plus counts (a :class:`HessianSum`), and a Hessian ->
the upper Cholesky factor of its damped inverse (:func:`damped_inverse_cholesky`).

The SBC objective of a synapse layer ``W`` (``n_out x n_in``) followed by a neuron is the error
of the neuron's *surrogate membrane potential* (no threshold, no reset), a causal linear filter
``K`` (``T x T``, lower triangular) of the layer's output current::

    V_b = K X_b W^T                                   X_b: (T, n_in) inputs of sample b
    L(W') = sum_b ||K X_b (W - W')^T||_F^2 = N/2 * sum_rows (w - w') H (w - w')^T
    H = 2/N * sum_b (K X_b)^T (K X_b)                  N: sequences x positions (T is summed)

``K`` comes from the neuron after the layer (:func:`kernel_for_neuron`):

    LIF, LI          K[t, s] = beta**(t - s)                        (s <= t)
    CubaLIF, CubaLI  K = K_beta @ K_alpha     (synaptic filter first, then the membrane)
    IF, Integrator   K[t, s] = 1                                    (running sum, beta = 1)
    none (readout)   K = I                                          (plain OBC current loss)

The spike variants of ``sbc_deploy.ir.nodes`` (``fires_at_equal``, ``max_spikes``,
``reset_timing``, ``v_min``) leave ``K`` as above, because ``K`` is the membrane *before* the
threshold acts and without any reset, and every variant changes only what happens at or after
a threshold crossing or below a floor:

- ``fires_at_equal`` changes the spike test only (``>=`` for ``>``): no term of ``V`` changes.
- ``max_spikes`` (several spikes per step) changes how many thresholds the reset removes and how
  many spikes are sent: the reset is outside the surrogate, and the spike counts reach the
  *next* layer through its calibration inputs (the simulated counts, so its Hessian sees counts
  above 1).
- ``reset_timing`` moves the reset to the next step (snntorch's delayed reset, spyx) or makes the
  zero reset a one-step refractory period (snntorch Synaptic / RLeaky): both are resets, which
  the surrogate drops; ``"same_step_raised"`` raises the threshold of one step, also outside it.
- ``v_min`` (sinabs ``min_v_mem``) clips the membrane from below: like the threshold a
  nonlinearity the linear surrogate leaves out; it binds only where ``V`` falls under it.

A gain (sinabs ``norm_input``: ``gain = 1 - beta``) scales a row's membrane, not its time
course: it enters the loss as the row weight ``gain**2`` (``calibrate.layer_row_weight``).
``tests/test_neuron_variants.py`` checks, for every variant of every spiking kind, that the
kernel is the plain kind's and that it equals the variant neuron's simulated membrane while the
neuron stays below threshold and above ``v_min``.

The ``"current"`` kernel (OBC / GPTQ / SparseGPT ported to SNNs) is ``K = I`` for every layer.
Filtering is the recursion ``y[t] = beta * y[t-1] + x[t]`` run as a blocked scan (one small
GEMM per 32 steps and a carry between blocks, O(32 T) work, not the T x T matrix), which equals
``K @ x`` up to rounding (tests check both against the closed form and the step-by-step loop).

Speed (:class:`HessianAccumulator`): per batch the filter runs once over all samples; the sums
are float32 GEMMs over chunks of at most :data:`GEMM_ROWS` rows, each added into float64 sums
(relative error ~1e-7 against float64 GEMMs; ``precision="float64"`` is the exact reference,
exact for integer-valued inputs such as spikes through IF or readout kernels).

Per-neuron decays: rows (output neurons or channels) whose neurons share the same decays share
one Hessian. When a layer has more distinct decays than ``max_groups``, rows are binned by the
quantiles of their decays and each bin uses its mean decay (an approximation, logged).

Conv layers are unfolded (im2col, PyTorch's ``unfold`` order ``C_in/groups x kH x kW``): every
output position of every step is one row, and ``N`` counts sequences x positions, as the SBC
authors do. Grouped convolutions get one Hessian per convolution group. Conv2d layers without
groups are unfolded channels-last by one strided copy (several times faster than ``unfold`` on a
CPU) and their sums permuted back to ``unfold`` order once per batch.

Beyond the full Hessian: a block-diagonal one (``block_size``: only the diagonal blocks of
consecutive inputs are summed, for layers whose ``n_in**2`` sums do not fit; see
``sbc_deploy.memory``), and row subsampling (``row_fraction``: an unbiased estimate).

Symbols::

    paper       code          GPTQ / SparseGPT     llm-compressor
    X           x             inp                  inp
    K           kernel        -                    -
    H           H             self.H               H
    N           n_rows        self.nsamples        num_samples
    lambda      damp          percdamp * mean      dampening_frac * mean
    chol(H^-1)  U (Hinv)      Hinv                 Hinv
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sbc_deploy.compress.obs import LowRankPlusDiagonal
from sbc_deploy.errors import ConfigError, NumericalError, ShapeError
from sbc_deploy.ir.graph import SynapseLayer
from sbc_deploy.ir.nodes import (
    IF,
    LI,
    LIF,
    Conv1d,
    Conv2d,
    CubaLI,
    CubaLIF,
    Integrator,
    Neuron,
    Synapse,
)

log = logging.getLogger(__name__)

HESSIAN_DTYPE = torch.float64
KERNELS: tuple[str, ...] = ("smp", "current")

__all__ = [
    "CHUNK_ELEMENTS", "HESSIAN_DTYPE", "KERNELS", "LOW_RANK_TOL", "PRECISIONS", "BatchSum",
    "DampedInverse", "DampedLowRank", "HessianAccumulator", "HessianSize", "HessianSum",
    "TemporalKernel", "accumulation_bytes", "damped_inverse_cholesky", "final_copy_bytes",
    "hessian_size", "kernel_for_neuron", "low_rank_damped", "per_row", "pivoted_cholesky",
    "sums_bytes", "temporal_kernel", "unfold_input",
]


# --------------------------------------------------------------------------- temporal kernels


def temporal_kernel(beta: float, steps: int, dtype: torch.dtype = HESSIAN_DTYPE) -> Tensor:
    """``K[t, s] = beta**(t - s)`` for ``s <= t``, else 0. Shape ``(steps, steps)``.

    Filters presynaptic input into its contribution to a LIF membrane potential with per-step
    decay ``beta``; SBC's reference code builds the same matrix with ``beta = (tau - 1) / tau``.
    ``beta = 1`` gives the running sum of an integrator.
    """
    t = torch.arange(steps, dtype=dtype)
    lag = t[:, None] - t[None, :]
    return torch.where(lag >= 0, torch.as_tensor(beta, dtype=dtype) ** lag.clamp(min=0),
                       torch.zeros((), dtype=dtype))


@dataclass(frozen=True)
class TemporalKernel:
    """The causal filter ``K`` of one group of output neurons.

    ``alpha``: synaptic current decay (current-based neurons), else ``None``; ``beta``: membrane
    decay (1 for integrators), ``None`` for the identity (readout or the ``"current"`` kernel).
    """

    alpha: float | None = None
    beta: float | None = None

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"decay must lie in [0, 1], got {value}",
                                  where=f"TemporalKernel.{name}")
        if self.alpha is not None and self.beta is None:
            raise ConfigError("a synaptic decay needs a membrane decay", where="TemporalKernel")

    @property
    def is_identity(self) -> bool:
        return self.beta is None

    def matrix(self, steps: int, dtype: torch.dtype = HESSIAN_DTYPE) -> Tensor:
        """The closed-form ``(steps, steps)`` matrix ``K`` (``K_beta @ K_alpha``)."""
        if self.beta is None:
            return torch.eye(steps, dtype=dtype)
        K = temporal_kernel(self.beta, steps, dtype)
        if self.alpha is not None:
            K = K @ temporal_kernel(self.alpha, steps, dtype)
        return K

    def filter(self, x: Tensor) -> Tensor:
        """``K @ x`` along the first (time) axis, by the recursion ``y[t] = d*y[t-1] + x[t]``."""
        return self.filter_from(x, None)[0]

    def filter_from(self, x: Tensor, state: tuple[Tensor, ...] | None
                    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """``K @ x`` for a chunk of steps that continues an earlier one: ``(y, new state)``.

        ``state``: the last filtered step of every stage (synaptic, then membrane) of the
        previous chunk, or ``None`` at ``t = 0``. Filtering a sequence chunk by chunk, passing
        the state on, equals filtering it whole (bit for bit when every chunk but the last has a
        multiple of :data:`SCAN_BLOCK` steps: the same blocks, the same carries).
        """
        if self.beta is None:
            return x, ()
        y, carried = x, []
        decays = (self.alpha, self.beta) if self.alpha is not None else (self.beta,)
        for k, decay in enumerate(decays):
            previous = None if state is None else state[k]
            y = _causal_filter(y, float(decay), previous)  # type: ignore[arg-type]
            carried.append(y[-1].clone())
        return y, tuple(carried)


SCAN_BLOCK = 32
"""Steps per block of the blocked scan: one ``(c x c)`` GEMM per block, a carry between blocks."""


def _causal_filter(x: Tensor, decay: float, previous: Tensor | None = None) -> Tensor:
    """``y[t] = decay * y[t-1] + x[t]``, ``y[-1] = previous`` (0 when ``None``), a blocked scan.

    Within a block of ``c`` steps ``y = K_c x + decay**(i+1) * y[t0 - 1]`` (``K_c`` the closed
    form, one GEMM over all samples and inputs); the Python loop runs over ``T / c`` blocks, not
    over steps. An integrator (``decay = 1``, a running sum) takes the same path (faster than
    ``cumsum`` along time on a CPU).
    """
    steps = int(x.shape[0])
    c = min(steps, SCAN_BLOCK)
    flat = x.reshape(steps, -1)
    K = temporal_kernel(decay, c, dtype=x.dtype).to(x.device)
    carry_gain = (torch.as_tensor(decay, dtype=torch.float64)
                  ** torch.arange(1, c + 1, dtype=torch.float64)).to(x.dtype).to(x.device)
    y = torch.empty_like(flat)
    before = None if previous is None else previous.reshape(-1).to(flat.dtype)
    for t0 in range(0, steps, c):
        n = min(c, steps - t0)
        block = torch.mm(K[:n, :n], flat[t0:t0 + n])            # the leak inside the block
        carry = y[t0 - 1] if t0 else before
        if carry is not None:
            # + decay**(i+1) * y[t0 - 1]: the state carried into the block
            block.addr_(carry_gain[:n], carry)
        y[t0:t0 + n] = block
    return y.reshape(x.shape)


def per_row(values: np.ndarray, n_out: int, what: str) -> np.ndarray:
    """A neuron parameter as one value per output row (channel-major for conv layers)."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if flat.size == n_out:
        return flat
    if flat.size % n_out:
        raise ShapeError(f"{what} has {flat.size} values, not a multiple of the layer's "
                         f"{n_out} output channels")
    per_channel = flat.reshape(n_out, -1)
    if not np.allclose(per_channel, per_channel[:, :1]):
        log.info("%s varies within an output channel; using its mean per channel", what)
    return per_channel.mean(axis=1)


def kernel_for_neuron(neuron: Neuron | None, n_out: int, *, kind: str = "smp",
                      max_groups: int = 8) -> tuple[tuple[TemporalKernel, ...], np.ndarray]:
    """The SMP kernels of a layer's output rows and the group index of every row.

    Args:
        neuron: the neuron that integrates the layer's output (``None`` for a readout).
        n_out: output rows of the layer (neurons, or channels of a convolution).
        kind: ``"smp"`` (the neuron's membrane filter) or ``"current"`` (identity, OBC).
        max_groups: most distinct kernels kept; more distinct decays are binned (see module
            docstring).

    Returns:
        ``(kernels, groups)``: one :class:`TemporalKernel` per group and ``groups`` (``n_out``,
        int) mapping each row to its kernel.
    """
    if kind not in KERNELS:
        raise ConfigError(f"unknown kernel {kind!r}; known: {', '.join(KERNELS)}", where="kernel")
    if max_groups < 1:
        raise ConfigError(f"must be >= 1, got {max_groups}", where="max_groups")
    zero = np.zeros(n_out, dtype=np.int64)
    if kind == "current" or neuron is None:
        return (TemporalKernel(),), zero
    if isinstance(neuron, (IF, Integrator)):
        return (TemporalKernel(beta=1.0),), zero
    if isinstance(neuron, (LIF, LI)):
        decays = per_row(neuron.beta, n_out, f"{neuron.kind}.beta")[:, None]
    elif isinstance(neuron, (CubaLIF, CubaLI)):
        decays = np.stack([per_row(neuron.alpha, n_out, f"{neuron.kind}.alpha"),
                           per_row(neuron.beta, n_out, f"{neuron.kind}.beta")], axis=1)
    else:
        raise ConfigError(f"no SMP kernel for neuron kind {neuron.kind}", where="kernel")
    unique, groups = np.unique(decays, axis=0, return_inverse=True)
    groups = groups.reshape(-1)
    if len(unique) > max_groups:
        # Bin rows by the quantiles of their decays (the membrane decay decides the order).
        log.info("%d distinct decays in one layer: binned into %d groups by their mean",
                 len(unique), max_groups)
        rank = np.argsort(np.argsort(decays[:, -1], kind="stable"), kind="stable")
        groups = (rank * max_groups) // n_out
        unique = np.stack([decays[groups == g].mean(axis=0) for g in range(max_groups)])
    if decays.shape[1] == 1:
        kernels = tuple(TemporalKernel(beta=float(b)) for (b,) in unique)
    else:
        kernels = tuple(TemporalKernel(alpha=float(a), beta=float(b)) for a, b in unique)
    return kernels, groups.astype(np.int64)


# --------------------------------------------------------------------------- im2col


def unfold_input(x: Tensor, synapse: Synapse) -> Tensor:
    """Rows of the layer's linear map: ``(rows, conv_groups, n_in)`` with ``n_in`` per group.

    ``x``: ``[..., *input_shape]`` (any leading axes, e.g. ``[T, B]``). Affine: one row per
    leading index. Conv: im2col (PyTorch ``unfold`` order), one row per output position.
    """
    in_shape = tuple(synapse.input_shape)
    lead = x.shape[: x.ndim - len(in_shape)]
    if tuple(x.shape[len(lead):]) != in_shape:
        raise ShapeError(f"input of shape {tuple(x.shape)} does not end with the layer's input "
                         f"shape {in_shape}")
    flat = x.reshape(-1, *in_shape)
    if isinstance(synapse, (Conv1d, Conv2d)):
        if isinstance(synapse, Conv1d):
            flat = flat[:, :, None, :]
            kernel, stride = (1, synapse.weight.shape[2]), (1, synapse.stride)
            padding, dilation = (0, synapse.padding), (1, synapse.dilation)
        else:
            kernel, stride = tuple(synapse.weight.shape[2:]), synapse.stride
            padding, dilation = synapse.padding, synapse.dilation
        cols = F.unfold(flat, kernel, dilation=dilation, padding=padding, stride=stride)
        groups = synapse.groups
        n_in = cols.shape[1] // groups
        # (M, groups * n_in, L) -> (M * L, groups, n_in)
        return cols.reshape(cols.shape[0], groups, n_in, -1).permute(0, 3, 1, 2).reshape(
            -1, groups, n_in)
    return flat.reshape(flat.shape[0], 1, -1)


def _channels_last_rows(frames: Tensor, synapse: Conv2d) -> Tensor:
    """im2col of channels-last frames ``(F, H, W, C)`` as rows ``(F * L, kH * kW * C)``.

    One strided copy (runs of ``C`` contiguous values), several times faster on a CPU than
    ``unfold`` plus the transpose into rows. The columns are in ``(kH, kW, C)`` order, not
    PyTorch's ``(C, kH, kW)``: :func:`_unfold_order` maps one to the other. ``groups == 1``.
    """
    kh, kw = (int(v) for v in synapse.weight.shape[2:])
    (sh, sw), (ph, pw), (dh, dw) = synapse.stride, synapse.padding, synapse.dilation
    if ph or pw:
        frames = F.pad(frames, (0, 0, pw, pw, ph, ph))
    n_frames, height, width, channels = frames.shape
    out_h = (height - dh * (kh - 1) - 1) // sh + 1
    out_w = (width - dw * (kw - 1) - 1) // sw + 1
    st = frames.stride()
    view = frames.as_strided((n_frames, out_h, out_w, kh, kw, channels),
                             (st[0], st[1] * sh, st[2] * sw, st[1] * dh, st[2] * dw, st[3]))
    return view.reshape(n_frames * out_h * out_w, kh * kw * channels)


def _unfold_order(synapse: Conv2d) -> Tensor:
    """Index ``perm`` with ``unfold column u = channels-last column perm[u]``."""
    channels = int(synapse.weight.shape[1])
    kh, kw = (int(v) for v in synapse.weight.shape[2:])
    c, i, j = torch.meshgrid(torch.arange(channels), torch.arange(kh), torch.arange(kw),
                             indexing="ij")
    return ((i * kw + j) * channels + c).reshape(-1)


def conv_groups(synapse: Synapse) -> int:
    """Number of convolution groups (1 for dense layers)."""
    return int(getattr(synapse, "groups", 1))


# --------------------------------------------------------------------------- sums


@dataclass(frozen=True, eq=False)
class HessianSum:
    r"""Float64 sums of :math:`(K x)(K x)^\top` for one synapse layer, plus counts.

    Sums add across batches and processes (``a + b``); the Hessian is ``2 * xtx / n_rows``.

    Attributes:
        xtx: ``(kernel_groups, conv_groups, n_in, n_in)`` float64 sums over rows, or, for a
            block-diagonal Hessian (``block_size`` set), ``(kernel_groups, conv_groups,
            n_blocks, block_size, block_size)``: the diagonal blocks of consecutive inputs (the
            last one zero-padded past ``n_in``); the couplings between blocks are not summed
            and count as zero (see :func:`block_diagonal_loss`).
        kernels: the temporal kernel of each kernel group.
        groups: ``(n_out,)`` kernel group of every output row.
        row_weight: ``(n_out,)`` weight of each row's error in the layer loss (the squared gain
            between the layer's output and the membrane: ``Scale`` nodes, ``gain``, ``gain_syn``;
            1 for the ``"current"`` kernel). Changes which rows are pruned, not the updates.
        x_sum: ``(conv_groups, n_in)`` sum of the unfiltered inputs (input rates).
        n_samples: sequences seen.
        n_rows: rows summed per time step: sequences x output positions (T is summed, not
            counted, as in SBC's reference code).
        steps: time steps per sequence.
        n_inputs: inputs per conv group (``n_in``; needed when blocks pad it).
        row_fraction: fraction of rows summed (< 1: an unbiased estimate, the kept rows' sums
            divided by the fraction).
    """

    xtx: np.ndarray
    kernels: tuple[TemporalKernel, ...]
    groups: np.ndarray
    row_weight: np.ndarray
    x_sum: np.ndarray
    n_samples: int
    n_rows: int
    steps: int
    n_inputs: int | None = None
    row_fraction: float = 1.0

    def __post_init__(self) -> None:
        for name in ("xtx", "groups", "row_weight", "x_sum"):
            array = np.array(getattr(self, name), copy=True)
            array.flags.writeable = False
            object.__setattr__(self, name, array)
        if self.xtx.ndim not in (4, 5) or self.xtx.shape[-2] != self.xtx.shape[-1]:
            raise ShapeError(f"xtx must be (kernel_groups, conv_groups, n, n) or (kernel_groups, "
                             f"conv_groups, blocks, b, b), got {self.xtx.shape}")
        if self.xtx.shape[0] != len(self.kernels):
            raise ShapeError(f"{self.xtx.shape[0]} sums for {len(self.kernels)} kernels")
        if self.n_inputs is None:
            object.__setattr__(self, "n_inputs", int(self.x_sum.shape[-1]))

    @property
    def block_size(self) -> int | None:
        """Inputs per diagonal block, or ``None`` for the full Hessian."""
        return int(self.xtx.shape[-1]) if self.xtx.ndim == 5 else None

    @property
    def n_in(self) -> int:
        return int(self.n_inputs)  # type: ignore[arg-type]

    @property
    def n_out(self) -> int:
        return int(self.groups.shape[0])

    def hessian(self, device: str | torch.device = "cpu") -> Tensor:
        """``H = 2 * xtx / n_rows`` in ``xtx``'s layout (full or diagonal blocks), float64."""
        if self.n_rows == 0:
            raise NumericalError("no calibration rows were accumulated", where="HessianSum")
        return torch.tensor(self.xtx, device=device) * (2.0 / self.n_rows)

    def in_rate(self) -> np.ndarray:
        """Mean input per step and position, ``(conv_groups * n_in,)`` (spike rate for spikes)."""
        count = max(self.n_rows * self.steps, 1)
        return (self.x_sum / count).reshape(-1)

    def __add__(self, other: HessianSum) -> HessianSum:
        if (self.xtx.shape != other.xtx.shape or self.kernels != other.kernels
                or not np.array_equal(self.groups, other.groups) or self.steps != other.steps
                or self.row_fraction != other.row_fraction):
            raise ShapeError("cannot add Hessian sums of different layers, kernels, steps, "
                             "layouts or row fractions")
        return HessianSum(self.xtx + other.xtx, self.kernels, self.groups, self.row_weight,
                          self.x_sum + other.x_sum, self.n_samples + other.n_samples,
                          self.n_rows + other.n_rows, self.steps, self.n_inputs,
                          self.row_fraction)


PRECISIONS: tuple[str, ...] = ("float32", "float64")
GEMM_ROWS = 1 << 16
"""Most rows one float32 GEMM sums before its result is added into the float64 sums."""
CHUNK_ELEMENTS = 1 << 22
"""Default :attr:`HessianAccumulator.chunk_elements`: values of one unfolded chunk."""


@dataclass(frozen=True, eq=False)
class BatchSum:
    """One batch's float64 contribution to a layer's sums: the unit that processes exchange.

    Adding batch sums in the order of their batch index gives the same bits whichever process
    computed each of them (:mod:`sbc_deploy.distributed` relies on it).
    """

    xtx: Tensor
    x_sum: Tensor
    n_samples: int
    n_rows: int
    steps: int


@dataclass(eq=False)
class _Stream:
    """A batch being fed in time chunks (private to :class:`HessianAccumulator`)."""

    index: int
    xtx: Tensor
    into_totals: bool
    channels_last: bool
    pending: list[Tensor | None]
    carries: list[tuple[Tensor, ...] | None]
    batch: int | None = None
    positions: int | None = None
    frames: int = 0
    steps: int = 0
    x_time: Tensor | None = None
    permute: bool = True  # channels-last sums back to unfold order at the end of the batch


@dataclass(eq=False)
class HessianAccumulator:
    r"""Streaming accumulator for one layer (mutable, private to a calibration run).

    Per batch (:meth:`batch_sum`): the SMP filter runs once over the whole batch (a blocked scan
    over ``T``, :meth:`TemporalKernel.filter`); the filtered inputs are unfolded (im2col, convs
    only) in chunks of at most ``chunk_elements`` values and each chunk's
    :math:`X^\top X` is one GEMM in ``precision`` (float32 by default: the machine's GEMM rate)
    over at most :data:`GEMM_ROWS` rows, added into the batch's float64 sums; the batch's sums
    are then added into the running float64 totals. ``precision="float64"`` does the same in
    float64 (the reference the float32 path is tested against).

    Options:
        block_size: sum only the diagonal blocks of ``block_size`` consecutive inputs (a
            block-diagonal Hessian for layers whose ``n_in**2`` sums do not fit in memory).
        row_fraction: sum a random fraction of the rows (every row kept with this probability,
            drawn from ``seed`` and the batch index) and divide by it: an unbiased estimate of
            the sums for data far larger than the Hessian needs. ``n_rows`` counts every row.

    Memory: the sums (``kernel_groups * conv_groups * n_in**2`` float64, or the blocks), one
    batch's sums of the same size, one filtered copy of the batch's inputs and one unfolded
    chunk; it does not grow with the number of samples.
    """

    synapse: Synapse
    kernels: tuple[TemporalKernel, ...]
    groups: np.ndarray
    row_weight: np.ndarray
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    chunk_elements: int = CHUNK_ELEMENTS
    precision: str = "float32"
    block_size: int | None = None
    row_fraction: float = 1.0
    seed: int = 0
    xtx: Tensor | None = None
    x_sum: Tensor | None = None
    n_samples: int = 0
    n_rows: int = 0
    steps: int = 0
    n_batches: int = 0
    _stream: _Stream | None = field(default=None, repr=False)
    _totals_channels_last: bool | None = field(default=None, repr=False)
    _scaled_rows: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; known: "
                              f"{', '.join(PRECISIONS)}", where="HessianAccumulator(precision=)")
        if not 0.0 < self.row_fraction <= 1.0:
            raise ConfigError(f"must lie in (0, 1], got {self.row_fraction}",
                              where="HessianAccumulator(row_fraction=)")
        if self.block_size is not None and self.block_size < 1:
            raise ConfigError(f"must be >= 1, got {self.block_size}",
                              where="HessianAccumulator(block_size=)")
        if self.block_size is not None and self.block_size >= self.n_in:
            self.block_size = None  # one block is the full Hessian

    @property
    def n_in(self) -> int:
        """Inputs per conv group (the side of the full Hessian)."""
        return int(np.prod(self.synapse.weight.shape[1:]))

    def sum_shape(self) -> tuple[int, ...]:
        """Shape of the float64 sums (full, or diagonal blocks)."""
        lead = (len(self.kernels), conv_groups(self.synapse))
        if self.block_size is None:
            return (*lead, self.n_in, self.n_in)
        b = self.block_size
        return (*lead, -(-self.n_in // b), b, b)

    def _gram(self, rows: Tensor) -> Tensor:
        """``rows^T rows`` per conv group (or per diagonal block): ``rows (M, groups, n)``."""
        groups, m = int(rows.shape[1]), int(rows.shape[0])
        if self.block_size is None:
            if groups == 1:
                flat = rows[:, 0]
                return torch.mm(flat.T, flat)[None]
            r = rows.permute(1, 0, 2)
            return torch.bmm(r.transpose(1, 2), r)
        b = self.block_size
        n_blocks = -(-self.n_in // b)
        pad = n_blocks * b - self.n_in
        if pad:
            rows = F.pad(rows, (0, pad))
        r = rows.reshape(m, groups * n_blocks, b).permute(1, 0, 2)  # (groups * blocks, M, b)
        return torch.bmm(r.transpose(1, 2), r).reshape(groups, n_blocks, b, b)

    def _keep(self, index: int, start: int, m: int) -> Tensor | None:
        """Rows kept by the subsampling (``None``: all), the same in every process."""
        if self.row_fraction >= 1.0:
            return None
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + index) * 1_000_033 + start)
        keep = torch.rand(m, generator=gen) < self.row_fraction
        return torch.nonzero(keep).reshape(-1).to(self.device)

    def batch_sum(self, x: Tensor, index: int = 0) -> BatchSum:
        """One batch of input sequences ``x [T, B, *input_shape]`` -> its float64 sums.

        ``index``: the batch's global index (seeds the row subsampling). The same as
        :meth:`begin`, one :meth:`feed` of the whole sequence and :meth:`finish`.
        """
        self.begin(index)
        self.feed(x)
        part = self.finish()
        assert part is not None
        return part

    # ---- one batch, fed in time chunks

    def begin(self, index: int = 0, *, into_totals: bool = False) -> None:
        r"""Start a batch whose input sequence comes in time chunks (:meth:`feed`).

        The SMP filter's state (the last filtered step of every stage) is carried from one
        chunk to the next, and so are the filtered frames that do not fill a GEMM chunk yet, so
        that the GEMMs see the same rows in the same groups as for the whole sequence at once:
        fed in chunks of a multiple of :data:`SCAN_BLOCK` steps the sums are those of
        :meth:`batch_sum`, bit for bit (other chunk lengths: the filter rounds differently,
        ~1e-16 relative in float64; exact for integer-valued filtered inputs). Memory: one
        chunk's filtered copy instead of the whole sequence's.

        ``into_totals``: add the GEMMs straight into the running totals instead of a batch
        buffer of their own (no second ``n_in**2`` buffer per layer; the rounding of the
        float64 additions differs from adding whole batch sums, ~1e-16 relative; exact for
        integer-valued sums). :meth:`finish` then returns ``None`` and counts the batch.
        """
        if self._stream is not None:
            raise ShapeError("a batch is already being fed; finish() it first")
        if into_totals != bool(self._totals_channels_last is not None) and self.n_batches:
            raise ShapeError("batches fed into the totals and whole batch sums cannot be mixed "
                             "in one accumulator")
        if into_totals and self.xtx is None:
            self.xtx = torch.zeros(self.sum_shape(), dtype=HESSIAN_DTYPE, device=self.device)
        channels_last = (isinstance(self.synapse, Conv2d) and conv_groups(self.synapse) == 1
                         and self.block_size is None)
        if into_totals and self.xtx is not None and self._totals_channels_last is None:
            self._totals_channels_last = channels_last
        xtx = (self.xtx if into_totals else
               torch.zeros(self.sum_shape(), dtype=HESSIAN_DTYPE, device=self.device))
        self._stream = _Stream(index=index, xtx=xtx, into_totals=into_totals,
                               channels_last=channels_last,
                               pending=[None] * len(self.kernels),
                               carries=[None] * len(self.kernels))

    def feed(self, x: Tensor) -> None:
        """The next time chunk ``x [t, B, *input_shape]`` of the batch begun by :meth:`begin`."""
        stream = self._stream
        if stream is None:
            raise ShapeError("feed() before begin()")
        if x.ndim < 3:
            raise ShapeError(f"expected [T, B, *input_shape], got shape {tuple(x.shape)}")
        steps, batch = int(x.shape[0]), int(x.shape[1])
        if stream.batch is None:
            stream.batch = batch
        elif batch != stream.batch:
            raise ShapeError(f"a chunk of {batch} samples in a batch of {stream.batch}")
        dtype = torch.float32 if self.precision == "float32" else HESSIAN_DTYPE
        n_groups, n_in = conv_groups(self.synapse), self.n_in
        xb = x.to(device=self.device, dtype=dtype)
        if stream.positions is None:
            probe = unfold_input(xb[:1, :1], self.synapse)
            stream.positions = int(probe.shape[0])
            if int(probe.shape[-1]) != n_in:
                raise ShapeError(f"input unfolds to {int(probe.shape[-1])} inputs per group, "
                                 f"the layer has {n_in}")
        positions = stream.positions
        frames = steps * batch
        in_shape = tuple(xb.shape[2:])
        # frames (sample-steps) per unfolded chunk: bounded in values and in GEMM rows
        per_chunk = max(1, min(self.chunk_elements // max(positions * n_in * n_groups, 1),
                               GEMM_ROWS // positions))
        # Conv2d without groups: channels-last im2col (one strided copy), Gram in (kH, kW, C)
        # column order, permuted to PyTorch's order once per batch (or once, into the totals)
        channels_last = stream.channels_last
        first = stream.frames  # global index of this chunk's first frame
        for g, kernel in enumerate(self.kernels):
            y, stream.carries[g] = kernel.filter_from(xb, stream.carries[g])  # K @ x, carried
            y = y.reshape(frames, *in_shape)
            if channels_last:
                y = y.permute(0, 2, 3, 1).contiguous()
            held = stream.pending[g]
            if held is not None:  # frames of the last chunk that did not fill a GEMM chunk
                y = torch.cat([held, y])
            start = first - (0 if held is None else int(held.shape[0]))
            total = int(y.shape[0])
            full = total - total % per_chunk
            for f0 in range(0, full, per_chunk):
                self._add_gram(stream, g, y[f0:f0 + per_chunk], start + f0)
            stream.pending[g] = y[full:].clone() if full < total else None
            del y
        stream.frames += frames
        stream.steps += steps
        # sum of the raw inputs over time, per sample (float64 across chunks)
        part = xb.sum(dim=0).to(HESSIAN_DTYPE)
        stream.x_time = part if stream.x_time is None else stream.x_time + part

    def _add_gram(self, stream: _Stream, g: int, frames: Tensor, f0: int) -> None:
        """One GEMM chunk of filtered frames (global index ``f0``) into the stream's sums."""
        index = stream.index
        if stream.channels_last:
            flat = _channels_last_rows(frames, self.synapse)  # type: ignore[arg-type]
            keep = self._keep(index, f0, int(flat.shape[0]))
            if keep is not None:
                flat = flat.index_select(0, keep)
            stream.xtx[g, 0] += torch.mm(flat.T, flat)  # float32 GEMM, float64 sum
            return
        rows = unfold_input(frames, self.synapse)  # (M, groups, n)
        keep = self._keep(index, f0, int(rows.shape[0]))
        if keep is not None:
            rows = rows.index_select(0, keep)
        stream.xtx[g] += self._gram(rows)  # float32 GEMM, float64 sum

    def finish(self) -> BatchSum | None:
        """End the batch: its sums (``None`` when they went into the totals, then counted)."""
        stream = self._stream
        if stream is None:
            raise ShapeError("finish() before begin()")
        self._stream = None
        if stream.batch is None or stream.x_time is None:
            raise ShapeError("finish() of a batch that was fed no steps")
        for g, held in enumerate(stream.pending):
            if held is not None:
                start = stream.frames - int(held.shape[0])
                self._add_gram(stream, g, held, start)
        xtx = stream.xtx
        if stream.channels_last and not stream.into_totals and stream.permute:
            order = _unfold_order(self.synapse).to(self.device)  # type: ignore[arg-type]
            for g in range(len(self.kernels)):
                xtx[g, 0] = xtx[g, 0].index_select(0, order).index_select(1, order)
        if self.row_fraction < 1.0 and not stream.into_totals:
            xtx /= self.row_fraction
        # sum of the raw inputs over rows: unfold the time- and batch-summed input (linear)
        total = stream.x_time.sum(dim=0)
        x_sum = unfold_input(total[None], self.synapse).sum(dim=0)
        batch, positions = stream.batch, int(stream.positions or 0)
        part = BatchSum(xtx, x_sum, batch, batch * positions, stream.steps)
        if not stream.into_totals:
            return part
        if self.steps and part.steps != self.steps:
            raise ShapeError(f"batches have {part.steps} steps, earlier ones had {self.steps}")
        self.steps = part.steps
        self.x_sum = x_sum.clone() if self.x_sum is None else self.x_sum + x_sum
        self._scaled_rows += 1 if self.row_fraction < 1.0 else 0
        self.n_samples += part.n_samples
        self.n_rows += part.n_rows
        self.n_batches += 1
        return None

    def add_batch_sum(self, part: BatchSum) -> None:
        """Add one batch's sums into the totals (in batch order, for reproducible bits)."""
        if self.steps and part.steps != self.steps:
            raise ShapeError(f"batches have {part.steps} steps, earlier ones had {self.steps}")
        if self._totals_channels_last is not None:
            raise ShapeError("batches fed into the totals and whole batch sums cannot be mixed "
                             "in one accumulator")
        self.steps = part.steps
        self._add_to_totals(part, adopt=False)

    def _add_to_totals(self, part: BatchSum, *, adopt: bool) -> None:
        """Add ``part``'s sums and counts into the totals. ``adopt``: the first part's ``xtx``
        buffer becomes the totals' (no copy; the caller owns no other reference to it)."""
        if self.xtx is None:
            self.xtx = part.xtx if adopt else part.xtx.clone()
            self.x_sum = part.x_sum.clone()
        else:
            assert self.x_sum is not None
            self.xtx += part.xtx
            self.x_sum += part.x_sum
        self.n_samples += part.n_samples
        self.n_rows += part.n_rows
        self.n_batches += 1

    def add(self, x: Tensor, index: int | None = None) -> None:
        """Accumulate one batch of input sequences ``x [T, B, *input_shape]``."""
        self.add_batch_sum(self.batch_sum(x, self.n_batches if index is None else index))

    def accumulate(self, x: Tensor, index: int | None = None) -> None:
        """:meth:`add` for one process, the same totals bit for bit, without the per-batch
        permutation: a channels-last Conv2d's batch sums are added into channels-last totals
        and permuted to ``unfold`` order once, in :meth:`result` (a permutation moves values
        and commutes with the elementwise additions). Per batch that saves two gathers of the
        ``n_in**2`` sums, which cost more than the GEMMs on wide 3x3 convolutions at a few
        hundred rows per batch. Not to be mixed with :meth:`add_batch_sum` in one accumulator.
        """
        if self._stream is not None:
            raise ShapeError("a batch is already being fed; finish() it first")
        if self.n_batches and self._totals_channels_last is None:
            raise ShapeError("batches fed into the totals and whole batch sums cannot be mixed "
                             "in one accumulator")
        channels_last = (isinstance(self.synapse, Conv2d) and conv_groups(self.synapse) == 1
                         and self.block_size is None)
        xtx = torch.zeros(self.sum_shape(), dtype=HESSIAN_DTYPE, device=self.device)
        self._stream = _Stream(index=self.n_batches if index is None else index, xtx=xtx,
                               into_totals=False, channels_last=channels_last,
                               pending=[None] * len(self.kernels),
                               carries=[None] * len(self.kernels), permute=False)
        self.feed(x)
        part = self.finish()
        assert part is not None
        if self.steps and part.steps != self.steps:
            raise ShapeError(f"batches have {part.steps} steps, earlier ones had {self.steps}")
        self.steps = part.steps
        self._totals_channels_last = channels_last
        self._add_to_totals(part, adopt=True)  # this batch's buffer is ours alone

    def result(self) -> HessianSum:
        """The frozen sums (zeros when nothing was added)."""
        if self.xtx is None:
            xtx = np.zeros(self.sum_shape())
            x_sum = np.zeros((conv_groups(self.synapse), self.n_in))
        else:
            assert self.x_sum is not None
            totals = self.xtx
            if self._totals_channels_last or self._scaled_rows:
                totals = totals.clone()
                if self._totals_channels_last:
                    order = _unfold_order(self.synapse).to(self.device)  # type: ignore[arg-type]
                    for g in range(len(self.kernels)):
                        totals[g, 0] = totals[g, 0].index_select(0, order).index_select(1, order)
                if self._scaled_rows:
                    totals /= self.row_fraction
            xtx, x_sum = totals.cpu().numpy(), self.x_sum.cpu().numpy()
        return HessianSum(xtx, self.kernels, self.groups, self.row_weight, x_sum,
                          self.n_samples, self.n_rows, self.steps, self.n_in, self.row_fraction)


# --------------------------------------------------------------------------- damping


@dataclass(frozen=True, eq=False)
class DampedInverse:
    """The damped Hessian, its inverse, and the inverse's upper Cholesky factors.

    Attributes:
        H: the damped Hessian ``H + damp * I`` (dead inputs' diagonal set, see ``dead``).
        Hinv: ``(H + damp * I)^-1``.
        damp: absolute damping added to the diagonal.
        damp_frac: ``damp`` relative to the mean diagonal of ``H``.
        raises: how many times ``damp_frac`` was raised (x10) because Cholesky failed.
        dead: ``(n,)`` bool, inputs with a zero diagonal (never active in the calibration).
    """

    H: Tensor
    Hinv: Tensor
    damp: float
    damp_frac: float
    raises: int
    dead: Tensor

    @cached_property
    def U(self) -> Tensor:
        """Upper Cholesky factor of ``Hinv`` (``U^T U = Hinv``; GPTQ's ``Hinv``)."""
        return self.factor(None)

    def factor(self, order: Tensor | None, dtype: torch.dtype = HESSIAN_DTYPE) -> Tensor:
        """Upper Cholesky factor of ``Hinv`` with rows and columns in ``order``, in ``dtype``.

        Permuting the inverse and factoring it again costs one Cholesky (no new inverse).
        """
        Hinv = self.Hinv.to(dtype)
        if order is not None:
            # Hinv[order][:, order] by two row gathers (Hinv is symmetric): ~2x faster than
            # advanced indexing of both axes at once
            Hinv = Hinv.index_select(0, order).T.contiguous().index_select(0, order)
        U, info = torch.linalg.cholesky_ex(Hinv, upper=True)
        if int(info) != 0:
            raise NumericalError("the damped inverse Hessian lost positive definiteness",
                                 where="DampedInverse.factor",
                                 hint="use a larger damp_frac")
        return U


LOW_RANK_TOL = 1e-9
""":func:`low_rank_damped` stops its pivoted Cholesky when the trace left over is at most this
times the damping: the neglected part ``E`` (positive semidefinite, ``||E|| <= tr E``) then
moves the damped Hessian by at most ``1e-9`` of its smallest eigenvalue."""


def pivoted_cholesky(H: Tensor, tol: float, max_rank: int) -> Tensor | None:
    """``U (n, r)`` with ``H ~= U U^T`` for a positive semidefinite ``H`` of low rank.

    Greedy diagonal pivoting (the largest remaining diagonal next); stops once the remaining
    diagonal sums to at most ``tol`` (the trace of ``H - U U^T``, which bounds its norm).
    ``None`` when ``max_rank`` columns do not get there. ``O(n r^2)``.
    """
    n = int(H.shape[0])
    left = torch.diagonal(H).clone().clamp_(min=0)
    U = torch.zeros(n, max(0, max_rank), dtype=H.dtype, device=H.device)
    for k in range(max_rank + 1):
        if float(left.sum()) <= tol:
            return U[:, :k].clone()
        if k == max_rank:
            break
        j = int(torch.argmax(left))
        col = H[:, j] - U[:, :k] @ U[j, :k]
        col /= col[j].clamp(min=torch.finfo(H.dtype).tiny).sqrt()
        U[:, k] = col
        left.sub_(col * col).clamp_(min=0)
        left[j] = 0.0
    return None


@dataclass(frozen=True, eq=False)
class DampedLowRank:
    """The damped Hessian of :func:`damped_inverse_cholesky` held as ``U U^T + diag(e)``.

    Attributes:
        H: the damped Hessian, a :class:`~sbc_deploy.compress.obs.LowRankPlusDiagonal`.
        damp, damp_frac, dead: as :class:`DampedInverse` (the same values for the same ``H``).
        raises: always 0 (a positive damping cannot fail).
    """

    H: LowRankPlusDiagonal
    damp: float
    damp_frac: float
    dead: Tensor
    raises: int = 0

    @cached_property
    def hinv_diag(self) -> Tensor:
        """``diag(H^-1)`` (Woodbury)."""
        return self.H.inverse_diagonal()


def low_rank_damped(H: Tensor, damp_frac: float = 0.01, *, max_rank: int,
                    where: str = "layer") -> DampedLowRank | None:
    """The damped Hessian of :func:`damped_inverse_cholesky` as low rank plus diagonal, or
    ``None`` when ``H`` has a rank above ``max_rank`` or ``damp_frac`` is 0.

    The same damping (dead inputs get the mean live diagonal, ``damp = damp_frac * mean
    diag``): ``H + damp I = U U^T + diag(e)`` with ``U`` the pivoted Cholesky factor of ``H``
    (:func:`pivoted_cholesky`, to :data:`LOW_RANK_TOL`) and ``e = damp`` (``+ mean live
    diagonal`` at dead inputs). A Hessian summed from ``m`` rows has rank at most ``m``: a
    layer calibrated on fewer rows (sequences x positions x steps) than it has inputs.

    Raises:
        NumericalError: ``H`` is not finite.
    """
    if damp_frac <= 0 or max_rank < 1:
        return None
    if not math.isfinite(float(H.sum())):
        raise NumericalError("Hessian holds NaN or infinite values", where=where)
    H = H.to(HESSIAN_DTYPE)
    diag = torch.diagonal(H).clone()
    dead = diag <= 0
    live_mean = float(diag[~dead].mean()) if bool((~dead).any()) else 1.0
    diag[dead] = live_mean
    damp = damp_frac * float(diag.mean())  # as damped_inverse_cholesky
    if bool(dead.any()):
        H = H.clone()
        H[dead, :] = 0
        H[:, dead] = 0
    U = pivoted_cholesky(H, LOW_RANK_TOL * damp, max_rank)
    if U is None:
        return None
    e = torch.full_like(diag, damp)
    e[dead] += live_mean
    return DampedLowRank(LowRankPlusDiagonal(U, e), damp, damp_frac, dead)


def damped_inverse_cholesky(H: Tensor, damp_frac: float = 0.01, *, max_raises: int = 6,
                            factor: float = 10.0, where: str = "layer") -> DampedInverse:
    """``(H + damp_frac * mean(diag H) * I)^-1`` via Cholesky (GPTQ recipe); ``.U`` factors it.

    Dead inputs (zero diagonal) get the mean live diagonal, so they decouple from the rest.
    When a Cholesky factorisation fails, ``damp_frac`` is multiplied by ``factor`` and the
    attempt repeated, at most ``max_raises`` times; every raise is counted in the result (never
    a silent fallback).

    Raises:
        NumericalError: ``H`` is not finite, or still not positive definite after the raises.
    """
    if damp_frac < 0:
        raise ConfigError(f"damp_frac must be >= 0, got {damp_frac}", where="damp_frac")
    if not math.isfinite(float(H.sum())):  # one reduction: NaN and inf propagate
        raise NumericalError("Hessian holds NaN or infinite values", where=where)
    H = H.to(HESSIAN_DTYPE).clone()
    n = H.shape[0]
    diag = torch.diagonal(H)
    dead = diag <= 0
    live_mean = float(diag[~dead].mean()) if bool((~dead).any()) else 1.0
    H[dead, :] = 0
    H[:, dead] = 0
    diag[dead] = live_mean
    mean_diag = float(diag.mean())
    eye = torch.eye(n, dtype=H.dtype, device=H.device)
    frac = damp_frac
    for raises in range(max_raises + 1):
        damped = H + (frac * mean_diag) * eye
        L, info = torch.linalg.cholesky_ex(damped)
        if int(info) == 0:
            Hinv = torch.cholesky_inverse(L)
            if math.isfinite(float(torch.diagonal(Hinv).sum())):
                if raises:
                    log.warning("%s: Cholesky needed damp_frac %.3g (raised %d times from %.3g)",
                                where, frac, raises, damp_frac)
                return DampedInverse(damped, Hinv, frac * mean_diag, frac, raises, dead)
        frac = frac * factor if frac > 0 else 1e-6
    raise NumericalError(
        f"Hessian is not positive definite even with damp_frac = {frac / factor:.3g}",
        where=where, hint="use more calibration samples or a larger damp_frac")


# --------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class HessianSize:
    """The sizes of one layer's Hessian sums, from shapes alone (for memory estimates).

    Attributes:
        name: the synapse layer.
        n_in, n_out: inputs per row (``C_in/groups x kH x kW`` for a convolution) and rows.
        kernels: temporal kernel groups (rows sharing decays share one Hessian).
        hessians: kernel groups x convolution groups: the Hessians summed.
        weights: the layer's weights.
        input_values: the layer's input values per sample and step.
        channels_last: a Conv2d without groups, whose sums are kept channels-last.
    """

    name: str
    n_in: int
    n_out: int
    kernels: int
    hessians: int
    weights: int
    input_values: int
    channels_last: bool = False

    def values(self, block: int | None = None) -> int:
        """Values of the sums: ``hessians * n_in**2``, or of the diagonal blocks of ``block``
        inputs (the last block padded to full size, as the accumulator holds it)."""
        if block is None:
            return self.hessians * self.n_in**2
        return self.hessians * -(-self.n_in // block) * block**2


def hessian_size(layer: SynapseLayer, neuron: Neuron | None, kernel: str = "smp",
                 max_groups: int = 8) -> HessianSize:
    """The :class:`HessianSize` of ``layer`` under ``kernel``, its rows grouped by the decays
    of ``neuron`` (the neuron per row that calibration filters with:
    :func:`sbc_deploy.ir.transforms.neuron_per_row`)."""
    syn = layer.synapse
    kernels, _ = kernel_for_neuron(neuron, syn.out_channels, kind=kernel, max_groups=max_groups)
    return HessianSize(layer.name, math.prod(int(v) for v in syn.weight.shape[1:]),
                       int(syn.weight.shape[0]), len(kernels), len(kernels) * conv_groups(syn),
                       int(math.prod(syn.weight.shape)),
                       math.prod(int(v) for v in syn.input_shape),
                       isinstance(syn, Conv2d) and conv_groups(syn) == 1)


def sums_bytes(sizes: Sequence[HessianSize], blocks: Mapping[str, int]) -> int:
    """Bytes of every layer's float64 totals (``blocks``: layer -> its diagonal block size)."""
    return sum(s.values(blocks.get(s.name)) for s in sizes) * 8


def accumulation_bytes(size: HessianSize, batch: int, steps: int, block: int | None) -> int:
    """Bytes of summing one time chunk (``steps``) of a ``batch`` into one layer's sums: its
    input in float64, the filtered copy, its channels-last copy and the carried frames (4 x 8
    bytes per input value), the carried frames of every kernel and the unfolded rows
    (``(kernels + 3) * CHUNK_ELEMENTS * 8``) and one GEMM's result."""
    return (32 * batch * steps * size.input_values + (size.kernels + 3) * CHUNK_ELEMENTS * 8
            + size.values(block) // size.kernels * 8)


def final_copy_bytes(size: HessianSize, block: int | None) -> float:
    """Bytes of handing one layer's totals over at the end: its frozen copy, and for
    channels-last sums the permuted clone and the two index_select temporaries of one
    kernel's slice."""
    permuted = (1 + 2 / size.kernels) if size.channels_last and block is None else 0
    return size.values(block) * 8 * (1 + permuted)
