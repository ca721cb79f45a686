"""The figures an engineer decides from (issue 20): the summary strip, the ranking, refusals
before compression, the Loihi 2 costs' derivation, latency. One small deploy (~25 s); the rest
are closed-form checks of report/summary.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sbc_deploy.report.model import Accuracy, BeforeAfter, CoreRow, TargetReport, ViolationRow
from sbc_deploy.report.summary import (
    accuracy_change,
    core_binding,
    deciding_limit,
    rank,
    strip,
    wilson,
)


def test_loihi2_static_cost_reproduces_lava_dls_measured_static_energy():
    """lava-dl's PilotNet LIF benchmark on Loihi 2 (lava-dl@d825ac50): 408.91 frames/s at 16
    steps per frame; 1.661103 mJ total and 1.093544 mJ dynamic energy per inference. The target
    file's step time and per-core static cost must give back the measured static share."""
    from sbc_deploy.targets import load_target

    target = load_target("loihi2")
    assert target.timing.step_us * 1e-6 * 16 * 408.91 == pytest.approx(1.0, rel=1e-4)
    static_per_inference = target.energy.core_step_pj * 1e-12 * 128 * 16
    assert static_per_inference == pytest.approx(1.661103e-3 - 1.093544e-3, rel=2e-3)
    # the per-operation costs are Loihi 1's, and say so
    loihi1 = load_target("loihi1")
    for key in ("synop_pj", "neuron_update_pj", "spike_routed_pj"):
        assert getattr(target.energy, key) == getattr(loihi1.energy, key)
        assert target.source(f"energy.{key}").borrowed_from == "loihi1"
    assert target.source("energy.core_step_pj").borrowed_from is None


def test_wilson_interval_and_the_accuracy_change():
    low, high = wilson(0.5, 100)  # closed form: 0.5 -+ 1.96 * sqrt(0.25/100 + 1.96^2/4e4) / d
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson(1.0, 50) == pytest.approx((50 / (50 + 1.959964**2), 1.0))  # n / (n + z^2)
    change = accuracy_change(Accuracy(0.96, 0.95, 0.958, samples=1000))
    delta, half, n, which = change
    assert delta == pytest.approx(-0.002) and n == 1000 and which == "integer core"
    assert half == pytest.approx(1.959964 * math.sqrt((0.96 * 0.04 + 0.958 * 0.042) / 1000))
    assert accuracy_change(Accuracy(0.9, 0.9, None, samples=None)) is None


def _core(i, neurons, bits, axons, layer="lif1"):
    return CoreRow(i, layer, neurons, bits, neurons / 1024, bits / 1_048_576, 1024, 1_048_576,
                   in_axons=axons, out_axons=None, in_axon_capacity=4096)


def test_the_deciding_limit_is_the_one_most_cores_are_fullest_against():
    # the CNN case of the issue: 11 cores at 50 % memory and 16 % neurons, axons full
    cores = [_core(i, 164, 524_288, 4096) for i in range(11)] + [_core(11, 1000, 10, 10, "lif2")]
    assert core_binding(cores[0]) == "in-axons" and core_binding(cores[-1]) == "neurons"
    assert deciding_limit(cores, {"split_layers": True}) == "axons in per core"
    assert deciding_limit(cores[-1:], {"split_layers": True}) == "neurons per core"
    assert deciding_limit(cores, {"split_layers": False}) == "one layer per core"


def _target(name, fits=True, acc=0.95, energy_j=1e-6, cores=4, n=1000, refused=None):
    violations = () if fits else (ViolationRow("lif1", "total_cores", 1, 14, "needs 14 cores"),)
    return TargetReport(name, "", "sbc", (), violations, cores, 128,
                        accuracy=Accuracy(0.96, acc, acc, samples=n),
                        energy_j=BeforeAfter(2 * energy_j, energy_j), refused=refused)


def test_ranking_energy_at_equal_accuracy_then_the_rest_greyed_with_their_reason():
    targets = [_target("a", energy_j=3e-6), _target("b", energy_j=1e-6),
               _target("worse", acc=0.80, energy_j=1e-9),      # cheapest but far less accurate
               _target("big", fits=False, energy_j=1e-12),
               _target("speck", refused="speck runs IF neurons only")]
    order = rank(targets)
    assert [r["target"] for r in order] == ["b", "a", "worse", "big", "speck"]
    assert [r["rank"] for r in order] == [1, 2, 3, None, None]
    assert order[3]["reason"] == "lif1: needs 14 cores"
    assert order[4]["reason"] == "speck runs IF neurons only" and not order[4]["fits"]
    # within noise counts as equal: 0.950 vs 0.945 on 1,000 samples ranks by energy
    close = [_target("x", acc=0.950, energy_j=2e-6), _target("y", acc=0.945, energy_j=1e-6)]
    assert [r["target"] for r in rank(close)] == ["y", "x"]
    assert [r["target"] for r in rank(close, "accuracy")] == ["x", "y"]
    by_cores = rank([_target("p", cores=9), _target("q", cores=3)], "cores")
    assert [(r["target"], r["value"]) for r in by_cores] == [("q", 3), ("p", 9)]
    with pytest.raises(ValueError, match="unknown ranking"):
        rank(targets, "price")
    from sbc_deploy.pipeline import DeployRequest
    from sbc_deploy.validate import ValidationError, validate_request

    with pytest.raises(ValidationError, match="--rank-by price: unknown; known: energy"):
        validate_request(DeployRequest(rank_by="price", out_dir="never-created"))


def test_a_target_the_network_cannot_use_is_refused_before_any_work(tmp_path, capsys,
                                                                     monkeypatch):
    import sbc_deploy.pipeline as pipeline
    from sbc_deploy.cli import main

    def never(*args, **kwargs):
        raise AssertionError("a stage ran for a refused target")

    monkeypatch.setattr(pipeline, "calibrate", never)
    assert main(["--target", "Speck", "--quiet", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--target speck: refused before any work: speck cannot run LIF neurons: speck runs " \
           "IF neurons only" in err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """loihi2 and speck on the bundled MLP, 32 evaluation samples, magnitude pruning."""
    from sbc_deploy.bundled import load_bundled_model
    from sbc_deploy.cli import main

    out = tmp_path_factory.mktemp("run") / "out"
    argv = ["--target", "loihi2,speck", "--method", "magnitude", "--sparsity", "0.5",
            "--eval-limit", "32", "--quiet", "--export", "nir", "-o", str(out)]
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(argv)
    report = json.loads((out / "report.json").read_text())
    return code, buffer.getvalue(), report, out, load_bundled_model("nmnist_mlp")


def test_report_json_holds_the_decision_figures(compared):
    import nir

    code, stdout, report, out, dense = compared
    assert code == 1  # speck does not fit: the comparison says so
    loihi2, speck = report["targets"]
    assert speck["refused"].startswith("speck cannot run LIF neurons") and speck["fits"] is False
    assert speck["exports"] == {} and not (out / "speck").exists()  # nothing compressed for it
    assert loihi2["accuracy"]["samples"] == 32
    assert loihi2["cores_dense"] >= loihi2["cores_used"] >= 1
    assert loihi2["deciding_limit"] in ("neurons per core", "synapse memory per core",
                                        "axons in per core", "axons out per core")
    # synapse memory on the chip, like for like: the dense network's own mapping, and the
    # compressed layers each in the storage form the target picked
    from sbc_deploy.check import check
    from sbc_deploy.targets import load_target

    dense_map = check(dense, load_target("loihi2")).mapping
    assert loihi2["memory_bytes"]["dense"] == sum(p.synapse_bits for p in dense_map.layers) / 8
    stored = sum(layer["memory_bits_sparse"] if layer["storage"] == "sparse"
                 else layer["memory_bits_dense"] for layer in loihi2["layers"])
    assert loihi2["memory_bytes"]["compressed"] == stored / 8
    # at 50 % the target keeps dense storage (sparse pays off above 62 %): pruning frees none
    assert all(layer["storage"] == "dense" for layer in loihi2["layers"])
    assert loihi2["memory_bytes"]["compressed"] == loihi2["memory_bytes"]["dense"]
    # removed synapses, counted again from the exported NIR file
    graph = nir.read(str(out / "loihi2" / "model.nir"))
    after = sum(int(np.count_nonzero(node.weight)) for node in graph.nodes.values()
                if hasattr(node, "weight"))
    before = sum(int(np.count_nonzero(layer.synapse.weight)) for layer in dense.synapse_layers())
    assert loihi2["synapses_removed"] == before - after
    assert 0 <= loihi2["removed_by_rounding"] <= loihi2["synapses_removed"]
    steps = loihi2["steps"]
    assert loihi2["latency_s"] == pytest.approx(steps * 152.85e-6)
    assert loihi2["throughput_hz"] == pytest.approx(1 / loihi2["latency_s"])
    assert set(loihi2["borrowed"]) == {"synops", "neuron updates", "spikes routed"}
    assert [r["target"] for r in report["ranking"]] == ["loihi2", "speck"]
    assert report["rank_by"] == "energy"


def test_the_cli_ends_with_the_same_figures(compared):
    code, stdout, report, out, _ = compared
    loihi2 = report["targets"][0]
    text = stdout.split("wrote")[0]
    assert "loihi2: FITS" in text and "speck: REFUSED (speck cannot run LIF neurons" in text
    assert f"deciding limit: {loihi2['deciding_limit']}" in text
    assert "n = 32 samples" in text and "(estimate)" in text
    assert "costs borrowed from loihi1" in text
    assert "1. loihi2" in text and "-- speck does not fit" in text
    assert [item.label for item in strip(_reload(report))][:3] == [
        "verdict", "cores (dense -> compressed)", "accuracy change"]


def _reload(report):
    t = report["targets"][0]
    return TargetReport(t["target"], "", t["method"], (), (), t["cores_used"],
                        t["cores_available"], accuracy=Accuracy(**t["accuracy"]),
                        cores_dense=t["cores_dense"])
