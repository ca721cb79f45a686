"""``sbc-deploy simulate MODEL DATA -o spikes.npz``: the npz layout, the float output against a
numpy forward written here, every layer with --layers, the integer core with --integer (and its
refusal, with the reason, for float weights), a bundled model by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import fixture_path

from sbc_deploy.cli import main
from sbc_deploy.exporters.to_nir import write_nir
from sbc_deploy.ir import LIF, Affine, Graph, Input, Output


def mlp(rng) -> Graph:
    """3 -> 6 multi-spike LIF (sinabs-like) -> 2 LIF."""
    fc1 = Affine(rng.normal(0.4, 0.8, (6, 3)))
    lif1 = LIF(beta=np.full(6, 0.75), v_threshold=np.full(6, 1.0), reset="subtract",
               max_spikes=None, fires_at_equal=True)
    fc2 = Affine(rng.normal(0.3, 0.6, (2, 6)))
    lif2 = LIF(beta=np.full(2, 0.75), v_threshold=np.full(2, 1.0), reset="subtract")
    return Graph.chain([("in", Input((3,))), ("fc1", fc1), ("lif1", lif1), ("fc2", fc2),
                        ("lif2", lif2), ("out", Output((2,)))], dt=1e-3,
                       metadata={"reset": "subtract", "discretization": "exact"})


def numpy_forward(graph: Graph, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x [N, T, 3] -> (lif1 counts, lif2 spikes), samples first, float64."""
    nodes = graph.nodes
    n, steps, _ = x.shape
    v1, v2 = np.zeros((n, 6)), np.zeros((n, 2))
    s1, s2 = np.zeros((n, steps, 6)), np.zeros((n, steps, 2))
    for t in range(steps):
        v1 = 0.75 * v1 + x[:, t] @ nodes["fc1"].weight.T
        c = np.clip(np.floor(v1 / 1.0), 0, None)          # floor(v / thr) spikes, v >= thr
        v1 = v1 - c
        s1[:, t] = c
        v2 = 0.75 * v2 + c @ nodes["fc2"].weight.T
        s = (v2 > 1.0).astype(float)
        v2 = v2 - s
        s2[:, t] = s
    return s1, s2


@pytest.fixture
def files(tmp_path, rng):
    graph = mlp(rng)
    model = write_nir(graph, tmp_path / "m.nir")
    x = (rng.random((5, 40, 3)) < 0.5).astype(np.uint8)
    data = tmp_path / "d.npz"
    np.savez(data, x=x, y=np.arange(5) % 2, dt=1e-3)
    return graph, model, data, x


def test_simulate_writes_the_float_spikes_and_every_layer(files, tmp_path, capsys):
    graph, model, data, x = files
    out = tmp_path / "spikes.npz"
    assert main(["simulate", str(model), str(data), "-o", str(out), "--layers", "--quiet"]) == 0
    got = np.load(out)
    assert set(got.files) == {"output", "layers", "layer_0", "layer_1", "y", "dt"}
    s1, s2 = numpy_forward(graph, x.astype(np.float64))
    np.testing.assert_array_equal(got["output"], s2)
    assert got["layers"].tolist() == ["lif1", "lif2"]
    np.testing.assert_array_equal(got["layer_0"], s1)
    np.testing.assert_array_equal(got["layer_1"], got["output"])
    assert got["output"].shape == (5, 40, 2) and got["output"].dtype == np.float32
    assert got["layer_0"].max() >= 2 and got["output"].sum() > 20   # multi-spike counts kept
    np.testing.assert_array_equal(got["y"], np.arange(5) % 2)
    assert float(got["dt"]) == pytest.approx(1e-3)
    printed = capsys.readouterr().out
    assert "wrote" in printed and "output: [5, 40, 2]" in printed


def test_limit_and_no_layers(files, tmp_path):
    _, model, data, _ = files
    out = tmp_path / "s.npz"
    assert main(["simulate", str(model), str(data), "-o", str(out), "--limit", "2",
                 "--batch-size", "1", "--quiet"]) == 0
    got = np.load(out)
    assert set(got.files) == {"output", "y", "dt"} and got["output"].shape == (2, 40, 2)


def test_integer_needs_integer_weights_and_says_why(files, tmp_path, capsys):
    _, model, data, _ = files
    out = tmp_path / "s.npz"
    assert main(["simulate", str(model), str(data), "-o", str(out), "--integer"]) == 2
    err = capsys.readouterr().err
    assert "--integer" in err and "integer core" in err and "netx" in err
    assert not out.exists()


def test_integer_core_spikes_of_a_netx_model(tmp_path, rng):
    from sbc_deploy.frontends import load_model
    from sbc_deploy.sim import simulate
    from sbc_deploy.sim.fixed_point import to_fixed_point
    from sbc_deploy.sim.int_core import simulate_integer

    path = fixture_path("netx", "mnist_small", "network.net")
    graph = load_model(path)
    shape = graph.nodes[graph.inputs[0]].output_shape
    x = (rng.random((3, 20, *shape)) < 0.2).astype(np.uint8)
    data = tmp_path / "d.npz"
    np.savez(data, x=x, dt=graph.dt)
    out = tmp_path / "s.npz"
    assert main(["simulate", str(path), str(data), "-o", str(out), "--integer", "--layers",
                 "--quiet"]) == 0
    got = np.load(out)
    net = to_fixed_point(graph)
    xt = torch.from_numpy(np.swapaxes(x, 0, 1).astype(np.float32))
    core = simulate_integer(net, xt, record=[layer.name for layer in net.layers])
    want = np.swapaxes(core.outputs[net.output].numpy(), 0, 1)
    np.testing.assert_array_equal(got["integer_output"], want)
    assert got["integer_layers"].tolist() == [layer.name for layer in net.layers]
    for k, layer in enumerate(net.layers):
        np.testing.assert_array_equal(got[f"integer_layer_{k}"],
                                      np.swapaxes(core.recorded[layer.name].numpy(), 0, 1))
    float_out = simulate(graph, xt).outputs[graph.outputs[0]].numpy()
    np.testing.assert_array_equal(got["output"], np.swapaxes(float_out, 0, 1))
    assert sum(got[f"integer_layer_{k}"].sum() for k in range(len(net.layers))) > 0


def test_bundled_model_by_name(tmp_path):
    from sbc_deploy import bundled

    out = tmp_path / "s.npz"
    data = bundled.bundled_path("nmnist_eval.npz")
    assert main(["simulate", "nmnist_mlp", str(data), "-o", str(out), "--limit", "4",
                 "--quiet"]) == 0
    got = np.load(out)
    assert got["output"].shape[0] == 4 and got["output"].shape[-1] == 10
    assert got["output"].sum() > 0
