"""spyx 1.0.0 (jax, flax nnx) as producer and consumer of NIR (``spyx`` framework environment).

produce: MLPs with IF, CuBaLIF and LIF, a conv net (IF, sum pooling, Flatten) and a recurrent
RLIF net,
built with fixed seeds, written by ``spyx.nir.to_nir`` (dt = 1: spyx counts time in steps) and
simulated by spyx itself (``spyx.nn.run``). spyx's neurons emit ``s[t] = V[t-1] > threshold``
from the state *before* the step's input and subtract the threshold after the leak
(``V[t] = beta V[t-1] + x[t] - s[t] threshold``); convolutions are channels-last, so the
driver hands spyx ``[T, B, H, W, C]`` and returns the network's output as is.
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
from _common import bernoulli, main, save_case  # noqa: E402

jax.config.update("jax_platforms", "cpu")


def channels_last(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 2, -1) if x.ndim == 5 else x


def run(model: Any, x: np.ndarray) -> np.ndarray:
    out, _ = snn.run(model, jnp.asarray(channels_last(x)))
    return np.asarray(out)


def scaled(linear: nnx.Module, gain: float) -> nnx.Module:
    linear.kernel[...] = linear.kernel[...] * gain
    return linear


def networks() -> dict[str, tuple[Any, tuple[int, ...], str, str]]:
    r = nnx.Rngs(0)
    mlp_if = snn.Sequential(scaled(nnx.Linear(12, 16, rngs=r), 2.0), snn.IF((16,)),
                            scaled(nnx.Linear(16, 5, rngs=r), 2.0), snn.IF((5,)))
    mlp_lif = snn.Sequential(scaled(nnx.Linear(12, 16, rngs=r), 3.0),
                             snn.LIF((16,), beta=0.8, rngs=r),
                             scaled(nnx.Linear(16, 5, rngs=r), 3.0),
                             snn.LIF((5,), beta=0.8, rngs=r))
    cuba = snn.Sequential(scaled(nnx.Linear(12, 16, rngs=r), 3.0),
                          snn.CuBaLIF((16,), alpha=0.6, beta=0.8, rngs=r),
                          scaled(nnx.Linear(16, 5, rngs=r), 3.0),
                          snn.CuBaLIF((5,), alpha=0.6, beta=0.8, rngs=r))
    conv = snn.Sequential(scaled(nnx.Conv(2, 4, (3, 3), padding="SAME", rngs=r), 2.0),
                          snn.IF((8, 8, 4)), snn.SumPool((2, 2), (2, 2), "VALID", channel_axis=-1),
                          snn.Flatten(), scaled(nnx.Linear(64, 6, rngs=r), 2.0), snn.IF((6,)))
    rec = snn.Sequential(scaled(nnx.Linear(12, 10, rngs=r), 3.0),
                         snn.RLIF((10,), beta=0.8, rngs=r),
                         scaled(nnx.Linear(10, 5, rngs=r), 3.0),
                         snn.LIF((5,), beta=0.8, rngs=r))
    return {"mlp_if": (mlp_if, (12,), "mlp", "IF"),
            "mlp_cubalif": (cuba, (12,), "mlp", "CubaLIF"),
            "mlp_lif": (mlp_lif, (12,), "mlp", "LIF"),
            "conv_if": (conv, (2, 8, 8), "conv", "IF"),
            "rec_lif": (rec, (12,), "recurrent", "LIF")}


def produce(outdir: Path) -> list[dict[str, Any]]:
    cases = []
    for seed, (name, (model, shape, kind, neuron)) in enumerate(networks().items()):
        x = bernoulli(shape, 0.3, seed)
        spikes = run(model, x)
        out_shape = spikes.shape[2:]
        graph = spyx_nir.to_nir(model, {"input": np.array(shape)},
                                {"output": np.array(out_shape)}, dt=1)
        nir.write(outdir / f"{name}.nir", graph)
        cases.append(save_case(outdir, name, x, spikes, network=kind, neuron=neuron,
                               settings={"dt": 1.0, "reset": "subtract"}))
    return cases


def consume(model: Path, x: np.ndarray) -> np.ndarray:
    _, out = spyx_nir.from_nir(nir.read(model), jnp.asarray(channels_last(x)), dt=1)
    return np.asarray(out)


if __name__ == "__main__":
    main(produce, consume, ("spyx", "nir", "jax", "flax"))
