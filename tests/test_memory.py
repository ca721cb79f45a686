"""Memory plan: closed-form estimates, block-diagonal choices under a budget, refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sbc_deploy.compress.hessian import CHUNK_ELEMENTS
from sbc_deploy.compress.layer_solve import SOLVE_W_COPIES
from sbc_deploy.errors import ConfigError
from sbc_deploy.ir import LIF, Affine, Graph, Input, Output
from sbc_deploy.memory import (
    RUNTIME,
    MemoryBudgetError,
    cifar10_dvs_csnn,
    default_budget,
    parse_size,
    plan_memory,
)
from sbc_deploy.sim.float_sim import NEURON_PARAMETERS

ROOT = Path(__file__).resolve().parents[1]


def test_parse_size_units_and_errors():
    assert parse_size("8GiB") == 8 * 1024**3
    assert parse_size("512 MiB") == 512 * 1024**2
    assert parse_size("3GB") == 3 * 10**9
    assert parse_size("2e9") == 2 * 10**9
    assert parse_size(4096) == 4096
    for bad in ("eight", "8 parsecs", "0", "-1GiB"):
        with pytest.raises(ConfigError, match="memory"):
            parse_size(bad)
    assert 0 < default_budget() < default_budget(1.0)


def test_estimates_are_the_closed_form_sums():
    """8 -> 6 (LIF) -> 3 (LIF): every term of the module docstring, by hand."""
    rng = np.random.default_rng(0)
    graph = Graph.chain([
        ("in", Input((8,))),
        ("fc1", Affine(rng.normal(size=(6, 8)))),
        ("lif1", LIF(beta=np.array([0.5, 0.5, 0.9, 0.9, 0.5, 0.5]), v_threshold=np.ones(6))),
        ("fc2", Affine(rng.normal(size=(3, 6)))),
        ("lif2", LIF(beta=np.full(3, 0.9), v_threshold=np.ones(3))),
        ("out", Output((3,))),
    ], dt=1e-3)
    plan = plan_memory(graph, steps=10, batch_size=4, calib_batch_size=5, budget=1 << 40,
                       data_bytes=1000)
    stages = {s.stage: s.bytes for s in plan.stages}
    # the graph's arrays as held: float64 weights; the LIFs' beta, v_threshold, gain, v_leak,
    # v_reset and bias (float64, one per neuron)
    base = RUNTIME + 8 * (6 * 8 + 3 * 6) + 8 * 6 * (6 + 3) + 1000
    # values alive at once, evaluating: at fc1, the input, fc1's output and the SynOps
    # counter's two copies of its input
    live = 8 + 6 + 2 * 8
    # calibrating (no counter): lif1 holds fc1's output and 3x its own (drive, spikes, output)
    live_calib = 6 + 3 * 6
    whole = 2 * 3 + 2 * 8                             # outputs and inputs kept whole, twice
    compiled = 4 * (6 * 8 + 3 * 6) + 4 * NEURON_PARAMETERS * (6 + 3)   # the simulator's copies
    assert stages["simulate"] == base + 4 * 10 * 4 * (live + whole) + compiled
    sums = 8 * (2 * 8**2 + 1 * 6**2)                  # fc1: two decay groups; fc2: one
    summing = 32 * 5 * 10 * 8 + (2 + 3) * CHUNK_ELEMENTS * 8 + 8**2 * 8   # fc1's chunk
    feeding = 4 * 10 * 5 * (live_calib + whole) + compiled + summing
    assert stages["calibrate"] == base + sums + feeding   # > the end's copy of one layer
    solve = int((5.5 * 2 + 1) * 2 * 8**2 * 8 + SOLVE_W_COPIES * 6 * 8 * 8)   # fc1
    assert stages["compress"] == base + 2 * sums + 25 * (6 * 8 + 3 * 6) + solve
    assert not plan.blocks and not plan.notes and plan.peak == max(stages.values())


def test_the_evaluation_estimate_follows_the_simulated_chunks():
    """Streamed evaluation (the pipeline's 64 MiB chunks): the per-chunk term does not grow
    with the batch or T; only the inputs and outputs kept whole do."""
    graph = cifar10_dvs_csnn()
    est = {}
    for steps, batch, budget in ((16, 16, None), (16, 16, 64 << 20), (64, 64, 64 << 20)):
        plan = plan_memory(graph, steps=steps, batch_size=batch, calibrate=False,
                           budget=1 << 45, sim_memory_budget=budget)
        est[steps, batch, budget] = plan.peak
    assert est[16, 16, 64 << 20] < est[16, 16, None] / 2.5   # 256 sample-steps -> 8
    whole_io = 2 * 4 * (2 * 128 * 128 + 10) * (64 * 64 - 16 * 16)
    assert est[64, 64, 64 << 20] - est[16, 16, 64 << 20] == whole_io


def test_a_128x128_csnn_gets_a_block_diagonal_dense_layer_within_8_gib():
    graph = cifar10_dvs_csnn()
    (fc,) = [layer for layer in graph.synapse_layers() if layer.name == "fc"]
    assert fc.synapse.weight.shape == (10, 32768)
    unlimited = plan_memory(graph, steps=16, batch_size=8, calib_batch_size=8, budget=1 << 45)
    assert not unlimited.blocks
    assert unlimited.peak > 16 * 1024**3              # the full 32768^2 Hessian does not fit
    plan = plan_memory(graph, steps=16, batch_size=8, calib_batch_size=8, budget=8 * 1024**3)
    assert set(plan.blocks) == {"fc"}                 # only the layer that needs it
    block = plan.blocks["fc"]
    assert block & (block - 1) == 0 and 64 <= block < 32768
    assert plan.peak <= 8 * 1024**3
    assert "block-diagonal" in plan.notes[0] and "fc" in plan.notes[0]
    # a twice larger block would not have fitted (the largest that fits is chosen)
    bigger = plan_memory(graph, steps=16, batch_size=8, calib_batch_size=8,
                         budget=plan.peak + (plan.peak // 2))
    assert bigger.blocks.get("fc", 32768) >= block


def test_refusals_name_the_stage_and_the_budget():
    graph = cifar10_dvs_csnn()
    with pytest.raises(MemoryBudgetError, match="simulate stage .* budget of 1 GiB"):
        plan_memory(graph, steps=16, batch_size=16, budget=1024**3, sim_memory_budget=None)
    with pytest.raises(MemoryBudgetError, match="calibrate|compress"):
        plan_memory(graph, steps=16, batch_size=1, calib_batch_size=1, budget=8 * 1024**3,
                    allow_blocks=False)
    # magnitude pruning needs no Hessian: only the simulator is estimated
    plan = plan_memory(graph, steps=16, batch_size=1, calibrate=False, budget=1024**3)
    assert plan.peak < 1024**3
    assert [s.stage for s in plan.stages] == ["simulate"]


def test_cli_refuses_before_work_with_a_clear_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sbc_deploy", "nmnist_mlp", "--target", "loihi2", "--quiet",
         "--memory-budget", "1MiB", "-o", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2, result.stderr
    assert "--memory-budget" in result.stderr and "more than the budget of 1 MiB" in result.stderr
    assert not (tmp_path / "out" / "report.json").exists()
    bad = subprocess.run([sys.executable, "-m", "sbc_deploy", "--target", "loihi2",
                          "--memory-budget", "lots"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 2 and "not a memory size" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "sbc_deploy", "--target", "loihi2",
                          "--calib-row-fraction", "0"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 2 and "(0, 1]" in bad.stderr


def test_blocks_only_where_needed_and_as_coarse_as_the_budget_allows():
    """Two wide layers and a narrow one under budgets between the all-blocks and the full
    estimate: the plan fits, and no blocked layer could get a coarser form (full, or twice its
    block) and still fit (each choice is maximal)."""
    from sbc_deploy.memory import estimate

    rng = np.random.default_rng(1)
    graph = Graph.chain([
        ("in", Input((2048,))),
        ("fc1", Affine(np.zeros((2048, 2048), np.float32))),
        ("lif1", LIF(beta=np.full(2048, 0.9), v_threshold=np.ones(2048))),
        ("fc2", Affine(np.zeros((512, 2048), np.float32))),
        ("lif2", LIF(beta=rng.uniform(0.5, 0.9, 512), v_threshold=np.ones(512))),  # 8 kernels
        ("fc3", Affine(np.zeros((10, 512), np.float32))),
        ("out", Output((10,))),
    ], dt=1e-3)
    sizes = dict(steps=8, batch_size=4, calib_batch_size=4, calibrate=True)
    full = plan_memory(graph, budget=1 << 45, **sizes).peak
    for fraction in (0.5, 0.7, 0.9):
        budget = int(full * fraction)
        plan = plan_memory(graph, budget=budget, **sizes)
        assert plan.blocks and plan.peak <= budget
        assert "fc3" not in plan.blocks                  # narrow: never needed
        for name, block in plan.blocks.items():
            for coarser in (None, 2 * block):
                trial = {**plan.blocks}
                if coarser is None or coarser >= 2048:
                    trial.pop(name)
                else:
                    trial[name] = coarser
                worst = max(s.bytes for s in estimate(graph, blocks=trial, **sizes)
                            if s.stage != "simulate")
                assert worst > budget, (fraction, name, coarser)
