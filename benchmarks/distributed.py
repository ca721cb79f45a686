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

A second table runs the calibrate and compress stages alone through the API (``--worker``:
this script under torchrun, or as one process) on ``mlp-global``'s network and settings and
records, per process, the wall and the CPU seconds of each stage (``time.process_time``) and
of the allocation (the loss curves). The largest per-process CPU time is the critical path,
which other work on the machine barely changes: one process's CPU time over it is the speedup
that idle cores would give.

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


def _worker(out: Path) -> None:
    """calibrate + compress of the N-MNIST MLP (SBC, global allocation, 80 %, 8 bits), timed."""
    import contextlib

    from sbc_deploy import bundled, distributed
    from sbc_deploy.calibrate import calibrate
    from sbc_deploy.compress import SBCConfig, compress

    graph = bundled.load_bundled_model("nmnist_mlp")
    x = np.asarray(bundled.load_bundled_data("calib").x)
    config = SBCConfig(sparsity=0.8, allocation="global", bits=8)
    torchrun = "RANK" in os.environ
    with distributed.session() if torchrun else contextlib.nullcontext():
        group = distributed.active()
        rank = 0 if group is None else group.rank
        times: dict[str, float] = {}
        wall, cpu = time.perf_counter(), time.process_time()
        calibration = calibrate(graph, x, config=config, batch_size=32)
        times["calibrate_wall_s"] = time.perf_counter() - wall
        times["calibrate_cpu_s"] = time.process_time() - cpu
        wall, cpu = time.perf_counter(), time.process_time()
        _, stats = compress(graph, calibration, config)
        times["compress_wall_s"] = time.perf_counter() - wall
        times["compress_cpu_s"] = time.process_time() - cpu
        times["allocation_wall_s"] = stats.allocation_seconds
        times["losses"] = [layer.loss for layer in stats.layers]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{rank}.json").write_text(json.dumps(times))


def _api(processes: int, folder: Path, port: int) -> list[dict]:
    """The worker alone and under torchrun: one row per process and run."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rows = []
    for p in (0, processes):
        out = folder / f"api-{p}"
        prefix = ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(p),
                   "--master-port", str(port)] if p else [sys.executable])
        busy0, _ = _busy_jiffies()
        tick = time.perf_counter()
        done = subprocess.run(prefix + [__file__, "--worker", str(out)], env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - tick
        busy1, _ = _busy_jiffies()
        if done.returncode:
            raise RuntimeError(f"worker failed:\n{done.stderr[-3000:]}")
        for path in sorted(out.glob("rank*.json")):
            row = json.loads(path.read_text())
            row.update(processes=p or 1, rank=int(path.stem[4:]),
                       machine_busy_cores=(busy1 - busy0) / wall)
            rows.append(row)
    single = rows[0]["losses"]
    for row in rows:
        row["same_losses"] = row.pop("losses") == single
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-api", action="store_true", help="skip the API table")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated: " +
                        ", ".join(CASES))
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, help="Markdown results file (required)")
    args = parser.parse_args()
    if args.worker is not None:
        _worker(args.worker)
        return
    if args.out is None:
        parser.error("--out is required")
    rows, api = [], []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        calib, evaluation = _data(folder)
        for case in filter(None, args.cases.split(",")):
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
        if not args.no_api:
            api = _api(args.processes, folder, 29400 + os.getpid() % 500 + 1)
    for row in rows:  # the same weights as the one-process run of the same case
        single = next(r for r in rows if r["case"] == row["case"] and r["processes"] == 1)
        row["same_weights"] = row["nir"] == single["nir"]
    for row in rows:
        del row["nir"]
    _write(args, rows, api, load_before, os.getloadavg())


def _write(args: argparse.Namespace, rows: list[dict], api: list[dict], before: tuple,
           after: tuple) -> None:
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
    if api:
        lines += [
            "API, calibrate + compress only (N-MNIST MLP, 200 calibration recordings, SBC, "
            "global allocation, 80 %, 8 bits), per process; `busy_cores`: the whole machine "
            "during the run, this run included:",
            "",
            "| P | rank | calibrate wall / cpu s | compress wall / cpu s | allocation wall s | "
            "busy_cores | same losses |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in api:
            lines.append(f"| {r['processes']} | {r['rank']} | {r['calibrate_wall_s']:.1f} / "
                         f"{r['calibrate_cpu_s']:.1f} | {r['compress_wall_s']:.1f} / "
                         f"{r['compress_cpu_s']:.1f} | {r['allocation_wall_s']:.1f} | "
                         f"{r['machine_busy_cores']:.2f} | "
                         f"{'yes' if r['same_losses'] else 'NO'} |")
        one = next(r for r in api if r["processes"] == 1)
        many = [r for r in api if r["processes"] > 1]
        ratios = [f"{stage} {one[f'{stage}_cpu_s'] / max(r[f'{stage}_cpu_s'] for r in many):.2f}x"
                  for stage in STAGES]
        lines += ["", "Critical path (one process's CPU s / the largest per-process CPU s): " +
                  ", ".join(ratios), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    (args.out.with_suffix(".json")).write_text(json.dumps({"cli": rows, "api": api}, indent=1)
                                               + "\n")


if __name__ == "__main__":
    main()
