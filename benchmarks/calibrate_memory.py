"""Calibration's peak memory against T: whole sequences vs time chunks (issue 14).

Each (T, chunking) runs in a fresh Python process (one torch thread, address-space limit 6 GiB):
build the stand-in (benchmarks/standins.py), draw N Bernoulli input sequences of T steps, reset
the peak resident memory (VmHWM) and calibrate (SMP kernel, batch ``--batch``). ``start`` is the
resident memory before calibrating (interpreter, torch, graph, data); ``peak`` the peak during
it. ``whole``: ``calibrate(chunk_bytes=None)``, each batch simulated and summed over its whole
sequence (as before issue 14); ``chunked``: the default, time chunks whose widest node value
stays within ``sbc_deploy.calibrate.CHUNK_BYTES`` (neuron and filter states carried).

Usage (what produced benchmarks/results/calibrate_memory.md)::

    python benchmarks/calibrate_memory.py --network dvs128_csnn --steps 4 8 16 32 64 128 \\
        --out benchmarks/results/calibrate_memory.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from bench_tools import memory_field, publish

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MIB = 1 << 20


def worker(network: str, steps: int, samples: int, batch: int, chunked: bool) -> dict:
    import gc

    import numpy as np
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(HERE))
    from standins import NETWORKS, input_spikes

    from sbc_deploy.calibrate import CHUNK_BYTES, calibrate

    graph = NETWORKS[network][1](np.random.default_rng(0))
    x = input_spikes(graph, samples, steps)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = memory_field("VmRSS")
    calib = calibrate(graph, x, batch_size=batch, threads=1,
                      chunk_bytes=CHUNK_BYTES if chunked else None)
    return {"network": network, "steps": steps, "samples": samples, "batch": batch,
            "mode": "chunked" if chunked else "whole", "start": start,
            "peak": memory_field("VmHWM"), "time_chunk": calib.metadata["time_chunk"],
            "seconds": calib.metadata["seconds"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="dvs128_csnn")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--modes", nargs="+", default=["whole", "chunked"])
    parser.add_argument("--limit-gib", type=float, default=6.0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "calibrate_memory.md")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        network, steps, samples, batch, mode = args.worker
        print(json.dumps(worker(network, int(steps), int(samples), int(batch),
                                mode == "chunked")))
        return
    limit = int(args.limit_gib * (1 << 30))
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    rows = []
    for steps in args.steps:
        for mode in args.modes:
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", args.network, str(steps),
                 str(args.samples), str(args.batch), mode],
                capture_output=True, text=True, env=env,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
            if proc.returncode:
                rows.append({"steps": steps, "mode": mode, "error": proc.stderr.strip()[-200:]})
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr, flush=True)
    lines = [
        "# Calibration peak memory against T: whole sequences vs time chunks",
        "",
        f"`{args.network}` stand-in (benchmarks/standins.py), N = {args.samples} sequences, "
        f"calibration batch {args.batch}, one torch thread, each row a fresh process "
        f"(address-space limit {args.limit_gib} GiB). `start`: resident memory before "
        "calibrating (interpreter, torch, graph, data); `peak`: the peak during calibration. "
        "`whole`: `calibrate(chunk_bytes=None)`, every batch over its whole sequence (as before "
        "issue 14); `chunked`: the default time chunks (widest node value <= 64 MiB, neuron and "
        "SMP filter states carried across chunks).",
        "",
        "| T | mode | time chunk | start MiB | peak MiB | peak - start MiB | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['steps']} | {r['mode']} | | | | failed: {r['error']} | |")
            continue
        lines.append(f"| {r['steps']} | {r['mode']} | {r['time_chunk']} | {r['start'] / MIB:,.0f}"
                     f" | {r['peak'] / MIB:,.0f} | {(r['peak'] - r['start']) / MIB:,.0f} | "
                     f"{r['seconds']:.1f} |")
    command = "python benchmarks/calibrate_memory.py " + " ".join(argv or sys.argv[1:])
    lines += ["", f"Command: `{command}`", ""]
    sys.path.insert(0, str(ROOT))
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
