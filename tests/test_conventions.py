"""Framework NIR conventions: round trips, imports as frameworks write them, exports for them.

References are independent of the simulator: numpy step-by-step loops of each framework's
documented update (the equations cited in sbc_deploy/frontends/conventions.py), the NIR file
itself, or the original graph's own spikes. Running the frameworks is the interop tests' job.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch
from conftest import fixture_path

from sbc_deploy import bundled
from sbc_deploy.errors import ConfigError, ExportError, SbcDeployError
from sbc_deploy.exporters.nir_consumers import consumer_model
from sbc_deploy.exporters.to_nir import export_nir, to_nir, write_nir, write_nir_for
from sbc_deploy.frontends import load_model
from sbc_deploy.frontends.conventions import CONSUMERS, CONVENTIONS, SOURCES
from sbc_deploy.frontends.from_nir import from_nir
from sbc_deploy.frontends.nir_fixups import dt_from_r
from sbc_deploy.ir import IF, LIF, Affine, CubaLIF, Flatten, Graph, Input, Output, SumPool2d
from sbc_deploy.sim import simulate

FIXTURES = {  # file -> the dt and reset its writer used (SOURCES.md)
    "lif_norse.nir": (1e-4, "zero"),
    "two_lif_neurons.nir": (1e-3, "zero"),
    "scnn_mnist_snntorch.nir": (1e-4, "subtract"),
    "braille_noDelay_bias_zero.nir": (1e-4, "zero"),
}


def _params(graph: Graph) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for name, node in graph.nodes.items():
        out[name] = {k: v for k, v in node.parameters().items()
                     if k not in ("metadata", "encoding")}
    return out


def assert_same_graph(a: Graph, b: Graph) -> None:
    assert set(a.nodes) == set(b.nodes)
    assert set(a.edges) == set(b.edges)
    assert a.dt == pytest.approx(b.dt, rel=1e-15)
    pa, pb = _params(a), _params(b)
    for name in pa:
        assert type(a.nodes[name]) is type(b.nodes[name]), name
        for key, value in pa[name].items():
            other = pb[name][key]
            if value is None or isinstance(value, str):
                assert value == other, (name, key)
            else:
                np.testing.assert_allclose(np.asarray(other, dtype=float),
                                           np.asarray(value, dtype=float), rtol=1e-12,
                                           atol=1e-15, err_msg=f"{name}.{key}")


def _spikes_in(graph: Graph, steps: int, batch: int, seed: int, p: float = 0.3) -> torch.Tensor:
    shape = graph.nodes[graph.inputs[0]].output_shape
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, *shape, generator=gen) < p).to(torch.float32)


def _run(graph: Graph, x: torch.Tensor) -> torch.Tensor:
    return simulate(graph, x).outputs[graph.outputs[0]]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("discretization", ["euler", "exact"])
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_every_fixture_round_trips_as_the_identity(name, discretization, tmp_path):
    """NIR -> sbc-deploy -> NIR -> sbc-deploy: the same IR (parameters to 1e-12) and the same
    NIR file content, with the discretization read back from the file's own metadata."""
    dt, reset = FIXTURES[name]
    first = from_nir(fixture_path("nir", name), dt=dt, reset=reset, framework="nir",
                     discretization=discretization)
    path = write_nir(first, tmp_path / "round.nir")
    with h5py.File(path) as f:
        assert f["node/metadata/discretization"][()].decode() == discretization
    second = from_nir(path)  # dt, reset, discretization and convention from the file only
    assert second.metadata["discretization"] == discretization
    assert second.metadata["discretization_source"] == "file metadata"
    assert second.metadata["convention"] == "nir"
    assert_same_graph(first, second)
    # and the NIR written from the second import is the first export, number for number
    again = to_nir(second)
    original = nir.read(path)
    for key, node in original.nodes.items():
        for field, value in node.to_dict().items():
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                np.testing.assert_allclose(again.nodes[key].to_dict()[field], value,
                                           rtol=1e-12, err_msg=f"{key}.{field}")


@pytest.mark.parametrize("discretization", ["euler", "exact"])
@pytest.mark.parametrize("model", ["nmnist_mlp", "nmnist_cnn"])
def test_bundled_networks_round_trip_in_both_discretizations(model, discretization, tmp_path):
    path = tmp_path / "bundled.nir"
    first = from_nir(Path(bundled.__file__).parent / f"{model}.nir",
                     discretization=discretization)
    if discretization == "exact":  # the exact reading differs from Euler (beta 0.5 -> exp(-2))
        euler = bundled.load_bundled_model(model)
        lif = next(n for n, v in euler.nodes.items() if isinstance(v, LIF))
        assert not np.allclose(first.nodes[lif].beta, euler.nodes[lif].beta)
    write_nir(first, path)
    assert_same_graph(first, load_model(path))


def test_exact_discretization_from_load_and_the_file_overrides(tmp_path):
    path = fixture_path("nir", "lif_norse.nir")
    exact = load_model(path, dt=1e-4, reset="zero", discretization="exact")
    tau = float(np.asarray(nir.read(path).nodes["1"].tau, dtype=np.float64)[0])  # float32 0.0025
    np.testing.assert_allclose(exact.nodes["1"].beta, np.exp(-1e-4 / tau))
    written = write_nir(exact, tmp_path / "exact.nir")
    # the argument wins over the file's metadata, and says so
    euler = load_model(written, discretization="euler")
    np.testing.assert_allclose(euler.nodes["1"].beta, 1 - 1e-4 / tau, rtol=1e-12)
    assert "overrides" in euler.metadata["discretization_source"]


# --------------------------------------------------------------------------- write for X, read as X


def _cuba_recurrent(rng, reset: str = "subtract") -> Graph:
    """A dense recurrent CubaLIF network every consumer with CubaLIF can hold."""
    n, h = 6, 12
    g = Graph({
        "in": Input((n,)),
        "fc": Affine(rng.normal(0.6, 0.5, (h, n))),
        "cuba": CubaLIF(alpha=np.full(h, 0.7), beta=np.full(h, 0.8), v_threshold=np.ones(h),
                        gain_syn=np.full(h, 0.5), gain=np.full(h, 0.9), reset=reset),
        "rec": Affine(rng.normal(0, 0.3, (h, h))),
        "out": Output((h,)),
    }, [("in", "fc"), ("fc", "cuba"), ("cuba", "rec"), ("rec", "cuba"), ("cuba", "out")],
        dt=1e-3, metadata={"discretization": "exact"})
    return g


def _bundled_x(model: str, n: int = 16) -> torch.Tensor:
    data = bundled.load_bundled_data("eval")
    return torch.from_numpy(np.array(np.swapaxes(data.x[:n], 0, 1))).to(torch.float32)


@pytest.mark.parametrize("consumer", [c for c in CONSUMERS if c not in ("nir", "rockpool")])
@pytest.mark.parametrize("model", ["nmnist_mlp", "nmnist_cnn"])
def test_written_for_a_framework_and_read_as_it_gives_the_same_spikes(model, consumer,
                                                                      tmp_path):
    """Converted to the consumer's model (consumer_model, what --nir-for does before
    calibration), written for it and read back as it: the same spikes. sinabs and spyx build
    subtract-reset neurons only, so the bundled networks are read with --reset subtract."""
    reset = "subtract" if CONVENTIONS[consumer].consumer.reset == "subtract" else None
    graph = consumer_model(bundled.load_bundled_model(model, reset=reset), consumer).graph
    x = _bundled_x(model)
    want = _run(graph, x)
    assert want.sum() > 0
    result = write_nir_for(graph, tmp_path / "m.nir", nir_for=consumer)
    assert result.notes, "every framework needs some adaptation of these networks"
    back = load_model(tmp_path / "m.nir", source=consumer)
    assert back.metadata["convention"] == consumer
    got = _run(back, x)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    # detection alone finds the same convention (the file says it was written for it)
    assert load_model(tmp_path / "m.nir").metadata["convention"] == consumer


def test_rockpool_export_keeps_the_recurrent_weights_and_the_spikes(rng, tmp_path):
    graph = consumer_model(_cuba_recurrent(rng), "rockpool").graph  # rockpool's multi-spike
    x = _spikes_in(graph, 40, 5, seed=1)
    want = _run(graph, x)
    assert want.sum() > 0
    write_nir_for(graph, tmp_path / "r.nir", nir_for="rockpool")
    back = load_model(tmp_path / "r.nir", source="rockpool")
    assert back.recurrent_edges
    np.testing.assert_array_equal(_run(back, x).numpy(), want.numpy())
    stored = nir.read(tmp_path / "r.nir")
    # the cycle is nested as the 4-node graph rockpool's importer recognises
    sub = stored.nodes["cuba"]
    assert isinstance(sub, nir.NIRGraph) and len(sub.nodes) == 4
    assert set(sub.edges) == {("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                              ("lif", "output")}
    # gains folded: W * gain_syn gain / (rockpool's 1 * alpha) = W * 0.5 * 0.9 / 0.7
    np.testing.assert_allclose(sub.nodes["w_rec"].weight, graph.nodes["rec"].weight
                               * 0.5 * 0.9 / 0.7, rtol=1e-12)
    # rockpool's importer recovers dt = min(tau_mem / (1 + r)): exactly the graph's dt
    cuba = sub.nodes["lif"]
    np.testing.assert_allclose(np.min(cuba.tau_mem / (1 + cuba.r)), 1e-3, rtol=1e-12)


def test_exports_for_frameworks_follow_their_importers_conventions(tmp_path):
    graph = bundled.load_bundled_model("nmnist_cnn")
    snn = export_nir(graph, nir_for="snntorch").graph
    assert float(snn.metadata["dt"]) == 1e-4  # snntorch hard-codes it
    for node in snn.nodes.values():
        if isinstance(node, nir.LIF):  # r = tau / dt: snntorch's w_scale is 1
            np.testing.assert_allclose(node.r * 1e-4 / node.tau, 1.0, rtol=1e-12)
            assert np.ptp(node.v_threshold) == 0
        if isinstance(node, nir.Flatten):  # torch Flatten(-3, -1) keeps the batch axis
            assert (int(node.start_dim), int(node.end_dim)) == (-3, -1)
    assert not any(isinstance(n, nir.SumPool2d) for n in snn.nodes.values())
    subtract = bundled.load_bundled_model("nmnist_cnn", reset="subtract")
    sinabs = write_nir_for(consumer_model(subtract, "sinabs").graph, tmp_path / "s.nir",
                           nir_for="sinabs")
    with h5py.File(tmp_path / "s.nir") as f:
        names = []
        f["node"].visit(names.append)
    assert not [n for n in names if n.endswith("v_reset")]  # nir 1.0.4 reads no v_reset
    assert not any(isinstance(n, nir.Linear) for n in sinabs.graph.nodes.values())
    assert any("1.0.4" in line for line in sinabs.notes)
    norse = export_nir(graph, nir_for="norse").graph
    for node in norse.nodes.values():
        if isinstance(node, nir.LIF):
            np.testing.assert_array_equal(node.r, 1.0)  # norse ignores r
    # plain NIR is unchanged: per-sample Flatten dims and SumPool
    plain = export_nir(graph).graph
    assert any(isinstance(n, nir.SumPool2d) for n in plain.nodes.values())
    assert export_nir(graph).notes == ()


def test_exports_refuse_what_a_framework_cannot_hold_naming_node_and_framework(rng):
    with pytest.raises(ExportError, match="rockpool") as err:
        export_nir(bundled.load_bundled_model("nmnist_cnn"), nir_for="rockpool")
    assert "Conv2d" in str(err.value) and "conv2d0" in str(err.value)
    leaky = Graph.chain([("in", Input((3,))), ("fc", Affine(np.eye(3))),
                         ("lif", LIF(beta=np.full(3, 0.9), v_threshold=np.ones(3),
                                     v_leak=np.full(3, 0.2))), ("out", Output((3,)))], dt=1e-3)
    with pytest.raises(ExportError, match=r"node 'lif' \(--nir-for snntorch\).*") as err:
        export_nir(leaky, nir_for="snntorch")
    assert "v_leak" in str(err.value)
    with pytest.raises(ExportError, match="unknown NIR consumer"):
        export_nir(leaky, nir_for="lava-dl")


# --------------------------------------------------------------------------- numpy references


def _lif_reference(w, x, beta, gain, thr, reset="zero", w_rec=None, alpha=None, g_syn=1.0,
                   bias=0.0, syn_after=False):
    """Step by step: [i = alpha i + g_syn (W x + W_rec s)]; v = beta v + gain i + bias;
    s = v > thr; reset to 0 or by subtraction. ``syn_after``: i = alpha (i + input)."""
    steps, batch, _ = x.shape
    h = w.shape[0]
    v, i, s = np.zeros((batch, h)), np.zeros((batch, h)), np.zeros((batch, h))
    out = np.zeros((steps, batch, h))
    for t in range(steps):
        drive = x[t] @ w.T + (0 if w_rec is None else s @ w_rec.T)
        if alpha is None:
            current = drive
        elif syn_after:
            i = alpha * (i + drive)
            current = i
        else:
            i = alpha * i + g_syn * drive
            current = i
        v = beta * v + gain * current + bias
        s = (v > thr).astype(float)
        v = np.where(s > 0, v - thr if reset == "subtract" else 0.0, v)
        out[t] = s
    return out


def _nested(kind_node, w_rec, n, layout="snntorch"):
    if layout == "spyx":
        edges = [("input", "w_rec"), ("w_rec", "lif"), ("lif", "w_rec"), ("lif", "output")]
    else:
        edges = [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes={"input": nir.Input(np.array([n])), "lif": kind_node,
                               "w_rec": w_rec, "output": nir.Output(np.array([n]))},
                        edges=edges, type_check=False)


def _outer(sub, w, n_in, n):
    return nir.NIRGraph(nodes={"input": nir.Input(np.array([n_in])), "fc": nir.Linear(w),
                               "rnn": sub, "output": nir.Output(np.array([n]))},
                        edges=[("input", "fc"), ("fc", "rnn"), ("rnn", "output")],
                        type_check=False)


def _check(graph_nir, reference, x, **load):
    graph = from_nir(graph_nir, **load)
    assert graph.recurrent_edges, "the recurrent weight must survive the import"
    got = _run(graph, torch.from_numpy(x).to(torch.float32)).numpy()
    assert reference.sum() > 0
    np.testing.assert_array_equal(got, reference)
    return graph


def test_snntorch_rleaky_and_rsynaptic_nested_graphs(rng):
    """snntorch 1.0.0 export_nir.py: dt = 1e-4, tau = dt/(1-beta), r = tau/dt, nested graph
    {input, lif, w_rec, output}. With reset_mechanism='zero' and reset_delay=False (what
    snntorch's importer builds) snntorch steps v = beta v + x (+ W_rec s) and zeroes v in the
    step of the spike; its defaults (subtract, reset_delay=True) are what --from snntorch
    assumes when nothing is said (the spike variants themselves are checked against snntorch
    in tests/test_framework_interop.py)."""
    n_in, n, dt = 5, 8, 1e-4
    w, w_rec = rng.normal(0.5, 0.4, (n, n_in)), rng.normal(0, 0.4, (n, n))
    x = (rng.random((30, 3, n_in)) < 0.4).astype(float)
    beta = 0.85
    tau = np.full(n, dt / (1 - beta))
    leaky = nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(n), v_threshold=np.ones(n),
                    v_reset=np.zeros(n))
    ref = _lif_reference(w, x, 1 - dt / tau, 1.0, 1.0, w_rec=w_rec)
    nested = _outer(_nested(leaky, nir.Linear(w_rec), n), w, n_in, n)
    graph = _check(nested, ref, x, framework="snntorch:reset_delay=false", reset="zero")
    assert graph.dt == 1e-4 and graph.nodes["rnn.lif"].reset_timing == "same_step"
    default = from_nir(nested, framework="snntorch")  # snntorch's defaults, said
    assert default.metadata["reset"] == "subtract"
    assert default.nodes["rnn.lif"].reset_timing == "next_step"
    assert any("reset_delay=true" in line for line in default.metadata["convention_caveats"])
    # if_beta bears on IF nodes only: a file without one is not told it was assumed ...
    assert not any("if_beta" in line for line in default.metadata["convention_caveats"])
    # ... and a file with one is
    with_if = nir.NIRGraph.from_list(
        nir.Affine(weight=w, bias=np.zeros(n)),
        nir.IF(r=np.ones(n), v_threshold=np.ones(n), v_reset=np.zeros(n)))
    caveats = from_nir(with_if, framework="snntorch").metadata["convention_caveats"]
    assert any("if_beta=1" in line for line in caveats), caveats
    zero = from_nir(nested, framework="snntorch", reset="zero")  # RLeaky's refractory step
    assert zero.nodes["rnn.lif"].reset_timing == "next_step"
    alpha = 0.6
    tau_syn = np.full(n, dt / (1 - alpha))
    synaptic = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau, r=tau / dt, w_in=tau_syn / dt,
                           v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))
    ref = _lif_reference(w, x, 1 - dt / tau, 1.0, 1.0, w_rec=w_rec, alpha=1 - dt / tau_syn)
    detected = _check(_outer(_nested(synaptic, nir.Linear(w_rec), n), w, n_in, n), ref, x,
                      reset="zero", framework="snntorch:reset_delay=false")
    assert detected.metadata["convention"] == "snntorch"
    assert from_nir(_outer(_nested(synaptic, nir.Linear(w_rec), n), w, n_in, n)
                    ).metadata["convention"] == "snntorch"  # r = tau / 1e-4 gives it away


def test_norse_lif_as_norse_1_1_writes_it(rng):
    """norse 1.1.0 export_nir.py writes tau = dt / tau_mem_inv (dt = 1e-3), r = 1; its box
    cell steps v += dt tau_mem_inv (x - v) and resets to 0. A recurrent LIF (norse's
    LIFRecurrent as a cycle lif -> w_rec -> lif) keeps its recurrent weights."""
    n_in, n, dt = 4, 6, 1e-3
    tau_inv = rng.uniform(50, 200, n)  # 1/s: time constants of 5 to 20 ms
    w, w_rec = rng.normal(8, 4, (n, n_in)), rng.normal(0, 3, (n, n))
    x = (rng.random((40, 2, n_in)) < 0.5).astype(float)
    lif = nir.LIF(tau=dt / tau_inv, r=np.ones(n), v_leak=np.zeros(n),
                  v_threshold=np.full(n, 0.2))
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([n_in])), "fc": nir.Linear(w),
                                "lif": lif, "rec": nir.Linear(w_rec),
                                "output": nir.Output(np.array([n]))},
                         edges=[("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"),
                                ("lif", "output")], type_check=False)
    k = dt * tau_inv
    ref = _lif_reference(w, x, 1 - k, k, 0.2, w_rec=w_rec)
    imported = _check(graph, ref, x, framework="norse")
    assert imported.dt == 1e-3
    # read as the spec says, tau = dt / tau_mem_inv is shorter than the step (the issue's
    # "needs --dt 1e-6")
    with pytest.raises(ConfigError, match="forward Euler needs dt <= tau_mem"):
        from_nir(graph, dt=1e-3, reset="zero", framework="nir")


def test_sinabs_iaf_and_iafrecurrent_count_time_in_steps(rng):
    """sinabs 3.1.3 nir.py: IF with r = 1 (one unit of input per step, whatever dt labels the
    step), Linear written as Affine with zero bias, subtract reset. With --dt 0.001 the spec
    reading gives gain 0.001 and a silent network; the sinabs reading gives sinabs' spikes."""
    n_in, n = 5, 7
    w, w_rec = rng.normal(0.4, 0.3, (n, n_in)), rng.normal(0, 0.2, (n, n))
    x = (rng.random((30, 4, n_in)) < 0.4).astype(float)
    iaf = nir.IF(r=np.ones(n), v_threshold=np.ones(n))
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([n_in])),
                                "fc": nir.Affine(w, np.zeros(n)), "iaf": iaf,
                                "rec": nir.Affine(w_rec, np.zeros(n)),
                                "output": nir.Output(np.array([n]))},
                         edges=[("input", "fc"), ("fc", "iaf"), ("iaf", "rec"), ("rec", "iaf"),
                                ("iaf", "output")], type_check=False)
    ref = _lif_reference(w, x, 1.0, 1.0, 1.0, reset="subtract", w_rec=w_rec)
    # sinabs' SingleSpike fires one spike at v >= thr (never equal here); its default
    # MultiSpike floor(v / thr) is max_spikes None
    imported = _check(graph, ref, x, framework="sinabs:spike_fn=single", dt=1e-3)
    assert imported.nodes["iaf"].fires_at_equal and imported.nodes["iaf"].max_spikes == 1
    assert from_nir(graph, framework="sinabs", dt=1e-3).nodes["iaf"].max_spikes is None
    assert isinstance(imported.nodes["iaf"], IF)
    np.testing.assert_array_equal(imported.nodes["iaf"].gain, 1.0)
    assert imported.metadata["reset"] == "subtract"
    assert any("spike_fn=single" in line  # what the file cannot say is said
               for line in imported.metadata["convention_caveats"])
    spec = from_nir(graph, dt=1e-3, reset="subtract", framework="nir")
    assert _run(spec, torch.from_numpy(x).float()).sum() == 0  # the silent network
    with pytest.raises(ConfigError, match="steps") as err:
        from_nir(graph, framework="sinabs")  # no dt: sinabs cannot say how long a step is
    assert "--dt" in err.value.hint


def test_rockpool_batch_axis_recurrent_cubalif_and_dt_from_r(rng):
    """rockpool nir.py: ports typed (1, N) from the sample data, CubaLIF with
    r = tau exp(-dt/tau)/dt, a 4-node nested recurrent graph; LIFTorch steps
    isyn = (isyn + x + W s) exp(-dt/tau_syn), v = v exp(-dt/tau_mem) + isyn, subtract."""
    n_in, n, dt = 3, 5, 1e-3
    tau_mem, tau_syn = rng.uniform(0.01, 0.03, n), rng.uniform(0.003, 0.01, n)
    w, w_rec = rng.normal(0.4, 0.3, (n, n_in)), rng.normal(0, 0.3, (n, n))
    x = (rng.random((50, 2, n_in)) < 0.5).astype(float)
    cuba = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem * np.exp(-dt / tau_mem) / dt,
                       v_leak=np.zeros(n), v_threshold=np.ones(n))
    sub = _nested(cuba, nir.Linear(w_rec), n)
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([1, n_in])),
                                "fc": nir.Linear(w), "rnn": sub,
                                "output": nir.Output(np.array([1, n]))},
                         edges=[("input", "fc"), ("fc", "rnn"), ("rnn", "output")],
                         type_check=False)
    ref = _lif_reference(w, x, np.exp(-dt / tau_mem), 1.0, 1.0, reset="subtract", w_rec=w_rec,
                         alpha=np.exp(-dt / tau_syn), syn_after=True)
    # rockpool's default max_spikes_per_dt is 2**16 (the file does not say); the reference
    # fires one spike per step, as LIFTorch(max_spikes_per_dt=1)
    imported = _check(graph, ref, x, framework="rockpool:max_spikes_per_dt=1")
    detected = from_nir(graph)  # detected: batch axis and r's single dt
    assert detected.metadata["convention"] == "rockpool"
    assert detected.nodes["rnn.lif"].max_spikes == 2 ** 16
    assert imported.dt == pytest.approx(dt, rel=1e-10)
    assert imported.nodes["input"].shape == (n_in,)
    assert any("batch axis" in line for line in imported.metadata["import_notes"])
    np.testing.assert_allclose(dt_from_r(tau_mem, cuba.r), dt, rtol=1e-12)


def test_spyx_recurrent_layout_and_r_equal_to_beta(rng):
    """spyx 1.0.0 nir.py: LIF tau = dt/(1-beta) with dt = 1, r = beta; the recurrent subgraph
    draws the input through w_rec (input -> w_rec <-> lif) although spyx adds the input to the
    neuron. Imported, the input goes to the neuron and W_rec acts on the previous spikes."""
    n_in, n = 4, 6
    w, w_rec = rng.normal(0.5, 0.4, (n, n_in)), rng.normal(0, 0.4, (n, n))
    x = (rng.random((30, 3, n_in)) < 0.4).astype(float)
    beta = np.full(n, 0.8)
    lif = nir.LIF(tau=1 / (1 - beta), r=beta, v_leak=np.zeros(n), v_threshold=np.ones(n))
    graph = _outer(_nested(lif, nir.Linear(w_rec), n, layout="spyx"), w, n_in, n)
    # spyx nn.RLIF: s = H(V - thr) on the membrane before the update (the spike it sends now),
    # V = beta V + x + s W_rec - s thr (the reset after the decay)
    v, late = np.zeros((3, n)), np.zeros((30, 3, n))
    for t in range(30):
        spikes = (v - 1.0 > 0).astype(float)
        v = 0.8 * v + x[t] @ w.T + spikes @ w_rec.T - spikes
        late[t] = spikes
    imported = _check(graph, late, x)  # detected from r = 1 - 1/tau
    assert imported.metadata["convention"] == "spyx"
    assert ("fc", "rnn.lif") in imported.edges and ("fc", "rnn.w_rec") not in imported.edges
    # the recurrent weights read the neuron itself; only the way out is delayed
    assert ("rnn.lif", "rnn.w_rec") in imported.edges
    assert ("rnn.lif.spyx_delay", "output") in imported.edges


def test_spyx_if_layers_match_spyx_own_update(rng):
    """spyx 1.0.0 nn.IF: s = H(V - thr) on the membrane before the update, then
    V = V + x - s thr; two layers, each a step late. Exact with the Delay the import adds."""
    n_in, h, n = 5, 8, 4
    w1, w2 = rng.normal(0.6, 0.4, (h, n_in)), rng.normal(0.5, 0.4, (n, h))
    x = (rng.random((30, 3, n_in)) < 0.4).astype(float)
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(np.array([n_in])), "l0": nir.Linear(w1),
        "l1": nir.IF(r=np.ones(h), v_threshold=np.ones(h)), "l2": nir.Linear(w2),
        "l3": nir.IF(r=np.ones(n), v_threshold=np.ones(n)), "output": nir.Output(np.array([n]))},
        edges=[("input", "l0"), ("l0", "l1"), ("l1", "l2"), ("l2", "l3"), ("l3", "output")],
        type_check=False)
    v1, v2 = np.zeros((3, h)), np.zeros((3, n))
    ref = np.zeros((30, 3, n))
    for t in range(30):
        s1 = (v1 - 1.0 > 0).astype(float)
        v1 = v1 + x[t] @ w1.T - s1
        s2 = (v2 - 1.0 > 0).astype(float)
        v2 = v2 + s1 @ w2.T - s2
        ref[t] = s2
    assert ref.sum() > 0
    imported = from_nir(graph, framework="spyx")
    got = _run(imported, torch.from_numpy(x).float()).numpy()
    np.testing.assert_array_equal(got, ref)
    assert imported.metadata["convention_caveats"] == ()  # IF: nothing the IR cannot do


def test_spyx_channels_last_flatten_order_is_undone(rng):
    """spyx copies the Affine after its channels-last Flatten untransposed, so its columns are
    in (H, W, C) order; imported, the network equals one with (C, H, W) columns."""
    c, h, w_, n = 2, 3, 4, 5
    w_chw = rng.normal(0, 1, (n, c * h * w_))
    w_hwc = w_chw.reshape(n, c, h, w_).transpose(0, 2, 3, 1).reshape(n, -1)
    beta = np.full(n, 0.5)
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(np.array([c, h, w_])),
        "flat": nir.Flatten(input_type={"input": np.array([c, h, w_])}, start_dim=0),
        "fc": nir.Linear(w_hwc),
        "lif": nir.LIF(tau=1 / (1 - beta), r=beta, v_leak=np.zeros(n), v_threshold=np.ones(n)),
        "output": nir.Output(np.array([n]))},
        edges=[("input", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "output")],
        type_check=False)
    imported = from_nir(graph, framework="spyx")
    np.testing.assert_allclose(imported.nodes["fc"].weight, w_chw)


def test_a_rockpool_file_whose_r_gives_no_single_dt_is_refused(rng):
    n = 3
    cuba = nir.CubaLIF(tau_syn=np.full(n, 0.005), tau_mem=np.full(n, 0.02),
                       r=np.array([5.0, 19.0, 40.0]), v_leak=np.zeros(n),
                       v_threshold=np.ones(n))
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([n])), "lif": cuba,
                                "output": nir.Output(np.array([n]))},
                         edges=[("input", "lif"), ("lif", "output")], type_check=False)
    with pytest.raises(ConfigError, match="rockpool") as err:
        from_nir(graph, framework="rockpool")
    assert "single dt" in str(err.value)


def test_unknown_framework_and_format_mismatch_are_clear(tmp_path):
    path = fixture_path("nir", "lif_norse.nir")
    with pytest.raises(ConfigError, match="unknown framework 'brian'"):
        load_model(path, source="brian")
    with pytest.raises(ConfigError, match="netx"):
        load_model(path, source="lava-dl")
    with pytest.raises(ConfigError, match="NIR writer"):
        load_model(fixture_path("netx", "oxford", "network.net"), source="snntorch")
    netx = load_model(fixture_path("netx", "oxford", "network.net"), source="lava-dl")
    assert netx.metadata["source_format"] == "netx"


def test_the_convention_table_cites_a_source_for_every_framework():
    assert set(SOURCES) == {"nir", "snntorch", "norse", "sinabs", "rockpool", "spyx", "lava-dl",
                            "spikingjelly"}
    assert set(CONSUMERS) == {"nir", "snntorch", "norse", "sinabs", "rockpool", "spyx"}
    for convention in CONVENTIONS.values():
        assert convention.sources, convention.name
        assert all(":" in where for where in convention.sources.values())
    with pytest.raises(SbcDeployError):
        from_nir(fixture_path("nir", "lif_norse.nir"), framework="hxtorch")


def test_norse_lifcell_as_cubalif_follows_norse_current_jump(rng):
    """norse 1.1.0 writes its current-based LIFCell as CubaLIF with tau = dt / tau_inv, r = 1,
    w_in = 1; lif_feed_forward_step: i += x; v += k_m (i - v); z = v > v_th; v <- 0;
    i -= k_s i (the input enters the membrane in the same step)."""
    n_in, n, dt = 3, 5, 1e-3
    tau_mem_inv, tau_syn_inv = rng.uniform(100, 200, n), rng.uniform(200, 400, n)
    w = rng.normal(1.5, 0.5, (n, n_in))
    x = (rng.random((40, 2, n_in)) < 0.5).astype(float)
    cuba = nir.CubaLIF(tau_syn=dt / tau_syn_inv, tau_mem=dt / tau_mem_inv, r=np.ones(n),
                       v_leak=np.zeros(n), v_threshold=np.full(n, 0.3))
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([n_in])),
                                "fc": nir.Affine(w, np.zeros(n)), "lif": cuba,
                                "output": nir.Output(np.array([n]))},
                         edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")],
                         type_check=False)
    km, ks = dt * tau_mem_inv, dt * tau_syn_inv
    v, i = np.zeros((2, n)), np.zeros((2, n))
    ref = np.zeros((40, 2, n))
    for t in range(40):
        i = i + x[t] @ w.T
        v = v + km * (i - v)
        z = (v > 0.3).astype(float)
        v = np.where(z > 0, 0.0, v)
        i = i - ks * i
        ref[t] = z
    imported = from_nir(graph, framework="norse")
    got = _run(imported, torch.from_numpy(x).float()).numpy()
    assert ref.sum() > 0
    np.testing.assert_array_equal(got, ref)


def test_if_written_for_snntorch_is_a_lif_with_beta_one_and_reads_back(rng, tmp_path):
    n_in, n = 6, 5
    graph = Graph.chain([("in", Input((n_in,))),
                         ("fc", Affine(rng.normal(0.3, 0.3, (n, n_in)))),
                         ("if", IF(v_threshold=np.full(n, 0.8), gain=np.full(n, 0.7))),
                         ("out", Output((n,)))], dt=1e-3)
    x = _spikes_in(graph, 30, 4, seed=2)
    want = _run(graph, x)
    assert want.sum() > 0
    result = write_nir_for(graph, tmp_path / "if.nir", nir_for="snntorch")
    written = result.graph.nodes["if"]
    assert isinstance(written, nir.LIF)
    assert 1 - 1e-4 / float(written.tau[0]) == 1.0  # snntorch's beta = 1 - dt/tau
    back = load_model(tmp_path / "if.nir", source="snntorch")
    np.testing.assert_array_equal(_run(back, x).numpy(), want.numpy())


def test_spyx_gets_its_port_names_and_padded_pools_are_refused(rng):
    graph = Graph.chain([("in", Input((4,))), ("fc", Affine(rng.normal(0, 1, (3, 4)))),
                         ("lif", LIF(beta=np.full(3, 0.5), v_threshold=np.ones(3),
                                     reset="subtract")),
                         ("out", Output((3,)))], dt=1e-3)
    with pytest.raises(ExportError, match="spyx's importer builds LIF neurons with "
                                          "reset_timing='next_step'"):
        export_nir(graph, nir_for="spyx")  # not in spyx's model: it resets after the decay
    timed = graph.replace_nodes({"lif": graph.nodes["lif"].replace(reset_timing="next_step")})
    with pytest.raises(ExportError, match="no 1-step Delay follows this neuron"):
        export_nir(timed, nir_for="spyx")  # nor are its spikes a step late
    written = export_nir(consumer_model(graph, "spyx").graph, nir_for="spyx")
    assert "input" in written.graph.nodes and "output" in written.graph.nodes
    assert ("input", "fc") in written.graph.edges
    assert any("renamed" in line for line in written.notes)
    def pooled(reset: str) -> Graph:
        return Graph.chain([("in", Input((1, 4, 4))),
                            ("pool", SumPool2d(kernel_size=(2, 2), input_shape=(1, 4, 4),
                                               padding=(1, 1))),
                            ("flat", Flatten((1, 3, 3))), ("fc", Affine(np.ones((2, 9)))),
                            ("lif", LIF(beta=np.full(2, 0.5), v_threshold=np.ones(2),
                                        reset=reset)),
                            ("out", Output((2,)))], dt=1e-3)

    for consumer in ("norse", "sinabs", "spyx"):
        graph = consumer_model(pooled(CONVENTIONS[consumer].consumer.reset), consumer).graph
        with pytest.raises(ExportError, match=f"node 'pool' \\(--nir-for {consumer}\\)"):
            export_nir(graph, nir_for=consumer)
    export_nir(pooled("zero"), nir_for="snntorch")  # AvgPool2d with padding: torch counts 0s


def test_sinabs_export_writes_conv_lif_parameters_per_channel_and_reads_back(tmp_path):
    """sinabs 3.1.3's importer evaluates any(node.v_leak), which fails on (C, H, W) arrays:
    behind a convolution the exporter writes (C, 1, 1); the importer broadcasts them back."""
    graph = consumer_model(bundled.load_bundled_model("nmnist_cnn", reset="subtract"),
                           "sinabs").graph
    result = write_nir_for(graph, tmp_path / "cnn.nir", nir_for="sinabs")
    with h5py.File(tmp_path / "cnn.nir") as f:
        assert f["node/nodes/leaky1/tau"].shape == (8, 1, 1)
        assert f["node/nodes/leaky8/tau"].shape == (10,)
    assert any("per channel" in line for line in result.notes)
    back = load_model(tmp_path / "cnn.nir", source="sinabs")
    assert back.nodes["leaky1"].shape == (8, 30, 30)
    x = _bundled_x("nmnist_cnn")
    np.testing.assert_array_equal(_run(back, x).numpy(), _run(graph, x).numpy())
    varying = graph.replace_nodes({"leaky1": graph.nodes["leaky1"].replace(
        v_threshold=np.linspace(0.5, 1.5, 8 * 30 * 30).reshape(8, 30, 30))})
    with pytest.raises(ExportError, match=r"node 'leaky1' \(--nir-for sinabs\)"):
        export_nir(varying, nir_for="sinabs")


def test_recurrent_exports_say_or_refuse_what_the_importer_does(rng):
    graph = _cuba_recurrent(rng, reset="zero")  # what norse's and snntorch's importers build
    with pytest.raises(ExportError, match="norse 1.1.0's NIR importer has no recurrent"):
        export_nir(graph, nir_for="norse")
    written = export_nir(graph, nir_for="snntorch")
    assert any("nested as one 4-node NIRGraph (snntorch's" in line for line in written.notes)
    # nirtorch 2.6 visits nodes in name order: the names follow a topological order
    assert sorted(written.graph.nodes) == ["n0_in", "n1_fc", "n2_cuba", "n3_out"]
    sub = written.graph.nodes["n2_cuba"]
    assert isinstance(sub, nir.NIRGraph)
    assert ("input", "lif") in sub.edges and ("input", "w_rec") not in sub.edges
    with pytest.raises(ExportError, match=r"resets by subtract.*snntorch/import_nir.py"):
        export_nir(_cuba_recurrent(rng), nir_for="snntorch")
