"""to_nir/write_nir: round trips through real NIR files, the file's content read with h5py, and
a framework importer (snntorch) reading the export."""

from __future__ import annotations

from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch
from conftest import fixture_path

from sbc_deploy.errors import ExportError
from sbc_deploy.exporters.to_nir import to_nir, write_nir
from sbc_deploy.frontends import load_model
from sbc_deploy.frontends.from_nir import from_nir
from sbc_deploy.ir import (
    IF,
    LI,
    LIF,
    NODE_TYPES,
    OPERATION_TYPES,
    Affine,
    AvgPool2d,
    Conv1d,
    Conv2d,
    CubaLI,
    CubaLIF,
    Delay,
    Flatten,
    Graph,
    Input,
    Integrator,
    Node,
    Output,
    Scale,
    SumPool2d,
    Threshold,
)


def _every_kind(rng: np.random.Generator, discretization: str) -> Graph:
    """One graph holding every IR node kind, with a recurrent edge and non-zero biases."""
    def r(*shape: int) -> np.ndarray:
        return rng.normal(size=shape)

    def u(*shape: int) -> np.ndarray:
        return rng.uniform(0.2, 0.9, size=shape)

    nodes: dict[str, Node] = {
        "input": Input((2, 8, 8)),
        "conv2": Conv2d(r(4, 2, 3, 3), input_shape=(2, 8, 8), bias=r(4), padding=(1, 1)),
        "lif": LIF(beta=u(4, 8, 8), v_threshold=u(4, 8, 8) + 1, gain=u(4, 8, 8),
                   v_leak=r(4, 8, 8), v_reset=0.1 * r(4, 8, 8), bias=r(4, 8, 8),
                   reset="subtract"),
        "sum": SumPool2d((2, 2), input_shape=(4, 8, 8)),
        "avg": AvgPool2d((2, 2), input_shape=(4, 4, 4), stride=(1, 1), padding=(1, 1)),
        "flat": Flatten((4, 5, 5), start_dim=1, end_dim=2),
        "conv1": Conv1d(r(3, 4, 3), input_shape=(4, 25), padding=1, stride=2),
        "if": IF(v_threshold=u(3, 13), gain=u(3, 13), v_reset=r(3, 13), reset="subtract"),
        "flat2": Flatten((3, 13)),
        "fc": Affine(r(6, 39), bias=r(6)),
        "cubalif": CubaLIF(alpha=u(6), beta=u(6), v_threshold=u(6), gain_syn=u(6), gain=u(6),
                           v_leak=r(6), v_reset=r(6), bias=r(6), reset="subtract"),
        "rec": Affine(r(6, 6)),
        "scale": Scale(r(6)),
        "delay": Delay(np.array([0, 1, 2, 3, 0, 5])),
        "fc2": Affine(r(5, 6)),
        "li": LI(beta=u(5), gain=u(5), v_leak=r(5), bias=r(5)),
        "integ": Integrator(gain=u(5)),
        "thr": Threshold(r(5)),
        "fc3": Affine(r(4, 5), bias=r(4)),
        "cubali": CubaLI(alpha=u(4), beta=u(4), gain_syn=u(4), gain=u(4), v_leak=r(4),
                         bias=r(4)),
        "output": Output((4,)),
    }
    order = ["input", "conv2", "lif", "sum", "avg", "flat", "conv1", "if", "flat2", "fc",
             "cubalif", "scale", "delay", "fc2", "li", "integ", "thr", "fc3", "cubali", "output"]
    edges = [*zip(order, order[1:]), ("cubalif", "rec"), ("rec", "cubalif")]
    return Graph(nodes, tuple(edges), dt=1e-3,
                 metadata={"discretization": discretization, "reset": "subtract"})


def _assert_same_parameters(a: Graph, b: Graph, rtol: float = 1e-9) -> None:
    assert set(a.nodes) == set(b.nodes)
    assert set(a.edges) == set(b.edges)
    assert a.recurrent_edges == b.recurrent_edges
    for name, node in a.nodes.items():
        other = b.nodes[name]
        assert type(other) is type(node), name
        for key, value in node.parameters().items():
            if key in ("metadata", "encoding"):
                continue
            got = getattr(other, key)
            if key == "bias" and isinstance(node, (Conv1d, Conv2d)) and value is None:
                value = np.zeros(node.out_channels)  # NIR convolutions always carry a bias
            if isinstance(value, np.ndarray) or isinstance(got, np.ndarray):
                np.testing.assert_allclose(got, value, rtol=rtol, atol=1e-12,
                                           err_msg=f"{name}.{key}")
            else:
                assert got == value, f"{name}.{key}: {got!r} != {value!r}"


@pytest.mark.parametrize("discretization", ["euler", "exact"])
def test_round_trip_of_every_node_kind(tmp_path: Path, rng: np.random.Generator,
                                       discretization: str) -> None:
    graph = _every_kind(rng, discretization)
    # every kind NIR has a primitive for (the graph operations of issue 18 have their own
    # NIR tests in tests/test_graph_ops_export.py)
    assert {type(n) for n in graph.nodes.values()} == set(NODE_TYPES) - set(OPERATION_TYPES)
    path = tmp_path / "every.nir"
    nir.write(path, to_nir(graph))
    back = from_nir(nir.read(path), discretization=discretization)
    _assert_same_parameters(graph, back)
    assert back.dt == graph.dt and back.metadata["dt_source"] == "file metadata 'dt'"
    assert back.metadata["reset"] == "subtract"
    assert back.recurrent_edges == frozenset({("rec", "cubalif")})


def test_written_file_holds_nir_continuous_parameters(tmp_path: Path,
                                                      rng: np.random.Generator) -> None:
    graph = _every_kind(rng, "euler")
    path = write_nir(graph, tmp_path / "every.nir")
    lif, cubalif = graph.nodes["lif"], graph.nodes["cubalif"]
    with h5py.File(path, "r") as f:
        meta = f["node/metadata"]
        assert meta["dt"][()] == 1e-3 and meta["reset"][()].decode() == "subtract"
        assert f["node/nodes/fc/type"][()] == b"Affine"
        assert f["node/nodes/fc2/type"][()] == b"Linear"  # Affine without bias
        group = f["node/nodes/lif"]
        # euler: tau = dt / (1 - beta), r = gain / (1 - beta); the bias is folded into v_leak
        np.testing.assert_allclose(group["tau"][()], 1e-3 / (1 - lif.beta))
        np.testing.assert_allclose(group["r"][()], lif.gain / (1 - lif.beta))
        np.testing.assert_allclose(group["v_leak"][()], lif.v_leak + lif.bias / (1 - lif.beta))
        np.testing.assert_allclose(group["metadata/sbc_bias"][()], lif.bias)
        group = f["node/nodes/cubalif"]
        np.testing.assert_allclose(group["tau_syn"][()], 1e-3 / (1 - cubalif.alpha))
        np.testing.assert_allclose(group["w_in"][()], cubalif.gain_syn / (1 - cubalif.alpha))
        np.testing.assert_allclose(f["node/nodes/delay/delay"][()],
                                   graph.nodes["delay"].delay * 1e-3)
        np.testing.assert_allclose(f["node/nodes/integ/r"][()], graph.nodes["integ"].gain / 1e-3)


@pytest.mark.parametrize("name", ["braille_noDelay_bias_zero.nir", "lif_norse.nir",
                                  "scnn_mnist_snntorch.nir", "two_lif_neurons.nir"])
def test_fixture_round_trip_and_continuous_values(tmp_path: Path, name: str) -> None:
    source = fixture_path("nir", name)
    graph = from_nir(source, dt=1e-4, reset="zero")
    path = write_nir(graph, tmp_path / name)
    back = from_nir(path)
    _assert_same_parameters(graph, back)
    # the continuous values written are those of the original file (stored there in float32)
    with h5py.File(source, "r") as f, h5py.File(path, "r") as g:
        for key, group in f["node/nodes"].items():
            for field in ("tau", "tau_mem", "tau_syn", "r", "w_in", "weight", "v_threshold"):
                if field in group:
                    np.testing.assert_allclose(g[f"node/nodes/{key}/{field}"][()],
                                               group[field][()], rtol=1e-6,
                                               err_msg=f"{key}.{field}")


def test_netx_readout_becomes_an_integrator(tmp_path: Path) -> None:
    graph = load_model(fixture_path("netx", "mnist_bootstrap", "network.net"))
    back = from_nir(write_nir(graph, tmp_path / "bootstrap.nir"))
    readout = back.nodes["layer3.neuron"]
    assert isinstance(readout, Integrator)  # v[t] = sum of gain * gain_syn * x: the same v
    original = graph.nodes["layer3.neuron"]
    np.testing.assert_allclose(readout.gain, original.gain * original.gain_syn)
    np.testing.assert_allclose(back.nodes["layer1.dense"].weight,
                               graph.nodes["layer1.dense"].weight)
    assert back.metadata["reset"] == "zero"


def test_snntorch_imports_the_export_with_the_same_parameters(tmp_path: Path) -> None:
    pytest.importorskip("nirtorch", reason="snntorch.import_from_nir needs nirtorch")
    from snntorch.import_nir import import_from_nir

    # snntorch's importer hard-codes dt = 1e-4 s, so the graph is given that dt
    graph = load_model(fixture_path("netx", "oxford", "network.net"), dt=1e-4)
    module = import_from_nir(nir.read(write_nir(graph, tmp_path / "oxford.nir")))
    children = dict(module.named_children())
    for layer in ("layer0", "layer1"):
        dense = children[f"{layer}_dense"]
        np.testing.assert_allclose(dense.weight.detach().numpy(),
                                   graph.nodes[f"{layer}.dense"].weight, rtol=1e-6)
        neuron, ours = children[f"{layer}_neuron"], graph.nodes[f"{layer}.neuron"]
        assert float(neuron.alpha) == pytest.approx(float(ours.alpha[0]), abs=1e-6)
        assert float(neuron.beta) == pytest.approx(float(ours.beta[0]), rel=1e-6)
        assert float(neuron.threshold) == pytest.approx(float(ours.v_threshold[0]), rel=1e-6)
        assert neuron.reset_mechanism == "zero"
    with torch.no_grad():
        spikes, _ = module(torch.zeros(1, 200))
    assert spikes.shape == (1, 200)


# --------------------------------------------------------------------------- refusals


def _chain(*named: tuple[str, Node], dt: float = 1e-3) -> Graph:
    return Graph.chain(named, dt=dt)


def test_unexportable_neurons_are_named() -> None:
    no_leak = _chain(("input", Input((2,))), ("lif", LIF(beta=np.ones(2), v_threshold=np.ones(2))),
                     ("output", Output((2,))))
    with pytest.raises(ExportError, match="infinite") as err:
        to_nir(no_leak)
    assert err.value.where == "node 'lif'"
    biased_if = _chain(("input", Input((2,))),
                       ("if", IF(v_threshold=np.ones(2), bias=np.full(2, 0.5))),
                       ("output", Output((2,))))
    with pytest.raises(ExportError, match="bias") as err:
        to_nir(biased_if)
    assert err.value.where == "node 'if'"


def test_mixed_reset_modes_are_refused() -> None:
    graph = _chain(("input", Input((2,))),
                   ("a", LIF(beta=np.full(2, 0.5), v_threshold=np.ones(2), reset="zero")),
                   ("b", LIF(beta=np.full(2, 0.5), v_threshold=np.ones(2), reset="subtract")),
                   ("output", Output((2,))))
    with pytest.raises(ExportError, match="zero: a; subtract: b"):
        to_nir(graph)


def test_write_nir_is_atomic_and_checks_the_folder(tmp_path: Path, rng: np.random.Generator
                                                   ) -> None:
    good = write_nir(_every_kind(rng, "euler"), tmp_path / "model.nir")
    before = good.read_bytes()
    bad = _chain(("input", Input((2,))), ("lif", LIF(beta=np.ones(2), v_threshold=np.ones(2))),
                 ("output", Output((2,))))
    with pytest.raises(ExportError):
        write_nir(bad, good)
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.nir"]  # no temporary left
    with pytest.raises(ExportError, match="does not exist"):
        write_nir(_every_kind(rng, "euler"), tmp_path / "missing" / "model.nir")
