"""The integer core on the graph operations (issue 18): a max pool of spikes runs as their OR,
exactly, in both cores (numpy and torch); what Lava's chain cannot run is refused naming the
node."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graph_ops_nets import sew_block
from test_int_core import UNIT, cuba, dense, encoded

from sbc_deploy.errors import ConfigError
from sbc_deploy.ir import Conv2d, Flatten, Graph, Input, LayerNorm, MaxPool2d, Output
from sbc_deploy.sim import simulate
from sbc_deploy.sim.int_core import simulate_integer, to_fixed_point


def _conv(rng, c_in, c_out, hw, exponent=0):
    mantissa = rng.integers(-30, 33, size=(c_out, c_in, 3, 3))
    enc = encoded(mantissa, exponent)
    return Conv2d(enc.dequantize(), input_shape=(c_in, hw, hw), padding=1, encoding=enc)


def maxpool_cnn(rng) -> Graph:
    """Conv-IF-MaxPool(2) -> Conv-IF-MaxPool(3, stride 2, padding 1) -> Flatten -> Dense-IF,
    integer weights, no leak and no bias: nothing rounds in the core."""
    return Graph.chain([
        ("in", Input((2, 12, 12))), ("conv1", _conv(rng, 2, 6, 12)),
        ("n1", cuba((6, 12, 12), 4096, 0, 80)), ("pool1", MaxPool2d(2, (6, 12, 12))),
        ("conv2", _conv(rng, 6, 8, 6)), ("n2", cuba((8, 6, 6), 4096, 0, 200)),
        ("pool2", MaxPool2d(3, (8, 6, 6), stride=2, padding=1)), ("flat", Flatten((8, 3, 3))),
        ("fc", dense(rng.integers(-30, 34, size=(5, 72)))), ("n3", cuba((5,), 4096, 0, 90)),
        ("out", Output((5,)))], dt=1e-3)


@pytest.mark.parametrize("device", [None, "cpu"])   # numpy core, torch core
def test_maxpool_cnn_equals_the_float_simulator_one_step_late_per_synapse(rng, device):
    graph = maxpool_cnn(rng)
    net = to_fixed_point(graph)
    assert [layer.max_pool_node for layer in net.layers] == [None, "pool1", "pool2"]
    x = (rng.random((24, 3, 2, 12, 12)) < 0.3).astype(np.float32)
    ideal = simulate(graph, torch.from_numpy(x), record=["n1", "n2"])
    core = simulate_integer(net, x, record=["n1", "n2"], device=device)
    for name, delay in (("n1", 1), ("n2", 2)):
        spikes = ideal.recorded[name].numpy()
        assert 0.02 < spikes.mean() < 0.6, name
        np.testing.assert_array_equal(core.recorded[name].numpy()[delay:], spikes[:-delay])
    out = ideal.outputs["out"].numpy()
    assert out.sum() > 20
    np.testing.assert_array_equal(core.outputs["out"].numpy()[3:], out[:-3])


def test_the_pool_is_the_or_of_spikes(rng):
    """The second layer's synaptic input equals the conv of the OR-pooled first-layer spikes."""
    graph = maxpool_cnn(rng)
    x = (rng.random((10, 2, 2, 12, 12)) < 0.3).astype(np.float32)
    result = simulate_integer(to_fixed_point(graph), x, record=["n1", "conv2"])
    s1 = result.recorded["n1"].numpy().astype(bool)                   # [T, B, 6, 12, 12]
    ored = s1.reshape(10, 2, 6, 6, 2, 6, 2).any(axis=(4, 6)).astype(np.float64)
    w = graph.nodes["conv2"].encoding.mantissa
    a = torch.nn.functional.conv2d(torch.from_numpy(ored.reshape(20, 6, 6, 6)),
                                   torch.from_numpy(w.astype(np.float64)), padding=1)
    expected = a.numpy().reshape(10, 2, 8, 6, 6)
    np.testing.assert_array_equal(result.recorded["conv2"].numpy()[1:], expected[:-1])


def test_what_the_core_cannot_run_is_refused_naming_the_node(rng):
    enc = encoded(rng.integers(-20, 20, size=(4, 2, 3, 3)))
    conv = Conv2d(enc.dequantize(), input_shape=(2, 8, 8), padding=1, encoding=enc)
    current_pool = Graph.chain([
        ("in", Input((2, 8, 8))), ("conv", conv), ("pool", MaxPool2d(2, (4, 8, 8))),
        ("n", cuba((4, 4, 4), 4096, 0, 50)), ("out", Output((4, 4, 4)))], dt=1e-3)
    with pytest.raises(ConfigError, match="max pool 'pool' of its synaptic currents") as info:
        to_fixed_point(current_pool)
    assert info.value.where == "node 'conv'"
    layer_norm = Graph.chain([
        ("in", Input((6,))), ("fc1", dense(rng.integers(-9, 9, size=(4, 6)))),
        ("n1", cuba((4,), 4096, 0, 50)),
        ("ln", LayerNorm((4,), np.ones(4), np.zeros(4))), ("fc2", dense(np.eye(4, dtype=int))),
        ("n2", cuba((4,), 4096, 0, 50)), ("out", Output((4,)))], dt=1e-3)
    with pytest.raises(ConfigError, match="LayerNorm, which Lava's netx chain cannot run") as info:
        to_fixed_point(layer_norm)
    assert info.value.where == "node 'ln'"
    sew = sew_block(rng, "AND")
    with pytest.raises(ConfigError, match="feeds 2 nodes") as info:
        to_fixed_point(sew.replace_nodes({"stem": Conv2d(
            np.ones((6, 2, 3, 3)) * UNIT, (2, 8, 8), padding=1,
            encoding=encoded(np.ones((6, 2, 3, 3), dtype=int)))}))
    assert info.value.where == "node 'stem_lif'"
