"""Calibrate and compress the bundled N-MNIST CNN through the API, alone or as a torchrun rank.

Used by tests/test_distributed.py (not a test module itself)::

    python tests/_distributed_worker.py CALIB.npz OUT PROPAGATION            # one process
    torchrun --nproc-per-node 2 tests/_distributed_worker.py CALIB.npz OUT PROPAGATION

SBC, 80 % sparsity, ``allocation="global"``, 8 bits, ``propagation`` as given. Every process
writes ``OUT/rank<R>.npz``: the compressed weights and layer losses, and which work it did (the
solves it ran, with their layer, prune count and whether for a loss curve; the calibration
batches it simulated), so that a test can see the work split as well as the result.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from sbc_deploy import bundled, distributed

# the modules (the package binds the names calibrate and compress to the functions, lazily)
calibrate_module = importlib.import_module("sbc_deploy.calibrate")
compress_module = importlib.import_module("sbc_deploy.compress")
passes_module = importlib.import_module("sbc_deploy.compress.passes")

solves: list[tuple[str, int, bool]] = []
batches: list[int] = []

_solve, _simulate = passes_module.solve_problem, calibrate_module.simulate


def _counted_solve(problem, n_prune, config, quantize=True, curve=False):  # noqa: ANN001
    solves.append((problem.layer.name, int(n_prune), bool(curve)))
    return _solve(problem, n_prune, config, quantize, curve)


def _counted_simulate(graph, batch, **kwargs):  # noqa: ANN001
    batches.append(int(batch.shape[1]))
    return _simulate(graph, batch, **kwargs)


passes_module.solve_problem = _counted_solve
calibrate_module.simulate = _counted_simulate


def main(calib: str, out: str, propagation: str) -> None:
    graph = bundled.load_bundled_model("nmnist_cnn")
    x = np.load(calib)["x"]
    config = compress_module.SBCConfig(sparsity=0.8, allocation="global", bits=8,
                                       propagation=propagation)
    torchrun = "RANK" in os.environ
    with distributed.session() if torchrun else contextlib.nullcontext():
        group = distributed.active()
        rank = 0 if group is None else group.rank
        calibration = calibrate_module.calibrate(graph, x, kernel="smp", batch_size=16)
        compressed, stats = compress_module.compress(graph, calibration, config)
    arrays = {f"w_{layer.name}": np.asarray(layer.synapse.weight)
              for layer in compressed.synapse_layers()}
    arrays["loss"] = np.array([layer.loss for layer in stats.layers], dtype=np.float64)
    arrays["work"] = np.array(json.dumps({"solves": solves, "batches": batches}))
    Path(out).mkdir(parents=True, exist_ok=True)
    np.savez(Path(out) / f"rank{rank}.npz", **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:4])
