"""Class-balanced calibration subsets: ``K`` samples per class, fractions of a sample allowed.

``K`` samples per class, for labelled data with ``C`` classes (the labels present in ``y``),
``K = q + f`` with ``q`` a whole number and ``0 <= f < 1``:

- every class gives ``q`` samples;
- ``round(f * C)`` of the classes (rounded half up), chosen at random, give one sample more.

So ``K = 1`` is one sample of each class, ``K = 0.1`` with ten classes is one sample of one
class (10 % of the classes get one sample), ``K = 2.5`` is two of each class and a third of
half of them. The draw takes ``q * C + round(f * C)`` samples; a ``K`` that gives none (below
``0.5 / C``) is refused.

Draws are seeded and **nested**: for one seed, the draw of a smaller ``K`` is part of the draw
of a larger ``K`` (one random order of each class's samples and one random order of the classes;
the draw of ``K`` takes the first ``q`` samples of every class and the ``q+1``-th of the first
``round(f * C)`` classes in that order). Hessian sums add up, so a study of several sizes
calibrates each sample once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from sbc_deploy.data.dataset import Dataset
from sbc_deploy.errors import DataError


def _check_per_class(per_class: float, where: str) -> float:
    if isinstance(per_class, bool) or not isinstance(per_class, (int, float, np.integer,
                                                                 np.floating)):
        raise DataError(f"samples per class must be a number, got {per_class!r}", where=where)
    value = float(per_class)
    if not math.isfinite(value) or value <= 0:
        raise DataError(f"samples per class must be a positive number, got {per_class!r}",
                        where=where)
    return value


def draw_counts(per_class: float, n_classes: int) -> tuple[int, int]:
    """``(q, extra)``: every class gives ``q`` samples and ``extra`` classes one more."""
    value = _check_per_class(per_class, "samples per class")
    whole = math.floor(value)
    extra = math.floor((value - whole) * n_classes + 0.5)   # round half up
    if extra == n_classes:                                  # e.g. K = 1.96 with 10 classes
        whole, extra = whole + 1, 0
    return whole, extra


def balanced_draws(labels: np.ndarray, sizes: Iterable[float], seed: int = 0,
                   where: str = "calibration data") -> dict[float, np.ndarray]:
    """Nested class-balanced draws: ``{K: sorted sample indices}`` for every ``K`` in ``sizes``.

    Args:
        labels: ``[N]`` integer class labels.
        sizes: samples per class (see the module docstring; fractions allowed).
        seed: the draw's seed (the same seed gives the same, nested, draws).
        where: the data's name, for error messages.

    Raises:
        DataError: a size that is not positive or gives no sample, or a class with fewer
            samples than a draw needs from it.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise DataError(f"class-balanced draws need [N] labels, got shape {y.shape}", where=where)
    sizes = sorted({_check_per_class(k, where) for k in sizes})
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    class_order = rng.permutation(len(classes))
    draws: dict[float, np.ndarray] = {}
    for k in sizes:
        whole, extra = draw_counts(k, len(classes))
        if whole == 0 and extra == 0:
            raise DataError(f"{k:g} samples per class over {len(classes)} classes rounds to no "
                            f"sample; the smallest is {0.5 / len(classes):g} (one sample)",
                            where=where)
        takes = np.full(len(classes), whole)
        takes[class_order[:extra]] += 1
        for c, order, take in zip(classes, orders, takes):
            if take > order.size:
                raise DataError(f"class {int(c)} has {order.size} samples; {k:g} per class "
                                f"needs {int(take)}", where=where)
        draws[k] = np.sort(np.concatenate([order[:take] for order, take in zip(orders, takes)]))
    return draws


def balanced_indices(labels: np.ndarray, per_class: float, seed: int = 0,
                     where: str = "calibration data") -> np.ndarray:
    """Sorted indices of one class-balanced draw of ``per_class`` samples per class."""
    value = _check_per_class(per_class, where)
    return balanced_draws(labels, [value], seed, where)[value]


def balanced_subset(dataset: Dataset, per_class: float, seed: int = 0) -> Dataset:
    """The samples of one class-balanced draw from a labelled dataset (in their order).

    Raises:
        DataError: unlabelled data, or a draw the data cannot give (see :func:`balanced_draws`).
    """
    if dataset.y is None:
        raise DataError("has no labels; samples per class needs labelled data (an npz with 'y', "
                        "a dataset folder)", where=dataset.source)
    return dataset.subset(balanced_indices(dataset.y, per_class, seed, where=dataset.source))
