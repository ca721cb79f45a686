"""Pruning masks with exact counts: unstructured, N:M, and a per-neuron fan-in cap.

Stage contract: importance scores ``(n_out, n_in)`` and a count -> a bool mask (True = pruned).

Rules (each holds exactly; tests check them as properties):

- unstructured: exactly ``n_prune`` weights of the layer are pruned. ``prune_count`` turns a
  sparsity into that number with ``round(sparsity * numel)``: at 50 % of 1024 weights exactly 512
  go. (SBC's reference code prunes ``w <= sort(w)[k]``, i.e. k + 1 weights, more with ties.)
- N:M (``n_m = (n, m)``): at most ``n`` of every ``m`` consecutive inputs of a row are kept (2:4
  keeps 2 of 4). Groups run along the flattened input axis (PyTorch order ``C_in x kH x kW`` for
  convolutions); a last, shorter group keeps at most ``n`` as well.
- fan-in cap (``fan_in = K``): every output row keeps at most ``K`` inputs.

The constraints combine with a sparsity target: the layer prunes ``max(n_prune, minimum)``
weights, where the minimum is what N:M and the cap force. Among the masks that satisfy all of
them, :func:`select_mask` keeps the highest-scoring weights: the constraints are nested
(groups inside rows inside the layer), so keeping greedily in score order is optimal, and is
done as three top-k filters (group, row, layer).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from sbc_deploy.errors import ConfigError, ShapeError

__all__ = [
    "check_structure", "magnitude_mask", "max_kept_per_row", "min_prune_count", "prune_count",
    "select_mask",
]


def prune_count(numel: int, sparsity: float, where: str = "sparsity") -> int:
    """Number of weights a sparsity removes: ``round(sparsity * numel)``."""
    if not 0.0 <= sparsity <= 1.0 or math.isnan(sparsity):
        raise ConfigError(f"must lie in [0, 1], got {sparsity}", where=where)
    return min(numel, max(0, round(sparsity * numel)))


def check_structure(n_in: int, n_m: tuple[int, int] | None, fan_in: int | None,
                    where: str = "mask") -> None:
    """Validate N:M and fan-in settings for rows of ``n_in`` inputs."""
    if n_m is not None:
        n, m = n_m
        if not (isinstance(n, int) and isinstance(m, int)) or m < 1 or not 0 <= n <= m:
            raise ConfigError(f"n:m needs integers 0 <= n <= m, m >= 1; got {n_m}",
                              where=f"{where}.n_m")
    if fan_in is not None and (not isinstance(fan_in, int) or fan_in < 0):
        raise ConfigError(f"fan-in cap must be an integer >= 0, got {fan_in!r}",
                          where=f"{where}.fan_in")
    if n_in < 1:
        raise ShapeError(f"rows must have at least one input, got {n_in}", where=where)


def max_kept_per_row(n_in: int, n_m: tuple[int, int] | None, fan_in: int | None) -> int:
    """The most weights one row may keep under N:M and the fan-in cap."""
    kept = n_in
    if n_m is not None:
        n, m = n_m
        full, rest = divmod(n_in, m)
        kept = full * n + min(n, rest)
    if fan_in is not None:
        kept = min(kept, fan_in)
    return kept


def min_prune_count(n_out: int, n_in: int, n_m: tuple[int, int] | None,
                    fan_in: int | None) -> int:
    """The fewest weights a layer must prune to satisfy N:M and the fan-in cap."""
    return n_out * (n_in - max_kept_per_row(n_in, n_m, fan_in))


def select_mask(scores: Tensor, n_prune: int, *, n_m: tuple[int, int] | None = None,
                fan_in: int | None = None) -> Tensor:
    """Prune exactly ``n_prune`` weights, keeping the highest ``scores`` that the rules allow.

    Args:
        scores: ``(n_out, n_in)`` importance, higher = keep (NaN counts as lowest).
        n_prune: weights to prune; at least :func:`min_prune_count`.
        n_m: keep at most ``n`` of every ``m`` consecutive inputs of a row.
        fan_in: keep at most this many inputs per row.

    Returns:
        ``(n_out, n_in)`` bool, True = pruned; ``mask.sum() == n_prune``.

    Raises:
        ConfigError: ``n_prune`` is outside ``[min_prune_count, numel]``.
    """
    if scores.ndim != 2:
        raise ShapeError(f"scores must be 2-D (n_out, n_in), got shape {tuple(scores.shape)}")
    n_out, n_in = scores.shape
    check_structure(n_in, n_m, fan_in)
    minimum = min_prune_count(n_out, n_in, n_m, fan_in)
    if not minimum <= n_prune <= n_out * n_in:
        raise ConfigError(f"cannot prune {n_prune} of {n_out * n_in} weights: N:M {n_m} and "
                          f"fan-in cap {fan_in} force at least {minimum}", where="n_prune")
    if not scores.is_floating_point():
        scores = scores.to(torch.float64)
    low = torch.finfo(scores.dtype).min
    scores = torch.nan_to_num(scores, nan=low / 2, neginf=low / 2)
    keep_count = n_out * n_in - n_prune
    if (n_m is None or n_m[0] >= n_m[1]) and (fan_in is None or fan_in >= n_in):
        return ~_largest(scores.reshape(-1), keep_count).reshape(n_out, n_in)  # no rules
    eligible = torch.ones_like(scores, dtype=torch.bool)
    if n_m is not None and n_m[0] < n_m[1]:
        n, m = n_m
        pad = (-n_in) % m
        padded = torch.cat([scores, scores.new_full((n_out, pad), low)], dim=1)
        grouped = padded.reshape(n_out, -1, m)
        top = torch.zeros_like(grouped, dtype=torch.bool)
        if n > 0:
            top.scatter_(2, torch.topk(grouped, n, dim=2).indices, True)
        eligible &= top.reshape(n_out, -1)[:, :n_in]
    if fan_in is not None and fan_in < n_in:
        ranked = scores.masked_fill(~eligible, low)
        top = torch.zeros_like(eligible)
        if fan_in > 0:
            top.scatter_(1, torch.topk(ranked, fan_in, dim=1).indices, True)
        eligible &= top
    ranked = scores if bool(eligible.all()) else scores.masked_fill(~eligible, low)
    return ~_largest(ranked.reshape(-1), keep_count).reshape(n_out, n_in)


def _largest(values: Tensor, count: int) -> Tensor:
    """Bool mask of exactly ``count`` largest ``values`` (ties: lowest index first).

    Selection, not a sort: on the CPU ``numpy.partition`` (introselect; about 8x faster than
    ``torch.kthvalue`` or ``torch.topk`` on a 256 x 256 layer, which matters inside the ADMM
    loop of :func:`~sbc_deploy.compress.obs.admm_prune`), elsewhere ``torch.kthvalue``.
    """
    if count <= 0:
        return torch.zeros(values.numel(), dtype=torch.bool, device=values.device)
    if count >= values.numel():
        return torch.ones(values.numel(), dtype=torch.bool, device=values.device)
    kth = values.numel() - count  # ascending position of the smallest kept value
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        v = values.detach().reshape(-1).numpy()
        threshold = np.partition(v, kth)[kth]
        keep = v > threshold
        missing = count - int(np.count_nonzero(keep))
        if missing > 0:  # ties at the threshold: lowest index first
            keep[np.flatnonzero(v == threshold)[:missing]] = True
        return torch.from_numpy(keep)
    threshold = torch.kthvalue(values.cpu() if values.is_cuda else values,
                               kth + 1).values.to(values.device)
    keep = values > threshold
    missing = count - int(keep.sum())
    if missing > 0:
        keep[torch.nonzero(values == threshold).reshape(-1)[:missing]] = True
    return keep


def magnitude_mask(W: Tensor, n_prune: int, *, n_m: tuple[int, int] | None = None,
                   fan_in: int | None = None) -> Tensor:
    """Magnitude pruning: prune the ``n_prune`` smallest ``|W|`` the rules allow (True = pruned)."""
    return select_mask(W.abs(), n_prune, n_m=n_m, fan_in=fan_in)
