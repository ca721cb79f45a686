"""calibrate(): Hessians from the float simulator against closed-form kernels on recorded spikes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import fixture_path

from sbc_deploy.calibrate import Calibration, calibrate
from sbc_deploy.compress.hessian import TemporalKernel, temporal_kernel
from sbc_deploy.errors import ConfigError, DataError
from sbc_deploy.ir import LIF, Affine, CubaLIF, Graph, Input, Output, Scale
from sbc_deploy.sim import simulate


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def small_graph(rng: np.random.Generator) -> Graph:
    beta = np.array([0.6, 0.6, 0.9, 0.9, 0.6, 0.9])
    return Graph.chain([
        ("in", Input((8,))),
        ("fc1", Affine(rng.normal(0, 0.8, (6, 8)))),
        ("gain", Scale(np.array([1.0, 2.0, 1.0, 0.5, 1.0, 1.0]))),
        ("lif", LIF(beta=beta, v_threshold=np.ones(6), gain=np.full(6, 0.5))),
        ("fc2", Affine(rng.normal(0, 0.8, (3, 6)))),
        ("cuba", CubaLIF(alpha=np.full(3, 0.4), beta=np.full(3, 0.8), v_threshold=np.ones(3))),
        ("out", Output((3,))),
    ], dt=1e-3)


def spikes(rng: np.random.Generator, n: int = 20, steps: int = 15) -> np.ndarray:
    return (rng.random((n, steps, 8)) < 0.35).astype(np.float32)


def closed_form_hessian(x: np.ndarray, K: torch.Tensor) -> torch.Tensor:
    """H = 2/N sum_b (K X_b)^T (K X_b), X_b: [T, n_in], with the T x T matrix K."""
    X = torch.as_tensor(x, dtype=torch.float64)          # [N, T, n_in]
    KX = torch.einsum("ts,nsi->nti", K, X)
    return 2 * torch.einsum("nti,ntj->ij", KX, KX) / x.shape[0]


def test_hessians_match_closed_form_kernels_on_recorded_inputs(rng):
    graph = small_graph(rng)
    x = spikes(rng)
    calib = calibrate(graph, x, kernel="smp", batch_size=8, precision="float64")
    steps = x.shape[1]
    # fc1: two decay groups (0.6 and 0.9) on the raw input spikes
    fc1 = calib.layers["fc1"]
    assert fc1.kernels == (TemporalKernel(beta=0.6), TemporalKernel(beta=0.9))
    assert fc1.groups.tolist() == [0, 0, 1, 1, 0, 1]
    for g, beta in enumerate((0.6, 0.9)):
        expected = closed_form_hessian(x, temporal_kernel(beta, steps))
        assert torch.allclose(fc1.hessian()[g, 0], expected, rtol=1e-10)
    # row weights: (Scale * gain)^2
    assert fc1.row_weight.tolist() == pytest.approx([0.25, 1.0, 0.25, 0.0625, 0.25, 0.25])
    # fc2: its input is the LIF's spikes, recorded by the simulator; CubaLIF kernel K_b K_a
    lif_spikes = simulate(graph, torch.as_tensor(x).transpose(0, 1), record=["lif"])
    recorded = lif_spikes.recorded["lif"].transpose(0, 1).numpy()
    K = temporal_kernel(0.8, steps) @ temporal_kernel(0.4, steps)
    assert torch.allclose(calib.layers["fc2"].hessian()[0, 0], closed_form_hessian(recorded, K),
                          rtol=1e-10)
    assert calib.layers["fc2"].in_rate() == pytest.approx(recorded.mean(axis=(0, 1)))


def test_current_kernel_is_identity(rng):
    graph = small_graph(rng)
    x = spikes(rng)
    calib = calibrate(graph, x, kernel="current", precision="float64")
    assert calib.layers["fc1"].kernels == (TemporalKernel(),)
    expected = closed_form_hessian(x, torch.eye(x.shape[1], dtype=torch.float64))
    assert torch.allclose(calib.layers["fc1"].hessian()[0, 0], expected, rtol=1e-12)
    assert calib.layers["fc1"].row_weight.tolist() == [1.0] * 6


def test_streaming_is_batch_size_invariant_and_sums_add(rng):
    graph = small_graph(rng)
    x = spikes(rng, n=23)
    whole = calibrate(graph, x, batch_size=64, precision="float64")
    small = calibrate(graph, x, batch_size=5, precision="float64")
    halves = (calibrate(graph, x[:11], batch_size=4, precision="float64")
              + calibrate(graph, x[11:], batch_size=4, precision="float64"))
    for other in (small, halves):
        assert other.n_samples == 23
        for name in whole.layers:
            assert np.allclose(other.layers[name].xtx, whole.layers[name].xtx, rtol=1e-12)
            assert other.layers[name].n_rows == whole.layers[name].n_rows


def test_recompute_on_a_changed_graph_equals_fresh_calibration(rng):
    graph = small_graph(rng)
    x = spikes(rng)
    calib = calibrate(graph, x, batch_size=8)
    changed = graph.replace_nodes({"fc1": graph.nodes["fc1"].with_weight(
        np.asarray(graph.nodes["fc1"].weight) * 1.7)})
    again = calib.recompute(changed, ["fc2"])
    fresh = calibrate(changed, x, batch_size=8)
    assert np.allclose(again.layers["fc2"].xtx, fresh.layers["fc2"].xtx)
    assert again.layers["fc1"] is calib.layers["fc1"]
    assert not np.allclose(again.layers["fc2"].xtx, calib.layers["fc2"].xtx)


def test_inputs_settings_and_errors(rng):
    graph = small_graph(rng)
    x = spikes(rng)

    class Data:  # anything with .x, like sbc_deploy.data.Dataset
        def __init__(self, x):
            self.x = x

    from_object = calibrate(graph, Data(x), layers=["fc2"])
    assert set(from_object.layers) == {"fc2"} and from_object.steps == x.shape[1]
    empty = calibrate(graph, None)
    assert isinstance(empty, Calibration) and not empty.layers
    with pytest.raises(ConfigError, match="kernel"):
        calibrate(graph, x, kernel="membrane")
    with pytest.raises(ConfigError, match="not synapse layers"):
        calibrate(graph, x, layers=["lif"])
    with pytest.raises(DataError, match=r"\[N, T"):
        calibrate(graph, x[0])
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            calibrate(graph, x, device="cuda")


def test_conv_network_fixture_calibrates(rng):
    """snntorch's spiking conv net (real NIR file): one Hessian per conv layer, im2col sized."""
    from sbc_deploy.frontends import load_model

    graph = load_model(fixture_path("nir", "scnn_mnist_snntorch.nir"), dt=1e-3, reset="subtract")
    x = (rng.random((3, 8, 2, 34, 34)) < 0.3).astype(np.float32)
    calib = calibrate(graph, x, batch_size=2)
    for layer in graph.synapse_layers():
        hsum = calib.layers[layer.name]
        n_in = int(np.prod(layer.synapse.weight.shape[1:]))
        assert hsum.xtx.shape[-2:] == (n_in, n_in)
        H = hsum.hessian()[0, 0]
        assert torch.allclose(H, H.T)
        assert float(torch.linalg.eigvalsh(H).min()) >= -1e-9 * float(H.diagonal().max())
    first = graph.synapse_layers()[0]
    positions = int(np.prod(first.synapse.output_shape[1:]))
    assert calib.layers[first.name].n_rows == 3 * positions  # sequences x output positions
    assert float(calib.layers[first.name].hessian().diagonal(dim1=-2, dim2=-1).min()) > 0


def test_float32_gemm_sums_on_the_bundled_networks():
    """float32 GEMMs: within 1e-6 of the float64 sums on both bundled networks (their bundled
    calibration data); SBC on the CNN gives the same compressed weights, bit for bit, from
    either. (On the MLP a few near-tied weights of 592 K may round the other way:
    benchmarks/results/calibrate.md.)"""
    from sbc_deploy import bundled
    from sbc_deploy.compress import compress, config_for_target
    from sbc_deploy.targets import load_target

    data = bundled.load_bundled_data("calib")
    for model in ("nmnist_mlp", "nmnist_cnn"):
        graph = bundled.load_bundled_model(model)
        f32 = calibrate(graph, data, threads=1, precision="float32")
        f64 = calibrate(graph, data, threads=1)  # the default
        for name, reference in f64.layers.items():
            error = np.linalg.norm(f32.layers[name].xtx - reference.xtx)
            assert error <= 1e-6 * np.linalg.norm(reference.xtx), (model, name)
        if model == "nmnist_cnn":
            config = config_for_target(load_target("loihi2"), method="sbc")
            a, _ = compress(graph, f32, config)
            b, _ = compress(graph, f64, config)
            for layer in graph.synapse_layers():
                assert np.array_equal(a.nodes[layer.name].weight, b.nodes[layer.name].weight)


def test_settings_and_timing_are_recorded(rng):
    graph = small_graph(rng)
    calib = calibrate(graph, spikes(rng), row_fraction=0.5, seed=3, blocks={"fc1": 4})
    settings = calib.settings()
    assert settings["row_fraction"] == 0.5 and settings["seed"] == 3
    assert settings["block_diagonal"] == {"fc1": 4} and settings["precision"] == "float64"
    assert calib.layers["fc1"].block_size == 4 and calib.layers["fc2"].block_size is None
    assert 0 < calib.metadata["sum_seconds"] <= calib.metadata["seconds"]
    # 2 x kept rows (half) x values per row: fc1 2 decay groups x 20 x 15 rows x 2 blocks of
    # 4^2, fc2 20 x 15 rows x 6^2
    assert calib.metadata["sum_flops"] == 2 * 0.5 * (2 * 300 * 2 * 16 + 300 * 36)
    with pytest.raises(ConfigError, match="blocks"):
        calibrate(graph, spikes(rng), blocks={"lif": 4})


def test_deploy_records_the_calibration_settings_and_the_memory_plan(tmp_path):
    """The pipeline passes --hessian-precision on and writes how the sums were made."""
    from sbc_deploy import bundled
    from sbc_deploy.pipeline import DeployRequest, deploy

    data = bundled.load_bundled_data("calib")
    path = tmp_path / "calib.npz"
    np.savez(path, x=np.asarray(data.x[:12]), dt=data.dt)
    result = deploy(DeployRequest(model="nmnist_cnn", calib=str(path), eval=None, export=("nir",),
                                  out_dir=str(tmp_path / "out"), hessian_precision="float64",
                                  calib_row_fraction=0.5))
    settings = result.report.settings
    (calibration,) = settings["calibration"].values()
    assert calibration["precision"] == "float64" and calibration["samples"] == 12
    assert calibration["row_fraction"] == 0.5 and calibration["block_diagonal"] == {}
    assert settings["memory"]["peak_bytes"] <= settings["memory"]["budget_bytes"]
    with pytest.raises(ConfigError, match="precision"):
        calibrate(bundled.load_bundled_model("nmnist_mlp"), None, precision="float16")


def _widest_bytes(graph, batch):
    return max(max(int(np.prod(n.output_shape)), int(np.prod(n.input_shape)))
               for n in graph.nodes.values()) * 4 * batch


def test_time_chunked_calibration_equals_whole_sequences_on_fixtures(rng):
    """Calibration in time chunks (neuron and filter states carried, issue 14) against the whole
    sequence at once: snntorch's conv net (real NIR file), one batch in chunks of 32 steps:
    bit for bit; the bundled networks on their bundled data in chunks of 4 steps, several
    batches summed straight into the totals: within 1e-13 (relative, Frobenius), the counts
    and input rates equal."""
    from sbc_deploy import bundled
    from sbc_deploy.calibrate import time_chunk
    from sbc_deploy.frontends import load_model

    graph = load_model(fixture_path("nir", "scnn_mnist_snntorch.nir"), dt=1e-3, reset="subtract")
    x = (rng.random((3, 40, 2, 34, 34)) < 0.3).astype(np.float32)
    budget = _widest_bytes(graph, 3) * 40 - 1
    assert time_chunk(graph, 40, 3, budget) == 32
    chunked = calibrate(graph, x, batch_size=3, chunk_bytes=budget)
    whole = calibrate(graph, x, batch_size=3, chunk_bytes=None)
    assert chunked.metadata["time_chunk"] == 32 and whole.metadata["time_chunk"] == 40
    for name, reference in whole.layers.items():
        assert np.array_equal(chunked.layers[name].xtx, reference.xtx), name
        assert np.array_equal(chunked.layers[name].x_sum, reference.x_sum), name
    data = bundled.load_bundled_data("calib")
    for model in ("nmnist_mlp", "nmnist_cnn"):
        graph = bundled.load_bundled_model(model)
        x = data.x[:24]
        budget = _widest_bytes(graph, 8) * 4
        assert time_chunk(graph, x.shape[1], 8, budget) == 4
        chunked = calibrate(graph, x, batch_size=8, chunk_bytes=budget)
        whole = calibrate(graph, x, batch_size=8, chunk_bytes=None)
        for name, reference in whole.layers.items():
            got = chunked.layers[name]
            error = np.linalg.norm(got.xtx - reference.xtx)
            assert error <= 1e-13 * np.linalg.norm(reference.xtx), (model, name)
            assert (got.n_rows, got.n_samples, got.steps) == (
                reference.n_rows, reference.n_samples, reference.steps)
            assert np.array_equal(got.x_sum, reference.x_sum), (model, name)


def test_time_chunk_sizes(rng):
    from sbc_deploy.calibrate import time_chunk

    graph = small_graph(rng)   # widest value: 8 floats per sample-step
    assert time_chunk(graph, 100, 2, None) == 100
    assert time_chunk(graph, 100, 2, 8 * 4 * 2 * 100) == 100   # fits whole
    assert time_chunk(graph, 100, 2, 8 * 4 * 2 * 50) == 32     # cut to a multiple of 32
    assert time_chunk(graph, 100, 2, 8 * 4 * 2 * 7) == 7
    assert time_chunk(graph, 100, 2, 1) == 1
    with pytest.raises(ConfigError, match="chunk_bytes"):
        calibrate(graph, spikes(rng), chunk_bytes=0)
