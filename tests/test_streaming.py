"""Streaming simulation: chunked runs (time and batch, state carried across chunks) equal one
whole run (spikes exactly, membranes to the rounding of the synapse products), on the bundled networks and third-party fixtures; SynOps counted chunk by
chunk equal count_synops on the whole sequence; the pipeline's numbers do not change."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import fixture_path

from sbc_deploy import bundled
from sbc_deploy.errors import ConfigError
from sbc_deploy.frontends import from_netx, from_nir
from sbc_deploy.ir import LIF, Affine, Delay, Graph, Input, Output
from sbc_deploy.report.synops import count_synops
from sbc_deploy.sim import simulate
from sbc_deploy.sim.float_sim import chunk_plan
from sbc_deploy.sim.fixed_point import to_fixed_point
from sbc_deploy.sim.int_core import evaluate_deployed, simulate_integer
from sbc_deploy.report.synops_counter import SynOpsCounter

CHUNKS = [(1, None), (7, 3), (None, 2), (5, 1)]   # (time_chunk, batch_chunk)


def bundled_inputs(model: str, samples: int, steps: int | None = None):
    graph = bundled.load_bundled_model(model)
    data = bundled.load_bundled_data("eval")
    x = torch.from_numpy(np.array(np.swapaxes(data.x[:samples], 0, 1))).to(torch.float32)
    return graph, (x if steps is None else x[:steps])


def assert_same(got: torch.Tensor, expected: torch.Tensor, what) -> None:
    """Spikes bit for bit; membrane values to the rounding of the synapse products (BLAS
    picks its kernel by the number of rows, so a row's sum may round differently when a chunk
    holds fewer rows: measured 7e-7 in float32, 1e-16 in float64 on the bundled MLP)."""
    if bool(((expected == 0) | (expected == 1)).all()):
        assert torch.equal(got, expected), what
    else:
        atol = 1e-5 if expected.dtype == torch.float32 else 1e-12
        torch.testing.assert_close(got, expected, rtol=0, atol=atol, msg=str(what))


def assert_same_run(graph: Graph, x: torch.Tensor, record: list[str], dtype=torch.float32):
    """Every chunking gives the whole run's outputs, records and hook inputs, bit for bit."""
    whole_in: dict[str, torch.Tensor] = {}
    whole = simulate(graph, x, record=record, dtype=dtype,
                     on_synapse_input=whole_in.__setitem__)
    for time_chunk, batch_chunk in CHUNKS:
        seen: dict[str, list[torch.Tensor]] = {}
        part = simulate(graph, x, record=record, dtype=dtype, time_chunk=time_chunk,
                        batch_chunk=batch_chunk,
                        on_synapse_input=lambda n, t: seen.setdefault(n, []).append(t))
        for name, value in [*whole.outputs.items(), *whole.recorded.items()]:
            got = part.outputs[name] if name in whole.outputs else part.recorded[name]
            assert_same(got, value, (name, time_chunk, batch_chunk))
        # the hook's chunks, put back together (time within a group, then groups)
        b = batch_chunk or x.shape[1]
        t = time_chunk or x.shape[0]
        groups = -(-x.shape[1] // b)
        for name, value in whole_in.items():
            chunks = seen[name]
            assert len(chunks) == groups * -(-x.shape[0] // t)
            per_group = len(chunks) // groups
            joined = torch.cat([torch.cat(chunks[g * per_group:(g + 1) * per_group])
                                for g in range(groups)], dim=1)
            assert_same(joined, value, name)
    return whole


@pytest.mark.parametrize("model", ["nmnist_mlp", "nmnist_cnn"])
def test_bundled_networks_chunked_equal_whole_run(model):
    graph, x = bundled_inputs(model, samples=5, steps=20)
    neurons = [n for n, node in graph.nodes.items() if node.kind in ("LIF", "IF", "CubaLIF")]
    whole = assert_same_run(graph, x, record=[*neurons, f"{neurons[0]}:v"])
    assert whole.outputs[graph.outputs[0]].sum() > 0          # the network is live


def test_braille_recurrent_fixture_carries_its_cycle_across_chunks(rng):
    graph = from_nir(fixture_path("nir", "braille_noDelay_bias_zero.nir"), dt=1e-4,
                     reset="subtract")
    x = torch.from_numpy((rng.random((60, 5, 12)) < 0.1).astype(np.float64))
    whole = assert_same_run(graph, x, record=["lif1.lif", "lif1.lif:v", "lif1.lif:i"],
                            dtype=torch.float64)
    assert whole.recorded["lif1.lif"].sum() > 0


def test_snntorch_cnn_fixture_chunked_equal_whole_run(rng):
    graph = from_nir(fixture_path("nir", "scnn_mnist_snntorch.nir"), dt=1e-3, reset="zero")
    shape = graph.nodes[graph.inputs[0]].output_shape
    x = torch.from_numpy((rng.random((9, 4, *shape)) < 0.3).astype(np.float32))
    assert_same_run(graph, x, record=[])


def test_delay_history_is_carried_across_chunks(rng):
    # a delay of up to 4 steps, cut in chunks shorter than the delay: the history carries it
    delays = np.array([0, 1, 2, 4, 3, 4])
    graph = Graph.chain([("in", Input((3,))), ("fc", Affine(rng.normal(0.6, 0.4, (6, 3)))),
                         ("d", Delay(delay=delays)),
                         ("lif", LIF(beta=np.full(6, 0.8), v_threshold=np.full(6, 0.5))),
                         ("out", Output((6,)))], dt=1e-3)
    x = torch.from_numpy((rng.random((23, 4, 3)) < 0.5).astype(np.float64))
    whole = assert_same_run(graph, x, record=["d", "lif:v"], dtype=torch.float64)
    # and the delay is the one asked for: d[t] = fc[t - delay]
    fc = simulate(graph, x, record=["fc"], dtype=torch.float64).recorded["fc"]
    for j, k in enumerate(delays):
        expected = torch.cat([torch.zeros(k, 4, dtype=fc.dtype), fc[:23 - k, :, j]])
        assert torch.equal(whole.recorded["d"][:, :, j], expected)


def test_synops_counted_per_chunk_equal_count_synops_on_the_whole_run():
    graph, x = bundled_inputs("nmnist_cnn", samples=6, steps=25)
    inputs: dict[str, torch.Tensor] = {}
    simulate(graph, x, on_synapse_input=inputs.__setitem__)
    expected = count_synops(graph, inputs)
    counter = SynOpsCounter(graph, steps=x.shape[0], batch=x.shape[1])
    simulate(graph, x, on_synapse_input=counter, time_chunk=4, batch_chunk=4)
    got = counter.report()
    assert got.to_dict() == expected.to_dict()
    for a, b in zip(got.layers, expected.layers):
        np.testing.assert_array_equal(a.synops, b.synops)
        np.testing.assert_array_equal(a.spikes_in, b.spikes_in)
    assert got.synops > 0


def test_chunk_plan_bounds_the_widest_value_and_prefers_whole_sequences():
    graph = bundled.load_bundled_model("nmnist_cnn")
    widest = max(max(int(np.prod(n.output_shape)), int(np.prod(n.input_shape)))
                 for n in graph.nodes.values()) * 4
    assert chunk_plan(graph, 30, 64, None) == (30, 64)
    assert chunk_plan(graph, 30, 64, widest * 30 * 5) == (30, 5)     # fewer samples, whole T
    assert chunk_plan(graph, 30, 64, widest * 7) == (7, 1)           # then fewer steps
    assert chunk_plan(graph, 30, 64, 1) == (1, 1)                    # never below one
    with pytest.raises(ConfigError, match="time_chunk"):
        simulate(graph, torch.zeros(3, 1, 2, 34, 34), time_chunk=0)


def test_memory_budget_gives_the_same_outputs():
    graph, x = bundled_inputs("nmnist_cnn", samples=4, steps=12)
    whole = simulate(graph, x).outputs["output"]
    small = simulate(graph, x, memory_budget=100_000).outputs["output"]
    assert torch.equal(small, whole)


def test_integer_core_blocks_carry_every_layer_on_a_lava_fixture():
    graph = from_netx(fixture_path("netx", "mnist_small", "network.net"))
    net = to_fixed_point(graph)
    rng = np.random.default_rng(3)
    x = (rng.random((40, 3, *net.input_shape)) < 0.2).astype(np.int8)
    names = [layer.name for layer in net.layers]
    record = [*names, f"{names[0]}:u", f"{names[-1]}:v", net.layers[1].synapse]
    runs = [simulate_integer(net, x, record=record, chunk=chunk) for chunk in (1, 6, 64)]
    for other in runs[1:]:
        assert torch.equal(other.outputs["output"] if "output" in other.outputs else
                           next(iter(other.outputs.values())),
                           next(iter(runs[0].outputs.values())))
        for key in record:
            assert torch.equal(other.recorded[key], runs[0].recorded[key]), key
        for name in names:
            np.testing.assert_array_equal(other.final[name].v, runs[0].final[name].v)
    assert int(runs[0].recorded[names[1]].sum()) > 0


def test_evaluate_deployed_with_a_memory_budget_is_unchanged():
    graph = from_netx(fixture_path("netx", "mnist_small", "network.net"))
    net = to_fixed_point(graph)
    rng = np.random.default_rng(4)
    x = (rng.random((30, 7, *net.input_shape)) < 0.2).astype(np.float32)
    y = rng.integers(0, 10, 7)
    whole = evaluate_deployed(graph, x, y, net=net)
    small = evaluate_deployed(graph, x, y, net=net, memory_budget=20_000)
    assert small == whole


def test_graded_input_counts_one_event_per_non_zero_value_in_every_chunk(rng):
    graph, x = bundled_inputs("nmnist_mlp", samples=3, steps=10)
    analog = x * torch.from_numpy(rng.uniform(0.1, 0.9, size=x.shape).astype(np.float32))
    inputs: dict[str, torch.Tensor] = {}
    simulate(graph, analog, on_synapse_input=inputs.__setitem__)
    expected = count_synops(graph, inputs)
    counter = SynOpsCounter(graph, steps=10, batch=3)
    simulate(graph, analog, on_synapse_input=counter, time_chunk=3, batch_chunk=2)
    got = counter.report()
    assert got.layers[0].graded and expected.layers[0].graded
    assert got.to_dict() == expected.to_dict()


@pytest.mark.parametrize("model", ["nmnist_mlp", "nmnist_cnn"])
def test_pipeline_evaluation_streams_without_changing_accuracy_or_synops(tmp_path, model):
    from sbc_deploy.pipeline import DeployRequest, deploy
    from sbc_deploy.sim import classify, default_decoding

    def run(budget, name):
        # the MLP goes through the netx export, whose file the integer core runs
        request = DeployRequest(model=model, targets=("loihi2",), method="magnitude",
                                eval_limit=24, batch_size=10,
                                export=("netx",) if model == "nmnist_mlp" else None,
                                out_dir=str(tmp_path / name), sim_memory_budget=budget)
        return deploy(request).report

    whole_report, streamed_report = run(None, "whole"), run(30_000, "streamed")
    whole, streamed = whole_report.targets[0], streamed_report.targets[0]
    # firing rates counted chunk by chunk (the guards' ActivityMeter fed per chunk)
    for key in ("dense", "loihi2"):   # dense and compressed network on the evaluation data
        rates = [(r.activity[key]["rate"], r.activity[key]["samples"], r.activity[key]
                  ["silent_neurons"]) for r in (whole_report, streamed_report)]
        assert rates[0][1] == rates[1][1] == 24
        assert rates[0][0].keys() == rates[1][0].keys() and rates[0][0]
        for name, rate in rates[0][0].items():
            # the MLP's rounding flips: 1 of 580 read-out spikes (see above); the CNN: exact
            assert rates[1][0][name] == pytest.approx(rate, rel=0 if model == "nmnist_cnn"
                                                      else 1e-2)
            assert rates[1][2][name] == pytest.approx(rates[0][2][name], abs=1e-2)
    # float32 BLAS rounds a dense layer's rows by how many rows it is given (see
    # assert_same): a membrane within that rounding of its threshold may spike in one run and
    # not the other (measured: 9 of 15 million SynOps on the quantised MLP). Exact: the CNN.
    assert streamed.accuracy == whole.accuracy
    if model == "nmnist_cnn":
        assert streamed.synops == whole.synops
    for got, expected in [(streamed.synops.dense, whole.synops.dense),
                          (streamed.synops.compressed, whole.synops.compressed)]:
        assert got == pytest.approx(expected, rel=1e-5)
    if model == "nmnist_mlp":   # the integer core ran, batch by batch (the CNN's pools: not)
        assert whole.accuracy.compressed_integer is not None
    # the second, independent computation: one whole simulation and count_synops
    graph, x = bundled_inputs(model, samples=24)
    inputs: dict[str, torch.Tensor] = {}
    result = simulate(graph, x, on_synapse_input=inputs.__setitem__)
    assert whole.synops.dense == pytest.approx(count_synops(graph, inputs).per_sample, rel=0)
    labels = torch.from_numpy(np.array(bundled.load_bundled_data("eval").y[:24]))
    pred = classify(result.outputs["output"], default_decoding(graph))
    assert whole.accuracy.dense_float == pytest.approx(float((pred == labels).double().mean()), rel=0)


def test_on_recorded_receives_every_chunk_and_nothing_is_kept_whole():
    graph, x = bundled_inputs("nmnist_cnn", samples=5, steps=12)
    whole = simulate(graph, x, record=["leaky1", "leaky4:v"])
    chunks: list[dict[str, torch.Tensor]] = []
    part = simulate(graph, x, record=["leaky1", "leaky4:v"], time_chunk=5, batch_chunk=3,
                    on_recorded=lambda values: chunks.append(dict(values)))
    assert dict(part.recorded) == {}
    assert len(chunks) == 2 * 3                      # 2 groups of samples x 3 time chunks
    for key in ("leaky1", "leaky4:v"):
        groups = [torch.cat([c[key] for c in chunks[g * 3:(g + 1) * 3]]) for g in range(2)]
        assert_same(torch.cat(groups, dim=1), whole.recorded[key], key)
