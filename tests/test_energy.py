"""Energy estimates: counts x costs in closed form, the target files' costs with their sources,
the dense/compressed comparison and the labelled 45 nm proxy."""

from __future__ import annotations

import numpy as np
import pytest

from sbc_deploy.errors import ConfigError
from sbc_deploy.ir import IF, Affine, Graph, Input, Output
from sbc_deploy.report.energy import (
    AC_45NM,
    MAC_45NM,
    EnergyCost,
    EnergyCosts,
    costs_from_target,
    estimate_energy,
)
from sbc_deploy.report.synops import SynOpsReport, count_synops
from sbc_deploy.targets import load_target

COSTS = EnergyCosts("toy", synop=EnergyCost(2e-12, "toy table A"),
                    neuron_update=EnergyCost(10e-12, "toy table B"),
                    spike=EnergyCost(1e-12, "toy table C"),
                    core_step=EnergyCost(100e-12, "toy table D", "estimate"))


def _report(weight: np.ndarray, x: np.ndarray) -> SynOpsReport:
    graph = Graph.chain([("in", Input((weight.shape[1],))), ("fc", Affine(weight)),
                         ("n", IF(v_threshold=np.ones(weight.shape[0]))),
                         ("out", Output((weight.shape[0],)))], dt=1e-3)
    return count_synops(graph, {"fc": x})


def test_counts_times_costs_in_closed_form() -> None:
    # 2 samples, 3 steps; fan-out per input (2, 1); 5 events -> synops 1*2 + ... by hand
    w = np.array([[1.0, 0.0], [1.0, 1.0]])
    x = np.zeros((3, 2, 2))
    x[0, 0] = [1, 1]        # 2 + 1
    x[2, 1] = [1, 0]        # 2
    x[1, 1] = [0, 1]        # 1
    report = _report(w, x)
    assert report.synops == 6 and report.spikes_routed == 4 and report.neuron_updates == 12
    energy = estimate_energy(report, COSTS, cores=2)
    per_sample = {"synops": 3.0, "neuron updates": 6.0, "spikes routed": 2.0,
                  "core steps (2 cores)": 6.0}
    assert {line.name: line.count_compressed for line in energy.terms} == per_sample
    expected = 3 * 2e-12 + 6 * 10e-12 + 2 * 1e-12 + 2 * 3 * 100e-12
    assert energy.total_j == (None, pytest.approx(expected, rel=1e-12))
    assert [line.source for line in energy.terms] == [
        "toy table A", "toy table B", "toy table C", "toy table D [estimate]"]
    table = energy.table()
    for source in ("toy table A", "toy table D [estimate]", "45 nm comparison"):
        assert source in table


def test_the_45nm_comparison_is_labelled_and_uses_horowitz_numbers() -> None:
    w = np.ones((4, 3))
    x = np.ones((5, 1, 3))
    energy = estimate_energy(_report(w, x), COSTS, cores=1)
    a = energy.ann_equivalent
    assert a["synops"] == 5 * 3 * 4 and a["ann_macs"] == 12
    assert a["snn_energy_j"] == pytest.approx(60 * 0.9e-12)
    assert a["ann_energy_j"] == pytest.approx(12 * 4.6e-12)
    assert (AC_45NM, MAC_45NM) == (0.9e-12, 4.6e-12)
    assert "not the target" in a["label"] and "Horowitz" in a["source"]


def test_dense_and_compressed_side_by_side() -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(size=(6, 5))
    x = (rng.random((4, 3, 5)) < 0.5).astype(float)
    dense = _report(w, x)
    pruned = _report(w * (rng.random(w.shape) < 0.5), x)
    energy = estimate_energy(dense, pruned, COSTS)
    synops = energy.terms[0]
    assert (synops.count_dense, synops.count_compressed) == (dense.per_sample, pruned.per_sample)
    saved = (dense.per_sample - pruned.per_sample) * 2e-12
    assert energy.total_j[0] - energy.total_j[1] == pytest.approx(saved, rel=1e-9)
    assert any("cores" in note for note in energy.notes)       # no cores: term left out
    assert all(not line.name.startswith("core") for line in energy.terms)
    assert "count/sample (dense)" in energy.table()


def test_costs_from_every_bundled_loihi_target_carry_their_sources() -> None:
    for name in ("loihi1", "loihi2"):
        target = load_target(name)
        costs = costs_from_target(target)
        assert costs.synop is not None
        assert costs.synop.joules == pytest.approx(target.energy.synop_pj * 1e-12)
        assert costs.synop.source == target.source("energy.synop_pj").source
        assert costs.core_step is not None
        assert costs.core_step.evidence == target.source("energy.core_step_pj").evidence
        assert costs.core_step.joules == pytest.approx(target.energy.core_step_pj * 1e-12)
    report = _report(np.ones((2, 2)), np.ones((3, 1, 2)))
    energy = estimate_energy(report, load_target("loihi1"), cores=1)
    assert energy.target == "loihi1"
    assert energy.terms[0].cost_j == pytest.approx(load_target("loihi1").energy.synop_pj * 1e-12)


def test_bad_arguments_raise() -> None:
    report = _report(np.ones((1, 1)), np.ones((1, 1, 1)))
    with pytest.raises(ConfigError, match="expected"):
        estimate_energy(report)
    with pytest.raises(ConfigError, match="cores"):
        estimate_energy(report, COSTS, cores=-1)
    with pytest.raises(ConfigError, match="source"):
        EnergyCost(1e-12, " ")
