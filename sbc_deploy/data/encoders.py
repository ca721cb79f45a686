r"""Encoders that turn static images into spikes: a DVS-like saccade camera and a rate code.

The DVS encoder imitates how N-MNIST was recorded (Orchard et al. 2015): a digit on a screen,
an ATIS event camera moved through three saccades along a triangle, ~100 ms each, events
from changes of log intensity. For each image it renders the padded 34x34 digit at the
camera's sub-pixel displacement ``d(t)`` (bilinear interpolation) every ``step_us`` and lets
every pixel emit events like a DVS pixel::

    L[t]    = log(background + (1 - background) * I(p - d(t)))    # log intensity seen
    n[t]    = clip(trunc((L[t] - ref[t-1]) / C), -cap, cap)        # events this step (+ ON, - OFF)
    ref[t]  = ref[t-1] + n[t] * C                                  # the pixel's new reference

with a per-pixel contrast threshold ``C`` (mismatch ``contrast_spread``), a random initial
reference within half a threshold of ``L[0]``, at most ``cap`` events per pixel and step
(a refractory limit), time stamps spread uniformly within the step, and a little background
noise. The path returns to its start, so ON and OFF events balance. Defaults are tuned so that
the MNIST digits match the real recordings' statistics (reference/nmnist-statistics.md):
about 4,100 events per digit, half of them ON, ~308 ms, 36/33/32 % of the events in the
three thirds (tests/test_data_encoders.py checks these).

Both encoders are deterministic for a given ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sbc_deploy.data.dataset import Dataset
from sbc_deploy.data.events import EVENT_DTYPE, bin_recordings
from sbc_deploy.data.images import NMNIST_SIDE, pad_to_nmnist
from sbc_deploy.errors import ConfigError, DataError


@dataclass(frozen=True)
class DvsConfig:
    """Parameters of the saccade camera (defaults: tuned to real N-MNIST statistics).

    Attributes:
        contrast: mean log-intensity change per event ``C``.
        contrast_spread: relative standard deviation of ``C`` across pixels.
        background: luminance of a black pixel relative to white (a screen never is black).
        vertices: the triangle's corners, camera displacement in pixels ``(dx, dy)``; the
            path runs vertex 0 -> 1 -> 2 -> 0.
        saccade_ms: ``(low, high)`` range of each saccade's duration (uniform).
        step_us: time step of the pixel simulation in microseconds.
        cap: most events per pixel and step (refractory limit).
        noise_hz: background noise events per pixel per second (random polarity).
    """

    contrast: float = 0.42
    contrast_spread: float = 0.1
    background: float = 0.05
    vertices: tuple[tuple[float, float], ...] = ((0.0, 0.0), (4.0, 1.0), (0.6, 4.0))
    saccade_ms: tuple[float, float] = (99.0, 106.0)
    step_us: int = 500
    cap: int = 1
    noise_hz: float = 0.3

    def __post_init__(self) -> None:
        if not self.contrast > 0 or not 0 <= self.contrast_spread < 0.5:
            raise ConfigError("contrast must be > 0 and contrast_spread in [0, 0.5)",
                              where="DvsConfig")
        if not 0 < self.background < 1:
            raise ConfigError("background must lie in (0, 1)", where="DvsConfig.background")
        if len(self.vertices) != 3:
            raise ConfigError("three vertices (one triangle of saccades) are needed",
                              where="DvsConfig.vertices")
        if not 0 < self.saccade_ms[0] <= self.saccade_ms[1]:
            raise ConfigError("saccade_ms must be (low, high) with 0 < low <= high",
                              where="DvsConfig.saccade_ms")
        if self.step_us < 1 or self.cap < 1 or self.noise_hz < 0:
            raise ConfigError("step_us and cap must be >= 1 and noise_hz >= 0", where="DvsConfig")


def _as_unit_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise DataError(f"expected images [N, H, W], got shape {images.shape}")
    if not np.all(np.isfinite(images)) or images.min() < 0:
        raise DataError("images must be finite and non-negative")
    scale = 255.0 if images.max() > 1.0 else 1.0
    return images.astype(np.float32) / np.float32(scale)


def _shift(images: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Shift by ``(dx, dy)`` pixels (bilinear, zero fill): ``out[y, x] = in[y-dy, x-dx]``."""
    out = np.zeros_like(images)
    x0, y0 = math.floor(dx), math.floor(dy)
    fx, fy = dx - x0, dy - y0
    h, w = images.shape[-2:]
    for oy, wy in ((y0, 1.0 - fy), (y0 + 1, fy)):
        for ox, wx in ((x0, 1.0 - fx), (x0 + 1, fx)):
            weight = np.float32(wy * wx)
            if weight == 0.0 or abs(oy) >= h or abs(ox) >= w:
                continue
            dst_y, src_y = slice(max(oy, 0), h + min(oy, 0)), slice(max(-oy, 0), h - max(oy, 0))
            dst_x, src_x = slice(max(ox, 0), w + min(ox, 0)), slice(max(-ox, 0), w - max(ox, 0))
            out[..., dst_y, dst_x] += weight * images[..., src_y, src_x]
    return out


def _path(config: DvsConfig, phase: np.ndarray) -> np.ndarray:
    """Displacement ``[len(phase), 2]`` at path phase in [0, 3] (one unit per saccade)."""
    corners = np.asarray(config.vertices + config.vertices[:1], dtype=np.float64)
    leg = np.minimum(np.floor(phase).astype(int), 2)
    s = phase - leg
    ease = 0.5 * (1.0 - np.cos(np.pi * s))           # smooth start and stop of each saccade
    return corners[leg] + ease[:, None] * (corners[leg + 1] - corners[leg])


def dvs_encode(images: np.ndarray, *, seed: int = 0,
               config: DvsConfig | None = None) -> list[np.ndarray]:
    """N-MNIST-like event streams of static images.

    Args:
        images: ``[N, 28, 28]`` digits (padded to 34x34 as N-MNIST) or ``[N, 34, 34]``;
            values in [0, 255] (or [0, 1]).
        seed: seed of every random draw (thresholds, durations, time stamps, noise).
        config: camera parameters; ``None`` uses the tuned defaults.

    Returns:
        One event list per image (structured, :data:`EVENT_DTYPE`, sorted by time stamp,
        time in microseconds, 34x34 addresses).
    """
    config = config or DvsConfig()
    unit = _as_unit_images(images)
    if unit.shape[-2:] == (28, 28):
        unit = pad_to_nmnist(unit)
    if unit.shape[-2:] != (NMNIST_SIDE, NMNIST_SIDE):
        raise DataError(f"expected 28x28 or 34x34 images, got {unit.shape[-2:]}")
    n = unit.shape[0]
    rng = np.random.default_rng(seed)
    bg = np.float32(config.background)
    mismatch = np.clip(1.0 + config.contrast_spread * rng.standard_normal(unit.shape), 0.5, 1.5)
    threshold = (config.contrast * mismatch).astype(np.float32)
    durations_us = rng.uniform(*config.saccade_ms, size=(n, 3)) * 1e3
    steps_per_saccade = max(1, round(float(np.mean(config.saccade_ms)) * 1e3 / config.step_us))
    phase = np.arange(1, 3 * steps_per_saccade + 1) / steps_per_saccade
    displacement = _path(config, phase)
    level = np.log(bg + (1.0 - bg) * _shift(unit, *_path(config, np.zeros(1))[0]))
    ref = level + (rng.uniform(size=unit.shape).astype(np.float32) - 0.5) * threshold
    # time (us) at the end of each step: per sample, each saccade scaled to its own duration
    leg = np.minimum(((phase - 1e-12) // 1).astype(int), 2)
    start = np.concatenate([np.zeros((n, 1)), np.cumsum(durations_us, axis=1)[:, :2]], axis=1)
    end_us = start[:, leg] + (phase - leg)[None, :] * durations_us[:, leg]
    begin_us = np.concatenate([np.zeros((n, 1)), end_us[:, :-1]], axis=1)
    chunks: list[tuple[np.ndarray, ...]] = []
    for k, (dx, dy) in enumerate(displacement):
        level = np.log(bg + (1.0 - bg) * _shift(unit, dx, dy))
        count = np.clip(np.trunc((level - ref) / threshold), -config.cap, config.cap)
        ref = ref + count * threshold
        sample, row, col = np.nonzero(count.astype(np.int8))
        if sample.size == 0:
            continue
        c = count[sample, row, col].astype(np.int64)
        repeat = np.abs(c)
        sample, row, col = (np.repeat(a, repeat) for a in (sample, row, col))
        polarity = np.repeat(c > 0, repeat)
        t0, t1 = begin_us[sample, k], end_us[sample, k]
        stamp = t0 + rng.uniform(size=sample.size) * (t1 - t0)
        chunks.append((sample, col, row, polarity, stamp))
    total_us = durations_us.sum(axis=1)
    noise = rng.poisson(config.noise_hz * NMNIST_SIDE**2 * total_us * 1e-6)
    noise_sample = np.repeat(np.arange(n), noise)
    chunks.append((noise_sample,
                   rng.integers(0, NMNIST_SIDE, noise_sample.size),
                   rng.integers(0, NMNIST_SIDE, noise_sample.size),
                   rng.integers(0, 2, noise_sample.size).astype(bool),
                   rng.uniform(size=noise_sample.size) * total_us[noise_sample]))
    sample, x, y, p, t = (np.concatenate(parts) for parts in zip(*chunks))
    order = np.lexsort((x, np.floor(t), sample))
    sample, x, y, p, t = sample[order], x[order], y[order], p[order], np.floor(t[order])
    bounds = np.searchsorted(sample, np.arange(n + 1))
    recordings = []
    for i in range(n):
        part = slice(bounds[i], bounds[i + 1])
        events = np.empty(part.stop - part.start, dtype=EVENT_DTYPE)
        events["x"], events["y"], events["p"], events["t"] = x[part], y[part], p[part], t[part]
        recordings.append(events)
    return recordings


def dvs_dataset(images: np.ndarray, labels: np.ndarray | None, *, dt: float, steps: int,
                seed: int = 0, source: str = "dvs-encoded images",
                config: DvsConfig | None = None) -> Dataset:
    """DVS-encode ``images`` and bin the events into binary ``[N, steps, 2, 34, 34]`` frames."""
    recordings = dvs_encode(images, seed=seed, config=config)
    frames = bin_recordings(recordings, dt, steps, mode="binary")
    return Dataset(x=frames, y=labels, dt=dt, source=source)


def rate_encode(images: np.ndarray, steps: int, *, gain: float = 0.25, seed: int = 0,
                pad: bool = False) -> np.ndarray:
    """Bernoulli rate code: each step, pixel ``i`` spikes with probability ``gain * I / I_max``.

    Args:
        images: ``[N, H, W]`` (or ``[N, ...]``) non-negative intensities (0..255 or 0..1).
        steps: number of time steps ``T``.
        gain: spike probability of a full-intensity pixel per step (in (0, 1]).
        seed: seed of the draws.
        pad: pad 28x28 digits to 34x34 first (as the DVS encoder does).

    Returns:
        ``uint8`` spikes ``[N, T, *image_shape]``.
    """
    if not 0 < gain <= 1:
        raise ConfigError(f"gain must lie in (0, 1], got {gain}", where="rate_encode")
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}", where="rate_encode")
    images = np.asarray(images)
    if images.ndim < 2 or not np.all(np.isfinite(images)) or images.min() < 0:
        raise DataError("images must be a finite, non-negative [N, ...] array")
    unit = images.astype(np.float64) / (255.0 if images.max() > 1.0 else 1.0)
    if pad:
        unit = pad_to_nmnist(unit)
    rng = np.random.default_rng(seed)
    draws = rng.uniform(size=(unit.shape[0], steps, *unit.shape[1:]))
    return (draws < gain * unit[:, None]).astype(np.uint8)
