"""``--reset``, ``--dt`` (and ``--discretization``) apply to a bundled network as to a file.

Regression (issue 19): ``sbc-deploy nmnist_mlp --reset subtract --nir-for sinabs`` loaded the
bundled network with its file's zero reset, so model.nir said zero while report.json said
subtract. The model is loaded through the same function the pipeline uses
(``validate._load_model``) and written with the NIR exporter the pipeline calls.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from sbc_deploy import bundled
from sbc_deploy.exporters.nir_consumers import consumer_model
from sbc_deploy.exporters.to_nir import write_nir_for
from sbc_deploy.frontends.from_nir import from_nir
from sbc_deploy.ir import Neuron
from sbc_deploy.pipeline import DeployRequest
from sbc_deploy.validate import _load_model


def spiking_resets(graph) -> set[str]:
    return {node.reset for node in graph.nodes.values()
            if isinstance(node, Neuron) and node.spiking}


def nir_metadata_reset(path) -> str:
    with h5py.File(path, "r") as f:
        meta = f["node"]["metadata"]
        value = meta["reset"][()]
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.mark.parametrize("name", bundled.MODELS)
def test_reset_flag_reaches_a_bundled_network_and_its_nir_export(name, tmp_path):
    plain, _, _, _, _ = _load_model(DeployRequest(model=name, calib="x", eval="x"))
    assert spiking_resets(plain) == {"zero"}            # what the bundled file records
    graph, _, _, _, _ = _load_model(DeployRequest(model=name, reset="subtract", calib="x",
                                                  eval="x"))
    assert spiking_resets(graph) == {"subtract"}
    assert "argument" in graph.metadata["reset_source"]
    # in the model sinabs' importer builds (MultiSpike), as --nir-for sinabs converts it
    export = write_nir_for(consumer_model(graph, "sinabs").graph, tmp_path / "model.nir",
                           nir_for="sinabs")
    assert nir_metadata_reset(tmp_path / "model.nir") == "subtract"
    assert export is not None


def test_dt_and_discretization_flags_reach_a_bundled_network():
    base, _, _, _, _ = _load_model(DeployRequest(model="nmnist_mlp", calib="x", eval="x"))
    graph, _, _, _, _ = _load_model(DeployRequest(model="nmnist_mlp", dt=0.02, calib="x",
                                                  eval="x", discretization="exact"))
    assert base.dt == pytest.approx(0.01) and graph.dt == pytest.approx(0.02)
    assert graph.metadata["discretization"] == "exact"
    # the flags reach the reader: the same decays as reading the bundled file with them
    expected = from_nir(bundled.bundled_path("nmnist_mlp.nir"), dt=0.02, discretization="exact")
    for name, node in graph.nodes.items():
        if isinstance(node, Neuron):
            np.testing.assert_array_equal(node.beta, expected.nodes[name].beta)
            assert not np.allclose(node.beta, base.nodes[name].beta)
    assert "argument" in str(graph.metadata["dt_source"])
