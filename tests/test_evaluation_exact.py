"""The evaluation's fast paths give exactly the straightforward numbers.

- SynOpsCounter (batch sums, fan-outs computed once, integrality known from the graph) equals
  an independent count: every (input event, non-zero synapse that reads it) pair, counted
  with the layer's own op on |x| and the 0/1 weight mask, on the bundled networks and the NIR
  paper's N-MNIST CNN (snntorch export), chunked or not, with and without ``integer_inputs``.
- ActivityMeter (one per-neuron sum per chunk) equals rates and silent fractions computed on
  the whole recorded sequences.
- The exact-sum guards fall back to float64 once a dtype's integers run out.
- neuron_sequence's skipped ops (``1 * v``, ``x + 0``) and its fused subtractive reset are bit
  for bit the step function, signed zeros and thresholds at the edges included.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import fixture_path

from sbc_deploy import bundled
from sbc_deploy.frontends import load_model
from sbc_deploy.guards import ActivityMeter, spiking_layers
from sbc_deploy.ir import IF, LIF, Affine, Conv2d, Graph
from sbc_deploy.report.synops import count_synops
from sbc_deploy.sim import simulate
from sbc_deploy.sim.float_sim import (
    NeuronState,
    neuron_initial_state,
    neuron_parameters,
    neuron_sequence,
    neuron_step,
)
from sbc_deploy.report.synops_counter import SynOpsCounter, _event_sum, integer_values


def _network(name: str) -> tuple[Graph, torch.Tensor]:
    """A network and 6 samples of its kind of input (uint8 spikes as float32)."""
    if name == "scnn_mnist_snntorch":
        graph = load_model(str(fixture_path("nir", "scnn_mnist_snntorch.nir")), dt=1.0,
                           reset="subtract")
        rng = np.random.default_rng(7)
        x = (rng.random((40, 6, 2, 34, 34)) < 0.15).astype(np.float32)
        return graph, torch.from_numpy(x)
    graph = bundled.load_bundled_model(name)
    data = bundled.load_bundled_data("eval")
    x = np.swapaxes(np.asarray(data.x[:6]), 0, 1)[:40]
    return graph, torch.from_numpy(np.array(x)).to(torch.float32)


def _independent_counts(graph: Graph, inputs: dict[str, torch.Tensor]):
    """Per layer: (synops[t], dense_synops[t], spikes_in[t]) by the layer's own op on |x| and
    the 0/1 mask: sum over outputs of W_mask (*) |x| counts every (event, non-zero synapse)
    pair once; zero padding reads no event."""
    counts = {}
    for entry in graph.synapse_layers():
        syn = entry.synapse
        x = inputs[entry.name].abs().to(torch.float64)
        steps, batch = x.shape[:2]
        mask = torch.from_numpy((np.asarray(syn.weight) != 0).astype(np.float64))
        result = []
        for m in (mask, torch.ones_like(mask)):
            if isinstance(syn, Affine):
                y = x.reshape(steps, batch, -1) @ m.T
            else:
                assert isinstance(syn, Conv2d)
                y = F.conv2d(x.flatten(0, 1), m, stride=syn.stride, padding=syn.padding,
                             dilation=syn.dilation, groups=syn.groups)
            result.append(y.reshape(steps, -1).sum(dim=1).round().long().numpy())
        spikes = x.reshape(steps, -1).sum(dim=1).round().long().numpy()
        counts[entry.name] = (*result, spikes)
    return counts


@pytest.mark.parametrize("name", ["nmnist_mlp", "nmnist_cnn", "scnn_mnist_snntorch"])
@pytest.mark.parametrize("integer_inputs", [False, True])
def test_synops_counter_equals_an_independent_count(name, integer_inputs):
    graph, x = _network(name)
    inputs: dict[str, torch.Tensor] = {}
    simulate(graph, x, on_synapse_input=inputs.__setitem__)
    expected = _independent_counts(graph, inputs)
    for time_chunk, batch_chunk in ((None, None), (7, 4)):
        counter = SynOpsCounter(graph, steps=x.shape[0], batch=x.shape[1],
                                integer_inputs=integer_inputs)
        simulate(graph, x, on_synapse_input=counter, time_chunk=time_chunk,
                 batch_chunk=batch_chunk)
        report = counter.report()
        for layer in report.layers:
            synops, dense, spikes = expected[layer.name]
            np.testing.assert_array_equal(layer.synops, synops, err_msg=layer.name)
            np.testing.assert_array_equal(layer.dense_synops, dense, err_msg=layer.name)
            np.testing.assert_array_equal(layer.spikes_in, spikes, err_msg=layer.name)
            assert not layer.graded
        assert report.to_dict() == count_synops(graph, inputs).to_dict()
        # every layer carries events: the comparison is not one of zeros
        assert all(int(layer.spikes_in.sum()) > 0 for layer in report.layers)


def test_integer_values_are_known_where_the_graph_shows_them():
    graph = load_model(str(fixture_path("nir", "scnn_mnist_snntorch.nir")), dt=1.0,
                       reset="subtract")
    plain, flagged = integer_values(graph), integer_values(graph, integer_inputs=True)
    assert plain["input"] == (False, False) and flagged["input"] == (True, False)
    for name in ("1", "3", "6", "10", "12"):      # IF neurons: 0/1 spikes
        assert plain[name] == (True, True)
    assert plain["4"] == plain["7"] == plain["8"] == (True, True)   # sum pools, flatten
    assert plain["0"] == plain["9"] == (False, False)    # synapse outputs: not integers


def test_activity_meter_equals_rates_of_the_whole_sequences():
    graph, x = _network("scnn_mnist_snntorch")
    layers = spiking_layers(graph)
    whole = simulate(graph, x, record=layers).recorded
    meter = ActivityMeter(layers, "evaluation")
    simulate(graph, x, record=layers, on_recorded=meter.add, time_chunk=9, batch_chunk=6)
    got = meter.result()
    for name in layers:
        spikes = whole[name].to(torch.float64)
        assert got.rate[name] == float(spikes.sum()) / spikes.numel()
        fired = (spikes != 0).flatten(2).any(dim=0).any(dim=0)
        assert got.silent_neurons[name] == 1.0 - float(fired.float().mean())
    assert 0 < min(got.rate.values())


def test_exact_sums_fall_back_to_float64_past_the_dtypes_integers():
    # float16 holds the integers up to 2**11 = 2048 exactly; 3000 ones must still count 3000
    ones = torch.ones(1, 3000, 2, dtype=torch.float16)
    assert _event_sum(ones).tolist() == [[3000.0, 3000.0]]
    meter = ActivityMeter(["a"], "evaluation")
    spikes = torch.zeros(3000, 1, 3, dtype=torch.float16)
    spikes[:, :, :2] = 1
    meter.add({"a": spikes})
    assert meter.result().rate["a"] == 6000 / 9000
    assert meter.result().silent_neurons["a"] == 1.0 - float(torch.tensor([1.0, 1, 0]).mean())


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


NEURONS = {
    # IF without bias: x + 0 skipped and the fused reset
    "IF-subtract-unit": IF(v_threshold=np.array([1.0, 0.5, 0.25, 2.0]), reset="subtract"),
    # a negative and a zero threshold: the where-reset
    "IF-subtract-edges": IF(v_threshold=np.array([1.0, -0.5, 0.0, 0.25]), reset="subtract"),
    # reset to -0: x + 0 kept (the membrane may be -0)
    "IF-zero-negzero": IF(v_threshold=np.array([1.0, 0.5, 0.25, 2.0]),
                          v_reset=np.array([-0.0, 0.0, -0.0, 0.1])),
    "IF-gain-bias": IF(v_threshold=np.array([1.0, 0.5, 0.25, 2.0]), gain=np.array(
        [1.0, 0.5, 2.0, 1.0]), bias=np.array([0.0, 0.1, -0.2, 0.0]), reset="subtract"),
    "LIF-subtract": LIF(beta=np.array([0.9, 1.0, 0.5, 0.99]),
                        v_threshold=np.array([1.0, 0.5, 0.25, 2.0]), reset="subtract"),
}


@pytest.mark.parametrize("case", list(NEURONS))
@pytest.mark.parametrize("start", ["zero", "negative-zero"])
def test_neuron_sequence_fast_paths_are_bit_identical_to_stepping(case, start, rng):
    p = neuron_parameters(NEURONS[case], torch.float32)
    values = rng.choice([-0.0, 0.0, 0.25, 0.5, -0.25, 1.0, 0.3, -1e-40], size=(60, 5, 4))
    x = torch.from_numpy(values.astype(np.float32))
    state = neuron_initial_state(p, 5)
    if start == "negative-zero":
        state = NeuronState(None, torch.full((5, 4), -0.0))
    before = _bits(state.v).clone()
    out, final, traces = neuron_sequence(x, p, state, trace=("v",))
    assert torch.equal(_bits(state.v), before)      # the caller's state is not modified
    for t in range(x.shape[0]):
        y, state = neuron_step(x[t], state, p)
        assert torch.equal(_bits(out[t]), _bits(y)), t
        assert torch.equal(_bits(traces["v"][t]), _bits(state.v)), t
    assert torch.equal(_bits(final.v), _bits(state.v))
    assert 0 < float(out.sum()) < out.numel()
