"""spyx 1.0.0 (jax, flax nnx) as producer and consumer of NIR (``spyx`` framework environment).

produce: 100-64-10 MLPs of IF, LIF and CuBaLIF, a Conv-SumPool-Linear net of IF on 2x16x16 and
a recurrent RLIF net, built with fixed seeds, written by ``spyx.nir.to_nir`` (dt = 1: spyx
counts time in steps) and simulated by spyx itself (``spyx.nn.run``), with spyx's defaults
(threshold 1; ``beta``/``alpha`` None: one random decay per neuron, ``0.5 +`` a truncated
normal of deviation 0.25) and, for LIF, a fixed ``beta = 0.9`` as well. spyx's neurons emit
``s[t] = V[t-1] > threshold`` from the state *before* the step's input and subtract the
threshold after the leak (``V[t] = beta V[t-1] + x[t] - s[t] threshold``); convolutions are
channels-last, so the driver hands spyx ``[T, B, H, W, C]`` and returns the network's output as
is.
consume: ``spyx.nir.from_nir(graph, x, dt=1)`` on a .nir file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import nir
import numpy as np
from flax import nnx
from spyx import nn as snn
from spyx import nir as spyx_nir

sys.path.insert(0, str(Path(__file__).parent))
from _common import (  # noqa: E402
    CONV_CHANNELS,
    CONV_IN,
    CONV_OUT,
    MLP,
    bernoulli,
    conv_params,
    main,
    mlp_params,
    recurrent,
    run_command,
    save_case,
)

jax.config.update("jax_platforms", "cpu")
NEURONS = (snn.IF, snn.LIF, snn.CuBaLIF, snn.RLIF)


def channels_last(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 2, -1) if x.ndim == 5 else x


def run(model: Any, x: np.ndarray, record: list[np.ndarray] | None = None) -> np.ndarray:
    """Output spikes of ``model`` on ``x`` [T, B, ...] (``spyx.nn.run``). With ``record``, the
    spikes of every neuron layer are appended too, from one ``jax.lax.scan`` whose step walks
    ``model.layers`` as ``spyx.nn.Sequential.__call__`` does (one compilation)."""
    inputs = jnp.asarray(channels_last(x))
    if record is None:
        out, _ = snn.run(model, inputs)
        return np.asarray(out)
    layers = list(model.layers)

    def step(state: list[Any], x_t: Any) -> tuple[list[Any], tuple[Any, list[Any]]]:
        new_state, hidden = [], []
        for layer, s in zip(layers, state, strict=True):
            if s is not None:
                x_t, s = layer(x_t, s)
            else:
                x_t = layer(x_t)
            new_state.append(s)
            if isinstance(layer, NEURONS):
                hidden.append(x_t)
        return new_state, (x_t, hidden)

    _, (out, hidden) = jax.lax.scan(step, model.initial_state(x.shape[1]), inputs)
    record.extend(np.asarray(h) for h in hidden)
    return np.asarray(out)


def linear(w: np.ndarray, b: np.ndarray, rngs: nnx.Rngs) -> nnx.Linear:
    layer = nnx.Linear(w.shape[1], w.shape[0], rngs=rngs)
    layer.kernel[...] = jnp.asarray(w.T)
    layer.bias[...] = jnp.asarray(b)
    return layer


def mlp(seed: int, gain: float, neuron: Any, **kw: Any) -> snn.Sequential:
    r = nnx.Rngs(seed)
    (w1, b1), (w2, b2) = mlp_params(seed, gain)
    return snn.Sequential(linear(w1, b1, r), neuron((MLP[1],), rngs=r, **kw),
                          linear(w2, b2, r), neuron((MLP[2],), rngs=r, **kw))


def conv_net(seed: int, gain: float) -> snn.Sequential:
    r = nnx.Rngs(seed)
    (k, bk), (w, b) = conv_params(seed, gain)
    layer = nnx.Conv(CONV_IN[0], CONV_CHANNELS, (3, 3), padding="SAME", rngs=r)
    layer.kernel[...] = jnp.asarray(k.transpose(2, 3, 1, 0))  # OIHW -> HWIO
    layer.bias[...] = jnp.asarray(bk)
    # spyx flattens channels-last: the Linear's columns in (H, W, C) order
    w_hwc = w.reshape(CONV_OUT, CONV_CHANNELS, 8, 8).transpose(0, 2, 3, 1).reshape(CONV_OUT, -1)
    return snn.Sequential(layer, snn.IF((*CONV_IN[1:], CONV_CHANNELS)),
                          snn.SumPool((2, 2), (2, 2), "VALID", channel_axis=-1), snn.Flatten(),
                          linear(w_hwc / 4, b, r), snn.IF((CONV_OUT,)))  # sum: 4x the average


def rec_net(seed: int, gain: float) -> snn.Sequential:
    r = nnx.Rngs(seed)
    (w1, b1), (w2, b2) = mlp_params(seed, gain)
    cell = snn.RLIF((MLP[1],), rngs=r)
    cell.recurrent_w[...] = jnp.asarray(recurrent(seed + 7, MLP[1]).T)
    return snn.Sequential(linear(w1, b1, r), cell, linear(w2, b2, r),
                          snn.LIF((MLP[2],), rngs=r))


def if_neuron(shape: tuple[int, ...], rngs: nnx.Rngs) -> snn.IF:
    return snn.IF(shape)


def networks() -> dict[str, tuple[Any, tuple[int, ...], str, str, dict[str, Any]]]:
    return {
        "mlp_if": (mlp(50, 0.8, if_neuron), (MLP[0],), "mlp", "IF", {}),
        "mlp_lif": (mlp(51, 2.0, snn.LIF), (MLP[0],), "mlp", "LIF", {"beta": "default"}),
        "mlp_lif_beta": (mlp(51, 1.0, snn.LIF, beta=0.9), (MLP[0],), "mlp", "LIF",
                         {"beta": 0.9}),
        "mlp_cubalif": (mlp(52, 0.5, snn.CuBaLIF), (MLP[0],), "mlp", "CubaLIF",
                        {"alpha": "default", "beta": "default"}),
        "conv_if": (conv_net(53, 0.8), CONV_IN, "conv", "IF", {}),
        "rec_rlif": (rec_net(54, 2.0), (MLP[0],), "recurrent", "LIF", {"beta": "default"}),
    }


def produce(outdir: Path) -> list[dict[str, Any]]:
    cases = []
    for seed, (name, (model, shape, kind, neuron, settings)) in enumerate(networks().items()):
        x = bernoulli(shape, 500 + seed)
        layers: list[np.ndarray] = []
        spikes = run(model, x, layers)
        out_shape = spikes.shape[2:]
        graph = spyx_nir.to_nir(model, {"input": np.array(shape)},
                                {"output": np.array(out_shape)}, dt=1)
        nir.write(outdir / f"{name}.nir", graph)
        cases.append(save_case(outdir, name, x, spikes, network=kind, neuron=neuron,
                               settings={"dt": 1.0, "reset": "subtract", **settings},
                               rates=[float((s > 0).mean()) for s in layers]))
    return cases


def consume(model: Path, x: np.ndarray) -> np.ndarray:
    _, out = spyx_nir.from_nir(nir.read(model), jnp.asarray(channels_last(x)), dt=1)
    return np.asarray(out)


def command(argv: list[str]) -> None:
    run_command(argv, produce, consume, ("spyx", "nir", "jax", "flax"))


if __name__ == "__main__":
    main(command)
