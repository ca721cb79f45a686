r"""Layer-wise OBS solvers: pruning, quantisation and both, on one layer's Hessian.

Stage contract: weights ``W (n_out, n_in)``, a damped Hessian per row group -> compressed
weights ``Q`` and the prune ``mask`` (True = pruned). Nothing here knows about graphs.

Every solver minimises the layer objective (``H_g`` is the Hessian of row group ``g``)::

    L(Q) = sum_rows row_weight[r] * (w_r - q_r) H_{g(r)} (w_r - q_r)^T
    subject to  q_r[mask_r] = 0,  q on the grid,  mask with exact count / N:M / fan-in cap

OBS facts used throughout (Hinv = H^-1, p a weight, J a set)::

    remove p:  dw = -(w_p / Hinv_pp) Hinv[:, p]              loss  w_p^2 / Hinv_pp
    remove J:  dw = -Hinv[:, J] Hinv_JJ^-1 w_J               loss  w_J^T Hinv_JJ^-1 w_J
    after removing p: Hinv <- Hinv - Hinv[:, p] Hinv[p, :] / Hinv_pp     (inverse downdate)

Solvers:

- :func:`obs_sweep` -- GPTQ / SparseGPT: one left-to-right sweep in a fixed column order with
  the upper Cholesky factor ``U`` of the damped inverse (``U^T U = Hinv``; row ``i`` of ``U``
  over ``U_ii`` is the OBS update direction once columns ``< i`` are fixed) and lazy block
  updates. Quantises (GPTQ), prunes with SparseGPT's adaptive per-block mask, or both; or
  applies a fixed mask. ``O(n_in^3 + n_out n_in^2)``.
- :func:`admm_prune` -- the fast pruning solver: ADMM on the OBS-preconditioned problem with a
  gradual sparsity schedule (Boza 2024, "Fast and Effective Weight Update for Pruned LLMs";
  ALPS, Meng et al. 2024), the mask chosen globally over the layer by an exact projection
  (:func:`~sbc_deploy.compress.masks.select_mask`), then the exact reconstruction on the final
  mask (batched direct solves when rows keep few weights, else conjugate gradients; the
  one-shot OBS mask is tried too) and a short swap search on the mask.
  ``O(iters * n_out n_in^2)`` in GEMMs. Within 5 % of exact greedy OBS, usually below it
  (benchmarks/results/solver.md; tests/test_obs.py).
- :func:`obs_prune_order` + :func:`greedy_obs_prune` -- the exact greedy reference: per row,
  remove the weight of least OBS loss one at a time (or ``group_size`` at a time, as SBC's
  code does) with explicit per-row inverse downdates, record each step's loss, choose the
  per-row counts globally over the layer (SBC / OBC), then reconstruct each row exactly.
  ``O(n_out n_in^3)``: for tests and small layers.
- :func:`sequential_obs_quantize` -- SBC's quantiser: columns in a fixed order, explicit
  ``Hinv`` and a rank-1 downdate per column (the reference for :func:`obs_sweep`).
- :func:`masked_reconstruct` -- the optimal weights for a fixed mask (per-row solves);
  :func:`kept_solve` -- the same for all rows at once (batched Cholesky of the kept blocks).

Example (identity Hessian: OBS is magnitude pruning)::

    >>> W = torch.tensor([[0.9, -0.1, 0.4, 0.05]], dtype=torch.float64)
    >>> H = torch.eye(4, dtype=torch.float64)[None]
    >>> Q, mask = admm_prune(W, H, torch.zeros(1, dtype=torch.long), 2)
    >>> mask.tolist(), Q.tolist()
    ([[False, True, False, True]], [[0.9, 0.0, 0.4, 0.0]])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass

import torch
from torch import Tensor

from sbc_deploy.compress.grids import GridFit
from sbc_deploy.compress.meter import tick
from sbc_deploy.compress.masks import max_kept_per_row, min_prune_count, select_mask
from sbc_deploy.errors import ConfigError, NumericalError, ShapeError

__all__ = [
    "LOW_RANK_RUNS", "Hessian", "LowRankPlusDiagonal", "admm_prune", "authors_order",
    "greedy_obs_prune", "kept_solve", "layer_loss",
    "masked_reconstruct", "obs_prune_order", "obs_sweep", "sequential_obs_quantize",
]


def layer_loss(W: Tensor, Q: Tensor, H: Tensor, group: Tensor | None = None,
               row_weight: Tensor | None = None) -> float:
    """``sum_r row_weight[r] (w_r - q_r) H_{group[r]} (w_r - q_r)^T`` in float64.

    ``H``: ``(n_in, n_in)`` or ``(groups, n_in, n_in)``.
    """
    D = (W - Q).to(torch.float64)
    H = H.to(torch.float64)
    if H.ndim == 2:
        per_row = ((D @ H) * D).sum(dim=1)
    else:
        group = (torch.zeros(W.shape[0], dtype=torch.long, device=D.device) if group is None
                 else group.to(D.device))
        per_row = torch.empty(W.shape[0], dtype=torch.float64, device=D.device)
        for g in range(H.shape[0]):
            rows = group == g
            per_row[rows] = ((D[rows] @ H[g]) * D[rows]).sum(dim=1)
    if row_weight is not None:
        per_row = per_row * row_weight.to(per_row)
    return float(per_row.sum())


def authors_order(Hinv: Tensor) -> Tensor:
    """SBC's quantisation order: ascending ``diag(Hinv)`` (most sensitive column first)."""
    return torch.argsort(torch.diagonal(Hinv), stable=True)


# --------------------------------------------------------------------------- GPTQ / SparseGPT


def _block_prune_counts(n_prune: int, rows: int, n: int, block_size: int,
                        n_m: tuple[int, int] | None) -> list[int]:
    """Per-block prune counts summing to ``n_prune``, each at least the block's N:M minimum."""
    blocks = [(i1, min(i1 + block_size, n)) for i1 in range(0, n, block_size)]
    minimum = [min_prune_count(rows, i2 - i1, n_m, None) for i1, i2 in blocks]
    capacity = [rows * (i2 - i1) - low for (i1, i2), low in zip(blocks, minimum)]
    extra, total = n_prune - sum(minimum), max(sum(capacity), 1)
    counts, done, cum = [], 0, 0
    for low, cap in zip(minimum, capacity):
        cum += cap
        share = round(extra * cum / total) - done  # cumulative rounding: exact total
        done += share
        counts.append(low + share)
    return counts


def obs_sweep(W: Tensor, U: Tensor, *, mask: Tensor | None = None, n_prune: int = 0,
              n_m: tuple[int, int] | None = None, grid: GridFit | None = None,
              grid_rows: Tensor | None = None, block_size: int = 128) -> tuple[Tensor, Tensor]:
    """One OBS sweep over the columns in their given order (SparseGPT Alg. 1; GPTQ if no mask).

    Minimises ``sum_rows (w - q) H (w - q)^T`` by fixing columns left to right and spreading
    each column's error onto the columns not yet fixed through ``U``.

    Args:
        W: ``(rows, n)`` weights, columns in sweep order (not modified).
        U: ``(n, n)`` upper Cholesky factor of the damped ``H^-1`` in the same order.
        mask: fixed ``(rows, n)`` prune mask (True = pruned), or ``None``.
        n_prune: with ``mask=None``: weights to prune, chosen per block of ``block_size``
            columns by the OBS saliency ``w^2 / U_jj^2`` over all rows (SparseGPT), exact in
            total. Needs natural column order for ``n_m``.
        n_m: N:M rule for the adaptive mask (``block_size`` is rounded up to a multiple of m).
        grid: quantise the kept weights onto this grid (``grid_rows`` selects its scales).
        block_size: columns per lazy block update.

    Returns:
        ``(Q, mask)``: compressed weights (zeros where masked, on ``grid`` elsewhere) and the
        mask used.
    """
    rows, n = W.shape
    if U.shape != (n, n):
        raise ShapeError(f"U has shape {tuple(U.shape)}, expected ({n}, {n})")
    if n_m is not None:
        block_size = math.ceil(block_size / n_m[1]) * n_m[1]
    Wt = W.T.clone(memory_format=torch.contiguous_format)  # (n, rows): a column per row
    U = U.to(W.dtype)
    Qt = torch.zeros_like(Wt)
    Mt = (torch.zeros_like(Wt, dtype=torch.bool) if mask is None
          else mask.T.contiguous())
    has_mask = mask is not None or bool(n_prune)
    if grid is not None:
        scale = grid.scale.to(W)
        scale = scale if grid_rows is None else scale[grid_rows]
        inv_scale = 1.0 / scale
    counts = (_block_prune_counts(n_prune, rows, n, block_size, n_m)
              if mask is None and n_prune else None)
    for b, i1 in enumerate(range(0, n, block_size)):
        i2 = min(i1 + block_size, n)
        W1 = Wt[i1:i2].clone()
        Err1 = torch.empty_like(W1)
        U1 = U[i1:i2, i1:i2]
        d_inv = (1.0 / torch.diagonal(U1)).tolist()
        if counts is not None:
            saliency = W1.T**2 / torch.diagonal(U1)[None, :] ** 2  # OBS: w^2 / [H_F^-1]_jj
            Mt[i1:i2] = select_mask(saliency, counts[b], n_m=n_m).T
        # one column per step, written straight into Qt / Err1 (few small ops: at a few
        # hundred rows the per-op overhead, not the arithmetic, is the cost)
        for i, (w, q, err1) in enumerate(zip(W1, Qt[i1:i2], Err1)):
            if grid is None:
                q.copy_(w)
            else:
                torch.mul(w, inv_scale, out=q).round_().clamp_(grid.low, grid.high).mul_(scale)
            if has_mask:
                q.masked_fill_(Mt[i1 + i], 0.0)
            torch.sub(w, q, out=err1).mul_(d_inv[i])
            W1[i + 1:].addr_(U1[i, i + 1:], err1, alpha=-1)  # exact OBS update in the block
        Wt[i2:] -= U[i1:i2, i2:].T @ Err1  # lazy update of the columns after the block
        tick("prune" if counts is not None else "quantize", i2, n, "columns")
    Q, M = Qt.T.contiguous(), Mt.T.contiguous()
    return Q, M


def sequential_obs_quantize(W: Tensor, H: Tensor, grid: GridFit, order: Tensor,
                            grid_rows: Tensor | None = None,
                            dtype: torch.dtype = torch.float64) -> Tensor:
    """SBC's quantiser: one column at a time in ``order``, explicit ``Hinv``, rank-1 downdates.

    ``H`` is the damped Hessian. For each column ``p``: ``q = grid(w_p)``,
    ``W += ((q - w_p) / Hinv_pp) Hinv[p, :]``, ``Hinv -= Hinv[:, p] Hinv[p, :] / Hinv_pp``.
    Equal to :func:`obs_sweep` in the same order up to rounding (tested).
    """
    W = W.clone().to(dtype)
    Hinv = torch.linalg.inv(H.to(dtype))  # SBC's torch.inverse
    for p in order.tolist():
        w = W[:, p].clone()
        q = grid.quantize(w, grid_rows)
        row = Hinv[p, :].clone()  # == Hinv[:, p] (symmetric)
        d = float(row[p])
        W.addr_((q - w) / d, row)         # OBS update of every other column
        Hinv.addr_(row, row, alpha=-1 / d)  # remove p from the inverse
        W[:, p] = q
    return W


# --------------------------------------------------------------------------- fixed-mask solves


def masked_reconstruct(W: Tensor, H: Tensor, mask: Tensor) -> Tensor:
    """Optimal weights for a fixed mask: per row, ``q_K = w_K + H_KK^-1 H_KP w_P``, ``q_P = 0``.

    ``K`` are the kept, ``P`` the pruned inputs of the row; ``H`` is damped (``(n, n)``).
    """
    Q = torch.zeros_like(W)
    for r in range(W.shape[0]):
        keep = ~mask[r]
        if not bool(keep.any()):
            continue
        pruned = mask[r]
        H_KK = H[keep][:, keep]
        rhs = H[keep][:, pruned] @ W[r, pruned]
        Q[r, keep] = W[r, keep] + torch.linalg.solve(H_KK, rhs)
    return Q


def kept_solve(B: Tensor, H: Tensor, keep: Tensor, *, chunk_rows: int = 64,
               max_bytes: int = 1 << 23) -> Tensor:
    """Per row ``r`` with kept inputs ``K``: ``X_K = H_KK^-1 B_K``, ``X_P = 0`` (direct, batched).

    With ``B = W H`` this is :func:`masked_reconstruct` (``H_KK q_K = (W H)_K = H_KK w_K +
    H_KP w_P``). Rows are sorted by their kept count and solved in chunks: each row's ``H_KK``
    is gathered into a ``(chunk, k, k)`` batch padded to the chunk's largest count ``k`` with
    the identity (zero right-hand side) and solved by one batched Cholesky. ``O(rows k^3)``:
    cheap when rows keep few weights.

    Args:
        B: ``(rows, n)`` right-hand sides.
        H: ``(n, n)`` symmetric positive definite.
        keep: ``(rows, n)`` bool, True = kept (free) weight.
        chunk_rows: rows per batched factorisation at most ...
        max_bytes: ... and fewer when a chunk's ``(chunk, k, k)`` blocks would exceed this.

    Raises:
        NumericalError: some ``H_KK`` is not positive definite (``H`` is not).
    """
    rows = B.shape[0]
    X = torch.zeros_like(B)
    counts = keep.sum(dim=1)
    k_max = int(counts.max()) if rows else 0
    if k_max == 0:
        return X
    # Per row: kept inputs first, in input order (a stable sort of "pruned"), then pruned ones.
    # A chunk's padding slots thus name distinct pruned inputs of the row, whose solution
    # (zero, from the identity block and zero right-hand side) is scattered back unharmed.
    J_all = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :k_max]
    slot = torch.arange(k_max, device=B.device)
    by_count = torch.argsort(counts, stable=True)
    c1 = 0
    while c1 < rows:
        k = int(counts[by_count[min(c1 + chunk_rows, rows) - 1]])
        chunk = min(chunk_rows, max(1, max_bytes // max(1, k * k * H.element_size())))
        R = by_count[c1:c1 + chunk]
        c1 += len(R)
        k = int(counts[R[-1]])
        if k == 0:
            continue
        J, ok = J_all[R, :k], slot[None, :k] < counts[R, None]
        H_KK = H[J[:, :, None], J[:, None, :]]                                 # (c, k, k)
        if not bool(ok.all()):  # padding: identity rows and columns
            H_KK.mul_(ok[:, :, None] & ok[:, None, :])
            torch.diagonal(H_KK, dim1=1, dim2=2).add_(~ok)
        L, info = torch.linalg.cholesky_ex(H_KK)
        if bool((info != 0).any()):
            raise NumericalError("a kept block H_KK of the Hessian is not positive definite",
                                 where="kept_solve", hint="damp the Hessian")
        B_K = torch.gather(B[R], 1, J) * ok
        X_K = torch.cholesky_solve(B_K[:, :, None], L)[:, :, 0]
        X[R] = X[R].scatter_(1, J, X_K * ok)
    return X


@dataclass(frozen=True, eq=False)
class LowRankPlusDiagonal:
    r"""A positive definite ``H = U U^T + diag(e)``: ``U (n, r)`` with ``r`` well below ``n``,
    ``e > 0``; what a damped Hessian summed from fewer rows than it has inputs is.

    Every product and solve costs ``O(n r)`` per row instead of ``O(n^2)`` (Woodbury)::

        (diag(l) + U U^T)^-1 = L^-1 - L^-1 U C^-1 U^T L^-1,   C = I + U^T L^-1 U   (r x r)

    and a row's system restricted to its kept inputs ``K`` is again diagonal plus low rank
    (``H_KK = U_K U_K^T + diag(e_K)``), so :meth:`masked_solve` solves every row exactly with
    one ``r x r`` Cholesky per row, where the dense solver needs conjugate gradients.

    Example (``H = [[2, 1], [1, 2]]``)::

        >>> H = LowRankPlusDiagonal(torch.ones(2, 1, dtype=torch.float64),
        ...                         torch.ones(2, dtype=torch.float64))
        >>> H.dense().tolist(), [round(v, 12) for v in H.inverse_diagonal().tolist()]
        ([[2.0, 1.0], [1.0, 2.0]], [0.666666666667, 0.666666666667])
    """

    U: Tensor
    e: Tensor

    def __post_init__(self) -> None:
        if self.U.ndim != 2 or self.e.shape != (self.U.shape[0],):
            raise ShapeError(f"U must be (n, r) and e (n,), got {tuple(self.U.shape)} and "
                             f"{tuple(self.e.shape)}")

    @property
    def n(self) -> int:
        return int(self.U.shape[0])

    @property
    def rank(self) -> int:
        return int(self.U.shape[1])

    def diagonal(self) -> Tensor:
        return (self.U * self.U).sum(dim=1) + self.e

    def dense(self) -> Tensor:
        return torch.addmm(torch.diag(self.e), self.U, self.U.T)

    def rmatmul(self, P: Tensor) -> Tensor:
        """``P @ H`` for rows ``P (m, n)``."""
        return torch.addmm(P * self.e, P @ self.U, self.U.T)

    def to(self, dtype: torch.dtype) -> LowRankPlusDiagonal:
        """The same matrix in ``dtype``."""
        return LowRankPlusDiagonal(self.U.to(dtype), self.e.to(dtype))

    def scaled(self, d: Tensor) -> LowRankPlusDiagonal:
        """``D^-1 H D^-1`` with ``D = diag(d)``."""
        return LowRankPlusDiagonal(self.U / d[:, None], self.e / d**2)

    def _capacitance(self, lam: Tensor) -> tuple[Tensor, Tensor]:
        """``V = L^-1 U`` and the Cholesky factor of ``C = I + U^T V`` for ``L = diag(lam)``."""
        V = self.U / lam[:, None]
        C = self.U.T @ V
        torch.diagonal(C).add_(1.0)
        return V, torch.linalg.cholesky(C)

    def inverse_diagonal(self) -> Tensor:
        """``diag(H^-1)``."""
        V, Lc = self._capacitance(self.e)
        return 1.0 / self.e - (torch.cholesky_solve(V.T, Lc).T * V).sum(dim=1)

    def shifted(self, rho: float) -> tuple[Tensor, Tensor, Tensor]:
        """The factors of ``H + rho I`` for :meth:`solve_shifted`."""
        lam = self.e + rho
        V, Lc = self._capacitance(lam)
        return lam, V, Lc

    def solve_shifted(self, factors: tuple[Tensor, Tensor, Tensor], rhs: Tensor) -> Tensor:
        """``rhs (H + rho I)^-1`` for rows ``rhs (m, n)`` (``factors`` from :meth:`shifted`)."""
        lam, V, Lc = factors
        Y = rhs / lam
        S = torch.cholesky_solve((Y @ self.U).T, Lc).T
        return Y.sub_(S @ V.T)

    def masked_solve(self, B: Tensor, keep: Tensor, max_bytes: int | None = None) -> Tensor:
        """Per row ``r`` with kept inputs ``K``: ``X_K = H_KK^-1 B_K``, ``X_P = 0`` (exact).

        ``H_KK^-1 b_K = b_K / e_K - (U_K / e_K) C_r^-1 U_K^T (b_K / e_K)`` with
        ``C_r = I + U_K^T diag(1 / e_K) U_K``, one small Cholesky per row. ``O(rows n r^2)``.
        The ``C_r`` of a chunk of rows are GEMMs ``(keep / e) @ [u_j u_j^T]_j`` (rows x n
        times n x r^2, over chunks of ``j``) when chunks of 64 rows and 64 inputs fit, else
        batched products of ``(chunk, n, r)`` scaled copies of ``U``; either way the working
        set stays within ``max_bytes`` (default: the bytes of a dense ``H``, which the memory
        plan counts for every solve).
        """
        n, r = self.n, self.rank
        if r == 0:  # diagonal
            return B * keep.to(B.dtype) / self.e
        X = torch.zeros_like(B)
        if not B.shape[0]:
            return X
        size = B.element_size()
        budget = n * n * size if max_bytes is None else max_bytes
        eye = torch.eye(r, dtype=B.dtype, device=B.device)
        per_outer = r * r * size
        by_outer = budget // 2 // per_outer >= 64
        chunk = (budget // 2 // per_outer if by_outer
                 else max(1, budget // max(1, n * r * size)))
        for c1 in range(0, B.shape[0], chunk):
            m = keep[c1:c1 + chunk].to(B.dtype) / self.e          # 1 / e_K, 0 off K
            Y = B[c1:c1 + chunk] * m                               # b_K / e_K
            if by_outer:
                C = torch.zeros(m.shape[0], r * r, dtype=B.dtype, device=B.device)
                for j1 in range(0, n, chunk):
                    Uj = self.U[j1:j1 + chunk]
                    C.addmm_(m[:, j1:j1 + chunk], (Uj[:, :, None] * Uj[:, None, :]).reshape(
                        -1, r * r))
                C = C.reshape(-1, r, r)
            else:
                C = torch.matmul((m[:, :, None] * self.U).transpose(1, 2), self.U)
            C += eye                                               # (c, r, r)
            L, info = torch.linalg.cholesky_ex(C)
            if bool((info != 0).any()):
                raise NumericalError("a kept block of a low-rank Hessian is not positive "
                                     "definite", where="LowRankPlusDiagonal.masked_solve",
                                     hint="damp the Hessian")
            S = torch.cholesky_solve((Y @ self.U)[:, :, None], L)[:, :, 0]
            X[c1:c1 + chunk] = Y.sub_((S @ self.U.T).mul_(m))
        return X


Hessian = Tensor | LowRankPlusDiagonal
"""One row group's Hessian: a dense ``(n, n)`` tensor or a :class:`LowRankPlusDiagonal`."""


def _mm(H: Hessian, P: Tensor) -> Tensor:
    """``P @ H``."""
    return H.rmatmul(P) if isinstance(H, LowRankPlusDiagonal) else P @ H


def _diag(H: Hessian) -> Tensor:
    return H.diagonal() if isinstance(H, LowRankPlusDiagonal) else torch.diagonal(H)


def _group_rows(group: Tensor, n_groups: int) -> list[Tensor]:
    return [torch.nonzero(group == g).reshape(-1) for g in range(n_groups)]


def _conjugate_gradients(Hs: Sequence[Hessian], rows_of: Sequence[Tensor], B: Tensor, X: Tensor,
                         keep: Tensor, iters: int, tol: float) -> Tensor:
    """Solve ``(X Hs_g)_K = B_K`` with ``X_P = 0`` per row (all rows at once), warm start ``X``."""

    # In-place updates where a value is not needed any more (the same operations on the same
    # values as out-of-place ones, so the same bits; a few (rows, n) buffers fewer).
    def matmul(P: Tensor) -> Tensor:
        out = torch.empty_like(P)
        for g, rows in enumerate(rows_of):
            out[rows] = _mm(Hs[g], P[rows])
        return out.mul_(keep)

    X = X * keep
    R = B - matmul(X)
    R.mul_(keep)
    P = R.clone()
    rr = (R * R).sum(dim=1)
    scale = (B * keep).pow_(2).sum(dim=1).clamp_min(torch.finfo(B.dtype).tiny)
    for _ in range(iters):
        if float((rr / scale).max()) < tol**2:
            break
        AP = matmul(P)
        alpha = rr / (P * AP).sum(dim=1).clamp_min(torch.finfo(B.dtype).tiny)
        X.add_(alpha[:, None] * P)
        R.sub_(alpha[:, None] * AP)
        del AP
        rr_new = (R * R).sum(dim=1)
        P.mul_((rr_new / rr.clamp_min(torch.finfo(B.dtype).tiny))[:, None]).add_(R)
        rr = rr_new
    return X


DIRECT_SOLVE_RATIO = 8.0
"""Fixed-mask solves are direct (:func:`kept_solve`) when the largest kept count ``k`` of a
row group satisfies ``k^3 <= DIRECT_SOLVE_RATIO * n_in^2``, else conjugate gradients. Measured
on 1 thread (benchmarks/solver.py layers): the batched Cholesky at ``k^3 = 8 n^2`` costs about
what 10-15 CG iterations cost at 1024 inputs, and the CG solves here take 20-60 iterations."""


def _direct(keep: Tensor) -> bool:
    """Whether rows with these kept weights are solved directly (:data:`DIRECT_SOLVE_RATIO`)."""
    k = int(keep.sum(dim=1).max()) if keep.shape[0] else 0
    return k**3 <= DIRECT_SOLVE_RATIO * keep.shape[1] ** 2


def _scaled_loss(Hs: Sequence[Hessian], rows_of: Sequence[Tensor], Ws: Tensor, X: Tensor) -> float:
    return sum(float((_mm(Hs[g], X[rows] - Ws[rows]) * (X[rows] - Ws[rows])).sum())
               for g, rows in enumerate(rows_of))


def _solve_on_mask(Hs: Sequence[Hessian], rows_of: Sequence[Tensor], B: Tensor, X: Tensor,
                   mask: Tensor, cg_iters: int, cg_tol: float,
                   only: Tensor | None = None) -> Tensor:
    """The exact optimum for a fixed mask: per row ``X_K = Hs_KK^-1 B_K``, ``X_P = 0``.

    Direct (:func:`kept_solve`) for row groups that keep few weights per row, else conjugate
    gradients from the warm start ``X`` (to ``cg_tol`` relative residual, ``cg_iters`` at most).
    With ``only`` (bool per row), just those rows are solved; the others keep ``X``.
    """
    keep = ~mask
    out = X.clone()
    cg_rows: list[Tensor] = []
    cg_groups: list[int] = []
    for g, rows in enumerate(rows_of):
        if only is not None:
            rows = rows[only[rows]]
        if not len(rows):
            continue
        if isinstance(Hs[g], LowRankPlusDiagonal):  # exact, O(n r^2) per row
            out[rows] = Hs[g].masked_solve(B[rows], keep[rows])
        elif _direct(keep[rows]):
            out[rows] = kept_solve(B[rows], Hs[g], keep[rows])
        else:
            cg_rows.append(rows)
            cg_groups.append(g)
    if cg_rows:
        rows = torch.cat(cg_rows)
        ends = torch.cumsum(torch.tensor([len(r) for r in cg_rows]), 0).tolist()
        local = [torch.arange(e - len(r), e, device=B.device) for r, e in zip(cg_rows, ends)]
        out[rows] = _conjugate_gradients([Hs[g] for g in cg_groups], local, B[rows], X[rows],
                                         keep[rows].to(B.dtype), cg_iters, cg_tol)
    return out


def _gradient(Hs: Sequence[Hessian], rows_of: Sequence[Tensor], D: Tensor,
              only: Tensor | None = None) -> Tensor:
    """``D Hs_g`` per row group (rows outside ``only`` are left at zero)."""
    G = torch.zeros_like(D)
    for g, rows in enumerate(rows_of):
        if only is not None:
            rows = rows[only[rows]]
        if len(rows):
            G[rows] = _mm(Hs[g], D[rows])
    return G


def _swap_refine(Hs: Sequence[Hessian], rows_of: Sequence[Tensor], B: Tensor, Ws: Tensor,
                 X: Tensor, mask: Tensor, n_m: tuple[int, int] | None, fan_in: int | None,
                 rounds: int, cg_iters: int, cg_tol: float) -> tuple[Tensor, Tensor]:
    """Local search on the mask: swap kept and pruned weights while the exact loss drops.

    At the optimum ``X`` of a mask the gradient ``G = (X - Ws) Hs`` vanishes on kept weights.
    Freeing a pruned ``j`` gains at least ``G_j^2 / Hs_jj``; pruning a kept ``i`` costs at most
    ``X_i^2 Hs_ii``. The ``count`` most promising of each are let free and the mask re-chosen
    among them (same count, same rules), the rows whose mask changed re-solved (the others
    stay optimal), and the swap kept only if the loss fell (else ``count`` halves).
    """
    diag = torch.empty_like(X)
    for g, rows in enumerate(rows_of):
        diag[rows] = _diag(Hs[g])[None, :]
    G = _gradient(Hs, rows_of, X - Ws)
    row_loss = (G * (X - Ws)).sum(dim=1)  # (x - ws) Hs (x - ws)^T per row
    count = max(1, int(0.02 * int((~mask).sum())))
    n_prune = int(mask.sum())
    for _ in range(rounds):
        gain = (G**2 / diag).masked_fill(~mask, -math.inf).reshape(-1)
        cost = (X**2 * diag).masked_fill(mask, math.inf).reshape(-1)
        free = torch.zeros_like(gain, dtype=torch.bool)
        free[torch.topk(gain, min(count, n_prune)).indices] = True
        free[torch.topk(cost, min(count, X.numel() - n_prune), largest=False).indices] = True
        fixed = torch.full_like(gain, torch.finfo(X.dtype).max / 4)
        value = torch.where(mask.reshape(-1), gain.clamp_min(0), cost)
        value = torch.where(free, value, torch.where(mask.reshape(-1), -fixed, fixed))
        candidate = select_mask(value.reshape(X.shape), n_prune, n_m=n_m, fan_in=fan_in)
        changed = (candidate != mask).any(dim=1)
        if not bool(changed.any()):
            break
        Y = _solve_on_mask(Hs, rows_of, B, X.masked_fill(candidate, 0.0), candidate, cg_iters,
                           cg_tol, only=changed)
        G_new = _gradient(Hs, rows_of, Y - Ws, only=changed)[changed]
        new_loss = (G_new * (Y[changed] - Ws[changed])).sum(dim=1)
        if float(new_loss.sum()) < float(row_loss[changed].sum()):
            X, mask = Y, candidate
            G[changed], row_loss[changed] = G_new, new_loss
        else:
            count //= 2
            if count == 0:
                break
    return X, mask


# --------------------------------------------------------------------------- fast pruning


LOW_RANK_RUNS: tuple[tuple[torch.dtype, float], ...] = (
    (torch.float64, 1.0), (torch.float32, 1.0), (torch.float64, 0.3), (torch.float64, 0.1))
""":func:`admm_prune`'s runs on low-rank Hessians: ``(working precision, factor on rho0)``.
ADMM is a heuristic for a non-convex problem: one run's mask moves with the rounding of its
iterations (float32 against float64: up to ~1 % of the loss either way) and with the penalty
(lower penalties let the weights move further before the mask settles). On 48 random spiking
layers (256-512 inputs, 32-120 calibration rows; benchmarks/low_rank_loss.py --random 8) the
best of these four runs lost 0.06-6 % less than the dense path (one float32 run at ``rho0``)
on 45 and at most 0.03 % more on 3 (N:M 2:4 at its minimum count), where one float64 run
alone lost more on 22 (up to 1 %): benchmarks/results/scale_bar.md. A run costs
``O(iters n r)`` per row, against the dense path's ``O(iters n^2)``."""


@dataclass(frozen=True, eq=False)
class _Preconditioned:
    """:func:`admm_prune`'s problem after OBS preconditioning: ``Ws = s W D`` (float64),
    ``Hs_g = D^-1 H_g D^-1``, ``B = Ws Hs`` per row group, ``scale = s D`` per weight; and the
    mask rules (exact count ``n_prune``, at least ``minimum``, N:M, fan-in cap)."""

    Hs: list[Hessian]
    rows_of: list[Tensor]
    Ws: Tensor
    B: Tensor
    scale: Tensor
    n_prune: int
    minimum: int
    n_m: tuple[int, int] | None
    fan_in: int | None

    def select(self, scores: Tensor, k: int | None = None) -> Tensor:
        """The mask of the ``k`` (default ``n_prune``) smallest scores the rules allow."""
        return select_mask(scores, self.n_prune if k is None else k, n_m=self.n_m,
                           fan_in=self.fan_in)

    def solve(self, X: Tensor, mask: Tensor, cg: tuple[int, float]) -> Tensor:
        """The optimum on ``mask`` (:func:`_solve_on_mask`, warm start ``X``)."""
        return _solve_on_mask(self.Hs, self.rows_of, self.B, X, mask, *cg)

    def loss(self, X: Tensor) -> float:
        return _scaled_loss(self.Hs, self.rows_of, self.Ws, X)


@dataclass(frozen=True)
class _Schedule:
    """ADMM's penalty and sparsity schedule (:func:`admm_prune`'s arguments)."""

    iters: int
    rho0: float
    rho_growth: float
    rho_every: int
    ramp: float


def admm_prune(W: Tensor, H: Tensor | Sequence[LowRankPlusDiagonal], group: Tensor,
               n_prune: int, *,
               n_m: tuple[int, int] | None = None, fan_in: int | None = None,
               row_weight: Tensor | None = None, iters: int = 60, rho0: float = 0.01,
               rho_growth: float = 1.32, rho_every: int = 4, ramp: float = 0.6,
               cg_iters: int = 60, cg_tol: float = 1e-6,
               swap_rounds: int = 6, hinv_diag: Tensor | None = None,
               dtype: torch.dtype = torch.float32,
               low_rank_runs: Sequence[tuple[torch.dtype, float]] = LOW_RANK_RUNS,
               ) -> tuple[Tensor, Tensor]:
    """Prune ``n_prune`` weights of the layer by ADMM, then reconstruct exactly (fast solver).

    Minimises ``L(Q)`` (module docstring) over masks with the exact count and the N:M /
    fan-in rules. The problem is first preconditioned so that a weight's magnitude is its OBS
    saliency: with ``d_j = Hinv_jj^(-1/2)`` (per row group) and ``s_r = row_weight_r^(1/2)``,
    ``Ws = s W D`` and ``Hs = D^-1 H D^-1``. Then, with a penalty ``rho`` that grows from
    ``rho0 * mean(diag Hs)`` by ``rho_growth`` every ``rho_every`` iterations and a sparsity
    that ramps up cubically over the first ``ramp`` fraction of the iterations::

        Wk = (Ws Hs + rho (Z - V)) (Hs + rho I)^-1      # weight update (one Cholesky per rho)
        Z  = project(Wk + V)                            # keep the largest |.| the rules allow
        V  = V + Wk - Z                                 # scaled dual variable

    Finally the rows are solved exactly on the last mask (a batched
    direct solve of every row's kept block when rows keep few weights, else conjugate
    gradients to ``cg_tol``); the one-shot OBS mask (the largest ``|Ws|``) is solved too and
    kept if better (ADMM is a heuristic for a non-convex problem: with ``H = I`` its mask need
    not be the optimal magnitude mask), and ``swap_rounds`` rounds of :func:`_swap_refine`
    follow.

    Low-rank Hessians (``H`` a sequence of :class:`LowRankPlusDiagonal`, one per row group:
    a layer calibrated on fewer rows than it has inputs) take the same steps at ``O(n r)`` per
    row: the weight update by Woodbury, and every reconstruction on a mask by an exact solve of
    every row (:meth:`LowRankPlusDiagonal.masked_solve`) instead of conjugate gradients. The
    iterations cost little there, so they run once per entry of ``low_rank_runs`` (precision
    and penalty; ``dtype`` is ignored), and every run's mask and the one-shot mask are compared
    at their exact losses (:func:`_best_low_rank_mask`, :data:`LOW_RANK_RUNS`).

    Args:
        W: ``(n_out, n_in)`` weights (not modified).
        H: ``(groups, n_in, n_in)`` damped Hessians, positive definite, or one
            :class:`LowRankPlusDiagonal` per group.
        group: ``(n_out,)`` row -> Hessian group.
        n_prune: weights to prune in the layer (at least the N:M / fan-in minimum).
        row_weight: ``(n_out,)`` positive weight of each row's loss (default 1).
        hinv_diag: ``(groups, n_in)`` diagonals of ``H^-1`` if already known.
        dtype: working precision of the iterations (the result is float64).
        low_rank_runs: low-rank Hessians only: ``(precision, factor on rho0)`` of each ADMM
            run (at least one); the best mask is kept.

    Returns:
        ``(Q, mask)``: float64 weights and the bool mask (True = pruned).
    """
    low_rank = _check_admm_arguments(W, H, low_rank_runs)
    minimum = min_prune_count(*W.shape, n_m, fan_in)
    if not minimum <= n_prune <= W.numel():
        raise ConfigError(f"cannot prune {n_prune} of {W.numel()} weights (minimum {minimum})",
                          where="n_prune")
    p = _precondition(W, H, group, row_weight, hinv_diag, (n_prune, minimum, n_m, fan_in))
    schedule = _Schedule(iters, rho0, rho_growth, rho_every, ramp)
    cg = (cg_iters, cg_tol)
    if low_rank:
        X, mask, steps = _best_low_rank_mask(p, schedule, low_rank_runs, cg)
    else:
        X, mask, steps = _dense_mask(p, schedule, dtype, cg)
    X, mask = _swap_refine(p.Hs, p.rows_of, p.B, p.Ws, X, mask, n_m, fan_in, swap_rounds, *cg)
    tick("prune", steps, steps, "steps")
    return X / p.scale, mask


def _check_admm_arguments(W: Tensor, H: Tensor | Sequence[LowRankPlusDiagonal],
                          runs: Sequence[tuple[torch.dtype, float]]) -> bool:
    """:func:`admm_prune`'s Hessian shapes checked; whether they are low-rank."""
    n_in = W.shape[1]
    if isinstance(H, Tensor):
        if H.ndim != 3 or H.shape[1:] != (n_in, n_in):
            raise ShapeError(f"H must be (groups, {n_in}, {n_in}), got {tuple(H.shape)}")
        return False
    if any(not isinstance(h, LowRankPlusDiagonal) or h.n != n_in for h in H):
        raise ShapeError(f"H must be a (groups, {n_in}, {n_in}) tensor or a sequence of "
                         f"LowRankPlusDiagonal of side {n_in}")
    if not runs:
        raise ConfigError("low_rank_runs must name at least one run", where="low_rank_runs")
    return True


def _precondition(W: Tensor, H: Tensor | Sequence[LowRankPlusDiagonal], group: Tensor,
                  row_weight: Tensor | None, hinv_diag: Tensor | None,
                  rules: tuple[int, int, tuple[int, int] | None, int | None]
                  ) -> _Preconditioned:
    """The OBS preconditioning of :func:`admm_prune`: ``|Ws|`` is the saliency
    ``sqrt(row_weight * w^2 / Hinv_jj)``."""
    n_out, n_in = W.shape
    device = W.device
    rows_of = _group_rows(group.to(device), len(H))
    rw = torch.ones(n_out, dtype=torch.float64, device=device) if row_weight is None \
        else row_weight.to(device=device, dtype=torch.float64)
    rw = rw.clamp_min(1e-12 * float(rw.max()) if float(rw.max()) > 0 else 1.0)
    Hs: list[Hessian] = []
    d = torch.empty(n_out, n_in, dtype=torch.float64, device=device)
    for g, rows in enumerate(rows_of):
        Hg = H[g]
        if isinstance(Hg, LowRankPlusDiagonal):
            diag = Hg.inverse_diagonal() if hinv_diag is None else hinv_diag[g]
            d_g = diag.to(torch.float64).rsqrt()
            Hs.append(Hg.scaled(d_g))
        else:
            Hg = Hg.to(torch.float64)
            diag = (torch.diagonal(torch.cholesky_inverse(torch.linalg.cholesky(Hg)))
                    if hinv_diag is None else hinv_diag[g].to(torch.float64))
            d_g = diag.rsqrt()
            Hs.append(Hg / d_g[:, None] / d_g[None, :])
        d[rows] = d_g[None, :]
    scale = d * rw.sqrt()[:, None]
    del d  # memory: only ``scale`` is needed from here on
    Ws = W.to(torch.float64) * scale
    B = torch.empty_like(Ws)
    for g, rows in enumerate(rows_of):
        B[rows] = _mm(Hs[g], Ws[rows])
    return _Preconditioned(Hs, rows_of, Ws, B, scale, *rules)


def _dense_mask(p: _Preconditioned, schedule: _Schedule, dtype: torch.dtype,
                cg: tuple[int, float]) -> tuple[Tensor, Tensor, int]:
    """Dense Hessians: ADMM's iterations in ``dtype``, the reconstruction on their mask, and
    the one-shot OBS mask (the largest ``|Ws|``) if a screen by a few CG iterations finds it
    better. Returns ``(X, mask, steps)`` (the progress steps of the whole solve)."""
    steps = schedule.iters + 2
    Z, mask = _admm_iterations(p, schedule, schedule.rho0, dtype, (0, steps))
    X = p.solve(Z, mask, cg)
    tick("prune", schedule.iters + 1, steps, "steps")
    del Z
    one_shot = p.select(p.Ws.abs())
    if not torch.equal(one_shot, mask):
        # Screen it by a few CG iterations (CG only lowers the loss: an upper bound); it wins
        # mainly on near-diagonal Hessians, where CG converges at once.
        keep = (~one_shot).to(torch.float64)
        Y = _conjugate_gradients(p.Hs, p.rows_of, p.B, p.Ws, keep, max(2, cg[0] // 20), cg[1])
        if p.loss(Y) < p.loss(X):
            X, mask = p.solve(Y, one_shot, cg), one_shot
    return X, mask, steps


def _best_low_rank_mask(p: _Preconditioned, schedule: _Schedule,
                        runs: Sequence[tuple[torch.dtype, float]], cg: tuple[int, float]
                        ) -> tuple[Tensor, Tensor, int]:
    """Low-rank Hessians: ADMM's iterations once per ``(precision, factor on rho0)`` in
    ``runs`` (:data:`LOW_RANK_RUNS`); every solve on a mask is exact and cheap here, so each
    run's mask and the one-shot OBS mask (the largest ``|Ws|``) are reconstructed exactly and
    the one of least loss is kept (ties: the earlier run, then the one-shot mask). Returns
    ``(X, mask, steps)`` (the progress steps of the whole solve)."""
    steps = len(runs) * schedule.iters + 2
    masks = [_admm_iterations(p, schedule, schedule.rho0 * factor, dtype,
                              (i * schedule.iters, steps))[1]
             for i, (dtype, factor) in enumerate(runs)]
    masks.append(p.select(p.Ws.abs()))
    best: tuple[float, Tensor, Tensor] | None = None
    for i, mask in enumerate(masks):
        if any(torch.equal(mask, earlier) for earlier in masks[:i]):
            continue
        X = p.solve(p.Ws, mask, cg)
        loss = p.loss(X)
        if best is None or loss < best[0]:
            best = (loss, X, mask)
    assert best is not None
    tick("prune", steps - 1, steps, "steps")
    return best[1], best[2], steps


def _admm_iterations(p: _Preconditioned, schedule: _Schedule, rho0: float, dtype: torch.dtype,
                     progress: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """:func:`admm_prune`'s iterations in ``dtype`` from the penalty ``rho0 * mean(diag Hs)``:
    the last ``Z`` (float64) and its mask. ``progress``: the steps done before these and the
    steps in all, for the progress ticks."""
    n_in = p.Ws.shape[1]
    Ws, B = p.Ws.to(dtype), p.B.to(dtype)
    Hs_w = [Hs_g.to(dtype) for Hs_g in p.Hs]
    rho = [rho0 * float(_diag(Hs_g).mean()) for Hs_g in Hs_w]
    eye = (None if isinstance(Hs_w[0], LowRankPlusDiagonal)
           else torch.eye(n_in, dtype=dtype, device=Ws.device))
    Z, V = Ws.clone(), torch.zeros_like(Ws)
    mask = torch.zeros_like(Ws, dtype=torch.bool)
    ramp_iters = max(1, int(schedule.iters * schedule.ramp))
    L: list[Any] = []
    for it in range(schedule.iters):
        if it % schedule.rho_every == 0:
            if it:
                rho = [r * schedule.rho_growth for r in rho]
            L = [_shifted(Hs_g, r, eye) for Hs_g, r in zip(Hs_w, rho)]
        if len(p.rows_of) == 1:  # one Hessian: no row gathers
            Wk = _solve_shifted(Hs_w[0], L[0], torch.add(B, Z - V, alpha=rho[0]))
        else:
            Wk = torch.empty_like(Ws)
            for g, rows in enumerate(p.rows_of):
                rhs = B[rows] + rho[g] * (Z[rows] - V[rows])
                Wk[rows] = _solve_shifted(Hs_w[g], L[g], rhs)
        frac = min(1.0, (it + 1) / ramp_iters)
        k = max(p.minimum, round(p.n_prune * (1.0 - (1.0 - frac) ** 3)))
        Z = Wk + V
        new = p.select(Z.abs(), k)  # exact counts matter (tested)
        Z.mul_(~new)
        V += Wk - Z
        mask = new
        tick("prune", progress[0] + it + 1, progress[1], "steps")
    # memory: the iterations' working set goes before the reconstruction (sbc_deploy.memory)
    return Z.to(torch.float64), mask


def _shifted(H: Hessian, rho: float, eye: Tensor | None) -> Any:
    """The factor of ``H + rho I`` that :func:`_solve_shifted` uses."""
    if isinstance(H, LowRankPlusDiagonal):
        return H.shifted(rho)
    return torch.linalg.cholesky(H + rho * eye)


def _solve_shifted(H: Hessian, factor: Any, rhs: Tensor) -> Tensor:
    """``rhs (H + rho I)^-1`` for rows ``rhs`` (``factor`` from :func:`_shifted`)."""
    if isinstance(H, LowRankPlusDiagonal):
        return H.solve_shifted(factor, rhs)
    return torch.cholesky_solve(rhs.T, factor).T


# --------------------------------------------------------------------------- exact greedy OBS


def obs_prune_order(W: Tensor, H: Tensor, group: Tensor, *, n_m: tuple[int, int] | None = None,
                    group_size: int = 1, row_batch: int = 64,
                    dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Greedy OBS removal order of every row (pass 1 of SBC / OBC's ExactOBS).

    Per row, with its own copy of ``Hinv``: repeatedly remove the ``group_size`` remaining
    weights of least saliency ``w_p^2 / Hinv_pp`` (``group_size=1``: exact one-at-a-time OBS),
    update the row (group OBS update) and downdate its inverse, recording each weight's
    saliency when it went. With ``n_m``, weights of an N:M group that already lost ``m - n`` are
    skipped until every group of the row has, then all remaining weights compete.

    Args:
        W: ``(n_out, n_in)``; H: ``(groups, n_in, n_in)`` damped; group: ``(n_out,)``.
        row_batch: rows processed together (memory ``row_batch * n_in^2``).

    Returns:
        ``(order, saliency)``: ``(n_out, n_in)`` input indices in removal order and the
        saliency recorded at each step.
    """
    n_out, n_in = W.shape
    device = W.device
    order = torch.empty(n_out, n_in, dtype=torch.long, device=device)
    saliency = torch.empty(n_out, n_in, dtype=torch.float64, device=device)
    nm_steps = n_in - max_kept_per_row(n_in, n_m, None) if n_m is not None else 0
    for g, rows_g in enumerate(_group_rows(group.to(device), H.shape[0])):
        Hinv0 = torch.cholesky_inverse(torch.linalg.cholesky(H[g].to(torch.float64))).to(dtype)
        for b1 in range(0, len(rows_g), row_batch):
            rows = rows_g[b1:b1 + row_batch]
            R = len(rows)
            w = W[rows].to(dtype).clone()
            Hinv = Hinv0.expand(R, n_in, n_in).clone()
            removed = torch.zeros(R, n_in, dtype=torch.bool, device=device)
            step = 0
            while step < n_in:
                size = 1 if step < nm_steps else min(group_size, n_in - step)
                score = w**2 / torch.diagonal(Hinv, dim1=1, dim2=2)
                blocked = removed
                if step < nm_steps:
                    # N:M first: skip groups that already lost their m - n weights
                    n, m = n_m  # type: ignore[misc]
                    pad = (-n_in) % m
                    lost = torch.cat([removed, removed.new_zeros(R, pad)], 1)
                    lost = lost.reshape(R, -1, m).sum(dim=2)
                    limit = torch.full((lost.shape[1],), m - n, device=device)
                    if pad:
                        limit[-1] = max(0, m - pad - n)
                    full = (lost >= limit).repeat_interleave(m, dim=1)[:, :n_in]
                    blocked = removed | full
                score = score.masked_fill(blocked, math.inf)
                values, J = torch.topk(score, size, dim=1, largest=False)
                order[rows, step:step + size] = J
                saliency[rows, step:step + size] = values.to(torch.float64)
                cols = torch.gather(Hinv, 1, J[:, :, None].expand(R, size, n_in))  # Hinv[J, :]
                Hinv_JJ = torch.gather(cols, 2, J[:, None, :].expand(R, size, size))
                solve = torch.linalg.solve(Hinv_JJ, cols)                          # Hinv_JJ^-1 Hinv[J, :]
                w_J = torch.gather(w, 1, J)
                w -= (w_J[:, None, :] @ solve)[:, 0]             # group OBS update of the row
                Hinv.baddbmm_(cols.transpose(1, 2), solve, alpha=-1)  # remove J from Hinv
                removed.scatter_(1, J, True)
                w = w.masked_fill(removed, 0.0)
                step += size
            tick("prune", b1 + R, n_out, "rows")
    return order, saliency


def greedy_obs_prune(W: Tensor, H: Tensor, group: Tensor, n_prune: int, *,
                     n_m: tuple[int, int] | None = None, fan_in: int | None = None,
                     row_weight: Tensor | None = None, group_size: int = 1,
                     row_batch: int = 64, dtype: torch.dtype = torch.float64
                     ) -> tuple[Tensor, Tensor]:
    """Exact greedy OBS pruning (SBC's pruning algorithm; ExactOBS with ``group_size=1``).

    Pass 1 (:func:`obs_prune_order`) records every row's removal order and step saliencies.
    The layer then prunes the ``n_prune`` weights of least ``row_weight * saliency`` over all
    rows, as prefixes of the rows' orders (each row at least its N:M / fan-in minimum).
    Pass 2 reconstructs every row exactly for its mask (:func:`masked_reconstruct`), which is
    what sequential OBS in the recorded order yields.

    Returns:
        ``(Q, mask)`` in float64.
    """
    n_out, n_in = W.shape
    minimum = min_prune_count(n_out, n_in, n_m, fan_in)
    if not minimum <= n_prune <= W.numel():
        raise ConfigError(f"cannot prune {n_prune} of {W.numel()} weights (minimum {minimum})",
                          where="n_prune")
    order, saliency = obs_prune_order(W, H, group, n_m=n_m, group_size=group_size,
                                      row_batch=row_batch, dtype=dtype)
    if row_weight is not None:
        saliency = saliency * row_weight.to(saliency)[:, None]
    low = n_in - max_kept_per_row(n_in, n_m, fan_in)
    free = saliency.clone()
    free[:, :low] = math.inf
    extra = n_prune - n_out * low
    counts = torch.full((n_out,), low, dtype=torch.long, device=W.device)
    if extra > 0:
        chosen = torch.topk(free.reshape(-1), extra, largest=False).indices
        counts += torch.bincount(chosen // n_in, minlength=n_out)
    steps = torch.arange(n_in, device=W.device)[None, :]
    mask = torch.zeros(n_out, n_in, dtype=torch.bool, device=W.device)
    mask.scatter_(1, order, steps < counts[:, None])
    Q = torch.zeros(n_out, n_in, dtype=torch.float64, device=W.device)
    for g, rows in enumerate(_group_rows(group.to(W.device), H.shape[0])):
        if len(rows):
            Q[rows] = masked_reconstruct(W[rows].to(torch.float64), H[g].to(torch.float64),
                                         mask[rows])
    return Q, mask
