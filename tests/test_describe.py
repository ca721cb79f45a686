"""describe/format_summary: counts checked against the fixture files read with h5py."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
from conftest import fixture_path

from sbc_deploy.describe import GraphSummary, describe, format_summary
from sbc_deploy.frontends import load_model


def test_braille_counts_match_the_file() -> None:
    path = fixture_path("nir", "braille_noDelay_bias_zero.nir")
    summary = describe(load_model(path, dt=1e-4, reset="zero"))
    with h5py.File(path, "r") as f:
        nodes = f["node/nodes"]
        weights = {k: nodes[k]["weight"][()] for k in nodes if "weight" in nodes[k]}
        biases = {k: nodes[k]["bias"][()] for k in nodes if "bias" in nodes[k]}
        hidden = nodes["lif1.lif/tau_mem"].shape[0] + nodes["lif2/tau_mem"].shape[0]
    assert summary.weights == sum(w.size for w in weights.values())
    assert summary.nonzero_weights == sum(np.count_nonzero(w) for w in weights.values())
    assert summary.fan_in_max == max(int(np.count_nonzero(w, axis=1).max())
                                     for w in weights.values())
    assert summary.neurons == hidden
    assert summary.synapse_layers == len(weights)
    assert summary.recurrent_edges == (("lif1.w_rec", "lif1.lif"),)
    by_name = {n.name: n for n in summary.nodes}
    for name, weight in weights.items():
        node = by_name[name]
        assert node.parameters == weight.size + biases[name].size
        assert (node.input_shape, node.output_shape) == ((weight.shape[1],), (weight.shape[0],))
    assert by_name["lif1.w_rec"].recurrent and not by_name["fc2"].recurrent
    neuron = by_name["lif1.lif"].neuron
    assert neuron is not None and neuron.model == "CubaLIF" and neuron.reset == "zero"
    assert neuron.alpha == pytest.approx((0.55, 0.55)) and neuron.beta == pytest.approx((0.9, 0.9))
    assert dict(summary.provenance)["dt_source"] == "argument"


def test_tinynet_conv_fan_in_sparsity_and_bits() -> None:
    path = fixture_path("netx", "tinynet", "tiny.net")
    summary = describe(load_model(path))
    by_name = {n.name: n for n in summary.nodes}
    with h5py.File(path, "r") as f:
        for i in (1, 2):
            weight = f[f"layer/{i}/weight"][()]
            node = by_name[f"layer{i}.conv"]
            per_channel = np.count_nonzero(weight.reshape(weight.shape[0], -1), axis=1)
            assert node.fan_in_max == int(per_channel.max())
            assert node.sparsity == pytest.approx(1 - np.count_nonzero(weight) / weight.size)
            # mantissa = W / 2**k for the largest k dividing every weight; signed width
            ints = weight.astype(np.int64)
            k = 0
            while np.all(ints % 2 ** (k + 1) == 0):
                k += 1
            mantissa = ints // 2**k
            bits = max(int(mantissa.max()).bit_length(), int(-mantissa.min() - 1).bit_length()) + 1
            assert node.weight_bits == bits
            neuron = by_name[f"layer{i}.neuron"].neuron
            assert neuron.threshold == (f[f"layer/{i}/neuron/vThMant"][()] / 64,) * 2
            assert neuron.nonzero_bias == np.count_nonzero(
                np.broadcast_to(f[f"layer/{i}/bias"][()][:, None, None],
                                by_name[f"layer{i}.neuron"].output_shape))
    assert summary.recurrent_edges == ()


def test_pruning_shows_in_the_summary_and_the_input_is_not_mutated() -> None:
    graph = load_model(fixture_path("netx", "oxford", "network.net"))
    dense = graph.nodes["layer0.dense"]
    mask = np.zeros(dense.weight.shape, dtype=bool)
    mask[:, ::2] = True  # keep every other input column: half the synapses
    kept = np.where(mask, dense.weight, 0.0)
    pruned = graph.replace_nodes({"layer0.dense": dense.with_weight(kept)})
    before = describe(graph)
    after = describe(pruned)
    node = {n.name: n for n in after.nodes}["layer0.dense"]
    assert node.nonzero_weights == np.count_nonzero(kept)
    assert node.fan_in_max == int(np.count_nonzero(kept, axis=1).max())
    assert after.nonzero_weights == before.nonzero_weights - (
        np.count_nonzero(dense.weight) - np.count_nonzero(kept))
    assert graph.nodes["layer0.dense"] is dense  # describe and replace_nodes left it alone
    assert {n.name: n for n in before.nodes}["layer0.dense"].nonzero_weights == \
        np.count_nonzero(dense.weight)


def test_format_summary_lists_every_node_and_the_totals() -> None:
    graph = load_model(fixture_path("nir", "braille_noDelay_bias_zero.nir"), dt=1e-4,
                       reset="subtract")
    summary = describe(graph)
    text = format_summary(summary)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["node", "kind", "in", "out"]
    for name in graph.nodes:
        assert any(line.startswith(name) for line in lines), name
    assert "recurrent edges: lif1.w_rec -> lif1.lif" in text
    assert "reset: subtract (argument)" in text and "dt: 0.0001 s (argument)" in text
    assert (f"{summary.nonzero_weights}/{summary.weights} non-zero weights" in text)
    assert f"max fan-in {summary.fan_in_max}" in text
    assert "alpha=0.55 beta=0.9 thr=1 reset=subtract" in text


def test_summary_is_frozen() -> None:
    summary = describe(load_model(fixture_path("nir", "lif_norse.nir"), dt=1e-4, reset="zero"))
    assert isinstance(summary, GraphSummary)
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.weights = 0  # type: ignore[misc]
    assert summary.weights == 1 and summary.neurons == 1


def test_conv_geometry_and_synapses_match_the_file_and_a_convolution_of_ones() -> None:
    """kernel / stride / padding / groups as stored; synapses = non-zero taps landing on real
    inputs, counted independently by convolving an all-ones input with the weight mask."""
    import nir
    import torch
    import torch.nn.functional as F

    from sbc_deploy.describe import describe_model

    path = fixture_path("nir", "scnn_mnist_snntorch.nir")
    description = describe_model(path)  # no dt, no reset: the structure is still described
    assert not description.discrete and set(description.missing) == {"dt", "reset"}
    raw = nir.read(path)
    by_name = {n.name: n for n in description.summary.nodes}
    convs = {k: v for k, v in raw.nodes.items() if isinstance(v, nir.Conv2d)}
    assert convs
    for name, conv in convs.items():
        node = by_name[name]
        assert node.kernel == tuple(conv.weight.shape[2:])
        assert node.stride == tuple(int(v) for v in np.broadcast_to(conv.stride, (2,)))
        assert node.groups == int(conv.groups)
        mask = torch.from_numpy((np.asarray(conv.weight) != 0).astype(np.float32))
        ones = torch.ones((1, *node.input_shape))
        counted = F.conv2d(ones, mask, stride=node.stride, padding=node.padding,
                           groups=node.groups)
        assert node.synapses == int(counted.sum())
        assert tuple(counted.shape[1:]) == node.output_shape
    # the continuous parameters are the file's own numbers
    lif = next(k for k, v in raw.nodes.items() if isinstance(v, (nir.IF, nir.LIF)))
    params = description.continuous[lif]
    assert params["r"] == pytest.approx((float(np.min(raw.nodes[lif].r)),
                                         float(np.max(raw.nodes[lif].r))))
