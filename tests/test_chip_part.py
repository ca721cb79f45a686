"""The check and the core mapping judge what the chip runs (issue 18 follow-ups): nodes the chip /
host split leaves to the host hold no core and break no chip rule (one "runs on the host"
warning each); a reset or spike rule the chip's neuron circuit lacks places a neuron on the
host, while numbers it holds differently stay violations. Check-only: ~3 s."""

from __future__ import annotations

import numpy as np

from sbc_deploy.check import check, map_to_cores
from sbc_deploy.check.split import offloaded
from sbc_deploy.ir import IF, LIF, Affine, Conv2d, Flatten, Graph, Input, Output
from sbc_deploy.targets import load_target
from sbc_deploy.validate import refusal

DT = 1e-3


def _chain(nodes: dict) -> Graph:
    return Graph.chain(nodes.items(), DT, {"reset": "zero"})


def _if_then_lif(rng) -> Graph:
    """fc1 -> IF -> fc2 -> LIF: speck runs the IF layer, not the LIF neurons."""
    return _chain({"in": Input((24,)), "fc1": Affine(rng.normal(0.3, 0.5, (16, 24))),
                   "if1": IF(np.full(16, 1.0)), "fc2": Affine(rng.normal(0.3, 0.5, (6, 16))),
                   "lif2": LIF(np.full(6, 0.8), np.full(6, 1.0)), "out": Output((6,))})


def _lif(n, reset="zero", **variant) -> LIF:
    return LIF(np.full(n, 0.5), np.full(n, 1.0), reset=reset, **variant)


# --------------------------------------------------------------------------- the core mapping


def test_a_neuron_on_the_host_holds_no_core_and_the_chip_part_maps_as_if_cut_there(rng):
    graph = _if_then_lif(rng)
    speck = load_target("speck")
    result = check(graph, speck)
    assert result.split.placement("lif2") == "host" and result.offloaded == ("lif2",)
    held = {name for core in result.mapping.cores for name in core.layers}
    assert "lif2" not in held                          # was core 0 before the fix
    assert held <= set(result.split.chip)
    # a second computation: the chip part as a graph of its own, its values leaving at fc2
    cut = _chain({n: graph.nodes[n] for n in ("in", "fc1", "if1", "fc2")} | {"out": Output((6,))})
    alone = map_to_cores(cut, speck)
    assert [(c.layers, c.neurons, c.synapse_bits) for c in result.mapping.cores] == \
        [(c.layers, c.neurons, c.synapse_bits) for c in alone.cores]
    assert [p.name for p in result.mapping.layers] == ["if1", "fc2"]
    # map_to_cores maps the part the split leaves on the chip; by default every node
    assert map_to_cores(graph, speck, offloaded(graph, speck)).cores == result.mapping.cores
    assert "lif2" in {n for c in map_to_cores(graph, speck).cores for n in c.layers}


def _xylo_conv_net(rng) -> Graph:
    """Input -> conv1 -> lif1 -> conv2 (64 x 3 x 3) -> lif2 -> flatten -> fc -> lif3: xylo has
    no convolution, so both convolutions (and the flatten) run on the host; lif1's spikes
    reach only conv2, on the host."""
    return _chain({
        "in": Input((1, 6, 6)),
        "conv1": Conv2d(rng.normal(0.5, 0.2, (4, 1, 3, 3)), (1, 6, 6), padding=1),
        "lif1": _lif((4, 6, 6), reset="subtract"),
        "conv2": Conv2d(rng.normal(0.1, 0.2, (64, 4, 3, 3)), (4, 6, 6), padding=1),
        "lif2": _lif((64, 6, 6), reset="subtract"),
        "flat": Flatten((64, 6, 6)),
        "fc": Affine(rng.normal(0.0, 0.1, (8, 64 * 36))),
        "lif3": _lif(8, reset="subtract"), "out": Output((8,))})


def test_rules_apply_to_what_the_chip_runs(rng):
    graph = _xylo_conv_net(rng)
    xylo = load_target("xylo")
    assert refusal(graph, xylo) is None            # the chip runs fc -> lif3
    result = check(graph, xylo)
    host = {h.name for h in result.split.host}
    assert host == {"conv1", "conv2", "flat"}
    by_layer: dict[str, list] = {}
    for v in result.violations:
        by_layer.setdefault(v.layer, []).append(v)
    for name in host:  # exactly one warning each, saying why and where it runs
        (v,), = [by_layer[name]]
        assert v.severity == "warning" and v.rule == "supported_layer_types"
        assert v.message.startswith(f"xylo has no {graph.nodes[name].kind} layer")
        assert v.message.endswith("it runs on the host (see the chip / host split)")
    # lif1's 3 x 3 x 64 = 576 synapses out lie on the host: no chip fan-out (xylo: 512)
    assert not [v for v in result.violations if v.rule == "fan_out"]
    raw = [v for v in xylo_rule("fan_out", graph) if v.layer == "lif1"]
    assert raw and raw[0].actual == 576          # what the rule says of the whole network
    # the host convolutions' float weights are no chip weights; fc's are
    assert {v.layer for v in result.violations if v.rule == "weights_on_grid"} == {"fc"}
    # the chip holds lif1, lif2 and lif3 (fed by the host) and fc's synapses, nothing else
    held = {name for core in result.mapping.cores for name in core.layers}
    assert held == {"lif1", "lif2"} and result.mapping.readout_neurons == 8
    assert all(c.synapse_bits == 0 for c in result.mapping.cores)  # conv synapses: host


def xylo_rule(name, graph):
    from sbc_deploy.check.rules import RULES

    return list(RULES[name](graph, load_target("xylo")))


def test_a_refused_target_is_judged_whole(rng):
    """Nothing of the network's neuron layers runs on speck: every rule judges every node (what
    the chip would need), and the mapping holds the whole network."""
    graph = _chain({"in": Input((24,)), "fc1": Affine(rng.normal(0.3, 0.5, (16, 24))),
                    "lif1": _lif(16), "out": Output((16,))})
    speck = load_target("speck")
    assert refusal(graph, speck).startswith("speck cannot run LIF neurons")
    result = check(graph, speck)
    assert result.offloaded == () and not result.ok
    kind, = [v for v in result.violations if v.layer == "lif1"
             and v.rule == "supported_neuron_model"]
    assert kind.severity == "error"
    assert {n for c in result.mapping.cores for n in c.layers} == {"lif1"}


# --------------------------------------------------------------------------- host or violation


def _two_layers(first, second) -> Graph:
    rng = np.random.default_rng(3)
    return _chain({"in": Input((12,)), "fc1": Affine(rng.normal(0.2, 0.4, (10, 12))),
                   "n1": first, "fc2": Affine(rng.normal(0.2, 0.4, (4, 10))), "n2": second,
                   "out": Output((4,))})


def test_a_reset_the_chip_lacks_runs_on_the_host():
    """Xylo resets by subtraction only (rockpool's Xylo neuron): a zero-reset layer cannot run
    there whatever its numbers, so it goes to the host like a neuron kind the chip lacks."""
    xylo = load_target("xylo")
    graph = _two_layers(_lif(10, reset="subtract"), _lif(4, reset="zero"))
    result = check(graph, xylo)
    assert result.split.placement("n1") == "chip" and result.split.placement("n2") == "host"
    reason = {h.name: h.reason for h in result.split.host}["n2"]
    assert reason.startswith("xylo resets by subtract only, not by zero")
    assert refusal(graph, xylo) is None
    (v,) = [v for v in result.violations if v.layer == "n2"]   # was an error on the chip
    assert (v.rule, v.severity, v.limit, v.actual) == ("supported_neuron_model", "warning",
                                                       "subtract", "zero")
    # every layer with a zero reset: nothing runs on the chip, refused with that reason
    both = _two_layers(_lif(10, reset="zero"), _lif(4, reset="zero"))
    assert refusal(both, xylo).startswith("xylo resets by subtract, not 'zero'")
    assert check(both, xylo).offloaded == ()


def test_a_spike_count_on_a_binary_spike_chip_runs_on_the_host():
    """Lava's CUBA neuron (netx, Loihi 2) sends one spike per step: a neuron that sends counts
    has another spike rule and runs on the host; on Xylo, which sends up to 31 per step, an
    uncapped neuron is the same rule with a larger cap: a violation with its remedy."""
    loihi2, xylo = load_target("loihi2"), load_target("xylo")
    graph = _two_layers(_lif(10), _lif(4, max_spikes=3, fires_at_equal=True))
    result = check(graph, loihi2)
    assert result.split.placement("n2") == "host" and result.split.placement("n1") == "chip"
    assert "loihi2 sends one spike per neuron and step, not up to 3 spikes" in \
        {h.name: h.reason for h in result.split.host}["n2"]
    assert not [v for v in result.violations if v.rule == "spikes_per_step"]  # was an error
    (v,) = [v for v in result.violations if v.layer == "n2"]
    assert v.severity == "warning" and (v.limit, v.actual) == (1, 3)
    counting = _two_layers(_lif(10, reset="subtract"),
                           _lif(4, reset="subtract", max_spikes=None, fires_at_equal=True))
    on_xylo = check(counting, xylo)
    assert on_xylo.split.all_on_chip
    (v,) = [v for v in on_xylo.violations if v.rule == "spikes_per_step"]
    assert v.layer == "n2" and v.severity == "error" and "max_spikes=31" in v.remedy


def test_a_number_the_circuit_holds_differently_stays_a_violation_on_the_chip():
    """A resting potential Loihi's LIF lacks is a number (0 would do, or a bias): the neuron
    stays on the chip and the rule names it as an error, not as a host placement."""
    loihi2 = load_target("loihi2")
    graph = _two_layers(_lif(10), _lif(4).replace(v_leak=np.full(4, 0.3)))
    result = check(graph, loihi2)
    assert result.split.all_on_chip and result.offloaded == ()
    (v,) = [v for v in result.violations if v.layer == "n2"]
    assert v.rule == "supported_neuron_model" and v.severity == "error"
    assert "v_leak must be 0" in v.message


# --------------------------------------------------------------------------- akida max pool


def _akida_cnn(pool, first: bool, then_conv: bool = True) -> Graph:
    """conv0 (reads the input: Akida's InputConv2D) -> conv1 -> pool -> conv2 or dense; the
    pool follows conv0 when ``first``. No neurons: Akida runs quantized CNN layers."""
    rng = np.random.default_rng(7)
    nodes = {"in": Input((3, 12, 12)),
             "conv0": Conv2d(rng.normal(0, 0.3, (4, 3, 3, 3)), (3, 12, 12), padding=1)}
    if not first:
        nodes["conv1"] = Conv2d(rng.normal(0, 0.3, (4, 4, 3, 3)), (4, 12, 12), padding=1)
    nodes["pool"] = pool
    c, h, w = pool.output_shape
    if then_conv:
        nodes["conv2"] = Conv2d(rng.normal(0, 0.3, (2, c, 1, 1)), (c, h, w))
        nodes["out"] = Output((2, h, w))
    else:
        nodes |= {"flat": Flatten((c, h, w)), "fc": Affine(rng.normal(0, 0.3, (2, c * h * w))),
                  "out": Output((2,))}
    return _chain(nodes)


def _pool_violations(graph):
    return [v for v in check(graph, "akida").violations if v.rule == "max_pool_windows"]


def test_akida_max_pool_windows_are_checked():
    """Akida 2.0 (akida_examples doc/user_guide/hardware/2.0.rst): after a Conv2D, max pooling
    2x2 with stride 1 or 2, followed by another Conv2D; after the InputConv2D, (size, stride)
    (2, 2) or (3, 2). The kind alone (MaxPool2d in node_kinds) allowed any window before."""
    from sbc_deploy.ir import MaxPool2d

    akida = load_target("akida")
    assert "max_pool_windows" in akida.rules
    assert akida.layers.max_pool == ((2, 1), (2, 2))
    assert akida.layers.max_pool_first == ((2, 2), (3, 2))
    assert "2.0.rst" in akida.source("layers.max_pool").source
    for size, stride in ((2, 2), (2, 1)):
        assert _pool_violations(_akida_cnn(MaxPool2d(size, (4, 12, 12), stride=stride),
                                           first=False)) == []
    (v,) = _pool_violations(_akida_cnn(MaxPool2d(3, (4, 12, 12), stride=2), first=False))
    assert (v.layer, v.severity, v.actual) == ("pool", "error", "3x3 stride 2")
    assert v.limit == "2x2 stride 1, 2x2 stride 2"
    # the input convolution's own pooling allows (3, 2), not (2, 1)
    assert _pool_violations(_akida_cnn(MaxPool2d(3, (4, 12, 12), stride=2), first=True)) == []
    (v,) = _pool_violations(_akida_cnn(MaxPool2d(2, (4, 12, 12), stride=1), first=True))
    assert v.limit == "2x2 stride 2, 3x3 stride 2" and v.actual == "2x2 stride 1"
    # a non-square window, and a pool not followed by a convolution
    (v,) = _pool_violations(_akida_cnn(MaxPool2d((2, 1), (4, 12, 12), stride=(2, 1)),
                                       first=False))
    assert v.actual == "2x1 stride 2x1"
    (v,) = _pool_violations(_akida_cnn(MaxPool2d(2, (4, 12, 12)), first=False,
                                       then_conv=False))
    assert "followed by a Conv2D" in v.message and v.actual == "Flatten"
    # a target file without the keys: no window limit (loihi2 has no max pool layer at all)
    assert load_target("generic").layers.max_pool is None
