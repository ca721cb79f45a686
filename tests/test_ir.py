"""The IR: shapes agree with torch, errors name what is wrong, graphs find their cycles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbc_deploy.errors import IRError, ShapeError
from sbc_deploy.ir import (
    IF,
    LI,
    LIF,
    NODE_TYPES,
    Affine,
    AvgPool2d,
    Conv1d,
    Conv2d,
    CubaLI,
    CubaLIF,
    Delay,
    Flatten,
    Graph,
    Input,
    Integrator,
    Output,
    Scale,
    SumPool2d,
    Threshold,
    WeightEncoding,
)


@pytest.mark.parametrize("stride,padding,dilation,groups", [
    ((1, 1), (0, 0), (1, 1), 1), ((2, 1), (1, 2), (1, 1), 1), ((2, 2), (3, 1), (2, 1), 2),
])
def test_conv2d_output_shape_matches_torch(stride, padding, dilation, groups):
    weight = np.zeros((4, 6 // groups, 3, 2))
    conv = Conv2d(weight, (6, 11, 9), stride=stride, padding=padding, dilation=dilation, groups=groups)
    reference = torch.nn.functional.conv2d(torch.zeros(1, 6, 11, 9), torch.zeros(4, 6 // groups, 3, 2),
                                           stride=stride, padding=padding, dilation=dilation,
                                           groups=groups)
    assert conv.output_shape == tuple(reference.shape[1:])


def test_conv1d_and_pool_shapes_match_torch():
    conv = Conv1d(np.zeros((3, 2, 5)), (2, 20), stride=3, padding=2, dilation=2)
    ref = torch.nn.functional.conv1d(torch.zeros(1, 2, 20), torch.zeros(3, 2, 5), stride=3,
                                     padding=2, dilation=2)
    assert conv.output_shape == tuple(ref.shape[1:])
    pool = SumPool2d(kernel_size=(3, 2), input_shape=(4, 10, 9), stride=(2, 2), padding=(1, 0))
    ref = torch.nn.functional.avg_pool2d(torch.zeros(1, 4, 10, 9), (3, 2), (2, 2), (1, 0))
    assert pool.output_shape == tuple(ref.shape[1:])
    assert AvgPool2d(2, (1, 4, 4)).output_shape == (1, 2, 2)  # stride defaults to the kernel


def test_flatten_merges_inclusive_range_in_c_order():
    assert Flatten((2, 3, 4)).output_shape == (24,)
    assert Flatten((2, 3, 4), start_dim=1).output_shape == (2, 12)
    assert Flatten((2, 3, 4), start_dim=0, end_dim=1).output_shape == (6, 4)
    with pytest.raises(ShapeError, match="Flatten dims"):
        Flatten((2, 3), start_dim=1, end_dim=0)


def test_conv_channel_mismatch_names_the_numbers():
    with pytest.raises(ShapeError, match="input has 5 channels"):
        Conv2d(np.zeros((4, 2, 3, 3)), (5, 8, 8))


def test_neuron_parameters_broadcast_and_validate():
    lif = LIF(beta=0.9, v_threshold=np.ones((2, 3)))
    assert lif.shape == (2, 3) and lif.beta.shape == (2, 3)
    with pytest.raises(IRError, match=r"LIF.beta must lie in \[0, 1\]"):
        LIF(beta=np.array([0.5, 1.5]), v_threshold=np.ones(2))
    with pytest.raises(IRError, match="LIF.reset"):
        LIF(beta=np.ones(2), v_threshold=np.ones(2), reset="hard")  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="do not share one shape"):
        CubaLIF(alpha=np.ones(3), beta=np.ones(4), v_threshold=1.0)
    with pytest.raises(ShapeError, match="all scalars"):
        IF(v_threshold=1.0)


def test_arrays_are_read_only_copies():
    weight = np.ones((2, 3))
    node = Affine(weight)
    weight[0, 0] = 5.0
    assert node.weight[0, 0] == 1.0
    with pytest.raises(ValueError):
        node.weight[0, 0] = 2.0


def test_every_node_type_is_listed():
    kinds = {cls.kind for cls in NODE_TYPES}
    assert kinds == {"Input", "Output", "Affine", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d",
                     "Flatten", "Scale", "Delay", "Threshold", "LIF", "CubaLIF", "IF", "LI",
                     "CubaLI", "Integrator",
                     # graph operations (issue 18; tests/test_graph_ops.py)
                     "MaxPool2d", "AdaptiveAvgPool2d", "ChannelAffine", "LayerNorm", "Identity",
                     "Reshape", "Permute", "Slice", "Reduce", "Product", "MatMul"}
    # Every type constructs with minimal arguments and reports consistent shapes.
    samples = [Input((3,)), Output((3,)), Affine(np.ones((3, 3))), Scale(np.ones(3)),
               Delay(np.array([0, 1, 2])), Threshold(np.ones(3)), LIF(0.5, np.ones(3)),
               CubaLIF(0.5, 0.5, np.ones(3)), IF(np.ones(3)), LI(np.full(3, 0.5)),
               CubaLI(0.5, np.full(3, 0.5)), Integrator(np.ones(3))]
    for node in samples:
        assert node.input_shape == (3,) and node.output_shape == (3,), node.kind


def test_delay_must_be_whole_steps():
    with pytest.raises(IRError, match="whole, non-negative"):
        Delay(np.array([0.5, 1.0]))


def _residual_graph() -> Graph:
    nodes = {
        "in": Input((4,)),
        "fc1": Affine(np.eye(4)),
        "lif1": LIF(np.full(4, 0.5), np.ones(4)),
        "fc2": Affine(np.eye(4)),
        "lif2": LIF(np.full(4, 0.5), np.ones(4)),
        "out": Output((4,)),
    }
    edges = [("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif1", "lif2"),
             ("lif2", "out")]
    return Graph(nodes, edges, dt=1e-3)


def test_residual_graph_orders_merge_after_both_branches():
    graph = _residual_graph()
    order = graph.topological_order
    assert order.index("lif2") > order.index("fc2") and order.index("lif2") > order.index("lif1")
    assert graph.recurrent_edges == frozenset()
    assert not graph.is_sequential()
    assert [(layer.name, layer.neuron_name) for layer in graph.synapse_layers()] == [
        ("fc1", "lif1"), ("fc2", "lif2")]


def test_recurrent_edge_is_the_back_edge():
    nodes = {"in": Input((3,)), "fc": Affine(np.ones((4, 3))),
             "lif": CubaLIF(np.full(4, 0.5), np.full(4, 0.9), np.ones(4)),
             "rec": Affine(np.ones((4, 4))), "out": Output((4,))}
    graph = Graph(nodes, [("in", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"),
                          ("lif", "out")], dt=1e-3)
    assert graph.recurrent_edges == frozenset({("rec", "lif")})
    layers = {layer.name: layer for layer in graph.synapse_layers()}
    assert layers["rec"].recurrent and not layers["fc"].recurrent
    assert layers["rec"].neuron_name == "lif"


def test_synapse_followed_by_pool_finds_its_neuron_and_readout_has_none():
    graph = Graph.chain([
        ("in", Input((1, 4, 4))), ("conv", Conv2d(np.ones((2, 1, 3, 3)), (1, 4, 4), padding=1)),
        ("pool", SumPool2d(2, (2, 4, 4))), ("lif", LIF(0.5, np.ones((2, 2, 2)))),
        ("flat", Flatten((2, 2, 2))), ("fc", Affine(np.ones((3, 8)))), ("out", Output((3,))),
    ], dt=1e-3)
    layers = {layer.name: layer.neuron_name for layer in graph.synapse_layers()}
    assert layers == {"conv": "lif", "fc": None}


@pytest.mark.parametrize("edges,message", [
    ([("in", "fc"), ("fc", "ghost")], "names unknown node 'ghost'"),
    ([("in", "fc"), ("in", "fc"), ("fc", "out")], "appears twice"),
    ([("in", "fc")], "receives no edge"),
    ([("in", "fc"), ("fc", "out"), ("out", "fc")], "is an Output but has outgoing edges"),
])
def test_structural_errors_name_the_edge_or_node(edges, message):
    nodes = {"in": Input((3,)), "fc": Affine(np.ones((3, 3))), "out": Output((3,))}
    with pytest.raises(IRError, match=message):
        Graph(nodes, edges, dt=1e-3)


def test_shape_mismatch_names_both_ends():
    with pytest.raises(ShapeError, match=r"edge in -> fc: 'in' \(Input\) outputs shape \(3,\) but "
                                         r"'fc' \(Affine\) expects \(5,\)"):
        Graph.chain([("in", Input((3,))), ("fc", Affine(np.ones((4, 5)))), ("o", Output((4,)))], 1e-3)


def test_unreachable_nodes_and_bad_dt_are_refused():
    nodes = {"in": Input((3,)), "out": Output((3,)), "a": Scale(np.ones(3)), "b": Scale(np.ones(3))}
    with pytest.raises(IRError, match="cannot be reached from any Input: a, b"):
        Graph(nodes, [("in", "out"), ("a", "b"), ("b", "a")], dt=1e-3)
    with pytest.raises(IRError, match="dt must be a positive"):
        Graph.chain([("in", Input((3,))), ("out", Output((3,)))], dt=0.0)


def test_replace_nodes_returns_a_new_validated_graph():
    graph = _residual_graph()
    new = graph.replace_nodes({"fc1": Affine(2 * np.eye(4))})
    assert new.nodes["fc1"].weight[0, 0] == 2.0 and graph.nodes["fc1"].weight[0, 0] == 1.0
    with pytest.raises(ShapeError):
        graph.replace_nodes({"fc1": Affine(np.ones((5, 4)))})
    with pytest.raises(TypeError):
        graph.nodes["fc1"] = Affine(np.eye(4))  # type: ignore[index]


def test_weight_encoding_is_exact_and_in_range():
    mantissa = np.array([[-128, 127], [3, -4]])
    encoding = WeightEncoding(mantissa, scale=np.array([0.5, 0.25]), bits=8)
    np.testing.assert_array_equal(encoding.dequantize(), [[-64.0, 63.5], [0.75, -1.0]])
    Affine(encoding.dequantize(), encoding=encoding)
    with pytest.raises(IRError, match="differs from encoding"):
        Affine(encoding.dequantize() + 1e-3, encoding=encoding)
    with pytest.raises(IRError, match=r"exceeds the 8-bit signed range \[-128, 127\]"):
        WeightEncoding(np.array([[128, 0]]), scale=1.0, bits=8)
    with pytest.raises(IRError, match="non-integer"):
        WeightEncoding(np.array([[0.5, 0]]), scale=1.0, bits=8)


def test_int_exp_encoding_ties_scale_to_unit_and_exponent():
    encoding = WeightEncoding(np.array([[5, -3]]), scale=2.0**3 / 64, bits=8, grid="int_exp",
                              exponent=3, unit=1 / 64)
    np.testing.assert_array_equal(encoding.integer_weight(), [[40, -24]])
    with pytest.raises(IRError, match="unit \\* 2\\*\\*exponent"):
        WeightEncoding(np.array([[5, -3]]), scale=0.1, bits=8, grid="int_exp", exponent=3, unit=1 / 64)
