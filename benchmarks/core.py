"""Throughput of the integer core against Lava's own CPU simulation of the same netx network.

Both run lava-dl's fixture networks from ``../shared/fixtures/netx``:

- ``oxford``: dense 200-256-200 CUBA, 2,000 steps per sample; the core gets ``--batch``
  samples (the oxford input, each circularly shifted in time by a random amount), Lava the
  unshifted one;
- ``tinynet``: conv 3x16x16-24x6x6-36, 17 steps per sample, driven through the input bias
  (lava-dl's test protocol); Lava streams ``--lava-samples`` samples back to back with its
  per-layer resets, the core runs ``--batch`` samples side by side (17 + 3 steps each).

Lava (lava-nc 0.10.0, lava-dl 0.6.0, ``Loihi2SimCfg(select_tag="fixed_pt")``) runs in its own
environment (``scripts/make_lava_env.sh``) through ``tests/lava/run_netx.py``. Its start-up
(process creation, compilation) is excluded: Lava is timed at two lengths and its cost per
step is the difference over the difference in steps; its end-to-end time is shown too. The
core's first sample is checked spike for spike against Lava's output on the same input.

Usage (the results file records the exact command)::

    .venv/bin/python benchmarks/core.py --threads 2 --batch 64 --out benchmarks/results/core.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_tools import best_time, publish

from sbc_deploy.frontends.from_netx import from_netx
from sbc_deploy.ir import Graph
from sbc_deploy.sim.fixed_point import to_fixed_point
from sbc_deploy.sim.int_core import simulate_integer

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "netx"
LAVA_PY = ROOT / ".lava-venv" / "bin" / "python"
RUN_NETX = ROOT / "tests" / "lava" / "run_netx.py"
UNIT = 1 / 64


def run_lava(net: Path, spikes: np.ndarray, steps: int, **extra: np.ndarray
             ) -> tuple[np.ndarray, float]:
    """Lava's output spikes ``[steps, ...]`` and the wall time of the whole subprocess."""
    with tempfile.TemporaryDirectory(prefix="sbc-bench-") as folder:
        inputs, outputs = Path(folder) / "in.npz", Path(folder) / "out.npz"
        np.savez(inputs, spikes=spikes, steps=np.asarray(steps), **extra)
        start = time.perf_counter()
        subprocess.run([str(LAVA_PY), str(RUN_NETX), str(net), str(inputs), str(outputs)],
                       check=True, capture_output=True, timeout=3600,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
        wall = time.perf_counter() - start
        with np.load(outputs) as stored:
            return stored["output"], wall


def oxford(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    path = FIXTURES / "oxford" / "network.net"
    steps = 2000
    events = np.load(FIXTURES / "oxford" / "input.npy")
    t = np.round(events[:, 2]).astype(int)
    keep = t < steps
    x = np.zeros((steps, 200), dtype=np.int8)
    x[t[keep], events[keep, 0].astype(int)] = 1
    shifts = np.concatenate([[0], rng.integers(0, steps, size=args.batch - 1)])
    batch = np.stack([np.roll(x, int(s), axis=0) for s in shifts], axis=1)
    net = to_fixed_point(from_netx(path))
    core_s = best_time(lambda: simulate_integer(net, batch, threads=args.threads),
                       args.repeats)[0]
    ours = simulate_integer(net, batch[:, :1]).outputs["output"].numpy()[:, 0]
    short = args.lava_short_steps
    lava_out, lava_long = run_lava(path, x, steps)
    _, lava_short = run_lava(path, x[:short], short)
    per_step = (lava_long - lava_short) / (steps - short)
    return {"network": "oxford (dense 200-256-200)", "steps": steps,
            "lava_end_to_end_s": lava_long, "lava_s_per_sample": per_step * steps,
            "core_batch": args.batch, "core_s": core_s,
            "identical": bool(np.array_equal(ours, lava_out)),
            "spikes": int(lava_out.sum())}


def _tinynet_graph() -> tuple[Graph, np.ndarray]:
    graph = from_netx(FIXTURES / "tinynet" / "tiny.net")
    bias = np.load(FIXTURES / "tinynet" / "input_bias.npy").transpose(2, 1, 0)
    graph = graph.replace_nodes({"layer0.neuron": graph.nodes["layer0.neuron"].replace(
        bias=bias * UNIT)})
    return graph, bias


def tinynet(args: argparse.Namespace) -> dict[str, Any]:
    path = FIXTURES / "tinynet" / "tiny.net"
    graph, bias = _tinynet_graph()
    net = to_fixed_point(graph)
    per_sample, latency = 17, 3
    x = np.zeros((per_sample + latency, args.batch, 3, 16, 16), dtype=np.int8)
    core_s = best_time(lambda: simulate_integer(
        net, x, reset_interval=per_sample, threads=args.threads), args.repeats)[0]
    ours = simulate_integer(net, x[:, :1], reset_interval=per_sample).outputs["output"]
    n = args.lava_samples
    extra = {"input_bias": bias.astype(np.int32), "reset_interval": np.asarray(per_sample)}
    zeros = np.zeros((per_sample * n + latency, 3, 16, 16), dtype=np.int8)
    lava_out, lava_long = run_lava(path, zeros, per_sample * n + latency, **extra)
    _, lava_short = run_lava(path, zeros[:per_sample + latency], per_sample + latency, **extra)
    per_step = (lava_long - lava_short) / (per_sample * (n - 1))
    return {"network": "tinynet (conv 3x16x16-24x6x6-36x1x1)", "steps": per_sample,
            "lava_end_to_end_s": lava_long, "lava_s_per_sample": per_step * per_sample,
            "core_batch": args.batch, "core_s": core_s,
            "identical": bool(np.array_equal(ours.numpy()[:, 0],
                                             lava_out[:per_sample + latency])),
            "spikes": int(lava_out[:per_sample + latency].sum())}


def table(rows: list[dict[str, Any]]) -> str:
    lines = [("| network | steps/sample | Lava s/sample | Lava samples/s | core batch | core s | "
              "core samples/s | core / Lava | first sample = Lava |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lava_s, lava_e2e = float(r["lava_s_per_sample"]), float(r["lava_end_to_end_s"])
        core_s, batch = float(r["core_s"]), int(r["core_batch"])
        lava_rate, core_rate = 1.0 / lava_s, batch / core_s
        lines.append(
            f"| {r['network']} | {r['steps']} | {lava_s:.3g} (end to end {lava_e2e:.3g}) | "
            f"{lava_rate:.3g} | {batch} | {core_s:.3g} | {core_rate:.4g} | "
            f"**{core_rate / lava_rate:.0f}x** | {'yes' if r['identical'] else 'NO'} "
            f"({r['spikes']} spikes) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the core")
    parser.add_argument("--batch", type=int, default=64, help="samples per core run")
    parser.add_argument("--repeats", type=int, default=3, help="core runs (best is kept)")
    parser.add_argument("--lava-samples", type=int, default=20,
                        help="tinynet samples Lava streams in its long run")
    parser.add_argument("--lava-short-steps", type=int, default=200,
                        help="steps of Lava's short oxford run (start-up estimate)")
    parser.add_argument("--out", type=Path, default=None, help="Markdown file to write")
    args = parser.parse_args(argv)
    if not LAVA_PY.exists():
        print(f"Lava environment missing ({LAVA_PY}); run scripts/make_lava_env.sh first",
              file=sys.stderr)
        return 2
    if not FIXTURES.exists():
        print(f"fixtures missing ({FIXTURES})", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = [oxford(args, rng), tinynet(args)]
    try:
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        load = "unknown"
    command = shlex.join([".venv/bin/python", "benchmarks/core.py",
                          *(sys.argv[1:] if argv is None else argv)])
    text = "\n".join([
        "# Integer core vs Lava's CPU simulation (samples per second)",
        "",
        f"Command: `{command}`",
        "",
        (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
         f"(shared; load average {load} at the end of the run), Python "
         f"{platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}; "
         f"core with {args.threads} torch thread(s), best of {args.repeats} runs. Lava: "
         "lava-nc 0.10.0 / lava-dl 0.6.0, Loihi2SimCfg(select_tag='fixed_pt'), via "
         "tests/lava/run_netx.py in .lava-venv; its seconds per sample exclude start-up (the "
         "difference of a long and a short run), its end-to-end time of the long run is in "
         "brackets."),
        "",
        table(rows),
        "",
        ("Goal: core / Lava >= 100x. Every row's first sample is compared with Lava's run of "
         "the same input spike for spike."),
        "",
    ])
    publish(text, args.out)
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
