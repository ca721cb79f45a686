"""from_torch: how the capture maps torch modules, and the CLI's FILE.py:FACTORY path.

Networks are small torch / spikingjelly / snntorch modules run in this process: the tests check
the importer's mechanics (control flow, loops over time, containers, folding, refusals) against
the module's own forward. spikingjelly's own numbers, run in its own environment, are checked
in tests/test_spikingjelly.py.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sbc_deploy.cli import main
from sbc_deploy.errors import ConfigError, FormatError, UnsupportedNodeError
from sbc_deploy.frontends.from_torch import from_torch
from sbc_deploy.frontends.from_torch.factory import apply_weights, load_factory, load_weights
from sbc_deploy.frontends.from_torch.writeback import STATE_DICT_FILE, compressed_state_dict
from sbc_deploy.sim import simulate

sj = pytest.importorskip("spikingjelly.activation_based", reason="spikingjelly is not installed "
                         "in the main environment (README's test command installs it)")
from spikingjelly.activation_based import functional, layer, neuron  # noqa: E402


def spikes(shape: tuple[int, ...], p: float = 0.3, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy((np.random.default_rng(seed).random(shape) < p).astype(np.float32))


def run_sj(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    functional.reset_net(net)
    with torch.no_grad():
        return net(x)


class Residual(nn.Module):
    """Conv-BN-LIF, a soft-reset IF branch, a residual sum, avg pool, torch.flatten, readout."""

    def __init__(self, container: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        if container:
            self.conv = layer.SeqToANNContainer(nn.Conv2d(2, 8, 3, padding=1, bias=False),
                                                nn.BatchNorm2d(8))
        else:   # the same layers, usable in single-step mode too
            self.conv = nn.Sequential(layer.Conv2d(2, 8, 3, padding=1, bias=False),
                                      layer.BatchNorm2d(8))
        self.sn1 = neuron.LIFNode(tau=2.0, step_mode="m")
        self.conv2 = layer.Conv2d(8, 8, 3, padding=1, step_mode="m")
        self.bn2 = layer.BatchNorm2d(8, step_mode="m")
        self.sn2 = neuron.IFNode(v_reset=None, step_mode="m")
        self.pool = layer.AvgPool2d(2, step_mode="m")
        self.fc = layer.Linear(8 * 4 * 4, 5, step_mode="m")
        for bn in (self.conv[1], self.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 2.0)
            bn.bias.data.uniform_(-0.2, 0.2)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sn1(self.conv(x))
        if x.dim() in (4, 5):   # control flow on the shape, as spikingjelly's layers do
            y = self.sn2(self.bn2(self.conv2(x)))
        z = self.pool(y + x)
        return self.fc(torch.flatten(z, z.dim() - 3))


def test_multi_step_module_with_control_flow_bn_and_residual_matches_its_forward() -> None:
    net = Residual()
    x = spikes((6, 3, 2, 8, 8))
    graph = from_torch(net, x)
    kinds = {name: node.kind for name, node in graph.nodes.items()}
    assert kinds["conv_0"] == "Conv2d" and "conv_1" not in kinds     # BatchNorm folded
    assert kinds["sn1"] == "LIF" and kinds["sn2"] == "IF"
    assert graph.nodes["sn2"].reset == "subtract" and graph.nodes["sn1"].reset == "zero"
    assert graph.nodes["sn1"].fires_at_equal and graph.metadata["framework"] == "spikingjelly"
    assert ("sn1", "pool") in graph.edges and ("sn2", "pool") in graph.edges  # y + x
    out = simulate(graph, x).outputs["output"]
    np.testing.assert_allclose(out.numpy(), run_sj(net, x).numpy(), rtol=1e-5, atol=1e-5)
    assert net.training is False and graph.nodes["output"].metadata["decoding"] == "membrane_mean"


def test_single_step_module_gives_the_graph_of_its_multi_step_twin() -> None:
    multi = Residual(container=False)
    functional.set_step_mode(multi, "m")
    single = Residual(container=False)
    single.load_state_dict(multi.state_dict())
    functional.set_step_mode(single, "s")
    x = spikes((5, 3, 2, 8, 8), seed=1)
    g_single = from_torch(single, x[0])                       # one step [B, ...]
    g_multi = from_torch(multi, x)
    assert g_single.metadata["torch_sequence"] is False
    assert set(g_single.nodes) == set(g_multi.nodes) and set(g_single.edges) == set(g_multi.edges)
    functional.reset_net(single)
    with torch.no_grad():
        stepped = torch.stack([single(x[t]) for t in range(x.shape[0])])
    out = simulate(g_single, x).outputs["output"]
    np.testing.assert_allclose(out.numpy(), stepped.numpy(), rtol=1e-5, atol=1e-5)


class LoopNet(nn.Module):
    """A forward that loops over time with single-step layers, as snntorch tutorials do."""

    def __init__(self) -> None:
        super().__init__()
        import snntorch as snn

        torch.manual_seed(2)
        self.fc1, self.fc2 = nn.Linear(20, 16), nn.Linear(16, 4)
        self.lif1 = snn.Leaky(beta=0.5, reset_mechanism="zero")
        self.lif2 = snn.Leaky(beta=0.5, reset_mechanism="zero")
        self.fc1.weight.data *= 4
        self.fc2.weight.data *= 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        record = []
        for step in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x[step]), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            record.append(spk2)
        return torch.stack(record)


def test_snntorch_loop_over_time_becomes_one_step_of_the_graph() -> None:
    net = LoopNet().eval()
    x = spikes((10, 3, 20), p=0.4)
    graph = from_torch(net, x)
    assert sorted(n for n in graph.nodes if n not in ("input", "output")) == \
        ["fc1", "fc2", "lif1", "lif2"]
    with torch.no_grad():
        reference = net(x)
    assert reference.sum() > 10
    out = simulate(graph, x).outputs["output"]
    assert torch.equal(out, reference)
    assert graph.nodes["output"].metadata["decoding"] == "spike_count"


def test_unsupported_neuron_is_refused_naming_its_path_type_and_what_is_supported() -> None:
    net = nn.Sequential(layer.Linear(6, 4, step_mode="m"),
                        nn.Sequential(neuron.ParametricLIFNode(step_mode="m")))
    with pytest.raises(UnsupportedNodeError) as err:
        from_torch(net, spikes((3, 2, 6)))
    text = str(err.value)
    assert "module '1.0' (ParametricLIFNode)" in text and "spikingjelly.LIFNode" in text


def test_unmapped_op_is_refused_where_its_result_is_used() -> None:
    class Relu(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.sn = nn.Linear(6, 4), neuron.IFNode(step_mode="m")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            _ = x.sum()                   # a side statistic: not used, not refused
            return self.sn(torch.relu(self.fc(x)))

    with pytest.raises(UnsupportedNodeError, match="torch op 'relu'"):
        from_torch(Relu(), spikes((3, 2, 6)))


def test_a_layer_called_on_two_inputs_is_refused() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.fc2 = nn.Linear(6, 6), nn.Linear(6, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.fc2(x)) + self.fc(x)

    with pytest.raises(UnsupportedNodeError, match="called twice on different inputs"):
        from_torch(Shared(), spikes((3, 2, 6)), sequence=True)


def test_sew_iand_becomes_a_product_with_the_complement() -> None:
    class Iand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(3)
            self.a, self.b = layer.Linear(8, 8, step_mode="m"), layer.Linear(8, 8, step_mode="m")
            self.sa, self.sb = neuron.IFNode(step_mode="m"), neuron.IFNode(step_mode="m")
            self.a.weight.data *= 3
            self.b.weight.data *= 3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.sa(self.a(x)) * (1.0 - self.sb(self.b(x)))

    net = Iand()
    x = spikes((6, 3, 8), p=0.5)
    graph = from_torch(net, x)
    assert sum(n.kind == "Product" for n in graph.nodes.values()) == 1
    assert sum(n.kind == "ChannelAffine" for n in graph.nodes.values()) == 1
    out = simulate(graph, x).outputs["output"]
    reference = run_sj(net, x)
    assert reference.sum() > 0 and torch.equal(out, reference)


def test_write_back_divides_folded_weights_by_the_batchnorm_scale() -> None:
    net = Residual()
    x = spikes((4, 3, 2, 8, 8))
    graph = from_torch(net, x)
    conv = graph.nodes["conv_0"]
    pruned = np.array(conv.weight)
    pruned[np.abs(pruned) < np.median(np.abs(pruned))] = 0.0
    compressed = graph.replace_nodes({"conv_0": conv.with_weight(pruned)})
    state = compressed_state_dict(compressed, net)
    assert set(state) == set(net.state_dict())
    written = state["conv.0.weight"].numpy()
    assert np.array_equal(written == 0, pruned == 0)            # zeros stay zeros
    for key in ("conv.1.weight", "conv.1.running_mean", "conv.1.running_var", "fc.weight"):
        assert torch.equal(state[key], net.state_dict()[key])   # BatchNorm and others kept
    again = Residual()
    again.load_state_dict(state)
    out = simulate(compressed, x).outputs["output"]
    np.testing.assert_allclose(run_sj(again, x).numpy(), out.numpy(), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- factory and CLI


FACTORY = '''
import torch
from torch import nn
from spikingjelly.activation_based import layer, neuron


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = layer.Linear(2 * 34 * 34, 10, bias=False, step_mode="m")
        self.sn = neuron.LIFNode(step_mode="m")

    def forward(self, x):
        return self.sn(self.fc(x.flatten(2)))


def build():
    return Net()


def broken():
    raise RuntimeError("cannot build")


def bad_parent():
    return nn.Sequential(nn.Flatten(2), nn.Linear(2312, 4), nn.PReLU())
'''


@pytest.fixture()
def factory(tmp_path: Path) -> Path:
    path = tmp_path / "net.py"
    path.write_text(FACTORY)
    return path


def test_factory_and_weights_load(factory: Path, tmp_path: Path) -> None:
    module = load_factory(f"{factory}:build")
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"state_dict": module.state_dict(), "epoch": 3}, ckpt)
    apply_weights(module, load_weights(ckpt), str(ckpt))
    with pytest.raises(ConfigError, match="factory raised RuntimeError: cannot build"):
        load_factory(f"{factory}:broken")
    with pytest.raises(ConfigError, match="no callable 'missing'"):
        load_factory(f"{factory}:missing")


def test_weights_mismatches_are_all_listed(factory: Path, tmp_path: Path) -> None:
    module = load_factory(f"{factory}:build")
    state = {"fc.weight": torch.zeros(10, 5), "extra.bias": torch.zeros(3)}
    with pytest.raises(FormatError) as err:
        apply_weights(module, state, "ckpt.pth")
    text = str(err.value)
    assert "1 unexpected: extra.bias" in text and "1 mis-shaped: fc.weight" in text


class _Exploit:
    def __reduce__(self):  # what a malicious checkpoint carries: a call at unpickling time
        return (os.system, (f"touch {os.environ['SBC_TEST_MARKER']}",))


def test_a_weights_pickle_holding_code_is_refused_without_running_it(
        factory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "executed"
    monkeypatch.setenv("SBC_TEST_MARKER", str(marker))
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as handle:
        pickle.dump({"fc.weight": _Exploit()}, handle)
    with pytest.raises(FormatError, match="weights_only"):
        load_weights(evil)
    out = tmp_path / "out"
    code = main([f"{factory}:build", "--weights", str(evil), "--target", "loihi2",
                 "--calib", str(_data(tmp_path)), "-o", str(out)])
    assert code == 2 and not marker.exists() and not out.exists()
    pickle.loads(pickle.dumps(_Exploit()))   # the check can fail: unpickling does run it
    assert marker.exists()


def _data(tmp_path: Path) -> Path:
    path = tmp_path / "data.npz"
    x = (np.random.default_rng(0).random((4, 5, 2, 34, 34)) < 0.2).astype(np.uint8)
    np.savez(path, x=x, y=np.arange(4) % 10, dt=0.01)
    return path


@pytest.mark.parametrize("spec, weights, message", [
    ("broken", None, "factory raised RuntimeError"),
    ("build", "mis-shaped", "mis-shaped: fc.weight"),
    ("bad_parent", None, "module '2' (PReLU)"),
])
def test_cli_factory_errors_exit_2_and_write_nothing(factory: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture, spec: str,
                                                     weights: str | None, message: str) -> None:
    args = [f"{factory}:{spec}", "--target", "loihi2", "--calib", str(_data(tmp_path)),
            "-o", str(tmp_path / "out")]
    if weights:
        ckpt = tmp_path / "w.pth"
        torch.save({"fc.weight": torch.zeros(3, 3)}, ckpt)
        args += ["--weights", str(ckpt)]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_weights_without_a_factory_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["--target", "loihi2", "--weights", "w.pth", "-o", str(tmp_path / "o")]) == 2


def test_cli_factory_path_writes_the_compressed_state_dict(factory: Path, tmp_path: Path) -> None:
    module = load_factory(f"{factory}:build")
    torch.manual_seed(0)
    module.fc.weight.data = torch.randn(10, 2312) * 0.2
    ckpt = tmp_path / "w.pth"
    torch.save(module.state_dict(), ckpt)
    out = tmp_path / "out"
    code = main([f"{factory}:build", "--weights", str(ckpt), "--from", "spikingjelly",
                 "--target", "loihi2", "--calib", str(_data(tmp_path)), "--sparsity", "0.5",
                 "--max-drop", "none", "--export", "nir", "-o", str(out), "--quiet"])
    assert code in (0, 1), code
    state = torch.load(out / STATE_DICT_FILE, weights_only=True)
    weight = state["fc.weight"]
    assert set(state) == {"fc.weight"} and 0.45 < float((weight == 0).float().mean()) < 0.55
    manifest = (out / "manifest.json").read_text()
    assert STATE_DICT_FILE in manifest and "w.pth" in manifest and "net.py" in manifest


def test_oneshot_returns_a_compressed_copy_and_leaves_the_module_alone(factory: Path,
                                                                        tmp_path: Path) -> None:
    import sbc_deploy as sd

    module = load_factory(f"{factory}:build")
    torch.manual_seed(1)
    module.fc.weight.data = torch.randn(10, 2312) * 0.2
    before = module.fc.weight.detach().clone()
    x = (np.random.default_rng(1).random((6, 5, 2, 34, 34)) < 0.2).astype(np.float32)
    compressed, report, graph = sd.oneshot(module, x, target="generic", dt=0.01,
                                           config=sd.SBCConfig(sparsity=0.5), max_drop=None,
                                           export=("onnx",), out_dir=tmp_path / "out")
    assert torch.equal(module.fc.weight, before)
    weight = compressed.fc.weight.detach().numpy()
    assert np.array_equal(weight, np.asarray(graph.nodes["fc"].weight, dtype=np.float32))
    assert 0.49 <= float((weight == 0).mean()) <= 0.6 and report.targets[0].method == "sbc"
    assert (tmp_path / "out" / STATE_DICT_FILE).is_file()


def test_inspect_and_check_take_a_factory_with_weights(factory: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """``inspect`` / ``check`` FILE.py:FACTORY --weights --input-shape: the module's graph, with
    the loaded weights (their sparsity shows), judged as it is."""
    module = load_factory(f"{factory}:build")
    weight = torch.randn(10, 2312, generator=torch.Generator().manual_seed(2))
    weight[:, ::4] = 0   # a quarter of the weights zero: inspect must count them
    module.fc.weight.data = weight
    ckpt = tmp_path / "w.pth"
    torch.save(module.state_dict(), ckpt)
    spec = f"{factory}:build"
    assert main(["inspect", spec, "--weights", str(ckpt), "--input-shape", "2,34,34",
                 "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    nodes = {n["name"]: n for n in described["nodes"]}
    assert described["format"] == "torch" and nodes["sn"]["kind"] == "LIF"
    assert nodes["fc"]["nonzero_weights"] == 10 * 2312 - 10 * 578
    out = tmp_path / "checked"
    code = main(["check", spec, "--weights", str(ckpt), "--input-shape", "2,34,34",
                 "--target", "loihi2", "-o", str(out)])
    assert code == 1   # float weights on loihi2: a violation, exit 1
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == spec
    rules = {v["rule"] for v in report["targets"][0]["violations"]}
    assert "weights_on_grid" in rules
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["inputs"]) == {str(factory), str(ckpt)}


@pytest.mark.parametrize("command", ["inspect", "check"])
def test_inspect_and_check_of_a_factory_refuse_bad_input_with_exit_2(
        command: str, factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    extra = ["--target", "loihi2"] if command == "check" else []
    assert main([command, f"{factory}:build", *extra]) == 2            # no --input-shape
    assert "--input-shape" in capsys.readouterr().err
    ckpt = tmp_path / "w.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, ckpt)
    assert main([command, f"{factory}:build", "--weights", str(ckpt), "--input-shape",
                 "2,34,34", *extra]) == 2                              # mis-shaped weights
    assert "mis-shaped: fc.weight" in capsys.readouterr().err
    assert main([command, "nmnist_mlp", "--weights", str(ckpt), *extra]) == 2   # no factory
    assert "--weights goes with MODEL = FILE.py:FACTORY" in capsys.readouterr().err
