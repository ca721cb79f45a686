"""Class-balanced calibration draws (``--calib-per-class K``), fractions of a sample included."""

from __future__ import annotations

import numpy as np
import pytest

from sbc_deploy.data import Dataset
from sbc_deploy.data.sampling import (
    balanced_draws,
    balanced_indices,
    balanced_subset,
    draw_counts,
)
from sbc_deploy.errors import DataError


def labels(per_class: int = 30, classes: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(classes), per_class))


def per_class_counts(y: np.ndarray, index: np.ndarray, classes: int = 10) -> np.ndarray:
    return np.bincount(y[index], minlength=classes)


@pytest.mark.parametrize(("k", "expected"), [
    (1, (1, 0)), (0.1, (0, 1)), (0.5, (0, 5)), (2.5, (2, 5)), (0.05, (0, 1)),  # 0.5 rounds up
    (0.04, (0, 0)), (1.96, (2, 0)), (16, (16, 0)), (0.25, (0, 3))])              # 2.5 -> 3
def test_counts_follow_the_definition(k, expected) -> None:
    assert draw_counts(k, 10) == expected


def test_one_per_class_is_one_of_each_class() -> None:
    y = labels()
    index = balanced_indices(y, 1, seed=3)
    np.testing.assert_array_equal(per_class_counts(y, index), np.ones(10))
    assert np.all(np.diff(index) > 0)                      # sorted, no repeats


def test_fractions_give_one_sample_to_that_share_of_the_classes() -> None:
    y = labels()
    for k, total in ((0.1, 1), (0.2, 2), (0.5, 5), (2.5, 25), (16, 160)):
        counts = per_class_counts(y, balanced_indices(y, k, seed=1))
        assert counts.sum() == total
        assert counts.max() - counts.min() <= 1             # balanced: never two apart
        assert set(np.unique(counts).tolist()) <= {int(k), int(k) + 1}


def test_draws_are_nested_seeded_and_differ_between_seeds() -> None:
    y = labels()
    sizes = (0.1, 0.2, 0.5, 1, 2, 4, 8, 16)
    draws = balanced_draws(y, sizes, seed=0)
    for small, large in zip(sizes, sizes[1:]):
        assert set(draws[small]) <= set(draws[large]), (small, large)
    again = balanced_draws(y, sizes, seed=0)
    assert all(np.array_equal(draws[k], again[k]) for k in sizes)
    # a single draw is the same as that size's member of the nested family
    np.testing.assert_array_equal(balanced_indices(y, 2, seed=0), draws[2])
    other = balanced_draws(y, sizes, seed=1)
    assert not np.array_equal(draws[1], other[1])
    # across seeds the one-sample draw lands on every class (the class order is random)
    firsts = {int(y[balanced_indices(y, 0.1, seed=s)][0]) for s in range(60)}
    assert firsts == set(range(10))


def test_refusals_name_the_problem() -> None:
    y = labels(per_class=3)
    with pytest.raises(DataError, match="class 0 has 3 samples; 4 per class needs 4"):
        balanced_indices(y, 4)
    with pytest.raises(DataError, match="rounds to no sample; the smallest is 0.05"):
        balanced_indices(y, 0.01)
    for bad in (0, -1, float("nan"), True, "1"):
        with pytest.raises(DataError, match="samples per class must be"):
            balanced_indices(y, bad)


def test_subset_of_a_dataset_keeps_inputs_and_labels_together() -> None:
    y = labels(per_class=4, classes=3)
    x = np.arange(y.size, dtype=np.float32).reshape(-1, 1, 1) * np.ones((1, 2, 3))
    data = Dataset(x=x, y=y, dt=1e-3, source="toy.npz")
    subset = balanced_subset(data, 2, seed=5)
    assert len(subset) == 6
    np.testing.assert_array_equal(per_class_counts(subset.y, np.arange(6), 3), [2, 2, 2])
    np.testing.assert_array_equal(y[subset.x[:, 0, 0].astype(int)], subset.y)
    with pytest.raises(DataError, match="has no labels"):
        balanced_subset(Dataset(x=x, y=None, dt=1e-3, source="toy.npz"), 1)
