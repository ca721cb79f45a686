"""Grids: every quantised weight lies on its grid; encodings are exact; Loihi's unit contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sbc_deploy.compress.grids import (
    THRESHOLD_MAX,
    THRESHOLD_RESOLUTION,
    fit_grid,
    int_exp_scale,
)
from sbc_deploy.errors import ConfigError


def test_docstring_example_int4():
    W = torch.tensor([[0.75, -0.3, 0.1]], dtype=torch.float64)
    fit = fit_grid(W, grid="int", bits=4)
    assert fit.scale.tolist() == pytest.approx([0.1])
    assert fit.mantissa(fit.quantize(W)).tolist() == [[7, -3, 1]]


def test_int_grid_is_sbc_symmetric_quantiser():
    """GPTQ / SBC sym: scale = 2 max|w| / (2^b - 1), q = clamp(round(w/s) + z, 0, maxq) - z."""
    rng = np.random.default_rng(1)
    W = torch.as_tensor(rng.normal(size=(5, 9)))
    fit = fit_grid(W, grid="int", bits=4)
    maxq = 15
    scale = 2 * W.abs().amax(dim=1, keepdim=True) / maxq
    zero = (maxq + 1) / 2
    expected = (torch.clamp(torch.round(W / scale) + zero, 0, maxq) - zero) * scale
    assert torch.allclose(fit.quantize(W), expected, rtol=0, atol=1e-15)


@settings(max_examples=50, deadline=None)
@given(grid=st.sampled_from(["int", "int_exp", "ternary"]), bits=st.integers(2, 12),
       per_channel=st.booleans(), seed=st.integers(0, 2**16), spread=st.floats(1e-3, 1e3),
       clip=st.sampled_from(["minmax", "mse"]))
def test_quantized_values_on_grid(grid, bits, per_channel, seed, spread, clip):
    rng = np.random.default_rng(seed)
    W = torch.as_tensor(rng.normal(size=(6, 11)) * spread)
    W[2] = 0.0  # an all-zero row must still get a valid scale
    thresholds = np.full(6, 1.0)
    fit = fit_grid(W, grid=grid, bits=bits, per_channel=per_channel, exp_range=(-8, 7),
                   thresholds=thresholds, clip=clip)
    Q = fit.quantize(W)
    ratio = Q / fit.scale[:, None]
    assert torch.allclose(ratio, torch.round(ratio), atol=1e-9)
    assert int(ratio.round().min()) >= fit.low and int(ratio.round().max()) <= fit.high
    encoding = fit.encoding(Q, (6, 11))
    assert np.allclose(encoding.dequantize(), Q.numpy(), rtol=1e-12, atol=0)
    if grid == "int":
        assert (fit.low, fit.high) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if grid == "ternary":
        assert set(np.unique(encoding.mantissa)) <= {-1, 0, 1}
    if grid == "int_exp":
        assert -8 <= encoding.exponent <= 7
        assert np.allclose(encoding.scale, encoding.unit * 2.0**encoding.exponent, rtol=1e-15)


def test_int_exp_unit_gives_threshold_resolution():
    """v_threshold / unit rounds into [2^10, 2^17 - 1]; the mantissa range is used like int's."""
    rng = np.random.default_rng(2)
    for spread in (1e-3, 0.05, 1.0):
        W = torch.as_tensor(rng.normal(size=(8, 20)) * spread)
        thresholds = rng.uniform(0.5, 2.0, size=8)
        fit = fit_grid(W, grid="int_exp", bits=8, exp_range=(-8, 7), thresholds=thresholds)
        integer_thresholds = np.round(thresholds / fit.unit)
        assert integer_thresholds.min() >= THRESHOLD_RESOLUTION
        assert integer_thresholds.max() <= THRESHOLD_MAX
        # the smallest such exponent: one less would miss the resolution
        assert (thresholds.min() / (fit.unit * 2)) < THRESHOLD_RESOLUTION or fit.exponent == -8
        mantissa = fit.mantissa(fit.quantize(W))
        assert int(mantissa.max()) == 127 or int(mantissa.min()) == -128  # full range used


def test_int_exp_huge_weights_keep_their_range():
    """Weights 100x the threshold: no exponent reaches 2^10; the largest one is taken and the
    weights keep the full mantissa range (threshold resolution is what gives)."""
    W = torch.tensor([[100.0, -50.0, 1.0]], dtype=torch.float64)
    fit = fit_grid(W, grid="int_exp", bits=8, exp_range=(-8, 7), thresholds=np.array([0.5]))
    assert fit.exponent == 7
    assert float(fit.scale[0]) == pytest.approx(200.0 / 255)
    assert round(0.5 / fit.unit) == round(0.5 * 2**7 / (200.0 / 255))


def test_int_exp_thresholds_far_above_weights_raise_unit():
    scale, exponent, unit = int_exp_scale(1e-6, 8, (-2, 2), np.array([1.0]))
    assert exponent == -2 and unit == pytest.approx(1.0 / THRESHOLD_MAX)
    assert scale == pytest.approx(unit * 2.0**-2)
    assert round(1.0 / unit) <= THRESHOLD_MAX


def test_int_exp_readout_any_unit():
    scale, exponent, unit = int_exp_scale(2.0, 8, (-8, 7), None)
    assert exponent == 0 and scale == pytest.approx(4.0 / 255) and unit == scale


def test_sixteen_bits_change_nothing_measurable():
    W = torch.as_tensor(np.random.default_rng(3).normal(size=(4, 50)))
    Q = fit_grid(W, grid="int", bits=16).quantize(W)
    assert float(((Q - W).abs() / W.abs().amax(dim=1, keepdim=True)).max()) < 2**-15


def test_bad_settings_raise():
    W = torch.ones(2, 2, dtype=torch.float64)
    with pytest.raises(ConfigError, match="grid"):
        fit_grid(W, grid="float")
    with pytest.raises(ConfigError, match="bits"):
        fit_grid(W, grid="int", bits=1)
    with pytest.raises(ConfigError, match="exp_range"):
        fit_grid(W, grid="int_exp", exp_range=(3, 1))
    with pytest.raises(ConfigError, match="clip"):
        fit_grid(W, grid="int", clip="percentile")


def _norm_error(W: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    return ((Q - W).abs() ** 2.4).sum(dim=1)


def test_mse_clip_clips_an_outlier_by_hand():
    """One weight of 10 among a hundred 1s at 4 bits. The full range gives a step of 20/15: each
    1 lands on 4/3 (error (1/3)^2.4 each) and 10 / (4/3) = 7.5 is clipped to 7 (error (2/3)^2.4).
    A numpy scan of the same range factors
    1, 0.99, ..., 0.21 finds a smaller step that clips the outlier (mantissa 7) for less error."""
    W = torch.ones(1, 101, dtype=torch.float64)
    W[0, 0] = 10.0
    minmax = fit_grid(W, grid="int", bits=4, clip="minmax")
    mse = fit_grid(W, grid="int", bits=4, clip="mse")
    assert float(minmax.scale[0]) == pytest.approx(20 / 15)
    assert float(_norm_error(W, minmax.quantize(W))) == pytest.approx(
        100 * (1 / 3) ** 2.4 + (2 / 3) ** 2.4)
    w = W.numpy()[0]
    steps = [(1 - i / 100) * 20 / 15 for i in range(80)]
    errors = [float((np.abs(np.clip(np.round(w / s), -8, 7) * s - w) ** 2.4).sum())
              for s in steps]
    assert float(mse.scale[0]) == pytest.approx(steps[int(np.argmin(errors))], rel=1e-12)
    assert float(mse.scale[0]) < 20 / 15
    assert int(mse.mantissa(mse.quantize(W))[0, 0]) == 7          # the outlier is clipped
    assert float(_norm_error(W, mse.quantize(W))) == pytest.approx(min(errors), rel=1e-12)
    assert min(errors) < 0.75 * errors[0]


@pytest.mark.parametrize("grid", ["int", "int_exp"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_mse_clip_never_worse_than_minmax(grid, per_channel):
    """The search includes the full range, so its error (per scale) can only be lower."""
    rng = np.random.default_rng(4)
    W = torch.as_tensor(rng.standard_t(df=3, size=(16, 64)))
    for bits in (2, 3, 4, 8):
        kwargs = dict(grid=grid, bits=bits, per_channel=per_channel,
                      thresholds=np.ones(16))
        a = fit_grid(W, clip="minmax", **kwargs)
        b = fit_grid(W, clip="mse", **kwargs)
        err_a, err_b = _norm_error(W, a.quantize(W)), _norm_error(W, b.quantize(W))
        if grid == "int" and per_channel:
            assert bool((err_b <= err_a * (1 + 1e-12)).all())
        else:
            assert float(err_b.sum()) <= float(err_a.sum()) * (1 + 1e-12)
        if bits <= 4:  # heavy tails at few bits: clipping pays
            assert float(err_b.sum()) < float(err_a.sum())


@pytest.mark.parametrize("threshold", [1.0, 0.37, 12.5])
def test_int_exp_makes_a_layer_threshold_a_whole_number_of_units(threshold):
    """Loihi compares v with vth << 6: a shared threshold should be an exact integer of units."""
    from sbc_deploy.compress.grids import THRESHOLD_RESOLUTION, int_exp_scale

    scale, exponent, unit = int_exp_scale(0.8, 8, (-6, 8), np.full(16, threshold))
    ideal = 2 * 0.8 / 255
    assert scale == pytest.approx(unit * 2.0**exponent, rel=1e-15)
    whole = threshold / unit
    assert abs(whole - round(whole)) < 1e-9 and round(whole) >= THRESHOLD_RESOLUTION
    # The unit only grew (mantissas stay within 8 bits) and by less than 1 / resolution.
    assert ideal <= scale < ideal * (1 + 1 / THRESHOLD_RESOLUTION)
    assert round(0.8 / scale) <= 127
