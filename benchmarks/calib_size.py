"""Calibration-size ablation: SBC, OBC-current and magnitude against calibration samples per class.

For each network and each setting (90 % and 97 % sparsity, 4-bit weights, and the default run's
``loihi2`` target: 8-bit mantissa times a per-layer power of two), the network is calibrated on
class-balanced draws of ``K`` samples per class (``--calib-per-class K``'s definition, fractions
allowed: :mod:`sbc_deploy.data.sampling`), compressed and evaluated in the float simulator:

- ``SBC``: OBS on the membrane potential (SMP Hessian);
- ``OBC-current``: the same solvers on the input-current Hessian;
- ``magnitude``: magnitude pruning / round-to-nearest (no calibration: one run per setting, drawn
  as a flat line).

Protocol (as benchmarks/accuracy.py, the SBC authors'): LAMP allocation, parallel propagation,
the ``admm`` solver, 1 % damping. ``K`` in 0.1, 0.2, 0.5, 1, 4, 16 per class, three draws
(seeds 0, 1, 2), nested per seed (the draw of a smaller ``K`` is part of the larger one, so each
sample is calibrated once per seed and kernel).

Calibration pools: the sparsity and bits settings draw from the DVS-encoded training digits of
``examples/nmnist_common.py`` (disjoint from the evaluation digits; checked); the ``loihi2``
setting draws from the bundled calibration set (20 per class) exactly as
``sbc-deploy --target loihi2 --calib-per-class K --calib-seed S`` does, and its reference is
the whole bundled set (the default run without ``--calib-per-class``).

Another network: ``--network NAME=MODEL --pool DATA --eval DATA [--dt S --reset zero]`` takes
any model ``sbc_deploy.load`` reads and any data ``sbc_deploy.load_data`` reads (npz, tonic
dataset specs such as ``nmnist:/data/tonic,split=train``); its ``loihi2`` setting then draws
from the pool too. :data:`NETWORKS` maps the bundled names to their loaders; a loader for a new
family of networks (a torch module, once the torch frontend lands) is one more entry.

Usage (the results file records the exact command, run time and machine load)::

    nice -n 15 .venv/bin/python benchmarks/calib_size.py --eval-limit nmnist_cnn=500
    .venv/bin/python benchmarks/calib_size.py --networks nmnist_mlp --sizes 0.1,1 --seeds 1 \\
        --eval-limit 100 --out-dir /tmp/smoke                 # a smoke run

The networks are loaded first, then one draw (seed) at a time runs on every network, cheap
settings first, so that an interrupted run holds whole draws. Rows are appended to the JSON as
they are measured; ``--resume`` skips those already there; ``--render-only`` rewrites the page
and chart from the JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sbc_deploy.calibrate import Calibration, calibrate
from sbc_deploy.compress import compress
from sbc_deploy.compress.config import CompressionConfig, config_for, config_for_target
from sbc_deploy.data import Dataset
from sbc_deploy.data.sampling import balanced_draws
from sbc_deploy.fileio import atomic_path, write_text_atomic
from sbc_deploy.ir import Graph
from sbc_deploy.targets import load_target

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import accuracy  # noqa: E402  (benchmarks/accuracy.py: the training pool and the predictor)

RESULTS = HERE / "results"
SIZES: tuple[float, ...] = (0.1, 0.2, 0.5, 1, 4, 16)
SEEDS: tuple[int, ...] = (0, 1, 2)
METHODS: tuple[str, ...] = ("sbc", "obc", "magnitude")
LABELS: dict[str, str] = {"sbc": "SBC", "obc": "OBC-current", "magnitude": "magnitude"}
KERNELS: dict[str, str] = {"sbc": "smp", "obc": "current"}
FULL_BUNDLED = 20.0   # the bundled calibration set's samples per class (the default run)
SMALL = 1.0           # "the smallest sizes": K <= SMALL

log = logging.getLogger("benchmarks.calib_size")


@dataclass(frozen=True)
class Setting:
    """One compression setting; ``target`` settings are the default run's (bundled pool)."""

    key: str
    label: str
    sparsity: float = 0.0
    bits: int | None = None
    target: str | None = None

    def config(self, method: str) -> CompressionConfig:
        fields_: dict[str, Any] = {"allocation": "lamp", "propagation": "parallel"}
        if method != "magnitude":
            fields_.update(solver="admm", damp_frac=0.01)
        if self.target is not None:
            return config_for_target(load_target(self.target), method=method,
                                     sparsity=self.sparsity or None, bits=self.bits, **fields_)
        return config_for(method, sparsity=self.sparsity, bits=self.bits, **fields_)


SETTINGS: tuple[Setting, ...] = (
    Setting("sparsity90", "90 % sparsity", sparsity=0.9),
    Setting("sparsity97", "97 % sparsity", sparsity=0.97),
    Setting("bits4", "4-bit weights", bits=4),
    Setting("loihi2", "the default run (--target loihi2)", target="loihi2"),
)


@dataclass(frozen=True)
class Network:
    """A network, its evaluation set, the pool its draws come from and the default run's pool
    (``None``: the pool)."""

    name: str
    graph: Graph
    evaluation: Dataset
    pool: Dataset
    default_pool: Dataset | None = None

    def pool_for(self, setting: Setting) -> Dataset:
        return self.default_pool if setting.target and self.default_pool is not None \
            else self.pool


def bundled_network(name: str) -> Network:
    """A bundled network: bundled evaluation set, training-split pool, bundled calibration set."""
    from sbc_deploy.bundled import load_bundled_data, load_bundled_model
    evaluation = load_bundled_data("eval")
    return Network(name, load_bundled_model(name), evaluation, accuracy.training_pool(evaluation),
                   load_bundled_data("calib"))


def csnn_graph(evaluation: Dataset) -> Graph:
    """The spikingjelly CSNN of examples/spikingjelly_csnn.py (Conv-BN-LIF-MaxPool x 2,
    Linear-LIF; trained on the same DVS-encoded split by examples/train_spikingjelly_csnn.py)
    with its weights, imported by ``from_torch`` as ``sbc-deploy FILE.py:build --weights``
    does, at the data's step."""
    from sbc_deploy.frontends.from_torch import from_torch
    from sbc_deploy.frontends.from_torch.factory import apply_weights, load_factory, load_weights

    examples = HERE.parent / "examples"
    module = load_factory(f"{examples / 'spikingjelly_csnn.py'}:build")
    weights = examples / "spikingjelly_csnn.pt"
    apply_weights(module, load_weights(weights), str(weights))
    sample = torch.zeros((evaluation.steps, 1, *evaluation.input_shape))
    return from_torch(module.eval(), sample, "spikingjelly", dt=evaluation.dt)


def spikingjelly_csnn(name: str) -> Network:
    """The CSNN (:func:`csnn_graph`) with the bundled data and the training pool."""
    from sbc_deploy.bundled import load_bundled_data
    evaluation = load_bundled_data("eval")
    return Network(name, csnn_graph(evaluation), evaluation, accuracy.training_pool(evaluation),
                   load_bundled_data("calib"))


NETWORKS: dict[str, Callable[[str], Network]] = {
    "nmnist_mlp": bundled_network,
    "nmnist_cnn": bundled_network,
    "spikingjelly_csnn": spikingjelly_csnn,   # issue 18's CSNN (examples/spikingjelly_csnn.py)
}
DEFAULT_NETWORKS = ("nmnist_mlp", "nmnist_cnn")


def custom_network(name: str, model: str, pool: str, evaluation: str, dt: float | None,
                   reset: str | None) -> Network:
    """A network from a model file and two data sources (any that ``load_data`` reads)."""
    from sbc_deploy import load, load_data
    graph = load(model, dt=dt, reset=reset)
    shape = tuple(graph.nodes[graph.inputs[0]].shape)
    return Network(name, graph, load_data(evaluation, dt=graph.dt, input_shape=shape),
                   load_data(pool, dt=graph.dt, input_shape=shape))


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Row:
    """One measured run (``per_class``/``seed`` ``None``: magnitude, or the whole bundled set)."""

    network: str
    setting: str
    method: str
    per_class: float | None
    seed: int | None
    samples: int
    accuracy: float
    agreement: float
    sparsity: float
    compress_s: float
    eval_s: float

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.network, self.setting, self.method, self.per_class, self.seed)


def seed_calibrations(graph: Graph, pool: Dataset, sizes: Sequence[float], seed: int,
                      kernels: Iterable[str], batch_size: int = 50
                      ) -> dict[tuple[str, float], tuple[Calibration, int]]:
    """``(kernel, K) -> (calibration, samples)`` for one seed's nested draws; each sample is
    simulated once per kernel (Hessian sums add up)."""
    draws = balanced_draws(np.asarray(pool.y), sizes, seed, where=pool.source)
    result: dict[tuple[str, float], tuple[Calibration, int]] = {}
    for kernel in kernels:
        total: Calibration | None = None
        previous = np.empty(0, dtype=np.int64)
        for k in sorted(draws):
            new = np.setdiff1d(draws[k], previous)
            if new.size:
                part = calibrate(graph, pool.x[new], kernel=kernel, batch_size=batch_size)
                total = part if total is None else total + part
            assert total is not None
            result[kernel, k] = (total, int(draws[k].size))
            previous = draws[k]
    return result


def measure(network: Network, setting: Setting, method: str, calibration: Calibration | None,
            reference: np.ndarray, per_class: float | None, seed: int | None,
            samples: int) -> Row:
    """Compress and evaluate one run."""
    start = time.perf_counter()
    compressed, stats = compress(network.graph, calibration, setting.config(method))
    middle = time.perf_counter()
    classes = accuracy.predict(compressed, network.evaluation).classes
    return Row(network.name, setting.key, method, per_class, seed, samples,
               float(np.mean(classes == network.evaluation.y)),
               float(np.mean(classes == reference)), float(stats.sparsity),
               middle - start, time.perf_counter() - middle)


def _run(network: Network, setting: Setting, method: str, calibration: Calibration | None,
         reference: np.ndarray, per_class: float | None, seed: int | None, samples: int,
         done: Mapping[tuple[Any, ...], Row], on_row: Callable[[Row], None]) -> None:
    if (network.name, setting.key, method, per_class, seed) in done:
        return
    row = measure(network, setting, method, calibration, reference, per_class, seed, samples)
    log.info("%s %s %s K=%s seed=%s: %.4f (compress %.1f s, eval %.1f s)", network.name,
             setting.key, method, per_class, seed, row.accuracy, row.compress_s, row.eval_s)
    on_row(row)


def dense_reference(network: Network) -> tuple[float, np.ndarray]:
    """The dense network's accuracy and predictions on the evaluation samples."""
    classes = accuracy.predict(network.graph, network.evaluation).classes
    dense = float(np.mean(classes == network.evaluation.y))
    log.info("%s: dense accuracy %.4f on %d samples", network.name, dense,
             len(network.evaluation))
    return dense, classes


def run_fixed(network: Network, settings: Sequence[Setting], reference: np.ndarray,
              done: Mapping[tuple[Any, ...], Row], on_row: Callable[[Row], None]) -> None:
    """The runs without a draw: magnitude, and the default run's whole bundled set."""
    for setting in settings:
        _run(network, setting, "magnitude", None, reference, None, None, 0, done, on_row)
    targets = [s for s in settings if s.target]
    if targets and network.default_pool is not None:
        pool = network.default_pool
        for method in ("sbc", "obc"):
            if all((network.name, s.key, method, None, None) in done for s in targets):
                continue
            whole = calibrate(network.graph, pool.x, kernel=KERNELS[method], batch_size=50)
            for setting in targets:
                _run(network, setting, method, whole, reference, None, None, len(pool), done,
                     on_row)


def _cost(setting: Setting) -> float:
    """Run order within a draw: quantisation (cheap) before pruning (the solver's time)."""
    return setting.sparsity if setting.sparsity else -1.0


def run_seed(network: Network, settings: Sequence[Setting], sizes: Sequence[float], seed: int,
             reference: np.ndarray, done: Mapping[tuple[Any, ...], Row],
             on_row: Callable[[Row], None]) -> None:
    """SBC and OBC-current at every size of one draw (cheap settings first, SBC and
    OBC-current of a size one after the other)."""
    groups: dict[int, list[Setting]] = defaultdict(list)
    for setting in sorted(settings, key=_cost):
        groups[id(network.pool_for(setting))].append(setting)
    for members in groups.values():
        pool = network.pool_for(members[0])
        wanted = [(s, m, float(k)) for s in members for k in sizes for m in ("sbc", "obc")
                  if (network.name, s.key, m, float(k), seed) not in done]
        if not wanted:
            continue
        tick = time.perf_counter()
        calibrations = seed_calibrations(network.graph, pool, sizes, seed,
                                         sorted({KERNELS[m] for _, m, _ in wanted}))
        log.info("%s seed %d: calibrated on %s in %.0f s", network.name, seed, pool.source,
                 time.perf_counter() - tick)
        for setting, method, k in wanted:
            calibration, samples = calibrations[KERNELS[method], k]
            _run(network, setting, method, calibration, reference, k, seed, samples, done,
                 on_row)


def run_network(network: Network, settings: Sequence[Setting], sizes: Sequence[float],
                seeds: Sequence[int], done: Mapping[tuple[Any, ...], Row],
                on_row: Callable[[Row], None]) -> float:
    """Every run of one network; returns the dense accuracy. ``done`` rows are not re-run."""
    dense, reference = dense_reference(network)
    run_fixed(network, settings, reference, done, on_row)
    for seed in seeds:
        run_seed(network, settings, sizes, seed, reference, done, on_row)
    return dense


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Stat:
    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        array = np.asarray(values, dtype=np.float64)
        return cls(float(array.mean()), float(array.min()), float(array.max()), int(array.size))


def stats(rows: Iterable[Row]) -> dict[tuple[str, str, str, float | None], Stat]:
    """``(network, setting, method, K) -> Stat`` of accuracy over the draws."""
    groups: dict[tuple[str, str, str, float | None], list[float]] = defaultdict(list)
    for row in rows:
        groups[row.network, row.setting, row.method, row.per_class].append(row.accuracy)
    return {key: Stat.of(values) for key, values in groups.items()}


def paired_margin(rows: Iterable[Row], network: str, setting: str, per_class: float,
                  other: str) -> Stat | None:
    """SBC minus ``other`` over the draws (paired by seed; magnitude: its one run)."""
    by_seed: dict[str, dict[int | None, float]] = defaultdict(dict)
    for row in rows:
        if row.network == network and row.setting == setting and (
                row.per_class == per_class or row.method == "magnitude"):
            by_seed[row.method][row.seed] = row.accuracy
    sbc = by_seed.get("sbc", {})
    if other == "magnitude":
        base = by_seed.get("magnitude", {}).get(None)
        diffs = [] if base is None else [v - base for v in sbc.values()]
    else:
        diffs = [v - by_seed[other][s] for s, v in sbc.items() if s in by_seed.get(other, {})]
    return Stat.of(diffs) if diffs else None


def standard_error(accuracy_: float, n: int) -> float:
    """The binomial standard error of an accuracy measured on ``n`` samples."""
    return math.sqrt(max(accuracy_ * (1.0 - accuracy_), 0.0) / n)


def smallest_lossless(rows: Sequence[Row], network: str, setting: str, n_eval: int,
                      sizes: Sequence[float]) -> tuple[float | None, float | None]:
    """``(K, reference)``: the smallest ``K`` from which on (every larger size too) SBC's mean
    over the draws is at least the whole bundled set's accuracy ``a`` minus one standard error
    of an accuracy measured on ``n_eval`` samples, ``sqrt(a (1 - a) / n_eval)``: a smaller
    difference cannot be told apart on this evaluation set."""
    table = stats(rows)
    whole = table.get((network, setting, "sbc", None))
    if whole is None:
        return None, None
    tolerance = standard_error(whole.mean, n_eval) + 1e-12
    found = None
    for k in sorted(sizes, reverse=True):
        stat = table.get((network, setting, "sbc", float(k)))
        if stat is None or stat.mean < whole.mean - tolerance:
            break
        found = float(k)
    return found, whole.mean


def _pct(stat: Stat | None, signed: bool = False, draws: int | None = None) -> str:
    """``mean (low..high)`` in %; ``[n of N draws]`` when fewer than ``draws`` were measured."""
    if stat is None:
        return "-"
    fmt = "{:+.1f}" if signed else "{:.1f}"
    text = fmt.format(100 * stat.mean) if stat.n == 1 else (
        fmt.format(100 * stat.mean) + f" ({fmt.format(100 * stat.low)}.."
        f"{fmt.format(100 * stat.high)})")
    return text if draws is None or stat.n >= draws else f"{text} [{stat.n} of {draws} draws]"


def _k(value: float | None) -> str:
    return "whole set" if value is None else f"{value:g}"


def render(meta: Mapping[str, Any], dense: Mapping[str, float], rows: Sequence[Row],
           sizes: Sequence[float], settings: Sequence[Setting]) -> str:
    """The results page (Markdown)."""
    table = stats(rows)
    n = len(meta.get("seeds", SEEDS))
    lines = ["# Calibration-size ablation", "",
             f"Machine: {meta['machine']}; torch {meta['torch']}, {meta['threads']} thread(s), "
             "run under `nice -n 15` on a machine shared with other work (wall times depend on "
             "its load).", "",
             "| network | command | date | wall | CPU | load avg (start-end) | evaluation |",
             "|---|---|---|---|---|---|---|"]
    for name, info in meta["networks"].items():
        lines.append(f"| {name} | `{info['command']}` | {info['date']} | "
                     f"{info['wall_s'] / 60:.1f} min | {info['cpu_s'] / 60:.1f} min | "
                     f"{info['load_start']:.1f}-{info['load_end']:.1f} | "
                     f"{info['n_eval']} samples |")
    lines += ["", "Cells: accuracy in % on the evaluation samples (float simulator, spike-count "
              f"read-out), mean over {n} class-balanced draws (lowest..highest draw). `K` is "
              "calibration samples per class (`--calib-per-class`; 0.1 = one sample of one "
              "class of ten, 0.5 = one sample of each of five classes). Margins are SBC minus "
              "the other method, paired by draw (SBC and OBC-current see the same samples). "
              "Magnitude needs no calibration: one run per setting.", ""]
    lines += ["## SBC's margin at the smallest calibration sets", "",
              "| network | setting | K | samples | SBC | SBC - OBC-current | SBC - magnitude |",
              "|---|---|---|---|---|---|---|"]
    samples = {(r.network, r.setting, r.per_class): r.samples for r in rows}
    for name in dense:
        for setting in settings:
            for k in (k for k in sizes if k <= SMALL):
                key = (name, setting.key, "sbc", float(k))
                if key not in table:
                    continue
                obc = paired_margin(rows, name, setting.key, float(k), "obc")
                mag = paired_margin(rows, name, setting.key, float(k), "magnitude")
                lines.append(
                    f"| {name} | {setting.label} | {k:g} | "
                    f"{samples.get((name, setting.key, float(k)), '-')} | "
                    f"{_pct(table[key], draws=n)} | {_pct(obc, True, n)} | "
                    f"{_pct(mag, True, n)} |")
    lines += ["", "## The default run's smallest calibration set", ""]
    for name in dense:
        n_eval = meta["networks"][name]["n_eval"]
        k, whole = smallest_lossless(rows, name, "loihi2", n_eval, sizes)
        if whole is None:
            continue
        command = {"nmnist_mlp": "sbc-deploy --target loihi2",
                   "nmnist_cnn": "sbc-deploy nmnist_cnn --target loihi2"}.get(
            name, "--target loihi2")
        lines.append(f"- {name}: `{command}` with the whole bundled calibration set (20 per "
                     f"class) gives {100 * whole:.1f} %; "
                     + ("no size in the grid stays within one standard error of it"
                        if k is None else
                        f"from `--calib-per-class {k:g}` up, SBC's mean over the draws stays "
                        f"within one standard error of the evaluation "
                        f"({100 * standard_error(whole, n_eval):.1f} pts on {n_eval} samples) "
                        "of it"))
    for name in dense:
        lines += ["", f"## {name} (dense {100 * dense[name]:.1f} %)", ""]
        for setting in settings:
            head = ["K", "SBC", "OBC-current", "magnitude", "SBC - OBC-current"]
            lines += [f"### {setting.label}", "", "| " + " | ".join(head) + " |",
                      "|" + "---|" * len(head)]
            mag = table.get((name, setting.key, "magnitude", None))
            ks: list[float | None] = [float(k) for k in sizes]
            if (name, setting.key, "sbc", None) in table:
                ks.append(None)
            for k in ks:
                margin = paired_margin(rows, name, setting.key, k, "obc") if k is not None \
                    else None
                if k is None:
                    sbc, obc = (table.get((name, setting.key, m, None)) for m in ("sbc", "obc"))
                    margin = None if sbc is None or obc is None else \
                        Stat.of([sbc.mean - obc.mean])
                draws = None if k is None else n
                lines.append(f"| {_k(k)} | "
                             f"{_pct(table.get((name, setting.key, 'sbc', k)), draws=draws)} | "
                             f"{_pct(table.get((name, setting.key, 'obc', k)), draws=draws)} | "
                             f"{_pct(mag)} | {_pct(margin, True, draws)} |")
            lines.append("")
    return "\n".join(lines)


def plot(dense: Mapping[str, float], rows: Sequence[Row], sizes: Sequence[float],
         settings: Sequence[Setting], path: Path) -> None:
    """Accuracy against K (log axis): one row of panels per network, one panel per setting."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = stats(rows)
    names = list(dense)
    fig, axes = plt.subplots(len(names), len(settings), figsize=(3.6 * len(settings),
                                                                 3.3 * len(names)), squeeze=False)
    colors = {"sbc": "tab:blue", "obc": "tab:orange", "magnitude": "tab:gray"}
    for r, name in enumerate(names):
        for c, setting in enumerate(settings):
            ax = axes[r][c]
            for method in ("sbc", "obc"):
                found = [(k, table[name, setting.key, method, float(k)]) for k in sizes
                         if (name, setting.key, method, float(k)) in table]
                if not found:
                    continue
                xs = [k for k, _ in found]
                mean = np.array([100 * s.mean for _, s in found])
                ax.plot(xs, mean, marker="o", ms=3, color=colors[method], label=LABELS[method])
                ax.fill_between(xs, [100 * s.low for _, s in found],
                                [100 * s.high for _, s in found], color=colors[method],
                                alpha=0.2, lw=0)
            mag = table.get((name, setting.key, "magnitude", None))
            if mag is not None:
                ax.axhline(100 * mag.mean, color=colors["magnitude"], ls="--", lw=1,
                           label="magnitude")
            ax.axhline(100 * dense[name], color="k", ls=":", lw=1, label="dense")
            ax.set_xscale("log")
            ax.set_title(f"{name}: {setting.label}", fontsize=9)
            ax.set_xlabel("calibration samples per class")
            ax.set_ylabel("accuracy (%)")
            ax.grid(alpha=0.3)
            if r == 0 and c == 0:
                ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


# --------------------------------------------------------------------------- main


def _floats(text: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in text.split(","))
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"positive numbers, got {text!r}")
    return values


def load(path: Path) -> dict[str, Any]:
    """An earlier results file, or an empty one."""
    if not path.is_file():
        return {"meta": {"networks": {}}, "dense_accuracy": {}, "rows": []}
    return json.loads(path.read_text(encoding="utf-8"))


def merge(paths: Sequence[Path], into: Path) -> None:
    """Write the union of several results files to ``into``: rows by key (a later file wins),
    each network's dense accuracy and metadata from the last file that ran it."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    merged: dict[str, Any] = {"meta": {"networks": {}}, "dense_accuracy": {}, "rows": []}
    for path in paths:
        stored = load(path)
        for row in stored["rows"]:
            rows[Row(**row).key] = row
        ran = set(stored["meta"]["networks"])
        merged["meta"].update({k: v for k, v in stored["meta"].items() if k != "networks"})
        merged["meta"]["networks"].update(stored["meta"]["networks"])
        merged["dense_accuracy"].update({k: v for k, v in stored["dense_accuracy"].items()
                                         if k in ran or k not in merged["dense_accuracy"]})
    merged["rows"] = list(rows.values())
    write_text_atomic(into, json.dumps(merged, indent=1) + "\n")


def _record(meta: dict[str, Any], network: Network, clock: Sequence[float], command: str,
            before: Mapping[str, Any] | None) -> None:
    """Store a network's times in ``meta`` (added to ``before``'s, a run this one resumes)."""
    info = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M"),
            "wall_s": clock[0], "cpu_s": clock[1], "load_start": clock[2],
            "load_end": os.getloadavg()[0], "n_eval": len(network.evaluation),
            "pool": network.pool.source}
    if before:
        info["wall_s"] += before["wall_s"]
        info["cpu_s"] += before["cpu_s"]
        info["command"] = f"{before['command']}` then `{command}"
        info["load_start"] = before["load_start"]
    meta["networks"][network.name] = info


def _limits(text: str) -> dict[str, int]:
    """``N`` (every network) or ``NAME=N,NAME=N``; ``""`` maps to the default."""
    out = {}
    for part in text.split(","):
        name, eq, value = part.rpartition("=")
        if not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"expected N or NAME=N, got {part!r}")
        out[name if eq else ""] = int(value)
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(DEFAULT_NETWORKS),
                        help=f"comma-separated, of {', '.join(NETWORKS)} (default "
                             f"{','.join(DEFAULT_NETWORKS)})")
    parser.add_argument("--network", default=None, metavar="NAME=MODEL",
                        help="another network (with --pool and --eval)")
    parser.add_argument("--pool", default=None, help="its calibration pool (labelled DATA)")
    parser.add_argument("--eval", default=None, help="its evaluation set (labelled DATA)")
    parser.add_argument("--dt", type=float, default=None)
    parser.add_argument("--reset", default=None, choices=("zero", "subtract"))
    parser.add_argument("--sizes", type=_floats, default=SIZES)
    parser.add_argument("--seeds", type=int, default=len(SEEDS))
    parser.add_argument("--settings", default=",".join(s.key for s in SETTINGS))
    parser.add_argument("--eval-limit", type=_limits, default={},
                        help="evaluate on the first N evaluation samples (a fixed subset; the "
                             "bundled set is shuffled, so all classes): N or NAME=N,...")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="keep the rows already measured")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the table and chart from the JSON, measuring nothing")
    parser.add_argument("--merge", default=None, metavar="JSON[,JSON...]",
                        help="first merge these results files (e.g. of networks run in "
                             "separate processes) into the output JSON; implies --render-only")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--name", default="calib_size")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    by_key = {s.key: s for s in SETTINGS}
    settings = [by_key[k] for k in args.settings.split(",")]
    seeds = list(range(args.seeds))
    sizes = tuple(sorted(args.sizes))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = {ext: args.out_dir / f"{args.name}.{ext}" for ext in ("md", "json", "png")}
    words = list(argv if argv is not None else sys.argv[1:])
    command = " ".join(["nice -n 15 .venv/bin/python benchmarks/calib_size.py",
                        shlex.join(words)]).strip()

    if args.merge:
        merge([Path(p) for p in args.merge.split(",")], out["json"])
        args.render_only = True
    stored = load(out["json"]) if args.resume or args.render_only else load(Path("/nonexistent"))
    rows = [Row(**row) for row in stored["rows"]]
    dense: dict[str, float] = dict(stored["dense_accuracy"])
    meta: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                                       f"{platform.python_version()}",
                            "torch": torch.__version__, "threads": args.threads,
                            "sizes": list(sizes), "seeds": seeds,
                            "networks": dict(stored["meta"]["networks"])}

    def save() -> None:
        write_text_atomic(out["json"], json.dumps(
            {"meta": meta, "dense_accuracy": dense,
             "rows": [dataclasses.asdict(r) for r in rows]}, indent=1) + "\n")

    def on_row(row: Row) -> None:
        rows.append(row)
        save()

    if args.render_only:
        sizes = tuple(stored["meta"].get("sizes", sizes))
        meta.update({k: stored["meta"][k] for k in ("machine", "torch", "threads", "seeds")
                     if k in stored["meta"]})
    loaders: list[Callable[[], Network]] = [] if args.render_only else [
        (lambda n=name: NETWORKS[n](n)) for name in args.networks.split(",") if name]
    if args.network:
        name, _, model = args.network.partition("=")
        if not model or not args.pool or not args.eval:
            parser.error("--network NAME=MODEL needs --pool DATA and --eval DATA")
        loaders.append(lambda: custom_network(name, model, args.pool, args.eval, args.dt,
                                              args.reset))
    previous = dict(stored["meta"]["networks"]) if args.resume else {}
    networks, references, clocks = [], {}, {}
    for loader in loaders:   # every network first, then one draw at a time across them
        wall, cpu, load_start = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        network = loader()
        limit = args.eval_limit.get(network.name, args.eval_limit.get(""))
        if limit:
            network = dataclasses.replace(
                network, evaluation=network.evaluation.subset(slice(0, limit)))
        dense[network.name], references[network.name] = dense_reference(network)
        run_fixed(network, settings, references[network.name], {r.key: r for r in rows}, on_row)
        networks.append(network)
        clocks[network.name] = [time.perf_counter() - wall, time.process_time() - cpu,
                                load_start]
    for seed in seeds:
        for network in networks:
            wall, cpu = time.perf_counter(), time.process_time()
            run_seed(network, settings, sizes, seed, references[network.name],
                     {r.key: r for r in rows}, on_row)
            clocks[network.name][0] += time.perf_counter() - wall
            clocks[network.name][1] += time.process_time() - cpu
            _record(meta, network, clocks[network.name], command, previous.get(network.name))
            save()
    names = [n for n in dense if n in meta["networks"]]   # a network whose first draw ran
    dense = {n: dense[n] for n in names}
    shown = [r for r in rows if r.network in names]
    page = accuracy.keep_notes(render(meta, dense, shown, sizes, settings), out["md"])
    write_text_atomic(out["md"], page + "\n")
    plot(dense, shown, sizes, settings, out["png"])
    log.info("wrote %s", ", ".join(map(str, out.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
