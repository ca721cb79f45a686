"""SMP kernels against closed forms, streaming sums, im2col, damping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sbc_deploy.compress.hessian import (
    HessianAccumulator,
    TemporalKernel,
    damped_inverse_cholesky,
    kernel_for_neuron,
    temporal_kernel,
    unfold_input,
)
from sbc_deploy.errors import ConfigError, NumericalError, ShapeError
from sbc_deploy.ir import IF, LI, LIF, Affine, Conv1d, Conv2d, CubaLIF, Integrator


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_temporal_kernel_matches_sbc_reference():
    """SBC's osbc_prune.py loop: conv[i, j] = ((tau - 1) / tau) ** (i - j) for j <= i."""
    tau, steps = 2.0, 4
    reference = torch.zeros(steps, steps, dtype=torch.float64)
    for i in range(steps):
        for j in range(i + 1):
            reference[i, j] = ((tau - 1) / tau) ** (i - j)
    assert torch.equal(temporal_kernel((tau - 1) / tau, steps), reference)
    assert torch.equal(temporal_kernel(0.5, 4)[3], torch.tensor([0.125, 0.25, 0.5, 1.0],
                                                                dtype=torch.float64))


@pytest.mark.parametrize("kernel,closed_form", [
    (TemporalKernel(beta=0.7), lambda lag: 0.7**lag),
    # CubaLIF: i filtered by alpha, then v by beta: sum_u beta^(t-u) alpha^(u-s)
    (TemporalKernel(alpha=0.4, beta=0.9),
     lambda lag: (0.9 ** (lag + 1) - 0.4 ** (lag + 1)) / (0.9 - 0.4)),
    (TemporalKernel(beta=1.0), lambda lag: 1.0 + 0 * lag),  # IF: running sum
    (TemporalKernel(), lambda lag: (lag == 0) * 1.0),      # readout: identity
])
def test_kernel_matrix_and_filter_match_closed_form(kernel, closed_form):
    steps = 9
    t = np.arange(steps)
    lag = t[:, None] - t[None, :]
    expected = np.where(lag >= 0, closed_form(np.maximum(lag, 0).astype(float)), 0.0)
    assert np.allclose(kernel.matrix(steps).numpy(), expected, rtol=1e-13, atol=1e-15)
    x = torch.as_tensor(np.random.default_rng(0).random((steps, 3, 5)))
    filtered = kernel.filter(x)
    assert torch.allclose(filtered, torch.einsum("ts,sbi->tbi", kernel.matrix(steps), x),
                          rtol=1e-12, atol=1e-14)


def test_kernel_for_neuron_kinds():
    n = 4
    lif = LIF(beta=np.full(n, 0.5), v_threshold=np.ones(n))
    cuba = CubaLIF(alpha=np.full(n, 0.3), beta=np.full(n, 0.6), v_threshold=np.ones(n))
    assert kernel_for_neuron(lif, n)[0] == (TemporalKernel(beta=0.5),)
    assert kernel_for_neuron(cuba, n)[0] == (TemporalKernel(alpha=0.3, beta=0.6),)
    assert kernel_for_neuron(IF(v_threshold=np.ones(n)), n)[0] == (TemporalKernel(beta=1.0),)
    assert kernel_for_neuron(Integrator(gain=np.ones(n)), n)[0] == (TemporalKernel(beta=1.0),)
    assert kernel_for_neuron(None, n)[0] == (TemporalKernel(),)
    assert kernel_for_neuron(lif, n, kind="current")[0] == (TemporalKernel(),)


def test_per_neuron_decays_group_rows_and_bin_beyond_max_groups():
    beta = np.array([0.5, 0.9, 0.5, 0.9, 0.7])
    kernels, groups = kernel_for_neuron(LI(beta=beta), 5)
    assert [k.beta for k in kernels] == [0.5, 0.7, 0.9]
    assert groups.tolist() == [0, 2, 0, 2, 1]
    beta = np.linspace(0.1, 0.9, 8)
    kernels, groups = kernel_for_neuron(LI(beta=beta), 8, max_groups=2)
    assert groups.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [k.beta for k in kernels] == pytest.approx([beta[:4].mean(), beta[4:].mean()])
    # conv channels: a neuron of shape (C, H, W) gives one decay per channel
    conv_beta = np.repeat(np.array([0.2, 0.8]), 6).reshape(2, 2, 3)
    kernels, groups = kernel_for_neuron(LI(beta=conv_beta), 2)
    assert [k.beta for k in kernels] == pytest.approx([0.2, 0.8]) and groups.tolist() == [0, 1]


def test_smp_loss_equals_quadratic_form_with_H(rng):
    """sum_b ||K X_b dW^T||^2 == N/2 * sum_rows dW H dW^T with H from the accumulator."""
    steps, batch, n_in, n_out = 12, 6, 7, 3
    x = torch.as_tensor((rng.random((steps, batch, n_in)) < 0.3).astype(np.float64))
    dW = torch.as_tensor(rng.normal(size=(n_out, n_in)))
    kernel = TemporalKernel(alpha=0.5, beta=0.8)
    K = kernel.matrix(steps)
    direct = sum(float(((K @ x[:, b]) @ dW.T).pow(2).sum()) for b in range(batch))
    acc = HessianAccumulator(Affine(np.zeros((n_out, n_in))), (kernel,), np.zeros(n_out, int),
                             np.ones(n_out), precision="float64")
    acc.add(x)
    H = acc.result().hessian()[0, 0]
    assert direct == pytest.approx(batch / 2 * float(((dW @ H) * dW).sum()), rel=1e-12)


def test_streaming_hessian_equals_one_batch(rng):
    x = torch.as_tensor(rng.random((10, 13, 6)))
    synapse = Affine(np.zeros((2, 6)))
    kernels = (TemporalKernel(beta=0.3), TemporalKernel(beta=1.0))
    groups = np.array([0, 1])
    one = HessianAccumulator(synapse, kernels, groups, np.ones(2), precision="float64")
    one.add(x)
    parts = [HessianAccumulator(synapse, kernels, groups, np.ones(2), chunk_elements=13,
                                precision="float64")
             for _ in range(3)]
    parts[0].add(x[:, :4])
    parts[1].add(x[:, 4:9])
    parts[1].add(x[:, 9:11])
    parts[2].add(x[:, 11:])
    total = parts[0].result() + parts[1].result() + parts[2].result()
    assert total.n_samples == one.result().n_samples == 13
    assert np.allclose(total.xtx, one.result().xtx, rtol=1e-13)
    assert torch.allclose(total.hessian(), one.result().hessian(), rtol=1e-13)
    assert np.allclose(total.in_rate(), x.numpy().mean(axis=(0, 1)), rtol=1e-12)


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_unfold_loss_matches_convolution(rng, groups):
    """Conv2d: sum over positions of the filtered output error equals the quadratic form."""
    c_in, c_out = 4, 4
    conv = Conv2d(np.zeros((c_out, c_in // groups, 3, 2)), input_shape=(c_in, 6, 5),
                  stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=groups)
    steps, batch = 5, 3
    x = torch.as_tensor(rng.random((steps, batch, c_in, 6, 5)))
    dW = torch.as_tensor(rng.normal(size=conv.weight.shape))
    kernel = TemporalKernel(beta=0.6)
    y = kernel.filter(x).reshape(steps * batch, c_in, 6, 5)
    out = F.conv2d(y, dW, stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                   groups=groups)
    acc = HessianAccumulator(conv, (kernel,), np.zeros(c_out, int), np.ones(c_out),
                             precision="float64")
    acc.add(x)
    result = acc.result()
    H = result.hessian()[0]  # (groups, n, n)
    rows = dW.reshape(c_out, -1)
    per_group = c_out // groups
    quad = sum(float(((rows[g * per_group:(g + 1) * per_group] @ H[g])
                      * rows[g * per_group:(g + 1) * per_group]).sum()) for g in range(groups))
    assert float(out.pow(2).sum()) == pytest.approx(result.n_rows / 2 * quad, rel=1e-12)


def test_conv1d_unfold_matches_conv1d(rng):
    conv = Conv1d(np.zeros((3, 2, 3)), input_shape=(2, 9), stride=2, padding=1)
    x = torch.as_tensor(rng.random((4, 2, 9)))
    w = torch.as_tensor(rng.normal(size=(3, 2, 3)))
    rows = unfold_input(x, conv)  # (4 * L, 1, 6)
    direct = F.conv1d(x, w, stride=2, padding=1)  # (4, 3, L)
    via_rows = (rows[:, 0] @ w.reshape(3, -1).T).reshape(4, -1, 3).permute(0, 2, 1)
    assert torch.allclose(via_rows, direct, atol=1e-13)


def test_damped_inverse_cholesky_factor_and_dead_inputs(rng):
    X = torch.as_tensor(rng.normal(size=(40, 6)))
    X[:, 2] = 0.0  # a dead input
    H = 2 * X.T @ X / 40
    result = damped_inverse_cholesky(H, 0.01)
    assert result.dead.tolist() == [False, False, True, False, False, False]
    assert result.raises == 0
    live_mean = float(torch.diagonal(H)[[0, 1, 3, 4, 5]].mean())
    damped = H.clone()
    damped[2, 2] = live_mean
    damped += 0.01 * float(torch.diagonal(damped).mean()) * torch.eye(6, dtype=H.dtype)
    assert torch.allclose(result.H, damped)
    assert torch.allclose(result.U.T @ result.U, torch.linalg.inv(damped), rtol=1e-10)
    assert torch.equal(result.U, torch.triu(result.U))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_factor_in_a_column_order_factors_the_permuted_inverse(rng, dtype):
    """U^T U == Hinv[order][:, order] (numpy's permutation and inverse), U upper triangular."""
    X = rng.normal(size=(60, 9))
    H = 2 * X.T @ X / 60
    result = damped_inverse_cholesky(torch.as_tensor(H), 0.01)
    order = rng.permutation(9)
    damped = H + 0.01 * np.mean(np.diag(H)) * np.eye(9)
    expected = np.linalg.inv(damped)[np.ix_(order, order)]
    U = result.factor(torch.as_tensor(order), dtype)
    assert U.dtype == dtype and torch.equal(U, torch.triu(U))
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert np.allclose((U.T @ U).double().numpy(), expected, rtol=tol, atol=tol * np.abs(
        expected).max())


def test_damping_is_raised_and_counted_never_silent():
    H = torch.tensor([[1.0, 3.0], [3.0, 1.0]], dtype=torch.float64)  # eigenvalues -2, 4
    result = damped_inverse_cholesky(H, 0.01)
    # mean diag 1: the damping must exceed 2 -> 0.01, 0.1, 1 fail, 10 succeeds
    assert result.raises == 3 and result.damp_frac == pytest.approx(10.0)
    with pytest.raises(NumericalError, match="positive definite"):
        damped_inverse_cholesky(H, 0.01, max_raises=2)
    with pytest.raises(NumericalError, match="NaN"):
        damped_inverse_cholesky(torch.full((2, 2), float("nan"), dtype=torch.float64))


# --------------------------------------------------------------------------- GEMM-speed sums


@pytest.mark.parametrize("kernel", [TemporalKernel(beta=0.93), TemporalKernel(alpha=0.6,
                                                                              beta=0.97)])
def test_blocked_scan_equals_the_recursion_over_many_blocks(kernel):
    """T = 77 spans three scan blocks of 32: the carry between blocks is exact."""
    steps = 77
    x = torch.as_tensor(np.random.default_rng(1).random((steps, 2, 3)))
    expected = torch.einsum("ts,sbi->tbi", kernel.matrix(steps), x)
    assert torch.allclose(kernel.filter(x), expected, rtol=1e-12, atol=1e-13)
    y = x.clone()
    for decay in (kernel.alpha, kernel.beta):  # the plain recursion, step by step
        if decay is None:
            continue
        acc = torch.zeros_like(y[0])
        for t in range(steps):
            acc = decay * acc + y[t]
            y[t] = acc
    assert torch.allclose(kernel.filter(x), y, rtol=1e-12, atol=1e-13)


def _sums(synapse, x, **options):
    acc = HessianAccumulator(synapse, (TemporalKernel(beta=0.8), TemporalKernel(beta=1.0)),
                             np.array([0, 1] * (synapse.weight.shape[0] // 2)),
                             np.ones(synapse.weight.shape[0]), **options)
    for start in range(0, x.shape[1], 3):
        acc.add(x[:, start:start + 3])
    return acc.result()


@pytest.mark.parametrize("layer", ["affine", "conv", "conv_groups"])
def test_float32_gemm_sums_match_float64_sums(rng, layer):
    """float32 GEMMs into float64 sums: within 1e-6 (relative, Frobenius) of the float64 path
    on 40 steps of 5 % spikes; the input rates are exact."""
    if layer == "affine":
        synapse, shape = Affine(np.zeros((4, 300))), (300,)
    else:
        groups = 2 if layer == "conv_groups" else 1
        synapse = Conv2d(np.zeros((4, 8 // groups, 3, 3)), input_shape=(8, 12, 12), padding=1,
                         groups=groups)
        shape = (8, 12, 12)
    x = torch.as_tensor((rng.random((40, 7, *shape)) < 0.05).astype(np.float32))
    f32, f64 = _sums(synapse, x), _sums(synapse, x, precision="float64")
    error = np.linalg.norm(f32.xtx - f64.xtx) / np.linalg.norm(f64.xtx)
    assert 0 <= error < 1e-6
    assert np.array_equal(f32.x_sum, f64.x_sum) and f32.n_rows == f64.n_rows


def test_block_diagonal_sums_are_the_diagonal_blocks_of_the_full_sums(rng):
    synapse = Affine(np.zeros((4, 23)))
    x = torch.as_tensor(rng.random((9, 7, 23)))
    full = _sums(synapse, x, precision="float64")
    blocks = _sums(synapse, x, precision="float64", block_size=8)
    assert blocks.xtx.shape == (2, 1, 3, 8, 8) and blocks.block_size == 8 and blocks.n_in == 23
    for j, start in enumerate((0, 8, 16)):
        width = min(8, 23 - start)
        assert np.allclose(blocks.xtx[:, 0, j, :width, :width],
                           full.xtx[:, 0, start:start + width, start:start + width], rtol=1e-13)
    assert not blocks.xtx[:, 0, 2, 7:].any() and not blocks.xtx[:, 0, 2, :, 7:].any()  # padding
    assert np.array_equal(blocks.x_sum, full.x_sum)
    assert _sums(synapse, x, block_size=23).block_size is None  # one block: the full Hessian


def test_row_subsampling_is_an_unbiased_estimate(rng):
    """Each row kept with probability p and the kept sums divided by p: the mean of many
    seeds' estimates converges to the full sums (and every seed is reproducible)."""
    synapse = Conv2d(np.zeros((2, 2, 3, 3)), input_shape=(2, 6, 6))
    x = torch.as_tensor((rng.random((5, 4, 2, 6, 6)) < 0.3).astype(np.float32))
    full = _sums(synapse, x, precision="float64").xtx
    estimates = np.stack([_sums(synapse, x, precision="float64", row_fraction=0.3, seed=s).xtx
                          for s in range(300)])
    single = np.linalg.norm(estimates[0] - full) / np.linalg.norm(full)
    mean = np.linalg.norm(estimates.mean(axis=0) - full) / np.linalg.norm(full)
    assert single > 0.05 and mean < single / 8   # ~1/sqrt(300) of one estimate's error
    again = _sums(synapse, x, precision="float64", row_fraction=0.3, seed=0).xtx
    assert np.array_equal(again, estimates[0])
    with pytest.raises(ConfigError, match="row_fraction"):
        _sums(synapse, x, row_fraction=0.0)


# ---------------------------------------------------------------- time chunks (issue 14)


def _chunk_layers():
    return {
        "affine": (Affine(np.zeros((3, 6))), (6,)),
        "conv": (Conv2d(np.zeros((4, 3, 3, 3)), input_shape=(3, 5, 6), padding=1), (3, 5, 6)),
        "conv_groups": (Conv2d(np.zeros((4, 1, 2, 3)), input_shape=(2, 5, 6), groups=2),
                        (2, 5, 6)),
    }


def _accumulator(synapse, **options):
    kernels = (TemporalKernel(beta=0.8), TemporalKernel(alpha=0.5, beta=0.9), TemporalKernel())
    n_out = synapse.weight.shape[0]
    return HessianAccumulator(synapse, kernels, np.arange(n_out) % 3, np.ones(n_out),
                              chunk_elements=97, **options)


def _fed(acc, x, lengths, index=0, into_totals=False):
    acc.begin(index, into_totals=into_totals)
    t0 = 0
    for n in lengths:
        acc.feed(x[t0:t0 + n])
        t0 += n
    assert t0 == x.shape[0]
    return acc.finish()


@pytest.mark.parametrize("layer", ["affine", "conv", "conv_groups"])
@pytest.mark.parametrize("options", [{"precision": "float64"}, {"precision": "float32"},
                                     {"precision": "float64", "row_fraction": 0.5, "seed": 4}])
def test_time_chunks_of_32_steps_equal_the_whole_sequence_bit_for_bit(rng, layer, options):
    """The SMP filter's state and the partial GEMM chunk carried across time chunks of
    SCAN_BLOCK steps: the same sums, bit for bit, as the whole sequence at once (three kernels:
    LIF, CUBA, identity; GEMM chunks that straddle the time chunks)."""
    synapse, shape = _chunk_layers()[layer]
    x = torch.as_tensor(rng.random((70, 3, *shape)) * (rng.random((70, 3, *shape)) < 0.4))
    whole = _accumulator(synapse, **options).batch_sum(x, index=2)
    chunked = _fed(_accumulator(synapse, **options), x, [32, 32, 6], index=2)
    assert torch.equal(chunked.xtx, whole.xtx)
    assert (chunked.n_rows, chunked.n_samples, chunked.steps) == (
        whole.n_rows, whole.n_samples, whole.steps)
    # input rates: summed over time in the GEMMs' precision, per chunk
    tol = 1e-6 if options["precision"] == "float32" else 1e-13
    assert torch.allclose(chunked.x_sum, whole.x_sum, rtol=tol)


@pytest.mark.parametrize("layer", ["affine", "conv"])
def test_odd_time_chunks_and_sums_into_the_totals_equal_batch_sums(rng, layer):
    """Chunks of any length, summed straight into the totals over three batches: the batch
    sums added up, within float64 rounding (closed form check of the filter in test above);
    exactly for integer-valued sums (spikes through an integrator and the identity)."""
    synapse, shape = _chunk_layers()[layer]
    xs = [torch.as_tensor((rng.random((23, 2, *shape)) < 0.3).astype(np.float64))
          for _ in range(3)]
    reference = _accumulator(synapse, precision="float64")
    for i, x in enumerate(xs):
        reference.add(x, index=i)
    streamed = _accumulator(synapse, precision="float64")
    for i, x in enumerate(xs):
        assert _fed(streamed, x, [5, 7, 1, 10], index=i, into_totals=True) is None
    a, b = streamed.result(), reference.result()
    assert np.allclose(a.xtx, b.xtx, rtol=1e-13, atol=0)
    assert (a.n_rows, a.n_samples, a.steps) == (b.n_rows, b.n_samples, b.steps)
    assert np.array_equal(a.x_sum, b.x_sum)  # spikes: integer sums
    exact = HessianAccumulator(synapse, (TemporalKernel(beta=1.0), TemporalKernel()),
                               np.arange(synapse.weight.shape[0]) % 2,
                               np.ones(synapse.weight.shape[0]), precision="float64")
    again = HessianAccumulator(synapse, exact.kernels, exact.groups, exact.row_weight,
                               precision="float64")
    for i, x in enumerate(xs):
        exact.add(x, index=i)
        _fed(again, x, [5, 7, 1, 10], index=i, into_totals=True)
    assert np.array_equal(again.result().xtx, exact.result().xtx)


def test_time_chunk_misuse_is_refused(rng):
    synapse, shape = _chunk_layers()["affine"]
    acc = _accumulator(synapse)
    with pytest.raises(ShapeError, match="begin"):
        acc.feed(torch.zeros(2, 1, *shape))
    acc.begin(0)
    acc.feed(torch.zeros(2, 3, *shape))
    with pytest.raises(ShapeError, match="3"):
        acc.feed(torch.zeros(2, 4, *shape))
    with pytest.raises(ShapeError, match="already"):
        acc.begin(1)
    acc.add_batch_sum(acc.finish())
    with pytest.raises(ShapeError, match="mixed"):
        acc.begin(1, into_totals=True)


@pytest.mark.parametrize("layer", ["affine", "conv", "conv_groups"])
@pytest.mark.parametrize("options", [{"precision": "float64"}, {"precision": "float32"},
                                     {"precision": "float64", "row_fraction": 0.5, "seed": 4}])
def test_accumulate_equals_batch_sums_added_bit_for_bit(rng, layer, options):
    """accumulate() (one process: channels-last totals, permuted once at the end) gives the
    totals of add() (every batch's sums permuted, then added), bit for bit, over four batches
    of real-valued inputs (where any change in the order of additions would show)."""
    synapse, shape = _chunk_layers()[layer]
    xs = [torch.as_tensor(rng.random((9, 2, *shape)) * (rng.random((9, 2, *shape)) < 0.5))
          for _ in range(4)]
    reference, fast = _accumulator(synapse, **options), _accumulator(synapse, **options)
    for i, x in enumerate(xs):
        reference.add(x, index=i)
        fast.accumulate(x, index=i)
    a, b = fast.result(), reference.result()
    assert np.array_equal(a.xtx, b.xtx) and np.array_equal(a.x_sum, b.x_sum)
    assert (a.n_rows, a.n_samples, a.steps) == (b.n_rows, b.n_samples, b.steps)
    with pytest.raises(ShapeError, match="mixed"):
        fast.add_batch_sum(reference.batch_sum(xs[0]))
    with pytest.raises(ShapeError, match="mixed"):
        reference.accumulate(xs[0])
