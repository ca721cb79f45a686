"""Peak memory of the integer core against T, before and after streaming.

``before``: the core as it was (layer by layer over the whole sequence: every layer's spikes
``[T, B, n]`` and the input's integer copy alive), imported from another checkout
(``--before-tree``, e.g. the main branch's worktree); ``after``: this checkout (time-major
blocks, state carried; only the outputs are kept whole). Each point runs in a fresh process:
peak resident memory (VmHWM) of the :func:`simulate_integer` call minus the resident memory
just before it (the network and the input ``[T, B, n_in]`` int8 spikes, built first). Both
produce the same spikes: the script checks their output sums agree.

Usage::

    python benchmarks/core_memory.py --before-tree /work/main \\
        --out benchmarks/results/core_memory.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from bench_tools import publish

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "netx"

CHILD = r"""
import json, sys
import numpy as np, torch
torch.set_num_threads(1)
from sbc_deploy.frontends.from_netx import from_netx
from sbc_deploy.sim.int_core import simulate_integer
try:
    from sbc_deploy.sim.fixed_point import to_fixed_point
except ImportError:  # a tree from before sim/fixed_point.py (--before-tree)
    from sbc_deploy.sim.int_core import to_fixed_point
def status(field):
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'):
            return int(line.split()[1]) * 1024
path, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
net = to_fixed_point(from_netx(path))
rng = np.random.default_rng(0)
x = (rng.random((steps, batch, *net.input_shape), dtype=np.float32) < 0.1).astype(np.int8)
open('/proc/self/clear_refs', 'w').write('5')
start = status('VmRSS')
out = simulate_integer(net, x).outputs[net.output]
print(json.dumps({'start': start, 'peak': status('VmHWM'), 'sum': int(out.sum())}))
"""


def point(tree: Path, network: str, steps: int, batch: int) -> dict:
    # cwd = the tree: "python -c" puts the working directory first on sys.path
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    path = FIXTURES / network / "network.net"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(steps), str(batch)],
                          capture_output=True, text=True, env=env, check=True, cwd=str(tree))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-tree", type=Path, required=True)
    parser.add_argument("--networks", nargs="+", default=["oxford", "mnist_bootstrap"])
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    load = os.getloadavg()
    rows = ["| network | T | B | before: peak over start MiB | after: peak over start MiB |"
            " output spikes equal |", "|---|---|---|---|---|---|"]
    for network in args.networks:
        for steps in args.steps:
            before = point(args.before_tree, network, steps, args.batch)
            after = point(ROOT, network, steps, args.batch)
            rows.append(f"| {network} | {steps} | {args.batch} | "
                        f"{(before['peak'] - before['start']) / 2**20:,.1f} | "
                        f"{(after['peak'] - after['start']) / 2**20:,.1f} | "
                        f"{'yes' if before['sum'] == after['sum'] else 'NO'} "
                        f"({after['sum']}) |")
            print(rows[-1], file=sys.stderr)
    text = "\n".join([
        "# Integer core: peak memory against T, before and after streaming", "",
        "Peak resident memory of one `simulate_integer` call over the memory held just before "
        "it (network, input spikes). Before: the core of `" + str(args.before_tree) + "` "
        "(layer after layer over the whole sequence); after: this branch (blocks of 64 steps "
        "through every layer, state carried). Fresh process per point, one thread.", "",
        *rows, "",
        f"Machine: {platform.machine()}, 2 shared cores, load average "
        f"{'/'.join(f'{v:.1f}' for v in load)} at the start, Python "
        f"{platform.python_version()}.", "",
        "Command: `python benchmarks/core_memory.py " + " ".join(sys.argv[1:]) + "`", ""])
    sys.path.insert(0, str(ROOT))
    publish(text, args.out or None)


if __name__ == "__main__":
    main()
