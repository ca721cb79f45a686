"""OBS solvers against brute force, closed forms and each other, on small layers."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from sbc_deploy.compress.grids import fit_grid
from sbc_deploy.compress.hessian import TemporalKernel, damped_inverse_cholesky
from sbc_deploy.compress.masks import magnitude_mask, min_prune_count, select_mask
from sbc_deploy.compress.obs import (
    admm_prune,
    authors_order,
    greedy_obs_prune,
    layer_loss,
    masked_reconstruct,
    obs_prune_order,
    obs_sweep,
    sequential_obs_quantize,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def smp_hessian(n_in: int, seed: int, beta: float = 0.5, samples: int = 12,
                steps: int = 20) -> torch.Tensor:
    """Damped SMP Hessian of random spike trains with correlated rates and a few dead inputs."""
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.02, 0.4, n_in) * (rng.random(n_in) > 0.1)
    drive = rng.random((samples, steps, 1)) < 0.5
    spikes = rng.random((samples, steps, n_in)) < rates * (0.5 + drive)
    x = torch.as_tensor(spikes.astype(np.float64)).transpose(0, 1)
    y = TemporalKernel(beta=beta).filter(x).reshape(-1, n_in)
    return damped_inverse_cholesky(2 * y.T @ y / samples, 0.01).H


def brute_force_order(w: torch.Tensor, H: torch.Tensor) -> tuple[list[int], list[float]]:
    """Greedy OBS by brute force: try every remaining weight, solve the constrained least squares
    ``min ||R (w - q)||^2, q_pruned = 0`` (``H = R^T R``) directly, take the cheapest."""
    R = torch.linalg.cholesky(H).T.numpy()
    target = R @ w.numpy()

    def loss(pruned: list[int]) -> float:
        keep = [j for j in range(len(w)) if j not in pruned]
        if not keep:
            return float(target @ target)
        q, *_ = np.linalg.lstsq(R[:, keep], target, rcond=None)
        residual = target - R[:, keep] @ q
        return float(residual @ residual)

    pruned: list[int] = []
    steps: list[float] = []
    current = 0.0
    for _ in range(len(w)):
        candidates = [(loss(pruned + [p]), p) for p in range(len(w)) if p not in pruned]
        best, p = min(candidates)
        pruned.append(p)
        steps.append(best - current)
        current = best
    return pruned, steps


def test_exact_greedy_equals_brute_force():
    n_out, n_in = 4, 7
    H = smp_hessian(n_in, seed=1)
    W = torch.as_tensor(np.random.default_rng(1).normal(size=(n_out, n_in)))
    group = torch.zeros(n_out, dtype=torch.long)
    order, saliency = obs_prune_order(W, H[None], group)
    brute = [brute_force_order(W[r], H) for r in range(n_out)]
    for r in range(n_out):
        assert order[r].tolist() == brute[r][0]
        assert saliency[r].tolist() == pytest.approx(brute[r][1], rel=1e-7, abs=1e-12)
    # the layer's mask: the n_prune cheapest recorded steps, as prefixes of the rows' orders
    n_prune = 15
    steps = np.array([b[1] for b in brute])
    chosen = np.argsort(steps.reshape(-1), kind="stable")[:n_prune]
    counts = np.bincount(chosen // n_in, minlength=n_out)
    Q, mask = greedy_obs_prune(W, H[None], group, n_prune)
    for r in range(n_out):
        assert sorted(torch.nonzero(mask[r]).reshape(-1).tolist()) == sorted(
            brute[r][0][:counts[r]])
    assert layer_loss(W, Q, H) == pytest.approx(
        sum(float(np.sum(steps[r, :counts[r]])) for r in range(n_out)), rel=1e-7)


def test_group_steps_equal_sequential_removal_of_the_same_set():
    """SBC's RB-grouped steps: removing J at once equals removing its members one by one."""
    H = smp_hessian(12, seed=2)
    W = torch.as_tensor(np.random.default_rng(2).normal(size=(3, 12)))
    group = torch.zeros(3, dtype=torch.long)
    Q, mask = greedy_obs_prune(W, H[None], group, 18, group_size=3)
    assert int(mask.sum()) == 18
    assert torch.allclose(Q, masked_reconstruct(W, H, mask), atol=1e-10)
    # the first step of every row removes its 3 least salient weights of the full inverse
    order, _ = obs_prune_order(W, H[None], group, group_size=3)
    first = torch.topk(W**2 / torch.diagonal(torch.linalg.inv(H)), 3, dim=1, largest=False)
    assert torch.equal(order[:, :3], first.indices)


def test_masked_reconstruct_is_optimal_for_its_mask():
    H = smp_hessian(10, seed=3)
    W = torch.as_tensor(np.random.default_rng(3).normal(size=(5, 10)))
    mask = magnitude_mask(W, 25)
    Q = masked_reconstruct(W, H, mask)
    gradient = (Q - W) @ H
    assert float(gradient[~mask].abs().max()) < 1e-10
    assert bool((Q[mask] == 0).all())


def test_identity_hessian_equals_magnitude_pruning():
    W = torch.as_tensor(np.random.default_rng(4).normal(size=(6, 16)))
    H = torch.eye(16, dtype=torch.float64)
    group = torch.zeros(6, dtype=torch.long)
    expected = magnitude_mask(W, 48)
    for Q, mask in (admm_prune(W, H[None], group, 48), greedy_obs_prune(W, H[None], group, 48),
                    obs_sweep(W, torch.eye(16, dtype=torch.float64), n_prune=48,
                              block_size=16)):
        assert torch.equal(mask, expected)
        assert torch.allclose(Q, W * ~expected, atol=1e-12)


@pytest.mark.parametrize("seed,beta", [(5, 0.5), (6, 0.9), (7, 1.0)])
@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_admm_within_five_percent_of_exact_greedy(seed, beta, sparsity):
    """The fast solver's loss is at most 5 % above exact greedy OBS (often below it)."""
    n_out, n_in = 24, 40
    H = smp_hessian(n_in, seed, beta=beta)
    W = torch.as_tensor(np.random.default_rng(seed).normal(size=(n_out, n_in)))
    group = torch.zeros(n_out, dtype=torch.long)
    n_prune = round(sparsity * W.numel())
    exact = layer_loss(W, greedy_obs_prune(W, H[None], group, n_prune)[0], H)
    Q, mask = admm_prune(W, H[None], group, n_prune)
    assert int(mask.sum()) == n_prune and bool((Q[mask] == 0).all())
    assert layer_loss(W, Q, H) <= 1.05 * exact
    # SparseGPT (a baseline): worse than greedy, still far better than magnitude
    U = damped_inverse_cholesky(H, 0.0).U
    sparse_gpt = layer_loss(W, obs_sweep(W, U, n_prune=n_prune, block_size=16)[0], H)
    magnitude = layer_loss(W, W * ~magnitude_mask(W, n_prune), H)
    assert exact <= sparse_gpt * (1 + 1e-9) and sparse_gpt < magnitude


@pytest.mark.parametrize("n_m,fan_in", [((2, 4), None), (None, 5), ((1, 2), 6)])
def test_obs_loss_not_worse_than_magnitude_under_structure(n_m, fan_in):
    n_out, n_in = 16, 24
    H = smp_hessian(n_in, seed=8)
    W = torch.as_tensor(np.random.default_rng(8).normal(size=(n_out, n_in)))
    group = torch.zeros(n_out, dtype=torch.long)
    n_prune = max(min_prune_count(n_out, n_in, n_m, fan_in), round(0.6 * W.numel()))
    magnitude = layer_loss(W, W * ~magnitude_mask(W, n_prune, n_m=n_m, fan_in=fan_in), H)
    for solve in (admm_prune, greedy_obs_prune):
        Q, mask = solve(W, H[None], group, n_prune, n_m=n_m, fan_in=fan_in)
        kept = ~mask
        assert int(mask.sum()) == n_prune
        if fan_in is not None:
            assert int(kept.sum(dim=1).max()) <= fan_in
        if n_m is not None:
            assert int(kept.reshape(n_out, -1, n_m[1]).sum(dim=2).max()) <= n_m[0]
        assert layer_loss(W, Q, H) <= magnitude


def test_row_groups_and_row_weights():
    """Two Hessians (per-neuron decays) and row weights: greedy prunes rows by weighted loss."""
    n_in = 10
    H = torch.stack([smp_hessian(n_in, 9, beta=0.3), smp_hessian(n_in, 9, beta=0.95)])
    W = torch.as_tensor(np.random.default_rng(9).normal(size=(6, n_in)))
    group = torch.tensor([0, 1, 0, 1, 0, 1])
    weight = torch.tensor([1.0, 1.0, 1.0, 1.0, 1e-6, 1.0], dtype=torch.float64)
    Q, mask = greedy_obs_prune(W, H, group, 30, row_weight=weight)
    assert bool(mask[4].all())  # the nearly free row goes first, whole
    for r in range(6):
        assert torch.allclose(Q[r:r + 1], masked_reconstruct(W[r:r + 1], H[group[r]],
                                                             mask[r:r + 1]), atol=1e-9)
    Qa, mask_a = admm_prune(W, H, group, 30, row_weight=weight)
    exact = layer_loss(W, Q, H, group, weight)
    # tolerance of the fast solver on a tiny (10-input) layer with mixed decays: 10 %
    assert layer_loss(W, Qa, H, group, weight) <= 1.10 * exact
    assert bool(mask_a[4].all())


def test_gptq_sweep_equals_authors_sequential_quantiser():
    """GPTQ's Cholesky + lazy blocks reproduce SBC's explicit-inverse quantiser exactly."""
    H = smp_hessian(30, seed=10)
    W = torch.as_tensor(np.random.default_rng(10).normal(size=(8, 30)))
    grid = fit_grid(W, grid="int", bits=3)
    damped = damped_inverse_cholesky(H, 0.0)
    order = authors_order(damped.Hinv)
    H_perm = H[order][:, order]
    U_perm = damped.factor(order)  # permuted inverse, factored again
    assert torch.allclose(U_perm, damped_inverse_cholesky(H_perm, 0.0).U, atol=1e-10)
    reference = sequential_obs_quantize(W[:, order], H_perm, grid, torch.arange(30))
    for block_size in (1, 7, 128):
        Q, mask = obs_sweep(W[:, order], U_perm, grid=grid, block_size=block_size)
        assert not bool(mask.any())
        assert torch.allclose(Q, reference, atol=1e-10)
    ratio = Q / grid.scale[:, None]
    assert torch.allclose(ratio, torch.round(ratio), atol=1e-9)
    rtn = layer_loss(W, grid.quantize(W), H)
    assert layer_loss(W[:, order], Q, H_perm) < rtn


def test_sixteen_bit_quantisation_changes_nothing_measurable():
    H = smp_hessian(20, seed=11)
    W = torch.as_tensor(np.random.default_rng(11).normal(size=(5, 20)))
    grid = fit_grid(W, grid="int", bits=16)
    Q, _ = obs_sweep(W, damped_inverse_cholesky(H, 0.0).U, grid=grid)
    assert layer_loss(W, Q, H) < 1e-8 * layer_loss(W, torch.zeros_like(W), H)


def test_joint_prune_and_quantise_on_grid_with_fixed_mask():
    H = smp_hessian(24, seed=12)
    W = torch.as_tensor(np.random.default_rng(12).normal(size=(6, 24)))
    group = torch.zeros(6, dtype=torch.long)
    Q, mask = admm_prune(W, H[None], group, 72)
    grid = fit_grid(Q, grid="int", bits=4)
    Qq, mask_q = obs_sweep(Q, damped_inverse_cholesky(H, 0.0).U, mask=mask, grid=grid)
    assert torch.equal(mask_q, mask) and bool((Qq[mask] == 0).all())
    ratio = Qq / grid.scale[:, None]
    assert torch.allclose(ratio, torch.round(ratio), atol=1e-9)
    rounded = layer_loss(W, grid.quantize(Q), H)
    assert layer_loss(W, Qq, H) < rounded


# --------------------------------------------------------------------------- fast paths


def _obs_module():
    """The solver module itself (``sbc_deploy.compress`` binds a function over its name)."""
    import importlib

    return importlib.import_module("sbc_deploy.compress.obs")


def test_direct_solve_equals_masked_reconstruct():
    """Batched Cholesky of the kept blocks (padded, chunked, rows sorted by count) == per-row
    solves, including rows that keep nothing and rows that keep everything."""
    obs = _obs_module()
    n_out, n_in = 11, 18
    H = smp_hessian(n_in, seed=20)
    rng = np.random.default_rng(20)
    W = torch.as_tensor(rng.normal(size=(n_out, n_in)))
    mask = torch.as_tensor(rng.random((n_out, n_in)) < rng.uniform(0.1, 0.95, (n_out, 1)))
    mask[0] = True
    mask[1] = False
    expected = masked_reconstruct(W, H, mask)
    for chunk_rows in (1, 3, 64):
        Q = obs.kept_solve(W @ H, H, ~mask, chunk_rows=chunk_rows)
        assert torch.allclose(Q, expected, rtol=0, atol=1e-9)
        assert bool((Q[mask] == 0).all())


def test_direct_and_cg_masked_solves_agree(monkeypatch):
    """The fixed-mask solve picks the direct or the CG path by cost; both give the optimum,
    for two Hessian groups and for a subset of rows (the others keep their warm start)."""
    obs = _obs_module()
    n_in = 16
    Hs = [smp_hessian(n_in, 21, beta=0.5), smp_hessian(n_in, 21, beta=1.0)]
    rng = np.random.default_rng(21)
    group = torch.tensor([0, 1, 1, 0, 1, 0, 0])
    rows_of = [torch.nonzero(group == g).reshape(-1) for g in range(2)]
    W = torch.as_tensor(rng.normal(size=(7, n_in)))
    mask = torch.as_tensor(rng.random((7, n_in)) < 0.6)
    B = torch.cat([W[r:r + 1] @ Hs[int(group[r])] for r in range(7)])
    only = torch.tensor([True, False, True, True, False, False, True])
    results = {}
    for name, ratio in (("cg", 0.0), ("direct", math.inf)):
        monkeypatch.setattr(obs, "DIRECT_SOLVE_RATIO", ratio)
        results[name] = obs._solve_on_mask(Hs, rows_of, B, W, mask, 200, 1e-13, only=only)
    for r in range(7):
        if only[r]:
            expected = masked_reconstruct(W[r:r + 1], Hs[int(group[r])], mask[r:r + 1])[0]
        else:
            expected = W[r]
        for name in results:
            assert torch.allclose(results[name][r], expected, rtol=0, atol=1e-9), name


def test_admm_result_is_the_exact_reconstruction_of_its_mask(monkeypatch):
    """After the incremental swap search (only changed rows re-solved), every row is the exact
    optimum for the returned mask; the direct and CG paths reach the same mask and loss."""
    obs = _obs_module()
    n_out, n_in = 20, 48
    H = smp_hessian(n_in, seed=22, beta=0.9)
    W = torch.as_tensor(np.random.default_rng(22).normal(size=(n_out, n_in)))
    group = torch.zeros(n_out, dtype=torch.long)
    for sparsity in (0.5, 0.9):
        n_prune = round(sparsity * W.numel())
        found = {}
        for name, ratio in (("cg", 0.0), ("direct", math.inf)):
            monkeypatch.setattr(obs, "DIRECT_SOLVE_RATIO", ratio)
            Q, mask = admm_prune(W, H[None], group, n_prune, cg_iters=400, cg_tol=1e-12)
            assert int(mask.sum()) == n_prune
            assert torch.allclose(Q, masked_reconstruct(W, H, mask), rtol=0, atol=1e-8), name
            found[name] = (mask, layer_loss(W, Q, H))
        assert torch.equal(found["cg"][0], found["direct"][0])
        assert found["cg"][1] == pytest.approx(found["direct"][1], rel=1e-9)


def test_unstructured_selection_matches_a_stable_sort():
    """select_mask's selection (numpy.partition on the CPU, used in the ADMM loop) prunes the
    same weights as a stable sort: the smallest scores, ties pruned from the highest index."""
    rng = np.random.default_rng(23)
    for _ in range(50):
        n_out, n_in = rng.integers(1, 9), rng.integers(1, 40)
        n_prune = int(rng.integers(0, n_out * n_in + 1))
        for values in (rng.normal(size=(n_out, n_in)),
                       rng.integers(0, 4, size=(n_out, n_in)).astype(np.float32)):
            scores = torch.as_tensor(values)
            order = np.argsort(-values.reshape(-1), kind="stable")  # keep order, ties: low first
            expected = np.ones(values.size, dtype=bool)
            expected[order[:values.size - n_prune]] = False
            mask = select_mask(scores, n_prune)
            assert np.array_equal(mask.numpy().reshape(-1), expected)
            assert int(mask.sum()) == n_prune  # exact count even through ties


def _load_solver_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "solver.py"
    spec = importlib.util.spec_from_file_location("benchmark_solver", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their module by name
    sys.path.insert(0, str(path.parent))  # its helpers (benchmarks/bench_tools.py), while it loads
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def test_benchmark_authors_quantiser_equals_sequential_obs():
    """The benchmark's re-implementation of SBC's quantiser (its full-matrix cost structure)
    computes the same weights as the in-place sequential OBS quantiser and the GPTQ sweep."""
    bench = _load_solver_benchmark()
    H = smp_hessian(30, seed=25)
    W = torch.as_tensor(np.random.default_rng(25).normal(size=(8, 30)))
    grid = fit_grid(W, grid="int", bits=3)
    damped = damped_inverse_cholesky(H, 0.0)
    order = authors_order(damped.Hinv)
    Q = bench.authors_quantize(W, H, grid, order, dtype=torch.float64)
    assert torch.allclose(Q, sequential_obs_quantize(W, H, grid, order), rtol=0, atol=1e-10)
    Q_sweep, _ = obs_sweep(W[:, order], damped.factor(order), grid=grid, block_size=7)
    assert torch.allclose(Q[:, order], Q_sweep, rtol=0, atol=1e-10)
    ratio = Q / grid.scale[:, None]
    assert torch.allclose(ratio, torch.round(ratio), atol=1e-9)
