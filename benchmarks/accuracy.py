"""Accuracy against compression on the bundled N-MNIST-like networks: SBC vs OBC vs magnitude.

For each bundled network (``nmnist_mlp``, ``nmnist_cnn``) and each setting of the grid, the
network is calibrated, compressed and evaluated on the bundled evaluation set (1,000 digits)
in the float simulator (batched), by three methods:

- ``SBC``: OBS on the membrane potential (SMP Hessian), :class:`~sbc_deploy.compress.SBCConfig`;
- ``OBC-current``: the same solvers on the input-current Hessian, ``OBCConfig``;
- ``magnitude/RTN``: magnitude pruning and round-to-nearest, ``MagnitudeConfig``.

Settings (the authors' protocol: LAMP allocation for every method, parallel propagation, the
library's default solver and damping):

- sparsity 50/70/90/95/97/98 %, and 90-98 % again with the ``global`` allocation (SBC and
  OBC); weight bits 8/4/3/2 (per-channel symmetric ``int`` grid, mse clipping); joint
  90 % + 4 bits; the ``loihi2`` target (``config_for_target``: 8-bit mantissa x 2**exp per
  layer), whose integer-core accuracy is measured too (netx export read back, then
  :func:`~sbc_deploy.sim.int_core.evaluate_deployed`, as ``sbc-deploy`` does);
- a calibration-size ablation from 1 to 100 samples per class;
- issue 7: SMP vs current Hessian (SBC vs OBC everywhere), parallel vs sequential propagation,
  uniform vs LAMP vs global allocation.

Calibration data: class-balanced draws from the DVS-encoded *training* digits of
``examples/nmnist_common.py`` (the split the networks were trained on, disjoint from the
evaluation digits; the script checks that the bundled evaluation set is that split's test
part). Every OBS run is repeated for three seeds of the calibration draw (nested: the 5-per-class
draw of a seed contains its 1-per-class draw); magnitude/RTN needs no calibration and runs once.
Tables give the mean and, in brackets, the lowest and highest of the seeds.

Usage (the results file records the exact command, run time and machine load)::

    .venv/bin/python benchmarks/accuracy.py                 # full grid -> results/accuracy.*
    .venv/bin/python benchmarks/accuracy.py --quick         # reduced grid, one seed
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
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sbc_deploy.calibrate import Calibration, calibrate
from sbc_deploy.compress import compress
from sbc_deploy.compress.config import CompressionConfig, config_for, config_for_target
from sbc_deploy.data import Dataset
from sbc_deploy.errors import DataError
from sbc_deploy.fileio import atomic_path, write_text_atomic
from sbc_deploy.ir import Graph, Neuron
from sbc_deploy.sim import classify, default_decoding, simulate
from sbc_deploy.targets import load_target

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NETWORKS: tuple[str, ...] = ("nmnist_mlp", "nmnist_cnn")
METHODS: tuple[str, ...] = ("sbc", "obc", "magnitude")
LABELS: dict[str, str] = {"sbc": "SBC", "obc": "OBC-current", "magnitude": "magnitude/RTN"}
KERNELS: dict[str, str] = {"sbc": "smp", "obc": "current"}
CALIB_PER_CLASS = 20  # the bundled calibration set's size per class
DAMP_FRAC = 0.01      # the library's default relative damping (GPTQ's percdamp)

log = logging.getLogger("benchmarks.accuracy")


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Spec:
    """One compression setting (a cell of the grid), independent of the calibration seed.

    Attributes:
        method: ``"sbc"``, ``"obc"`` or ``"magnitude"``.
        sparsity: overall target sparsity of the synapse layers.
        bits: weight bits (``None``: no quantisation).
        target: a hardware target name (``config_for_target``), or ``None``.
        allocation: per-layer split of the sparsity.
        propagation: ``"parallel"`` or ``"sequential"``.
        per_class: calibration samples per class (unused by magnitude).
        damp_frac, solver, clip: the library's settings (``None``: its default).
    """

    method: str
    sparsity: float = 0.0
    bits: int | None = None
    target: str | None = None
    allocation: str = "lamp"
    propagation: str = "parallel"
    per_class: int = CALIB_PER_CLASS
    damp_frac: float = DAMP_FRAC
    solver: str | None = None
    clip: str | None = None

    @property
    def calibrated(self) -> bool:
        """True when the method uses a calibration (so it is run once per seed)."""
        return self.method != "magnitude"

    @property
    def default_solver(self) -> bool:
        """True for the benchmark's standard solver, damping and grid (the main tables)."""
        return self.solver is None and self.damp_frac == DAMP_FRAC and self.clip is None

    def config(self, solver: str) -> CompressionConfig:
        """The library's config for this setting (``solver``: unless the spec names one)."""
        fields_: dict[str, Any] = {"allocation": self.allocation, "propagation": self.propagation}
        if self.clip is not None:
            fields_["clip"] = self.clip
        if self.calibrated:
            fields_["solver"] = self.solver or solver
            fields_["damp_frac"] = self.damp_frac
        if self.target is not None:
            return config_for_target(load_target(self.target), method=self.method,
                                     sparsity=self.sparsity, bits=self.bits, **fields_)
        return config_for(self.method, sparsity=self.sparsity, bits=self.bits, **fields_)


@dataclass(frozen=True)
class Grid:
    """The settings of one benchmark run.

    Attributes:
        sparsities: pruning-only settings.
        bits: quantisation-only settings.
        joint: ``(sparsity, bits)`` settings.
        target: hardware target for the deployment rows; ``target_sparsities`` its sparsities.
        study_sparsity: the sparsity of the calibration-size, propagation and allocation studies.
        calib_sizes: samples per class of the calibration-size ablation.
        sequential: also run SBC at ``study_sparsity`` (and ``sequential_bits``) with
            sequential propagation.
        sequential_bits: quantisation settings also run with sequential propagation (SBC).
        allocations: allocations compared (SBC at ``study_sparsity``).
        global_sparsities: SBC and OBC-current also run with the ``"global"`` allocation
            (least relative OBS loss) at these sparsities.
        extra: further settings (investigations), listed in their own table.
    """

    sparsities: tuple[float, ...] = (0.5, 0.7, 0.9, 0.95, 0.97, 0.98)
    bits: tuple[int, ...] = (8, 4, 3, 2)
    joint: tuple[tuple[float, int], ...] = ((0.9, 4),)
    target: str = "loihi2"
    target_sparsities: tuple[float, ...] = (0.0,)
    study_sparsity: float = 0.9
    calib_sizes: tuple[int, ...] = (1, 5, 20, 100)
    sequential: bool = True
    sequential_bits: tuple[int, ...] = (2,)
    allocations: tuple[str, ...] = ("uniform", "lamp", "global")
    global_sparsities: tuple[float, ...] = (0.9, 0.95, 0.97, 0.98)
    extra: tuple[Spec, ...] = ()

    def specs(self) -> list[Spec]:
        """Every distinct setting, in run order (duplicates across studies appear once)."""
        specs: list[Spec] = []
        for sparsity in self.sparsities:
            specs += [Spec(m, sparsity=sparsity) for m in METHODS]
        for sparsity in self.global_sparsities:
            specs += [Spec(m, sparsity=sparsity, allocation="global") for m in ("sbc", "obc")]
        for bits in self.bits:
            specs += [Spec(m, bits=bits) for m in METHODS]
        for sparsity, bits in self.joint:
            specs += [Spec(m, sparsity=sparsity, bits=bits) for m in METHODS]
        for sparsity in self.target_sparsities:
            specs += [Spec(m, sparsity=sparsity, target=self.target) for m in METHODS]
        for per_class in self.calib_sizes:
            specs += [Spec(m, sparsity=self.study_sparsity, per_class=per_class)
                      for m in ("sbc", "obc")]
        if self.sequential:
            specs.append(Spec("sbc", sparsity=self.study_sparsity, propagation="sequential"))
            specs += [Spec("sbc", bits=bits, propagation="sequential")
                      for bits in self.sequential_bits]
        specs += [Spec("sbc", sparsity=self.study_sparsity, allocation=allocation)
                  for allocation in self.allocations]
        specs += list(self.extra)
        return list(dict.fromkeys(specs))

    def per_class_sizes(self) -> tuple[int, ...]:
        return tuple(sorted({CALIB_PER_CLASS, *self.calib_sizes}))


FULL = Grid()
INVESTIGATION: tuple[Spec, ...] = tuple(
    Spec(m, sparsity=0.97, **change) for change in (
        {"damp_frac": 0.001}, {"damp_frac": 0.1}, {"solver": "sparsegpt"},
        {"allocation": "global"}, {"allocation": "uniform"}, {"per_class": 100})
    for m in ("sbc", "obc")) + tuple(
    Spec(m, bits=4, **change) for change in ({"damp_frac": 0.1}, {"per_class": 100},
                                             {"clip": "minmax"})
    for m in ("sbc", "obc"))
QUICK = Grid(sparsities=(0.9, 0.97), bits=(4,), calib_sizes=(), sequential=False,
             allocations=("lamp",), global_sparsities=(0.97,))


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Network:
    """A network to benchmark with its evaluation set and its pool of calibration samples."""

    name: str
    graph: Graph
    evaluation: Dataset
    pool: Dataset


def load_network(name: str, models_dir: Path | None = None) -> tuple[Graph, Dataset]:
    """A bundled network and the bundled evaluation set (or those in ``models_dir``)."""
    if models_dir is None:
        from sbc_deploy.bundled import load_bundled_data, load_bundled_model
        return load_bundled_model(name), load_bundled_data("eval")
    from sbc_deploy.data import read_npz
    from sbc_deploy.frontends.from_nir import from_nir
    return from_nir(models_dir / f"{name}.nir"), read_npz(models_dir / "nmnist_eval.npz")


def training_pool(evaluation: Dataset) -> Dataset:
    """The DVS-encoded training digits of ``examples/nmnist_common.py`` (calibration pool).

    Raises:
        DataError: ``evaluation`` is not that split's test part, so the pool could overlap it.
    """
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from nmnist_common import dvs_mnist
    finally:
        sys.path.remove(str(ROOT / "examples"))
    splits = dvs_mnist()
    test = splits.test
    if not (test.x.shape == evaluation.x.shape and np.array_equal(test.x, evaluation.x)
            and np.array_equal(test.y, evaluation.y)):
        raise DataError("the evaluation set is not the test split of examples/nmnist_common.py; "
                        "its training split could overlap the evaluation digits",
                        where=evaluation.source)
    return splits.train


def nested_draws(labels: np.ndarray, sizes: Iterable[int], seed: int) -> dict[int, np.ndarray]:
    """Class-balanced sample indices per size, nested: a smaller draw is part of a larger one.

    One random permutation of every class's samples (seeded by ``seed``); the draw of size
    ``k`` takes the first ``k`` of each class. Indices are sorted.

    Raises:
        DataError: a class has fewer samples than the largest size.
    """
    rng = np.random.default_rng(seed)
    sizes = sorted(set(sizes))
    perms = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if sizes and len(members) < sizes[-1]:
            raise DataError(f"class {c} has {len(members)} samples, fewer than {sizes[-1]}",
                            where="calibration pool")
        perms.append(rng.permutation(members))
    return {k: np.sort(np.concatenate([p[:k] for p in perms])) for k in sizes}


def seed_calibrations(graph: Graph, pool: Dataset, sizes: Sequence[int], seed: int,
                      kernels: Sequence[str], batch_size: int = 50
                      ) -> dict[tuple[str, int], Calibration]:
    """Calibrations of every kernel at every size for one seed's nested draws.

    Hessian sums add up, so each size only calibrates the samples the smaller draw lacks.
    Each calibration keeps its draw's inputs (sequential propagation re-runs them).
    """
    draws = nested_draws(np.asarray(pool.y), sizes, seed)
    result: dict[tuple[str, int], Calibration] = {}
    for kernel in kernels:
        total: Calibration | None = None
        previous = np.empty(0, dtype=np.int64)
        for k in sorted(draws):
            new = np.setdiff1d(draws[k], previous)
            part = calibrate(graph, pool.x[new], kernel=kernel, batch_size=batch_size)
            total = part if total is None else total + part
            result[kernel, k] = dataclasses.replace(total, data=pool.x[draws[k]])
            previous = draws[k]
    return result


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Predictions:
    """Classes predicted on an evaluation set.

    Attributes:
        classes: the graph's natural read-out (spike count; ties go to the lowest class).
        ties: fraction of samples whose highest score is shared by several classes.
        tie_broken: spike count with ties broken by the output neurons' mean membrane
            potential (a decoding experiment; equal to ``classes`` for membrane read-outs).
    """

    classes: np.ndarray
    ties: float
    tie_broken: np.ndarray


def predict(graph: Graph, data: Dataset, batch_size: int = 250) -> Predictions:
    """:class:`Predictions` of ``graph`` in the float simulator, batched."""
    mode = default_decoding(graph)
    output = graph.outputs[0]
    (source,) = graph.predecessors(output)[:1]
    node = graph.nodes[source]
    membrane = f"{source}:v" if mode == "spike_count" and isinstance(node, Neuron) else None
    classes, broken, tied = [], [], 0
    for x, _ in data.batches(batch_size):
        result = simulate(graph, torch.from_numpy(x), record=[membrane] if membrane else [])
        outputs = result.outputs[output]
        classes.append(classify(outputs, mode).numpy())
        score = (outputs.sum(0) if mode == "spike_count" else outputs[-1]).reshape(
            outputs.shape[1], -1)
        top = score == score.max(dim=1, keepdim=True).values
        tied += int((top.sum(dim=1) > 1).sum())
        if membrane is None:
            broken.append(classes[-1])
            continue
        v = result.recorded[membrane].mean(0).reshape(outputs.shape[1], -1)
        broken.append(torch.where(top, v, -math.inf).argmax(dim=1).numpy())
    return Predictions(np.concatenate(classes), tied / len(data), np.concatenate(broken))


def float_accuracy(graph: Graph, data: Dataset, batch_size: int = 250) -> float:
    """Accuracy of ``graph`` in the float simulator (:func:`predict`)."""
    return float(np.mean(predict(graph, data, batch_size).classes == data.y))


def integer_accuracy(graph: Graph, data: Dataset, batch_size: int = 250) -> tuple[float, float]:
    """``(integer core, float simulator)`` accuracies of the network as deployed.

    As ``sbc-deploy`` does: the graph is exported to netx (pools folded into convolutions,
    gains into weights), read back, and run on the bit-accurate core next to the float
    simulator (:func:`~sbc_deploy.sim.int_core.evaluate_deployed`).
    """
    from sbc_deploy.exporters import EXPORTERS
    from sbc_deploy.frontends import from_netx
    from sbc_deploy.sim.int_core import evaluate_deployed

    with tempfile.TemporaryDirectory(prefix="sbc-accuracy-") as folder:
        path = Path(folder) / "model.net"
        EXPORTERS["netx"](graph, path, steps=data.steps)
        deployed = from_netx(path, dt=graph.dt)
    spikes = np.array(np.swapaxes(data.x, 0, 1))  # a writable copy for torch
    result = evaluate_deployed(deployed, spikes, np.array(data.y), batch_size=batch_size)
    return result.integer_accuracy, result.float_accuracy


@dataclass(frozen=True)
class Run:
    """One measured run: a setting, a calibration seed (``None``: no calibration) and results.

    ``achieved_sparsity``: zero fraction of the compressed layers (pruned or rounded to 0);
    ``seconds``: compression wall time; ``eval_seconds``: evaluation wall time; ``ties``: the
    fraction of evaluation samples with a tied top output; ``agreement``: with the dense
    predictions; ``integer_accuracy`` / ``deployed_float_accuracy``: target runs only.
    """

    network: str
    spec: Spec
    seed: int | None
    accuracy: float
    achieved_sparsity: float
    layer_sparsity: Mapping[str, float]
    seconds: float
    cpu_seconds: float
    eval_seconds: float = 0.0
    ties: float = 0.0
    accuracy_tie_broken: float | None = None
    agreement: float | None = None
    integer_accuracy: float | None = None
    deployed_float_accuracy: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """A flat JSON row: the run's fields with the spec's fields inlined."""
        row = dataclasses.asdict(self)
        row.update(row.pop("spec"))
        row["layer_sparsity"] = dict(self.layer_sparsity)
        return row

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Run:
        """The run of an :meth:`as_dict` row (results of an earlier invocation)."""
        names = {f.name for f in dataclasses.fields(Spec)}
        spec = Spec(**{k: v for k, v in row.items() if k in names})
        return cls(spec=spec, **{k: v for k, v in row.items()
                                 if k not in names and k in {f.name for f in
                                                             dataclasses.fields(cls)}})


def run_spec(network: Network, spec: Spec, calibration: Calibration | None, seed: int | None,
             *, solver: str = "admm", batch_size: int = 250,
             reference: np.ndarray | None = None) -> Run:
    """Compress ``network`` as ``spec`` says and measure it (``seconds``: compression only).

    ``reference``: the dense network's predictions; the run then records the fraction of
    samples on which the compressed network predicts the same class (``agreement``).
    """
    cpu = time.process_time()
    start = time.perf_counter()
    compressed, stats = compress(network.graph, calibration, spec.config(solver))
    seconds = time.perf_counter() - start
    pred = predict(compressed, network.evaluation, batch_size)
    accuracy = float(np.mean(pred.classes == network.evaluation.y))
    agreement = None if reference is None else float(np.mean(pred.classes == reference))
    integer = deployed = None
    if spec.target is not None:
        integer, deployed = integer_accuracy(compressed, network.evaluation, batch_size)
    return Run(network.name, spec, seed, accuracy, stats.sparsity,
               {layer.name: layer.sparsity for layer in stats.layers}, seconds,
               time.process_time() - cpu, time.perf_counter() - start - seconds, pred.ties,
               float(np.mean(pred.tie_broken == network.evaluation.y)), agreement, integer,
               deployed)


@dataclass(frozen=True)
class NetworkResult:
    """Everything measured on one network."""

    dense: float
    dense_ties: float
    dense_tie_broken: float
    runs: tuple[Run, ...]
    calibration_seconds: float


def run_network(network: Network, specs: Sequence[Spec], seeds: Sequence[int], *,
                solver: str = "admm", batch_size: int = 250,
                first_seed_only: Collection[Spec] = (),
                done: Collection[tuple[Spec, int | None]] = (),
                progress: Callable[[str], None] | None = None) -> NetworkResult:
    """The dense accuracy and every run of ``specs``: calibrated ones once per seed (only the
    first seed for the specs in ``first_seed_only``), magnitude/RTN once; the ``(spec, seed)``
    pairs in ``done`` (seed ``None`` for magnitude/RTN) are skipped."""
    say = progress or (lambda message: None)
    dense_pred = predict(network.graph, network.evaluation, batch_size)
    reference, ties = dense_pred.classes, dense_pred.ties
    dense = float(np.mean(reference == network.evaluation.y))
    dense_tie_broken = float(np.mean(dense_pred.tie_broken == network.evaluation.y))
    say(f"{network.name}: dense accuracy {dense:.4f} ({ties:.1%} of the samples tied)")
    runs = [run_spec(network, spec, None, None, solver=solver, batch_size=batch_size,
                     reference=reference)
            for spec in specs if not spec.calibrated and (spec, None) not in done]
    calibration_seconds = 0.0
    for i, seed in enumerate(seeds):
        calibrated = [spec for spec in specs
                      if spec.calibrated and (i == 0 or spec not in first_seed_only)
                      and (spec, seed) not in done]
        if not calibrated:
            continue
        sizes = sorted({spec.per_class for spec in calibrated})
        kernels = sorted({KERNELS[spec.method] for spec in calibrated})
        tick = time.perf_counter()
        calibrations = seed_calibrations(network.graph, network.pool, sizes, seed, kernels)
        calibration_seconds += time.perf_counter() - tick
        say(f"{network.name} seed {seed}: calibrated {len(calibrations)} "
            f"(kernel, size) pairs in {time.perf_counter() - tick:.0f} s")
        for spec in calibrated:
            run = run_spec(network, spec, calibrations[KERNELS[spec.method], spec.per_class],
                           seed, solver=solver, batch_size=batch_size, reference=reference)
            runs.append(run)
            say(f"{network.name} seed {seed}: {describe(spec)}: {run.accuracy:.4f} "
                f"(compress {run.seconds:.0f} s)")
    return NetworkResult(dense, ties, dense_tie_broken, tuple(runs), calibration_seconds)


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Stat:
    """Accuracy of one setting over its seeds."""

    n: int
    mean: float
    low: float
    high: float
    std: float

    @property
    def spread(self) -> float:
        """Highest minus lowest seed."""
        return self.high - self.low

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        array = np.asarray(values, dtype=np.float64)
        return cls(int(array.size), float(array.mean()), float(array.min()), float(array.max()),
                   float(array.std(ddof=1)) if array.size > 1 else 0.0)


def summarize(runs: Iterable[Run], value: str = "accuracy") -> dict[tuple[str, Spec], Stat]:
    """``(network, spec) -> Stat`` of ``value`` over the seeds."""
    groups: dict[tuple[str, Spec], list[float]] = defaultdict(list)
    for run in runs:
        v = getattr(run, value)
        if v is not None:
            groups[run.network, run.spec].append(v)
    return {key: Stat.of(values) for key, values in groups.items()}


def describe(spec: Spec) -> str:
    parts = [LABELS[spec.method]]
    if spec.target:
        parts.append(spec.target)
    if spec.sparsity:
        parts.append(f"{spec.sparsity:.0%}")
    if spec.bits:
        parts.append(f"{spec.bits} bits")
    if spec.allocation != "lamp":
        parts.append(spec.allocation)
    if spec.propagation != "parallel":
        parts.append(spec.propagation)
    if spec.per_class != CALIB_PER_CLASS and spec.calibrated:
        parts.append(f"{spec.per_class}/class")
    if spec.damp_frac != DAMP_FRAC:
        parts.append(f"damping {spec.damp_frac:g}")
    if spec.solver is not None:
        parts.append(f"solver {spec.solver}")
    if spec.clip is not None:
        parts.append(f"clip {spec.clip}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Claim:
    network: str
    claim: str
    holds: bool | None
    detail: str


def _margin(stats: Mapping[tuple[str, Spec], Stat], network: str, spec: Spec, other: Spec
            ) -> tuple[bool, str] | None:
    a, b = stats.get((network, spec)), stats.get((network, other))
    if a is None or b is None:
        return None
    margin, spread = a.mean - b.mean, max(a.spread, b.spread)
    return margin > spread, (f"{LABELS[spec.method]} {100 * a.mean:.1f} vs "
                             f"{LABELS[other.method]} {100 * b.mean:.1f}: margin "
                             f"{100 * margin:+.1f} pts, seed spread {100 * spread:.1f} pts")


def check_claims(stats: Mapping[tuple[str, Spec], Stat], dense: Mapping[str, float],
                 grid: Grid) -> list[Claim]:
    """The claims of issue 6, each with whether it holds on the measured numbers.

    - on ``nmnist_mlp``: SBC at 97 % sparsity loses at most 2 points, 4-bit SBC at most 0.5;
    - on every network, at every sparsity >= 90 %: SBC beats OBC-current and magnitude by a
      margin (difference of the means) larger than the seed spread (the larger of the two
      settings' highest-minus-lowest seed).
    """
    claims = []
    for network in dense:
        if network == "nmnist_mlp":
            for spec, limit in ((Spec("sbc", sparsity=0.97), 0.02),
                                (Spec("sbc", sparsity=0.97, allocation="global"), 0.02),
                                (Spec("sbc", bits=4), 0.005)):
                stat = stats.get((network, spec))
                if stat is None:
                    continue
                drop = dense[network] - stat.mean
                worst = dense[network] - stat.low
                claims.append(Claim(network, f"{describe(spec)} loses <= {100 * limit:.1f} pts",
                                    drop <= limit + 1e-9,  # accuracies are k / N: exact ties
                                    f"dense {100 * dense[network]:.1f}, SBC {100 * stat.mean:.1f}"
                                    f" (seeds {100 * stat.low:.1f}-{100 * stat.high:.1f}): loss "
                                    f"{100 * drop:.1f} pts (worst seed {100 * worst:.1f})"))
        for sparsity in (s for s in grid.sparsities if s >= 0.9 - 1e-9):
            for allocation in ("lamp", "global"):
                for other in ("obc", "magnitude"):
                    sbc = Spec("sbc", sparsity=sparsity, allocation=allocation)
                    # magnitude has no loss curve (no calibration): LAMP, its own baseline
                    rival = Spec(other, sparsity=sparsity,
                                 allocation="lamp" if other == "magnitude" else allocation)
                    found = _margin(stats, network, sbc, rival)
                    if found is not None:
                        claims.append(Claim(network, f"{describe(sbc)} beats {describe(rival)} "
                                            "by more than the seed spread", *found))
    return claims


# --------------------------------------------------------------------------- report


def _pct(stat: Stat | None) -> str:
    if stat is None:
        return "-"
    if stat.n == 1:
        return f"{100 * stat.mean:.1f}"
    return f"{100 * stat.mean:.1f} ({100 * stat.low:.1f}-{100 * stat.high:.1f})"


def _diff(a: Stat | None, b: Stat | None) -> str:
    return "-" if a is None or b is None else f"{100 * (a.mean - b.mean):+.1f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _method_table(stats: Mapping[tuple[str, Spec], Stat], network: str, first: str,
                  rows: Sequence[tuple[str, Callable[[str], Spec]]],
                  agreement: Mapping[tuple[str, Spec], Stat] | None = None) -> list[str]:
    header = [first, *(LABELS[m] for m in METHODS), "SBC - OBC", "SBC - magnitude"]
    if agreement is not None:
        header += [f"agrees with dense: {LABELS[m]}" for m in METHODS]
    body = []
    for label, make in rows:
        s = {m: stats.get((network, make(m))) for m in METHODS}
        row = [label, *(_pct(s[m]) for m in METHODS), _diff(s["sbc"], s["obc"]),
               _diff(s["sbc"], s["magnitude"])]
        if agreement is not None:
            row += [_pct(agreement.get((network, make(m)))) for m in METHODS]
        body.append(row)
    return _table(header, body)


def hessian_wins(stats: Mapping[tuple[str, Spec], Stat], network: str) -> tuple[int, int, int,
                                                                                   float]:
    """SBC vs OBC over every setting run with both: ``(wins, ties, losses, mean difference)``
    where a win / loss is a difference of the means larger than both settings' seed spread."""
    wins = ties = losses = 0
    diffs = []
    for (net, spec), stat in stats.items():
        if net != network or spec.method != "sbc":
            continue
        other = stats.get((network, dataclasses.replace(spec, method="obc")))
        if other is None:
            continue
        diff, spread = stat.mean - other.mean, max(stat.spread, other.spread)
        diffs.append(diff)
        wins += diff > spread
        losses += -diff > spread
        ties += abs(diff) <= spread
    return wins, ties, losses, float(np.mean(diffs)) if diffs else math.nan


@dataclass(frozen=True)
class _Summaries:
    """The runs' means and spreads (``summarize``), one mapping per measure:
    (network, spec) -> Stat."""

    accuracy: Mapping[tuple[str, Spec], Stat]
    agreement: Mapping[tuple[str, Spec], Stat]
    integer: Mapping[tuple[str, Spec], Stat]
    deployed: Mapping[tuple[str, Spec], Stat]
    tie_broken: Mapping[tuple[str, Spec], Stat]
    ties: Mapping[tuple[str, Spec], Stat]


def render_markdown(grid: Grid, dense: Mapping[str, float], runs: Sequence[Run],
                    claims: Sequence[Claim], meta: Mapping[str, Any]) -> str:
    """The results page: how it was made, the claims, then one section per network.

    ``meta``: ``machine``, ``torch`` and, per network under ``networks``, the ``command``,
    ``date``, ``wall_s``, ``cpu_s``, ``calibration_s``, ``investigation_s``, ``load_start``,
    ``load_end``, ``seeds``, ``solver``, ``threads`` and ``eval_limit`` of the run that made it.
    """
    stats = _Summaries(summarize(runs), summarize(runs, "agreement"),
                       summarize(runs, "integer_accuracy"),
                       summarize(runs, "deployed_float_accuracy"),
                       summarize(runs, "accuracy_tie_broken"), summarize(runs, "ties"))
    lines = _header_lines(dense, claims, meta)
    for network in dense:
        lines += [f"## {network}", "", f"Dense accuracy: {100 * dense[network]:.1f} %.", ""]
        lines += _compression_tables(grid, network, stats)
        lines += _target_table(grid, network, stats)
        lines += _calibration_size_table(grid, network, stats.accuracy)
        lines += _choice_tables(grid, network, stats.accuracy, runs)
        lines += _tie_table(grid, network, dense[network], meta["networks"][network], stats)
        if grid.extra:
            lines += _investigation_table(grid, network, stats.accuracy, runs)
    return "\n".join(lines)


def _header_lines(dense: Mapping[str, float], claims: Sequence[Claim],
                  meta: Mapping[str, Any]) -> list[str]:
    """The page's title, the machine, each network's run, the protocol and the claims."""
    per_net = meta["networks"]
    first = per_net[next(iter(dense))]
    lines = ["# Accuracy vs compression on the bundled networks", "",
             (f"Machine: {meta['machine']}; torch {meta['torch']}. The machine is shared with "
             "other work: wall times depend on its load (CPU time is the process's own)."), ""]
    lines += _table(["network", "command", "date", "wall", "CPU", "load avg", "calibration",
                     "investigation"],
                    [[net, f"`{m['command']}`", m["date"], f"{m['wall_s'] / 60:.1f} min",
                      f"{m['cpu_s'] / 60:.1f} min",
                      f"{m['load_start']:.1f}-{m['load_end']:.1f}",
                      f"{m['calibration_s'] / 60:.1f} min",
                      f"{m['investigation_s'] / 60:.1f} min"] for net, m in per_net.items()])
    lines += [(f"Protocol: calibration = {CALIB_PER_CLASS} training digits per class (the "
               "bundled calibration set's size), drawn with seeds "
               f"{', '.join(map(str, first['seeds']))} from the DVS-encoded training split of "
               "examples/nmnist_common.py (disjoint from the evaluation digits; checked); "
               "evaluation = the bundled 1,000 test digits"
               f"{' (first ' + str(first['eval_limit']) + ')' if first.get('eval_limit') else ''}"
               f", float simulator, spike-count read-out, {first['threads']} torch threads. "
               "LAMP allocation for every method (the SBC authors' protocol) unless a table "
               "says `global`, parallel "
               f"propagation, solver `{first['solver']}`, 1 % damping, GPTQ sweep in SBC's "
               "column order for quantisation onto the library's default grid (per-channel "
               "symmetric, mse clipping; min-max, the authors' grid, is an investigation row). "
               "Cells: accuracy in %, mean over the seeds "
               "(lowest-highest seed); magnitude/RTN needs no calibration and runs once. "
               "'Agrees with dense': the fraction of evaluation samples on which the compressed "
               "network predicts the dense network's class (a less noisy measure of fidelity "
               "than accuracy)."), "",
             "## Claims (issue 6)", ""]
    lines += _table(["network", "claim", "holds", "numbers"],
                    [[c.network, c.claim, {True: "yes", False: "**no**", None: "-"}[c.holds],
                      c.detail] for c in claims])
    return lines


def _compression_tables(grid: Grid, network: str, stats: _Summaries) -> list[str]:
    """Pruning (LAMP, and global where the grid has it), quantisation and joint settings."""
    accuracy, agree = stats.accuracy, stats.agreement
    lines = ["### Pruning", ""]
    lines += _method_table(accuracy, network, "sparsity",
                           [(f"{s:.0%}", lambda m, s=s: Spec(m, sparsity=s))
                            for s in grid.sparsities], agree)
    if grid.global_sparsities:
        lines += ["### Pruning, global allocation (least relative OBS loss)", "",
                  ("SBC and OBC-current with the library's `global` allocation instead of "
                   "LAMP; magnitude/RTN keeps LAMP (it has no calibration for a loss "
                   "curve)."), ""]
        lines += _method_table(
            accuracy, network, "sparsity",
            [(f"{s:.0%}", lambda m, s=s: Spec(m, sparsity=s, allocation="lamp" if
                                              m == "magnitude" else "global"))
             for s in grid.global_sparsities], agree)
    lines += ["### Quantisation (per-channel symmetric int grid, mse clipping)", ""]
    lines += _method_table(accuracy, network, "bits",
                           [(str(b), lambda m, b=b: Spec(m, bits=b)) for b in grid.bits],
                           agree)
    lines += ["### Joint", ""]
    lines += _method_table(accuracy, network, "setting",
                           [(f"{s:.0%} + {b} bits", lambda m, s=s, b=b:
                             Spec(m, sparsity=s, bits=b)) for s, b in grid.joint], agree)
    return lines


def _target_table(grid: Grid, network: str, stats: _Summaries) -> list[str]:
    """The target's weight grid: float, deployed float and integer-core accuracy."""
    lines = [f"### Target {grid.target} (config_for_target: its weight grid)", "",
             ("Float: the compressed graph in the float simulator; deployed: the netx "
             "export read back, in the float simulator and on the bit-accurate integer "
             "core (`evaluate_deployed`)."), ""]
    body = []
    for s in grid.target_sparsities:
        for m in METHODS:
            key = (network, Spec(m, sparsity=s, target=grid.target))
            body.append([f"{s:.0%}", LABELS[m], _pct(stats.accuracy.get(key)),
                         _pct(stats.deployed.get(key)), _pct(stats.integer.get(key))])
    return lines + _table(["sparsity", "method", "float", "deployed float", "integer core"],
                          body)


def _calibration_size_table(grid: Grid, network: str, stats: Mapping[tuple[str, Spec], Stat]
                            ) -> list[str]:
    """SBC and OBC-current at the study sparsity, per calibration size."""
    lines = [f"### Calibration size (at {grid.study_sparsity:.0%} sparsity)", ""]
    body = []
    for k in grid.per_class_sizes():
        a, b = (stats.get((network, Spec(m, sparsity=grid.study_sparsity, per_class=k)))
                for m in ("sbc", "obc"))
        body.append([f"{k} ({10 * k} samples)", _pct(a), _pct(b), _diff(a, b)])
    return lines + _table(["per class", "SBC", "OBC-current", "SBC - OBC"], body)


def _choice_tables(grid: Grid, network: str, stats: Mapping[tuple[str, Spec], Stat],
                   runs: Sequence[Run]
                   ) -> list[str]:
    """Issue 7: SMP vs current Hessian, parallel vs sequential propagation, allocations."""
    lines = ["### Issue 7: which choice wins", ""]
    wins, ties, losses, mean = hessian_wins(stats, network)
    lines += [(f"SMP vs current Hessian (SBC vs OBC-current, every setting run with both): "
              f"SBC better by more than the seed spread in {wins}, within it in {ties}, "
              f"worse in {losses}; mean difference {100 * mean:+.1f} pts."), ""]
    if grid.sequential:
        rows = [(f"{grid.study_sparsity:.0%}", Spec("sbc", sparsity=grid.study_sparsity))]
        rows += [(f"{b} bits", Spec("sbc", bits=b)) for b in grid.sequential_bits]
        body = []
        for label, spec in rows:
            a = stats.get((network, spec))
            b = stats.get((network, dataclasses.replace(spec, propagation="sequential")))
            body.append([label, _pct(a), _pct(b), _diff(b, a)])
        lines += _table(["SBC", "parallel", "sequential", "sequential - parallel"], body)
    body = []
    for allocation in grid.allocations:
        spec = Spec("sbc", sparsity=grid.study_sparsity, allocation=allocation)
        split = next((r.layer_sparsity for r in runs
                      if r.network == network and r.spec == spec), {})
        body.append([allocation, _pct(stats.get((network, spec))),
                     ", ".join(f"{name} {v:.0%}" for name, v in split.items())])
    return lines + _table([f"SBC {grid.study_sparsity:.0%}: allocation", "accuracy",
                           "layer sparsity (first seed)"], body)


def _tie_table(grid: Grid, network: str, dense: float, m: Mapping[str, Any],
               stats: _Summaries) -> list[str]:
    """Spike-count read-out against ties broken by the membrane, dense and compressed
    (``m``: the network's run metadata, with the dense ties)."""
    lines = ["### Decoding: output ties", "",
             ("Spike-count read-out (ties to the lowest class, the library's) against the "
             "same outputs with ties broken by the output neurons' mean membrane potential."),
             ""]
    body = [["dense", f"{100 * dense:.1f}",
             f"{100 * m.get('dense_tie_broken', math.nan):.1f}",
             f"{100 * m.get('dense_ties', math.nan):.1f}"]]
    for spec in [Spec(method, sparsity=s) for s in grid.sparsities if s >= 0.9
                 for method in METHODS] + [Spec(method, bits=b) for b in grid.bits
                                           if b <= 4 for method in METHODS]:
        if (network, spec) in stats.accuracy:
            body.append([describe(spec), _pct(stats.accuracy[network, spec]),
                         _pct(stats.tie_broken.get((network, spec))),
                         _pct(stats.ties.get((network, spec)))])
    return lines + _table(["setting", "spike count", "ties broken by membrane",
                           "tied samples (%)"], body)


def _investigation_table(grid: Grid, network: str, stats: Mapping[tuple[str, Spec], Stat],
                         runs: Sequence[Run]
                         ) -> list[str]:
    """The further settings (first seed only unless the main grid has them), with times."""
    lines = ["### Further settings (investigation: first seed only, unless the main "
             "grid has the setting)", ""]
    body = []
    for spec in grid.extra:
        times = [r.seconds for r in runs if r.network == network and r.spec == spec]
        body.append([describe(spec), _pct(stats.get((network, spec))),
                     f"{np.mean(times):.0f} s" if times else "-"])
    return lines + _table(["setting", "accuracy", "compression time (mean)"], body)

NOTES = ("<!-- notes: kept when the benchmark rewrites this file -->", "<!-- /notes -->")


def keep_notes(page: str, previous: Path) -> str:
    """``page`` with the hand-written notes block of the ``previous`` file (if any) inserted
    before its first network section, so that findings survive a re-run."""
    old = previous.read_text(encoding="utf-8") if previous.is_file() else ""
    start, end = old.find(NOTES[0]), old.find(NOTES[1])
    if start < 0 or end < start:
        return page
    block = old[start:end + len(NOTES[1])]
    at = page.find("\n## ", page.find("## Claims") + 1)
    return page + "\n" + block if at < 0 else page[:at + 1] + block + "\n" + page[at:]


def plot(grid: Grid, dense: Mapping[str, float], runs: Sequence[Run], path: Path) -> None:
    """Accuracy vs sparsity, vs bits and vs calibration size, one row per network."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = summarize(runs)
    networks = list(dense)
    fig, axes = plt.subplots(len(networks), 3, figsize=(13, 3.6 * len(networks)), squeeze=False)
    colors = {"sbc": "tab:blue", "obc": "tab:orange", "magnitude": "tab:gray"}

    def curve(ax: Any, xs: Sequence[float], specs: Sequence[Spec], method: str) -> None:
        found = [(x, stats[net, s]) for x, s in zip(xs, specs) if (net, s) in stats]
        if not found:
            return
        x = [f[0] for f in found]
        mean = np.array([100 * f[1].mean for f in found])
        err = np.array([[100 * (f[1].mean - f[1].low) for f in found],
                        [100 * (f[1].high - f[1].mean) for f in found]])
        ax.errorbar(x, mean, yerr=err, marker="o", capsize=3, color=colors[method],
                    label=LABELS[method])

    for row, net in enumerate(networks):
        ax_s, ax_b, ax_c = axes[row]
        for m in METHODS:
            curve(ax_s, [100 * s for s in grid.sparsities],
                  [Spec(m, sparsity=s) for s in grid.sparsities], m)
            curve(ax_b, list(grid.bits), [Spec(m, bits=b) for b in grid.bits], m)
        sizes = grid.per_class_sizes()
        for m in ("sbc", "obc"):
            curve(ax_c, list(sizes), [Spec(m, sparsity=grid.study_sparsity, per_class=k)
                                      for k in sizes], m)
        for ax, xlabel in ((ax_s, "sparsity (%)"), (ax_b, "weight bits"),
                           (ax_c, f"calibration samples per class ({grid.study_sparsity:.0%})")):
            ax.axhline(100 * dense[net], color="k", ls=":", lw=1, label="dense")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("accuracy (%)")
            ax.set_title(net)
            ax.grid(alpha=0.3)
        ax_b.invert_xaxis()
        ax_c.set_xscale("log")
        ax_s.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# --------------------------------------------------------------------------- main


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def load_results(path: Path) -> tuple[dict[str, float], list[Run], dict[str, Any]]:
    """Dense accuracies, runs and per-network metadata of an earlier results JSON (or empty)."""
    if not path.is_file():
        return {}, [], {}
    stored = json.loads(path.read_text(encoding="utf-8"))
    return (dict(stored["dense_accuracy"]), [Run.from_dict(row) for row in stored["runs"]],
            dict(stored["meta"]["networks"]))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="reduced grid and one seed (default output accuracy_quick.*)")
    parser.add_argument("--networks", default=",".join(NETWORKS),
                        help=f"comma-separated (default {','.join(NETWORKS)})")
    parser.add_argument("--seeds", type=int, default=None,
                        help="calibration draws (default 3; 1 with --quick)")
    parser.add_argument("--investigate", action="store_true",
                        help="also run the investigation settings (damping, solver, global "
                             "allocation at 97 %%; first seed only)")
    parser.add_argument("--update", action="store_true",
                        help="keep the other networks' results of the existing JSON output (read "
                             "when this run ends: networks run in parallel merge)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs of these networks already in the JSON output and run "
                             "only the missing (setting, seed) pairs")
    parser.add_argument("--solver", default="admm", help="pruning solver (default admm)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--eval-limit", type=int, default=None,
                        help="evaluate on the first N evaluation samples only")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="folder with <network>.nir and nmnist_eval.npz (default: bundled)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--name", default=None,
                        help="output file stem (default accuracy, accuracy_quick with --quick)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    grid = QUICK if args.quick else FULL
    if args.investigate:
        grid = dataclasses.replace(grid, extra=INVESTIGATION)
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 3)))
    stem = args.name or ("accuracy_quick" if args.quick else "accuracy")
    out = {ext: args.out_dir / f"{stem}.{ext}" for ext in ("md", "json", "png")}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    words = list(argv if argv is not None else sys.argv[1:])
    command = " ".join([".venv/bin/python benchmarks/accuracy.py", shlex.join(words)]).strip()

    names = args.networks.split(",")
    dense, runs, per_net = {}, [], {}
    # investigation settings that are also in the main grid run for every seed
    first_seed_only = set(grid.extra) - set(dataclasses.replace(grid, extra=()).specs())
    previous = load_results(out["json"]) if args.resume else ({}, [], {})
    for name in names:
        kept = [r for r in previous[1] if r.network == name]
        wall, cpu = time.perf_counter(), time.process_time()
        load_start = os.getloadavg()[0]
        graph, evaluation = load_network(name, args.models_dir)
        pool = training_pool(evaluation)
        if args.eval_limit:
            evaluation = evaluation.subset(slice(0, args.eval_limit))
        result = run_network(Network(name, graph, evaluation, pool), grid.specs(), seeds,
                             solver=args.solver, first_seed_only=first_seed_only,
                             done={(r.spec, r.seed) for r in kept}, progress=log.info)
        dense[name] = result.dense
        runs += kept + list(result.runs)
        per_net[name] = {
            "command": command, "date": time.strftime("%Y-%m-%d %H:%M"),
            "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
            "calibration_s": result.calibration_seconds,
            "investigation_s": sum(r.seconds + r.eval_seconds for r in result.runs
                                   if r.spec in first_seed_only),
            "load_start": load_start, "load_end": os.getloadavg()[0], "seeds": seeds,
            "solver": args.solver, "threads": args.threads, "eval_limit": args.eval_limit,
            "dense_ties": result.dense_ties,
            "dense_tie_broken": result.dense_tie_broken, "grid": "quick" if args.quick else "full",
            "investigate": args.investigate}
        before = previous[2].get(name)
        if kept and before:  # a resumed run: times add up, both commands are kept
            for key in ("wall_s", "cpu_s", "calibration_s", "investigation_s"):
                per_net[name][key] += before[key]
            per_net[name]["command"] = f"{before['command']}` then `{command}"
            per_net[name]["load_start"] = before["load_start"]
    if args.update:  # read at the end, so networks run at the same time into one file merge
        kept_dense, kept_runs, kept_meta = load_results(out["json"])
        dense = {**{k: v for k, v in kept_dense.items() if k not in names}, **dense}
        runs = [r for r in kept_runs if r.network not in names] + runs
        per_net = {**{k: v for k, v in kept_meta.items() if k not in names}, **per_net}
    claims = check_claims(summarize(runs), dense, grid)
    meta = {"machine": _machine(), "torch": torch.__version__, "networks": per_net,
            "grid": dataclasses.asdict(grid)}
    page = render_markdown(grid, dense, runs, claims, meta)
    write_text_atomic(out["md"], keep_notes(page, out["md"]) + "\n")
    write_text_atomic(out["json"], json.dumps(
        {"meta": meta, "dense_accuracy": dense, "claims": [dataclasses.asdict(c) for c in claims],
         "runs": [r.as_dict() for r in runs]}, indent=1) + "\n")
    plot(grid, dense, runs, out["png"])
    for claim in claims:
        log.info("%s: %s: %s (%s)", claim.network, claim.claim,
                 {True: "holds", False: "FAILS", None: "-"}[claim.holds], claim.detail)
    log.info("wrote %s", ", ".join(map(str, out.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
