"""from_netx against lava-dl's own netx files (read independently with h5py) and ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from conftest import fixture_path

from sbc_deploy.errors import ConfigError, FormatError, ShapeError, UnsupportedNodeError
from sbc_deploy.frontends import detect_format, load_model
from sbc_deploy.frontends.from_netx import from_netx, int_exp_encoding
from sbc_deploy.ir import Affine, Conv2d, CubaLI, CubaLIF, Flatten, Scale
from sbc_deploy.sim import simulate

NETX_FILES = (("tinynet", "tiny.net"), ("oxford", "network.net"), ("mnist_small", "network.net"),
              ("mnist_bootstrap", "network.net"))


def _layers(path: Path) -> list[dict[str, Any]]:
    """Every /layer/<i> as a dict of plain values (neuron group as a nested dict), via h5py."""
    out = []
    with h5py.File(path, "r") as f:
        for i in range(len(f["layer"])):
            group = f["layer"][str(i)]
            layer: dict[str, Any] = {"type": group["type"][0].decode()}
            for key, item in group.items():
                if isinstance(item, h5py.Group):
                    layer[key] = {k: v[()] for k, v in item.items()}
                elif key != "type":
                    layer[key] = item[()]
            out.append(layer)
    return out


@pytest.mark.parametrize(("folder", "name"), NETX_FILES)
def test_every_fixture_matches_the_file_integers(folder: str, name: str) -> None:
    path = fixture_path("netx", folder, name)
    graph = from_netx(path)
    layers = _layers(path)
    synapses = [n for n in graph.topological_order
                if isinstance(graph.nodes[n], (Affine, Conv2d))]
    weighted = [i for i, layer in enumerate(layers) if layer["type"] in ("dense", "conv")]
    assert synapses == [f"layer{i}.{layers[i]['type']}" for i in weighted]
    for i in weighted:
        layer = layers[i]
        synapse = graph.nodes[f"layer{i}.{layer['type']}"]
        stored = layer["weight"].reshape(synapse.weight.shape)
        np.testing.assert_array_equal(synapse.weight, stored / 64)
        np.testing.assert_array_equal(synapse.encoding.integer_weight(), stored)
        assert synapse.encoding.grid == "int_exp" and synapse.encoding.unit == 1 / 64
        assert synapse.bias is None  # netx biases are neuron biases (Lava bias_mant)
        neuron = graph.nodes[f"layer{i}.neuron"]
        assert graph.successors(f"layer{i}.{layer['type']}") == (f"layer{i}.neuron",)
        expected = (tuple(layer["shape"]) if layer["type"] == "conv"
                    else (int(np.prod(layer["shape"])),))
        assert neuron.output_shape == expected
        if "neuron" not in layer:
            continue
        cfg = layer["neuron"]
        np.testing.assert_array_equal(neuron.alpha, 1 - cfg["iDecay"] / 4096)
        np.testing.assert_array_equal(neuron.beta, 1 - cfg["vDecay"] / 4096)
        np.testing.assert_array_equal(neuron.v_threshold, cfg["vThMant"] / 64)
        assert isinstance(neuron, CubaLIF) and neuron.reset == "zero"
        np.testing.assert_array_equal(neuron.gain, 1.0)
        np.testing.assert_array_equal(neuron.gain_syn, 1.0)
        netx = neuron.metadata["netx"]
        assert (netx["iDecay"], netx["vDecay"], netx["vThMant"]) == \
            (cfg["iDecay"], cfg["vDecay"], cfg["vThMant"])
        if "bias" in layer:
            bias = layer["bias"].reshape((-1,) + (1,) * (neuron.bias.ndim - 1))
            np.testing.assert_array_equal(neuron.bias, np.broadcast_to(bias / 64,
                                                                       neuron.shape))
            assert netx["bias"] == layer["bias"].astype(int).tolist()
        else:
            np.testing.assert_array_equal(neuron.bias, 0.0)
    assert graph.metadata["source_format"] == "netx"
    assert graph.metadata["reset"] == "zero"
    assert graph.metadata["reset_source"] == "netx/Lava CUBA hard reset"


def test_tinynet_conv_reproduces_lava_dl_ground_truth_current() -> None:
    """lava-dl's current.npy is layer 1's synaptic input for input.npy: the IR conv gives it."""
    folder = ("netx", "tinynet")
    graph = from_netx(fixture_path(*folder, "tiny.net"))
    conv = graph.nodes["layer1.conv"]
    assert isinstance(conv, Conv2d) and conv.stride == (2, 2) and conv.input_shape == (3, 16, 16)
    spikes = np.load(fixture_path(*folder, "input.npy"))[0]  # (C, H, W, T)
    current = np.load(fixture_path(*folder, "current.npy"))[0]  # (24, 6, 6, T), integer units
    x = torch.tensor(spikes, dtype=torch.float64).permute(3, 0, 1, 2)
    y = torch.nn.functional.conv2d(x, torch.tensor(conv.weight * 64), stride=conv.stride,
                                   padding=conv.padding)
    np.testing.assert_array_equal(y.permute(1, 2, 3, 0).numpy(), current)
    # netx flips and transposes the stored kernel into Lava's layout; lava-dl saved that too
    lava = (conv.weight * 64)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)
    np.testing.assert_array_equal(lava, np.load(fixture_path(*folder, "layer1_kernel.npy")))
    np.testing.assert_array_equal(graph.nodes["layer1.neuron"].bias[:, 0, 0] * 64,
                                  np.load(fixture_path(*folder, "layer1_bias.npy")))


def test_tinynet_input_block_keeps_its_transform() -> None:
    path = fixture_path("netx", "tinynet", "tiny.net")
    graph = from_netx(path)
    layer0 = _layers(path)[0]
    assert graph.topological_order[:3] == ("input", "layer0.scale", "layer0.neuron")
    assert graph.nodes["input"].shape == tuple(layer0["shape"])
    scale = graph.nodes["layer0.scale"]
    assert isinstance(scale, Scale)
    np.testing.assert_array_equal(scale.scale, layer0["weight"][0] / 64)  # 36 / 64
    neuron = graph.nodes["layer0.neuron"]
    np.testing.assert_array_equal(neuron.bias, layer0["bias"][0] / 64)  # 34 / 64
    assert neuron.metadata["netx"]["input_weight"] == 36
    assert neuron.metadata["netx"]["neuron_type"] == "LOIHI"
    assert graph.nodes["layer2.neuron"].output_shape == tuple(_layers(path)[2]["shape"])
    assert graph.is_sequential()


def test_bootstrap_readout_without_neuron_is_netx_default_integrator() -> None:
    path = fixture_path("netx", "mnist_bootstrap", "network.net")
    graph = from_netx(path)
    readout = graph.nodes["layer3.neuron"]
    assert isinstance(readout, CubaLI)  # outputs v, never spikes (vThMant = 1 << 17)
    np.testing.assert_array_equal(readout.alpha, 1.0)  # iDecay = 0: current never decays
    np.testing.assert_array_equal(readout.beta, 0.0)  # vDecay = 4096: v = u + bias
    assert readout.metadata["netx"]["neuron_absent"] is True
    assert readout.metadata["netx"]["vThMant"] == 1 << 17
    assert graph.metadata["dt"] == pytest.approx(1e-3)
    assert "/simulation/Ts" in graph.metadata["dt_source"]
    assert graph.metadata["netx_simulation"] == {"Ts": 1, "tSample": 16}
    np.testing.assert_array_equal(graph.nodes["layer0.scale"].scale, 76 / 64)


@pytest.mark.parametrize(("folder", "n_in"), (("oxford", 200), ("mnist_small", 784)))
def test_files_without_input_layer_take_the_first_weight_width(folder: str, n_in: int) -> None:
    graph = from_netx(fixture_path("netx", folder, "network.net"))
    assert graph.nodes["input"].shape == (n_in,)
    assert graph.metadata["dt"] == 1e-3
    assert graph.metadata["dt_source"] == "default: netx is discrete-time, dt only labels time"
    with_dt = from_netx(fixture_path("netx", folder, "network.net"), dt=2e-3)
    assert with_dt.dt == 2e-3 and with_dt.metadata["dt_source"] == "argument"


def test_dt_argument_overrides_simulation_ts_and_both_are_recorded() -> None:
    graph = from_netx(fixture_path("netx", "tinynet", "tiny.net"), dt=5e-4)
    assert graph.dt == 5e-4
    assert "overrides file /simulation/Ts = 1" in graph.metadata["dt_source"]


# --------------------------------------------------------------------------- encodings


@pytest.mark.parametrize(("weights", "exponent", "mantissa", "bits"), (
    ([-256, 254, 2], 1, [-128, 127, 1], 8),
    ([0, 64, 128], 6, [0, 1, 2], 3),
    ([-6, 6, 0, 2], 1, [-3, 3, 0, 1], 3),
    ([0, 0], 0, [0, 0], 1),
    ([-1, 1], 0, [-1, 1], 2),
))
def test_int_exp_encoding_keeps_the_exact_integers(weights: list[int], exponent: int,
                                                   mantissa: list[int], bits: int) -> None:
    encoding = int_exp_encoding(np.array([weights]))
    assert encoding.exponent == exponent and encoding.bits == bits
    assert encoding.mantissa.tolist() == [mantissa]
    np.testing.assert_array_equal(encoding.integer_weight(), [weights])
    np.testing.assert_array_equal(encoding.dequantize(), np.array([weights]) / 64)


# --------------------------------------------------------------------------- synthetic files


def _write_layer(group: h5py.Group, kind: str, **data: Any) -> None:
    group.create_dataset("type", (1,), "S10", [kind.encode()])
    for key, value in data.items():
        if key == "neuron":
            for k, v in value.items():
                group.create_dataset(f"neuron/{k}", data=v)
        else:
            group.create_dataset(key, data=value)


CUBA = {"type": "CUBA", "iDecay": 1024, "vDecay": 512, "vThMant": 80, "refDelay": 1,
        "gradedSpike": False}


def _netx(path: Path, layers: list[tuple[str, dict[str, Any]]]) -> Path:
    with h5py.File(path, "w") as f:
        for i, (kind, data) in enumerate(layers):
            _write_layer(f.create_group(f"layer/{i}"), kind, **data)
    return path


def test_conv_flatten_dense_rec_chain(tmp_path: Path, rng: np.random.Generator) -> None:
    conv_w = 2 * rng.integers(-20, 20, size=(4, 2, 3, 3))
    dense_w = 2 * rng.integers(-30, 30, size=(6, 4 * 2 * 2))
    rec_w = 4 * rng.integers(-10, 10, size=(6, 6))
    path = _netx(tmp_path / "chain.net", [
        ("input", {"shape": np.array([2, 6, 6])}),
        ("conv", {"shape": np.array([4, 2, 2]), "weight": conv_w.astype(np.float32),
                  "bias": np.arange(4, dtype=np.float32) * 2, "stride": np.array([2, 2]),
                  "padding": np.array([0, 0]), "dilation": np.array([1, 1]), "groups": 1,
                  "neuron": CUBA}),
        ("flatten", {"shape": np.array([16, 1, 1])}),
        ("dense_rec", {"shape": np.array([6]), "weight": dense_w.astype(np.float32),
                       "weight_rec": rec_w.astype(np.float32), "neuron": CUBA}),
    ])
    graph = from_netx(path)
    assert graph.topological_order == ("input", "layer1.conv", "layer1.neuron",
                                       "layer2.flatten", "layer3.dense_rec", "layer3.neuron",
                                       "layer3.rec", "output")
    assert graph.recurrent_edges == frozenset({("layer3.rec", "layer3.neuron")})
    flat = graph.nodes["layer2.flatten"]
    assert isinstance(flat, Flatten) and flat.input_shape == (4, 2, 2)
    assert flat.output_shape == (16,)
    np.testing.assert_array_equal(graph.nodes["layer3.rec"].weight, rec_w / 64)
    assert graph.nodes["layer3.rec"].encoding.exponent == 2
    neuron = graph.nodes["layer1.neuron"]
    np.testing.assert_array_equal(neuron.bias[:, 0, 0], np.arange(4) * 2 / 64)
    np.testing.assert_array_equal(neuron.alpha, 0.75)
    np.testing.assert_array_equal(neuron.beta, 0.875)
    layers = {layer.name: layer for layer in graph.synapse_layers()}
    assert layers["layer3.rec"].recurrent and layers["layer3.rec"].neuron_name == "layer3.neuron"
    assert graph.metadata["dt_source"].startswith("default")


def test_unsupported_layers_are_all_named(tmp_path: Path) -> None:
    dense = {"shape": np.array([4]), "weight": np.full((4, 4), 2.0, np.float32), "neuron": CUBA}
    path = _netx(tmp_path / "pool.net", [
        ("input", {"shape": np.array([4])}), ("dense", dense), ("pool", {}), ("dense", dense),
        ("average", {})])
    with pytest.raises(UnsupportedNodeError) as err:
        from_netx(path)
    message = str(err.value)
    assert "layer 2 ('pool')" in message and "layer 4 ('average')" in message
    assert str(path) in message


def test_sdnn_neurons_are_refused_naming_the_layer(tmp_path: Path) -> None:
    path = _netx(tmp_path / "sdnn.net", [
        ("dense", {"shape": np.array([3]), "weight": np.ones((3, 5), np.float32),
                   "neuron": {"type": "SDNN", "vThMant": 10, "activation": "relu"}})])
    with pytest.raises(UnsupportedNodeError, match="layer 0 .*'SDNN'"):
        from_netx(path)


def test_conv_shape_that_disagrees_with_the_file_names_the_layer(tmp_path: Path) -> None:
    path = _netx(tmp_path / "bad.net", [
        ("input", {"shape": np.array([1, 5, 5])}),
        ("conv", {"shape": np.array([2, 9, 9]), "weight": np.ones((2, 1, 3, 3), np.float32),
                  "stride": np.array([1, 1]), "padding": np.array([0, 0]),
                  "dilation": np.array([1, 1]), "groups": 1, "neuron": CUBA})])
    with pytest.raises(ShapeError, match="layer 1") as err:
        from_netx(path)
    assert "(2, 3, 3)" in str(err.value)


def test_dense_width_that_disagrees_with_the_previous_layer_names_the_edge(tmp_path: Path
                                                                         ) -> None:
    path = _netx(tmp_path / "width.net", [
        ("dense", {"shape": np.array([4]), "weight": np.full((4, 3), 2.0, np.float32),
                   "neuron": CUBA}),
        ("dense", {"shape": np.array([2]), "weight": np.full((2, 5), 2.0, np.float32),
                   "neuron": CUBA})])
    with pytest.raises(ShapeError) as err:
        from_netx(path)
    assert err.value.where == f"{path}: edge layer0.neuron -> layer1.dense"
    rows = _netx(tmp_path / "rows.net", [
        ("dense", {"shape": np.array([4]), "weight": np.full((3, 3), 2.0, np.float32)})])
    with pytest.raises(ShapeError, match="3 rows"):
        from_netx(rows)


# --------------------------------------------------------------------------- bad files


def test_truncated_text_missing_and_foreign_files_are_format_errors(tmp_path: Path) -> None:
    data = fixture_path("netx", "mnist_small", "network.net").read_bytes()
    cut = tmp_path / "cut.net"
    cut.write_bytes(data[: len(data) // 3])
    text = tmp_path / "notes.net"
    text.write_text("layer 0: dense\n")
    nir_file = fixture_path("nir", "lif_norse.nir")
    for path in (cut, text, tmp_path / "absent.net", tmp_path, nir_file):
        with pytest.raises(FormatError) as err:
            from_netx(path)
        assert str(path) in str(err.value)
    for path in (cut, text, tmp_path / "absent.net", tmp_path):
        with pytest.raises(FormatError, match=str(path)):
            load_model(path)


def test_load_model_dispatches_on_content_not_name(tmp_path: Path) -> None:
    netx_copy = tmp_path / "model.nir"  # a netx file with a misleading suffix
    netx_copy.write_bytes(fixture_path("netx", "oxford", "network.net").read_bytes())
    assert detect_format(netx_copy) == "netx"
    assert load_model(netx_copy).metadata["source_format"] == "netx"
    nir_graph = load_model(fixture_path("nir", "lif_norse.nir"), dt=1e-4, reset="zero")
    assert nir_graph.metadata["source_format"] == "nir"
    with pytest.raises(ConfigError, match="hard reset"):
        load_model(netx_copy, reset="subtract")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(FormatError, match="neither a NIR graph"):
        load_model(other)


def _conv_first(path: Path, rng: np.random.Generator, with_input: bool) -> Path:
    conv_w = 2 * rng.integers(-20, 20, size=(4, 2, 3, 3))
    dense_w = 2 * rng.integers(-30, 30, size=(5, 4 * 2 * 2))
    layers: list[tuple[str, dict[str, Any]]] = [
        ("conv", {"shape": np.array([4, 2, 2]), "weight": conv_w.astype(np.float32),
                  "stride": np.array([2, 2]), "padding": np.array([0, 0]),
                  "dilation": np.array([1, 1]), "groups": 1, "neuron": CUBA}),
        ("flatten", {"shape": np.array([16, 1, 1])}),
        ("dense", {"shape": np.array([5]), "weight": dense_w.astype(np.float32),
                   "neuron": CUBA})]
    if with_input:
        layers.insert(0, ("input", {"shape": np.array([2, 6, 6])}))
    return _netx(path, layers)


def test_conv_first_file_without_input_layer_takes_the_input_shape(tmp_path: Path,
                                                                   rng: np.random.Generator
                                                                   ) -> None:
    """lava-dl writes conv-first networks without an input layer; the shape comes from the
    user (--input-shape) and the network equals the same file with an input layer."""
    bare = _conv_first(tmp_path / "bare.net", np.random.default_rng(3), with_input=False)
    full = _conv_first(tmp_path / "full.net", np.random.default_rng(3), with_input=True)
    with pytest.raises(FormatError, match="no input layer") as err:
        from_netx(bare)
    assert "--input-shape" in (err.value.hint or "")
    graph = load_model(bare, input_shape=(2, 6, 6))
    reference = from_netx(full)
    assert graph.nodes["input"].shape == (2, 6, 6)
    assert graph.nodes["input"].metadata["netx"]["shape_source"] == "argument input_shape"
    x = (torch.rand(12, 3, 2, 6, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    got = simulate(graph, x).outputs[graph.outputs[0]]
    want = simulate(reference, x).outputs[reference.outputs[0]]
    assert got.shape == (12, 3, 5) and want.sum() > 0
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    with pytest.raises(ShapeError, match="C,H,W"):
        from_netx(bare, input_shape=(72,))
