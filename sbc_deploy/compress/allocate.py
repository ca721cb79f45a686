r"""Per-layer sparsity allocation: how many weights each layer prunes for an overall target.

Stage contract: the layers' weights (and, for ``"global"``, a loss curve per layer) and an
overall target -> an exact prune count per layer, each within the layer's bounds (the N:M /
fan-in minimum and ``max_sparsity``), summing exactly to the target count.

- ``"uniform"``: every layer prunes ``round(sparsity * numel)`` (at least its minimum).
- ``"lamp"``: Layer-Adaptive Magnitude Pruning (Lee et al. 2021), SBC's choice for every method:
  within a layer, sort ``|w|`` ascending; the score of weight ``u`` is
  ``|w_u|^p / sum_{v >= u} |w_v|^p``; prune the globally smallest scores (a prefix of every
  layer, since the score grows with ``|w|``).
- ``"global"``: least total *relative* OBS loss. Each layer's loss after pruning ``c`` weights,
  ``f_l(c) = L_l(c) / tr(W H W^T)`` (the membrane-potential error energy relative to the dense
  layer's, scale-free across layers and neuron types), is measured by the pruning solver at a
  few counts, interpolated linearly and replaced by its lower convex hull; the counts are then
  spent on the cheapest hull segments first (exact for the convex curves, the Lagrangian
  allocation of OBC's SPDY without the search).
- :class:`~sbc_deploy.compress.config.Budget`: the target count is what a memory budget
  (synapses or bytes) leaves, then split by the budget's allocation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor

from sbc_deploy.errors import ConfigError

log = logging.getLogger(__name__)

CURVE_SPARSITIES: tuple[float, ...] = (0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)

LossCurve = Callable[[str, Sequence[int]], Sequence[float]]

__all__ = [
    "CURVE_SPARSITIES", "LayerBounds", "allocate_global", "allocate_lamp", "allocate_uniform",
    "curve_counts", "lamp_scores",
]


@dataclass(frozen=True, eq=False)
class LayerBounds:
    """One layer as the allocator sees it.

    Attributes:
        name: synapse node name.
        W: ``(n_out, n_in)`` weights.
        minimum: fewest weights the layer must prune (N:M, fan-in cap).
        maximum: most weights it may prune.
    """

    name: str
    W: Tensor
    minimum: int
    maximum: int

    def __post_init__(self) -> None:
        if not 0 <= self.minimum <= self.maximum <= self.W.numel():
            raise ConfigError(f"bounds {self.minimum}..{self.maximum} do not fit "
                              f"{self.W.numel()} weights", where=f"layer {self.name}")

    @property
    def numel(self) -> int:
        return int(self.W.numel())


def _check_total(layers: Sequence[LayerBounds], total: int) -> int:
    low = sum(layer.minimum for layer in layers)
    high = sum(layer.maximum for layer in layers)
    if total > high:
        raise ConfigError(f"cannot prune {total} weights: the layers allow at most {high} "
                          "(raise max_sparsity or lower the target)", where="allocation")
    return max(total, low)


def allocate_uniform(layers: Sequence[LayerBounds], sparsity: float) -> dict[str, int]:
    """Every layer prunes ``round(sparsity * numel)``, raised to its minimum."""
    return {layer.name: max(layer.minimum, round(sparsity * layer.numel)) for layer in layers}


def lamp_scores(W: Tensor, power: int = 2) -> Tensor:
    """LAMP scores of ``W`` in ascending order of ``|w|``: ``|w_u|^p / sum_{v >= u} |w_v|^p``."""
    values = torch.sort(W.detach().abs().reshape(-1).to(torch.float64)).values ** power
    tail = torch.flip(torch.cumsum(torch.flip(values, [0]), 0), [0])
    return values / tail.clamp_min(torch.finfo(torch.float64).tiny)


def _spend(layers: Sequence[LayerBounds], total: int,
           costs: Mapping[str, Tensor]) -> dict[str, int]:
    """Prune ``total`` weights, each layer a prefix of ``costs`` (ascending per layer)."""
    total = _check_total(layers, total)
    counts = {layer.name: layer.minimum for layer in layers}
    extra = total - sum(counts.values())
    if extra <= 0:
        return counts
    pool, owner = [], []
    for i, layer in enumerate(layers):
        free = costs[layer.name][layer.minimum:layer.maximum]
        pool.append(free)
        owner.append(torch.full((len(free),), i, dtype=torch.long))
    chosen = torch.topk(torch.cat(pool), extra, largest=False).indices
    taken = torch.bincount(torch.cat(owner)[chosen], minlength=len(layers))
    for i, layer in enumerate(layers):
        counts[layer.name] += int(taken[i])
    return counts


def allocate_lamp(layers: Sequence[LayerBounds], total: int, power: int = 2) -> dict[str, int]:
    """LAMP: prune the ``total`` globally smallest LAMP scores (each layer within bounds).

    Scores are non-decreasing within a layer, so every layer prunes a prefix of its sorted
    weights and the per-layer counts are all that matters.
    """
    return _spend(layers, total, {layer.name: lamp_scores(layer.W, power) for layer in layers})


def curve_counts(layer: LayerBounds, sparsities: Sequence[float] = CURVE_SPARSITIES) -> list[int]:
    """The prune counts at which a layer's loss curve is measured (bounds included)."""
    counts = {layer.minimum, layer.maximum}
    counts.update(min(layer.maximum, max(layer.minimum, round(s * layer.numel)))
                  for s in sparsities)
    return sorted(counts)


def _lower_hull(x: Sequence[int], y: Sequence[float]) -> list[tuple[int, float]]:
    hull: list[tuple[int, float]] = []
    for point in zip(x, y):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            # drop the middle point when it lies on or above the chord
            if (y2 - y1) * (point[0] - x1) >= (point[1] - y1) * (x2 - x1):
                hull.pop()
            else:
                break
        hull.append(point)
    return hull


def allocate_global(layers: Sequence[LayerBounds], total: int, loss_curve: LossCurve,
                    energy: Mapping[str, float]) -> dict[str, int]:
    """Least total relative OBS loss (module docstring).

    Args:
        layers: the layers and their bounds.
        total: weights to prune over all layers.
        loss_curve: ``loss_curve(name, counts) -> losses`` (the layer loss after pruning each
            count, by the pass's own solver).
        energy: ``tr(W H W^T)`` of every dense layer (the normaliser).
    """
    total = _check_total(layers, total)
    costs: dict[str, Tensor] = {}
    for layer in layers:
        counts = curve_counts(layer)
        losses = [float(v) for v in loss_curve(layer.name, counts)]
        scale = energy.get(layer.name, 0.0)
        scale = scale if scale > 0 and math.isfinite(scale) else 1.0
        hull = _lower_hull(counts, [v / scale for v in losses])
        # marginal cost of each weight beyond the minimum: the slope of its hull segment
        per_weight = torch.empty(layer.numel, dtype=torch.float64)
        per_weight[:layer.minimum] = -math.inf
        for (x1, y1), (x2, y2) in pairwise(hull):
            per_weight[x1:x2] = (y2 - y1) / max(x2 - x1, 1)
        per_weight[layer.maximum:] = math.inf
        # equal slopes: keep each layer's order (prefix) by a tiny increasing tie-break
        ramp = torch.arange(layer.numel, dtype=torch.float64) * 1e-15
        costs[layer.name] = per_weight + ramp
        log.debug("layer %s: relative loss hull %s", layer.name, hull)
    return _spend(layers, total, costs)
