"""The scaling benchmark's Markdown: measured tables, fitted growth laws, and the extrapolation
to SEW-ResNet-152 on ImageNet (one GPU, eight GPUs), labelled as extrapolation.

Growth laws are least-squares fits in log-log space, ``wall = c * x ** b`` with ``x`` the
sample-steps (``N * T``) of a stage, and a straight line ``peak = p0 + p1 * T`` for the peak
memory. The extrapolation scales the measured SEW-ResNet-18 (224 x 224) costs by work counted
from the layer shapes (forward MACs, Hessian MACs ``rows * n_in^2``, solver work
``n_in^3 + n_out * n_in^2``) and replaces this machine's measured rate by an assumed GPU rate;
every assumption is printed next to the number it makes.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

MIB = 1 << 20

# --------------------------------------------------------------------------- layer shapes


def resnet_layers(depth: int, size: int = 224, classes: int = 1000
                  ) -> list[tuple[str, int, int, int]]:
    """``(name, n_in, n_out, output positions per sample)`` of every synapse of a SEW-ResNet
    (18: basic blocks, 152: bottlenecks [3, 8, 36, 3]); ``n_in`` is the fan-in (C_in k k)."""
    layers = []
    hw = (size + 2 * 3 - 7) // 2 + 1
    layers.append(("stem", 3 * 49, 64, hw * hw))
    hw = (hw + 2 - 3) // 2 + 1
    c_in = 64
    plan = {18: ([2, 2, 2, 2], 1), 152: ([3, 8, 36, 3], 4)}[depth]
    for stage, (blocks, width) in enumerate(zip(plan[0], (64, 128, 256, 512))):
        out = width * plan[1]
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            hw_out = (hw - 1) // stride + 1
            name = f"s{stage}b{block}"
            if depth == 18:
                layers.append((f"{name}.conv1", c_in * 9, width, hw_out ** 2))
                layers.append((f"{name}.conv2", width * 9, width, hw_out ** 2))
            else:
                layers.append((f"{name}.conv1", c_in, width, hw ** 2))
                layers.append((f"{name}.conv2", width * 9, width, hw_out ** 2))
                layers.append((f"{name}.conv3", width, out, hw_out ** 2))
            if stride != 1 or c_in != out:
                layers.append((f"{name}.down", c_in, out, hw_out ** 2))
            c_in, hw = out, hw_out
    layers.append(("fc", c_in, classes, 1))
    return layers


def work(layers: list[tuple[str, int, int, int]]) -> dict[str, float]:
    """Per sample-step MACs of the forward pass and of the Hessian sums; the solver's work."""
    return {
        "params": float(sum(n_in * n_out for _, n_in, n_out, _ in layers)),
        "forward_macs": float(sum(n_in * n_out * rows for _, n_in, n_out, rows in layers)),
        "hessian_macs": float(sum(rows * n_in * n_in for _, n_in, _, rows in layers)),
        "hessian_bytes": float(sum(8 * n_in * n_in for _, n_in, _, _ in layers)),
        "largest_hessian_bytes": float(max(8 * n_in * n_in for _, n_in, _, _ in layers)),
        "solver": float(sum(n_in ** 3 + n_out * n_in ** 2 for _, n_in, n_out, _ in layers)),
        "largest_solver": float(max(n_in ** 3 + n_out * n_in ** 2 for _, n_in, n_out, _ in
                                    layers)),
        "widest_activation": float(max(n_out * rows for _, _, n_out, rows in layers)),
    }


def graph_layers(graph: Any) -> list[tuple[str, int, int, int]]:
    """The same tuples read from an IR graph (for the stand-ins that were measured)."""
    out = []
    for layer in graph.synapse_layers():
        syn = layer.synapse
        w = np.asarray(syn.weight)
        n_out = int(w.shape[0])
        n_in = int(np.prod(w.shape[1:]))
        rows = int(np.prod(syn.output_shape)) // n_out
        out.append((layer.name, n_in, n_out, rows))
    return out


# --------------------------------------------------------------------------- fits


def power_fit(x: list[float], y: list[float]) -> tuple[float, float] | None:
    """``y = c * x ** b`` by least squares on logs; None with fewer than two distinct x."""
    if len(set(x)) < 2:
        return None
    b, log_c = np.polyfit(np.log(x), np.log(y), 1)
    return float(np.exp(log_c)), float(b)


def line_fit(x: list[float], y: list[float]) -> tuple[float, float] | None:
    if len(set(x)) < 2:
        return None
    p1, p0 = np.polyfit(x, y, 1)
    return float(p0), float(p1)


def gemm_rate(dtype: Any, n: int = 1024, repeats: int = 3) -> float:
    """This machine's matmul rate (FLOP/s, one thread), best of ``repeats``."""
    import torch
    torch.set_num_threads(1)
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


# --------------------------------------------------------------------------- report


def _dur(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.2g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:,.3g} h"


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return str(v)


def write_report(json_path: Path, out: Path) -> None:
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from standins import NETWORKS

    runs = json.loads(json_path.read_text())
    order = list(NETWORKS)
    runs.sort(key=lambda r: order.index(r["network"]) if r["network"] in order else 99)
    lines = ["# Scaling: wall, CPU time and peak memory per stage", "",
             "Random-weight stand-ins of the SBC paper's architectures (benchmarks/standins.py, "
             "built with the IR API, Bernoulli input spikes at 5 %), each in a fresh process "
             "with one torch thread under an address-space limit. `peak` is the process's "
             "peak resident memory during the stage (VmHWM reset before it), `start` its "
             "resident memory when the stage began (graph, data, earlier results).", ""]
    lines += ["## Measured", "",
              "| network | params | stage | N | T | wall s | CPU s | start MiB | peak MiB | "
              "result |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        params = next((r.get("params") for r in run["rows"] if r.get("params")), None)
        label = NETWORKS.get(run["network"], (run["network"],))[0]
        for r in run["rows"]:
            if r["stage"] == "build":
                continue
            result = "ok" if r.get("ok") else "**failed**: " + r.get("error", "")[:160]
            lines.append(
                f"| {label} | {params / 1e6:.2f} M | {r['stage']} | {r.get('samples', '')} | "
                f"{r.get('steps', '')} | {_fmt(r.get('wall_s'))} | {_fmt(r.get('cpu_s'))} | "
                f"{_fmt(r.get('start_rss', 0) / MIB, 4)} | {_fmt(r.get('peak_rss', 0) / MIB, 4)}"
                f" | {result} |")
    lines += ["", "Runs (command, wall, 1/5/15-minute load average before and after):", ""]
    for run in runs:
        lines.append(f"- `{run['command']}`: {run['wall_s']:.0f} s, load "
                     f"{'/'.join(f'{v:.1f}' for v in run['load_before'])} -> "
                     f"{'/'.join(f'{v:.1f}' for v in run['load_after'])}, limit "
                     f"{run['limit_gib']} GiB")
    lines += _summary(runs, NETWORKS) + _before_after(runs) + _growth(runs, NETWORKS)
    dvs = next((run for run in runs if run["network"] == "dvs128_csnn"), None)
    growth = "not measured"
    if dvs is not None:
        first = sorted(_ok(dvs, "calibrate"), key=lambda r: (r["samples"], r["steps"]))
        n = first[0]["samples"] if first else None
        growth = "DVS128 CSNN, N = {}: {} MiB at T = {}".format(
            n, ", ".join(f"{r['peak_rss'] / MIB:,.0f}" for r in first if r["samples"] == n),
            ", ".join(str(r["steps"]) for r in first if r["samples"] == n))
    lines += _extrapolation(runs) + [line.replace("{calib_growth}", growth) for line in NOTES]
    extra = sorted(p for p in json_path.parent.glob(json_path.stem + "_*.json"))
    if extra:
        lines += ["", "## Additional runs", "",
                  "`scale_fullhessian.json`: full Hessians where the plan chose blocks "
                  "(`--no-blocks`); `scale_vgg11_plan2gib.json`: VGG-11's compress again with a "
                  "2 GiB plan budget (its compress under the 4 GiB plan failed at the 6 GiB "
                  "process limit, above); `scale_vgg11_limit8gib.json`: VGG-11 under an 8 GiB "
                  "process limit and an 8 GiB plan budget (both before issue 14's memory "
                  "work); `scale_vgg11_limit4gib.json`: VGG-11 under a 4 GiB process limit and "
                  "a 4 GiB plan budget, with it.", ""]
    for full in extra:
        for run in json.loads(full.read_text()):
            lines.append(f"- `{run['command']}` ({full.name}; load "
                         f"{'/'.join(f'{v:.1f}' for v in run['load_before'])} -> "
                         f"{'/'.join(f'{v:.1f}' for v in run['load_after'])}):")
            for r in run["rows"]:
                if r["stage"] == "memory plan" and r.get("blocks"):
                    lines.append(f"  - memory plan: blocks {r['blocks']}")
                if r["stage"] == "memory plan" and r.get("plan"):
                    est = ", ".join(f"{k} {v / MIB:,.0f} MiB"
                                    for k, v in r["plan"]["stages"].items())
                    lines.append(f"  - memory plan estimates: {est}")
                if r["stage"] in ("calibrate", "compress", "evaluate"):
                    lines.append(f"  - {r['stage']} N = {r.get('samples')}, T = {r.get('steps')}:"
                                 f" {'ok' if r.get('ok') else 'failed, ' + r.get('error', '')}"
                                 f" (peak {r['peak_rss'] / MIB:,.0f} MiB, {r['wall_s']:.0f} s "
                                 f"wall, {r['cpu_s']:.0f} s CPU)")
    lines += ["", f"Machine: {platform.machine()}, 2 cores shared with other engineers' jobs, "
              f"Python {platform.python_version()}. Report: `python benchmarks/scale.py "
              "--report`.", ""]
    from sbc_deploy.fileio import write_text_atomic
    write_text_atomic(out, "\n".join(lines))


NOTES = ["", "## What the numbers say, and what is not covered", "",
         "- Evaluation no longer grows with T: the pipeline's evaluation streams each batch "
         "through the simulator in chunks (sbc_deploy.sim.float_sim.chunk_plan, 64 MiB "
         "budget) and counts SynOps per chunk (sbc_deploy.report.synops_counter.SynOpsCounter). "
         "Before, one batch's whole-sequence simulation kept every synapse's input sequence "
         "(for count_synops) and every recorded source: that is what grew by p1 MiB per step "
         "in the `evaluate-before` row of the growth table.",
         "- Calibration's peak grew with T in the runs above ({calib_growth}; they predate "
         "the change): sbc_deploy.calibrate simulated and summed each calibration batch over "
         "its whole sequence. It now runs a batch in time chunks whose widest node value "
         "stays within 64 MiB (sbc_deploy.calibrate.time_chunk), every neuron's state and "
         "the SMP filter's state carried from chunk to chunk "
         "(HessianAccumulator.begin/feed/finish), with the same sums (bit for bit at chunks "
         "of a multiple of 32 steps, tests/test_calibrate.py, tests/test_hessian.py). "
         "benchmarks/results/calibrate_memory.md measures the peak against T, whole vs "
         "chunked, in fresh processes.",
         "- CIFAR10-DVS's 32,768-input read-out fits because sbc_deploy.memory plans a "
         "block-diagonal Hessian for it (the `memory plan` row names the blocks); a full "
         "Hessian of that layer alone is 32,768^2 x 8 B = 8 GiB (the run with full Hessians "
         "is listed at the end).",
         "- Integer core: none of these stand-ins runs on it (the `integer core` rows give the "
         "first refusal: float weights; they also hold pools, ADD junctions or Conv1d, which "
         "Lava's netx chain has not). Its streaming is measured on Lava's own networks in "
         "benchmarks/results/core_memory.md.",
         "- Spiking transformer: only the MLP half of a block is measured. The attention half "
         "cannot be expressed in the IR: it has no node that multiplies two activations "
         "(Q K^T, then the scores times V), no softmax and no layer norm.",
         "- VGG-11: in the runs above (before issue 14's memory work) the plan chose no blocks "
         "under a 4 GiB budget, yet compress needed more than the 6 GiB process limit (the "
         "plan underestimated the solver: every layer's H kept twice, W's ~20 float64 copies "
         "in the ADMM solve); under an 8 GiB limit and plan it completed at a 6.0 GiB peak "
         "(scale_vgg11_limit8gib.json). The estimates are now upper bounds term by term "
         "(sbc_deploy/memory.py; estimated vs measured for every stage: "
         "benchmarks/results/memory_accuracy.md): under a 4 GiB process limit and a 4 GiB "
         "plan the plan gives conv8, conv10 and fc2 blocks of 1,024 inputs and conv11 blocks of "
         "2,048, estimates compress at ~3.9 GiB, and every stage completes, compress at a "
         "~3 GiB peak (scale_vgg11_limit4gib.json, Additional runs). A budget the cheapest "
         "form cannot meet is refused by the plan before any work (tests/test_memory.py).",
         "- SEW-ResNet-18 at 224 x 224 has the same layer shapes (hence the same compress cost "
         "and memory) as at 64 x 64; its compress was not re-run.",
         "- Max pooling is replaced by average pooling (the IR has sum and average pools)."]


def _summary(runs: list[dict[str, Any]], networks: dict[str, Any]) -> list[str]:
    lines = ["", "## Largest peak per network (limit 8 GiB on this machine)", "",
             "| network | largest peak MiB | in stage | every stage ok | within 8 GiB |",
             "|---|---|---|---|---|"]
    for run in runs:
        rows = [r for r in run["rows"] if "peak_rss" in r and r["stage"] != "evaluate-before"]
        top = max(rows, key=lambda r: r["peak_rss"])
        failed = [r["stage"] for r in run["rows"] if not r.get("ok")
                  and r["stage"] != "integer core"]
        lines.append(f"| {networks.get(run['network'], (run['network'],))[0]} | "
                     f"{top['peak_rss'] / MIB:,.0f} | {top['stage']} | "
                     f"{'yes' if not failed else 'no: ' + ', '.join(failed)} | "
                     f"{'yes' if top['peak_rss'] <= 8 << 30 and not failed else 'no'} |")
    return lines


def _ok(run: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    return [r for r in run["rows"] if r["stage"] == stage and r.get("ok")]


def _before_after(runs: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Evaluation peak before / after streaming", "",
             "`evaluate-before`: the pipeline's evaluation before this change (one whole-"
             "sequence simulation per batch, every synapse's input kept for count_synops); "
             "`evaluate`: now (chunks under the 64 MiB activation budget, SynOps per chunk).",
             "", "| network | N | T | before: peak MiB (over start) | after: peak MiB (over "
             "start) | before wall s | after wall s |", "|---|---|---|---|---|---|---|"]
    for run in runs:
        before = {(r["samples"], r["steps"]): r for r in run["rows"]
                  if r["stage"] == "evaluate-before"}
        for r in _ok(run, "evaluate"):
            b = before.get((r["samples"], r["steps"]))
            if b is None:
                continue
            b_text = (f"{b['peak_rss'] / MIB:,.0f} (+{(b['peak_rss'] - b['start_rss']) / MIB:,.0f})"
                      if b.get("ok") else "failed: " + b.get("error", "")[:80])
            lines.append(f"| {run['network']} | {r['samples']} | {r['steps']} | {b_text} | "
                         f"{r['peak_rss'] / MIB:,.0f} (+{(r['peak_rss'] - r['start_rss']) / MIB:,.0f})"
                         f" | {_fmt(b.get('wall_s'))} | {_fmt(r['wall_s'])} |")
    return lines


def _growth(runs: list[dict[str, Any]], networks: dict[str, Any]) -> list[str]:
    lines = ["", "## Growth laws (fitted to the rows above)", "",
             "`cpu = a + s N T` (a fixed cost and a marginal cost per sample-step), the power "
             "law `cpu = c (N T)^b` and `wall = c' (N T)^b'` (calibrate: N calibration samples; "
             "evaluate: N evaluation samples; one thread, so CPU seconds are the work and wall "
             "seconds add the waiting on a machine shared with other jobs) and "
             "`peak = p0 + p1 T` (MiB over the stage's start).", "",
             "| network | stage | CPU a (s) | CPU s (s per sample-step) | CPU b | wall b' | "
             "p0 MiB | p1 MiB/step | points |", "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for stage in ("calibrate", "evaluate", "evaluate-before"):
            rows = _ok(run, stage)
            if len(rows) < 2:
                continue
            x = [r["samples"] * r["steps"] for r in rows]
            cpu = power_fit(x, [max(r["cpu_s"], 1e-6) for r in rows])
            wall = power_fit(x, [max(r["wall_s"], 1e-6) for r in rows])
            peak = line_fit([r["steps"] for r in rows],
                            [(r["peak_rss"] - r["start_rss"]) / MIB for r in rows])
            linear = line_fit(x, [r["cpu_s"] for r in rows])
            fits = [*(linear or (None, None)), cpu[1] if cpu else None,
                    wall[1] if wall else None, *(peak or (None, None))]
            lines.append(f"| {run['network']} | {stage} | "
                         + " | ".join(_fmt(v) for v in fits) + f" | {len(rows)} |")
    return lines


def _extrapolation(runs: list[dict[str, Any]]) -> list[str]:
    by_name = {run["network"]: run for run in runs}
    src = by_name.get("sew_resnet18_224")
    lines = ["", "## Extrapolation to SEW-ResNet-152 on ImageNet (EXTRAPOLATION, not measured)",
             ""]
    if src is None or len(_ok(src, "calibrate")) < 2:
        return lines + ["Not computed: the SEW-ResNet-18 224 x 224 calibration rows are missing."]
    w18, w152 = work(resnet_layers(18)), work(resnet_layers(152))
    calib = _ok(src, "calibrate")
    # marginal CPU seconds per sample-step (the slope of cpu = a + s N T): the fixed cost a
    # (setting up the sums) does not grow with the data
    per_step = line_fit([r["samples"] * r["steps"] for r in calib], [r["cpu_s"] for r in calib])[1]
    evals = _ok(src, "evaluate")
    eval_step = (line_fit([r["samples"] * r["steps"] for r in evals],
                          [r["cpu_s"] for r in evals]) or (0.0, float(np.median(
                              [r["cpu_s"] / (r["samples"] * r["steps"]) for r in evals]))))[1]
    macs18 = w18["forward_macs"] + w18["hessian_macs"]
    macs152 = w152["forward_macs"] + w152["hessian_macs"]
    cpu_rate = 2 * macs18 / per_step            # FLOP/s calibration achieved here
    eval_rate = 2 * w18["forward_macs"] / eval_step
    import torch
    f32, f64 = gemm_rate(torch.float32), gemm_rate(torch.float64)
    gpu_rate = 25e12   # assumed: H100/H200-class, FP32 GEMMs at ~40 % of the 67 TFLOP/s peak
    n_calib, steps, n_val = 1024, 4, 50_000
    compress_rows = [(r, by_name[r_net]) for r_net in by_name for r in _ok(by_name[r_net],
                                                                              "compress")]
    lines += [
        "Assumptions (each a number you may replace): SEW-ResNet-152 layer shapes (bottlenecks "
        "[3, 8, 36, 3], 224 x 224, 1000 classes; benchmarks/scale_report.py:resnet_layers), "
        f"calibration on N = {n_calib} ImageNet images at T = {steps}, evaluation on the "
        f"{n_val:,} validation images at T = {steps}; a GPU sustains {gpu_rate / 1e12:.0f} "
        "TFLOP/s on these GEMMs (FP32, ~40 % of an H200's 67 TFLOP/s); eight GPUs split the "
        "data (Hessian sums all-reduced) and the layers of the solve.", "",
        f"Work per sample-step (MACs), from the layer shapes: SEW-18 forward "
        f"{w18['forward_macs'] / 1e9:.2f} G + Hessian {w18['hessian_macs'] / 1e9:.2f} G; "
        f"SEW-152 forward {w152['forward_macs'] / 1e9:.2f} G + Hessian "
        f"{w152['hessian_macs'] / 1e9:.2f} G ({macs152 / macs18:.1f}x). Parameters "
        f"{w18['params'] / 1e6:.1f} M vs {w152['params'] / 1e6:.1f} M.", "",
        f"Measured here (1 thread, marginal CPU seconds): calibration {per_step:.3g} s per sample-step of SEW-18 at "
        f"224 x 224 = {cpu_rate / 1e9:.2f} GFLOP/s counting the full rows x n_in^2 product "
        f"(a symmetric product does half of it); evaluation {eval_step:.3g} s per "
        f"sample-step = {eval_rate / 1e9:.2f} GFLOP/s; this machine's 1024^3 GEMM: "
        f"{f32 / 1e9:.1f} GFLOP/s float32, {f64 / 1e9:.1f} GFLOP/s float64 (measured when the "
        "report was written).", ""]
    calib_cpu = per_step * macs152 / macs18 * n_calib * steps
    eval_cpu = eval_step * w152["forward_macs"] / w18["forward_macs"] * n_val * steps
    calib_gpu = 2 * macs152 * n_calib * steps / gpu_rate
    eval_gpu = 2 * w152["forward_macs"] * n_val * steps / gpu_rate
    rows = ["| stage | this CPU, 1 thread (scaled) | 1 GPU | 8 GPUs | memory |",
            "|---|---|---|---|---|"]
    hbytes = w152["hessian_bytes"]
    allreduce = hbytes / 100e9   # assumed 100 GB/s effective all-reduce bandwidth
    rows.append(f"| calibrate | {_dur(calib_cpu)} | {_dur(calib_gpu)} | "
                f"{_dur(calib_gpu / 8 + allreduce)} (incl. {allreduce:.2g} s all-reduce "
                f"of {hbytes / 2**30:.1f} GiB at 100 GB/s) | Hessian sums "
                f"{hbytes / 2**30:.1f} GiB float64 in all (largest "
                f"{w152['largest_hessian_bytes'] / MIB:.0f} MiB) |")
    if compress_rows:
        k = float(np.median([r["cpu_s"] / work(graph_layers_cached(run["network"]))["solver"]
                             for r, run in compress_rows]))
        solve_cpu = k * w152["solver"]
        solve_gpu = solve_cpu * f64 / gpu_rate * 2   # float64 solves: half the FP32 rate
        largest = solve_gpu * w152["largest_solver"] / w152["solver"]
        rows.append(f"| compress | {_dur(solve_cpu)} (fit: {k:.3g} CPU s per unit of "
                    f"n_in^3 + n_out n_in^2, median of {len(compress_rows)} networks) | "
                    f"at least {_dur(solve_gpu)} (a lower bound: the solves' float64 work at "
                    f"half the assumed rate; the solver's per-layer and per-row overhead, which "
                    f"dominates small layers here, is not modelled) | "
                    f"at least {_dur(max(solve_gpu / 8, largest))} (largest layer "
                    f"{_dur(largest)}) | "
                    f"one layer's Hessian and inverse at a time "
                    f"(<= {2 * w152['largest_hessian_bytes'] / MIB:.0f} MiB) |")
    rows.append(f"| evaluate (float) | {_dur(eval_cpu)} | {_dur(eval_gpu)} | "
                f"{_dur(eval_gpu / 8)} | chunked: ~{w152['widest_activation'] * 4 / MIB:.1f}"
                " MiB per sample-step of the widest layer, held under the 64 MiB budget |")
    return lines + rows + ["", "The CPU column scales this machine's measured per-sample-step "
                           "cost by the MAC ratio; the GPU columns divide MACs by the assumed "
                           "rate, so they assume the GPU runs at that rate, which nothing here "
                           "has measured (benchmarks/gpu.py is the check)."]


_GRAPHS: dict[str, list[tuple[str, int, int, int]]] = {}


def graph_layers_cached(name: str) -> list[tuple[str, int, int, int]]:
    if name not in _GRAPHS:
        from standins import NETWORKS
        _GRAPHS[name] = graph_layers(NETWORKS[name][1](np.random.default_rng(0)))
    return _GRAPHS[name]
