"""Throughput of the float simulator (samples per second), written as a Markdown table.

Networks (random weights, Bernoulli input spikes, fixed seed):

- ``mlp``: 2312-256-10 LIF MLP (N-MNIST-sized input, 2 x 34 x 34), T = 100, B = 64;
- ``conv``: the shape of snntorch's scnn_mnist fixture (Conv 2->16 s2, IF; Conv 16->16, IF;
  SumPool; Conv 16->8, IF; SumPool; Flatten; 128-256 IF; 256-10 IF) on 2 x 34 x 34, T = 100,
  B = 64;
- ``recurrent``: 12-38(recurrent CubaLIF)-7 CubaLIF, the braille fixture's shape, T = 256,
  B = 64 (the recurrent layer is stepped through time).

Each network also runs streamed (``time_chunk=10, batch_chunk=16``: 40 chunks per batch of
64 x 100 steps, state carried across them), which bounds memory by the chunk: the price of
streaming is the per-chunk overhead measured here.

Usage::

    .venv/bin/python benchmarks/float_sim.py --threads 1 2 --repeats 5 \\
        --out benchmarks/results/float_sim.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_tools import publish

from sbc_deploy.ir import (
    IF,
    LIF,
    Affine,
    Conv2d,
    CubaLIF,
    Flatten,
    Graph,
    Input,
    Output,
    SumPool2d,
)
from sbc_deploy.sim import simulate
from sbc_deploy.sim.float_sim import neuron_initial_state, neuron_parameters, neuron_step


def mlp(rng: np.random.Generator) -> Graph:
    return Graph.chain([
        ("in", Input((2312,))),
        ("fc1", Affine(rng.normal(0, 0.05, (256, 2312)))),
        ("lif1", LIF(beta=np.full(256, 0.9), v_threshold=np.ones(256))),
        ("fc2", Affine(rng.normal(0, 0.2, (10, 256)))),
        ("lif2", LIF(beta=np.full(10, 0.9), v_threshold=np.ones(10))),
        ("out", Output((10,))),
    ], dt=1e-3)


def conv(rng: np.random.Generator) -> Graph:
    def if_(*shape: int) -> IF:
        return IF(v_threshold=np.ones(shape))

    return Graph.chain([
        ("in", Input((2, 34, 34))),
        ("c1", Conv2d(rng.normal(0, 0.3, (16, 2, 5, 5)), input_shape=(2, 34, 34), stride=2,
                      padding=1)),
        ("n1", if_(16, 16, 16)),
        ("c2", Conv2d(rng.normal(0, 0.2, (16, 16, 3, 3)), input_shape=(16, 16, 16), padding=1)),
        ("n2", if_(16, 16, 16)),
        ("p2", SumPool2d(kernel_size=2, input_shape=(16, 16, 16))),
        ("c3", Conv2d(rng.normal(0, 0.2, (8, 16, 3, 3)), input_shape=(16, 8, 8), padding=1)),
        ("n3", if_(8, 8, 8)),
        ("p3", SumPool2d(kernel_size=2, input_shape=(8, 8, 8))),
        ("flat", Flatten(input_shape=(8, 4, 4))),
        ("fc1", Affine(rng.normal(0, 0.2, (256, 128)))),
        ("n4", if_(256)),
        ("fc2", Affine(rng.normal(0, 0.2, (10, 256)))),
        ("n5", if_(10)),
        ("out", Output((10,))),
    ], dt=1e-3)


def recurrent(rng: np.random.Generator) -> Graph:
    nodes = {
        "in": Input((12,)),
        "fc1": Affine(rng.normal(0.2, 0.5, (38, 12))),
        "lif1": CubaLIF(alpha=np.full(38, 0.55), beta=np.full(38, 0.9), v_threshold=np.ones(38),
                        reset="subtract"),
        "rec": Affine(rng.normal(0, 0.3, (38, 38))),
        "fc2": Affine(rng.normal(0, 0.3, (7, 38))),
        "lif2": CubaLIF(alpha=np.full(7, 0.5), beta=np.full(7, 0.55), v_threshold=np.ones(7),
                        reset="subtract"),
        "out": Output((7,)),
    }
    edges = [("in", "fc1"), ("fc1", "lif1"), ("lif1", "rec"), ("rec", "lif1"), ("lif1", "fc2"),
             ("fc2", "lif2"), ("lif2", "out")]
    return Graph(nodes, edges, dt=1e-4)


NETWORKS = {
    "mlp": (mlp, "2312-256-10 LIF MLP", (2312,), 100, 0.1),
    "conv": (conv, "scnn-shaped conv net (3 conv, 2 sum-pool, 2 dense; IF)", (2, 34, 34), 100,
             0.05),
    "recurrent": (recurrent, "12-38r-7 recurrent CubaLIF (braille shape)", (12,), 256, 0.1),
}


def stepwise_baseline(graph: Graph, x: torch.Tensor, threads: int, device: str) -> None:
    """The same chain stepped through time layer after layer (what ``simulate`` avoids for
    graphs without cycles): one synapse op per step on ``[B, n]``."""
    torch.set_num_threads(threads)
    layers = []
    for name in graph.topological_order[1:-1]:
        node = graph.nodes[name]
        if isinstance(node, Affine):
            layers.append(("affine", torch.tensor(node.weight, dtype=torch.float32,
                                                  device=device)))
        else:
            layers.append(("neuron", neuron_parameters(node, torch.float32, device)))
    states = [neuron_initial_state(p, x.shape[1]) if kind == "neuron" else None
              for kind, p in layers]
    with torch.no_grad():
        for x_t in x.to(device):
            for k, (kind, p) in enumerate(layers):
                if kind == "affine":
                    x_t = x_t @ p.T
                else:
                    x_t, states[k] = neuron_step(x_t, states[k], p)


def measure(run, repeats: int, device: str) -> tuple[float, float, float]:
    """Median and minimum wall seconds and median CPU seconds (all threads of this process)
    of ``run()``, after one warm-up call. CPU time is the steadier number on a shared machine."""
    run()
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(times), min(times), statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="Markdown file to write")
    args = parser.parse_args(argv)

    rows = []
    load_before = os.getloadavg()[0]
    threads_before = torch.get_num_threads()
    for key in args.networks:
        build, label, shape, steps, rate = NETWORKS[key]
        rng = np.random.default_rng(0)
        graph = build(rng)
        x = torch.from_numpy(rng.random((steps, args.batch, *shape)) < rate).float()
        runs = [(label, lambda t: simulate(graph, x, threads=t, device=args.device)),
                (f"{label}, streamed: chunks of 10 steps x 16 samples, state carried",
                 lambda t: simulate(graph, x, threads=t, device=args.device, time_chunk=10,
                                    batch_chunk=16))]
        if key == "mlp":
            runs.append((f"{label}, stepped through time (baseline, not simulate)",
                         lambda t: stepwise_baseline(graph, x, t, args.device)))
        for run_label, run in runs:
            for threads in args.threads:
                median, best, cpu = measure(lambda: run(threads), args.repeats, args.device)
                rows.append(f"| {run_label} | {steps} | {args.batch} | {threads} "
                            f"| {median * 1e3:.0f} | {best * 1e3:.0f} | {cpu * 1e3:.0f} "
                            f"| {args.batch / median:,.0f} | {args.batch / best:,.0f} |")
                print(rows[-1], file=sys.stderr)
                torch.set_num_threads(threads_before)
    load_after = os.getloadavg()[0]

    command = " ".join(["python", "benchmarks/float_sim.py", *(argv or sys.argv[1:])])
    text = "\n".join([
        "# Float simulator throughput",
        "",
        "`sbc_deploy.sim.simulate`, float32, one call per batch (median and best of "
        f"{args.repeats} calls after a warm-up; samples/s = B / wall time; CPU ms = process "
        "CPU time summed over threads).",
        "",
        "| network | T | B | threads | median ms/batch | best ms/batch | median CPU ms "
        "| samples/s (median) | samples/s (best) |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Machine: {platform.processor() or platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores visible, shared with other jobs while measured "
        f"(1-minute load average {load_before:.1f} before, {load_after:.1f} after: with more "
        "runnable threads than cores, 2 threads can be slower than 1), "
        f"device {args.device}, torch {torch.__version__}, Python {platform.python_version()}.",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
    ])
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
