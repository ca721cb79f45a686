"""--device: every stage on CUDA agrees with the CPU (skipped without CUDA); asking for CUDA
where there is none is a clear error before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbc_deploy import bundled
from sbc_deploy.calibrate import calibrate
from sbc_deploy.cli import main
from sbc_deploy.errors import ConfigError
from sbc_deploy.pipeline import DeployRequest, deploy
from sbc_deploy.sim import simulate
from sbc_deploy.report.synops_counter import SynOpsCounter

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine")


def bundled_inputs(model: str, samples: int, steps: int):
    graph = bundled.load_bundled_model(model)
    x = np.array(np.swapaxes(bundled.load_bundled_data("eval").x[:samples], 0, 1))[:steps]
    return graph, torch.from_numpy(x).to(torch.float32)


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="CUDA"):
        deploy(DeployRequest(model="nmnist_mlp", targets=("loihi2",), device="cuda",
                             out_dir=str(out)))
    assert not (out / "report.json").exists()   # refused before anything was written
    assert main(["nmnist_mlp", "--target", "loihi2", "--device", "cuda", "-o",
                 str(tmp_path / "cli"), "--quiet"]) != 0


def test_malformed_device_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a torch device"):
        deploy(DeployRequest(model="nmnist_mlp", targets=("loihi2",), device="gpu0",
                             out_dir=str(tmp_path / "out")))


@needs_cuda
@pytest.mark.parametrize("model", ["nmnist_mlp", "nmnist_cnn"])
def test_float_simulator_on_cuda_agrees_with_cpu(model):
    graph, x = bundled_inputs(model, samples=8, steps=20)
    counters = {d: SynOpsCounter(graph, steps=20, batch=8) for d in ("cpu", "cuda")}
    runs = {d: simulate(graph, x, device=d, on_synapse_input=counters[d], time_chunk=7,
                        batch_chunk=3) for d in ("cpu", "cuda")}
    out_cpu, out_gpu = (runs[d].outputs[graph.outputs[0]] for d in ("cpu", "cuda"))
    assert out_gpu.device.type == "cuda"
    # different GEMM kernels round differently: spikes agree except within rounding of a
    # threshold, which these networks do not reach on this data
    assert float((out_gpu.cpu() == out_cpu).double().mean()) >= 0.999
    a, b = (counters[d].report().per_sample for d in ("cpu", "cuda"))
    assert b == pytest.approx(a, rel=1e-3)


@needs_cuda
def test_a_gpu_the_machine_lacks_is_refused():
    from sbc_deploy.devices import resolve_device

    with pytest.raises(ConfigError, match="names GPU"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@needs_cuda
def test_calibration_on_cuda_gives_the_cpu_hessians():
    graph = bundled.load_bundled_model("nmnist_mlp")
    x = np.asarray(bundled.load_bundled_data("calib").x[:8], dtype=np.float32)
    cpu = calibrate(graph, x, device="cpu")
    gpu = calibrate(graph, x, device="cuda")
    for name, value in cpu.layers.items():
        np.testing.assert_allclose(np.asarray(gpu.layers[name].xtx), np.asarray(value.xtx),
                                   rtol=1e-5, atol=1e-8)


@needs_cuda
def test_deploy_on_cuda_matches_cpu(tmp_path):
    reports = {}
    for device in ("cpu", "cuda"):
        request = DeployRequest(model="nmnist_mlp", targets=("loihi2",), sparsity=0.5,
                                eval_limit=64, out_dir=str(tmp_path / device), device=device)
        reports[device] = deploy(request).report.targets[0]
    assert reports["cuda"].accuracy.dense_float == reports["cpu"].accuracy.dense_float
    assert reports["cuda"].accuracy.compressed_float == pytest.approx(
        reports["cpu"].accuracy.compressed_float, abs=2 / 64)


@needs_cuda
def test_cli_deploys_the_cnn_on_cuda_like_the_cpu(tmp_path):
    """The whole CLI run of the bundled CNN (convolutions, pools, the integer core)
    with ``--device cuda`` gives the CPU run's report, up to spikes at a rounding boundary."""
    import json

    reports = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        assert main(["nmnist_cnn", "--target", "loihi2", "--device", device,
                     "--eval-limit", "64", "-o", str(out), "--quiet"]) == 0
        reports[device] = json.loads((out / "report.json").read_text())
    (cpu,), (gpu,) = reports["cpu"]["targets"], reports["cuda"]["targets"]
    assert gpu["fits"] == cpu["fits"]
    assert gpu["accuracy"]["dense_float"] == cpu["accuracy"]["dense_float"]
    assert gpu["accuracy"]["compressed_float"] == pytest.approx(
        cpu["accuracy"]["compressed_float"], abs=2 / 64)
    assert reports["cuda"]["settings"]["calibration"].keys() != reports["cpu"]["settings"][
        "calibration"].keys()   # the device is recorded with the calibration it made


COMPRESS_CASES = {   # every solver, grid, structure and allocation path, each at least once
    "admm-int8": dict(sparsity=0.5, bits=8),
    "exact": dict(sparsity=0.5, solver="exact"),   # the readout only: greedy OBS is slow
    "sparsegpt-joint": dict(sparsity=0.5, solver="sparsegpt", bits=4),
    "int-exp": dict(sparsity=0.5, bits=8, grid="int_exp"),
    "ternary": dict(sparsity=0.3, grid="ternary"),
    "shared-scale": dict(sparsity=0.5, bits=6, per_channel=False, clip="minmax"),
    "n:m": dict(sparsity=0.5, n_m=(2, 4)),
    "fan-in": dict(sparsity=0.5, fan_in=96, bits=8),
    "global": dict(sparsity=0.7, allocation="global"),
    "lamp-sequential": dict(sparsity=0.6, allocation="lamp", propagation="sequential"),
}


@needs_cuda
@pytest.mark.parametrize("model", ["nmnist_mlp", "nmnist_cnn"])
@pytest.mark.parametrize("case", sorted(COMPRESS_CASES))
def test_compression_on_cuda_agrees_with_cpu(model, case):
    """The same calibration compressed on each device: the same masks up to near ties and the
    same weights where both keep one (float64 solves; kernels differ in summation order)."""
    from sbc_deploy.compress import compress
    from sbc_deploy.compress.config import config_for

    graph = bundled.load_bundled_model(model)
    x = np.asarray(bundled.load_bundled_data("calib").x[:16], dtype=np.float32)
    layers = (graph.synapse_layers()[-1].name,) if case == "exact" else None
    results = {}
    for device in ("cpu", "cuda"):
        calibration = calibrate(graph, x, device=device)
        config = config_for("sbc", device=device, layers=layers, **COMPRESS_CASES[case])
        results[device] = compress(graph, calibration, config)[0]
    for layer in graph.synapse_layers():
        a, b = (np.asarray(results[d].nodes[layer.name].weight) for d in ("cpu", "cuda"))
        assert ((a != 0) == (b != 0)).mean() >= 0.99, layer.name
        both = (a != 0) & (b != 0)
        assert np.isclose(a[both], b[both], rtol=1e-3, atol=1e-6).mean() >= 0.99, layer.name


@needs_cuda
@pytest.mark.parametrize("options", [dict(precision="float32"), dict(row_fraction=0.5),
                                     dict(blocks={"linear1": 128})])
def test_calibration_forms_on_cuda_agree_with_cpu(options):
    graph = bundled.load_bundled_model("nmnist_mlp")
    x = np.asarray(bundled.load_bundled_data("calib").x[:8], dtype=np.float32)
    cpu = calibrate(graph, x, device="cpu", **options)
    gpu = calibrate(graph, x, device="cuda", **options)
    for name, value in cpu.layers.items():
        np.testing.assert_allclose(np.asarray(gpu.layers[name].xtx), np.asarray(value.xtx),
                                   rtol=1e-4, atol=1e-6)
