"""Calibration and compression of networks with graph operations (issue 18): the Q/K/V,
projection and MLP layers of a Spikformer block get their own SMP Hessians from the neuron
after them (closed form on recorded inputs), weightless nodes pass through compression
untouched, and layers whose rows reach the neuron through a reshape or a slice calibrate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graph_ops_nets import csnn_maxpool, lif, sdsa_block, spikes, ssa_block

from sbc_deploy.calibrate import calibrate
from sbc_deploy.compress import compress
from sbc_deploy.compress.config import SBCConfig
from sbc_deploy.compress.hessian import TemporalKernel, temporal_kernel
from sbc_deploy.ir import (
    OPERATION_TYPES,
    Affine,
    Graph,
    Input,
    MaxPool2d,
    Output,
    Permute,
    Reshape,
    Slice,
    Synapse,
)
from sbc_deploy.ir.transforms import fold_channel_affines, neuron_per_row
from sbc_deploy.sim import simulate


def closed_form(x: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """H = 2/R sum_r (K X_r)^T (K X_r) over rows r (sequence x position), X_r: [T, n_in]."""
    KX = torch.einsum("ts,rsi->rti", K, x.to(torch.float64))
    return 2 * torch.einsum("rti,rtj->ij", KX, KX) / x.shape[0]


def _rows_of_conv1d_input(recorded: torch.Tensor) -> torch.Tensor:
    """[T, N, C, L] -> [N * L, T, C]: one row per sequence and token (a 1x1 Conv1d)."""
    return recorded.permute(1, 3, 0, 2).reshape(-1, recorded.shape[0], recorded.shape[2])


def test_spikformer_block_layers_get_their_own_smp_hessians(rng):
    graph, _ = fold_channel_affines(ssa_block(rng))
    x = spikes(rng, 6, 10, (24, 16))              # [T, N, C, L]
    calib = calibrate(graph, np.ascontiguousarray(x.transpose(1, 0, 2, 3)), batch_size=4,
                      kernel="smp")
    assert set(calib.layers) == {"qkv", "proj", "fc1", "fc2", "head"}
    inputs = {"qkv": "x", "proj": "merge", "fc1": "res1", "fc2": "fc1_lif", "head": "mean"}
    recorded = simulate(graph, torch.from_numpy(x), dtype=torch.float64,
                        record=list(inputs.values())).recorded
    K = temporal_kernel(0.5, 6)                    # every LIF of the block has beta 0.5
    for layer, source in inputs.items():
        hsum = calib.layers[layer]
        if layer == "head":                        # a readout: identity kernel (plain OBC)
            assert hsum.kernels == (TemporalKernel(),)
            rows, kernel = recorded[source].transpose(0, 1), torch.eye(6, dtype=torch.float64)
        else:
            assert hsum.kernels == (TemporalKernel(beta=0.5),)
            rows, kernel = _rows_of_conv1d_input(recorded[source]), K
        torch.testing.assert_close(hsum.hessian()[0, 0], closed_form(rows, kernel),
                                   rtol=1e-9, atol=1e-12)
    # the attention scores are not a layer's input: MatMul has no weights
    assert float(recorded["merge"].mean()) > 0.02


def test_compression_skips_weightless_nodes(rng):
    graph, _ = fold_channel_affines(sdsa_block(rng))
    x = rng.normal(0.6, 0.5, (8, 6, 8, 4, 4)).astype(np.float32)   # [N, T, C, H, W]
    calib = calibrate(graph, x, batch_size=4)
    compressed, stats = compress(graph, calib, SBCConfig(sparsity=0.5))
    for name, node in graph.nodes.items():
        if isinstance(node, OPERATION_TYPES):
            assert compressed.nodes[name] is node, name
        if isinstance(node, Synapse):
            zeros = float(np.mean(compressed.nodes[name].weight == 0))
            assert 0.2 < zeros < 0.9, name
    assert compressed.ports == graph.ports
    out = simulate(compressed, torch.from_numpy(x.transpose(1, 0, 2, 3, 4))).outputs["out"]
    assert torch.isfinite(out).all()


def test_maxpool_between_conv_and_neuron_uses_the_neuron_kernel(rng):
    """Spikformer's Conv-BN-MaxPool-LIF: the conv's Hessian is the all-positions one filtered
    by the LIF's kernel (Graph.synapse_layers says why)."""
    graph, _ = fold_channel_affines(csnn_maxpool(rng))
    # move pool1 between conv1 and lif1: conv1 -> pool1 -> lif1 (a max of currents)
    nodes = {**graph.nodes, "lif1": lif((8, 8, 8))}
    edges = [("in", "conv1"), ("conv1", "pool1"), ("pool1", "lif1"), ("lif1", "conv2")]
    edges += [e for e in graph.edges if e[0] not in ("in", "conv1", "lif1", "pool1")]
    graph = Graph(nodes, edges, graph.dt)
    (layer,) = [entry for entry in graph.synapse_layers() if entry.name == "conv1"]
    assert layer.neuron_name == "lif1" and isinstance(graph.nodes["pool1"], MaxPool2d)
    x = spikes(rng, 5, 4, (2, 16, 16))
    calib = calibrate(graph, np.ascontiguousarray(x.transpose(1, 0, 2, 3, 4)), batch_size=4)
    hsum = calib.layers["conv1"]
    assert hsum.kernels == (TemporalKernel(beta=0.5),)
    patches = torch.nn.functional.unfold(torch.from_numpy(x).flatten(0, 1).double(), 3,
                                         padding=1)          # [T*N, 18, 256]
    rows = patches.unflatten(0, (5, 4)).permute(1, 3, 0, 2).reshape(-1, 5, 18)
    torch.testing.assert_close(hsum.hessian()[0, 0], closed_form(rows, temporal_kernel(0.5, 5)),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("between", ["slice", "permute"])
def test_rows_through_a_reshape_use_the_neurons_uniform_kernel(rng, between):
    first = (Slice((6, 4), 0, 0, 3), (3, 4)) if between == "slice" else (
        Permute((6, 4), (1, 0)), (4, 6))
    node, shape = first
    graph = Graph.chain([
        ("in", Input((5,))), ("fc", Affine(rng.normal(0, 1.0, (24, 5)))),
        ("r", Reshape((24,), (6, 4))), ("op", node), ("lif", lif(shape, beta=0.75)),
        ("out", Output(shape))], 1e-3)
    (layer,) = graph.synapse_layers()
    view = neuron_per_row(graph, layer)
    assert view.shape == (24,) and np.all(view.beta == 0.75)
    calib = calibrate(graph, spikes(rng, 8, 6, (5,)), kernel="smp")
    assert calib.layers["fc"].kernels == (TemporalKernel(beta=0.75),)
