"""The IR's spike variants against the frameworks that define them, each run in its own
environment (tests/frameworks/neuron_rules_driver.py through subprocess): the same input
currents go through the framework's own neuron module (its defaults, except what a case names)
and through the IR neuron the variant describes (float32, the float simulator); the spikes must
be equal, entry for entry, at real activity (5-60 % of the entries spike, hundreds of spikes).
Each case also checks that the IR's plain rule would *not* reproduce the framework (the variant
is what makes it exact).

Costs about 20 s (three interpreter start-ups with torch / jax); skipped where an environment
is absent (scripts/make_framework_envs.sh builds them; CI does).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from frameworks.harness import env_interpreter, env_python
from sbc_deploy.ir import IF, LIF, Affine, CubaLIF, Graph, Input, Node, Output
from sbc_deploy.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "frameworks" / "neuron_rules_driver.py"
T, B, N = 50, 4, 48


def currents(seed: int, mean: float, std: float, step: float | None = None) -> np.ndarray:
    """Input currents [T, B, N], float32 (multiples of ``step`` when given: exact sums)."""
    x = np.random.default_rng(seed).normal(mean, std, size=(T, B, N))
    if step is not None:
        x = np.round(x / step) * step
    return x.astype(np.float32)


def full(value: float) -> np.ndarray:
    return np.full(N, value)


# Each case: the framework module and its arguments, the input, and the IR neuron that the
# variant fields make exact (built from what the framework derived, e.g. sinabs' alpha).
Case = dict[str, Any]
RLEAKY_W = np.round(np.random.default_rng(7).normal(0, 0.25, (N, N)) * 2) / 2
RLEAKY_B = np.round(np.random.default_rng(8).normal(0, 0.5, N) * 2) / 2
CASES: dict[str, Case] = {
    # snntorch 1.0.0, snntorch/_neurons/leaky.py: subtract, reset_delay=True by default
    "snntorch_leaky_default": dict(
        env="torch", neuron="snntorch.Leaky", params={"beta": 0.8},
        x=currents(1, 0.3, 0.6),
        ir=lambda d: LIF(beta=full(0.8), v_threshold=full(1.0), reset="subtract",
                         reset_timing="next_step")),
    "snntorch_leaky_no_delay": dict(
        env="torch", neuron="snntorch.Leaky", params={"beta": 0.8, "reset_delay": False},
        x=currents(2, 0.5, 1.2),
        ir=lambda d: LIF(beta=full(0.8), v_threshold=full(1.0), reset="subtract",
                         reset_timing="same_step_raised")),
    "snntorch_leaky_zero": dict(
        env="torch", neuron="snntorch.Leaky", params={"beta": 0.8, "reset_mechanism": "zero"},
        x=currents(3, 0.3, 0.6),
        ir=lambda d: LIF(beta=full(0.8), v_threshold=full(1.0))),   # the plain rule
    # snntorch/_neurons/synaptic.py: _base_zero zeroes the step after a spike (refractory)
    "snntorch_synaptic_zero": dict(
        env="torch", neuron="snntorch.Synaptic",
        params={"alpha": 0.6, "beta": 0.8, "reset_mechanism": "zero"}, x=currents(4, 0.15, 0.4),
        ir=lambda d: CubaLIF(alpha=full(0.6), beta=full(0.8), v_threshold=full(1.0),
                             reset_timing="next_step")),
    "snntorch_synaptic_default": dict(
        env="torch", neuron="snntorch.Synaptic", params={"alpha": 0.6, "beta": 0.8},
        x=currents(5, 0.15, 0.4),
        ir=lambda d: CubaLIF(alpha=full(0.6), beta=full(0.8), v_threshold=full(1.0),
                             reset="subtract", reset_timing="next_step")),
    # RLeaky zero (rleaky.py, _base_zero), all-to-all recurrent Linear with bias; beta 1 and
    # halves keep every sum exact (the IR adds input + recurrence before the decayed membrane)
    "snntorch_rleaky_zero": dict(
        env="torch", neuron="snntorch.RLeaky", params={"beta": 1.0, "reset_mechanism": "zero"},
        x=currents(6, 0.0, 1.0, step=0.5), w_rec=RLEAKY_W, b_rec=RLEAKY_B, recurrent=True,
        ir=lambda d: LIF(beta=full(1.0), v_threshold=full(1.0), reset_timing="next_step")),
    # sinabs 3.1.3: IAF defaults MultiSpike + MembraneSubtract; min_v_mem as its NIR importer
    "sinabs_iaf_default_clamped": dict(
        env="sinabs", neuron="sinabs.IAF", params={"min_v_mem": -1.0},
        x=currents(9, 0.4, 1.5),
        ir=lambda d: IF(v_threshold=full(1.0), reset="subtract", max_spikes=None,
                        fires_at_equal=True, v_min=full(-1.0))),
    # LIF defaults: norm_input=True (gain 1 - alpha), MultiSpike
    "sinabs_lif_default": dict(
        env="sinabs", neuron="sinabs.LIF", params={"tau_mem": 5.0},
        x=currents(10, 2.5, 6.0),
        ir=lambda d: LIF(beta=full(float(d["alpha"])),
                         gain=full(float(np.float32(1) - np.float32(d["alpha"]))),
                         v_threshold=full(1.0), reset="subtract", max_spikes=None,
                         fires_at_equal=True)),
    "sinabs_iaf_maxspike_zero": dict(
        env="sinabs", neuron="sinabs.IAF", params={"spike_fn": ["MaxSpike", 3], "reset": "zero"},
        x=currents(11, 0.5, 1.5),
        ir=lambda d: IF(v_threshold=full(1.0), max_spikes=3, fires_at_equal=True)),
    # rockpool 3.1.0: LIFBitshiftTorch (Xylo's decays, max_spikes_per_dt = 31 by default):
    # isyn = (isyn + x) * 0.5, v = 0.75 v + isyn, floor(v / thr) spikes for v >= thr
    "rockpool_bitshift_default": dict(
        env="torch", neuron="rockpool.LIFBitshiftTorch",
        params={"tau_mem": 4e-3, "tau_syn": 2e-3, "dt": 1e-3, "threshold": 1.0},
        x=currents(12, 1.5, 6.0),
        ir=lambda d: CubaLIF(alpha=full(0.5), gain_syn=full(0.5), beta=full(0.75),
                             v_threshold=full(1.0), reset="subtract", max_spikes=31,
                             fires_at_equal=True)),
    # spyx 1.0.0 (spyx/nn.py, LIF): reset after the next decay; it sends the spike of the
    # previous step (compared one step shifted). beta 0.5 keeps jax's fused ops exact.
    "spyx_lif": dict(
        env="spyx", neuron="spyx.LIF", params={"beta": 0.5, "threshold": 1.0},
        x=currents(13, 0.3, 0.8), shift=1,
        ir=lambda d: LIF(beta=full(0.5), v_threshold=full(1.0), reset="subtract",
                         reset_timing="next_step")),
}


def plain(node: Node) -> Node:
    """The same neuron under the IR's plain rule (every variant field at its default)."""
    return node.replace(fires_at_equal=False, max_spikes=1, reset_timing="same_step",
                        v_min=None)


def ir_spikes(node: Node, case: Case) -> np.ndarray:
    if case.get("recurrent"):
        nodes = {"input": Input((N,)), "lif": node, "w_rec": Affine(case["w_rec"],
                                                                     bias=case["b_rec"]),
                 "output": Output((N,))}
        graph = Graph(nodes, (("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                              ("lif", "output")), dt=1e-3)
        return simulate(graph, torch.from_numpy(case["x"])).outputs["output"].numpy()
    graph = Graph.chain([("in", Input((N,))), ("n", node), ("out", Output((N,)))], dt=1e-3)
    return simulate(graph, torch.from_numpy(case["x"])).outputs["out"].numpy()


@pytest.fixture(scope="module")
def framework_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every case's framework output, one driver process per environment."""
    work = tmp_path_factory.mktemp("neuron_rules")
    results: dict[str, dict[str, Any]] = {}
    for env in sorted({c["env"] for c in CASES.values()}):
        if not env_interpreter(env).exists():
            continue
        names = [n for n, c in CASES.items() if c["env"] == env]
        spec = [{"case": n, "neuron": CASES[n]["neuron"], "params": CASES[n]["params"]}
                for n in names]
        arrays = {f"x_{n}": CASES[n]["x"] for n in names}
        for n in names:
            if CASES[n].get("recurrent"):
                arrays[f"w_rec_{n}"] = CASES[n]["w_rec"].astype(np.float32)
                arrays[f"b_rec_{n}"] = CASES[n]["b_rec"].astype(np.float32)
        (work / f"{env}.json").write_text(json.dumps(spec))
        np.savez(work / f"{env}_in.npz", **arrays)
        done = subprocess.run(
            [str(env_python(env=env)), str(DRIVER), str(work / f"{env}.json"),
             str(work / f"{env}_in.npz"), str(work / f"{env}_out.npz")],
            capture_output=True, text=True, timeout=600, check=False,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
                 "JAX_PLATFORMS": "cpu"})
        assert done.returncode == 0, done.stderr[-4000:]
        out = np.load(work / f"{env}_out.npz")
        for n in names:
            results[n] = {k[: -len(n) - 1]: out[k] for k in out.files if k.endswith(f"_{n}")}
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_ir_variant_reproduces_the_framework(name, framework_runs):
    case = CASES[name]
    if name not in framework_runs:
        env_python(env=case["env"])  # skips, naming the absent environment
    got = framework_runs[name]
    theirs = got["spikes"].astype(np.float64)
    node = case["ir"](got)
    ours = ir_spikes(node, case)
    shift = case.get("shift", 0)
    if shift:   # spyx sends at t the spike of t - 1 (and nothing at t = 0)
        assert not theirs[:shift].any()
        theirs, ours = theirs[shift:], ours[:-shift]
    active = float((theirs > 0).mean())
    assert 0.05 <= active <= 0.6 and theirs.sum() >= 300, (active, theirs.sum())
    mismatches = int((ours != theirs).sum())
    assert mismatches == 0, f"{name}: {mismatches} of {theirs.size} entries differ"
    if node.spike_variant():
        rule_free = ir_spikes(plain(node), case)
        if shift:
            rule_free = rule_free[:-shift]
        assert (rule_free != theirs).sum() > 0, "the plain rule already matches: weak case"
    if node.multi_spike:
        assert theirs.max() >= 2   # several spikes in one step occur
