"""Scaling benchmark: wall, CPU time and peak memory per stage on the SBC paper's architectures.

Every network of :mod:`standins` (random weights, Bernoulli input spikes) runs in its own fresh
Python process, one torch thread, under an address-space limit (``--limit-gib``, default 6:
the shared machine's rule). Per stage the process's peak resident memory is reset
(``/proc/self/clear_refs``) and read back (``VmHWM``), so each stage's peak is that of the
stage itself on top of what the process already holds (the graph, the data); before that the
heap's freed pages go back to the OS (``sbc_deploy.memory.release_freed_memory``, as the
pipeline does after calibrate and compress). Rows of calibrate, compress and evaluate carry
the sizes that benchmarks/memory_accuracy.py needs to set the memory plan's estimate beside
the measured peak. Stages:

- ``memory plan``: :func:`sbc_deploy.memory.plan_memory` with a ``--plan-gib`` budget (4 GiB
  by default, under the process limit): the layers it gives block-diagonal Hessians;
- ``calibrate``: :func:`sbc_deploy.calibrate.calibrate` (SMP kernel, batch 1, the plan's
  blocks) for every calibration size ``N`` in ``--calib`` and every ``T`` in ``--steps``;
- ``compress``: :func:`sbc_deploy.compress.compress`, SBC at 50 % sparsity, no quantisation,
  on the calibration of the largest ``N`` at the smallest ``T`` (its cost depends on the layer
  shapes, not on ``N`` or ``T``);
- ``evaluate compressed``: the pipeline's evaluation of the compressed graph while it holds
  the calibration and both graphs (as ``sbc_deploy.pipeline`` does), at the smallest ``T``;
- ``evaluate``: the pipeline's evaluation of the dense graph (float simulator streaming in
  chunks under ``sbc_deploy.pipeline.EVAL_MEMORY_BUDGET``, SynOps counted per chunk) on
  ``--eval-samples`` samples for every ``T``; ``evaluate-before`` (``--before``) is the
  evaluation as it was before streaming: one whole-sequence simulation per batch that keeps
  every synapse's input sequence for ``count_synops``;
- ``integer core``: :func:`sbc_deploy.sim.fixed_point.to_fixed_point`; where it refuses the
  network the reason is recorded.

A stage that fails (out of memory under the limit, or a refusal) is recorded with its error.
``--report`` fits the growth laws and writes the Markdown (with the extrapolation to
SEW-ResNet-152 on ImageNet, labelled as such) from the JSON the runs appended to.

The spikingjelly zoo nets of :mod:`zoo` (``--network sj_sew_resnet18_64`` ...; spikingjelly in
the main environment and ``sbc_deploy.frontends.from_torch``) replace the hand-built SEW-ResNet
and VGG stand-ins where those are available: their rows start with ``build`` (spikingjelly's
module, made to fire) and ``import`` (``from_torch``). Issue 18's bar (benchmarks/results/
scale_bar.md, scale_zoo.json)::

    python benchmarks/scale.py --network sj_sew_resnet18_64 --calib 8 --steps 4 \
        --eval-samples 2 --json benchmarks/results/scale_zoo.json

Usage (what produced benchmarks/results/scale.md)::

    python benchmarks/scale.py --network dvs128_csnn --calib 1 2 4 --steps 4 8 16 --before \\
        --json benchmarks/results/scale.json
    ...                                                   (one line per network, see scale.md)
    python benchmarks/scale.py --report --json benchmarks/results/scale.json \\
        --out benchmarks/results/scale.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from bench_tools import memory_field, reset_peak

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# --------------------------------------------------------------------------- measuring


def measure(stage: str, fn: Callable[[], Any], **info: Any) -> tuple[Any, dict[str, Any]]:
    """Run ``fn`` once; its wall and CPU seconds, the RSS before and the peak RSS during it."""
    # as the pipeline does between its stages: the heap's freed pages back to the OS
    from sbc_deploy.memory import release_freed_memory
    release_freed_memory()
    reset_peak()
    start_rss = memory_field("VmRSS")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    t0 = time.perf_counter()
    row: dict[str, Any] = {"stage": stage, **info}
    result = None
    try:
        result = fn()
        row["ok"] = True
    except Exception as err:  # recorded: the benchmark reports failures, it does not hide them
        row["ok"] = False
        row["error"] = f"{type(err).__name__}: {str(err)[:300]}"
        traceback.print_exc(file=sys.stderr)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    row.update(wall_s=time.perf_counter() - t0, cpu_s=usage.ru_utime + usage.ru_stime - cpu0,
               start_rss=start_rss, peak_rss=memory_field("VmHWM"))
    print(json.dumps(row), file=sys.stderr, flush=True)
    return result, row


# --------------------------------------------------------------------------- stages


def evaluate_streaming(graph: Any, x: np.ndarray, batch_size: int) -> Any:
    """The pipeline's evaluation loop (sbc_deploy.pipeline._evaluate_float) on arrays."""
    import torch

    from sbc_deploy.pipeline import EVAL_MEMORY_BUDGET
    from sbc_deploy.report.synops_counter import SynOpsCounter
    from sbc_deploy.sim import simulate

    reports = []
    for b0 in range(0, x.shape[0], batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(np.swapaxes(x[b0:b0 + batch_size], 0, 1)))
        counter = SynOpsCounter(graph, steps=xb.shape[0], batch=xb.shape[1])
        simulate(graph, xb, on_synapse_input=counter, memory_budget=EVAL_MEMORY_BUDGET)
        reports.append(counter.report())
    total = reports[0]
    for other in reports[1:]:
        total = total.merge(other)
    return total


def evaluate_before(graph: Any, x: np.ndarray, batch_size: int) -> Any:
    """Evaluation as the pipeline did it before streaming (its exact calls): record every
    synapse's source, keep every synapse's input sequence, count SynOps at the end."""
    import torch

    from sbc_deploy.report.synops import count_synops
    from sbc_deploy.sim import simulate

    names = [layer.name for layer in graph.synapse_layers()]
    record = sorted({src for name in names for src in graph.predecessors(name)})
    reports = []
    for b0 in range(0, x.shape[0], batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(np.swapaxes(x[b0:b0 + batch_size], 0, 1)))
        inputs: dict[str, Any] = {}
        simulate(graph, xb, record=record,
                 on_synapse_input=lambda name, t: inputs.__setitem__(name, t))
        reports.append(count_synops(graph, inputs))
    total = reports[0]
    for other in reports[1:]:
        total = total.merge(other)
    return total


@dataclass(frozen=True)
class _Estimates:
    """The memory plan's estimate of a stage at a row's sizes (the plan's blocks, the data
    this process holds), to set beside the measured peak."""

    graph: Any
    eval_samples: int
    blocks: dict[str, int]

    def of(self, stage: str, steps: int, data: Any, **sizes: Any) -> int | None:
        from sbc_deploy.memory import estimate

        sizes = {"batch_size": self.eval_samples, "calib_batch_size": 1, **sizes}
        found = estimate(self.graph, steps=steps, calibrate=True, blocks=self.blocks,
                         data_bytes=int(getattr(data, "nbytes", 0)), **sizes)
        return {s.stage: s.bytes for s in found}.get(stage)

    def args(self, steps: int, data: Any) -> dict[str, Any]:
        """What benchmarks/memory_accuracy.py needs to recompute the estimate."""
        return {"steps": steps, "batch_size": self.eval_samples, "calib_batch_size": 1,
                "blocks": dict(self.blocks), "data_bytes": int(getattr(data, "nbytes", 0))}

    def mark(self, row: dict[str, Any], stage: str, steps: int, data: Any) -> None:
        """Put the estimate and its arguments on ``row``."""
        row["estimate"] = self.of(stage, steps, data)
        row["estimate_args"] = self.args(steps, data)


def _build_network(args: argparse.Namespace, rows: list[dict[str, Any]]
                   ) -> tuple[Any, Callable[..., np.ndarray]]:
    """The network's graph (None where building failed) and its input spikes, with the rows
    of building it: a stand-in of standins.py, or spikingjelly's own module of the zoo
    (built and made to fire: not part of the bar), then its import as the user's run does it."""
    import zoo
    from standins import NETWORKS, input_spikes

    if args.network not in zoo.NETWORKS:
        label, build = NETWORKS[args.network]
        graph, row = measure("build", lambda: build(np.random.default_rng(0)))
        rows.append(row)
        return graph, input_spikes
    name = args.network
    (module, sample), row = measure("build", lambda: zoo.build_module(name, max(args.steps)))
    row["rates"] = zoo.rates(module, sample)
    rows.append(row)
    graph, row = measure("import", lambda: zoo.import_graph(module, sample))
    rows.append(row)

    def zoo_spikes(graph: Any, samples: int, steps: int, seed: int = 1) -> np.ndarray:
        return zoo.images(name, samples, steps, seed)   # the zoo's inputs

    return graph, zoo_spikes


def _plan(args: argparse.Namespace, graph: Any, input_spikes: Callable[..., np.ndarray],
          base: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """As the pipeline does: the memory plan chooses block-diagonal Hessians where the full
    ones would not fit the budget (sbc_deploy.memory, before any work). None: refused."""
    from sbc_deploy.memory import plan_memory

    data_bytes = input_spikes(graph, max(args.calib), max(args.steps)).nbytes
    plan, row = measure("memory plan", lambda: plan_memory(
        graph, steps=max(args.steps), batch_size=args.eval_samples, calib_batch_size=1,
        budget=int(args.plan_gib * (1 << 30)), data_bytes=data_bytes), **base)
    if plan is not None:
        row["plan"] = plan.to_dict()
    if plan is not None and args.blocks:
        row["blocks"] = dict(plan.blocks)
        row["notes"] = list(plan.notes)
    return plan, row


def _calibrate_rows(args: argparse.Namespace, graph: Any,
                    input_spikes: Callable[..., np.ndarray], base: dict[str, Any],
                    estimates: _Estimates, keep: tuple[int, int], rows: list[dict[str, Any]]
                    ) -> dict[tuple[int, int], Any]:
    """calibrate for every calibration size and T; returns the calibration ``keep``
    (largest N, smallest T) for compress, the others freed as they go."""
    from sbc_deploy.calibrate import calibrate

    calibrations: dict[tuple[int, int], Any] = {}
    for steps in args.steps:
        for n in args.calib:
            data = input_spikes(graph, n, steps)
            calib, row = measure("calibrate", lambda: calibrate(graph, data, batch_size=1,
                                                                kernel="smp", threads=1,
                                                                blocks=estimates.blocks),
                                 samples=n, steps=steps, **base)
            estimates.mark(row, "calibrate", steps, data)
            if calib is not None:
                row["time_chunk"] = calib.metadata.get("time_chunk")
            rows.append(row)
            if (n, steps) == keep and calib is not None:
                calibrations[keep] = calib
            del calib, data
    return calibrations


def _compress_rows(args: argparse.Namespace, graph: Any, calibration: Any,
                   input_spikes: Callable[..., np.ndarray], base: dict[str, Any],
                   estimates: _Estimates, keep: tuple[int, int], rows: list[dict[str, Any]]
                   ) -> None:
    """SBC at 50 % on ``calibration``, then, as the pipeline's "evaluate compressed", the
    evaluation of the compressed graph while the calibration and both graphs are held."""
    from sbc_deploy.compress import compress
    from sbc_deploy.compress.config import config_for

    config = config_for("sbc", sparsity=0.5, threads=1)
    done, row = measure("compress", lambda: compress(graph, calibration, config),
                        samples=keep[0], steps=keep[1], **base)
    estimates.mark(row, "compress", keep[1], calibration.data)
    rows.append(row)
    if done is None:
        return
    row["layers"] = [{"name": layer.name, "shape": list(layer.shape),
                      "loss": layer.loss, "dense_energy": layer.dense_energy,
                      "pruned": layer.pruned, "seconds": layer.seconds}
                     for layer in done[1].layers]
    compressed = done[0]
    del done
    x = input_spikes(graph, args.eval_samples, keep[1], seed=2)
    _, row = measure("evaluate compressed",
                     lambda: evaluate_streaming(compressed, x, args.eval_samples),
                     samples=args.eval_samples, steps=keep[1], **base)
    estimates.mark(row, "evaluate compressed", keep[1], calibration.data)
    rows.append(row)


def _evaluate_rows(args: argparse.Namespace, graph: Any,
                   input_spikes: Callable[..., np.ndarray], base: dict[str, Any],
                   estimates: _Estimates, rows: list[dict[str, Any]]) -> None:
    """The dense graph's evaluation for every T (and the pre-streaming one with --before)."""
    evaluate_streaming(graph, input_spikes(graph, 1, 1, seed=3), 1)   # warm-up, not measured
    for steps in args.steps:
        x = input_spikes(graph, args.eval_samples, steps, seed=2)
        _, row = measure("evaluate", lambda: evaluate_streaming(graph, x, args.eval_samples),
                         samples=args.eval_samples, steps=steps, **base)
        estimates.mark(row, "simulate", steps, x)
        rows.append(row)
        if args.before:
            _, row = measure("evaluate-before",
                             lambda: evaluate_before(graph, x, args.eval_samples),
                             samples=args.eval_samples, steps=steps, **base)
            rows.append(row)


def worker(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every stage's row for ``args.network``, in this process (run_network starts it)."""
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(HERE))
    from standins import parameters

    rows: list[dict[str, Any]] = []
    graph, input_spikes = _build_network(args, rows)
    if graph is None:
        return rows
    params = parameters(graph)
    base = {"network": args.network}
    for row in rows:
        row.update(base, params=params)
    keep = (max(args.calib), min(args.steps))
    estimates = _Estimates(graph, args.eval_samples, {})
    calibrations: dict[tuple[int, int], Any] = {}
    if not args.skip_calibrate:
        plan, row = _plan(args, graph, input_spikes, base)
        rows.append(row)
        if plan is None:  # refused before any work, as the pipeline does: nothing else runs
            return rows
        if args.blocks:
            estimates = _Estimates(graph, args.eval_samples, dict(plan.blocks))
        calibrations = _calibrate_rows(args, graph, input_spikes, base, estimates, keep, rows)
    if args.compress and keep in calibrations:
        _compress_rows(args, graph, calibrations[keep], input_spikes, base, estimates, keep,
                       rows)
    calibrations.clear()
    _evaluate_rows(args, graph, input_spikes, base, estimates, rows)
    from sbc_deploy.sim.fixed_point import to_fixed_point
    _, row = measure("integer core", lambda: to_fixed_point(graph), **base)
    rows.append(row)
    return rows

def run_network(args: argparse.Namespace) -> None:
    """Run one network in a fresh process under the memory limit; append its rows."""
    limit = int(args.limit_gib * (1 << 30))
    cmd = [sys.executable, __file__, "--worker", *sys.argv[1:]]
    load_before = os.getloadavg()
    t0 = time.perf_counter()

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limit_memory, env=env)
    rows = []
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            rows.extend(json.loads(line)["rows"])
    if proc.returncode != 0:
        rows.append({"network": args.network, "stage": "process", "ok": False,
                     "error": f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}"})
    run = {"network": args.network, "command": " ".join(["python", "benchmarks/scale.py",
                                                         *sys.argv[1:]]),
           "load_before": load_before, "load_after": os.getloadavg(),
           "wall_s": time.perf_counter() - t0, "limit_gib": args.limit_gib, "rows": rows}
    path = Path(args.json)
    runs = json.loads(path.read_text()) if path.exists() else []
    runs = [r for r in runs if r["network"] != args.network] + [run]
    from sbc_deploy.fileio import write_text_atomic
    write_text_atomic(path, json.dumps(runs, indent=1) + "\n")
    sys.stderr.write(proc.stderr[-2000:] if proc.returncode else "")
    print(f"{args.network}: {len(rows)} rows, {run['wall_s']:.0f} s, exit {proc.returncode}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", help="a stand-in of benchmarks/standins.py or a "
                        "spikingjelly zoo net of benchmarks/zoo.py (sj_...)")
    parser.add_argument("--calib", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--eval-samples", type=int, default=4)
    parser.add_argument("--before", action="store_true", help="also the pre-streaming evaluation")
    parser.add_argument("--no-compress", dest="compress", action="store_false")
    parser.add_argument("--skip-calibrate", action="store_true")
    parser.add_argument("--no-blocks", dest="blocks", action="store_false",
                        help="full Hessians even where the memory plan chose blocks")
    parser.add_argument("--limit-gib", type=float, default=6.0)
    parser.add_argument("--plan-gib", type=float, default=4.0,
                        help="memory budget given to sbc_deploy.memory.plan_memory")
    parser.add_argument("--json", default=str(HERE / "results" / "scale.json"))
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results" / "scale.md"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps({"rows": worker(args)}), flush=True)
    elif args.report:
        from scale_report import write_report
        write_report(Path(args.json), Path(args.out))
    else:
        run_network(args)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
