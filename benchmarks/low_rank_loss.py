"""Layer loss of ADMM's low-rank path against its dense path, layer by layer.

A layer calibrated on fewer rows (samples x positions x steps) than it has inputs has a
low-rank Hessian, and ``compress`` solves it on the form ``U U^T + diag(e)``
(``sbc_deploy.compress.layer_solve._low_rank``); the dense path is the same function on the
dense matrix (one float32 ADMM run). Two parts:

- ``--random N``: random layers of 256-512 inputs with SMP Hessians of 32-120 LIF-filtered
  spike rows (tests/test_low_rank.py's ``gram_of_spikes``), unconstrained, N:M 2:4 and a
  fan-in cap, one or two row groups, N seeds per configuration: the loss of the low-rank path
  (``LOW_RANK_RUNS``) and of one float64 run at ``rho0`` (the path before ``LOW_RANK_RUNS``)
  over the dense path's, all on the same damped dense Hessian (``layer_loss``).
- ``--network NAME``: a SEW-ResNet-18 at 3x64x64 (``sj_sew_resnet18_64``: spikingjelly's, see
  benchmarks/zoo.py; ``sew_resnet18_64``: the stand-in of benchmarks/standins.py), calibrated
  on 8 samples x 4 steps (batch 1, SMP kernel), SBC 50 % uniform on the layers that take the
  low-rank path; ``compress`` three times on those layers: as it is, with the low-rank form
  switched off (``LOW_RANK_FRACTION = 0``: the dense path), and with one float64 run. Per
  layer: the losses ``tr((W - W') H (W - W')^T)`` on the undamped Hessian (``compress``'s
  report), pruned/kept choices that differ, seconds.

Run (benchmarks/results/scale_bar.md records the commands, results and load)::

    nice -n 10 python benchmarks/low_rank_loss.py --random 8 --json out.json
    nice -n 10 python benchmarks/low_rank_loss.py --network sj_sew_resnet18_64 --json out.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RANDOM_CONFIGS = [  # n_in, calibration rows, n_out, sparsity, n_m, fan_in
    (256, 64, 32, 0.5, None, None), (384, 48, 24, 0.8, None, None),
    (300, 120, 16, 0.5, None, None), (512, 32, 16, 0.5, None, None),
    (256, 64, 32, 0.5, (2, 4), None), (256, 40, 32, 0.9, None, 32),
]
ONE_RUN = None  # set in main: ((torch.float64, 1.0),)


def random_layers(seeds: int) -> list[dict[str, Any]]:
    import torch

    sys.path.insert(0, str(HERE.parent / "tests"))
    from test_low_rank import gram_of_spikes

    from sbc_deploy.compress.hessian import damped_inverse_cholesky, low_rank_damped
    from sbc_deploy.compress.obs import admm_prune, layer_loss

    rows_out = []
    for (n_in, rows, n_out, sparsity, n_m, fan_in), seed in itertools.product(
            RANDOM_CONFIGS, range(seeds)):
        groups = 2 if seed % 2 else 1
        grams = [gram_of_spikes(n_in, rows, 1000 * seed + g) for g in range(groups)]
        dense = torch.stack([damped_inverse_cholesky(G, 0.01).H for G in grams])
        low = [low_rank_damped(G, 0.01, max_rank=rows + 8) for G in grams]
        rng = np.random.default_rng(100 + seed)
        W = torch.as_tensor(rng.normal(size=(n_out, n_in)))
        group = torch.as_tensor(np.arange(n_out) % groups)
        rw = torch.as_tensor(rng.uniform(0.5, 2.0, n_out))
        n_prune = int(sparsity * W.numel())
        kw = {"n_m": n_m, "fan_in": fan_in, "row_weight": rw}
        found = {}
        for label, H, extra in (("dense", dense, {}), ("one_run", [d.H for d in low],
                                                        {"low_rank_runs": ONE_RUN}),
                                ("low_rank", [d.H for d in low], {})):
            t0 = time.process_time()
            Q, _ = admm_prune(W, H, group, n_prune, **kw, **extra)
            found[label] = (layer_loss(W, Q, dense, group, rw), time.process_time() - t0)
        rows_out.append({"n_in": n_in, "rows": rows, "n_out": n_out, "sparsity": sparsity,
                         "n_m": n_m, "fan_in": fan_in, "seed": seed, "groups": groups,
                         **{f"loss_{k}": v[0] for k, v in found.items()},
                         **{f"cpu_s_{k}": v[1] for k, v in found.items()}})
    return rows_out


def network_layers(name: str) -> list[dict[str, Any]]:
    import torch

    sys.path.insert(0, str(HERE))
    import zoo
    from standins import NETWORKS, input_spikes

    from sbc_deploy.calibrate import calibrate
    from sbc_deploy.compress import compress
    from sbc_deploy.compress import layer_solve
    from sbc_deploy.compress.config import config_for

    if name in zoo.NETWORKS:
        module, sample = zoo.build_module(name, 4)
        graph = zoo.import_graph(module, sample)
        data = zoo.images(name, 8, 4, 1)
    else:
        graph = NETWORKS[name][1](np.random.default_rng(0))
        data = input_spikes(graph, 8, 4)
    calib = calibrate(graph, data, batch_size=1, kernel="smp", threads=1)
    config = config_for("sbc", sparsity=0.5, threads=1)
    names = []
    for layer in graph.synapse_layers():
        problem = layer_solve.layer_problem(layer, calib.layers[layer.name], torch.device("cpu"))
        n_prune = round(0.5 * problem.W.numel())
        if layer_solve._low_rank(problem, config, n_prune) is not None:
            names.append(layer.name)
    config = config_for("sbc", sparsity=0.5, threads=1, layers=tuple(names))
    original = (layer_solve.LOW_RANK_FRACTION, layer_solve.admm_prune)

    def one_run(W: Any, H: Any, *args: Any, **kwargs: Any) -> Any:
        return original[1](W, H, *args, low_rank_runs=ONE_RUN, **kwargs)

    results = {}
    for label, fraction, solver in (("low_rank", original[0], original[1]),
                                    ("dense", 0.0, original[1]),
                                    ("one_run", original[0], one_run)):
        layer_solve.LOW_RANK_FRACTION, layer_solve.admm_prune = fraction, solver
        t0 = time.process_time()
        results[label] = (*compress(graph, calib, config), time.process_time() - t0)
    layer_solve.LOW_RANK_FRACTION, layer_solve.admm_prune = original
    out = []
    for layer_name in names:
        masks = {k: np.asarray(v[0].nodes[layer_name].weight) == 0 for k, v in results.items()}
        stats = {k: v[1].layer(layer_name) for k, v in results.items()}
        out.append({"network": name, "layer": layer_name, "shape": stats["dense"].shape,
                    "dense_energy": stats["dense"].dense_energy,
                    **{f"loss_{k}": s.loss for k, s in stats.items()},
                    **{f"seconds_{k}": s.seconds for k, s in stats.items()},
                    "masks_differ": int((masks["low_rank"] != masks["dense"]).sum()),
                    "weights": int(masks["dense"].size)})
    out.append({"network": name, "layer": "compress CPU s",
                **{f"cpu_s_{k}": v[2] for k, v in results.items()}})
    return out


def main(argv: list[str] | None = None) -> None:
    global ONE_RUN
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--random", type=int, default=0, metavar="SEEDS")
    parser.add_argument("--network", choices=["sj_sew_resnet18_64", "sew_resnet18_64"])
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    ONE_RUN = ((torch.float64, 1.0),)
    load = os.getloadavg()
    t0 = time.time()
    rows = random_layers(args.random) if args.random else []
    if args.network:
        rows += network_layers(args.network)
    record = {"argv": sys.argv, "load_before": load, "load_after": os.getloadavg(),
              "wall_s": time.time() - t0, "rows": rows}
    args.json.write_text(json.dumps(record, indent=1, default=str))


if __name__ == "__main__":
    main()
