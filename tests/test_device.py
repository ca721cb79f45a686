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
from sbc_deploy.sim.streaming import SynOpsCounter

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
    """The whole CLI run of the bundled CNN (convolutions, pools, the integer core on the host)
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
