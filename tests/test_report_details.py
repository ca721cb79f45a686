"""Per-layer numbers of the report (report/details.py) against independent computations: the
network totals they must add up to, the mapping's memory count, and spikes counted from a
separate simulation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import fixture_path
from sbc_deploy.check import check
from sbc_deploy.data import Dataset
from sbc_deploy.frontends import load_model
from sbc_deploy.ir import Neuron
from sbc_deploy.pipeline import DeployRequest, deploy
from sbc_deploy.report.details import memory_forms
from sbc_deploy.sim import simulate
from sbc_deploy.targets import load_target


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    path = fixture_path("netx", "mnist_small", "network.net")
    rng = np.random.default_rng(0)
    x = (rng.random((24, 10, 784)) < 0.15).astype(np.uint8)
    data = Dataset(x, None, 1e-3, "random spikes")  # unlabelled: no accuracy guard
    out = tmp_path_factory.mktemp("deploy")
    return deploy(DeployRequest(model=str(path), targets=("loihi2",), calib=data, eval=data,
                                sparsity=0.5, out_dir=out)), data


def test_layer_energies_and_synops_add_up_to_the_network(result):
    deployed, _ = result
    t = deployed.report.targets[0]
    static = [term for term in t.energy_terms if term.name.startswith("core steps")]
    assert len(static) == 1
    for which in ("dense", "compressed"):
        layers = sum(getattr(layer, f"energy_{which}_j") for layer in t.layers)
        total = getattr(t.energy_j, which)
        count = static[0].count_dense if which == "dense" else static[0].count_compressed
        assert layers + count * static[0].cost_j == pytest.approx(total, rel=1e-9)
        synops = sum(getattr(layer, f"synops_{which}") for layer in t.layers)
        assert synops == pytest.approx(getattr(t.synops, which), rel=1e-9)
    assert all(layer.label == f"{layer.name} -> {layer.neuron}" for layer in t.layers)


def test_memory_in_the_storage_used_is_what_the_mapping_counts(result):
    deployed, _ = result
    target = load_target("loihi2")
    graph = deployed.results[0].graph
    mapping = check(graph, target).mapping
    t = deployed.report.targets[0]
    rows = {layer.name: layer for layer in t.layers}
    for place in mapping.layers:
        if len(place.synapses) != 1:
            continue
        row = rows[place.synapses[0]]
        used = row.memory_bits_dense if row.storage == "dense" else row.memory_bits_sparse
        assert used == place.synapse_bits
        assert row.storage == place.storage and row.cores == tuple(place.cores)
    # dense storage: every potential synapse x 8 bits (loihi2 stores the layer's own width)
    layer0 = graph.nodes[t.layers[0].name]
    dense, sparse = memory_forms(layer0, target)
    assert dense == layer0.weight.size * 8
    nonzero = int(np.count_nonzero(layer0.weight))
    assert sparse == nonzero * (8 + target.cores.index_bits)


def test_firing_rates_are_the_spikes_of_each_layers_neuron(result):
    deployed, data = result
    graph = deployed.results[0].graph
    neurons = [name for name, node in graph.nodes.items()
               if isinstance(node, Neuron) and node.spiking]
    x = torch.from_numpy(np.swapaxes(np.asarray(data.x), 0, 1).astype(np.float32))
    recorded = simulate(graph, x, record=neurons).recorded
    rows = {layer.neuron: layer for layer in deployed.report.targets[0].layers}
    for name in neurons:
        spikes = recorded[name]
        expected = float(spikes.sum()) / spikes.numel()
        assert rows[name].rate_compressed == pytest.approx(expected, rel=1e-6)


def test_a_neuron_driven_by_two_layers_is_counted_once():
    """Recurrent braille network: fc1 and w_rec both drive lif1.lif; its updates belong to one
    of them, so the layers still add up."""
    from sbc_deploy.report.details import layer_details
    from sbc_deploy.report.synops import count_synops

    graph = load_model(fixture_path("nir", "braille_noDelay_bias_zero.nir"), dt=1e-4,
                       reset="zero")
    rng = np.random.default_rng(1)
    x = torch.from_numpy((rng.random((20, 4, 12)) < 0.3).astype(np.float32))
    inputs = {}
    simulate(graph, x, on_synapse_input=inputs.__setitem__)
    counts = count_synops(graph, inputs)
    target = load_target("loihi2")
    details = layer_details(graph, target, check(graph, target).mapping, counts, counts, {}, {})
    from sbc_deploy.report.energy import costs_from_target

    costs = costs_from_target(target)
    per = counts.per_sample_counts()
    total = (per["synops"] * costs.synop.joules + per["spikes_routed"] * costs.spike.joules
             + per["neuron_updates"] * costs.neuron_update.joules)
    assert sum(d.energy_compressed_j for d in details.values()) == pytest.approx(total, rel=1e-9)
    assert details["lif1.w_rec"].neuron == details["fc1"].neuron == "lif1.lif"
    assert dataclasses.asdict(details["fc1"])["energy_compressed_j"] > 0
