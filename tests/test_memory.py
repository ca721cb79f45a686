"""Memory plan: closed-form estimates, block-diagonal choices under a budget, refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sbc_deploy.errors import ConfigError
from sbc_deploy.ir import LIF, Affine, Graph, Input, Output
from sbc_deploy.memory import (
    CHUNK_ELEMENTS,
    RUNTIME,
    MemoryBudgetError,
    cifar10_dvs_csnn,
    default_budget,
    parse_size,
    plan_memory,
)

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
    plan = plan_memory(graph, steps=10, batch_size=4, calib_batch_size=5, budget=1 << 40)
    stages = {s.stage: s.bytes for s in plan.stages}
    values = 8 + 6 + 6 + 3 + 3 + 3                    # every node's output per sample-step
    weights = 4 * (6 * 8 + 3 * 6)
    assert stages["simulate"] == RUNTIME + 4 * 4 * 10 * values + weights
    sums = 8 * (2 * 8**2 + 1 * 6**2)                  # fc1: two decay groups; fc2: one
    assert stages["calibrate"] == (RUNTIME + 4 * 5 * 10 * values + weights + 2 * sums
                                   + 8 * 5 * 10 * 8 + 12 * CHUNK_ELEMENTS)
    assert stages["compress"] == RUNTIME + 3 * sums + 6 * 8 * 2 * 8**2 + 8 * 8 * 48
    assert not plan.blocks and not plan.notes and plan.peak == max(stages.values())


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
        plan_memory(graph, steps=16, batch_size=16, budget=1024**3)
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
