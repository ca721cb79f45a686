"""How fast is a bad flag refused? Each flag error on the bundled default network, in-process.

    python benchmarks/validate.py --out benchmarks/results/validate.md

Times ``sbc_deploy.cli.main`` from the call to the returned exit code (imports are done once
before, as in a warm shell), median of 3, and checks that exit code is 2 and no folder appeared.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = [
    ("--export pdf", ["--export", "pdf"]),
    ("--bits 16 (loihi2: 8-bit weights)", ["--bits", "16"]),
    ("--target speck --export netx", ["--target", "speck", "--export", "netx"]),
    ("--nm 2:1000 (layer with 256 inputs)", ["--nm", "2:1000"]),
    ("--calib with the wrong dt", ["--calib", "WRONG_DT"]),
    ("all of the above at once", ["--export", "pdf", "--bits", "16", "--nm", "2:1000",
                                  "--calib", "WRONG_DT"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import dataclasses

    from sbc_deploy.bundled import load_bundled_data
    from sbc_deploy.cli import main as cli
    from sbc_deploy.data.npz import write_npz

    folder = Path(tempfile.mkdtemp(prefix="sbc-validate-"))
    wrong_dt = write_npz(folder / "wrong_dt.npz", dataclasses.replace(
        load_bundled_data("calib").subset(slice(0, 4)), dt=0.002))
    rows = []
    for label, flags in CASES:
        flags = [str(wrong_dt) if f == "WRONG_DT" else f for f in flags]
        times, codes = [], set()
        for _ in range(args.repeat):
            out = folder / "out"
            argv = ["--target", "loihi2", "--quiet", "-o", str(out), *flags]
            start = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):
                codes.add(cli(argv))
            times.append(time.perf_counter() - start)
            assert not out.exists()
        rows.append((label, statistics.median(times), max(times), sorted(codes)))
    process = []
    for _ in range(args.repeat):  # a fresh process, imports included, as a user types it
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "sbc_deploy", "--target", "loihi2",
                              "--export", "pdf", "-o", str(folder / "out")], capture_output=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
        process.append(time.perf_counter() - start)
        assert run.returncode == 2 and not (folder / "out").exists()
    shutil.rmtree(folder)
    lines = [
        "# Flag errors are found before any work (bundled default network)", "",
        "Command: `python benchmarks/validate.py --out benchmarks/results/validate.md`", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared; load average "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}), Python {platform.python_version()}, "
        f"torch {torch.__version__}, 1 thread. In-process `main()` (imports already done), "
        f"median and worst of {args.repeat}; every run exits 2 and creates no folder.", "",
        "| flags (with `--target loihi2`) | exit | median s | worst s |", "|---|---|---|---|"]
    lines += [f"| `{label}` | {codes} | {median:.2f} | {worst:.2f} |"
              for label, median, worst, codes in rows]
    lines += ["", f"A fresh `sbc-deploy --target loihi2 --export pdf` process (Python start, "
              f"torch import and validation): median {statistics.median(process):.2f} s, worst "
              f"{max(process):.2f} s of {args.repeat}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
