"""Violations name the neuron, its value and what to change; applying the remedy clears it."""

from __future__ import annotations

import dataclasses
import re

import nir
import numpy as np

from sbc_deploy.calibrate import calibrate
from sbc_deploy.check import check
from sbc_deploy.compress import compress
from sbc_deploy.compress.config import config_for_target
from sbc_deploy.frontends import from_nir
from sbc_deploy.targets import load_target


def _compressed_for_xylo(tmp_path, dead_row: int | None, threshold: dict[int, float]):
    """8 -> 6 LIF -> 4 LIF, subtractive reset (Xylo's), int8 per-channel weights."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.5, (6, 8)).astype(np.float32)
    if dead_row is not None:
        w1[dead_row] = 1e-9  # every weight of this neuron ~0
    w2 = rng.normal(0, 0.5, (4, 6)).astype(np.float32)
    v_th = np.ones(6)
    for i, value in threshold.items():
        v_th[i] = value

    def lif(n, th):
        return nir.LIF(tau=np.full(n, 2e-3), r=np.ones(n), v_leak=np.zeros(n), v_threshold=th,
                       v_reset=np.zeros(n))

    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([8])), "fc1": nir.Linear(weight=w1),
               "lif1": lif(6, v_th), "fc2": nir.Linear(weight=w2), "lif2": lif(4, np.ones(4)),
               "output": nir.Output(np.array([4]))},
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
               ("lif2", "output")], metadata={"dt": 1e-3, "reset": "subtract"})
    nir.write(tmp_path / "net.nir", graph)
    loaded = from_nir(tmp_path / "net.nir")
    target = load_target("xylo")
    config = config_for_target(target, method="magnitude")
    compressed, _ = compress(loaded, calibrate(loaded, None, config=config), config)
    return compressed, target


def _threshold_errors(graph, target):
    return [v for v in check(graph, target).violations
            if v.rule == "thresholds_fit_bits" and v.severity == "error"]


def test_a_neuron_with_all_weights_near_zero_is_named_with_its_remedy(tmp_path):
    graph, target = _compressed_for_xylo(tmp_path, dead_row=3, threshold={})
    (violation,) = _threshold_errors(graph, target)
    assert violation.layer == "lif1" and violation.neurons == (3,)
    assert "neuron 3" in violation.message and violation.actual > 1e8  # the 2.7e8 case
    assert "weights that are all ~0" in violation.remedy and "prune" in violation.remedy
    # the remedy (prune: its row of weights is zero, its output is always 0) clears it
    row = graph.nodes["fc1"]
    assert np.abs(row.weight[3]).max() < 1e-6


def test_a_threshold_too_large_gets_the_value_that_fits(tmp_path):
    graph, target = _compressed_for_xylo(tmp_path, dead_row=None, threshold={1: 1e6})
    (violation,) = _threshold_errors(graph, target)
    assert violation.neurons == (1,) and "neuron 1" in violation.message
    match = re.search(r"set it to at most ([0-9.e+-]+)", violation.remedy)
    assert match, violation.remedy
    fixed = float(match.group(1))
    lif = graph.nodes["lif1"]
    v_th = np.array(lif.v_threshold, dtype=np.float64)
    v_th[1] = fixed
    repaired = graph.replace_nodes({"lif1": dataclasses.replace(lif, v_threshold=v_th)})
    assert _threshold_errors(repaired, target) == []  # the named value fits the register
