"""Run one population of a framework's own neuron on given input currents (in its environment).

``python neuron_rules_driver.py SPEC.json IN.npz OUT.npz``: ``SPEC.json`` lists cases
``{"case": name, "neuron": "<framework>.<Class>", "params": {...}}``; ``IN.npz`` holds the
input current ``x_<case>`` ``[T, B, N]`` (float32) of each case, and ``w_rec_<case>``,
``b_rec_<case>`` for a recurrent one. ``OUT.npz`` receives ``spikes_<case>`` ``[T, B, N]`` as the
framework computed them (its own modules, default arguments except those in ``params``) and
the constants it derived (``alpha_<case>``: sinabs' ``exp(-1 / tau_mem)`` in float32), plus
``versions`` (JSON). Only numpy and the framework named by each case are imported, so one file
serves the torch (snntorch, rockpool), sinabs and spyx environments. Used by
tests/test_neuron_frameworks.py, which runs the same currents through the IR's neuron rules.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
from typing import Any, Callable

import numpy as np


def _snntorch(cls: str, params: dict[str, Any], x: np.ndarray, extra: dict[str, np.ndarray]
              ) -> dict[str, np.ndarray]:
    import snntorch as snn
    import torch

    torch.set_num_threads(1)
    steps = x.shape[0]
    xt = torch.from_numpy(x)
    out = []
    with torch.no_grad():
        if cls == "Leaky":
            neuron = snn.Leaky(**params)
            mem = neuron.init_leaky()
            for t in range(steps):
                spk, mem = neuron(xt[t], mem)
                out.append(spk)
        elif cls == "Synaptic":
            neuron = snn.Synaptic(**params)
            syn, mem = neuron.init_synaptic()
            for t in range(steps):
                spk, syn, mem = neuron(xt[t], syn, mem)
                out.append(spk)
        elif cls == "RLeaky":
            n = x.shape[-1]
            neuron = snn.RLeaky(linear_features=n, **params)
            neuron.recurrent.weight.copy_(torch.from_numpy(extra["w_rec"]))
            neuron.recurrent.bias.copy_(torch.from_numpy(extra["b_rec"]))
            spk, mem = neuron.init_rleaky()
            for t in range(steps):
                spk, mem = neuron(xt[t], spk, mem)
                out.append(spk)
        else:
            raise ValueError(f"unknown snntorch neuron {cls}")
    return {"spikes": torch.stack(out).numpy()}


def _rockpool(cls: str, params: dict[str, Any], x: np.ndarray, extra: dict[str, np.ndarray]
              ) -> dict[str, np.ndarray]:
    import torch
    from rockpool.nn.modules import LIFBitshiftTorch, LIFTorch

    torch.set_num_threads(1)
    module = {"LIFTorch": LIFTorch, "LIFBitshiftTorch": LIFBitshiftTorch}[cls]
    n = x.shape[-1]
    net = module(shape=(n,), **params)
    with torch.no_grad():
        out, _, _ = net(torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1))))
    return {"spikes": np.swapaxes(out.numpy(), 0, 1),
            "alpha": np.asarray(net.alpha, np.float64), "beta": np.asarray(net.beta, np.float64)}


def _sinabs(cls: str, params: dict[str, Any], x: np.ndarray, extra: dict[str, np.ndarray]
            ) -> dict[str, np.ndarray]:
    import sinabs.activation as act
    import sinabs.layers as sl
    import torch

    torch.set_num_threads(1)
    params = dict(params)
    spike = params.pop("spike_fn", "MultiSpike")
    if isinstance(spike, list):
        params["spike_fn"] = getattr(act, spike[0])(*spike[1:])
    else:
        params["spike_fn"] = getattr(act, spike)
    reset = params.pop("reset", "subtract")
    params["reset_fn"] = act.MembraneSubtract() if reset == "subtract" else act.MembraneReset()
    layer = {"IAF": sl.IAF, "LIF": sl.LIF}[cls](**params)
    with torch.no_grad():
        out = layer(torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1))))
    result = {"spikes": np.swapaxes(out.numpy(), 0, 1)}
    if cls == "LIF":
        result["alpha"] = np.asarray(layer.alpha_mem_calculated.detach().numpy(), np.float32)
    return result


def _spyx(cls: str, params: dict[str, Any], x: np.ndarray, extra: dict[str, np.ndarray]
          ) -> dict[str, np.ndarray]:
    import jax.numpy as jnp
    from flax import nnx
    from spyx import nn as snn

    if cls != "LIF":
        raise ValueError(f"unknown spyx neuron {cls}")
    n = x.shape[-1]
    neuron = snn.LIF((n,), rngs=nnx.Rngs(0), **params)
    v = neuron.initial_state(x.shape[1])
    out = []
    for t in range(x.shape[0]):
        spikes, v = neuron(jnp.asarray(x[t]), v)
        out.append(np.asarray(spikes))
    return {"spikes": np.stack(out)}


RUNNERS: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    "snntorch": _snntorch, "rockpool": _rockpool, "sinabs": _sinabs, "spyx": _spyx}
PACKAGES = {"snntorch": "snntorch", "rockpool": "rockpool", "sinabs": "sinabs", "spyx": "spyx"}


def main() -> None:
    spec_path, in_path, out_path = sys.argv[1:4]
    cases = json.loads(open(spec_path, encoding="utf-8").read())
    data = np.load(in_path)
    results: dict[str, Any] = {}
    versions: dict[str, str] = {}
    for case in cases:
        framework, cls = case["neuron"].split(".", 1)
        name = case["case"]
        extra = {k[: -len(name) - 1]: data[k] for k in data.files
                 if k.endswith(f"_{name}") and not k.startswith("x_")}
        out = RUNNERS[framework](cls, case.get("params", {}), data[f"x_{name}"], extra)
        results.update({f"{key}_{name}": value for key, value in out.items()})
        versions[framework] = md.version(PACKAGES[framework])
    np.savez(out_path, versions=json.dumps(versions), **results)


if __name__ == "__main__":
    main()
