"""from_snntorch: the imported graph, run by sbc_deploy.sim.simulate, equals snntorch itself.

Each network runs in float64 in both (a Heaviside ``spike_grad`` keeps snntorch's spikes in the
network's dtype; its default surrogate returns float32), on random spike inputs, with weights
large enough that hidden and output neurons fire often, so every reset path is exercised.
"""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from sbc_deploy.errors import ConfigError, ShapeError, UnsupportedNodeError
from sbc_deploy.frontends.from_snntorch import from_snntorch
from sbc_deploy.ir import LIF, Conv2d, CubaLIF, Delay, Scale
from sbc_deploy.sim import simulate

T, B = 40, 6


def heaviside(z: torch.Tensor) -> torch.Tensor:
    return (z > 0).to(z.dtype)


def neuron(cls, **kw):
    return cls(init_hidden=True, spike_grad=heaviside, **kw)


def run_snntorch(net: nn.Sequential, x: torch.Tensor, watch: nn.Module | None = None):
    """Step the Sequential over time; returns output spikes [T, B, ...] and the watched mem."""
    for module in net.modules():
        if hasattr(module, "reset_mem"):
            module.reset_mem()
    out, mem = [], []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y = net(x[t])
            out.append(y[0] if isinstance(y, tuple) else y)
            if watch is not None:
                mem.append(watch.mem.clone())
    return torch.stack(out), (torch.stack(mem) if mem else None)


def scaled(net: nn.Sequential, gain: float) -> nn.Sequential:
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.weight.mul_(gain)
    return net.double()


def spikes(*shape: int, p: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < p).double()


def assert_same(net: nn.Sequential, x: torch.Tensor, **kwargs) -> torch.Tensor:
    graph = from_snntorch(net, x[0], **kwargs)
    expected, _ = run_snntorch(net, x)
    got = simulate(graph, x, dtype=torch.float64).outputs["output"]
    assert expected.sum() > 0.05 * expected.numel()          # the output layer does fire
    assert expected.sum() < 0.95 * expected.numel()
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    return expected


@pytest.mark.parametrize("mechanism", ["subtract", "zero", "none"])
def test_leaky_mlp_equals_snntorch(mechanism) -> None:
    torch.manual_seed(1)
    net = scaled(nn.Sequential(
        nn.Linear(20, 30), neuron(snn.Leaky, beta=0.8, threshold=0.7, reset_mechanism=mechanism),
        nn.Linear(30, 5),
        neuron(snn.Leaky, beta=torch.linspace(0.3, 0.95, 5), reset_mechanism=mechanism)), 3.0)
    assert_same(net, spikes(T, B, 20))


def test_subtract_correction_is_needed_and_membranes_agree() -> None:
    """The IR's own subtract reset differs; with the bridge, v_IR + thr * s == snntorch's mem."""
    torch.manual_seed(2)
    hidden = neuron(snn.Leaky, beta=0.6, threshold=0.5)
    net = scaled(nn.Sequential(nn.Linear(20, 30), hidden, nn.Linear(30, 5),
                               neuron(snn.Leaky, beta=0.7)), 3.0)
    x = spikes(T, B, 20)
    graph = from_snntorch(net, x[0])
    assert isinstance(graph.nodes["leaky1_reset"], Scale)
    np.testing.assert_allclose(graph.nodes["leaky1_reset"].scale, -(1 - 0.6) * 0.5)
    assert ("leaky1_reset", "leaky1") in graph.recurrent_edges
    _, mem = run_snntorch(net, x, watch=hidden)
    result = simulate(graph, x, record=["leaky1", "leaky1:v"], dtype=torch.float64)
    v_before_reset = result.recorded["leaky1:v"] + 0.5 * result.recorded["leaky1"]
    torch.testing.assert_close(v_before_reset, mem, rtol=0, atol=1e-12)
    expected, _ = run_snntorch(net, x)
    plain = from_snntorch(net, x[0], reset="subtract")   # IR reset, no bridge
    assert not any(name.endswith("_reset") for name in plain.nodes)
    differs = simulate(plain, x, dtype=torch.float64).outputs["output"]
    assert not torch.equal(differs, expected)


@pytest.mark.parametrize("mechanism", ["subtract", "none"])
def test_synaptic_equals_snntorch(mechanism) -> None:
    torch.manual_seed(3)
    net = scaled(nn.Sequential(
        nn.Linear(20, 30),
        neuron(snn.Synaptic, alpha=0.6, beta=0.8, threshold=0.9, reset_mechanism=mechanism),
        nn.Linear(30, 5),
        neuron(snn.Synaptic, alpha=0.3, beta=0.9, reset_mechanism=mechanism)), 1.5)
    assert_same(net, spikes(T, B, 20))
    graph = from_snntorch(net, spikes(1, B, 20)[0])
    if mechanism == "subtract":
        cuba = graph.nodes["synaptic1"]
        assert isinstance(cuba, CubaLIF) and cuba.reset == "subtract"
        np.testing.assert_allclose(cuba.alpha, 0.6)
        assert isinstance(graph.nodes["synaptic1_reset_delay"], Delay)


def test_rleaky_linear_and_one_to_one_equal_snntorch() -> None:
    torch.manual_seed(4)
    net = scaled(nn.Sequential(
        nn.Linear(20, 30), neuron(snn.RLeaky, beta=0.8, linear_features=30),
        nn.Linear(30, 5), neuron(snn.RLeaky, beta=0.7, all_to_all=False, V=0.5)), 3.0)
    with torch.no_grad():
        net[1].recurrent.bias.fill_(0.2)   # a recurrent bias acts from the first step on
    assert_same(net, spikes(T, B, 20))
    graph = from_snntorch(net, spikes(1, B, 20)[0])
    np.testing.assert_allclose(graph.nodes["rleaky1"].bias, 0.2)
    np.testing.assert_allclose(graph.nodes["rleaky1_rec"].weight,
                               net[1].recurrent.weight.detach().numpy())


def test_conv_pool_flatten_equal_snntorch() -> None:
    torch.manual_seed(5)
    net = scaled(nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), neuron(snn.Leaky, beta=0.8),
        nn.LPPool2d(1, 2),                                   # a sum pool
        nn.Conv2d(4, 6, 3, padding="same"), neuron(snn.Leaky, beta=0.5, reset_mechanism="zero"),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 5), neuron(snn.Leaky, beta=0.9)), 2.0)
    assert_same(net, spikes(T, B, 2, 8, 8))


def test_recurrent_conv_rleaky_equals_snntorch() -> None:
    torch.manual_seed(6)
    net = scaled(nn.Sequential(
        nn.Conv2d(2, 4, 3), neuron(snn.RLeaky, beta=0.8, conv2d_channels=4, kernel_size=3),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 5), neuron(snn.Leaky, beta=0.9)),
        2.5)
    assert_same(net, spikes(T, B, 2, 8, 8))
    graph = from_snntorch(net, spikes(1, B, 2, 8, 8)[0])
    assert isinstance(graph.nodes["rleaky1_rec"], Conv2d)


def test_zero_reset_maps_to_plain_lif_and_records_metadata() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 8),
                        neuron(snn.Leaky, beta=0.5, threshold=1.25, reset_mechanism="zero"))
    graph = from_snntorch(net, torch.zeros(3, 2, 4, 4), dt=0.01)
    assert list(graph.nodes) == ["input", "flatten0", "linear1", "leaky2", "output"]
    lif = graph.nodes["leaky2"]
    assert isinstance(lif, LIF) and lif.reset == "zero"
    np.testing.assert_array_equal(lif.beta, np.full(8, 0.5))
    np.testing.assert_array_equal(lif.v_threshold, np.full(8, 1.25))
    np.testing.assert_array_equal(graph.nodes["linear1"].weight,
                                  net[1].weight.detach().double().numpy())
    assert graph.is_sequential() and graph.dt == 0.01
    assert graph.metadata["reset"] == "zero" and graph.metadata["dt"] == 0.01
    assert graph.metadata["source_format"] == "snntorch"


def test_module_is_not_modified() -> None:
    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(4, 3), neuron(snn.Leaky, beta=0.5))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net[1].mem = torch.full((2, 3), 0.25)
    from_snntorch(net, torch.ones(2, 4))
    torch.testing.assert_close(net[1].mem, torch.full((2, 3), 0.25))
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_unsupported_layers_and_options_are_named() -> None:
    with pytest.raises(UnsupportedNodeError, match="max pooling") as err:
        from_snntorch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2)), torch.zeros(1, 1, 8, 8))
    assert "'1'" in str(err.value) and "AvgPool2d" in str(err.value)
    with pytest.raises(UnsupportedNodeError, match="clears the whole membrane"):
        from_snntorch(nn.Sequential(nn.Linear(4, 3),
                                    neuron(snn.Synaptic, alpha=0.5, beta=0.5,
                                           reset_mechanism="zero")), torch.zeros(1, 4))
    graph = from_snntorch(nn.Sequential(nn.Linear(4, 3),
                                        neuron(snn.Synaptic, alpha=0.5, beta=0.5,
                                               reset_mechanism="zero")),
                          torch.zeros(1, 4), reset="zero")
    assert graph.metadata["reset_source"].startswith("argument")
    with pytest.raises(UnsupportedNodeError, match="norm_type=1"):
        from_snntorch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.LPPool2d(2, 2)),
                      torch.zeros(1, 1, 8, 8))
    with pytest.raises(UnsupportedNodeError, match="graded_spikes_factor"):
        from_snntorch(nn.Sequential(nn.Linear(4, 3),
                                    snn.Leaky(beta=0.5, init_hidden=True,
                                              graded_spikes_factor=2.0)), torch.zeros(1, 4))
    with pytest.raises(UnsupportedNodeError, match="no IR equivalent"):
        from_snntorch(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), torch.zeros(1, 4))
    with pytest.raises(UnsupportedNodeError, match="Alpha is not supported"):
        from_snntorch(nn.Sequential(nn.Linear(4, 3),
                                    snn.Alpha(alpha=0.6, beta=0.5, init_hidden=True)),
                      torch.zeros(1, 4))


def test_bad_arguments() -> None:
    net = nn.Sequential(nn.Linear(4, 3), neuron(snn.Leaky, beta=0.5))
    with pytest.raises(ConfigError, match="nn.Sequential"):
        from_snntorch(net[0], torch.zeros(1, 4))
    with pytest.raises(ShapeError, match="fails on the sample"):
        from_snntorch(net, torch.zeros(1, 5))
    with pytest.raises(ConfigError, match="dt"):
        from_snntorch(net, torch.zeros(1, 4), dt=0.0)
    with pytest.raises(ConfigError, match="reset"):
        from_snntorch(net, torch.zeros(1, 4), reset="none")  # type: ignore[arg-type]
