"""Design rules: every rule flags a graph that breaks it and passes one that keeps it.

Graphs are built here from IR nodes; limits come from the shipped targets (or a copy of one with a
single limit changed through ``dataclasses.replace``). Expected values are worked out by hand.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from sbc_deploy.check import RULES, CheckResult, check
from sbc_deploy.errors import TargetError
from sbc_deploy.ir import (
    IF,
    LI,
    LIF,
    Affine,
    Conv2d,
    CubaLIF,
    Delay,
    Flatten,
    Graph,
    Input,
    Output,
    Scale,
    SumPool2d,
    WeightEncoding,
)
from sbc_deploy.targets import RULE_NAMES, Target, load_target

LOIHI1, LOIHI2 = load_target("loihi1"), load_target("loihi2")
SPECK, XYLO, AKIDA, GENERIC = (load_target(n) for n in ("speck", "xylo", "akida", "generic"))


# --------------------------------------------------------------------------- builders


def lif(n: int | tuple[int, ...], **kw) -> LIF:
    shape = (n,) if isinstance(n, int) else n
    params = {"beta": np.full(shape, 0.5), "v_threshold": np.full(shape, 1.0)}
    params.update({k: np.broadcast_to(np.asarray(v, dtype=float), shape) if k != "reset" else v
                   for k, v in kw.items()})
    return LIF(**params)


def if_(shape: tuple[int, ...], **kw) -> IF:
    return IF(v_threshold=np.full(shape, 1.0), **kw)


def int_exp(mantissa: np.ndarray, exponent: int = 1, bits: int = 8) -> WeightEncoding:
    return WeightEncoding(mantissa=np.asarray(mantissa), scale=2.0**exponent / 64, bits=bits,
                          grid="int_exp", exponent=exponent, unit=1 / 64)


def dense(mantissa, exponent: int = 1, bits: int = 8, bias=None) -> Affine:
    """An Affine whose integer weights are ``mantissa << exponent`` (netx units, 1/64)."""
    mantissa = np.asarray(mantissa, dtype=np.int64)
    return Affine(mantissa * 2.0**exponent / 64, bias=bias,
                  encoding=int_exp(mantissa, exponent, bits))


def int_dense(mantissa, scale) -> Affine:
    mantissa = np.asarray(mantissa, dtype=np.int64)
    enc = WeightEncoding(mantissa=mantissa, scale=scale, bits=8, grid="int")
    return Affine(enc.dequantize(), encoding=enc)


def chain(*nodes) -> Graph:
    """``Graph.chain`` with names n0, n1, ... (Input first, Output last)."""
    return Graph.chain([(f"n{i}", node) for i, node in enumerate(nodes)], dt=1e-3)


def mlp(n_in: int, n_out: int, weight=None, neuron=None) -> Graph:
    """Input -> Affine -> neuron -> Output, all weights 1 (mantissa) unless given."""
    weight = np.ones((n_out, n_in), dtype=np.int64) if weight is None else weight
    return Graph.chain([("in", Input((n_in,))), ("fc", dense(weight)),
                        ("neuron", neuron if neuron is not None else lif(n_out)),
                        ("out", Output((n_out,)))], dt=1e-3)


def run(rule: str, graph: Graph, target: Target) -> list:
    return list(RULES[rule](graph, target))


def with_(target: Target, section: str, **changes) -> Target:
    """A copy of ``target`` with fields of one section changed."""
    return dataclasses.replace(target, **{section: dataclasses.replace(getattr(target, section),
                                                                       **changes)})


def only(violations: list, **expected):
    assert len(violations) == 1, violations
    for key, value in expected.items():
        assert getattr(violations[0], key) == value, (key, violations[0])
    return violations[0]


# --------------------------------------------------------------------------- table


def test_rules_table_is_the_named_functions_the_targets_can_list():
    assert tuple(RULES) == RULE_NAMES
    for name, rule in RULES.items():
        assert rule.__name__ == name and rule.__doc__


def test_every_rule_has_a_passing_and_a_failing_test():
    for name in RULES:
        assert f"test_{name}_passes" in globals(), name
        assert f"test_{name}_flags" in globals(), name


# --------------------------------------------------------------------------- node kinds


def test_supported_layer_types_passes():
    assert run("supported_layer_types", mlp(4, 3), LOIHI1) == []


def test_supported_layer_types_flags():
    # two pools in a row: the netx export cannot fold them (netx has no pool layer)
    graph = chain(Input((2, 8, 8)), SumPool2d(2, (2, 8, 8)), SumPool2d(2, (2, 4, 4)),
                  Flatten((2, 2, 2)), dense(np.ones((3, 8))), LI(beta=np.full(3, 0.5)),
                  Output((3,)))
    found = run("supported_layer_types", graph, LOIHI1)
    assert [(v.layer, v.actual, v.severity) for v in found] == [
        ("n1", "SumPool2d", "error"), ("n2", "SumPool2d", "error")]
    v = found[0]
    assert "no SumPool2d layer" in v.message and "Conv2d" in v.limit
    assert "cannot fold it (" in v.message and "two pools in a row" in v.message
    # the unsupported LI neuron is left to supported_neuron_model, reported once
    assert only(run("supported_neuron_model", graph, LOIHI1), layer="n5", actual="LI")


def pool_then_dense(float_weights: bool = False) -> Graph:
    """Input (1, 4, 4) -> SumPool 2 -> Flatten -> dense (2 x 4, row 0 with one zero) -> LIF."""
    weight = np.array([[1, 0, 2, 3], [1, 1, 1, 1]])
    fc = Affine(weight * 0.37) if float_weights else dense(weight)
    return chain(Input((1, 4, 4)), SumPool2d(2, (1, 4, 4)), Flatten((1, 2, 2)), fc, lif(2),
                 Output((2,)))


@pytest.mark.parametrize("float_weights", [False, True])
def test_a_pool_the_netx_export_folds_is_supported(float_weights):
    """netx has no pool layer, but the exporter folds a pool into the next dense / conv layer;
    what runs is the folded layer, so the pool is no violation (float weights: decided on the
    structure, the weights themselves are weights_on_grid's business)."""
    graph = pool_then_dense(float_weights)
    assert run("supported_layer_types", graph, LOIHI1) == []
    assert run("supported_layer_types", graph, LOIHI2) == []
    # a target without netx export has nothing to fold the pool into
    no_netx = dataclasses.replace(LOIHI2, export_formats=("nir", "onnx"))
    v = only(run("supported_layer_types", graph, no_netx), layer="n1", actual="SumPool2d")
    assert "no netx export" in v.message


def test_fan_in_counts_a_pool_folded_into_the_next_layer():
    """Each pooled input stands for its 2 x 2 window: fan-in = 4 x the non-zero weights of the
    row, the same as the non-zeros of the netx exporter's folded weight matrix."""
    from sbc_deploy.check.mapping import neuron_fan_in, populations
    from sbc_deploy.exporters.to_netx import plan_netx

    graph = pool_then_dense()
    (pop,) = [p for p in populations(graph) if p.synapses]
    assert neuron_fan_in(graph, pop).tolist() == [4 * 3, 4 * 4]
    dense_layers = [layer for layer in plan_netx(graph) if layer.weight is not None]
    folded = np.asarray(dense_layers[-1].weight).reshape(2, -1)
    assert np.count_nonzero(folded, axis=1).tolist() == [12, 16]
    v = only(run("fan_in", graph, with_(LOIHI2, "limits", max_fan_in=15)), layer="n3",
             actual=16)
    assert "1 of 2 neurons" in v.message


def test_supported_neuron_model_passes():
    assert run("supported_neuron_model", mlp(4, 3), LOIHI1) == []
    # v_leak only matters where the membrane decays: with beta = 1 it has no effect
    assert run("supported_neuron_model", mlp(4, 3, neuron=lif(3, beta=1.0, v_leak=0.3)),
               LOIHI1) == []
    # subtractive reset ignores v_reset
    assert run("supported_neuron_model", mlp(4, 3, neuron=lif(3, reset="subtract",
                                                              v_reset=0.2)), GENERIC) == []


def test_supported_neuron_model_flags():
    rule = "supported_neuron_model"
    only(run(rule, mlp(4, 3, neuron=lif(3, reset="subtract")), LOIHI1), actual="subtract",
         limit="zero")
    v = only(run(rule, mlp(4, 3, neuron=lif(3, v_leak=[0.0, -0.25, 0.1])), LOIHI1), actual=0.25)
    assert "resting potential" in v.message
    only(run(rule, mlp(4, 3, neuron=lif(3, v_reset=0.5)), LOIHI1), actual=0.5)
    only(run(rule, mlp(4, 3, neuron=LI(beta=np.full(3, 0.9))), LOIHI1), actual="LI")
    only(run(rule, mlp(4, 3, neuron=lif(3, bias=0.75)), with_(LOIHI1, "neurons", bias=False)),
         actual=0.75)
    # a network breaking three things at once gets three violations
    assert len(run(rule, mlp(4, 3, neuron=lif(3, reset="subtract", v_leak=1.0, bias=1.0)),
                   with_(LOIHI1, "neurons", bias=False))) == 3


def test_synapse_bias_foldable_passes():
    rule = "synapse_bias_foldable"
    bias = np.array([0.5, -0.5, 0.0])
    assert run(rule, mlp(4, 3, weight=np.ones((3, 4), int)), LOIHI1) == []
    graph = Graph.chain([("in", Input((4,))), ("fc", dense(np.ones((3, 4)), bias=bias)),
                         ("lif", lif(3)), ("out", Output((3,)))], dt=1e-3)
    assert run(rule, graph, LOIHI1) == []  # a LIF keeps no current: the bias folds exactly
    cuba0 = CubaLIF(alpha=np.zeros(3), beta=np.full(3, 0.5), v_threshold=np.ones(3))
    graph = Graph.chain([("in", Input((4,))), ("fc", dense(np.ones((3, 4)), bias=bias)),
                         ("cuba", cuba0), ("out", Output((3,)))], dt=1e-3)
    assert run(rule, graph, LOIHI1) == []  # alpha = 0: no current memory either
    assert run(rule, graph, SPECK) == []  # Speck has synapse biases


def test_synapse_bias_foldable_flags():
    bias = np.array([0.5, -0.75, 0.0])
    cuba = CubaLIF(alpha=np.full(3, 0.5), beta=np.full(3, 0.5), v_threshold=np.ones(3))
    graph = Graph.chain([("in", Input((4,))), ("fc", dense(np.ones((3, 4)), bias=bias)),
                         ("cuba", cuba), ("out", Output((3,)))], dt=1e-3)
    v = only(run("synapse_bias_foldable", graph, LOIHI1), layer="fc", actual=0.75)
    assert "alpha > 0" in v.message
    readout = chain(Input((4,)), dense(np.ones((3, 4)), bias=bias), Output((3,)))
    assert "feeds no neuron" in only(run("synapse_bias_foldable", readout, XYLO)).message


# --------------------------------------------------------------------------- graph shape


def _dense_rec(conv_fed: bool = False) -> Graph:
    if conv_fed:
        front = [("in", Input((1, 3, 1))),
                 ("fc", Conv2d(np.ones((1, 1, 1, 1)), (1, 3, 1))), ("flat", Flatten((1, 3, 1)))]
    else:
        front = [("in", Input((3,))), ("fc", dense(np.ones((3, 3))))]
    nodes = dict(front + [("lif", lif(3)), ("rec", dense(np.eye(3, dtype=int))),
                          ("out", Output((3,)))])
    names = [n for n, _ in front]
    edges = list(itertools.pairwise(names)) + [(names[-1], "lif"), ("lif", "rec"),
                                                ("rec", "lif"), ("lif", "out")]
    return Graph(nodes, tuple(edges), 1e-3)


def test_topology_passes():
    assert run("topology", mlp(4, 3), LOIHI1) == []
    graph = _dense_rec()
    assert graph.recurrent_edges == {("rec", "lif")}
    assert run("topology", graph, LOIHI1) == []  # netx dense_rec
    assert run("topology", mlp(4, 3), SPECK) == []
    assert run("topology", graph, XYLO) == []  # "any"


def test_topology_flags():
    # a branch and a merge: Input feeds two dense layers that meet at one neuron
    nodes = {"in": Input((4,)), "a": dense(np.ones((3, 4))), "b": dense(np.ones((3, 4))),
             "lif": lif(3), "out": Output((3,))}
    graph = Graph(nodes, (("in", "a"), ("in", "b"), ("a", "lif"), ("b", "lif"), ("lif", "out")),
                  1e-3)
    found = {(v.layer, v.actual) for v in run("topology", graph, LOIHI1)}
    assert found == {("in", 2), ("lif", 2)}
    # a loop over two layers is not a dense self-recurrence
    nodes = {"in": Input((3,)), "fc1": dense(np.ones((3, 3))), "l1": lif(3),
             "fc2": dense(np.ones((3, 3))), "l2": lif(3), "fb": dense(np.ones((3, 3))),
             "out": Output((3,))}
    edges = (("in", "fc1"), ("fc1", "l1"), ("l1", "fc2"), ("fc2", "l2"), ("l2", "out"),
             ("l2", "fb"), ("fb", "l1"))
    loop = run("topology", Graph(nodes, edges, 1e-3), LOIHI1)
    assert any(v.actual == "fb -> l1" for v in loop)
    assert {(v.layer, v.actual) for v in loop if isinstance(v.actual, int)} == {("l1", 2),
                                                                                ("l2", 2)}
    # dense_rec behind a convolution is not expressible in netx
    v = run("topology", _dense_rec(conv_fed=True), LOIHI1)
    assert any("not fed by a dense layer" in x.message for x in v)
    # Speck runs feed-forward graphs only
    only(run("topology", _dense_rec(), SPECK), layer="lif", actual="recurrent edge rec -> lif")


def _fan_graph(n_dest: int) -> Graph:
    nodes = {"in": Input((4,)), "fc0": dense(np.ones((4, 4))), "n0": if_((4,))}
    edges = [("in", "fc0"), ("fc0", "n0")]
    for k in range(n_dest):
        nodes.update({f"fc{k + 1}": dense(np.ones((2, 4))), f"n{k + 1}": if_((2,)),
                      f"out{k + 1}": Output((2,))})
        edges += [("n0", f"fc{k + 1}"), (f"fc{k + 1}", f"n{k + 1}"), (f"n{k + 1}", f"out{k + 1}")]
    return Graph(nodes, tuple(edges), 1e-3)


def test_destinations_passes():
    assert run("destinations", _fan_graph(2), SPECK) == []


def test_destinations_flags():
    v = only(run("destinations", _fan_graph(3), SPECK), layer="n0", limit=2, actual=3)
    assert "fc1, fc2, fc3" in v.message


def test_io_channels_passes():
    assert run("io_channels", mlp(16, 16), XYLO) == []


def test_io_channels_flags():
    only(run("io_channels", mlp(17, 4), XYLO), layer="in", limit=16, actual=17)
    only(run("io_channels", mlp(4, 17), XYLO), layer="neuron", limit=16, actual=17)


# --------------------------------------------------------------------------- weights


def test_weights_on_grid_passes():
    assert run("weights_on_grid", mlp(4, 3), LOIHI1) == []
    assert run("weights_on_grid", mlp(4, 3), GENERIC) == []  # int_exp is an int grid
    graph = chain(Input((2,)), int_dense([[1, -2], [3, 4]], [0.25, 0.25]), if_((2,)),
                  Output((2,)))
    assert run("weights_on_grid", graph, SPECK) == []  # one scale for the layer


def test_weights_on_grid_flags():
    float_graph = chain(Input((4,)), Affine(np.full((3, 4), 0.3)), lif(3), Output((3,)))
    v = only(run("weights_on_grid", float_graph, LOIHI1), layer="n1", actual="float",
             limit="8-bit int_exp")
    assert "sbc-deploy MODEL --target loihi1" in v.message and "--target loihi1 puts" in v.message
    per_channel = chain(Input((2,)), int_dense([[1, -2], [3, 4]], [0.25, 0.5]), if_((2,)),
                        Output((2,)))
    only(run("weights_on_grid", per_channel, LOIHI1), actual="int", limit="int_exp")
    only(run("weights_on_grid", per_channel, SPECK), actual="2 scales")
    high_exp = chain(Input((4,)), dense(np.ones((3, 4)), exponent=9), lif(3), Output((3,)))
    only(run("weights_on_grid", high_exp, LOIHI1), actual=9, limit="[-6, 8]")
    assert run("weights_on_grid", chain(Input((4,)), dense(np.ones((3, 4)), exponent=8), lif(3),
                                        Output((3,))), LOIHI1) == []


def test_weight_bits_passes():
    # a 12-bit encoding whose values fit 8 signed bits is fine: the values are what is stored
    weight = np.array([[-128, 127, 0, 5]])
    assert run("weight_bits", mlp(4, 1, weight=weight), LOIHI1) == []
    graph = chain(Input((4,)), dense(weight, bits=12), lif(1), Output((1,)))
    assert run("weight_bits", graph, LOIHI1) == []


def test_weight_bits_flags():
    graph = chain(Input((4,)), dense(np.array([[-129, 127, 0, 5]]), bits=9), lif(1),
                  Output((1,)))
    v = only(run("weight_bits", graph, LOIHI1), limit=8, actual=9)
    assert "[-129, 127]" in v.message
    unsigned = with_(LOIHI1, "weights", signed=False)
    only(run("weight_bits", mlp(4, 1, weight=np.array([[-1, 2, 3, 4]])), unsigned),
         limit="unsigned")


# --------------------------------------------------------------------------- connectivity


def test_fan_in_passes():
    weight = np.ones((2, 2049), dtype=int)
    weight[:, 7] = 0  # 2048 non-zero inputs per neuron
    assert run("fan_in", mlp(2049, 2, weight=weight), AKIDA) == []
    assert run("fan_in", mlp(4096, 1), LOIHI1) == []


def test_fan_in_flags():
    weight = np.ones((2, 2049), dtype=int)
    weight[0, :5] = 0
    v = only(run("fan_in", mlp(2049, 2, weight=weight), AKIDA), layer="fc", limit=2048,
             actual=2049, severity="error")
    assert "1 of 2 neurons" in v.message
    # Loihi limits in-axons per core, not synapses per neuron; a 4,097-input neuron fits no core
    v = only(run("fan_in", mlp(4097, 1), LOIHI1), limit=4096, actual=4097, severity="error")
    assert "in-axons per core" in v.message
    # Loihi 2's per-core axon limit is an estimate: the same finding is a warning there
    only(run("fan_in", mlp(4097, 1), LOIHI2), severity="warning")


def test_fan_out_passes():
    weight = np.ones((513, 16), dtype=int)
    weight[512] = 0  # every input now reaches 512 neurons
    assert run("fan_out", mlp(16, 513, weight=weight), XYLO) == []


def test_fan_out_flags():
    weight = np.ones((513, 16), dtype=int)
    weight[512, 3:] = 0  # inputs 0..2 reach 513 neurons, the others 512
    v = only(run("fan_out", mlp(16, 513, weight=weight), XYLO), layer="in", limit=512,
             actual=513)
    assert "3 neurons" in v.message


def _delayed(steps: int) -> Graph:
    return chain(Input((4,)), dense(np.ones((3, 4))), Delay(np.full(3, float(steps))), lif(3),
                 Output((3,)))


def test_delays_passes():
    assert run("delays", _delayed(62), LOIHI1) == []
    assert run("delays", _delayed(0), XYLO) == []


def test_delays_flags():
    only(run("delays", _delayed(63), LOIHI1), layer="n2", limit=62, actual=63)
    v = only(run("delays", _delayed(1), XYLO), limit=0, actual=1, severity="warning")
    assert "has no delays" in v.message  # Xylo's missing delay is itself an estimate


# --------------------------------------------------------------------------- registers


def test_thresholds_fit_bits_passes():
    # unit 1/64: threshold 1.0 is 64 integer units, bias 0.5 is 32
    assert run("thresholds_fit_bits", mlp(4, 3, neuron=lif(3, bias=0.5)), LOIHI1) == []
    top = (2**17 - 1) / 64  # the largest 17-bit vth
    assert run("thresholds_fit_bits", mlp(4, 3, neuron=lif(3, v_threshold=top)), LOIHI1) == []


def test_thresholds_fit_bits_flags():
    rule = "thresholds_fit_bits"
    v = only(run(rule, mlp(4, 3, neuron=lif(3, v_threshold=2048.0)), LOIHI1),
             limit="[0, 131071]", actual=131072.0, severity="error")
    assert "v_threshold" in v.message
    only(run(rule, mlp(4, 3, neuron=lif(3, bias=8200.0)), LOIHI1), actual=524800.0)
    # 1.01 * 64 = 64.64 units: rounded by the chip, a warning
    v = only(run(rule, mlp(4, 3, neuron=lif(3, v_threshold=1.01)), LOIHI1), severity="warning")
    assert v.actual == pytest.approx(0.36)
    # a current gain scales the unit: with gain_syn 2 one state step is 2/64
    cuba = CubaLIF(alpha=np.zeros(3), beta=np.full(3, 0.5), v_threshold=np.full(3, 4096.0),
                   gain_syn=np.full(3, 2.0))
    only(run(rule, mlp(4, 3, neuron=cuba), LOIHI1), actual=131072.0)


def test_decays_fit_bits_passes():
    assert run("decays_fit_bits", mlp(4, 3, neuron=lif(3, beta=0.5)), LOIHI1) == []
    assert run("decays_fit_bits", mlp(4, 3, neuron=lif(3, beta=0.875)), XYLO) == []
    assert run("decays_fit_bits", chain(Input((2,)), dense(np.ones((2, 2))), if_((2,)),
                                        Output((2,))), SPECK) == []


def test_decays_fit_bits_flags():
    v = only(run("decays_fit_bits", mlp(4, 3, neuron=lif(3, beta=0.3)), LOIHI1),
             severity="warning", limit="k / 4096")
    assert v.actual == pytest.approx(abs(0.3 - round(0.3 * 4096) / 4096), abs=1e-9)
    # Xylo decays by bit shifts: 0.9 lies between 1 - 2^-3 and 1 - 2^-4
    v = only(run("decays_fit_bits", mlp(4, 3, neuron=lif(3, beta=0.9)), XYLO),
             severity="warning")
    assert v.actual == pytest.approx(0.025)
    # a chip without decays cannot leak at all
    leaky_speck = with_(SPECK, "neurons", kinds=("IF", "LIF"))
    only(run("decays_fit_bits", mlp(4, 3, neuron=lif(3, beta=0.9)), leaky_speck),
         severity="error", actual=0.9)


# --------------------------------------------------------------------------- mapping rules


def _conv_layer(c_in: int, c_out: int, hw: tuple[int, int], k: int = 1) -> Graph:
    shape = (c_in, *hw)
    conv = Conv2d(np.ones((c_out, c_in, k, k)) / 64, shape,
                  encoding=WeightEncoding(mantissa=np.ones((c_out, c_in, k, k), dtype=int),
                                          scale=1 / 64, bits=8, grid="int"))
    return chain(Input(shape), conv, if_(conv.output_shape), Output(conv.output_shape))


def test_neurons_per_core_passes():
    # 64 x 30 x 30 neurons pad to 64 x 32 x 32 = 65,536: the size of Speck cores 0-2
    assert run("neurons_per_core", _conv_layer(1, 64, (30, 30)), SPECK) == []


def test_neurons_per_core_flags():
    # 64 x 33 x 32 = 67,584 neurons pad to 64 x 64 x 32 = 131,072 (sinabs' N_MT)
    v = only(run("neurons_per_core", _conv_layer(1, 64, (33, 32)), SPECK), limit=65536,
             actual=131072)
    assert "largest speck core" in v.message


def test_synapse_memory_per_core_passes():
    # 32 in, 64 out, 5x5: K = 32 * 2^(5 + 6) = 65,536 entries: exactly the largest kernel memory
    assert run("synapse_memory_per_core", _conv_layer(32, 64, (8, 8), k=5), SPECK) == []
    assert run("synapse_memory_per_core", mlp(125, 1), with_(LOIHI1, "cores",
                                                             synapse_memory_bits=1000)) == []


def test_synapse_memory_per_core_flags():
    only(run("synapse_memory_per_core", _conv_layer(64, 64, (8, 8), k=5), SPECK),
         limit=64 * 1024 * 8, actual=131072 * 8)
    # one neuron with 126 dense 8-bit synapses needs 1,008 bits; the core has 1,000
    only(run("synapse_memory_per_core", mlp(126, 1), with_(LOIHI1, "cores",
                                                           synapse_memory_bits=1000)),
         limit=1000, actual=1008)


def _fan_out_to_cores(n_dest: int) -> Graph:
    return chain(Input((1,)), Scale(np.ones(1)), lif(1), dense(np.ones((n_dest, 1))),
                 lif(n_dest), Output((n_dest,)))


def test_axons_per_core_passes():
    assert run("axons_per_core", mlp(4096, 2), LOIHI1) == []
    one_per_core = with_(LOIHI1, "cores", neurons_per_core=1, max_out_axons=3)
    assert run("axons_per_core", _fan_out_to_cores(3), one_per_core) == []


def test_axons_per_core_flags():
    v = only(run("axons_per_core", mlp(4097, 2), LOIHI1), limit=4096, actual=4097)
    assert "in-axons" in v.message
    # one neuron sending to 3 cores needs 3 out-axons; allow 2
    one_per_core = with_(LOIHI1, "cores", neurons_per_core=1, max_out_axons=2)
    v = only(run("axons_per_core", _fan_out_to_cores(3), one_per_core), layer="n2", limit=2,
             actual=3)
    assert "out-axons" in v.message


def _xylo_net(hidden: int) -> Graph:
    return chain(Input((16,)), int_dense(np.ones((hidden, 16)), 0.1), lif(hidden, beta=0.875),
                 int_dense(np.ones((4, hidden)), 0.1), lif(4, beta=0.875), Output((4,)))


def test_total_cores_passes():
    assert run("total_cores", _xylo_net(496), XYLO) == []


def test_total_cores_flags():
    v = only(run("total_cores", _xylo_net(497), XYLO), layer="graph", limit=1, actual=2)
    assert "497 neurons" in v.message
    only(run("total_cores", mlp(4, 3), with_(LOIHI1, "cores", cores=1, neurons_per_core=2)),
         limit=1, actual=2)


# --------------------------------------------------------------------------- check()


def test_check_collects_every_violation_of_every_rule():
    graph = chain(Input((4097,)), Affine(np.full((3, 4097), 0.1)), Delay(np.full(3, 70.0)),
                  lif(3, reset="subtract", beta=0.3), Output((3,)))
    result = check(graph, "loihi1")
    assert isinstance(result, CheckResult) and result.target == "loihi1"
    rules = [v.rule for v in result.violations]
    assert set(rules) == {"supported_neuron_model", "weights_on_grid", "fan_in", "delays",
                          "decays_fit_bits", "axons_per_core"}
    assert not result.ok
    assert {v.rule for v in result.warnings} == {"decays_fit_bits"}
    assert len(result.errors) == len(rules) - 1
    # no core takes a 4,097-input neuron, so each of the 3 sits alone on an over-full core
    assert result.mapping.cores_used == 3
    for v in result.violations:
        assert v.layer and v.message and v.limit is not None and v.actual is not None


def test_check_accepts_a_target_file_and_passes_a_clean_graph(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text((load_target("loihi1").path).read_text())
    result = check(mlp(4, 3), path)
    assert result.violations == () and result.ok
    assert result.rules == LOIHI1.rules


def test_check_rejects_a_target_with_an_unknown_rule():
    with pytest.raises(TargetError, match="unknown rules: nope"):
        check(mlp(4, 3), dataclasses.replace(LOIHI1, rules=("fan_in", "nope")))


def test_check_does_not_modify_the_graph():
    graph = mlp(4, 3, neuron=lif(3, reset="subtract"))
    before = {name: node.parameters() for name, node in graph.nodes.items()}
    check(graph, "loihi1")
    for name, params in before.items():
        for key, value in params.items():
            assert np.array_equal(np.asarray(graph.nodes[name].parameters()[key], dtype=object),
                                  np.asarray(value, dtype=object))


# --------------------------------------------------------------------------- spikes per step


def multi(cap, n: int = 4) -> LIF:
    """A subtractive LIF that sends up to ``cap`` spikes per step (None: no cap)."""
    return lif(n, reset="subtract").replace(fires_at_equal=True, max_spikes=cap)


def test_spikes_per_step_passes():
    # Xylo emits up to 31 spikes per neuron and step; binary and capped neurons fit
    assert XYLO.neurons.max_spikes_per_step == 31
    assert "lif_bitshift_torch.py" in XYLO.source("neurons.max_spikes_per_step").source
    for neuron in (lif(4), multi(31)):
        assert run("spikes_per_step", mlp(3, 4, neuron=neuron), XYLO) == []
    # a target without a per-step limit passes an unbounded multi-spike neuron
    unbounded = multi(None)
    assert run("spikes_per_step", mlp(3, 4, neuron=unbounded), SPECK) == []


def test_spikes_per_step_flags():
    unbounded = multi(None)
    v = only(run("spikes_per_step", mlp(3, 4, neuron=unbounded), XYLO), layer="neuron",
             rule="spikes_per_step", limit=31, actual="unbounded", severity="error")
    assert "emits at most 31" in v.message and "max_spikes=31" in v.remedy
    only(run("spikes_per_step", mlp(3, 4, neuron=multi(32)), XYLO), actual=32)
    # Lava's CUBA neuron sends one bit per step: two spikes are one too many on Loihi 2
    only(run("spikes_per_step", mlp(3, 4, neuron=multi(2)), LOIHI2), limit=1,
         actual=2)
    assert "spikes_per_step" in XYLO.rules and "spikes_per_step" in LOIHI2.rules
    result = check(mlp(3, 4, neuron=unbounded), XYLO)
    assert any(v.rule == "spikes_per_step" for v in result.violations)


def test_a_target_file_without_max_spikes_per_step_still_loads(tmp_path):
    text = load_target("generic").path.read_text()
    start = text.index("[neurons.max_spikes_per_step]")
    end = text.index("\n\n", start)
    path = tmp_path / "mine.toml"
    path.write_text(text[:start] + text[end + 2:].replace('name = "generic"', 'name = "mine"'))
    target = load_target(path)
    assert target.neurons.max_spikes_per_step == 1
    assert target.source("neurons.max_spikes_per_step").evidence == "definition"


# --------------------------------------------------------------------------- max pool windows


def _pooled(size: int, stride: int) -> Graph:
    """conv0 -> conv1 -> max pool -> conv2 (Akida: the pool follows a Conv2D, not the input)."""
    from sbc_deploy.ir import Conv2d, MaxPool2d

    pool = MaxPool2d(size, (2, 8, 8), stride=stride)
    return chain(Input((1, 8, 8)), Conv2d(np.full((2, 1, 1, 1), 0.5), (1, 8, 8)),
                 Conv2d(np.full((2, 2, 1, 1), 0.5), (2, 8, 8)), pool,
                 Conv2d(np.full((1, 2, 1, 1), 0.5), pool.output_shape),
                 Output((1, *pool.output_shape[1:])))


def test_max_pool_windows_passes():
    assert run("max_pool_windows", _pooled(2, 2), AKIDA) == []
    assert run("max_pool_windows", _pooled(2, 1), AKIDA) == []
    assert run("max_pool_windows", _pooled(3, 3), GENERIC) == []   # no window limit


def test_max_pool_windows_flags():
    only(run("max_pool_windows", _pooled(3, 3), AKIDA), rule="max_pool_windows",
         actual="3x3 stride 3", limit="2x2 stride 1, 2x2 stride 2", severity="error")
