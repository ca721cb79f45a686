"""Quality guards on real cases: a network that fits but is useless exits 1 with a finding."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from conftest import fixture_path
from sbc_deploy.cli import main
from sbc_deploy.guards import (
    DEFAULT_MAX_DROP,
    Activity,
    ActivityMeter,
    compressed_findings,
    dense_findings,
    parse_max_drop,
)
from sbc_deploy.report.energy import estimate_energy
from sbc_deploy.report.synops import SynOpsReport


def _eval(path: Path, n: int, dt: float | None = None) -> Path:
    from sbc_deploy.bundled import load_bundled_data
    from sbc_deploy.data.npz import write_npz

    data = load_bundled_data("eval").subset(slice(0, n))
    if dt is not None:
        data = dataclasses.replace(data, dt=dt)
    return write_npz(path, data)


@pytest.fixture(scope="module")
def fan_in_64(tmp_path_factory):
    """`sbc-deploy --target loihi2 --fan-in 64 --method magnitude` on the bundled MLP."""
    folder = tmp_path_factory.mktemp("fan64")
    data = _eval(folder / "eval.npz", 100)
    out = folder / "out"
    code = main(["--target", "loihi2", "--fan-in", "64", "--method", "magnitude", "--eval",
                 str(data), "--quiet", "-o", str(out)])
    return code, json.loads((out / "report.json").read_text()), data, folder


def test_fan_in_64_magnitude_exits_1_with_the_accuracy_drop(fan_in_64):
    code, report, _, _ = fan_in_64
    assert code == 1
    assert report["fits"] is True and report["guards_pass"] is False  # fits, yet useless
    drops = {f["where"]: f for f in report["findings"] if f["code"] == "accuracy_drop"}
    assert set(drops) == {"accuracy.compressed_float", "accuracy.compressed_integer"}
    acc = report["accuracy"]
    for where, key in (("accuracy.compressed_float", "compressed_float"),
                       ("accuracy.compressed_integer", "compressed_integer")):
        finding = drops[where]
        assert finding["severity"] == "error" and finding["limit"] == DEFAULT_MAX_DROP
        assert finding["value"] == pytest.approx(100 * (acc["dense_float"] - acc[key]))
        assert "--sparsity" in finding["hint"] or "--fan-in" in finding["hint"]
    assert acc["dense_float"] > 0.9 and acc["compressed_float"] < 0.2
    markdown = (fan_in_64[3] / "out" / "report.md").read_text()
    assert "## Quality guards" in markdown and "accuracy_drop" in markdown
    # per-layer activity dense vs compressed is in the report
    rates = report["activity"]
    assert set(rates["dense"]["rate"]) == set(rates["loihi2"]["rate"]) == {"leaky2", "leaky4"}


def test_max_drop_none_turns_the_accuracy_guard_off(fan_in_64):
    _, _, data, folder = fan_in_64
    out = folder / "off"
    main(["--target", "loihi2", "--fan-in", "64", "--method", "magnitude", "--eval", str(data),
          "--quiet", "--max-drop", "none", "-o", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert not [f for f in report["findings"] if f["code"] == "accuracy_drop"]
    assert report["settings"]["max_drop"] is None


def test_dense_energy_is_costed_on_the_dense_network(fan_in_64):
    """The dense baseline does not move with the compressed network's core count."""
    _, report, data, folder = fan_in_64
    out = folder / "sparse"
    main(["--target", "loihi2", "--sparsity", "0.5", "--method", "magnitude", "--eval",
          str(data), "--quiet", "-o", str(out)])
    other = json.loads((out / "report.json").read_text())
    assert other["energy_j"]["dense"] == pytest.approx(report["energy_j"]["dense"], rel=1e-12)
    assert other["energy_j"]["compressed"] != report["energy_j"]["compressed"]


def test_wrong_dt_is_flagged_silent_and_at_chance_before_compression(tmp_path, monkeypatch,
                                                                     capsys):
    """snntorch's CNN (IF, r = 1, time counted in steps) imported with dt = 1 ms never fires;
    the run stops before calibration/compression and writes nothing."""
    import sbc_deploy.pipeline as pipeline

    def never(*args, **kwargs):
        raise AssertionError("a stage ran after the dense guard failed")

    monkeypatch.setattr(pipeline, "calibrate", never)
    monkeypatch.setattr(pipeline, "compress", never)
    model = fixture_path("nir", "scnn_mnist_snntorch.nir")
    data = _eval(tmp_path / "eval.npz", 60, dt=1e-3)  # 6 of 60 are zeros: 10 %
    out = tmp_path / "out"
    # generic runs IF neurons with a subtractive reset (loihi2 refuses them up front: issue 20)
    code = main([str(model), "--dt", "1e-3", "--reset", "subtract", "--target", "generic",
                 "--method", "magnitude", "--eval", str(data), "--quiet", "-o", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "silent_layer" in err and "dense_at_chance" in err and "--dt 1" in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_silence_is_found_on_calibration_data_when_there_is_no_evaluation(tmp_path, capsys):
    model = fixture_path("nir", "scnn_mnist_snntorch.nir")
    data = _eval(tmp_path / "calib.npz", 8, dt=1e-3)
    # generic runs IF neurons with a subtractive reset (loihi2 refuses them up front: issue 20)
    code = main([str(model), "--dt", "1e-3", "--reset", "subtract", "--target", "generic",
                 "--calib", str(data), "--quiet", "-o", str(tmp_path / "out")])
    assert code == 1 and "calibration data" in capsys.readouterr().err


# --------------------------------------------------------------------------- units


def test_activity_meter_counts_rates_and_silent_neurons():
    meter = ActivityMeter(["a"], "evaluation")
    spikes = torch.zeros(4, 2, 3)  # [T, B, neurons]
    spikes[0, 0, 0] = 1
    spikes[1, 1, 0] = 1
    spikes[2, 1, 1] = 1
    meter.add({"a": spikes})
    meter.add({"a": torch.zeros(4, 1, 3)})
    result = meter.result()
    assert result.rate["a"] == pytest.approx(3 / (4 * 3 * 3))
    assert result.silent_neurons["a"] == pytest.approx(1 / 3)  # neuron 2 never fired
    assert result.samples == 3


def test_dense_findings_thresholds():
    quiet = Activity({"l1": 0.1, "l2": 0.0, "l3": 0.95}, {}, 10, "evaluation")
    found = {f.code: f for f in dense_findings(quiet, 0.14, dt=1e-3, n_classes=10,
                                               reset="subtract")}
    assert found["silent_layer"].where == "l2" and found["silent_layer"].severity == "error"
    assert found["saturated_layer"].severity == "warning" and "--reset zero" in \
        found["saturated_layer"].hint
    assert found["dense_at_chance"].limit == pytest.approx(0.15)
    assert dense_findings(None, 0.16, dt=1e-3, n_classes=10) == []
    assert dense_findings(None, 0.14, dt=1e-3, n_classes=None) == []


def test_compressed_findings_thresholds():
    args = dict(dense=None, compressed=None, dense_accuracy=0.9)
    assert compressed_findings("t", float_accuracy=0.85, integer_accuracy=0.85, max_drop=5,
                               **args) == []
    found = compressed_findings("t", float_accuracy=0.849, integer_accuracy=0.8, max_drop=5,
                                **args)
    assert [f.code for f in found] == ["accuracy_drop", "accuracy_drop"]
    assert compressed_findings("t", float_accuracy=0.1, integer_accuracy=0.1, max_drop=None,
                               **args) == []
    gap = compressed_findings("t", float_accuracy=0.9, integer_accuracy=0.8, max_drop=None,
                              **args)
    assert [f.code for f in gap] == ["integer_float_mismatch"]
    assert parse_max_drop("none") is None and parse_max_drop("2.5") == 2.5
    for bad in ("-1", "101", "nan"):
        with pytest.raises(ValueError):
            parse_max_drop(bad)


def test_max_drop_default_in_the_cli_is_the_guards_default():
    from sbc_deploy.cli import deploy_parser

    assert deploy_parser().parse_args(["--target", "x"]).max_drop == DEFAULT_MAX_DROP


def test_energy_dense_baseline_uses_its_own_cores():
    from sbc_deploy.targets import load_target

    target = load_target("loihi2")
    counts = {"synops": 100.0, "neuron_updates": 10.0, "spikes_routed": 5.0, "steps": 20,
              "ann_macs": 1000.0}

    class Counted(SynOpsReport):  # fixed per-sample counts
        def __init__(self):
            pass

        def per_sample_counts(self):  # type: ignore[override]
            return counts

    a = estimate_energy(Counted(), Counted(), target, cores=2, dense_cores=5)
    b = estimate_energy(Counted(), Counted(), target, cores=9, dense_cores=5)
    assert a.total_j[0] == b.total_j[0] and a.total_j[1] < b.total_j[1]
    core = target.energy.core_step_pj * 1e-12
    assert b.total_j[1] - a.total_j[1] == pytest.approx(7 * 20 * core)


def test_calibration_data_that_never_drives_the_network_is_flagged(tmp_path, capsys):
    """Evaluation data fine, calibration data all zeros (say, a wrong encoding): every layer is
    silent on it, so its Hessians would be zero; the run stops before calibrating."""
    import numpy as np

    good = _eval(tmp_path / "eval.npz", 40)
    np.savez(tmp_path / "zeros.npz", x=np.zeros((8, 10, 2, 34, 34), np.uint8), dt=0.01)
    code = main(["--target", "loihi2", "--eval", str(good), "--calib",
                 str(tmp_path / "zeros.npz"), "--quiet", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "silent_layer" in err and "calibration data" in err
    assert not (tmp_path / "out").exists()


def _multi_spike_net(driven: int):
    """One layer of 10 multi-spike LIF neurons (no cap, subtractive reset, no leak memory:
    beta = 0) of which ``driven`` get a current of 3.5 thresholds every step: each of those sends
    ceil(3.5) - 1 = 3 spikes a step, the others none."""
    import numpy as np

    from sbc_deploy.ir import LIF, Affine, Graph, Input, Output

    weight = np.zeros((10, 1))
    weight[:driven, 0] = 3.5
    nodes = {"in": Input((1,)), "fc": Affine(weight),
             "lif": LIF(np.zeros(10), np.ones(10), reset="subtract", max_spikes=None),
             "out": Output((10,))}
    return Graph.chain(nodes.items(), 1e-3, {"reset": "subtract"})


def test_multi_spike_layers_are_judged_on_neuron_steps_with_a_spike():
    """Before the fix a layer of 5 of 10 neurons sending 3 spikes a step was 'saturated' at
    '150.0 % of neuron-steps'; it fires on 50 % of them."""
    import numpy as np

    from sbc_deploy.guards import measure_activity

    x = np.ones((2, 6, 1), dtype=np.float32)  # [N, T, input]
    half = measure_activity(_multi_spike_net(5), x, "evaluation")
    assert half.rate["lif"] == pytest.approx(5 * 3 / 10)      # spikes per neuron per step
    assert half.active["lif"] == pytest.approx(0.5)           # neuron-steps with a spike
    assert half.to_dict()["active"] == {"lif": pytest.approx(0.5)}
    assert not [f for f in dense_findings(half, None, dt=1e-3, n_classes=None)
                if f.code == "saturated_layer"]
    full = measure_activity(_multi_spike_net(10), x, "evaluation")
    (found,) = [f for f in dense_findings(full, None, dt=1e-3, n_classes=None)
                if f.code == "saturated_layer"]
    assert "fires on 100.0 % of neuron-steps (3 spikes per neuron per step" in found.message
    assert found.value == pytest.approx(1.0)


def test_activity_meter_counts_neuron_steps_with_several_spikes():
    meter = ActivityMeter(["a"], "evaluation")
    spikes = torch.zeros(2, 1, 2)
    spikes[0, 0, 0] = 4          # one neuron-step, four spikes
    spikes[1, 0, 1] = 1
    meter.add({"a": spikes})
    meter.add({"a": torch.ones(2, 1, 2)})  # binary chunk: active = spikes
    result = meter.result()
    assert result.rate["a"] == pytest.approx((5 + 4) / 8)
    assert result.active["a"] == pytest.approx((2 + 4) / 8)
