"""The bundled networks and data: they load with no flags and keep their recorded accuracy."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import torch
from conftest import ROOT

from sbc_deploy.bundled import (
    DATA_FILES,
    MODELS,
    bundled_manifest,
    bundled_path,
    load_bundled_data,
    load_bundled_model,
)
from sbc_deploy.errors import ConfigError, FormatError
from sbc_deploy.ir import LIF, Affine, Flatten
from sbc_deploy.sim import accuracy, classify, default_decoding, simulate


def eval_accuracy(graph, data, batch: int = 250) -> float:
    output = graph.outputs[0]
    decoding = default_decoding(graph)
    preds = [classify(simulate(graph, torch.from_numpy(x)).outputs[output], decoding)
             for x, _ in data.batches(batch)]
    return accuracy(torch.cat(preds), data.y)


@pytest.fixture(scope="module")
def eval_data():
    return load_bundled_data("eval")


def test_files_are_present_and_small() -> None:
    names = [f"{m}.nir" for m in MODELS] + list(DATA_FILES.values()) + ["manifest.json"]
    sizes = {name: bundled_path(name).stat().st_size for name in names}
    assert sum(sizes.values()) < 10 * 2**20, sizes


def test_models_load_with_no_flags_and_carry_dt_and_reset() -> None:
    manifest = bundled_manifest()
    for name in MODELS:
        graph = load_bundled_model(name)
        assert graph.dt == manifest[name]["dt"]
        assert graph.metadata["dt_source"] == "file metadata 'dt'"
        assert graph.metadata["reset"] == "zero" == manifest[name]["reset"]
        assert graph.metadata["reset_source"] == "file metadata"
        assert tuple(graph.nodes[graph.inputs[0]].shape) == (2, 34, 34)
        assert default_decoding(graph) == "spike_count"


def test_mlp_is_the_papers_architecture() -> None:
    graph = load_bundled_model("nmnist_mlp")
    kinds = [type(graph.nodes[n]) for n in graph.topological_order][1:-1]
    assert kinds == [Flatten, Affine, LIF, Affine, LIF]
    hidden, out = (graph.nodes[n] for n in graph.topological_order if
                   isinstance(graph.nodes[n], Affine))
    assert hidden.weight.shape == (256, 2312) and out.weight.shape == (10, 256)
    for lif in (graph.nodes[n] for n in graph.nodes if isinstance(graph.nodes[n], LIF)):
        np.testing.assert_allclose(lif.beta, 0.5, rtol=1e-12)
        np.testing.assert_allclose(lif.v_threshold, 1.0)


def test_data_sets_are_balanced_binary_and_disjoint(eval_data) -> None:
    calib = load_bundled_data("calib")
    manifest = bundled_manifest()["nmnist_mlp"]
    for data, per_class in ((calib, 20), (eval_data, 100)):
        assert data.x.shape[1:] == (manifest["steps"], 2, 34, 34)
        assert data.dt == manifest["dt"]
        np.testing.assert_array_equal(np.bincount(data.y), [per_class] * 10)
        assert set(np.unique(data.x).tolist()) == {0, 1}
    # spikes are sparse, as event frames are (about 4 % of pixels per 10 ms frame)
    assert 0.01 < eval_data.x.mean() < 0.1

    def digest(x: np.ndarray) -> set[str]:
        return {hashlib.sha1(sample.tobytes()).hexdigest() for sample in x}

    assert not digest(calib.x) & digest(eval_data.x)


def test_bundled_mlp_keeps_its_recorded_accuracy(eval_data) -> None:
    recorded = bundled_manifest()["nmnist_mlp"]["accuracy_float_sim"]
    measured = eval_accuracy(load_bundled_model("nmnist_mlp"), eval_data)
    assert abs(measured - recorded) <= 0.005
    assert measured > 0.9


@pytest.mark.slow
def test_bundled_cnn_keeps_its_recorded_accuracy(eval_data) -> None:
    if "nmnist_cnn" not in MODELS:
        pytest.skip("the CNN is not bundled yet (examples/train_nmnist_cnn.py makes it)")
    recorded = bundled_manifest()["nmnist_cnn"]["accuracy_float_sim"]
    measured = eval_accuracy(load_bundled_model("nmnist_cnn"), eval_data)
    assert abs(measured - recorded) <= 0.005
    assert measured > 0.9


def test_readme_records_the_manifest_accuracies() -> None:
    text = (ROOT / "examples" / "README.md").read_text(encoding="utf-8")
    manifest = bundled_manifest()
    for name in MODELS:
        rows = [line for line in text.splitlines() if f"`{name}.nir`" in line]
        numbers = [float(v) for row in rows for v in re.findall(r"(\d+\.\d+) %", row)]
        assert 100 * manifest[name]["accuracy_float_sim"] in [pytest.approx(v) for v in numbers]


def test_bad_names() -> None:
    with pytest.raises(ConfigError, match="unknown bundled model"):
        load_bundled_model("resnet")
    with pytest.raises(ConfigError, match="'calib' or 'eval'"):
        load_bundled_data("test")  # type: ignore[arg-type]
    with pytest.raises(FormatError, match="not in the installed package"):
        bundled_path("missing.nir")
