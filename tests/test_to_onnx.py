"""ONNX export: the checker accepts the model and onnxruntime reproduces simulate()."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np
import pytest
import torch
from conftest import fixture_path

from sbc_deploy.errors import ConfigError, ExportError
from sbc_deploy.exporters.to_onnx import build_onnx, to_onnx
from sbc_deploy.ir import (
    IF,
    LI,
    LIF,
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
    Node,
    Output,
    Scale,
    SumPool2d,
    Threshold,
)
from sbc_deploy.sim import simulate

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run_onnx(path, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {k: v.astype(np.float32) for k, v in inputs.items()})))


def assert_onnx_matches_simulate(graph: Graph, inputs: Mapping[str, np.ndarray], path,
                                 batch: int | None = None) -> dict[str, np.ndarray]:
    steps = next(iter(inputs.values())).shape[0]
    to_onnx(graph, path, steps=steps, batch=batch)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    got = run_onnx(path, inputs)
    want = simulate(graph, {k: torch.from_numpy(v) for k, v in inputs.items()}).outputs
    assert sorted(got) == sorted(want)
    for name in want:
        expected = want[name].numpy()
        assert got[name].shape == expected.shape
        np.testing.assert_allclose(got[name], expected, rtol=1e-5, atol=1e-5, err_msg=name)
    return got


def spikes(rng, shape, p=0.3) -> np.ndarray:
    return (rng.random(shape) < p).astype(np.float32)


def mlp(rng) -> Graph:
    n = 24
    return Graph.chain([
        ("in", Input((10,))),
        ("fc1", Affine(rng.normal(0.3, 0.6, (n, 10)), bias=rng.normal(0, 0.1, n))),
        ("lif1", LIF(beta=rng.uniform(0.7, 0.95, n), v_threshold=np.ones(n),
                     v_leak=rng.normal(0, 0.2, n), v_reset=np.full(n, -0.1))),
        ("fc2", Affine(rng.normal(0.2, 0.5, (n, n)))),
        ("lif2", CubaLIF(alpha=np.full(n, 0.6), beta=np.full(n, 0.85), v_threshold=np.ones(n),
                         gain_syn=np.full(n, 1.5), bias=np.full(n, 0.01), reset="subtract")),
        ("fc3", Affine(rng.normal(0, 0.5, (4, n)), bias=np.zeros(4))),
        ("li", LI(beta=np.full(4, 0.9), gain=np.full(4, 0.5))),
        ("out", Output((4,))),
    ], dt=1e-3)


def test_mlp_matches_simulate_with_symbolic_and_fixed_batch(rng, tmp_path):
    graph = mlp(rng)
    for batch in (3, 7):
        assert_onnx_matches_simulate(graph, {"in": spikes(rng, (40, batch, 10))},
                                     tmp_path / "sym.onnx")
    got = assert_onnx_matches_simulate(graph, {"in": spikes(rng, (40, 5, 10))},
                                       tmp_path / "fixed.onnx", batch=5)
    assert np.abs(got["out"]).max() > 0.1
    model = onnx.load(str(tmp_path / "fixed.onnx"))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["time", 5, 10]
    assert {p.key: p.value for p in model.metadata_props}["dt"] == "0.001"


def test_one_file_runs_two_different_numbers_of_steps(rng, tmp_path):
    """The time axis is symbolic: a model exported once runs T=31 and T=50 in onnxruntime
    (a fixed T refused the second with 'Got: 50 Expected: 31'), each equal to simulate()."""
    graph = mlp(rng)
    path = tmp_path / "model.onnx"
    to_onnx(graph, path, steps=31)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    for steps in (31, 50):
        x = spikes(rng, (steps, 4, 10))
        got = run_onnx(path, {"in": x})["out"]
        want = simulate(graph, {"in": torch.from_numpy(x)}).outputs["out"].numpy()
        assert got.shape == (steps, 4, 4)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert np.abs(want).max() > 0.1  # the readout is not silent
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["steps"] == "31"


def test_spikes_are_greater_then_cast(rng, tmp_path):
    model = build_onnx(mlp(rng), steps=5)
    (scan,) = [n for n in model.graph.node if n.op_type == "Scan"]
    body = onnx.helper.get_attribute_value(scan.attribute[0])
    producers = {out: n for n in body.node for out in n.output}
    greater = [n for n in body.node if n.op_type == "Greater"]
    assert len(greater) == 2  # one per spiking neuron
    for node in greater:
        consumers = [n.op_type for n in body.node if node.output[0] in n.input]
        assert sorted(consumers) == ["Cast", "Where"]  # the spike and the reset
    assert not any(n.op_type in ("Sign", "Relu", "HardSigmoid") for n in body.node)
    assert producers  # the body is not empty


def every_kind_graph(rng) -> Graph:
    """Conv, pools (padded), Flatten, Scale, Delay, Threshold, IF, Integrator, CubaLI, a merge."""
    nodes: dict[str, Node] = {
        "in": Input((2, 8, 8)),
        "conv": Conv2d(rng.normal(0.2, 0.5, (4, 2, 3, 3)), input_shape=(2, 8, 8), padding=(1, 1),
                       bias=np.full(4, 0.05)),
        "if": IF(v_threshold=np.ones((4, 8, 8)), gain=np.full((4, 8, 8), 0.8),
                 reset="subtract"),
        "sum": SumPool2d(kernel_size=2, input_shape=(4, 8, 8)),
        "avg": AvgPool2d(kernel_size=3, stride=2, padding=1, input_shape=(4, 8, 8)),
        "flat_a": Flatten(input_shape=(4, 4, 4)),
        "flat_b": Flatten(input_shape=(4, 4, 4)),
        "scale": Scale(scale=rng.uniform(0.5, 1.5, 64)),
        "delay": Delay(delay=rng.integers(0, 4, 64)),
        "fc": Affine(rng.normal(0.0, 0.15, (6, 64))),
        "lif": LIF(beta=np.full(6, 0.9), v_threshold=np.full(6, 0.8), bias=np.full(6, 0.02)),
        "thr": Threshold(threshold=np.full(64, 0.6)),
        "fc_b": Affine(rng.normal(0, 0.3, (6, 64))),
        "integ": Integrator(gain=np.full(6, 0.5)),
        "cuba": CubaLI(alpha=np.full(6, 0.5), beta=np.full(6, 0.8), v_leak=np.full(6, 0.1)),
        "out": Output((6,)),
        "out_int": Output((6,)),
    }
    edges = [("in", "conv"), ("conv", "if"), ("if", "sum"), ("if", "avg"), ("sum", "flat_a"),
             ("avg", "flat_b"), ("flat_a", "scale"), ("scale", "delay"), ("delay", "fc"),
             ("flat_b", "fc"),  # two edges into one node add up
             ("fc", "lif"), ("flat_b", "thr"), ("thr", "fc_b"), ("fc_b", "integ"),
             ("integ", "out_int"), ("lif", "cuba"), ("cuba", "out")]
    return Graph(nodes, edges, dt=1e-3)


def test_every_node_kind_matches_simulate(rng, tmp_path):
    graph = every_kind_graph(rng)
    x = spikes(rng, (25, 3, 2, 8, 8))
    got = assert_onnx_matches_simulate(graph, {"in": x}, tmp_path / "kinds.onnx")
    assert np.abs(got["out_int"]).max() > 0
    activity = simulate(graph, torch.from_numpy(x), record=["if", "lif", "thr"]).recorded
    for name, s in activity.items():  # every spiking path is exercised, none saturated
        assert 0 < float(s.mean()) < 0.9, name


def test_delay_inside_a_recurrent_loop(rng, tmp_path):
    nodes = {"in": Input((5,)), "fc": Affine(rng.normal(0.4, 0.4, (8, 5))),
             "lif": LIF(beta=np.full(8, 0.9), v_threshold=np.ones(8)),
             "delay": Delay(delay=rng.integers(0, 3, 8)),
             "rec": Affine(rng.normal(0, 0.6, (8, 8))), "out": Output((8,))}
    edges = [("in", "fc"), ("fc", "lif"), ("lif", "delay"), ("delay", "rec"), ("rec", "lif"),
             ("lif", "out")]
    graph = Graph(nodes, edges, dt=1e-3)
    assert graph.recurrent_edges == {("rec", "lif")}
    got = assert_onnx_matches_simulate(graph, {"in": spikes(rng, (30, 4, 5))},
                                       tmp_path / "rec.onnx")
    assert 0 < got["out"].mean() < 0.9


def test_conv1d_and_several_inputs(rng, tmp_path):
    nodes = {"a": Input((3, 12)), "b": Input((5,)),
             "conv": Conv1d(rng.normal(0.2, 0.4, (2, 3, 3)), input_shape=(3, 12), stride=2,
                            dilation=2, padding=1),
             "flat": Flatten(input_shape=(2, 5)), "fc": Affine(rng.normal(0, 0.5, (10, 5))),
             "lif": LIF(beta=np.full(10, 0.8), v_threshold=np.full(10, 0.5)),
             "out": Output((10,))}
    edges = [("a", "conv"), ("conv", "flat"), ("flat", "lif"), ("b", "fc"), ("fc", "lif"),
             ("lif", "out")]
    graph = Graph(nodes, edges, dt=1e-3)
    got = assert_onnx_matches_simulate(
        graph, {"a": spikes(rng, (20, 2, 3, 12)), "b": spikes(rng, (20, 2, 5))},
        tmp_path / "multi.onnx")
    assert got["out"].sum() > 0


def nmnist_frames(steps: int) -> np.ndarray:
    """The real N-MNIST recording binned into ``steps`` frames, ``[T, 1, 2, 34, 34]``.

    N-MNIST's native format: 5 bytes per event; x, y, then polarity (top bit) and a 23-bit
    timestamp in microseconds.
    """
    raw = np.fromfile(fixture_path("events", "sample_nmnist.bin"), dtype=np.uint8)
    ev = raw.reshape(-1, 5).astype(np.int64)
    x, y, polarity = ev[:, 0], ev[:, 1], ev[:, 2] >> 7
    ts = ((ev[:, 2] & 0x7F) << 16) | (ev[:, 3] << 8) | ev[:, 4]
    frame = np.minimum(ts * steps // (ts.max() + 1), steps - 1)
    frames = np.zeros((steps, 1, 2, 34, 34), dtype=np.float32)
    np.add.at(frames, (frame, 0, polarity, y, x), 1.0)
    return frames


def test_scnn_mnist_fixture_on_a_real_nmnist_recording(rng, tmp_path):
    from_nir = pytest.importorskip("sbc_deploy.frontends.from_nir").from_nir
    # the fixture's IF nodes (r = 1; sinabs wrote the file) add their input once per step; read
    # as spec NIR, dt = 1 s makes the gain dt * r equal to that, so the network is active (at
    # 1e-4 s every IF gain is 1e-4 and nothing spikes, which would make the comparison empty)
    graph = from_nir(fixture_path("nir", "scnn_mnist_snntorch.nir"), dt=1.0, reset="subtract")
    recording = nmnist_frames(30)
    assert recording.sum() == 4325
    batch = np.concatenate([recording, spikes(rng, (30, 3, 2, 34, 34), 0.05)], axis=1)
    got = assert_onnx_matches_simulate(graph, {graph.inputs[0]: batch}, tmp_path / "scnn.onnx")
    assert got[graph.outputs[0]][:, 0].sum() > 0  # the recording makes the classifier spike


def test_braille_recurrent_fixture(rng, tmp_path):
    from_nir = pytest.importorskip("sbc_deploy.frontends.from_nir").from_nir
    graph = from_nir(fixture_path("nir", "braille_noDelay_bias_zero.nir"), dt=1e-4,
                     reset="subtract")
    assert graph.recurrent_edges
    got = assert_onnx_matches_simulate(graph, {"input": spikes(rng, (256, 4, 12), 0.1)},
                                       tmp_path / "braille.onnx")
    assert got["output"].sum() > 0


@dataclass(frozen=True, eq=False)
class Mystery(Node):
    """A node type no exporter knows."""

    shape: tuple[int, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "Mystery"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shape


def test_unknown_node_raises_export_error_naming_it_and_keeps_the_old_file(tmp_path):
    graph = Graph.chain([("in", Input((3,))), ("odd", Mystery((3,))), ("out", Output((3,)))],
                        dt=1e-3)
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous good file")
    with pytest.raises(ExportError, match="odd") as err:
        to_onnx(graph, path, steps=4)
    assert "Mystery" in str(err.value)
    assert path.read_bytes() == b"previous good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary left


def test_bad_arguments(rng, tmp_path):
    with pytest.raises(ConfigError, match="steps"):
        to_onnx(mlp(rng), tmp_path / "m.onnx", steps=0)
    with pytest.raises(ConfigError, match="batch"):
        to_onnx(mlp(rng), tmp_path / "m.onnx", steps=3, batch=-1)
    with pytest.raises(ExportError, match="does not exist"):
        to_onnx(mlp(rng), tmp_path / "missing" / "m.onnx", steps=3)
