"""Speed of the integer core: the numpy core against the torch core on the CPU (and on CUDA).

The bundled N-MNIST CNN (or MLP) is deployed for Loihi 2 (50 % sparsity, netx export, 32
calibration samples) into a temporary folder; its netx file, read back, is what the pipeline's
integer evaluation runs. Each backend then simulates the same evaluation samples (all 31 steps,
``--batch`` samples per call, ``--threads`` torch threads); the best of ``--repeat`` runs is
reported, and every backend's output spikes are checked equal to the numpy core's.

Columns: backend (numpy | torch), device, samples, steps, seconds (best), samples/s, ratio to
numpy (seconds / numpy's seconds), equal (outputs identical to numpy's).

Usage::

    python benchmarks/int_core_device.py --model nmnist_cnn --samples 256 --threads 1 \\
        --out benchmarks/results/int_core_device.md
    python benchmarks/int_core_device.py --devices cpu,cuda ...   # on a GPU machine
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sbc_deploy import bundled
from sbc_deploy.data import Dataset
from sbc_deploy.frontends.from_netx import from_netx
from sbc_deploy.pipeline import DeployRequest, deploy
from sbc_deploy.sim.fixed_point import to_fixed_point
from sbc_deploy.sim.int_core import simulate_integer
from sbc_deploy.sim.int_core_torch import simulate_integer_torch


def exported_net(model: str, folder: Path):
    calib = bundled.load_bundled_data("calib")
    deploy(DeployRequest(model=model, targets=("loihi2",), sparsity=0.5,
                         calib=Dataset(calib.x[:32], calib.y[:32], calib.dt, "calib[:32]"),
                         eval=Dataset(calib.x[:8], calib.y[:8], calib.dt, "calib[:8]"),
                         out_dir=str(folder), export=("netx",)))
    (net_file,) = folder.rglob("*.net")
    return to_fixed_point(from_netx(net_file, dt=bundled.bundled_manifest()[model]["dt"]))


def run(backend: str, device: str, net, x: np.ndarray, batch: int) -> torch.Tensor:
    outs = []
    for b0 in range(0, x.shape[1], batch):
        xb = x[:, b0:b0 + batch]
        if backend == "numpy":
            res = simulate_integer(net, xb)
        else:
            res = simulate_integer_torch(net, xb, device=device)
        outs.append(res.outputs[net.output])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return torch.cat(outs, dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nmnist_cnn", choices=bundled.MODELS)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--devices", default="cpu", help="comma-separated torch devices")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        net = exported_net(args.model, Path(tmp))
    data = bundled.load_bundled_data("eval")
    x = np.ascontiguousarray(np.swapaxes(data.x[:args.samples], 0, 1)).astype(np.int8)
    steps, samples = x.shape[:2]
    cases = [("numpy", "cpu")] + [("torch", d) for d in args.devices.split(",")]
    rows, reference, numpy_s = [], None, None
    for backend, device in cases:
        run(backend, device, net, x[:, :min(8, samples)], args.batch)   # warm-up
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = run(backend, device, net, x, args.batch)
            best = min(best, time.perf_counter() - t0)
        reference = out if reference is None else reference
        numpy_s = best if numpy_s is None else numpy_s
        rows.append((backend, device, samples, steps, best, samples / best, best / numpy_s,
                     bool(torch.equal(out, reference))))
    layers = ", ".join(f"{layer.kind} {layer.shape}" for layer in net.layers)
    lines = [
        f"# Integer core: numpy vs torch ({args.model})",
        "",
        f"Network (netx export of the bundled {args.model}, 50 % sparsity): {layers}.",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} torch thread(s); batch {args.batch}; best of {args.repeat}.",
        "",
        "| backend | device | samples | steps | seconds | samples/s | / numpy | equal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {b} | {d} | {n} | {t} | {s:.3f} | {r:.1f} | {q:.2f} | {e} |"
              for b, d, n, t, s, r, q, e in rows]
    lines += ["", "Command: `python benchmarks/int_core_device.py --model "
              f"{args.model} --samples {args.samples} --batch {args.batch} --threads "
              f"{args.threads} --repeat {args.repeat} --devices {args.devices}`", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
