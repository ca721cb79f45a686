"""``--distributed`` under torchrun against one process: wall time per stage, on this machine.

Each case runs the CLI once as one process (``OMP_NUM_THREADS=1``, as torchrun gives each of its
processes) and once under ``torchrun --nproc-per-node P ... --distributed``, alternating, for
``--repeats`` rounds, and checks that both wrote the same weights (model.nir bytes). Per run it
records the command's wall time, the stages' wall times from report.json (``calibrate``,
``compress``, which holds the global allocation's loss curves), the CPU seconds of the run's
processes and the CPU seconds the rest of the machine used meanwhile (from /proc/stat: all busy
time minus the run's own), because this machine's cores are shared with other work.

Cases (bundled networks, bundled calibration data, the first 24 evaluation recordings):

- ``mlp-global``: N-MNIST MLP, ``--allocation global --sparsity 0.8``: the loss curves of the
  2312-input layer dominate (one process: ~40 s of compress against ~1 s of calibration);
- ``cnn-lamp``: N-MNIST CNN, default allocation: calibration (200 recordings) dominates.

Usage (repository root, ``PYTHONPATH=.``)::

    python benchmarks/distributed.py --out benchmarks/results/distributed.md
    python benchmarks/distributed.py --cases cnn-lamp --repeats 1 --out /tmp/d.md   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CASES: dict[str, list[str]] = {
    "mlp-global": ["nmnist_mlp", "--allocation", "global", "--sparsity", "0.8"],
    "cnn-lamp": ["nmnist_cnn"],
}
STAGES = ("calibrate", "compress")


def _busy_jiffies() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (/proc/stat)."""
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / hz, sum(fields) / hz


def _data(folder: Path) -> tuple[Path, Path]:
    from sbc_deploy import bundled

    calib, evaluation = bundled.load_bundled_data("calib"), bundled.load_bundled_data("eval")
    paths = []
    for name, data, n in (("calib", calib, len(calib.x)), ("eval", evaluation, 24)):
        path = folder / f"{name}.npz"
        np.savez(path, x=np.asarray(data.x[:n]), y=np.asarray(data.y[:n]), dt=data.dt)
        paths.append(path)
    return paths[0], paths[1]


def _run(args: list[str], processes: int, out: Path, port: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    prefix = ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
               "--master-port", str(port)] if processes else [sys.executable])
    cmd = prefix + ["-m", "sbc_deploy", *args, "-o", str(out), "--force", "--quiet"]
    cmd += ["--distributed"] if processes else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, total0 = _busy_jiffies()
    tick = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tick
    busy1, total1 = _busy_jiffies()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    own = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    timings = json.loads((out / "report.json").read_text())["timings_s"]
    cores = os.cpu_count() or 1
    return {"processes": processes or 1, "wall_s": wall, "cpu_s": own,
            "others_cpu_s": max(0.0, (busy1 - busy0) - own),
            "others_cores": max(0.0, (busy1 - busy0) - own) / wall,
            "machine_busy": (busy1 - busy0) / max(total1 - total0, 1e-9),
            "cores": cores, **{s: timings.get(s) for s in STAGES},
            "nir": (out / "model.nir").read_bytes()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated: " +
                        ", ".join(CASES))
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="Markdown results file")
    args = parser.parse_args()
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        calib, evaluation = _data(folder)
        for case in args.cases.split(","):
            flags = [*CASES[case], "--target", "loihi2", "--calib", str(calib), "--eval",
                     str(evaluation), "--export", "nir"]
            for repeat in range(args.repeats):
                for processes in (0, args.processes):  # alternate: equal shares of the noise
                    run = _run(flags, processes, folder / f"{case}-{processes}",
                               29400 + os.getpid() % 500)
                    rows.append({"case": case, "repeat": repeat, **run})
                    print(f"{case} repeat {repeat} processes {run['processes']}: wall "
                          f"{run['wall_s']:.1f} s, compress {run['compress']:.1f} s, others "
                          f"{run['others_cores']:.2f} cores", file=sys.stderr)
    for row in rows:  # the same weights as the one-process run of the same case
        single = next(r for r in rows if r["case"] == row["case"] and r["processes"] == 1)
        row["same_weights"] = row["nir"] == single["nir"]
    for row in rows:
        del row["nir"]
    _write(args, rows, load_before, os.getloadavg())


def _write(args: argparse.Namespace, rows: list[dict], before: tuple, after: tuple) -> None:
    lines = [
        "# `--distributed` (torchrun, gloo) against one process",
        "",
        f"Command (repository root, `PYTHONPATH=.`): `python benchmarks/distributed.py "
        f"--cases {args.cases} --processes {args.processes} --repeats {args.repeats} "
        f"--out {args.out}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, shared with other work; load "
        f"average before {before[0]:.2f}, after {after[0]:.2f}. Run on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Columns: `P` processes (1: plain `python -m sbc_deploy`, one torch thread); `wall_s` of "
        "the whole command (start-up, evaluation and writing included); `calibrate_s`, "
        "`compress_s` from report.json (compress holds the global allocation's loss curves); "
        "`cpu_s` CPU seconds of the run's processes; `others_cores` cores the rest of the "
        "machine kept busy during the run (from /proc/stat); `same` the model.nir bytes equal "
        "to the one-process run's.",
        "",
        "| case | repeat | P | wall_s | calibrate_s | compress_s | cpu_s | others_cores | same |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['case']} | {r['repeat']} | {r['processes']} | {r['wall_s']:.1f} | "
                     f"{r['calibrate']:.2f} | {r['compress']:.2f} | {r['cpu_s']:.1f} | "
                     f"{r['others_cores']:.2f} | {'yes' if r['same_weights'] else 'NO'} |")
    lines += ["", "Speedup (median over repeats, one process / P processes):", ""]
    for case in dict.fromkeys(r["case"] for r in rows):
        def median(p: int, key: str, case: str = case) -> float:
            return float(np.median([r[key] for r in rows if r["case"] == case
                                    and r["processes"] == p]))
        parts = [f"{key} {median(1, key) / median(args.processes, key):.2f}x"
                 for key in ("wall_s", *STAGES)]
        lines.append(f"- {case}: " + ", ".join(parts))
    lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    (args.out.with_suffix(".json")).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
