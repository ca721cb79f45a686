"""The command line end to end: exit codes, messages, files written, the report contract."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest

from conftest import fixture_path
from sbc_deploy.check import check
from sbc_deploy.cli import main
from sbc_deploy.frontends import from_netx, from_nir, load_model


def _mlp_nir(path: Path, rng: np.random.Generator) -> Path:
    """A small float NIR MLP (20 -> 32 LIF -> 5 LIF) with dt and reset in its metadata."""
    w1 = rng.normal(0, 0.4, (32, 20)).astype(np.float32)
    w2 = rng.normal(0, 0.4, (5, 32)).astype(np.float32)

    def lif(n: int) -> nir.LIF:
        return nir.LIF(tau=np.full(n, 2e-3), r=np.full(n, 2.0), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), v_reset=np.zeros(n))

    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([20])), "fc1": nir.Linear(weight=w1), "lif1": lif(32),
               "fc2": nir.Linear(weight=w2), "lif2": lif(5), "output": nir.Output(np.array([5]))},
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
               ("lif2", "output")],
        metadata={"dt": 1e-3, "reset": "zero"})
    nir.write(path, graph)
    return path


def _data(path: Path, rng: np.random.Generator, shape: tuple[int, ...], n: int = 48,
          steps: int = 12, labels: bool = True) -> Path:
    x = (rng.random((n, steps, *shape)) < 0.2).astype(np.uint8)
    if labels:
        np.savez(path, x=x, y=rng.integers(0, 5, n))
    else:  # random labels put any network at chance, which the quality guards refuse
        np.savez(path, x=x)
    return path


def test_help_and_targets(capsys):
    assert main(["--help"]) == 0
    assert "--target" in capsys.readouterr().out
    assert main(["targets"]) == 0
    listing = capsys.readouterr().out
    for name in ("loihi2", "loihi1", "speck", "xylo", "akida", "generic"):
        assert name in listing


@pytest.mark.parametrize("relative", [
    ("nir", "lif_norse.nir"), ("nir", "two_lif_neurons.nir"), ("nir", "scnn_mnist_snntorch.nir"),
    ("nir", "braille_noDelay_bias_zero.nir"), ("netx", "tinynet", "tiny.net"),
    ("netx", "oxford", "network.net"), ("netx", "mnist_small", "network.net"),
    ("netx", "mnist_bootstrap", "network.net"),
])
def test_inspect_every_fixture(relative, capsys):
    path = fixture_path(*relative)
    # No flags: a NIR file without dt or reset is shown in its continuous form.
    assert main(["inspect", str(path)]) == 0
    plain = capsys.readouterr().out
    # With dt and reset: the discrete form.
    assert main(["inspect", str(path), "--dt", "1e-4", "--reset", "zero"]) == 0
    out = capsys.readouterr().out
    graph = load_model(path, dt=1e-4, reset="zero")
    for name in graph.nodes:
        assert name in out and name in plain
    assert "unknown" not in out


def test_inspect_without_dt_shows_the_continuous_parameters(capsys):
    path = fixture_path("nir", "lif_norse.nir")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    raw = nir.read(path)
    tau = float(np.asarray(raw.nodes["1"].tau).reshape(-1)[0])
    assert f"tau={tau:.4g}" in out  # as stored in the file, not a decay
    assert "beta=" not in out
    assert "dt unknown" in out and "--dt SECONDS" in out and "reset unknown" in out
    assert main(["inspect", str(path), "--dt", "1e-4"]) == 0  # reset still unknown: no decays
    partial = capsys.readouterr().out
    assert "reset unknown" in partial and "dt unknown" not in partial and "beta=" not in partial
    assert main(["inspect", str(path), "--dt", "1e-4", "--reset", "zero"]) == 0
    out = capsys.readouterr().out
    beta = 1 - 1e-4 / tau  # forward Euler, the default discretisation
    assert f"beta={beta:.4g}" in out and f"tau={tau:.4g}" in out


def test_inspect_bundled_name_json_and_conv_geometry(capsys):
    assert main(["inspect", "nmnist_cnn", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["discrete"] is True and data["format"] == "nir"
    graph = nir.read(Path(__file__).resolve().parents[1] / "sbc_deploy" / "bundled"
                     / "nmnist_cnn.nir")
    convs = {k: n for k, n in graph.nodes.items() if isinstance(n, nir.Conv2d)}
    nodes = {n["name"]: n for n in data["nodes"]}
    for name, conv in convs.items():
        node = nodes[name]
        assert tuple(node["kernel"]) == tuple(conv.weight.shape[2:])
        assert tuple(node["stride"]) == tuple(np.broadcast_to(conv.stride, (2,)))
        assert node["groups"] == conv.groups
        assert node["parameters"] == conv.weight.size + np.asarray(conv.bias).size
        # synapses: kernel entries x output positions (no padding, all weights non-zero)
        out_hw = np.prod(node["output_shape"][1:])
        assert node["synapses"] == np.count_nonzero(conv.weight) * out_hw
    assert main(["inspect", "nmnist_cnn"]) == 0
    assert "k5x5 s1x1 p0x0" in capsys.readouterr().out


def test_version_usage_and_help_name_the_commands(capsys):
    from sbc_deploy import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"sbc-deploy {__version__}"
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    usage = out.split("\n\n")[0]
    for command in ("inspect", "check", "targets", "--version"):
        assert f"sbc-deploy {command}" in usage, command
    assert "--eval-limit" in out and "commands:" in out
    assert main(["inspect", "--help"]) == 0 and "continuous" in capsys.readouterr().out


def test_check_prints_one_verdict_per_target_and_the_violations(capsys):
    model = fixture_path("netx", "mnist_small", "network.net")
    assert main(["check", str(model), "--target", "loihi1,speck"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("loihi1: fits (3 of 128 cores")
    assert lines[1].startswith("speck: DOES NOT FIT: ")
    # the table: one row per violation, the same ones the library finds
    from sbc_deploy.targets import load_target

    expected = check(load_model(model), load_target("speck")).violations
    table = [line for line in lines if line.startswith("speck ")]
    assert lines[1].startswith(f"speck: DOES NOT FIT: {len(expected)} violation(s)")
    assert len(table) == len(expected)
    for row, violation in zip(table, expected):
        assert f" {violation.rule} " in row and violation.message in row
    # one name per layer: the neuron is shown with the synapse layer that drives it
    assert "layer0.dense -> layer0.neuron" in out
    assert len(lines) < 30 and "# sbc-deploy report" not in out
    assert main(["check", str(model), "--target", "loihi1", "--report"]) == 0
    assert "# sbc-deploy report" in capsys.readouterr().out


def test_inspect_bad_files_exit_2_and_say_why(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.nir")]) == 2
    assert "missing.nir" in capsys.readouterr().err
    text = tmp_path / "notes.nir"
    text.write_text("not a network")
    assert main(["inspect", str(text)]) == 2
    assert "notes.nir" in capsys.readouterr().err
    source = fixture_path("netx", "mnist_small", "network.net")
    truncated = tmp_path / "cut.net"
    truncated.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    assert main(["inspect", str(truncated)]) == 2
    assert "cut.net" in capsys.readouterr().err


def test_bad_usage_exits_2(capsys):
    assert main(["--target", "loihi2", "--sparsity", "1.5"]) == 2
    assert "sparsity" in capsys.readouterr().err
    assert main(["--target", "loihi3"]) == 2
    assert "loihi2" in capsys.readouterr().err  # the error lists the known targets


def test_check_exit_codes_follow_the_violations(tmp_path, capsys):
    model = fixture_path("netx", "mnist_small", "network.net")
    assert main(["check", str(model), "--target", "loihi1", "-o", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["fits"] is True and report["cores_used"] == 3
    # Speck runs IF neurons only: every CUBA layer of the netx file is a violation.
    assert main(["check", str(model), "--target", "speck"]) == 1
    assert "supported_neuron_model" in capsys.readouterr().out


def test_deploy_writes_report_and_exports_that_reload(tmp_path, rng):
    model = fixture_path("netx", "mnist_small", "network.net")
    calib = _data(tmp_path / "calib.npz", rng, (784,), labels=False)
    out = tmp_path / "out"
    code = main([str(model), "--target", "loihi2", "--calib", str(calib), "--eval", str(calib),
                 "--sparsity", "0.6", "--quiet", "-o", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    for key in ("schema_version", "target", "method", "layers", "violations", "cores_used",
                "accuracy", "synops", "energy_j", "timings_s"):
        assert key in report
    assert report["target"] == "loihi2" and report["method"] == "sbc"
    kept = sum(layer["synapses"] for layer in report["layers"])
    dense = sum(layer["dense_synapses"] for layer in report["layers"])
    # At least the requested 60 % go; 8-bit rounding may zero a few more small weights.
    assert 0.35 * dense < kept <= 0.4 * dense + 1
    assert report["synops"]["compressed"] < report["synops"]["dense"]
    for name in ("model.net", "model.nir", "model.onnx", "report.md", "report.html"):
        assert (out / name).is_file(), name
    # The netx export holds exactly the integers the report counts as kept synapses.
    with h5py.File(out / "model.net") as f:
        nonzero = sum(int(np.count_nonzero(f[f"layer/{i}/weight"][()]))
                      for i in f["layer"] if "weight" in f[f"layer/{i}"])
    assert nonzero == kept
    assert check(from_netx(out / "model.net"), "loihi2").ok


def test_a_violating_network_fits_after_deploy(tmp_path, rng, capsys):
    """Float weights and a fan-in over a custom target's cap: check fails, deploy fixes both."""
    model = _mlp_nir(tmp_path / "mlp.nir", rng)
    source = Path(__file__).resolve().parents[1] / "targets" / "loihi2.toml"
    text = source.read_text().replace('name = "loihi2"', 'name = "tight"')
    start = text.index("[limits.max_fan_in]")
    end = text.index("[limits.max_fan_out]")
    text = text[:start] + ('[limits.max_fan_in]\nvalue = 8\nevidence = "definition"\n'
                           'source = "a test chip"\n\n') + text[end:]
    target = tmp_path / "tight.toml"
    target.write_text(text)
    assert main(["check", str(model), "--target", str(target)]) == 1
    before = capsys.readouterr().out
    assert "weights_on_grid" in before and "fan_in" in before
    calib = _data(tmp_path / "calib.npz", rng, (20,))
    assert main([str(model), "--target", str(target), "--calib", str(calib), "--quiet",
                 "-o", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["fits"] and all(layer["fan_in_max"] <= 8 for layer in report["layers"])
    assert all(layer["weight_bits"] == 8 for layer in report["layers"])
    # The NIR export carries the pruned weights as they act.
    exported = from_nir(tmp_path / "out" / "model.nir")
    for name in ("fc1", "fc2"):
        assert np.count_nonzero(exported.nodes[name].weight, axis=1).max() <= 8


def test_unwritable_output_fails_before_any_work(tmp_path, rng):
    model = fixture_path("netx", "mnist_small", "network.net")
    blocker = tmp_path / "file"
    blocker.write_text("I am a file, not a folder")
    assert main([str(model), "--target", "loihi2", "--method", "magnitude", "--quiet",
                 "-o", str(blocker / "out")]) == 2
    assert blocker.read_text() == "I am a file, not a folder"


def test_several_targets_in_one_report(tmp_path, rng):
    model = fixture_path("netx", "mnist_small", "network.net")
    calib = _data(tmp_path / "calib.npz", rng, (784,), n=16, steps=6)
    out = tmp_path / "cmp"
    code = main([str(model), "--target", "loihi2,speck", "--calib", str(calib), "--quiet",
                 "--method", "magnitude", "-o", str(out)])
    assert code == 1  # speck cannot run CUBA neurons
    report = json.loads((out / "report.json").read_text())
    assert [t["target"] for t in report["targets"]] == ["loihi2", "speck"]
    assert report["targets"][0]["fits"] and not report["targets"][1]["fits"]
    assert (out / "loihi2" / "model.net").is_file() and not (out / "speck" / "model.net").exists()
    assert "How do the targets compare?" in (out / "report.md").read_text()
    shutil.rmtree(out)


def test_public_api_verbs_are_the_functions():
    import sbc_deploy
    import sbc_deploy.calibrate  # importing stages must not hide the verbs
    import sbc_deploy.check.rules  # noqa: F401
    import sbc_deploy.compress.config  # noqa: F401

    from sbc_deploy.check import check as check_fn
    from sbc_deploy.compress import compress as compress_fn

    assert sbc_deploy.compress is compress_fn and sbc_deploy.check is check_fn
    assert callable(sbc_deploy.calibrate) and callable(sbc_deploy.deploy)


def test_a_bundled_network_by_name_comes_with_its_data(capsys):
    """``sbc-deploy --target T nmnist_cnn``: the name of a bundled network (no such file here)
    loads it with the bundled calibration and evaluation sets; --help lists every name."""
    from sbc_deploy import bundled
    from sbc_deploy.pipeline import DeployRequest, _load

    assert main(["--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(name in help_text for name in bundled.MODELS)
    for name in bundled.MODELS:
        graph, label, calib, evaluation = _load(DeployRequest(model=name))
        expected = bundled.load_bundled_model(name)
        assert [type(graph.nodes[n]) for n in graph.topological_order] == [
            type(expected.nodes[n]) for n in expected.topological_order]
        assert name in label and calib is not None and evaluation is not None
        assert np.array_equal(evaluation.x, bundled.load_bundled_data("eval").x)
