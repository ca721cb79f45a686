"""SynOps counting: sinabs' conv fixture, a linear layer by hand, pruning changes the count by
exactly the pruned synapses that carried spikes (against a brute-force count), and counting from
either simulator's recordings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import fixture_path
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sbc_deploy.errors import DataError
from sbc_deploy.frontends.from_netx import from_netx
from sbc_deploy.ir import IF, Affine, Conv1d, Conv2d, Flatten, Graph, Input, Output
from sbc_deploy.report.synops import count_synops, fan_out, synops_sources
from sbc_deploy.sim.float_sim import simulate
from sbc_deploy.sim.fixed_point import to_fixed_point
from sbc_deploy.sim.int_core import simulate_integer


def _graph(synapse: Affine | Conv1d | Conv2d) -> Graph:
    shape = synapse.output_shape
    return Graph.chain([("in", Input(synapse.input_shape)), ("syn", synapse),
                        ("n", IF(v_threshold=np.ones(shape))), ("out", Output(shape))], dt=1e-3)


def _brute_force_synops(synapse: Conv2d, x: np.ndarray) -> int:
    """Every (input event, output position, tap) triple with a non-zero weight, by loops."""
    w = np.asarray(synapse.weight)
    c_out, c_in_g, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = synapse.stride, synapse.padding, synapse.dilation
    _, h, wd = synapse.input_shape
    _, ho, wo = synapse.output_shape
    g_out = c_out // synapse.groups
    total = 0
    for co in range(c_out):
        group = co // g_out
        for oy in range(ho):
            for ox in range(wo):
                for ci in range(c_in_g):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
                            if w[co, ci, ky, kx] != 0 and 0 <= iy < h and 0 <= ix < wd:
                                total += int(x[..., group * c_in_g + ci, iy, ix].sum())
    return total


def test_sinabs_conv_synops_fixture_for_every_kernel_stride_and_padding() -> None:
    """sinabs counts nn.Conv2d(3, 5, k, stride=s, padding=p) on a (20, 3, 9, 9) input of
    integer spike counts; its numbers are per step, the batch total over 20."""
    x = torch.load(fixture_path("synops", "conv_input.pth")).numpy()
    expected = torch.load(fixture_path("synops", "conv_layer_synops.pth"))
    assert len(expected) == 18
    for (k, s, p), value in expected.items():
        conv = Conv2d(np.ones((5, 3, k, k)), input_shape=(3, 9, 9), stride=s, padding=p)
        report = count_synops(_graph(conv), {"syn": x[:, None]})       # T = 20, B = 1
        assert report.synops / 20 == pytest.approx(float(value), abs=0), (k, s, p)


def test_linear_layer_by_hand() -> None:
    """W (3 x 4) with zeros; input events per step; each event costs the non-zeros of its
    column: fan-out (2, 0, 3, 1)."""
    w = np.array([[1.0, 0.0, 2.0, 0.0],
                  [0.0, 0.0, -1.0, 0.0],
                  [3.0, 0.0, 4.0, 5.0]])
    x = np.zeros((3, 2, 4))
    x[0, 0] = [1, 1, 0, 0]      # 2 + 0
    x[0, 1] = [0, 0, 1, 1]      # 3 + 1
    x[1, 1] = [2, 0, 0, 0]      # an event count of 2: 2 * 2
    graph = _graph(Affine(w))
    report = count_synops(graph, {"syn": x})
    layer = report.layer("syn")
    assert layer.synops.tolist() == [6, 4, 0]
    assert layer.dense_synops.tolist() == [12, 6, 0]
    assert layer.spikes_in.tolist() == [4, 2, 0]
    assert (layer.synapses, layer.dense_synapses, layer.ann_macs, layer.ann_macs_nonzero) == \
        (6, 12, 12, 6)
    assert report.per_sample == 5.0 and report.samples == 2 and report.steps == 3
    assert report.neuron_updates == 3 * 3 * 2
    assert fan_out(Affine(w)).tolist() == [2, 0, 3, 1]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), k=st.integers(1, 4), stride=st.integers(1, 3),
       padding=st.integers(0, 2), dilation=st.integers(1, 2), groups=st.sampled_from([1, 2]))
def test_pruning_changes_synops_by_the_pruned_synapses_that_carried_spikes(
        seed: int, k: int, stride: int, padding: int, dilation: int, groups: int) -> None:
    assume(dilation * (k - 1) + 1 <= 6 + 2 * padding)     # input is 7 x 6
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(4, 4 // groups, k, k))
    weight[weight == 0] = 1.0
    mask = rng.random(weight.shape) < 0.6
    dense = Conv2d(weight, input_shape=(4, 7, 6), stride=stride, padding=padding,
                   dilation=dilation, groups=groups)
    pruned = dense.with_weight(weight * mask)
    removed = dense.with_weight(weight * ~mask)
    x = rng.integers(0, 3, size=(3, 2, 4, 7, 6)) * (rng.random((3, 2, 4, 7, 6)) < 0.4)
    n_dense = count_synops(_graph(dense), {"syn": x}).synops
    n_pruned = count_synops(_graph(pruned), {"syn": x}).synops
    # the synapses removed by pruning, each times the events it would have carried
    assert n_dense - n_pruned == _brute_force_synops(removed, x)
    assert n_pruned == _brute_force_synops(pruned, x)
    report = count_synops(_graph(pruned), {"syn": x})
    assert report.dense_synops == n_dense


def test_conv1d_and_ann_macs_skip_padding() -> None:
    conv = Conv1d(np.ones((2, 1, 3)), input_shape=(1, 5), padding=1)
    # output positions 0..4; taps landing inside [0, 5): 2 + 3 + 3 + 3 + 2 = 13 per channel
    assert fan_out(conv).tolist() == [[4, 6, 6, 6, 4]]
    report = count_synops(_graph(conv), {"syn": np.ones((1, 1, 1, 5))})
    assert report.ann_macs == 26 == report.synops
    valid = Conv2d(np.ones((5, 3, 3, 3)), input_shape=(3, 9, 9))
    assert count_synops(_graph(valid), {"syn": np.zeros((1, 1, 3, 9, 9))}).ann_macs == \
        5 * 7 * 7 * 3 * 3 * 3                       # no padding: the textbook formula


def test_counts_from_either_simulator_agree_with_the_synapse_inputs(rng: np.random.Generator
                                                                    ) -> None:
    """From the integer core's recorded spikes (keyed by neuron) and from the float simulator's
    synapse-input hook (keyed by synapse) the same input gives the same count."""
    graph = from_netx(fixture_path("netx", "mnist_small", "network.net"))
    x = (rng.random((10, 3, 784)) < 0.2).astype(np.float32)
    sources = synops_sources(graph)
    assert sources == {"layer0.dense": "input", "layer1.dense": "layer0.neuron",
                       "layer2.dense": "layer1.neuron"}
    core = simulate_integer(to_fixed_point(graph), x, record=sorted(set(sources.values())))
    from_core = count_synops(graph, core.recorded)
    by_synapse = {syn: core.recorded[src] for syn, src in sources.items()}
    assert count_synops(graph, by_synapse).synops == from_core.synops
    w0 = np.asarray(graph.nodes["layer0.dense"].weight)
    assert from_core.layer("layer0.dense").synops.sum() == int(
        (x.sum(axis=1) @ (w0 != 0).sum(axis=0)).sum())
    hooked: dict[str, torch.Tensor] = {}
    result = simulate(graph, torch.from_numpy(x), record=sorted(set(sources.values())),
                      on_synapse_input=hooked.__setitem__)
    assert count_synops(graph, hooked).synops == count_synops(graph, result.recorded).synops


def test_flatten_sources_merge_and_missing_inputs(rng: np.random.Generator) -> None:
    conv = Conv2d(np.ones((2, 1, 2, 2)), input_shape=(1, 3, 3))
    graph = Graph.chain([("in", Input((1, 3, 3))), ("conv", conv),
                         ("n1", IF(v_threshold=np.ones((2, 2, 2)))), ("flat", Flatten((2, 2, 2))),
                         ("fc", Affine(np.ones((3, 8)))), ("n2", IF(v_threshold=np.ones(3))),
                         ("out", Output((3,)))], dt=1e-3)
    assert synops_sources(graph) == {"conv": "in", "fc": "n1"}
    x = rng.integers(0, 2, size=(4, 2, 1, 3, 3))
    s1 = rng.integers(0, 2, size=(4, 2, 2, 2, 2))
    report = count_synops(graph, {"in": x, "n1": s1})
    assert report.layer("fc").synops.tolist() == (s1.reshape(4, -1).sum(1) * 3).tolist()
    both = report.merge(report)
    assert both.samples == 4 and both.synops == 2 * report.synops
    assert both.per_sample == report.per_sample
    with pytest.raises(DataError, match="no recorded input for synapse 'fc'"):
        count_synops(graph, {"in": x})
    with pytest.raises(DataError, match=r"\[T, B\]"):
        count_synops(graph, {"in": x, "n1": s1[:, :1]})


def test_analog_input_counts_one_event_per_value() -> None:
    graph = _graph(Affine(np.array([[1.0, 1.0], [0.0, 1.0]])))
    report = count_synops(graph, {"syn": np.array([[[0.5, 0.0]], [[0.25, -1.5]]])})
    layer = report.layer("syn")
    assert layer.graded and layer.synops.tolist() == [1, 3]
