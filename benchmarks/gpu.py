"""Every stage on a GPU next to the same stage on the CPU: wall time, peak memory, agreement.

Ready to run on a machine with CUDA (it refuses to start without one). Networks: the bundled
N-MNIST MLP and CNN with their bundled data, and the scaling benchmark's stand-ins
(:mod:`standins`, random weights, Bernoulli spikes). Stages, each on ``cpu`` and on ``cuda``:

- ``calibrate``: :func:`sbc_deploy.calibrate.calibrate` (SMP kernel) with ``device=``;
- ``compress``: :func:`sbc_deploy.compress.compress`, SBC at 50 % sparsity, ``config.device``;
- ``evaluate``: the pipeline's streaming evaluation (float simulator + per-chunk SynOps);
- ``deploy``: the whole pipeline (``DeployRequest(device=...)``) on the bundled models only.

Columns (one row per network, stage and device; documented in benchmarks/results/gpu.md):
``network, stage, device, samples, steps, wall_s, cpu_s, host_peak_mib, gpu_peak_mib,
speedup`` (cpu wall / cuda wall, on the cuda row), ``agreement`` (cuda rows: evaluate: fraction
of output values equal to the CPU run's; calibrate: largest relative difference of a Hessian
from the CPU's; compress: fraction of weights whose zero/non-zero pattern matches the CPU's).

Usage::

    python benchmarks/gpu.py --out benchmarks/results/gpu.md            # on a CUDA machine
    python benchmarks/gpu.py --quick --out /tmp/gpu.md                  # a 1-minute smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

COLUMNS = ("network", "stage", "device", "samples", "steps", "wall_s", "cpu_s", "host_peak_mib",
           "gpu_peak_mib", "speedup", "agreement")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(device: str, fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    t0 = time.perf_counter()
    result = fn()
    _sync(device)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return result, {
        "wall_s": time.perf_counter() - t0, "cpu_s": usage.ru_utime + usage.ru_stime - cpu0,
        "host_peak_mib": usage.ru_maxrss / 1024,   # process peak so far (Linux: KiB)
        "gpu_peak_mib": (torch.cuda.max_memory_allocated() / 2**20
                         if device.startswith("cuda") else float("nan")),
    }


def _workloads(quick: bool) -> list[tuple[str, Any, np.ndarray, np.ndarray]]:
    """(name, graph, calibration inputs [N, T, ...], evaluation inputs [N, T, ...])."""
    from standins import NETWORKS, input_spikes

    from sbc_deploy import bundled

    out = []
    for model in ("nmnist_mlp", "nmnist_cnn"):
        graph = bundled.load_bundled_model(model)
        calib = np.asarray(bundled.load_bundled_data("calib").x[:16 if quick else 200],
                           dtype=np.float32)
        evaluation = np.asarray(bundled.load_bundled_data("eval").x[:32 if quick else 1000],
                                dtype=np.float32)
        out.append((model, graph, calib, evaluation))
    names = ["spikformer_mlp"] if quick else ["dvs128_csnn", "spikformer_mlp", "sew_resnet18_224",
                                              "vgg11"]
    for name in names:
        graph = NETWORKS[name][1](np.random.default_rng(0))
        n, steps = (2, 4) if quick else (16, 16)
        out.append((name, graph, input_spikes(graph, n, steps),
                    input_spikes(graph, 2 * n, steps, seed=2)))
    return out


def _evaluate(graph: Any, x: np.ndarray, device: str) -> tuple[Any, torch.Tensor]:
    from sbc_deploy.pipeline import EVAL_MEMORY_BUDGET
    from sbc_deploy.report.synops_counter import SynOpsCounter
    from sbc_deploy.sim import simulate

    xb = torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1)))
    counter = SynOpsCounter(graph, steps=xb.shape[0], batch=xb.shape[1])
    result = simulate(graph, xb, on_synapse_input=counter, device=device,
                      memory_budget=EVAL_MEMORY_BUDGET)
    return counter.report(), result.outputs[graph.outputs[0]].cpu()


def run(quick: bool, accel: str = "cuda",
        on_rows: Callable[[list[dict[str, Any]]], None] = lambda rows: None
        ) -> list[dict[str, Any]]:
    """Every workload on ``cpu`` then on ``accel``; ``on_rows`` sees the rows after each
    network (so that a run stopped at its time limit keeps what it measured)."""
    from sbc_deploy.calibrate import calibrate
    from sbc_deploy.compress import compress
    from sbc_deploy.compress.config import config_for

    rows: list[dict[str, Any]] = []
    for name, graph, calib_x, eval_x in _workloads(quick):
        seen: dict[str, Any] = {}
        for device in ("cpu", accel):
            base = {"network": name, "device": device}
            calib, m = _timed(device, lambda: calibrate(graph, calib_x, batch_size=8,
                                                        kernel="smp", device=device))
            rows.append({**base, "stage": "calibrate", "samples": len(calib_x),
                         "steps": calib_x.shape[1], **m})
            config = config_for("sbc", sparsity=0.5, device=device)
            (compressed, _), m = _timed(device, lambda: compress(graph, calib, config))
            rows.append({**base, "stage": "compress", "samples": len(calib_x),
                         "steps": calib_x.shape[1], **m})
            (synops, outputs), m = _timed(device, lambda: _evaluate(graph, eval_x, device))
            rows.append({**base, "stage": "evaluate", "samples": len(eval_x),
                         "steps": eval_x.shape[1], **m})
            seen[device] = (calib, compressed, outputs, synops)
        cpu, gpu = seen["cpu"], seen[accel]
        hessian_diff = max(
            float(np.max(np.abs(np.asarray(_hessian(gpu[0], k)) - np.asarray(_hessian(cpu[0], k))))
                  / max(float(np.max(np.abs(np.asarray(_hessian(cpu[0], k))))), 1e-300))
            for k in cpu[0].layers)
        masks = [(np.asarray(gpu[1].nodes[n].weight) != 0) == (np.asarray(cpu[1].nodes[n].weight)
                                                                != 0)
                 for n in (layer.name for layer in graph.synapse_layers())]
        pattern = float(sum(m.sum() for m in masks) / sum(m.size for m in masks))
        equal = float((gpu[2] == cpu[2]).double().mean())
        for i, row in enumerate(rows[-6:]):
            if i < 3:   # the cpu rows come first
                continue
            cpu_row = rows[-6:][i - 3]
            row["speedup"] = cpu_row["wall_s"] / row["wall_s"]
            row["agreement"] = {"calibrate": hessian_diff, "compress": pattern,
                                "evaluate": equal}[row["stage"]]
        on_rows(rows)
        if name == "nmnist_cnn":   # the whole pipeline, before the long stand-ins
            rows.extend(_deploy_rows(accel, eval_limit=64 if quick else None))
            on_rows(rows)
    return rows


def _hessian(calibration: Any, layer: str) -> np.ndarray:
    """The layer's float64 Hessian sum (``HessianSum.xtx``) as a host array."""
    h = calibration.layers[layer].xtx
    return h.detach().cpu().numpy() if isinstance(h, torch.Tensor) else np.asarray(h)


def _deploy_rows(accel: str, eval_limit: int | None) -> list[dict[str, Any]]:
    import tempfile

    from sbc_deploy.pipeline import DeployRequest, deploy

    rows = []
    for model in ("nmnist_mlp", "nmnist_cnn"):
        walls = {}
        for device in ("cpu", accel):
            with tempfile.TemporaryDirectory() as tmp:
                request = DeployRequest(model=model, targets=("loihi2",), sparsity=0.5,
                                        out_dir=tmp, device=device, eval_limit=eval_limit)
                result, m = _timed(device, lambda: deploy(request))
            accuracy = result.report.targets[0].accuracy
            walls[device] = m["wall_s"]
            rows.append({"network": model, "stage": "deploy", "device": device,
                         "samples": eval_limit or 1000, "steps": None, **m,
                         "speedup": walls["cpu"] / m["wall_s"] if device != "cpu" else None,
                         "agreement": accuracy.compressed_float})
    return rows


def _markdown(rows: list[dict[str, Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["# Stages on the GPU next to the CPU", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
             f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}, "
             f"torch threads {torch.get_num_threads()}, torch "
             f"{torch.__version__}, Python {platform.python_version()}.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(cell(row.get(c)) for c in COLUMNS) + " |")
    lines += ["", "Command: `python benchmarks/gpu.py " + " ".join(sys.argv[1:]) + "`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "results" / "gpu.md"))
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--accel", default="cuda",
                        help="the device compared with the CPU (`cpu` checks this script's "
                             "plumbing on a machine without a GPU; nothing it gives is a GPU "
                             "measurement)")
    args = parser.parse_args()
    if args.accel.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs CUDA (torch.cuda.is_available() is False)")
    torch.manual_seed(0)
    from sbc_deploy.fileio import write_text_atomic

    def save(rows: list[dict[str, Any]]) -> None:
        write_text_atomic(Path(args.out), _markdown(rows))
        write_text_atomic(Path(args.out).with_suffix(".json"),
                          json.dumps(rows, indent=1) + "\n")

    rows = run(args.quick, args.accel, on_rows=save)
    save(rows)
    print(_markdown(rows))


if __name__ == "__main__":
    main()
