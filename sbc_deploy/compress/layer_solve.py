"""One synapse layer's compression: its OBS problem, the solve, the quantisation, its stats.

A :class:`LayerProblem` holds one layer's tensors (``W (n_out, n_in)``, the calibration's
Hessians per row group, each row's weight); :func:`solve` prunes ``n_prune`` of its weights with
the config's solver (:mod:`.obs`) on the damped Hessians (:func:`.hessian.damped_inverse_cholesky`),
then quantises the kept ones by a GPTQ sweep with the mask fixed. A block-diagonal Hessian is
solved block by block (:func:`_solve_blocks`). :func:`compressed_node` and :func:`layer_stats`
turn the result into the new synapse node and its :class:`LayerStats`.

Which layers are solved, with how many weights pruned each, and in which order, is the pass's
business (:mod:`.passes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sbc_deploy.compress.config import CompressionConfig
from sbc_deploy.compress.grids import GridFit, fit_grid
from sbc_deploy.compress.hessian import (
    DampedInverse,
    DampedLowRank,
    HessianSize,
    HessianSum,
    damped_inverse_cholesky,
    low_rank_damped,
)
from sbc_deploy.compress.masks import min_prune_count, select_mask
from sbc_deploy.compress.obs import (
    DIRECT_SOLVE_RATIO,
    LOW_RANK_RUNS,
    admm_prune,
    authors_order,
    greedy_obs_prune,
    layer_loss,
    obs_sweep,
)
from sbc_deploy.devices import torch_threads
from sbc_deploy.errors import ConfigError, DataError
from sbc_deploy.ir import SynapseLayer


@dataclass(frozen=True)
class LayerStats:
    """What compression did to one synapse layer.

    Attributes:
        name, kind, shape: the synapse node.
        pruned: weights the mask removed.
        sparsity: fraction of zero weights after compression (pruned, dead or rounded to 0).
        bits, grid: the weight grid, or ``None`` when not quantised.
        loss: ``sum_r row_weight[r] (w_r - w'_r) H (w_r - w'_r)^T`` on the calibration's
            (undamped) Hessian, i.e. ``tr((W - W') H (W - W')^T)`` with each row's H; ``None``
            without a calibration of this layer.
        dense_energy: ``tr(W H W^T)`` of the dense layer (the loss's natural scale).
        damp_frac: relative damping finally used (largest over the layer's Hessian groups).
        damp_raises: how many times the damping had to be raised for Cholesky to succeed.
        solver: the pruning solver (``"none"`` when nothing was pruned).
        seconds: wall time of this layer (allocation excluded).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    pruned: int
    sparsity: float
    bits: int | None
    grid: str | None
    loss: float | None
    dense_energy: float | None
    damp_frac: float | None
    damp_raises: int
    solver: str
    seconds: float


@dataclass(frozen=True, eq=False)
class LayerProblem:
    """One layer's tensors: ``W (n_out, n_in)``, ``H (groups, n_in, n_in)`` and row groups.

    A block-diagonal Hessian has ``H (groups, n_blocks, b, b)`` and ``block = b``.
    ``rank_bound``: every Hessian of the layer is a sum of at most this many rank-one terms
    (the calibration's rows x steps), or ``None`` when unknown.
    """

    layer: SynapseLayer
    W: Tensor
    H: Tensor | None
    group: Tensor
    row_weight: Tensor
    block: int | None = None
    rank_bound: int | None = None

    def column_blocks(self) -> list[slice]:
        """The input columns of each diagonal block (one slice for a full Hessian)."""
        n_in = int(self.W.shape[1])
        if self.block is None:
            return [slice(0, n_in)]
        return [slice(a, min(a + self.block, n_in)) for a in range(0, n_in, self.block)]

    def sub(self, j: int) -> LayerProblem:
        """The block ``j`` of a block-diagonal problem as a problem of its own."""
        assert self.H is not None and self.block is not None
        cols = self.column_blocks()[j]
        width = cols.stop - cols.start
        return LayerProblem(self.layer, self.W[:, cols], self.H[:, j, :width, :width],
                            self.group, self.row_weight)

    @property
    def n_groups(self) -> int:
        return 1 if self.H is None else int(self.H.shape[0])

    def rows(self, g: int) -> Tensor:
        return torch.nonzero(self.group == g).reshape(-1)


def layer_problem(layer: SynapseLayer, hsum: HessianSum | None,
                  device: torch.device) -> LayerProblem:
    """The layer's weights and (without a calibration, ``hsum=None``: no) Hessians on
    ``device``, one row group per kernel group x convolution group."""
    weight = np.asarray(layer.synapse.weight, dtype=np.float64)
    n_out = weight.shape[0]
    W = torch.tensor(weight.reshape(n_out, -1), device=device)
    if hsum is None:
        zero = torch.zeros(n_out, dtype=torch.long, device=device)
        return LayerProblem(layer, W, None, zero,
                            torch.ones(n_out, dtype=torch.float64, device=device))
    if hsum.n_in != W.shape[1] or hsum.n_out != n_out:
        raise DataError(f"calibration has {hsum.n_out} x {hsum.n_in} rows x inputs, the layer "
                        f"{n_out} x {W.shape[1]}: calibrated on a different graph?",
                        where=f"layer {layer.name}")
    H4 = hsum.hessian(device)                       # (kernel_groups, conv_groups, n_in, n_in)
    k_groups, c_groups = H4.shape[:2]
    H = H4.reshape(k_groups * c_groups, *H4.shape[2:])  # or (..., blocks, b, b)
    conv_group = torch.arange(n_out, device=device) // (n_out // c_groups)
    group = torch.tensor(hsum.groups, device=device) * c_groups + conv_group
    row_weight = torch.tensor(hsum.row_weight, dtype=torch.float64, device=device)
    return LayerProblem(layer, W, H, group, row_weight, hsum.block_size,
                        hsum.n_rows * hsum.steps if hsum.block_size is None else None)


def _thresholds(layer: SynapseLayer) -> np.ndarray | None:
    threshold = getattr(layer.neuron, "v_threshold", None)
    return None if threshold is None else np.asarray(threshold, dtype=np.float64).reshape(-1)


def fit_layer_grid(layer: SynapseLayer, Q: Tensor, config: CompressionConfig) -> GridFit:
    return fit_grid(Q, grid=config.grid, bits=config.bits or 2, per_channel=config.per_channel,
                    exp_range=config.exp_range, thresholds=_thresholds(layer), clip=config.clip)


@dataclass(frozen=True, eq=False)
class SolveResult:
    Q: Tensor
    mask: Tensor
    grid: GridFit | None
    damp_frac: float | None
    damp_raises: int


def _damp(problem: LayerProblem, config: CompressionConfig) -> list[DampedInverse]:
    assert problem.H is not None
    return [damped_inverse_cholesky(problem.H[g], config.damp_frac,
                                    where=f"layer {problem.layer.name} (row group {g})")
            for g in range(problem.n_groups)]


LOW_RANK_FRACTION = 0.25
"""Most rank, as a fraction of the side, at which the ADMM solver may take a layer's Hessians
as low rank plus diagonal (:func:`~sbc_deploy.compress.hessian.low_rank_damped`); tried only
when the calibration's rows x steps (a bound on the rank, known before any work) are at most
this, and used when :func:`_low_rank_pays`."""


LOW_RANK_GAIN = 0.75
"""The low-rank form is used when :func:`_low_rank_pays` estimates at most this fraction of the
dense solve's work (a margin for its batched small factorisations, which run slower per
operation than the dense solver's large ones)."""


def _low_rank_pays(n: int, r: int, kept: int) -> bool:
    """Whether the ADMM solve of a layer with ``n`` inputs, ``kept`` of them kept per row,
    costs less on Hessians of rank ``r`` plus diagonal. Work per output row, in float32
    multiply-adds (a float64 one counted twice), at the solver's defaults (60 iterations, 60 CG
    iterations):

    - dense: ``60 * 2 n^2`` (triangular solves), plus ``2 * 60 * 2 n^2`` (CG, float64, two
      reconstructions), or, where rows keep few weights
      (:data:`~sbc_deploy.compress.obs.DIRECT_SOLVE_RATIO`), ``3 * 2 k^3 / 3`` (a Cholesky of
      each row's kept block);
    - low rank: ``60 * 4 n r`` per float32 run of
      :data:`~sbc_deploy.compress.obs.LOW_RANK_RUNS` (Woodbury), twice that per float64 run,
      plus ``2 n r^2`` per exact solve: one per run, the one-shot mask's, a swap round's.

    Measured (wall, load 3-6; benchmarks/results/scale_bar.md): at ``n = 2304, r ~ 256`` the
    four runs took 2.4-2.6x the dense solve's time (this model then takes the dense one), at
    ``n = 2304-4608, r <= 128`` 0.24-0.94x.
    """
    dense = 120.0 * n * n
    if kept**3 <= DIRECT_SOLVE_RATIO * n * n:
        dense += 2.0 * kept**3
    else:
        dense += 240.0 * n * n
    runs = sum(480.0 if dtype == torch.float64 else 240.0 for dtype, _ in LOW_RANK_RUNS)
    low = runs * n * r + 2.0 * (len(LOW_RANK_RUNS) + 2) * n * r * r
    return low <= LOW_RANK_GAIN * dense


def _low_rank(problem: LayerProblem, config: CompressionConfig,
              n_prune: int) -> list[DampedLowRank] | None:
    """Every row group's damped Hessian as low rank plus diagonal, or ``None`` (see
    :data:`LOW_RANK_FRACTION`)."""
    assert problem.H is not None
    n_out, n_in = (int(v) for v in problem.W.shape)
    max_rank = min(int(LOW_RANK_FRACTION * n_in), problem.rank_bound or 0)
    if problem.block is not None or max_rank < 1 or max_rank < (problem.rank_bound or 0):
        return None
    kept = n_in - n_prune // max(n_out, 1)
    found = []
    for g in range(problem.n_groups):
        low = low_rank_damped(problem.H[g], config.damp_frac, max_rank=max_rank,
                              where=f"layer {problem.layer.name} (row group {g})")
        if low is None or not _low_rank_pays(n_in, low.H.rank, kept):
            return None
        found.append(low)
    return found


SMALL_LAYER = 1 << 18  # weights below which one intra-op thread is fastest (see solve_problem)
SWEEP_DTYPE = torch.float32  # GPTQ sweeps run in float32 (as GPTQ / SBC); factors in float64


CURVE_ADMM = {"iters": 24, "rho_growth": 1.6, "swap_rounds": 0, "cg_iters": 30,
              "low_rank_runs": ((torch.float64, 1.0),)}
"""ADMM settings for the global allocation's loss curves: ~3x cheaper, a few % above the full
solver's loss (only the curves' relative shapes across layers matter there; one ADMM run on a
low-rank Hessian instead of :data:`~sbc_deploy.compress.obs.LOW_RANK_RUNS`)."""


def solve_problem(problem: LayerProblem, n_prune: int, config: CompressionConfig,
                  quantize: bool = True, curve: bool = False) -> SolveResult:
    """Prune ``n_prune`` weights with ``config.solver``, then quantise the rest (OBS passes).

    Threads: with ``config.threads=None``, layers under :data:`SMALL_LAYER` weights run on one
    intra-op thread (their many small ops only pay synchronisation on more; on a shared 2-core
    machine two threads made such passes ~10x slower), larger ones keep torch's setting.
    """
    small = config.threads is None and problem.W.numel() < SMALL_LAYER
    with torch_threads(1 if small else None):
        if problem.block is not None:
            return _solve_blocks(problem, n_prune, config, quantize, curve)
        return _solve_layer(problem, n_prune, config, quantize, curve)


def _shares(total: int, widths: list[int], caps: list[int]) -> list[int]:
    """``total`` split over blocks in proportion to ``widths`` (largest remainder), each at most
    its cap; what a cap refuses goes to the other blocks in order."""
    n = sum(widths)
    exact = [total * w / n for w in widths]
    share = [min(int(math.floor(e)), c) for e, c in zip(exact, caps)]
    order = sorted(range(len(widths)), key=lambda j: (-(exact[j] - math.floor(exact[j])), j))
    left = total - sum(share)
    while left > 0:
        moved = False
        for j in order:
            if left and share[j] < caps[j]:
                share[j] += 1
                left -= 1
                moved = True
        if not moved:
            break
    return share


def _solve_blocks(problem: LayerProblem, n_prune: int, config: CompressionConfig,
                  quantize: bool, curve: bool) -> SolveResult:
    """A block-diagonal Hessian: every block of inputs is an independent OBS problem.

    With ``H`` block-diagonal the loss is a sum over blocks, so each block is pruned on its own
    with its share of ``n_prune`` (in proportion to its width; a fan-in cap is split the same
    way, N:M groups lie inside blocks). The kept weights are then quantised block by block on
    one grid fitted to the whole layer (so SparseGPT's joint prune-and-quantise sweep becomes
    prune, then quantise, here).
    """
    blocks = problem.column_blocks()
    widths = [c.stop - c.start for c in blocks]
    n_out = int(problem.W.shape[0])
    if config.n_m is not None and any(w % config.n_m[1] for w in widths[:-1]):
        raise ConfigError(f"block size {problem.block} is not a multiple of the N:M group "
                          f"size {config.n_m[1]}", where=f"layer {problem.layer.name}")
    fan_ins = (None if config.fan_in is None
               else _shares(config.fan_in, widths, widths))
    least = [min_prune_count(n_out, w, config.n_m, None if fan_ins is None else fan_ins[j])
             for j, w in enumerate(widths)]
    extra = _shares(max(0, n_prune - sum(least)), widths,
                    [n_out * w - m for w, m in zip(widths, least)])
    counts = [m + e for m, e in zip(least, extra)]
    Q = torch.zeros_like(problem.W)
    mask = torch.zeros_like(problem.W, dtype=torch.bool)
    subs, damp_frac, raises = [], 0.0, 0
    for j, cols in enumerate(blocks):
        sub = problem.sub(j)
        sub_config = config if fan_ins is None else config.replace(fan_in=fan_ins[j])
        result = _solve_layer(sub, counts[j], sub_config, quantize=False, curve=curve)
        Q[:, cols], mask[:, cols] = result.Q, result.mask
        damp_frac = max(damp_frac, result.damp_frac or 0.0)
        raises += result.damp_raises
        subs.append(sub)
    grid: GridFit | None = None
    if quantize and config.quantize:
        grid = fit_layer_grid(problem.layer, Q, config)
        Qq = torch.zeros_like(Q)
        for sub, cols in zip(subs, blocks):
            damped = _damp(sub, config)
            Qq[:, cols] = _quantize(sub, Q[:, cols], mask[:, cols], damped, grid, config)
        Q = Qq
    return SolveResult(Q, mask, grid, damp_frac, raises)


def _quantize(problem: LayerProblem, Q: Tensor, mask: Tensor, damped: list[DampedInverse],
              grid: GridFit, config: CompressionConfig) -> Tensor:
    """GPTQ sweep of the kept weights onto ``grid``, per row group, mask fixed."""
    Qq = torch.zeros_like(Q)
    for g, d in enumerate(damped):
        rows = problem.rows(g)
        order = (authors_order(d.Hinv) if config.act_order
                 else torch.arange(Q.shape[1], device=Q.device))
        Qg, _ = obs_sweep(Q[rows][:, order].to(SWEEP_DTYPE), d.factor(order, SWEEP_DTYPE),
                          mask=mask[rows][:, order], grid=grid, grid_rows=rows,
                          block_size=config.block_size)
        Qq[rows[:, None], order[None, :]] = Qg.to(Qq.dtype)
    return Qq


def _solve_layer(problem: LayerProblem, n_prune: int, config: CompressionConfig,
                 quantize: bool, curve: bool) -> SolveResult:
    assert problem.H is not None
    # a low-rank Hessian: the ADMM solve in O(n r) per row; the dense damped inverse only for
    # the quantisation's sweep
    low = (_low_rank(problem, config, n_prune) if n_prune and config.solver == "admm"
           else None)
    damped: list[Any] = (low if low is not None and not (quantize and config.quantize)
                         else _damp(problem, config))
    W = problem.W.clone()
    rows_of = [problem.rows(g) for g in range(problem.n_groups)]
    if n_prune:
        for rows, d in zip(rows_of, damped):  # inputs never active: free to prune
            W[rows[:, None], torch.nonzero(d.dead).reshape(1, -1)] = 0.0
    quantize = quantize and config.quantize
    grid: GridFit | None = None
    mask = torch.zeros_like(W, dtype=torch.bool)
    Q = W
    joint = False
    if n_prune and config.solver == "admm" and low is not None:
        Q, mask = admm_prune(W, [d.H for d in low], problem.group, n_prune, n_m=config.n_m,
                             fan_in=config.fan_in, row_weight=problem.row_weight,
                             hinv_diag=torch.stack([d.hinv_diag for d in low]),
                             **(CURVE_ADMM if curve else {}))
    elif n_prune and config.solver == "admm":
        Q, mask = admm_prune(W, torch.stack([d.H for d in damped]), problem.group, n_prune,
                             n_m=config.n_m, fan_in=config.fan_in, row_weight=problem.row_weight,
                             hinv_diag=torch.stack([torch.diagonal(d.Hinv) for d in damped]),
                             **(CURVE_ADMM if curve else {}))
    elif n_prune and config.solver == "exact":
        Hd = torch.stack([d.H for d in damped])
        Q, mask = greedy_obs_prune(W, Hd, problem.group, n_prune, n_m=config.n_m,
                                   fan_in=config.fan_in, row_weight=problem.row_weight)
    elif n_prune:  # SparseGPT: adaptive per-block mask, jointly quantised in the same sweep
        joint = quantize
        grid = fit_layer_grid(problem.layer, W, config) if joint else None
        fixed = None
        if config.fan_in is not None or problem.n_groups > 1:
            # the per-block choice cannot see a row cap or several Hessians: fix the mask from
            # the OBS saliency row_weight * w^2 / Hinv_jj over the whole layer first
            diag = torch.stack([torch.diagonal(d.Hinv) for d in damped])[problem.group]
            saliency = problem.row_weight[:, None] * W**2 / diag
            fixed = select_mask(saliency, n_prune, n_m=config.n_m, fan_in=config.fan_in)
        Q = torch.zeros_like(W)
        mask = torch.zeros_like(W, dtype=torch.bool)
        for g, (rows, d) in enumerate(zip(rows_of, damped)):
            count = (n_prune if problem.n_groups == 1 else 0)
            Qg, Mg = obs_sweep(W[rows], d.U, mask=None if fixed is None else fixed[rows],
                               n_prune=count, n_m=config.n_m, grid=grid, grid_rows=rows,
                               block_size=config.block_size)
            Q[rows], mask[rows] = Qg, Mg
    if quantize and not joint:
        grid = fit_layer_grid(problem.layer, Q, config)
        Q = _quantize(problem, Q, mask, damped, grid, config)
    return SolveResult(Q, mask, grid, max(d.damp_frac for d in damped),
                       sum(d.raises for d in damped))


def result_to(result: SolveResult, device: torch.device) -> SolveResult:
    """The result with its tensors on ``device`` (the grid keeps its own)."""
    if result.Q.device == device:
        return result
    return SolveResult(result.Q.to(device), result.mask.to(device), result.grid,
                       result.damp_frac, result.damp_raises)


def loss_and_energy(problem: LayerProblem, Q: Tensor) -> tuple[float | None, float | None]:
    if problem.H is None:
        return None, None
    if problem.block is not None:  # the loss on the block-diagonal H: a sum over blocks
        parts = [loss_and_energy(problem.sub(j), Q[:, cols])
                 for j, cols in enumerate(problem.column_blocks())]
        return sum(p[0] for p in parts), sum(p[1] for p in parts)  # type: ignore[misc]
    loss = layer_loss(problem.W, Q, problem.H, problem.group, problem.row_weight)
    energy = layer_loss(problem.W, torch.zeros_like(problem.W), problem.H, problem.group,
                        problem.row_weight)
    return loss, energy


def compressed_node(layer: SynapseLayer, result: SolveResult) -> Any:
    shape = tuple(layer.synapse.weight.shape)
    if result.grid is None:
        return layer.synapse.with_weight(result.Q.cpu().numpy().reshape(shape))
    encoding = result.grid.encoding(result.Q, shape)
    return layer.synapse.with_weight(encoding.dequantize(), encoding)


def layer_stats(problem: LayerProblem, result: SolveResult, node: Any, solver: str,
                seconds: float) -> LayerStats:
    Q = torch.tensor(np.asarray(node.weight).reshape(problem.W.shape), device=problem.W.device)
    loss, energy = loss_and_energy(problem, Q)
    weight = np.asarray(node.weight)
    return LayerStats(
        name=problem.layer.name, kind=node.kind, shape=tuple(int(v) for v in weight.shape),
        pruned=int(result.mask.sum()),
        sparsity=float(1.0 - np.count_nonzero(weight) / weight.size),
        bits=None if result.grid is None else node.encoding.bits,
        grid=None if result.grid is None else result.grid.grid, loss=loss, dense_energy=energy,
        damp_frac=result.damp_frac, damp_raises=result.damp_raises,
        solver=solver if int(result.mask.sum()) else "none", seconds=seconds)


def solve_cost(problem: LayerProblem, n_prune: int) -> float:
    """Rough work of one solve (to deal solves out over processes): the Cholesky factors,
    ``groups n_in^3``, and the solver's sweeps, ``n_out n_in^2``, per diagonal block."""
    n_out, n_in = (int(v) for v in problem.W.shape)
    width = n_in if problem.block is None else min(problem.block, n_in)
    blocks = -(-n_in // width)
    work = problem.n_groups * width**3 + (n_out * width**2 if n_prune else 0)
    return float(blocks * work)



# --------------------------------------------------------------------------- memory


SOLVE_W_COPIES = 20
"""Weight-sized float64 buffers alive at the peak of one ADMM solve (W and its copy, the
preconditioned weights and right-hand sides, the masks' candidates, the reconstruction's
conjugate gradients and the swap refinement), measured on layers of 4096 x 2048 and
512 x 4608 (benchmarks/memory_accuracy.py); rounded up."""


def _solve_h_copies(size: HessianSize) -> float:
    """Hessian-sized float64 buffers of one solve (ADMM, the default solver): the damped H
    and its inverse per row group, their stack, the preconditioned H in float64 and float32
    and the Cholesky factors."""
    return 5.5 * size.hessians + 1


def solve_bytes(size: HessianSize, block: int | None) -> int:
    """Peak bytes of one layer's :func:`solve_problem`: the whole layer, or one diagonal block
    of ``block`` inputs at a time (``sbc_deploy.memory`` adds this up)."""
    side = size.n_in if block is None or block >= size.n_in else block
    h = _solve_h_copies(size) * size.hessians * side**2 * 8
    w = SOLVE_W_COPIES * size.n_out * side * 8
    if side < size.n_in:
        w += 9 * size.weights   # the layer's Q (float64) and mask, filled block by block
    return int(h + w)


__all__ = [
    "CURVE_ADMM", "LOW_RANK_FRACTION", "LOW_RANK_GAIN", "SMALL_LAYER", "SOLVE_W_COPIES",
    "SWEEP_DTYPE", "LayerProblem", "LayerStats", "SolveResult", "compressed_node", "fit_layer_grid",
    "layer_problem", "layer_stats", "loss_and_energy", "result_to", "solve_bytes", "solve_cost",
    "solve_problem",
]
