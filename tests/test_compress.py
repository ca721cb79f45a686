"""compress(): new graph, input untouched, exact encodings, stats against recomputation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import fixture_path

from sbc_deploy.calibrate import calibrate
from sbc_deploy.compress import (
    Budget,
    MagnitudeConfig,
    OBCConfig,
    SBCConfig,
    compress,
    config_for,
    config_for_target,
)
from sbc_deploy.compress.hessian import TemporalKernel
from sbc_deploy.errors import ConfigError, DataError
from sbc_deploy.ir import LI, LIF, Affine, Graph, Input, Output
from sbc_deploy.sim import simulate


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def mlp(rng: np.random.Generator, n_in: int = 40, hidden: int = 24, out: int = 6) -> Graph:
    return Graph.chain([
        ("in", Input((n_in,))),
        ("fc1", Affine(rng.normal(0, 0.4, (hidden, n_in)))),
        ("lif1", LIF(beta=np.full(hidden, 0.7), v_threshold=np.full(hidden, 1.5))),
        ("fc2", Affine(rng.normal(0, 0.4, (out, hidden)))),
        ("li", LI(beta=np.full(out, 0.9))),
        ("out", Output((out,))),
    ], dt=1e-3)


def data(rng: np.random.Generator, n_in: int = 40, n: int = 48, steps: int = 16) -> np.ndarray:
    rates = rng.uniform(0.05, 0.5, n_in)
    rates[:3] = 0.0  # three inputs never fire
    return (rng.random((n, steps, n_in)) < rates).astype(np.float32)


def smp_loss_by_simulation(graph: Graph, x: np.ndarray, name: str, beta: float,
                           new_weight: np.ndarray) -> float:
    """Independent: sum_b ||K X_b dW^T||^2 * 2 / N from the simulator's recorded layer inputs."""
    inputs = {}
    simulate(graph, torch.as_tensor(x).transpose(0, 1),
             on_synapse_input=lambda n, t: inputs.__setitem__(n, t.clone()))
    X = inputs[name].to(torch.float64)                               # [T, B, n_in]
    K = TemporalKernel(beta=beta).matrix(X.shape[0])
    dW = torch.as_tensor(np.asarray(graph.nodes[name].weight) - new_weight)
    V = torch.einsum("ts,sbi,oi->tbo", K, X, dW)                    # membrane error
    return float(V.pow(2).sum()) * 2 / X.shape[1]


def test_compress_returns_new_graph_and_leaves_input_untouched(rng):
    graph = mlp(rng)
    before = {n: np.array(graph.nodes[n].weight) for n in ("fc1", "fc2")}
    x = data(rng)
    calib = calibrate(graph, x, kernel="smp", precision="float64")
    small, stats = compress(graph, calib, SBCConfig(sparsity=0.6, bits=4))
    assert small is not graph and small.nodes["fc1"] is not graph.nodes["fc1"]
    for name, weight in before.items():
        assert np.array_equal(graph.nodes[name].weight, weight)
        assert graph.nodes[name].encoding is None
    assert small.nodes["lif1"] is graph.nodes["lif1"]
    # stats' layer loss == the membrane-potential error measured through the simulator
    for name, beta in (("fc1", 0.7), ("fc2", 0.9)):
        independent = smp_loss_by_simulation(graph, x, name, beta, small.nodes[name].weight)
        assert stats.layer_loss[name] == pytest.approx(independent, rel=1e-9)
        layer = stats.layer(name)
        assert layer.pruned == round(0.6 * np.prod(layer.shape))
        assert layer.bits == 4 and layer.grid == "int" and layer.damp_raises == 0
    # dead inputs of fc1 are pruned for free
    assert not np.any(small.nodes["fc1"].weight[:, :3])


def test_encodings_are_exact_integers(rng):
    graph = mlp(rng)
    calib = calibrate(graph, data(rng))
    for grid, bits in (("int", 8), ("int_exp", 8), ("ternary", None)):
        small, _ = compress(graph, calib, SBCConfig(sparsity=0.3, bits=bits, grid=grid,
                                                    exp_range=(-6, 8)))
        for name in ("fc1", "fc2"):
            node = small.nodes[name]
            enc = node.encoding
            assert enc is not None and enc.grid == grid
            assert np.array_equal(node.weight, enc.mantissa * enc.scale[:, None])
            low, high = (-1, 1) if grid == "ternary" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
            assert enc.mantissa.min() >= low and enc.mantissa.max() <= high
        enc = small.nodes["fc1"].encoding
        if grid == "int_exp":
            assert -6 <= enc.exponent <= 8
            assert 2**10 <= round(1.5 / enc.unit) <= 2**17 - 1  # lif1's threshold in units


def test_sbc_beats_magnitude_and_every_method_dispatches(rng):
    graph = mlp(rng)
    x = data(rng)
    smp = calibrate(graph, x, kernel="smp")
    current = calibrate(graph, x, kernel="current")
    _, sbc = compress(graph, smp, SBCConfig(sparsity=0.7))
    _, exact = compress(graph, smp, SBCConfig(sparsity=0.7, solver="exact"))
    _, sparse_gpt = compress(graph, smp, SBCConfig(sparsity=0.7, solver="sparsegpt"))
    _, magnitude = compress(graph, smp, MagnitudeConfig(sparsity=0.7))
    obc_graph, obc = compress(graph, current, OBCConfig(sparsity=0.7))
    for name in ("fc1", "fc2"):
        assert sbc.layer_loss[name] <= 1.05 * exact.layer_loss[name]
        assert exact.layer_loss[name] <= sparse_gpt.layer_loss[name] * (1 + 1e-9)
        assert sparse_gpt.layer_loss[name] < magnitude.layer_loss[name]
    # OBC optimises the current loss: on the SMP objective SBC is better
    obc_weights = {n: obc_graph.nodes[n].weight for n in ("fc1", "fc2")}
    for name in ("fc1", "fc2"):
        beta = 0.7 if name == "fc1" else 0.9
        obc_smp_loss = smp_loss_by_simulation(graph, x, name, beta, obc_weights[name])
        assert sbc.layer_loss[name] <= obc_smp_loss
    assert obc.method == "obc" and magnitude.method == "magnitude"


def test_structure_budget_and_global_allocation(rng):
    graph = mlp(rng)
    calib = calibrate(graph, data(rng))
    small, _ = compress(graph, calib, SBCConfig(sparsity=0.5, n_m=(2, 4), fan_in=15))
    for name in ("fc1", "fc2"):
        kept = small.nodes[name].weight != 0
        assert kept.sum(axis=1).max() <= 15
        assert kept.reshape(kept.shape[0], -1, 4).sum(axis=2).max() <= 2
    small, stats = compress(graph, calib, SBCConfig(allocation=Budget(synapses=300)))
    kept = sum(int(np.count_nonzero(small.nodes[n].weight)) for n in ("fc1", "fc2"))
    assert kept <= 300 and sum(s.pruned for s in stats.layers) == 24 * 40 + 6 * 24 - 300
    _, stats = compress(graph, calib, SBCConfig(sparsity=0.8, allocation="global"))
    pruned = {s.name: s.pruned for s in stats.layers}
    assert sum(pruned.values()) == round(0.8 * (24 * 40 + 6 * 24))
    assert pruned["fc1"] / 960 != pytest.approx(pruned["fc2"] / 144, abs=0.02)
    _, lamp = compress(graph, calib, SBCConfig(sparsity=0.8, allocation="lamp"))
    assert sum(s.pruned for s in lamp.layers) == sum(pruned.values())


def test_sequential_propagation_recalibrates_on_compressed_layers(rng):
    graph = mlp(rng)
    x = data(rng)
    calib = calibrate(graph, x, precision="float64")  # exact sums: rel 1e-9 below
    config = SBCConfig(sparsity=0.8, propagation="sequential")
    small, stats = compress(graph, calib, config)
    # fc2's loss is measured on the Hessian of the graph whose fc1 is already compressed
    partly = graph.replace_nodes({"fc1": small.nodes["fc1"]})
    independent = smp_loss_by_simulation(partly, x, "fc2", 0.9, small.nodes["fc2"].weight)
    assert stats.layer_loss["fc2"] == pytest.approx(independent, rel=1e-9)
    _, parallel = compress(graph, calib, config.replace(propagation="parallel"))
    assert parallel.layer_loss["fc1"] == pytest.approx(stats.layer_loss["fc1"])
    assert parallel.layer_loss["fc2"] != pytest.approx(stats.layer_loss["fc2"])


def test_damping_raises_are_recorded(rng):
    """An indefinite Hessian (not from data; it exercises the mechanism): raised, counted."""
    from dataclasses import replace

    graph = mlp(rng, n_in=2, hidden=3, out=2)
    calib = calibrate(graph, data(rng, n_in=2))
    hsum = calib.layers["fc1"]
    xtx = np.array([[[[1.0, 3.0], [3.0, 1.0]]]]) * hsum.n_rows / 2  # H eigenvalues -2 and 4
    bad = replace(calib, layers={**calib.layers, "fc1": replace(hsum, xtx=xtx)})
    _, stats = compress(graph, bad, SBCConfig(sparsity=0.5, damp_frac=0.01))
    assert stats.layer("fc1").damp_raises == 3 and stats.layer("fc1").damp_frac == 10.0
    assert stats.layer("fc2").damp_raises == 0


def test_errors_name_the_field(rng):
    graph = mlp(rng)
    x = data(rng)
    smp = calibrate(graph, x, kernel="smp")
    with pytest.raises(ConfigError, match="'current' kernel"):
        compress(graph, smp, OBCConfig(sparsity=0.5))
    with pytest.raises(DataError, match="needs a calibration"):
        compress(graph, None, SBCConfig(sparsity=0.5))
    _, stats = compress(graph, None, MagnitudeConfig(sparsity=0.5, bits=4))
    assert stats.layer_loss["fc1"] is None
    for field, value in (("sparsity", 1.2), ("bits", 1), ("grid", "float"), ("n_m", (5, 4)),
                         ("fan_in", 0), ("damp_frac", -1.0), ("solver", "lbfgs"),
                         ("propagation", "both"), ("allocation", "best"), ("exp_range", (3, 1))):
        with pytest.raises(ConfigError, match=f"SBCConfig.{field}"):
            SBCConfig(**{field: value})
    with pytest.raises(ConfigError, match="unknown method"):
        config_for("prune")
    with pytest.raises(ConfigError, match="not synapse layers"):
        compress(graph, smp, SBCConfig(sparsity=0.5, layers=("lif1",)))


def test_config_for_target_reads_a_target_by_attribute():
    target = SimpleNamespace(
        weights=SimpleNamespace(bits=8, grid="int_exp", exp_range=(-6, 8), scale_sharing="per_layer"),
        limits=SimpleNamespace(max_fan_in=4096))
    config = config_for_target(target, method="obc", sparsity=0.5)
    assert isinstance(config, OBCConfig)
    assert (config.bits, config.grid, config.exp_range, config.fan_in) == (8, "int_exp", (-6, 8),
                                                                          4096)
    floaty = SimpleNamespace(weights=SimpleNamespace(grid="float"), limits=None)
    assert not config_for_target(floaty).quantize


def test_conv_network_compresses(rng):
    """The real snntorch conv net: every layer pruned exactly, shapes and encodings kept."""
    from sbc_deploy.frontends import load_model

    graph = load_model(fixture_path("nir", "scnn_mnist_snntorch.nir"), dt=1e-3, reset="subtract")
    x = (rng.random((4, 8, 2, 34, 34)) < 0.3).astype(np.float32)
    calib = calibrate(graph, x, batch_size=2)
    small, stats = compress(graph, calib, SBCConfig(sparsity=0.5, bits=8))
    for layer in graph.synapse_layers():
        node = small.nodes[layer.name]
        assert node.weight.shape == layer.synapse.weight.shape
        assert stats.layer(layer.name).pruned == round(0.5 * layer.synapse.weight.size)
        assert np.array_equal(node.weight, node.encoding.dequantize())
