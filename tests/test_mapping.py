"""Core-mapping estimate: connectivity counts against torch, placements against closed forms,
and lava-dl's own netx networks on Loihi 1 and 2 against numbers computed from the raw files."""

from __future__ import annotations

import dataclasses
import math

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import fixture_path

from sbc_deploy.check import check, map_to_cores
from sbc_deploy.check.mapping import (
    backward_counts,
    forward_counts,
    padded_neurons,
    placement_order,
    presynaptic_mask,
    synapse_fan_in,
    synapse_fan_out,
    synapse_potential,
)
from sbc_deploy.frontends import from_netx
from sbc_deploy.ir import (
    IF,
    LIF,
    Affine,
    Conv1d,
    Conv2d,
    Graph,
    Input,
    Output,
    Scale,
    SumPool2d,
    WeightEncoding,
)
from sbc_deploy.targets import load_target

LOIHI1, LOIHI2 = load_target("loihi1"), load_target("loihi2")
MBIT = 16384 * 64  # Loihi 1 synapse memory per core (nengo-loihi MAX_SYNAPSE_BITS)


def lif(shape) -> LIF:
    shape = (shape,) if isinstance(shape, int) else shape
    return LIF(beta=np.full(shape, 0.5), v_threshold=np.ones(shape))


def dense(mantissa, bits: int = 8) -> Affine:
    mantissa = np.asarray(mantissa, dtype=np.int64)
    enc = WeightEncoding(mantissa=mantissa, scale=2 / 64, bits=bits, grid="int_exp", exponent=1,
                         unit=1 / 64)
    return Affine(enc.dequantize(), encoding=enc)


def chain(*nodes) -> Graph:
    return Graph.chain([(f"n{i}", node) for i, node in enumerate(nodes)], dt=1e-3)


# --------------------------------------------------------------------------- connectivity


CONV2D_CASES = [  # (c_in, c_out, k, stride, padding, dilation, groups, (H, W))
    (3, 4, 3, 1, 0, 1, 1, (7, 6)),
    (4, 6, 3, 2, 1, 2, 2, (9, 8)),
    (2, 2, (2, 3), (1, 2), (1, 0), 1, 2, (5, 7)),
]


def _conv2d(rng, c_in, c_out, k, stride, padding, dilation, groups, hw) -> Conv2d:
    kh, kw = (k, k) if isinstance(k, int) else k
    weight = rng.normal(size=(c_out, c_in // groups, kh, kw))
    weight[rng.random(weight.shape) < 0.4] = 0.0
    return Conv2d(weight, (c_in, *hw), stride=stride, padding=padding, dilation=dilation,
                  groups=groups)


def _torch_conv(conv: Conv2d | Conv1d, x: torch.Tensor, weight: np.ndarray) -> torch.Tensor:
    fn = F.conv2d if isinstance(conv, Conv2d) else F.conv1d
    return fn(x, torch.as_tensor(weight, dtype=torch.float64), stride=conv.stride,
              padding=conv.padding, dilation=conv.dilation, groups=conv.groups)


@pytest.mark.parametrize("case", CONV2D_CASES)
def test_conv2d_counts_match_torch(case, rng):
    conv = _conv2d(rng, *case)
    mask = (conv.weight != 0).astype(float)
    ones = torch.ones((1, *conv.input_shape), dtype=torch.float64, requires_grad=True)
    # fan-in: a convolution of ones with the non-zero mask counts the in-bounds non-zero taps
    fan_in = _torch_conv(conv, ones, mask)[0]
    np.testing.assert_array_equal(synapse_fan_in(conv), fan_in.detach().numpy())
    potential = _torch_conv(conv, ones, np.ones_like(mask))[0]
    np.testing.assert_array_equal(synapse_potential(conv), potential.detach().numpy())
    # fan-out: d(sum of fan-in)/d(input) counts, per input, the non-zero synapses leaving it
    fan_in.sum().backward()
    np.testing.assert_array_equal(synapse_fan_out(conv), ones.grad[0].numpy())
    # presynaptic set of a range of outputs: inputs with a non-zero gradient from them
    n_out = int(np.prod(conv.output_shape))
    subsets = [slice(0, 1), slice(3, n_out // 2 + 5), slice(n_out - 7, n_out),
               rng.choice(n_out, size=n_out // 3, replace=False)]
    for outputs in subsets:
        x = torch.ones((1, *conv.input_shape), dtype=torch.float64, requires_grad=True)
        _torch_conv(conv, x, mask)[0].reshape(-1)[outputs].sum().backward()
        np.testing.assert_array_equal(presynaptic_mask(conv, outputs),
                                      x.grad[0].numpy().reshape(-1) > 0)


def test_conv1d_and_affine_counts_match_torch(rng):
    weight = rng.normal(size=(6, 2, 3))
    weight[rng.random(weight.shape) < 0.5] = 0.0
    conv = Conv1d(weight, (4, 11), stride=2, padding=1, dilation=1, groups=2)
    x = torch.ones((1, 4, 11), dtype=torch.float64, requires_grad=True)
    fan_in = _torch_conv(conv, x, (weight != 0).astype(float))[0]
    np.testing.assert_array_equal(synapse_fan_in(conv), fan_in.detach().numpy())
    fan_in.sum().backward()
    np.testing.assert_array_equal(synapse_fan_out(conv), x.grad[0].numpy())
    w = rng.normal(size=(5, 7))
    w[rng.random(w.shape) < 0.5] = 0.0
    affine = Affine(w)
    np.testing.assert_array_equal(synapse_fan_in(affine), (w != 0).sum(axis=1))
    np.testing.assert_array_equal(synapse_fan_out(affine), (w != 0).sum(axis=0))
    np.testing.assert_array_equal(presynaptic_mask(affine, slice(1, 3)),
                                  (w[1:3] != 0).any(axis=0))
    np.testing.assert_array_equal(presynaptic_mask(affine, np.array([4, 0])),
                                  (w[[0, 4]] != 0).any(axis=0))


def test_pool_counts_are_the_window_sum_and_its_adjoint(rng):
    pool = SumPool2d(3, (2, 7, 7), stride=2, padding=1)
    graph = chain(Input((2, 7, 7)), pool, Output(pool.output_shape))
    values = rng.integers(0, 5, size=(2, 7, 7)).astype(float)
    summed = F.avg_pool2d(torch.as_tensor(values)[None], 3, stride=2, padding=1,
                          count_include_pad=True)[0] * 9
    np.testing.assert_allclose(forward_counts(graph, values, ["n1"]), summed.numpy())
    x = torch.as_tensor(values)[None].requires_grad_(True)
    upstream = rng.integers(0, 5, size=pool.output_shape).astype(float)
    (F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=True)[0] * 9
     * torch.as_tensor(upstream)).sum().backward()
    np.testing.assert_allclose(backward_counts(graph, upstream, ["n1"]), x.grad[0].numpy())


def test_padded_neurons_follow_sinabs():
    assert padded_neurons((16, 64, 64)) == 16 * 64 * 64
    assert padded_neurons((64, 33, 32)) == 64 * 64 * 32
    assert padded_neurons((10,)) == 10


# --------------------------------------------------------------------------- placements


def test_dense_layer_splits_by_synapse_memory():
    """784 -> 512, 8-bit, every weight non-zero: dense storage, 784 * 8 = 6,272 bits per
    neuron, so floor(2^20 / 6272) = 167 neurons per Loihi 1 core: 167 + 167 + 167 + 11."""
    graph = chain(Input((784,)), dense(np.ones((512, 784))), lif(512), Output((512,)))
    mapping = map_to_cores(graph, LOIHI1)
    per_core = MBIT // (784 * 8)
    assert per_core == 167
    assert [c.neurons for c in mapping.cores] == [167, 167, 167, 11]
    assert mapping.layers[0].storage == "dense"
    assert mapping.layers[0].synapse_bits == 512 * 784 * 8
    assert mapping.cores[0].memory_utilisation == pytest.approx(167 * 6272 / MBIT)
    assert mapping.cores[0].neuron_utilisation == pytest.approx(167 / 1024)
    assert all(c.in_axons == 784 for c in mapping.cores)
    assert mapping.fits and mapping.cores_used == 4
    assert mapping.utilisation()["cores"] == pytest.approx(4 / 128)
    # on Loihi 2 (8,192 neurons per core, the same estimated memory) memory still binds
    assert map_to_cores(graph, LOIHI2).cores_used == 4


def test_narrower_and_sparser_weights_need_fewer_cores(rng):
    """4-bit weights halve the dense cost; at 5% density the sparse format (4 + 10 bits per
    non-zero synapse) is cheaper than dense and the layer fits one core."""
    graph4 = chain(Input((784,)), dense(np.ones((512, 784)), bits=4), lif(512), Output((512,)))
    assert [c.neurons for c in map_to_cores(graph4, LOIHI1).cores] == [334, 178]  # 2^20 // 3136
    mantissa = np.where(rng.random((512, 784)) < 0.05, 3, 0)
    graph = chain(Input((784,)), dense(mantissa, bits=4), lif(512), Output((512,)))
    mapping = map_to_cores(graph, LOIHI1)
    nnz = np.count_nonzero(mantissa)
    assert nnz * (4 + 10) < 512 * 784 * 4
    assert mapping.layers[0].storage == "sparse"
    assert mapping.layers[0].synapse_bits == nnz * 14
    assert mapping.cores_used == 1 and mapping.cores[0].synapse_bits == nnz * 14


def test_out_axons_split_the_source_layer():
    """784 neurons feed a 3,000-neuron layer on 18 cores (167 each): every source neuron needs
    18 out-axons, so a core sends for at most 4096 // 18 = 227 of them: 227 x 3 + 103."""
    graph = chain(Input((784,)), Scale(np.ones(784)), lif(784),
                  dense(np.ones((3000, 784))), lif(3000), Output((3000,)))
    mapping = map_to_cores(graph, LOIHI1)
    source, dest = mapping.layers
    assert len(dest.cores) == math.ceil(3000 / 167) == 18
    assert [mapping.cores[i].neurons for i in source.cores] == [227, 227, 227, 103]
    assert [mapping.cores[i].out_axons for i in source.cores] == [227 * 18] * 3 + [103 * 18]
    assert mapping.fits


def test_in_axons_split_a_layer_whose_inputs_do_not_overlap():
    """Neuron i reads inputs 60i .. 60i + 99 of 6,000: k neurons together read 60(k-1) + 100
    inputs, at most 4,096 for k <= 67; the layer takes 67 + 33 neurons (the last 33 read
    inputs 60 * 67 up to the end, 6,000)."""
    mantissa = np.zeros((100, 6000), dtype=np.int64)
    for i in range(100):
        mantissa[i, 60 * i:60 * i + 100] = 5
    graph = chain(Input((6000,)), dense(mantissa), lif(100), Output((100,)))
    mapping = map_to_cores(graph, LOIHI1)
    assert [(c.neurons, c.in_axons) for c in mapping.cores] == [(67, 60 * 66 + 100),
                                                                (33, 6000 - 60 * 67)]
    assert mapping.layers[0].storage == "sparse"


def test_conv_cores_are_full_and_respect_every_limit():
    """A 128 -> 8 channel 3x3 convolution on 16 x 16 (32,768 inputs): every core holds a run of
    positions (all 8 channels each), its in-axons counted by torch are the reported ones and
    stay <= 4,096, its dense synapse memory <= 1 Mbit, and adding the next neuron would break
    one of the limits (the greedy fills each core)."""
    weight = np.ones((8, 128, 3, 3), dtype=np.int64)
    enc = WeightEncoding(mantissa=weight, scale=2 / 64, bits=8, grid="int_exp", exponent=1,
                         unit=1 / 64)
    conv = Conv2d(enc.dequantize(), (128, 16, 16), padding=1, encoding=enc)
    graph = chain(Input((128, 16, 16)), conv, lif((8, 16, 16)), Output((8, 16, 16)))
    mapping = map_to_cores(graph, LOIHI1)
    order = placement_order((8, 16, 16))
    potential = synapse_potential(conv).reshape(-1) * 8

    def in_axons(neurons: np.ndarray) -> int:
        x = torch.ones((1, 128, 16, 16), dtype=torch.float64, requires_grad=True)
        _torch_conv(conv, x, np.ones(weight.shape))[0].reshape(-1)[neurons].sum().backward()
        return int((x.grad > 0).sum())

    cores = [mapping.cores[i] for i in mapping.layers[0].cores]
    assert sum(c.neurons for c in cores) == 8 * 16 * 16 and mapping.fits
    for k, core in enumerate(cores):
        held = order[core.first:core.first + core.neurons]
        assert core.in_axons == in_axons(held) <= 4096
        assert core.synapse_bits == potential[held].sum() <= MBIT
        if k + 1 < len(cores):
            more = order[core.first:core.first + core.neurons + 1]
            assert (in_axons(more) > 4096 or potential[more].sum() > MBIT
                    or len(more) > 1024)
    assert any(c.in_axons > 4096 - 128 * 3 for c in cores)  # in-axons, not memory, bind here


def test_unsplittable_layers_are_matched_to_cores_that_hold_them():
    """Speck: three layers of 60 x 32 x 32 neurons fit only cores 0-2 (64 Ki). A small first
    layer must then go elsewhere; first-fit would have put it on core 0."""
    def conv(c_in, c_out):
        w = np.ones((c_out, c_in, 1, 1), dtype=np.int64)
        enc = WeightEncoding(mantissa=w, scale=0.01, bits=8, grid="int")
        return Conv2d(enc.dequantize(), (c_in, 32, 32), encoding=enc)
    speck = load_target("speck")
    layers = [conv(1, 1), IF(v_threshold=np.ones((1, 32, 32)))]
    for c_in in (1, 60, 60):
        layers += [conv(c_in, 60), IF(v_threshold=np.ones((60, 32, 32)))]
    graph = chain(Input((1, 32, 32)), *layers, Output((60, 32, 32)))
    mapping = map_to_cores(graph, speck)
    assert mapping.fits
    small, *big = mapping.layers
    assert small.cores[0] not in (0, 1, 2)
    assert sorted(layer.cores[0] for layer in big) == [0, 1, 2]
    assert all(c.neurons == 60 * 32 * 32 for c in mapping.cores if c.index in (0, 1, 2))
    # a fourth big layer has no core left
    graph = chain(Input((1, 32, 32)), *layers, conv(60, 60), IF(v_threshold=np.ones((60, 32, 32))),
                  Output((60, 32, 32)))
    issues = map_to_cores(graph, speck).issues
    assert [i.resource for i in issues] == ["total_cores"]


def test_shared_core_holds_every_hidden_layer_and_outputs_stay_apart():
    """Xylo IMU: 300 + 196 = 496 hidden neurons share its one core; the 10 output neurons are
    counted against the 16 output neurons, not the core."""
    xylo = load_target("xylo")

    def int_dense(m):
        enc = WeightEncoding(mantissa=np.asarray(m, dtype=np.int64), scale=0.1, bits=8,
                             grid="int")
        return Affine(enc.dequantize(), encoding=enc)
    graph = chain(Input((16,)), int_dense(np.ones((300, 16))), lif(300),
                  int_dense(np.eye(196, 300)), lif(196), int_dense(np.ones((10, 196))), lif(10),
                  Output((10,)))
    mapping = map_to_cores(graph, xylo)
    assert mapping.cores_used == 1 and mapping.readout_neurons == 10
    core, = mapping.cores
    assert core.layers == ("n2", "n4") and core.neurons == 496
    assert core.synapse_bits == (300 * 16 + 196) * 8  # non-zero weights x 8 bits
    assert mapping.layers[-1].cores == ()


def test_mapping_is_a_value_and_leaves_the_graph_alone():
    graph = chain(Input((8,)), dense(np.ones((4, 8))), lif(4), Output((4,)))
    weights = graph.nodes["n1"].weight.copy()
    mapping = map_to_cores(graph, LOIHI1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mapping.cores = ()  # type: ignore[misc]
    np.testing.assert_array_equal(graph.nodes["n1"].weight, weights)


# --------------------------------------------------------------------------- lava-dl fixtures


def _netx_layers(path) -> list[dict]:
    """Each layer of a netx file read straight from HDF5: kind, neurons, integer weights."""
    layers = []
    with h5py.File(path, "r") as f:
        for i in range(len(f["layer"])):
            layer = f["layer"][str(i)]
            kind = layer["type"][()]
            kind = (kind[0] if isinstance(kind, np.ndarray) else kind).decode()
            entry = {"kind": kind, "neurons": int(np.prod(layer["shape"][()]))}
            if kind in ("dense", "conv"):
                weight = layer["weight"][()].astype(np.int64)
                entry["weight"] = weight.reshape(weight.shape[0], -1)  # (out, in) or (out, c*k*k)
            layers.append(entry)
    return layers


def _mantissa_bits(weight: np.ndarray) -> int:
    """Width of the signed mantissa once the shared power of two is taken out (netx -> Loihi)."""
    nonzero = weight[weight != 0]
    k = 0
    while np.all(nonzero % (2 ** (k + 1)) == 0):
        k += 1
    mantissa = weight >> k
    bits = 1
    while mantissa.min() < -(2 ** (bits - 1)) or mantissa.max() > 2 ** (bits - 1) - 1:
        bits += 1
    return bits


def _expected_cores(layers: list[dict], target) -> tuple[list[int], list[int]]:
    """Closed form per layer: input layers hold one neuron per element; a dense or conv layer
    stores every synapse of its receptive field (dense beats sparse on these files, checked),
    so a core holds min(neurons per core, memory // (inputs x bits)) neurons."""
    cores, fan_in = [], []
    n_cap, m_cap = target.cores.neurons_per_core, target.cores.synapse_memory_bits
    for layer in layers:
        if "weight" not in layer:
            cores.append(math.ceil(layer["neurons"] / n_cap))
            continue
        weight, bits = layer["weight"], _mantissa_bits(layer["weight"])
        n_out, n_in = weight.shape
        positions = layer["neurons"] // n_out  # conv: output positions per channel (no padding)
        nnz = np.count_nonzero(weight) * positions
        assert layer["neurons"] * n_in * bits < nnz * (bits + target.cores.index_bits)
        per_core = min(n_cap, m_cap // (n_in * bits))
        cores.append(math.ceil(layer["neurons"] / per_core))
        fan_in.append(int(np.count_nonzero(weight, axis=1).max()))
    return cores, fan_in


NETX = [("mnist_bootstrap", "network.net", [1, 3, 2, 1]),
        ("mnist_small", "network.net", [1, 1, 1]),
        ("oxford", "network.net", [1, 1]),
        ("tinynet", "tiny.net", [1, 1, 1])]


@pytest.mark.parametrize("folder,file,loihi1_cores", NETX)
def test_lava_dl_networks_on_loihi(folder, file, loihi1_cores):
    """lava-dl's own trained networks fit Loihi with no violation, on the number of cores and
    with the fan-in computed from the raw file. mnist_bootstrap (784-512-512-10, 6-bit
    mantissas) on Loihi 1: 1 core for the 784 input neurons, 3 for 512 x (784 x 6 = 4,704
    bits: 222 per 1 Mbit core), 2 for 512 x (512 x 6 = 3,072 bits: 341 per core), 1 for the
    10 readouts = 7; on Loihi 2 memory binds the same way (8,192 neurons per core do not help)."""
    path = fixture_path("netx", folder, file)
    raw = _netx_layers(path)
    graph = from_netx(path)
    for target in (LOIHI1, LOIHI2):
        expected_cores, expected_fan_in = _expected_cores(raw, target)
        result = check(graph, target)
        assert result.violations == (), result.violations
        mapping = result.mapping
        assert [len(layer.cores) for layer in mapping.layers] == expected_cores
        assert mapping.cores_used == sum(expected_cores)
        with_synapses = [layer for layer in mapping.layers if layer.synapses]
        assert [layer.fan_in_max for layer in with_synapses] == expected_fan_in
    assert [len(layer.cores) for layer in map_to_cores(graph, LOIHI1).layers] == loihi1_cores


def test_mnist_bootstrap_in_axons_are_the_inputs_each_core_reads():
    path = fixture_path("netx", "mnist_bootstrap", "network.net")
    weight = _netx_layers(path)[1]["weight"]  # 512 x 784
    mapping = map_to_cores(from_netx(path), LOIHI1)
    first = mapping.cores[mapping.layers[1].cores[0]]
    assert first.neurons == MBIT // (784 * 6) == 222
    assert first.in_axons == int(np.any(weight[:222] != 0, axis=0).sum())
    # the 784 input neurons each reach all 3 cores of the next layer: 2,352 out-axons
    assert mapping.cores[mapping.layers[0].cores[0]].out_axons == int(
        sum(np.any(weight[a:b] != 0, axis=0).sum() for a, b in ((0, 222), (222, 444),
                                                                  (444, 512))))
