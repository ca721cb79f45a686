"""Masks: exact counts, N:M and fan-in caps hold exactly; the kept set is the best allowed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sbc_deploy.compress.masks import (
    magnitude_mask,
    max_kept_per_row,
    min_prune_count,
    prune_count,
    select_mask,
)
from sbc_deploy.errors import ConfigError


def test_prune_count_is_exact_not_k_plus_one():
    # SBC's reference code prunes w <= sort(w)[k]: k + 1 weights. Ours prunes exactly k.
    assert prune_count(1024, 0.5) == 512
    assert prune_count(100, 0.29) == 29  # int(0.29 * 100) would give 28
    assert prune_count(10, 0.0) == 0 and prune_count(10, 1.0) == 10
    W = torch.arange(1024, dtype=torch.float64).reshape(32, 32) - 500.0
    assert int(magnitude_mask(W, prune_count(W.numel(), 0.5)).sum()) == 512


def test_prune_count_rejects_bad_sparsity():
    with pytest.raises(ConfigError, match="sparsity"):
        prune_count(10, 1.5)


def test_magnitude_mask_prunes_the_smallest():
    W = torch.tensor([[0.9, -0.1, 0.4, 0.05], [-0.3, 0.2, -0.8, 0.01]], dtype=torch.float64)
    mask = magnitude_mask(W, 4)
    assert mask.tolist() == [[False, True, False, True], [False, True, False, True]]


def test_n_m_keeps_n_of_every_m():
    W = torch.tensor([[4.0, 3.0, 2.0, 1.0, 1.0, 2.0, 3.0, 4.0, 9.0, 0.5]])
    mask = magnitude_mask(W, min_prune_count(1, 10, (2, 4), None), n_m=(2, 4))
    # groups [4 3 2 1] [1 2 3 4] and the short group [9 0.5] (keeps at most 2: both)
    assert (~mask).tolist() == [[True, True, False, False, False, False, True, True, True, True]]


def test_infeasible_count_raises():
    scores = torch.rand(3, 8, dtype=torch.float64)
    with pytest.raises(ConfigError, match="force at least"):
        select_mask(scores, 2, fan_in=4)  # the cap forces 3 * 4 = 12 prunes


@settings(max_examples=60, deadline=None)
@given(n_out=st.integers(1, 6), n_in=st.integers(1, 13), m=st.integers(1, 5),
       n_frac=st.floats(0, 1), use_nm=st.booleans(), cap=st.one_of(st.none(), st.integers(0, 13)),
       extra=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_constraints_hold_exactly(n_out, n_in, m, n_frac, use_nm, cap, extra, seed):
    n_m = (round(n_frac * m), m) if use_nm else None
    minimum = min_prune_count(n_out, n_in, n_m, cap)
    n_prune = minimum + round(extra * (n_out * n_in - minimum))
    scores = torch.as_tensor(np.random.default_rng(seed).normal(size=(n_out, n_in)))
    mask = select_mask(scores, n_prune, n_m=n_m, fan_in=cap)
    assert int(mask.sum()) == n_prune
    kept = ~mask
    if cap is not None:
        assert int(kept.sum(dim=1).max()) <= cap
    if n_m is not None:
        n, m = n_m
        for start in range(0, n_in, m):
            assert int(kept[:, start:start + m].sum(dim=1).max()) <= n
    assert int(kept.sum(dim=1).max()) <= max_kept_per_row(n_in, n_m, cap)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), cap=st.integers(1, 3), nm=st.booleans(), keep=st.integers(0, 6))
def test_kept_set_is_the_best_allowed(seed, cap, nm, keep):
    """Brute force over every mask of a 2 x 4 layer: select_mask keeps the best score sum."""
    n_m = (1, 2) if nm else None
    scores = torch.as_tensor(np.random.default_rng(seed).random((2, 4)))
    minimum = min_prune_count(2, 4, n_m, cap)
    n_prune = max(minimum, 8 - keep)
    best = -np.inf
    for kept_flat in itertools.combinations(range(8), 8 - n_prune):
        kept = np.zeros((2, 4), dtype=bool)
        kept.flat[list(kept_flat)] = True
        if kept.sum(axis=1).max() > cap:
            continue
        if n_m and any(kept[:, g:g + 2].sum(axis=1).max() > 1 for g in (0, 2)):
            continue
        best = max(best, float(scores.numpy()[kept].sum()))
    mask = select_mask(scores, n_prune, n_m=n_m, fan_in=cap)
    assert float(scores[~mask].sum()) == pytest.approx(best, abs=1e-12)
