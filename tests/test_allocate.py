"""Per-layer allocation: exact totals, bounds, LAMP by its definition, global by brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbc_deploy.compress.allocate import (
    LayerBounds,
    allocate_global,
    allocate_lamp,
    allocate_uniform,
    curve_counts,
    lamp_scores,
)
from sbc_deploy.compress.config import Budget
from sbc_deploy.errors import ConfigError


def _layers(rng, shapes, minimum=None):
    layers = []
    for i, shape in enumerate(shapes):
        W = torch.as_tensor(rng.normal(size=shape) * (i + 1))
        low = 0 if minimum is None else minimum[i]
        layers.append(LayerBounds(f"l{i}", W, low, int(0.99 * W.numel())))
    return layers


def test_uniform_counts(rng):
    layers = _layers(rng, [(8, 16), (4, 8)], minimum=[0, 20])
    assert allocate_uniform(layers, 0.5) == {"l0": 64, "l1": 20}


def test_lamp_scores_by_definition(rng):
    W = torch.as_tensor(rng.normal(size=(3, 5)))
    flat = np.sort(np.abs(W.numpy().reshape(-1)))
    expected = [flat[u] ** 2 / np.sum(flat[u:] ** 2) for u in range(len(flat))]
    assert lamp_scores(W).tolist() == pytest.approx(expected, rel=1e-12)
    assert float(lamp_scores(W)[-1]) == pytest.approx(1.0)  # the largest weight never goes


def test_lamp_prunes_globally_smallest_scores(rng):
    layers = _layers(rng, [(10, 30), (6, 10), (3, 6)])
    total = 200
    counts = allocate_lamp(layers, total)
    assert sum(counts.values()) == total
    # independent: pool every weight's score with its layer, take the 200 smallest
    pool = sorted((float(s), layer.name) for layer in layers for s in lamp_scores(layer.W))
    expected = {layer.name: 0 for layer in layers}
    for _, name in pool[:total]:
        expected[name] += 1
    assert counts == expected


def test_lamp_respects_bounds(rng):
    layers = _layers(rng, [(10, 30), (6, 10)], minimum=[0, 50])
    counts = allocate_lamp(layers, 120)
    assert sum(counts.values()) == 120 and counts["l1"] >= 50
    assert all(c <= layer.maximum for c, layer in zip(counts.values(), layers))
    with pytest.raises(ConfigError, match="at most"):
        allocate_lamp(layers, 359)


def test_global_matches_brute_force_on_convex_curves(rng):
    """Loss curves a * c^2 (convex): the allocation minimises the summed relative loss."""
    layers = _layers(rng, [(5, 20), (5, 8), (2, 10)])
    slopes = {"l0": 1.0, "l1": 7.0, "l2": 3.0}
    energy = {"l0": 2.0, "l1": 1.0, "l2": 0.5}

    def curve(name, counts):
        return [slopes[name] * c**2 for c in counts]

    total = 90
    counts = allocate_global(layers, total, curve, energy)
    assert sum(counts.values()) == total

    def objective(split):
        return sum(slopes[n] * c**2 / energy[n] for n, c in split.items())

    # brute force over all splits (the allocator interpolates between measured counts, so allow
    # the interpolation error of the piecewise-linear hull)
    best = min(objective({"l0": a, "l1": b, "l2": total - a - b})
               for a in range(layers[0].maximum + 1)
               for b in range(layers[1].maximum + 1)
               if 0 <= total - a - b <= layers[2].maximum)
    assert objective(counts) <= best * 1.05


def test_global_prefers_the_cheap_layer(rng):
    layers = _layers(rng, [(10, 10), (10, 10)])

    def curve(name, counts):  # l0 loses little per weight, l1 a lot
        return [(0.001 if name == "l0" else 1.0) * c for c in counts]

    counts = allocate_global(layers, 100, curve, {"l0": 1.0, "l1": 1.0})
    assert counts == {"l0": 99, "l1": 1}  # l0 up to its 99 % maximum, then l1
    assert 0 in curve_counts(layers[0]) and 99 in curve_counts(layers[0])


def test_budget_turns_memory_into_synapses():
    assert Budget(synapses=1000).max_synapses(bits=8) == 1000
    assert Budget(bytes=1000).max_synapses(bits=8) == 1000
    assert Budget(bytes=1000).max_synapses(bits=4) == 2000
    assert Budget(bytes=1000, bits_per_synapse=20).max_synapses(bits=8) == 400
    assert Budget(bytes=1000).max_synapses(bits=None) == 250  # float32
    with pytest.raises(ConfigError, match="exactly one"):
        Budget(synapses=1, bytes=1)
