"""Output decoding: class predictions, ties, accuracy and the default read-out per graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import fixture_path

from sbc_deploy.errors import ConfigError, DataError
from sbc_deploy.ir import IF, LI, LIF, Affine, CubaLI, Graph, Input, Integrator, Output, Threshold
from sbc_deploy.sim import accuracy, classify, default_decoding, simulate


def test_spike_count_sums_over_time():
    y = np.zeros((5, 2, 3))
    y[[0, 1, 4], 0, 2] = 1  # sample 0: class 2 spikes 3 times
    y[[0, 3], 0, 1] = 1
    y[[1, 2], 1, 0] = 1     # sample 1: class 0 twice, class 1 once
    y[4, 1, 1] = 1
    assert classify(torch.from_numpy(y), "spike_count").tolist() == [2, 0]


def test_ties_go_to_the_lowest_index():
    y = torch.zeros(4, 3, 5)
    y[:, 0, [1, 3]] = 1.0         # counts 4 and 4 -> class 1
    y[0, 1, [4, 2]] = 1.0         # counts 1 and 1 -> class 2
    # sample 2 never spikes: every count is 0 -> class 0
    pred = classify(y, "spike_count")
    assert pred.dtype == torch.long and pred.tolist() == [1, 2, 0]
    # the same holds for membrane read-outs
    assert classify(torch.full((2, 1, 4), 0.5), "membrane_last").tolist() == [0]


def test_membrane_modes_read_different_statistics():
    # class 0: one high peak; class 1: highest at the end; class 2: highest on average
    v = np.array([[0.0, 0.0, 0.6],
                  [2.0, 0.0, 0.6],
                  [0.0, 0.1, 0.6],
                  [0.0, 0.9, 0.6]])[:, None, :]
    assert classify(v, "membrane_max").tolist() == [0]
    assert classify(v, "membrane_last").tolist() == [1]
    assert classify(v, "membrane_mean").tolist() == [2]  # means 0.5, 0.25, 0.6


def test_classify_rejects_bad_mode_and_shape():
    with pytest.raises(ConfigError, match="spike_count"):
        classify(torch.zeros(2, 2, 2), "votes")
    with pytest.raises(DataError, match=r"\(2, 3\)"):
        classify(torch.zeros(2, 3), "spike_count")


def test_accuracy():
    assert accuracy(torch.tensor([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == 0.75
    with pytest.raises(DataError):
        accuracy(torch.tensor([0, 1]), torch.tensor([0, 1, 2]))
    with pytest.raises(DataError):
        accuracy(torch.tensor([]), torch.tensor([]))


def readout_graph(last) -> Graph:
    n = last.output_shape[0]
    return Graph.chain([("in", Input((3,))), ("fc", Affine(np.ones((n, 3)))), ("last", last),
                        ("out", Output((n,)))], dt=1e-3)


@pytest.mark.parametrize("last,mode", [
    (LIF(beta=[0.9, 0.9], v_threshold=[1, 1]), "spike_count"),
    (IF(v_threshold=[1, 1]), "spike_count"),
    (Threshold(threshold=[0.5, 0.5]), "spike_count"),
    (LI(beta=[0.9, 0.9]), "membrane_last"),
    (CubaLI(alpha=[0.5, 0.5], beta=[0.9, 0.9]), "membrane_last"),
    (Integrator(gain=[1.0, 1.0]), "membrane_last"),
])
def test_default_decoding_follows_the_output_source(last, mode):
    assert default_decoding(readout_graph(last)) == mode


def test_default_decoding_of_a_synapse_readout_and_of_the_fixtures():
    graph = Graph.chain([("in", Input((3,))), ("fc", Affine(np.ones((2, 3)))),
                         ("out", Output((2,)))], dt=1e-3)
    assert default_decoding(graph) == "membrane_last"
    with pytest.raises(ConfigError, match="not an Output"):
        default_decoding(graph, "fc")
    from_nir = pytest.importorskip("sbc_deploy.frontends.from_nir").from_nir
    for name in ("braille_noDelay_bias_zero.nir", "scnn_mnist_snntorch.nir"):
        fixture = from_nir(fixture_path("nir", name), dt=1e-4, reset="subtract")
        assert default_decoding(fixture) == "spike_count"  # CubaLIF / IF output layers


def test_classify_on_a_simulated_readout_matches_numpy(rng):
    w = rng.normal(size=(4, 6))
    graph = Graph.chain([("in", Input((6,))), ("fc", Affine(w)), ("li", LI(beta=np.full(4, 0.8))),
                         ("out", Output((4,)))], dt=1e-3)
    x = rng.normal(size=(12, 9, 6))
    out = simulate(graph, torch.from_numpy(x), dtype=torch.float64).outputs["out"]
    v = np.zeros((9, 4))
    for t in range(12):
        v = 0.8 * v + x[t] @ w.T
    assert classify(out, default_decoding(graph)).tolist() == v.argmax(1).tolist()
