"""--from, --discretization, --input-shape and --nir-for on the command line, end to end."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch

from sbc_deploy.cli import main
from sbc_deploy.frontends import load_model
from sbc_deploy.pipeline import DeployRequest, deploy
from sbc_deploy.sim import simulate
from sbc_deploy.validate import ValidationError


def _sinabs_if_net(path: Path, rng: np.random.Generator) -> Path:
    """A network shaped as sinabs 3.1.3 writes it: Affine (zero bias) -> IF with r = 1."""
    w1 = rng.normal(0.5, 0.3, (16, 10))
    w2 = rng.normal(0.4, 0.3, (4, 16))
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([10])), "fc1": nir.Affine(w1, np.zeros(16)),
               "if1": nir.IF(r=np.ones(16), v_threshold=np.ones(16)),
               "fc2": nir.Affine(w2, np.zeros(4)),
               "if2": nir.IF(r=np.ones(4), v_threshold=np.ones(4)),
               "output": nir.Output(np.array([4]))},
        edges=[("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "if2"),
               ("if2", "output")])
    nir.write(path, graph)
    return path


def _data(path: Path, rng: np.random.Generator, shape: tuple[int, ...], n: int = 40,
          steps: int = 10) -> Path:
    x = (rng.random((n, steps, *shape)) < 0.3).astype(np.uint8)
    np.savez(path, x=x, y=rng.integers(0, 4, n), dt=1e-3)
    return path


def test_inspect_from_sinabs_counts_steps_and_verbose_logs_the_convention(tmp_path, rng,
                                                                        capsys, caplog):
    model = _sinabs_if_net(tmp_path / "sinabs.nir", rng)
    caplog.set_level(logging.INFO, logger="sbc_deploy")
    assert main(["inspect", str(model), "--from", "sinabs", "--dt", "0.001", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "dt: 0.001 s (argument)" in out and "subtract" in out
    assert any("convention sinabs" in r.getMessage() for r in caplog.records)
    # without --dt sinabs cannot say how long a step is: inspect still shows the graph (its
    # continuous form) and says why the discrete form needs --dt (issue 13)
    assert main(["inspect", str(model), "--from", "sinabs"]) == 0
    out = capsys.readouterr().out
    assert "dt unknown (sinabs counts time in steps" in out and "--dt SECONDS" in out
    assert main(["inspect", str(model), "--from", "brian"]) == 2
    assert "unknown framework 'brian'" in capsys.readouterr().err
    assert main(["inspect", str(model), "--from", "sinabs:spike_fn=triple"]) == 2
    assert "spike_fn must be one of multi, single" in capsys.readouterr().err


def test_sinabs_network_is_not_silent_with_from_sinabs(tmp_path, rng):
    """The issue's case: IF with r = 1 and data binned at 1 ms. Read as the spec, the gain is
    dt r = 0.001 and the network is silent; read as sinabs, one unit per step."""
    model = _sinabs_if_net(tmp_path / "sinabs.nir", rng)
    x = (torch.rand(20, 8, 10, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    spec = load_model(model, dt=1e-3, reset="subtract", source="nir")
    sinabs = load_model(model, dt=1e-3, source="sinabs")
    assert simulate(spec, x).outputs["output"].sum() == 0
    assert simulate(sinabs, x).outputs["output"].sum() > 0


def test_discretization_flag_reaches_the_importer(tmp_path, rng, capsys):
    path = tmp_path / "lif.nir"
    tau = np.full(3, 0.01)
    nir.write(path, nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])),
               "lif": nir.LIF(tau=tau, r=np.ones(3), v_leak=np.zeros(3),
                              v_threshold=np.ones(3)),
               "output": nir.Output(np.array([3]))},
        edges=[("input", "lif"), ("lif", "output")], metadata={"dt": 1e-3, "reset": "zero"}))
    assert main(["inspect", str(path), "--discretization", "exact"]) == 0
    assert "discretization: exact" in capsys.readouterr().out
    assert main(["inspect", str(path)]) == 0
    assert "discretization: euler" in capsys.readouterr().out


def test_deploy_nir_for_writes_the_adapted_file_and_says_what_changed(tmp_path, rng, capsys):
    model = _sinabs_if_net(tmp_path / "sinabs.nir", rng)
    calib = _data(tmp_path / "calib.npz", rng, (10,))
    out = tmp_path / "out"
    # sinabs' default subtract reset: snntorch's importer builds zero resets only, refused
    # before any work
    assert main([str(model), "--from", "sinabs", "--dt", "0.001", "--target", "generic",
                 "--calib", str(calib), "--method", "magnitude", "--export", "nir",
                 "--nir-for", "snntorch", "--quiet", "-o", str(out)]) == 2
    assert "snntorch 1.0.0's importer builds reset_mechanism='zero'" in capsys.readouterr().err
    code = main([str(model), "--from", "sinabs", "--reset", "zero", "--dt", "0.001",
                 "--target", "generic", "--calib", str(calib), "--method", "magnitude",
                 "--export", "nir", "--nir-for", "snntorch", "--quiet", "-o", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    notes = report["notes"]
    assert any(n.startswith("nir export for snntorch: dt relabelled") for n in notes)
    assert any("import (convention sinabs)" in n for n in notes)  # sinabs' settings said
    # sinabs' MultiSpike, v >= threshold neurons become the ones snntorch's importer builds
    assert any("converted to snntorch's model before calibration" in n for n in notes)
    assert report["settings"]["nir_for"] == "snntorch"
    with h5py.File(out / "model.nir") as f:
        assert float(f["node/metadata/dt"][()]) == 1e-4
        assert f["node/metadata/sbc_nir_for"][()].decode() == "snntorch"
    # snntorch 1.0.0 imports nir.IF as Leaky(beta=0.9): the IF layers go out as LIF, beta 1.0
    written = nir.read(out / "model.nir")
    kinds = {type(n).__name__ for n in written.nodes.values()}
    assert "IF" not in kinds and "LIF" in kinds


def test_conv_first_netx_takes_its_input_shape_from_the_flag_or_the_data(tmp_path, rng,
                                                                         capsys):
    path = tmp_path / "conv.net"
    with h5py.File(path, "w") as f:
        g = f.create_group("layer/0")
        g.create_dataset("type", (1,), "S10", [b"conv"])
        g.create_dataset("shape", data=np.array([3, 4, 4]))
        g.create_dataset("weight", data=(2 * rng.integers(-20, 20, (3, 2, 3, 3)))
                         .astype(np.float32))
        for key, value in (("stride", [1, 1]), ("padding", [0, 0]), ("dilation", [1, 1])):
            g.create_dataset(key, data=np.array(value))
        g.create_dataset("groups", data=1)
        for key, value in {"type": "CUBA", "iDecay": 1024, "vDecay": 512, "vThMant": 80,
                           "refDelay": 1, "gradedSpike": False}.items():
            g.create_dataset(f"neuron/{key}", data=value)
    assert main(["inspect", str(path)]) == 2
    assert "--input-shape" in capsys.readouterr().err
    assert main(["inspect", str(path), "--input-shape", "2,6,6"]) == 0
    assert "2x6x6" in capsys.readouterr().out
    calib = _data(tmp_path / "calib.npz", rng, (2, 6, 6))
    out = tmp_path / "out"
    code = main([str(path), "--target", "loihi2", "--calib", str(calib), "--method",
                 "magnitude", "--export", "netx", "--quiet", "-o", str(out)])
    assert code in (0, 1)
    report = json.loads((out / "report.json").read_text())
    assert report["layers"][0]["shape"] == [3, 2, 3, 3]
    assert main(["inspect", str(path), "--input-shape", "2,x"]) == 2


def test_an_unknown_nir_consumer_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValidationError, match="--nir-for brian"):
        deploy(DeployRequest(model="nmnist_mlp", targets=("generic",), nir_for="brian",
                             out_dir=out, method="magnitude"))
    assert not out.exists()


def test_what_came_in_as_a_framework_goes_out_as_it(tmp_path, rng):
    """--from sinabs without --nir-for: model.nir is written for sinabs' importer, the network
    is converted to what that importer builds (MultiSpike, IF clamp at -threshold) before
    calibration, and the report says both; --nir-for nir gives spec NIR; a network sinabs'
    importer cannot build (a zero reset) falls back to spec NIR and says why."""
    model = _sinabs_if_net(tmp_path / "sinabs.nir", rng)
    calib = _data(tmp_path / "calib.npz", rng, (10,))

    def run(*extra: str) -> tuple[dict, str]:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        assert main([str(model), "--from", "sinabs:spike_fn=single", "--dt", "0.001",
                     "--target", "generic", "--calib", str(calib), "--method", "magnitude",
                     "--export", "nir", "--quiet", "-o", str(out), *extra]) == 0
        with h5py.File(out / "model.nir") as f:
            written_for = f["node/metadata/sbc_nir_for"][()].decode()
        return json.loads((out / "report.json").read_text()), written_for

    report, written_for = run()
    assert report["settings"]["nir_for"] == "sinabs" and written_for == "sinabs"
    notes = report["notes"]
    assert any("model.nir is written for sinabs's importer" in n for n in notes), notes
    converted = [n for n in notes if "converted to sinabs's model before calibration" in n]
    assert len(converted) == 2 and all("max_spikes=unbounded" in n and "v_min" in n
                                       for n in converted)
    report, written_for = run("--nir-for", "nir")
    assert report["settings"]["nir_for"] == "nir" and written_for == "nir"
    assert not any("converted to" in n for n in report["notes"])
    report, written_for = run("--reset", "zero")
    assert report["settings"]["nir_for"] == "nir" and written_for == "nir"
    assert any("written as spec NIR (--nir-for nir) instead: sinabs's importer cannot" in n
               and "MembraneSubtract" in n for n in report["notes"])


def _bundled_eval(path: Path, n: int, steps: int) -> Path:
    from sbc_deploy.bundled import load_bundled_data

    data = load_bundled_data("eval")
    np.savez(path, x=np.asarray(data.x[:n, :steps]).astype(np.uint8), y=np.asarray(data.y[:n]),
             dt=float(data.dt))
    return path


def test_a_network_converted_for_spyx_is_read_out_by_spike_count():
    """Was: --nir-for spyx put a one-step Delay after every spiking neuron (spyx's late
    spikes), the Output was then fed by a Delay, and the default read-out became the last
    step's value (membrane_last) instead of the spike count: the bundled MLP read --reset
    subtract classified 18.5 % of the bundled evaluation data (1,000 samples) where spyx
    itself counts spikes; now it reads out spike counts and keeps its accuracy."""
    from sbc_deploy.bundled import load_bundled_data, load_bundled_model
    from sbc_deploy.exporters.nir_consumers import consumer_model
    from sbc_deploy.ir import Delay
    from sbc_deploy.sim import accuracy, classify, default_decoding

    as_read = load_bundled_model("nmnist_mlp", reset="subtract")
    converted = consumer_model(as_read, "spyx").graph
    (last,) = converted.predecessors(converted.outputs[0])
    assert isinstance(converted.nodes[last], Delay)
    assert default_decoding(converted) == default_decoding(as_read) == "spike_count"
    data = load_bundled_data("eval")
    x = torch.as_tensor(np.swapaxes(np.asarray(data.x[:200]), 0, 1).astype(np.float32))
    y = np.asarray(data.y[:200])
    got = {name: accuracy(classify(simulate(g, x).outputs[g.outputs[0]],
                                   default_decoding(g)), y)
           for name, g in (("as read", as_read), ("spyx", converted))}
    assert got["as read"] >= 0.9 and got["spyx"] >= got["as read"] - 0.05, got


def test_a_guard_that_fails_after_the_consumer_conversion_names_it(tmp_path):
    """When the dense network fails a guard only after the conversion to --nir-for's model,
    the hint names that conversion and both accuracies instead of blaming the time step. Real
    case: the bundled MLP on the first 3 steps of its recordings; spyx sends each layer's
    spikes one step late, so no output spike arrives within 3 steps (chance), while the
    network as read classifies about half of them."""
    from sbc_deploy.errors import GuardError

    data = _bundled_eval(tmp_path / "short.npz", 200, 3)
    request = DeployRequest(model="nmnist_mlp", targets=("generic",), reset="subtract",
                            nir_for="spyx", calib=data, eval=data, method="magnitude",
                            out_dir=tmp_path / "out")
    with pytest.raises(GuardError) as caught:
        deploy(request)
    (finding,) = [f for f in caught.value.findings if f.code == "dense_at_chance"]
    hint = " ".join(finding.hint.split())
    assert "the conversion to spyx's model (--nir-for spyx" in hint, hint
    read, converted = (float(v) for v in re.search(
        r"as read it classifies ([\d.]+) % of the evaluation data, converted ([\d.]+) %",
        hint).groups())
    assert read >= 30.0 and converted <= 15.0 and converted == pytest.approx(
        100 * finding.value, abs=0.05)
    assert "--nir-for nir writes spec NIR" in hint and "time step" not in hint
    assert not (tmp_path / "out").exists()
