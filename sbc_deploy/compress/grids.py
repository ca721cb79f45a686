r"""Weight grids: where quantised weights may lie, with their integer mantissas and scales.

Stage contract: a layer's weights ``W (n_out, n_in)`` -> a fitted :class:`GridFit` that rounds
columns during an OBS sweep and turns the result into an exact
:class:`~sbc_deploy.ir.encoding.WeightEncoding` (``weight == mantissa * scale``).

Every grid is ``q = clamp(round(w / scale), low, high) * scale`` with one ``scale`` per output
row; the grids differ in how ``scale`` is chosen (fixed before the sweep, as GPTQ's
``find_params``):

``"int"``      symmetric per-channel ``bits``-bit integers (GPTQ / SBC's quantiser with
               ``sym=True``): ``scale = 2 max|w_row| / (2**bits - 1)``, mantissa in
               ``[-2**(bits-1), 2**(bits-1) - 1]``. ``per_channel=False``: one scale per layer.
``"int_exp"``  Loihi: a signed ``bits``-bit mantissa times ``unit * 2**exponent``, one exponent
               per layer within ``exp_range``. ``unit`` is the value of one integer step of the
               downstream neuron's state, chosen by :func:`int_exp_scale` so that the mantissa
               range is used like the ``"int"`` grid's and ``v_threshold / unit`` rounds to an
               integer in ``[1, 2**17 - 1]``, at least ``2**10`` when the thresholds allow it.
``"ternary"``  ``{-a, 0, a}`` per row, ``a`` from the ternary-weight-network rule
               (``delta = 0.7 mean|w|``, ``a = mean(|w| > delta)``); mantissas in ``{-1, 0, 1}``.

The ``"int"`` and ``"int_exp"`` grids start from the range of the weights (``clip="minmax"``,
SBC's and GPTQ's default). ``clip="mse"`` (OBQ's default) shrinks that range by the factor
``p`` in ``1, 0.99, ..., 0.21`` that minimises ``sum |q - w|^2.4`` per scale (per row, or per
layer where the scale is shared): clipping a few large weights buys a finer step for the rest.

Worked example (``"int"``, 4 bits): a row ``[0.75, -0.3, 0.1]`` has ``scale = 1.5 / 15 = 0.1``
and mantissas ``round([7.5, -3, 1]) = [8, -3, 1]``, clamped to ``[7, -3, 1]``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor

from sbc_deploy.errors import ConfigError
from sbc_deploy.ir.encoding import GRIDS, WeightEncoding, mantissa_range

log = logging.getLogger(__name__)

THRESHOLD_MAX = 2**17 - 1   # the integer core's threshold range (Loihi: 17-bit v_threshold)
THRESHOLD_RESOLUTION = 2**10  # the integer threshold we aim for at least

CLIPS = ("minmax", "mse")
CLIP_NORM = 2.4        # error norm of the range search (OBQ / GPTQ's quantiser)
CLIP_SHRINKS = 80      # range factors 1, 0.99, ..., 0.21 (GPTQ's grid 100, maxshrink 0.8)

__all__ = ["CLIPS", "THRESHOLD_MAX", "THRESHOLD_RESOLUTION", "GridFit", "fit_grid",
           "int_exp_scale"]


@dataclass(frozen=True, eq=False)
class GridFit:
    """A layer's fitted grid: ``q = clamp(round(w / scale), low, high) * scale`` per row.

    Attributes:
        grid: ``"int"``, ``"int_exp"`` or ``"ternary"``.
        bits: mantissa width, sign bit included.
        scale: ``(n_out,)`` float64 value of one mantissa step per row.
        low, high: inclusive mantissa range.
        exponent, unit: the ``"int_exp"`` grid's shared exponent and state unit, else ``None``.
    """

    grid: str
    bits: int
    scale: Tensor
    low: int
    high: int
    exponent: int | None = None
    unit: float | None = None

    def quantize(self, w: Tensor, rows: slice | Tensor | None = None) -> Tensor:
        """Round ``w`` (``(n_out,)`` column or ``(n_out, k)`` block) onto the grid."""
        scale = self.scale.to(device=w.device, dtype=w.dtype)
        scale = scale if rows is None else scale[rows]
        if w.ndim == 2:
            scale = scale[:, None]
        return torch.clamp(torch.round(w / scale), self.low, self.high) * scale

    def mantissa(self, Q: Tensor) -> Tensor:
        """Integer mantissas ``round(Q / scale)`` of on-grid weights ``Q`` (``(n_out, n_in)``)."""
        scale = self.scale.to(device=Q.device, dtype=torch.float64)[:, None]
        m = torch.round(Q.to(torch.float64) / scale)
        return torch.clamp(m, self.low, self.high).to(torch.int64)

    def encoding(self, Q: Tensor, shape: tuple[int, ...]) -> WeightEncoding:
        """The exact :class:`WeightEncoding` of on-grid weights ``Q`` in the layer's ``shape``."""
        mantissa = self.mantissa(Q).cpu().numpy().reshape(shape)
        scale = self.scale.cpu().numpy().astype(np.float64)
        bits = 2 if self.grid == "ternary" else self.bits
        return WeightEncoding(mantissa=mantissa, scale=scale, bits=bits, grid=self.grid,  # type: ignore[arg-type]
                              signed=True, exponent=self.exponent, unit=self.unit)


def int_exp_scale(max_abs: float, bits: int, exp_range: tuple[int, int],
                  thresholds: np.ndarray | None) -> tuple[float, int, float]:
    """Scale, exponent and unit of a Loihi ``mantissa * 2**exponent * unit`` grid.

    The ideal scale is the ``"int"`` grid's, ``s = 2 max|W| / (2**bits - 1)``. With
    ``unit = s / 2**e`` the mantissas use their range fully for any ``e``; ``e`` only sets the
    integer threshold ``v_threshold / unit = v_threshold * 2**e / s``. The smallest ``e`` in
    ``exp_range`` whose integer thresholds all reach :data:`THRESHOLD_RESOLUTION` (and stay
    <= :data:`THRESHOLD_MAX`) is taken; failing that, the largest ``e`` that keeps them in range.
    If even the smallest ``e`` overflows the threshold range, ``unit`` is raised to
    ``max v_threshold / THRESHOLD_MAX`` and the scale grows with it (fewer mantissa levels).

    Args:
        max_abs: largest ``|w|`` of the layer.
        bits: mantissa bits (sign included).
        exp_range: inclusive exponent range.
        thresholds: the downstream neuron's ``v_threshold`` values, or ``None`` (readout: the
            exponent closest to 0 is used).

    Returns:
        ``(scale, exponent, unit)`` with ``scale == unit * 2**exponent``.
    """
    e_low, e_high = exp_range
    ideal = 2.0 * max_abs / (2**bits - 1) if max_abs > 0 else 1.0
    exponents = range(e_low, e_high + 1)
    if thresholds is None or not np.any(np.abs(thresholds) > 0):
        e = min(max(0, e_low), e_high)
        return ideal, e, ideal / 2.0**e
    th = np.abs(np.asarray(thresholds, dtype=np.float64))
    th = th[th > 0]
    th_min, th_max = float(th.min()), float(th.max())
    fits = [e for e in exponents if th_max * 2.0**e / ideal <= THRESHOLD_MAX]
    good = [e for e in fits if th_min * 2.0**e / ideal >= THRESHOLD_RESOLUTION]
    if good:
        e = good[0]
    elif fits:
        e = fits[-1]
        log.info("int_exp: thresholds span %.3g..%.3g; integer threshold resolution %.0f < %d",
                 th_min, th_max, th_min * 2.0**e / ideal, THRESHOLD_RESOLUTION)
    else:
        e = e_low
        unit = th_max / THRESHOLD_MAX
        log.info("int_exp: weights are small next to the threshold; unit raised to %.3g", unit)
        return unit * 2.0**e, e, unit
    unit = ideal / 2.0**e
    if good and th_min == th_max:
        # One threshold for the layer: move the unit up (by less than 1 / RESOLUTION) so the
        # threshold is a whole number of units; the mantissas then still fit their range.
        unit = th_max / math.floor(th_max / unit)
    return unit * 2.0**e, e, unit


def _ternary_scale(W: Tensor) -> Tensor:
    absw = W.abs()
    delta = 0.7 * absw.mean(dim=1, keepdim=True)
    above = absw > delta
    count = above.sum(dim=1)
    scale = torch.where(count > 0, (absw * above).sum(dim=1) / count.clamp(min=1),
                        absw.amax(dim=1))
    return scale


def _clip_error(W: Tensor, scale: Tensor, low: int, high: int) -> Tensor:
    """``sum |q - w|^CLIP_NORM`` per row of ``W`` on the grid ``scale`` (``(n_out,)``)."""
    s = scale[:, None]
    return ((torch.clamp(torch.round(W / s), low, high) * s - W).abs() ** CLIP_NORM).sum(dim=1)


def _search_int(W: Tensor, row_max: Tensor, bits: int, low: int, high: int,
                per_channel: bool) -> Tensor:
    """Per-row (or, shared, per-layer) scales of the ``"int"`` grid with the least clip error."""
    full = 2.0 * row_max / (2**bits - 1)
    full = torch.where(full > 0, full, torch.ones_like(full))
    best_scale, best = full, _clip_error(W, full, low, high)
    if not per_channel:
        best = best.sum().expand_as(best)
    for i in range(1, CLIP_SHRINKS):
        scale = (1.0 - i / 100) * full
        err = _clip_error(W, scale, low, high)
        if not per_channel:
            err = err.sum().expand_as(err)
        better = err < best
        best = torch.where(better, err, best)
        best_scale = torch.where(better, scale, best_scale)
    return best_scale


def fit_grid(W: Tensor, *, grid: str = "int", bits: int = 8, per_channel: bool = True,
             exp_range: tuple[int, int] = (-8, 7),
             thresholds: np.ndarray | None = None, clip: str = "minmax") -> GridFit:
    """Fit a grid's scales to the weights ``W (n_out, n_in)`` (before any OBS update).

    Args:
        W: the layer's weights, flattened per output row.
        grid: one of ``"int"``, ``"int_exp"``, ``"ternary"``.
        bits: mantissa bits with the sign (``"ternary"`` ignores it: 2 bits, range -1..1).
        per_channel: ``"int"`` only; False shares one scale across the layer.
        exp_range: ``"int_exp"`` only; inclusive exponent range.
        thresholds: ``"int_exp"`` only; the downstream neuron's thresholds (``None``: readout).
        clip: ``"minmax"`` (the range of the weights) or ``"mse"`` (the range search of the
            module docstring); the ternary grid has its own rule and ignores it.

    Raises:
        ConfigError: unknown grid or clip, bits out of 2..32, or an empty exponent range.
    """
    if grid not in GRIDS:
        raise ConfigError(f"unknown grid {grid!r}; known: {', '.join(GRIDS)}", where="grid")
    if clip not in CLIPS:
        raise ConfigError(f"unknown clip {clip!r}; known: {', '.join(CLIPS)}", where="clip")
    if grid != "ternary" and not 2 <= bits <= 32:
        raise ConfigError(f"bits must lie in 2..32, got {bits}", where="bits")
    W = W.detach().to(torch.float64)
    n_out = W.shape[0]
    row_max = (W.abs().amax(dim=1) if W.numel()
               else torch.zeros(n_out, dtype=torch.float64, device=W.device))
    if grid == "ternary":
        scale = (_ternary_scale(W) if W.numel()
                 else torch.ones(n_out, dtype=torch.float64, device=W.device))
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return GridFit("ternary", 2, scale.cpu(), -1, 1)
    low, high = mantissa_range(bits, signed=True)
    if grid == "int":
        if not per_channel:
            row_max = row_max.max().expand(n_out).clone() if n_out else row_max
        scale = (_search_int(W, row_max, bits, low, high, per_channel)
                 if clip == "mse" and W.numel() else 2.0 * row_max / (2**bits - 1))
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return GridFit("int", bits, scale.cpu(), low, high)
    e_low, e_high = exp_range
    if e_low > e_high:
        raise ConfigError(f"empty exponent range {exp_range}", where="exp_range")
    max_abs = float(row_max.max()) if n_out else 0.0
    value, exponent, unit = int_exp_scale(max_abs, bits, exp_range, thresholds)
    if clip == "mse" and max_abs > 0:
        full = partial(torch.full, (n_out,), dtype=W.dtype, device=W.device)
        best = float(_clip_error(W, full(value), low, high).sum())
        for i in range(1, CLIP_SHRINKS):
            candidate = int_exp_scale(max_abs * (1.0 - i / 100), bits, exp_range, thresholds)
            err = float(_clip_error(W, full(candidate[0]), low, high).sum())
            if err < best:
                best, (value, exponent, unit) = err, candidate
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"int_exp grid got a non-positive scale {value}", where="grid")
    scale = torch.full((n_out,), unit * 2.0**exponent, dtype=torch.float64)
    return GridFit("int_exp", bits, scale, low, high, exponent, float(unit))
