"""from_nir against the real NIR fixtures (read independently with h5py) and closed-form math."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
from conftest import fixture_path

from sbc_deploy.errors import (
    ConfigError,
    FormatError,
    IRError,
    ShapeError,
    UnsupportedNodeError,
)
from sbc_deploy.frontends import load_model
from sbc_deploy.frontends.from_nir import SUPPORTED_NIR_TYPES, from_nir
from sbc_deploy.ir import IF, LI, LIF, Affine, Conv1d, Conv2d, CubaLIF, Delay, Flatten, Integrator

NIR_FILES = ("braille_noDelay_bias_zero.nir", "lif_norse.nir", "scnn_mnist_snntorch.nir",
             "two_lif_neurons.nir")


def _h5_nodes(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Top-level NIR nodes of a file by name, each a dict of its datasets, read with h5py only."""
    with h5py.File(path, "r") as f:
        return {name: {key: np.asarray(item) for key, item in group.items()
                       if isinstance(item, h5py.Dataset)}
                for name, group in f["node/nodes"].items()}


def _lif_chain(n: int = 4, **lif: np.ndarray) -> nir.NIRGraph:
    params = {"tau": np.full(n, 0.01), "r": np.ones(n), "v_leak": np.zeros(n),
              "v_threshold": np.ones(n), **lif}
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])),
               "fc": nir.Linear(weight=np.arange(3 * n, dtype=float).reshape(n, 3)),
               "lif": nir.LIF(**params), "output": nir.Output(np.array([n]))},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)


# --------------------------------------------------------------------------- the fixtures


@pytest.mark.parametrize("name", NIR_FILES)
def test_every_fixture_imports_with_its_nodes_and_edges(name: str) -> None:
    path = fixture_path("nir", name)
    graph = from_nir(path, dt=1e-4, reset="zero")
    h5 = _h5_nodes(path)
    with h5py.File(path, "r") as f:
        edges = {(a.decode(), b.decode()) for a, b in f["node/edges"]}
    assert set(graph.nodes) == set(h5)
    assert set(graph.edges) == edges
    for node_name, group in h5.items():
        nir_type = group["type"].item().decode()
        assert graph.nodes[node_name].metadata["nir_type"] == nir_type
    assert graph.metadata["source_format"] == "nir"
    assert graph.metadata["source_file"] == str(path)
    assert graph.metadata["dt"] == 1e-4 and graph.metadata["dt_source"] == "argument"
    assert graph.metadata["reset"] == "zero" and graph.metadata["reset_source"] == "argument"
    assert graph.metadata["discretization"] == "euler"


def test_scnn_shapes_and_weights_match_the_file() -> None:
    path = fixture_path("nir", "scnn_mnist_snntorch.nir")
    graph = from_nir(path, dt=1e-4, reset="subtract")
    h5 = _h5_nodes(path)
    for name in ("0", "2", "5"):
        conv, group = graph.nodes[name], h5[name]
        assert isinstance(conv, Conv2d)
        np.testing.assert_array_equal(conv.weight, group["weight"])
        assert conv.input_shape == (group["weight"].shape[1], *group["input_shape"])
        assert conv.stride == tuple(group["stride"])
        assert conv.padding == tuple(group["padding"])
        # the IF that follows declares the conv's output shape in its own parameter arrays
        following = graph.successors(name)[0]
        assert conv.output_shape == h5[following]["v_threshold"].shape
    assert graph.nodes["input"].output_shape == tuple(h5["input"]["shape"])
    # pools halve H and W; Flatten feeds the Affine's 128 inputs
    assert graph.nodes["4"].output_shape == (16, 8, 8)
    assert graph.nodes["7"].output_shape == (8, 4, 4)
    flatten = graph.nodes["8"]
    assert isinstance(flatten, Flatten)
    assert flatten.input_shape == tuple(h5["8"]["input_type"])
    assert flatten.output_shape == (h5["9"]["weight"].shape[1],)
    for name in ("9", "11"):
        np.testing.assert_array_equal(graph.nodes[name].weight, h5[name]["weight"])
        np.testing.assert_array_equal(graph.nodes[name].bias, h5[name]["bias"])
    # NIR IF: v' = R I  ->  gain = dt * r
    for name in ("1", "3", "6", "10", "12"):
        node = graph.nodes[name]
        assert isinstance(node, IF) and node.reset == "subtract"
        np.testing.assert_allclose(node.gain, 1e-4 * h5[name]["r"])
        np.testing.assert_array_equal(node.v_threshold, h5[name]["v_threshold"])
    assert graph.is_sequential()


def test_lif_norse_discretizes_with_forward_euler_and_exact() -> None:
    path = fixture_path("nir", "lif_norse.nir")
    group = _h5_nodes(path)["1"]
    tau, r = group["tau"].astype(float), group["r"].astype(float)
    euler = from_nir(path, dt=1e-4, reset="zero").nodes["1"]
    assert isinstance(euler, LIF)
    np.testing.assert_allclose(euler.beta, 1 - 1e-4 / tau)
    np.testing.assert_allclose(euler.gain, 1e-4 * r / tau)
    np.testing.assert_allclose(euler.v_threshold, group["v_threshold"])
    exact = from_nir(path, dt=1e-4, reset="zero", discretization="exact").nodes["1"]
    np.testing.assert_allclose(exact.beta, np.exp(-1e-4 / tau))
    np.testing.assert_allclose(exact.gain, r * (1 - np.exp(-1e-4 / tau)))


def test_two_lif_neurons_keeps_its_non_zero_v_leak() -> None:
    path = fixture_path("nir", "two_lif_neurons.nir")
    h5 = _h5_nodes(path)
    graph = from_nir(path, dt=1e-3, reset="zero")
    for name in ("lif1", "lif2"):
        np.testing.assert_array_equal(graph.nodes[name].v_leak, h5[name]["v_leak"])
    assert float(graph.nodes["lif1"].v_leak[0]) == pytest.approx(1.2)
    # Linear -> Affine without bias
    assert graph.nodes["linear1"].bias is None


def test_braille_recurrent_cubalif_matches_the_training_parameters() -> None:
    path = fixture_path("nir", "braille_noDelay_bias_zero.nir")
    params = json.loads(fixture_path("nir", "braille_noDelay_bias_zero.parameters.json")
                        .read_text())
    graph = from_nir(path, dt=1e-4, reset="zero")  # snntorch's export dt
    assert graph.recurrent_edges == frozenset({("lif1.w_rec", "lif1.lif")})
    hidden, out = graph.nodes["lif1.lif"], graph.nodes["lif2"]
    assert isinstance(hidden, CubaLIF) and isinstance(out, CubaLIF)
    # snntorch's alpha/beta from training come back (float32 storage in the file)
    np.testing.assert_allclose(hidden.beta, params["beta_r"], rtol=1e-6)
    np.testing.assert_allclose(hidden.alpha, params["alpha_r"], rtol=1e-6)
    np.testing.assert_allclose(out.beta, params["beta_out"], rtol=1e-6)
    np.testing.assert_allclose(out.alpha, params["alpha_out"], rtol=1e-6)
    # snntorch writes r = tau/dt and w_in = tau_syn/dt, so both gains are 1
    np.testing.assert_allclose(hidden.gain, 1.0, rtol=1e-6)
    np.testing.assert_allclose(hidden.gain_syn, 1.0, rtol=1e-6)
    assert hidden.shape == (params["nb_hidden"],)
    layers = {layer.name: layer for layer in graph.synapse_layers()}
    assert layers["lif1.w_rec"].recurrent and layers["lif1.w_rec"].neuron_name == "lif1.lif"
    assert layers["fc2"].neuron_name == "lif2"


# --------------------------------------------------------------------------- structure


def _nested_graph(n: int = 4) -> nir.NIRGraph:
    """The layout snntorch's RLeaky export writes: a subgraph {input, lif, w_rec, output}."""
    sub = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([n])),
               "lif": nir.LIF(tau=np.full(n, 0.02), r=np.full(n, 2.0), v_leak=np.zeros(n),
                              v_threshold=np.ones(n)),
               "w_rec": nir.Linear(weight=np.eye(n) * 0.5), "output": nir.Output(np.array([n]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])),
               "fc": nir.Affine(weight=np.ones((n, 3)), bias=np.zeros(n)), "rnn": sub,
               "fc_out": nir.Linear(weight=np.ones((2, n))), "output": nir.Output(np.array([2]))},
        edges=[("input", "fc"), ("fc", "rnn"), ("rnn", "fc_out"), ("fc_out", "output")],
        metadata={"dt": 1e-3, "reset": "subtract"})


def test_nested_subgraph_is_flattened_with_dotted_names(tmp_path: Path) -> None:
    path = tmp_path / "nested.nir"
    nir.write(path, _nested_graph())
    graph = from_nir(path)
    assert set(graph.nodes) == {"input", "fc", "rnn.lif", "rnn.w_rec", "fc_out", "output"}
    assert set(graph.edges) == {("input", "fc"), ("fc", "rnn.lif"), ("rnn.lif", "rnn.w_rec"),
                                ("rnn.w_rec", "rnn.lif"), ("rnn.lif", "fc_out"),
                                ("fc_out", "output")}
    assert graph.recurrent_edges == frozenset({("rnn.w_rec", "rnn.lif")})
    assert graph.metadata["dt"] == 1e-3 and graph.metadata["dt_source"] == "file metadata 'dt'"
    assert graph.metadata["reset"] == "subtract"
    lif = graph.nodes["rnn.lif"]
    np.testing.assert_allclose(lif.beta, 1 - 1e-3 / 0.02)
    np.testing.assert_allclose(lif.gain, 1e-3 * 2.0 / 0.02)


def test_residual_graph_keeps_both_edges_into_the_merge(tmp_path: Path) -> None:
    n = 5
    lif = {"tau": np.full(n, 0.01), "r": np.ones(n), "v_leak": np.zeros(n),
           "v_threshold": np.ones(n)}
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([n])), "a": nir.Linear(weight=np.eye(n)),
               "lif_a": nir.LIF(**lif), "b": nir.Linear(weight=2 * np.eye(n)),
               "lif_b": nir.LIF(**lif), "output": nir.Output(np.array([n]))},
        edges=[("input", "a"), ("a", "lif_a"), ("lif_a", "b"), ("b", "lif_b"),
               ("lif_a", "lif_b"), ("lif_b", "output")])
    path = tmp_path / "residual.nir"
    nir.write(path, graph)
    imported = from_nir(path, dt=1e-3, reset="zero")
    assert set(imported.predecessors("lif_b")) == {"b", "lif_a"}
    assert not imported.recurrent_edges and not imported.is_sequential()


def test_missing_input_and_output_nodes_are_added() -> None:
    graph = nir.NIRGraph(nodes={"fc": nir.Linear(weight=np.ones((2, 3))),
                                "li": nir.LI(tau=np.full(2, 0.01), r=np.ones(2),
                                             v_leak=np.zeros(2))},
                         edges=[("fc", "li")], type_check=False)
    imported = from_nir(graph, dt=1e-3)
    assert imported.inputs == ("input_fc",) and imported.outputs == ("output_li",)
    assert imported.nodes["input_fc"].output_shape == (3,)
    assert imported.nodes["output_li"].input_shape == (2,)
    assert imported.metadata["source_file"] is None


def test_scalar_neuron_parameters_are_broadcast_to_the_inferred_shape(tmp_path: Path) -> None:
    graph = _lif_chain(4, tau=np.array(0.01), r=np.array(1.0), v_leak=np.array(0.5),
                       v_threshold=np.array(1.0))
    path = tmp_path / "scalar.nir"
    nir.write(path, graph, compression=None)  # gzip refuses 0-d datasets
    lif = from_nir(path, dt=1e-3, reset="zero").nodes["lif"]
    assert lif.shape == (4,)
    np.testing.assert_allclose(lif.beta, np.full(4, 0.9))
    np.testing.assert_allclose(lif.v_leak, np.full(4, 0.5))


def test_conv_same_and_valid_padding_become_integers() -> None:
    weight2 = np.ones((4, 2, 3, 5))
    weight1 = np.ones((3, 4, 3))
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2, 9, 9])),
               "same": nir.Conv2d(input_shape=None, weight=weight2, stride=1, padding="same",
                                  dilation=1, groups=1, bias=np.zeros(4)),
               "flat": nir.Flatten(input_type=None, start_dim=1, end_dim=2),
               "valid": nir.Conv1d(input_shape=None, weight=weight1, stride=2, padding="valid",
                                   dilation=1, groups=1, bias=np.arange(3.0)),
               "output": nir.Output(None)},
        edges=[("input", "same"), ("same", "flat"), ("flat", "valid"), ("valid", "output")],
        type_check=False)
    imported = from_nir(graph, dt=1e-3)
    same, valid = imported.nodes["same"], imported.nodes["valid"]
    assert isinstance(same, Conv2d) and same.padding == (1, 2)
    assert same.output_shape == (4, 9, 9)
    assert imported.nodes["flat"].output_shape == (4, 81)  # no consumer constraint: per-sample
    assert isinstance(valid, Conv1d) and valid.padding == 0
    assert valid.output_shape == (3, (81 - 3) // 2 + 1)
    np.testing.assert_array_equal(valid.bias, [0.0, 1.0, 2.0])


def test_conv_same_padding_that_would_be_asymmetric_is_refused() -> None:
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([1, 6, 6])),
               "conv": nir.Conv2d(input_shape=None, weight=np.ones((2, 1, 2, 2)), stride=1,
                                  padding="same", dilation=1, groups=1, bias=np.zeros(2)),
               "output": nir.Output(None)},
        edges=[("input", "conv"), ("conv", "output")], type_check=False)
    with pytest.raises(UnsupportedNodeError, match="asymmetric") as err:
        from_nir(graph, dt=1e-3)
    assert err.value.where == "node 'conv'"


def test_flatten_counting_the_batch_axis_is_resolved_from_the_consumer() -> None:
    def graph(start: int, n_in: int) -> nir.NIRGraph:
        return nir.NIRGraph(
            nodes={"input": nir.Input(np.array([2, 3, 4])),
                   "flat": nir.Flatten(input_type=None, start_dim=start, end_dim=-1),
                   "fc": nir.Linear(weight=np.ones((5, n_in))), "output": nir.Output(None)},
            edges=[("input", "flat"), ("flat", "fc"), ("fc", "output")], type_check=False)

    batch_counted = from_nir(graph(1, 24), dt=1e-3).nodes["flat"]  # snntorch: after the batch
    assert (batch_counted.start_dim, batch_counted.output_shape) == (0, (24,))
    assert batch_counted.metadata["nir_start_dim"] == 1
    assert "batch" in batch_counted.metadata["flatten_rule"]
    per_sample = from_nir(graph(0, 24), dt=1e-3).nodes["flat"]
    assert (per_sample.start_dim, per_sample.output_shape) == (0, (24,))
    with pytest.raises(ShapeError, match="edge flat -> fc"):
        from_nir(graph(0, 7), dt=1e-3)


def test_every_nir_node_type_converts() -> None:
    n = 3
    ones = np.ones(n)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([n])), "scale": nir.Scale(scale=2 * ones),
               "delay": nir.Delay(delay=np.array([0.0, 1e-3, 3e-3])),
               "integ": nir.I(r=ones * 4), "thr": nir.Threshold(threshold=ones * 0.5),
               "li": nir.LI(tau=ones * 0.01, r=ones, v_leak=ones * 0.1),
               "cli": nir.CubaLI(tau_syn=ones * 0.005, tau_mem=ones * 0.01, r=ones,
                                 v_leak=0 * ones, w_in=2 * ones),
               "output": nir.Output(np.array([n]))},
        edges=[("input", "scale"), ("scale", "delay"), ("delay", "integ"), ("integ", "thr"),
               ("thr", "li"), ("li", "cli"), ("cli", "output")])
    imported = from_nir(graph, dt=1e-3)
    assert imported.metadata["reset"] is None  # no spiking neuron, no reset needed
    delay = imported.nodes["delay"]
    assert isinstance(delay, Delay) and delay.delay.tolist() == [0, 1, 3]
    integ = imported.nodes["integ"]
    assert isinstance(integ, Integrator)
    np.testing.assert_allclose(integ.gain, 1e-3 * 4)
    assert isinstance(imported.nodes["li"], LI)
    cli = imported.nodes["cli"]
    np.testing.assert_allclose(cli.alpha, 1 - 1e-3 / 0.005)
    np.testing.assert_allclose(cli.gain_syn, 1e-3 * 2 / 0.005)
    assert set(SUPPORTED_NIR_TYPES) >= {"Input", "Output", "Affine", "Linear", "Conv1d",
                                        "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "Scale",
                                        "Delay", "Threshold", "I", "IF", "LI", "LIF",
                                        "CubaLI", "CubaLIF"}


def test_delay_that_is_not_whole_steps_is_refused() -> None:
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "delay": nir.Delay(np.array([1e-3, 1.5e-3])),
               "output": nir.Output(np.array([2]))},
        edges=[("input", "delay"), ("delay", "output")])
    with pytest.raises(ConfigError, match="1.5 steps") as err:
        from_nir(graph, dt=1e-3)
    assert err.value.where == "node 'delay'"
    assert from_nir(graph, dt=5e-4).nodes["delay"].delay.tolist() == [2, 3]


# --------------------------------------------------------------------------- dt and reset


def test_missing_dt_is_a_config_error_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match="--dt"):
        from_nir(fixture_path("nir", "lif_norse.nir"), reset="zero")


def test_missing_reset_with_spiking_neurons_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="reset"):
        from_nir(fixture_path("nir", "two_lif_neurons.nir"), dt=1e-3)


def test_argument_dt_and_reset_override_the_metadata_and_both_are_recorded() -> None:
    graph = _lif_chain()
    graph.metadata = {"dt": 1e-3, "reset_mode": "zero"}
    from_file = from_nir(graph)
    assert from_file.dt == 1e-3 and from_file.metadata["reset"] == "zero"
    assert from_file.metadata["reset_source"] == "file metadata"
    overridden = from_nir(graph, dt=1e-4, reset="subtract")
    assert overridden.dt == 1e-4
    assert "overrides file metadata dt=0.001" in overridden.metadata["dt_source"]
    assert "overrides file metadata reset='zero'" in overridden.metadata["reset_source"]
    assert overridden.nodes["lif"].reset == "subtract"
    assert overridden.metadata["dt_file"] == 1e-3 and overridden.metadata["reset_file"] == "zero"
    np.testing.assert_allclose(overridden.nodes["lif"].beta, 1 - 1e-4 / 0.01)


def test_invalid_metadata_reset_and_euler_instability_are_config_errors() -> None:
    graph = _lif_chain()
    graph.metadata = {"dt": 1e-3, "reset": "sideways"}
    with pytest.raises(ConfigError, match="sideways"):
        from_nir(graph)
    with pytest.raises(ConfigError, match="dt <= tau_mem"):
        from_nir(_lif_chain(), dt=0.05, reset="zero")
    assert from_nir(_lif_chain(), dt=0.05, reset="zero", discretization="exact")


# --------------------------------------------------------------------------- bad input


def test_missing_file_directory_and_text_file_are_format_errors(tmp_path: Path) -> None:
    text = tmp_path / "model.nir"
    text.write_text("not a network\n")
    for path in (tmp_path / "absent.nir", tmp_path, text):
        with pytest.raises(FormatError) as err:
            from_nir(path, dt=1e-3, reset="zero")
        assert str(path) in str(err.value)
        with pytest.raises(FormatError):
            load_model(path, dt=1e-3, reset="zero")


def test_truncated_hdf5_is_a_format_error(tmp_path: Path) -> None:
    data = fixture_path("nir", "braille_noDelay_bias_zero.nir").read_bytes()
    for keep in (len(data) // 2, 4096):
        cut = tmp_path / f"cut{keep}.nir"
        cut.write_bytes(data[:keep])
        with pytest.raises(FormatError, match=str(cut)):
            from_nir(cut, dt=1e-4, reset="zero")
        with pytest.raises(FormatError, match=str(cut)):
            load_model(cut, dt=1e-4, reset="zero")


def test_hdf5_file_that_is_not_nir_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(FormatError, match="no /node group"):
        from_nir(path, dt=1e-3)
    netx = fixture_path("netx", "oxford", "network.net")
    with pytest.raises(FormatError, match="from_netx"):
        from_nir(netx, dt=1e-3)


def test_unsupported_node_types_are_all_named(tmp_path: Path) -> None:
    path = tmp_path / "odd.nir"
    nir.write(path, _nested_graph())
    with h5py.File(path, "r+") as f:
        for group in (f["node/nodes/fc"], f["node/nodes/rnn/nodes/w_rec"]):
            del group["type"]
            group.create_dataset("type", data="Spectrogram", dtype=h5py.string_dtype())
    with pytest.raises(UnsupportedNodeError) as err:
        from_nir(path)
    message = str(err.value)
    assert "'fc' (Spectrogram)" in message and "'rnn.w_rec' (Spectrogram)" in message
    assert "CubaLIF" in message  # the supported list


def test_shape_mismatch_names_the_edge(tmp_path: Path) -> None:
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])), "fc1": nir.Linear(weight=np.ones((4, 3))),
               "fc2": nir.Linear(weight=np.ones((2, 5))), "output": nir.Output(np.array([2]))},
        edges=[("input", "fc1"), ("fc1", "fc2"), ("fc2", "output")], type_check=False)
    path = tmp_path / "mismatch.nir"
    nir.write(path, graph)
    with pytest.raises(ShapeError) as err:
        from_nir(path, dt=1e-3)
    assert "edge fc1 -> fc2" in str(err.value) and str(path) in str(err.value)
    assert "(4,)" in str(err.value) and "(5,)" in str(err.value)


def test_edge_to_an_unknown_node_is_named() -> None:
    graph = _lif_chain()
    graph.edges = [*graph.edges, ("lif", "ghost")]
    with pytest.raises(IRError, match="unknown node 'ghost'") as err:
        from_nir(graph, dt=1e-3, reset="zero")
    assert err.value.where == "edge lif -> ghost"


def test_from_nir_does_not_mutate_the_nir_graph() -> None:
    graph = _nested_graph()
    before = {k: v for k, v in graph.nodes.items()}
    imported = from_nir(graph)
    assert graph.nodes == before and "rnn" in graph.nodes
    assert isinstance(imported.nodes["fc"], Affine)
