"""Block-diagonal Hessians in compress: each block solved as a layer of its own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbc_deploy.calibrate import calibrate
from sbc_deploy.compress import SBCConfig, compress
from sbc_deploy.compress.obs import layer_loss
from sbc_deploy.ir import LIF, Affine, Graph, Input, Output


def net(W: np.ndarray) -> Graph:
    n_out, n_in = W.shape
    return Graph.chain([
        ("in", Input((n_in,))),
        ("fc", Affine(W)),
        ("lif", LIF(beta=np.full(n_out, 0.8), v_threshold=np.ones(n_out))),
        ("out", Output((n_out,))),
    ], dt=1e-3)


@pytest.fixture
def problem(rng):
    W = rng.normal(0, 0.5, (6, 48))
    # correlated inputs (a shared drive), so that the couplings the blocks drop are not zero
    drive = rng.random((30, 12, 1)) < 0.3
    x = ((rng.random((30, 12, 48)) < 0.2) | (drive & (rng.random((30, 12, 48)) < 0.5)))
    return W, x.astype(np.float32)


def test_each_block_is_solved_as_a_layer_of_its_own(problem):
    """Blocks of 16 inputs, 50 %: block j of the result equals compressing a 6 x 16 layer fed
    only block j's inputs (its own calibration), with 48 of its 96 weights pruned."""
    W, x = problem
    graph = net(W)
    calib = calibrate(graph, x, blocks={"fc": 16}, precision="float64")
    config = SBCConfig(sparsity=0.5, allocation="uniform", bits=None)
    small, stats = compress(graph, calib, config)
    Q = np.asarray(small.nodes["fc"].weight)
    for j in range(3):
        cols = slice(16 * j, 16 * (j + 1))
        part = net(W[:, cols])
        alone, _ = compress(part, calibrate(part, x[:, :, cols], precision="float64"), config)
        assert np.array_equal(Q[:, cols], np.asarray(alone.nodes["fc"].weight))
        assert int((Q[:, cols] == 0).sum()) == 48
    # the reported loss is the loss on the block-diagonal part of the full Hessian
    full = calibrate(graph, x, precision="float64").layers["fc"].hessian()[0, 0]
    block_diagonal = torch.zeros_like(full)
    for j in range(3):
        s = slice(16 * j, 16 * (j + 1))
        block_diagonal[s, s] = full[s, s]
    expected = layer_loss(torch.tensor(W), torch.tensor(Q), block_diagonal)
    assert stats.layer("fc").loss == pytest.approx(expected, rel=1e-10)


def test_fan_in_and_quantisation_hold_across_blocks(problem):
    """A fan-in cap of 10 per row split over 3 blocks (4 + 3 + 3), one 4-bit grid."""
    W, x = problem
    graph = net(W)
    calib = calibrate(graph, x, blocks={"fc": 16})
    small, stats = compress(graph, calib, SBCConfig(sparsity=0.5, bits=4, fan_in=10))
    node = small.nodes["fc"]
    Q = np.asarray(node.weight)
    assert (np.count_nonzero(Q, axis=1) <= 10).all()
    assert node.encoding is not None and node.encoding.bits == 4
    assert np.array_equal(node.encoding.dequantize(), Q)
    assert stats.layer("fc").loss is not None and stats.layer("fc").loss > 0


def test_block_diagonal_loss_against_the_full_hessian(problem):
    """Measured on the full Hessian: the block-diagonal solution costs more than the full one
    (the couplings it ignores), and much less than magnitude pruning to the same mask count."""
    W, x = problem
    graph = net(W)
    full_calib = calibrate(graph, x, precision="float64")
    H = full_calib.layers["fc"].hessian()[0, 0]
    config = SBCConfig(sparsity=0.5, allocation="uniform", bits=None)
    losses = {}
    for name, calib in (("full", full_calib),
                        ("blocks", calibrate(graph, x, blocks={"fc": 16}, precision="float64"))):
        small, _ = compress(graph, calib, config)
        losses[name] = layer_loss(torch.tensor(W), torch.tensor(
            np.asarray(small.nodes["fc"].weight)), H)
    magnitude = W * (np.abs(W) >= np.quantile(np.abs(W), 0.5))
    losses["magnitude"] = layer_loss(torch.tensor(W), torch.tensor(magnitude), H)
    assert losses["full"] < losses["blocks"] < losses["magnitude"]
