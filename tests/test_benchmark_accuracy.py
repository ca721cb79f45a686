"""Smoke tests of benchmarks/accuracy.py on a tiny hand-made spiking network.

The network (12 inputs, 6 LIF, 3 LIF read-outs) routes input group ``c`` to hidden pair ``c``
to output ``c``; class ``c``'s samples fire group ``c`` often and the rest rarely, so it
classifies well and its strong synapses are few. Its accuracy is checked against a plain numpy
LIF simulation (the IR's equations, written out), and the benchmark's rows, calibrations,
summaries and claims against independent computations.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from sbc_deploy.calibrate import calibrate
from sbc_deploy.data import Dataset
from sbc_deploy.ir import LIF, Affine, Graph, Input, Output

ROOT = Path(__file__).resolve().parents[1]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_accuracy",
                                                  ROOT / "benchmarks" / "accuracy.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()

CLASSES, GROUP, HIDDEN, STEPS, BETA = 3, 4, 6, 12, 0.5


def tiny_weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_in = CLASSES * GROUP
    W1 = rng.normal(0.0, 0.05, (HIDDEN, n_in))
    W2 = rng.normal(0.0, 0.05, (CLASSES, HIDDEN))
    for h in range(HIDDEN):
        W1[h, (h // 2) * GROUP:(h // 2 + 1) * GROUP] += 0.7
        W2[h // 2, h] += 1.2
    return W1, W2


def tiny_graph(W1: np.ndarray | None = None, W2: np.ndarray | None = None) -> Graph:
    W1, W2 = tiny_weights() if W1 is None or W2 is None else (W1, W2)
    return Graph.chain([
        ("in", Input((CLASSES * GROUP,))),
        ("fc1", Affine(W1)),
        ("lif1", LIF(beta=np.full(HIDDEN, BETA), v_threshold=np.ones(HIDDEN))),
        ("fc2", Affine(W2)),
        ("lif2", LIF(beta=np.full(CLASSES, BETA), v_threshold=np.ones(CLASSES))),
        ("out", Output((CLASSES,))),
    ], dt=1e-3)


def tiny_data(per_class: int, seed: int, source: str) -> Dataset:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(CLASSES), per_class)
    rate = np.full((y.size, CLASSES * GROUP), 0.08)
    for i, c in enumerate(y):
        rate[i, c * GROUP:(c + 1) * GROUP] = 0.45
    x = (rng.uniform(size=(y.size, STEPS, CLASSES * GROUP)) < rate[:, None]).astype(np.uint8)
    order = rng.permutation(y.size)
    return Dataset(x=x[order], y=y[order], dt=1e-3, source=source)


def numpy_decode(W1: np.ndarray, W2: np.ndarray, data: Dataset
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """LIF with zero reset, written out: v = beta v + W x; s = v > 1; v <- 0 where s.

    Returns the spike-count classes (ties to the lowest index), the classes with ties broken
    by the mean (after-reset) membrane potential, and the fraction of tied samples.
    """
    x = data.x.astype(np.float64)
    v1 = np.zeros((len(data), HIDDEN))
    v2 = np.zeros((len(data), CLASSES))
    counts = np.zeros((len(data), CLASSES))
    v_sum = np.zeros((len(data), CLASSES))
    for t in range(data.steps):
        v1 = BETA * v1 + x[:, t] @ W1.T
        s1 = v1 > 1.0
        v1[s1] = 0.0
        v2 = BETA * v2 + s1.astype(np.float64) @ W2.T
        s2 = v2 > 1.0
        v2[s2] = 0.0
        counts += s2
        v_sum += v2
    top = counts == counts.max(axis=1, keepdims=True)
    broken = np.where(top, v_sum / data.steps, -np.inf).argmax(axis=1)
    return counts.argmax(axis=1), broken, float(np.mean(top.sum(axis=1) > 1))


TINY_GRID = bench.Grid(sparsities=(0.5, 0.9), bits=(4,), joint=((0.5, 4),),
                       target_sparsities=(0.0,), study_sparsity=0.5, calib_sizes=(1, 4),
                       sequential_bits=(4,), allocations=("uniform", "lamp", "global"),
                       global_sparsities=(0.9,), extra=(bench.Spec("sbc", bits=4, damp_frac=0.1),))
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def network():
    return bench.Network("tiny", tiny_graph(), tiny_data(20, seed=1, source="tiny eval"),
                         tiny_data(30, seed=2, source="tiny pool"))


@pytest.fixture(scope="module")
def measured(network):
    result = bench.run_network(network, TINY_GRID.specs(), SEEDS,
                               first_seed_only={bench.Spec("sbc", bits=4, damp_frac=0.1)})
    return result.dense, list(result.runs)


def test_dense_predictions_equal_a_numpy_lif_simulation(network, measured):
    dense, _ = measured
    classes, broken, ties = numpy_decode(*tiny_weights(), network.evaluation)
    assert dense == np.mean(classes == network.evaluation.y)
    assert dense > 0.8  # the hand-made network does classify
    pred = bench.predict(network.graph, network.evaluation, batch_size=7)
    assert np.array_equal(pred.classes, classes) and np.array_equal(pred.tie_broken, broken)
    assert pred.ties == ties
    # weaker read-out synapses: fewer output spikes, many ties, so the tie-break matters
    W1, W2 = tiny_weights()
    weak = tiny_graph(W1, 0.25 * W2)
    classes, broken, ties = numpy_decode(W1, 0.25 * W2, network.evaluation)
    pred = bench.predict(weak, network.evaluation, batch_size=7)
    assert np.array_equal(pred.classes, classes) and np.array_equal(pred.tie_broken, broken)
    assert pred.ties == ties and 0.05 < ties < 1.0
    assert not np.array_equal(broken, classes)


def test_magnitude_at_zero_sparsity_reproduces_the_dense_accuracy(network, measured):
    dense, _ = measured
    reference = bench.predict(network.graph, network.evaluation).classes
    run = bench.run_spec(network, bench.Spec("magnitude", sparsity=0.0), None, None,
                         reference=reference)
    assert run.accuracy == dense
    assert run.agreement == 1.0  # the same class on every sample, not just as many right
    assert run.achieved_sparsity == pytest.approx(np.mean(np.concatenate(
        [tiny_weights()[0].ravel(), tiny_weights()[1].ravel()]) == 0.0))


def test_rows_carry_every_method_sparsity_and_seed(measured):
    _, runs = measured
    by_spec: dict = {}
    for run in runs:
        by_spec.setdefault(run.spec, []).append(run.seed)
    for sparsity in TINY_GRID.sparsities:
        for method in bench.METHODS:
            seeds = by_spec[bench.Spec(method, sparsity=sparsity)]
            assert sorted(seeds, key=str) == ([None] if method == "magnitude" else list(SEEDS))
    for bits in TINY_GRID.bits:
        assert set(bench.METHODS) <= {s.method for s in by_spec if s.bits == bits}
    assert {s.per_class for s in by_spec if s.method == "sbc"} == {1, 4, bench.CALIB_PER_CLASS}
    assert {s.allocation for s in by_spec} == {"uniform", "lamp", "global"}
    assert {s.propagation for s in by_spec} == {"parallel", "sequential"}
    assert by_spec[bench.Spec("sbc", bits=4, damp_frac=0.1)] == [0]  # first seed only
    assert len(runs) == sum(1 if not s.calibrated else len(SEEDS) for s in TINY_GRID.specs()) - 1
    for run in runs:
        assert 0.0 <= run.accuracy <= 1.0 and 0.0 <= run.agreement <= 1.0
        assert 0.0 <= run.ties <= 1.0
        assert run.achieved_sparsity >= run.spec.sparsity - 0.02  # pruned as asked (up to rounding)
        if run.spec.bits is None and run.spec.target is None:
            assert run.achieved_sparsity == pytest.approx(run.spec.sparsity, abs=0.02)
        assert (run.integer_accuracy is not None) == (run.spec.target is not None)


def test_lamp_and_uniform_split_the_sparsity_differently(measured):
    _, runs = measured
    split = {r.spec.allocation: r.layer_sparsity for r in runs
             if r.spec.sparsity == TINY_GRID.study_sparsity and r.seed == 0
             and r.spec.method == "sbc" and r.spec.bits is None and r.spec.per_class == 20
             and r.spec.propagation == "parallel"}
    assert split["uniform"] == pytest.approx({"fc1": 0.5, "fc2": 0.5}, abs=0.02)
    assert split["lamp"] != pytest.approx(split["uniform"], abs=0.02)


def test_nested_draws_are_balanced_nested_and_seeded():
    labels = np.repeat(np.arange(4), 7)[np.random.default_rng(3).permutation(28)]
    draws = bench.nested_draws(labels, (1, 3, 7), seed=5)
    for k, index in draws.items():
        assert np.array_equal(np.bincount(labels[index], minlength=4), np.full(4, k))
    assert set(draws[1]) <= set(draws[3]) <= set(draws[7])
    assert np.array_equal(draws[7], np.arange(28))
    again = bench.nested_draws(labels, (3,), seed=5)
    assert np.array_equal(again[3], draws[3])
    assert not np.array_equal(bench.nested_draws(labels, (3,), seed=6)[3], draws[3])
    with pytest.raises(bench.DataError):
        bench.nested_draws(labels, (8,), seed=0)


def test_incremental_calibration_equals_calibrating_the_draw_at_once(network):
    found = bench.seed_calibrations(network.graph, network.pool, (1, 4), seed=0,
                                    kernels=("smp",))
    index = bench.nested_draws(network.pool.y, (4,), seed=0)[4]
    direct = calibrate(network.graph, network.pool.x[index], kernel="smp")
    summed = found["smp", 4]
    assert summed.n_samples == direct.n_samples == 4 * CLASSES
    for name, hsum in direct.layers.items():
        # float32 GEMMs into float64 sums: grouping rows differently moves the sums by ~1e-7
        np.testing.assert_allclose(summed.layers[name].hessian(), hsum.hessian(), rtol=1e-6)
    assert np.array_equal(np.asarray(summed.data), network.pool.x[index])


def test_stat_and_claims_follow_the_definitions():
    values = [0.91, 0.93, 0.90]
    stat = bench.Stat.of(values)
    assert (stat.n, stat.low, stat.high) == (3, 0.90, 0.93)
    assert stat.mean == pytest.approx(np.mean(values))
    assert stat.std == pytest.approx(np.std(values, ddof=1))
    assert stat.spread == pytest.approx(0.03)

    def stats(sbc: list[float], obc: list[float], mag: float) -> dict:
        out = {}
        for s in (0.9, 0.97):
            out["nmnist_mlp", bench.Spec("sbc", sparsity=s)] = bench.Stat.of(sbc)
            out["nmnist_mlp", bench.Spec("obc", sparsity=s)] = bench.Stat.of(obc)
            out["nmnist_mlp", bench.Spec("magnitude", sparsity=s)] = bench.Stat.of([mag])
        out["nmnist_mlp", bench.Spec("sbc", bits=4)] = bench.Stat.of([0.944, 0.946])
        return out

    grid = bench.Grid(sparsities=(0.5, 0.9, 0.97))
    claims = bench.check_claims(stats([0.93, 0.935, 0.94], [0.90, 0.91, 0.92], 0.5),
                                {"nmnist_mlp": 0.95}, grid)
    verdict = {c.claim: c.holds for c in claims}
    assert verdict["SBC, 97% loses <= 2.0 pts"] is True      # 0.95 - 0.935 = 1.5 pts
    assert verdict["SBC, 4 bits loses <= 0.5 pts"] is True   # 0.95 - 0.945 = 0.5 pts
    assert verdict["SBC, 90% beats OBC-current, 90% by more than the seed spread"] is True
    assert verdict["SBC, 97% beats magnitude/RTN, 97% by more than the seed spread"] is True
    assert len(claims) == 2 + 2 * 2  # no claim at 50 %
    # margin 1 pt < spread 4 pts: does not hold; loss 3.5 pts at 97 %: does not hold
    claims = bench.check_claims(stats([0.90, 0.915, 0.94], [0.90, 0.905, 0.91], 0.5),
                                {"nmnist_mlp": 0.95}, grid)
    verdict = {c.claim: c.holds for c in claims}
    assert verdict["SBC, 97% beats OBC-current, 97% by more than the seed spread"] is False
    assert verdict["SBC, 97% loses <= 2.0 pts"] is False


def test_report_plot_and_json_rows(measured, tmp_path):
    dense, runs = measured
    dense_map = {"tiny": dense}
    meta = {"machine": "test", "torch": "x", "networks": {"tiny": {
        "command": "accuracy.py --test", "date": "today", "wall_s": 60.0, "cpu_s": 30.0,
        "calibration_s": 6.0, "investigation_s": 0.0, "load_start": 0.0, "load_end": 0.0,
        "seeds": [0, 1], "solver": "admm", "threads": 1, "eval_limit": None}}}
    claims = bench.check_claims(bench.summarize(runs), dense_map, TINY_GRID)
    assert [c.claim for c in claims] == [
        "SBC, 90% beats OBC-current, 90% by more than the seed spread",
        "SBC, 90% beats magnitude/RTN, 90% by more than the seed spread",
        "SBC, 90%, global beats OBC-current, 90%, global by more than the seed spread",
        "SBC, 90%, global beats magnitude/RTN, 90% by more than the seed spread"]
    text = bench.render_markdown(TINY_GRID, dense_map, runs, claims, meta)
    stats = bench.summarize(runs)
    sbc = stats["tiny", bench.Spec("sbc", sparsity=0.9)]
    assert f"| 90% | {100 * sbc.mean:.1f} ({100 * sbc.low:.1f}-{100 * sbc.high:.1f}) |" in text
    assert f"Dense accuracy: {100 * dense:.1f} %." in text
    glob = stats["tiny", bench.Spec("sbc", sparsity=0.9, allocation="global")]
    section = text.split("### Pruning, global allocation")[1].split("###")[0]
    assert f"| 90% | {100 * glob.mean:.1f} ({100 * glob.low:.1f}-{100 * glob.high:.1f}) |" \
        in section
    assert "| SBC, 4 bits, damping 0.1 |" in text  # the investigation table
    path = tmp_path / "accuracy.png"
    bench.plot(TINY_GRID, dense_map, runs, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [run.as_dict() for run in runs]
    assert {"network", "method", "sparsity", "bits", "seed", "accuracy"} <= set(rows[0])
    assert [bench.Run.from_dict(row) for row in rows] == runs


def test_spec_configs_follow_the_setting():
    target = bench.Spec("sbc", sparsity=0.9, target="loihi2").config("admm")
    assert (target.method, target.grid, target.bits, target.sparsity) == ("sbc", "int_exp", 8, 0.9)
    assert target.allocation == "lamp" and target.solver == "admm"
    damped = bench.Spec("obc", bits=4, damp_frac=0.1, solver="sparsegpt").config("admm")
    assert (damped.method, damped.kernel, damped.bits, damped.grid) == ("obc", "current", 4, "int")
    assert (damped.damp_frac, damped.solver) == (0.1, "sparsegpt")
    assert not damped.prune and damped.quantize
    magnitude = bench.Spec("magnitude", sparsity=0.5).config("exact")
    assert magnitude.method == "magnitude" and not magnitude.quantize and magnitude.prune


def test_notes_survive_a_rewrite(tmp_path):
    page = "# Title\n\n## Claims (issue 6)\n\n| a |\n\n## net\n\nnumbers\n"
    previous = tmp_path / "accuracy.md"
    assert bench.keep_notes(page, previous) == page  # no previous file
    notes = f"{bench.NOTES[0]}\nWhy claim 2 fails.\n{bench.NOTES[1]}"
    previous.write_text(page.replace("## net", notes + "\n\n## net"))
    kept = bench.keep_notes(page.replace("numbers", "new numbers"), previous)
    assert kept.index("## Claims") < kept.index("Why claim 2 fails.") < kept.index("## net")
    assert "new numbers" in kept and kept.count("Why claim 2 fails.") == 1


def test_resume_runs_only_the_missing_pairs_and_reproduces_them(network, measured):
    """``done`` skips (setting, seed) pairs; a pair run again equals the first run (the draws
    and solvers are deterministic), so a resumed table equals an uninterrupted one."""
    _, runs = measured
    sbc90, mag90 = bench.Spec("sbc", sparsity=0.9), bench.Spec("magnitude", sparsity=0.9)
    specs = [sbc90, mag90, bench.Spec("obc", sparsity=0.9)]
    done = {(sbc90, 0), (mag90, None), (bench.Spec("obc", sparsity=0.9), 0),
            (bench.Spec("obc", sparsity=0.9), 1)}
    result = bench.run_network(network, specs, SEEDS, done=done)
    assert [(r.spec, r.seed) for r in result.runs] == [(sbc90, 1)]
    first = next(r for r in runs if (r.spec, r.seed) == (sbc90, 1))
    assert result.runs[0].accuracy == first.accuracy
    assert result.runs[0].layer_sparsity == first.layer_sparsity
