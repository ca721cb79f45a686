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
from sbc_deploy.ir import LIF, Affine, Conv2d, Flatten, SumPool2d
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


def _cnn_layers():
    if "nmnist_cnn" not in MODELS:
        pytest.skip("the CNN is not bundled yet (examples/train_nmnist_cnn.py makes it)")
    graph = load_bundled_model("nmnist_cnn")
    return graph, [graph.nodes[n] for n in graph.topological_order][1:-1]


def test_cnn_is_the_examples_architecture() -> None:
    _, layers = _cnn_layers()
    assert [type(node) for node in layers] == [Conv2d, LIF, SumPool2d, Conv2d, LIF, SumPool2d,
                                               Flatten, Affine, LIF]
    conv1, _, pool1, conv2, _, pool2, _, fc, _ = layers
    assert conv1.weight.shape[1:] == (2, 5, 5) and conv2.weight.shape[2:] == (5, 5)
    assert conv2.weight.shape[1] == conv1.weight.shape[0]
    assert fc.weight.shape == (10, conv2.weight.shape[0] * 5 * 5)
    for pool in (pool1, pool2):
        assert pool.kernel_size == pool.stride == (2, 2)
    for synapse in (conv1, conv2, fc):
        assert synapse.bias is None or not np.any(synapse.bias)
    lifs = [node for node in layers if isinstance(node, LIF)]
    assert len(lifs) == 3
    for lif in lifs:
        np.testing.assert_allclose(lif.beta, 0.5, rtol=1e-12)
        np.testing.assert_allclose(lif.v_threshold, 1.0)
        assert lif.reset == "zero" and not np.any(lif.bias)


def test_cnn_simulation_matches_an_independent_forward(eval_data) -> None:
    """The simulator on the NIR file == conv / reshape-sum pool / LIF written out here."""
    graph, layers = _cnn_layers()
    conv1, _, _, conv2, _, _, _, fc, _ = layers
    x, _ = next(eval_data.subset(np.arange(0, 1000, 50)).batches(20))   # 2 samples per class

    def lif(current, v):                     # v[t] = beta v[t-1] + x[t]; s = v > 1; zero reset
        v = 0.5 * v + current
        s = (v > 1.0).to(v.dtype)
        return s, v * (1 - s)

    def sum_pool(s):                         # 2x2 windows, stride 2, a trailing odd row dropped
        b, c, h, w = s.shape
        s = s[:, :, :h // 2 * 2, :w // 2 * 2]
        return s.reshape(b, c, h // 2, 2, w // 2, 2).sum((3, 5))

    w1, w2, w3 = (torch.from_numpy(np.asarray(n.weight, np.float32)) for n in (conv1, conv2, fc))
    v1 = v2 = v3 = torch.zeros(())
    expected = []
    for frame in torch.from_numpy(x):
        s1, v1 = lif(torch.nn.functional.conv2d(frame, w1), v1)
        s2, v2 = lif(torch.nn.functional.conv2d(sum_pool(s1), w2), v2)
        s3, v3 = lif(sum_pool(s2).flatten(1) @ w3.T, v3)
        expected.append(s3)
    expected = torch.stack(expected)
    simulated = simulate(graph, torch.from_numpy(x)).outputs[graph.outputs[0]]
    assert expected.sum() > 0                # the read-out does spike
    torch.testing.assert_close(simulated, expected, rtol=0, atol=0)


@pytest.mark.slow
def test_bundled_cnn_keeps_its_recorded_accuracy(eval_data) -> None:
    _cnn_layers()
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
