"""rockpool 3.1.0 as producer and consumer of NIR (run in the ``torch`` framework environment).

produce: 100-64-10 MLPs of LinearTorch with LIFTorch (NIR CubaLIF) and with LIFNeuronTorch
(NIR LIF), built with fixed seeds, written by ``rockpool.nn.modules.to_nir`` and simulated by
rockpool itself with rockpool's defaults (dt = 1e-3 s, tau_mem = tau_syn = 20 ms, zero bias,
``max_spikes_per_dt = 2**16``: ``floor(v / threshold)`` spikes per step at ``v >= threshold``),
and with ``max_spikes_per_dt = 1`` (the setting the README mentions). rockpool 3.1.0 has no
Conv2d, pooling or Flatten module in its NIR bridge, so it has no conv case; its exporter writes
a recurrent LIFTorch as a plain CubaLIF without ``w_rec`` (``_extract_rockpool_module``), so it
has no recurrent case either.
consume: ``rockpool.nn.modules.from_nir`` on a .nir file, as rockpool builds it (LIFTorch with
its default ``max_spikes_per_dt``); input ``[B, T, N]`` (rockpool's batch-first layout), output
spikes back to ``[T, B, N]``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
from rockpool.nn.combinators import Sequential
from rockpool.nn.modules import LIFNeuronTorch, LIFTorch, LinearTorch, from_nir, to_nir

sys.path.insert(0, str(Path(__file__).parent))
from _common import MLP, bernoulli, main, mlp_params, run_command, save_case  # noqa: E402

torch.set_num_threads(1)


def linear(w: np.ndarray, b: np.ndarray) -> LinearTorch:
    return LinearTorch((w.shape[1], w.shape[0]), weight=torch.as_tensor(w.T.copy()),
                       bias=torch.as_tensor(b), has_bias=True)


def mlp(seed: int, gain: float, neuron: Any, **kw: Any) -> Sequential:
    (w1, b1), (w2, b2) = mlp_params(seed, gain)
    return Sequential(linear(w1, b1), neuron(MLP[1], **kw), linear(w2, b2),
                      neuron(MLP[2], **kw))


def run(net: torch.nn.Module, x: np.ndarray, record: list[np.ndarray] | None = None
        ) -> np.ndarray:
    """``x`` [T, B, N] -> rockpool's [B, T, N] -> output spikes [T, B, N], from a fresh state
    (rockpool modules keep their state between calls; ``to_nir`` itself runs the network).
    With ``record``, every LIF layer's spikes ``[T, B, N]`` are appended."""
    if hasattr(net, "reset_state"):  # a rockpool module (the imported GraphExecutor is new)
        net.reset_state()
    inputs = torch.as_tensor(np.ascontiguousarray(x.transpose(1, 0, 2)))
    with torch.no_grad():
        if record is None:
            out = net(inputs)
        else:
            out, _, rec = net(inputs, record=True)
            record.extend(v["spikes"].detach().numpy().transpose(1, 0, 2).copy()
                          for k, v in rec.items() if isinstance(v, dict) and "spikes" in v)
    out = out[0] if isinstance(out, tuple) else out
    return out.detach().numpy().transpose(1, 0, 2).copy()


def networks() -> dict[str, tuple[Any, tuple[int, ...], str, str, dict[str, Any]]]:
    return {
        "mlp_lif": (mlp(30, 0.09, LIFTorch), (MLP[0],), "mlp", "CubaLIF", {}),
        "mlp_lif_single": (mlp(30, 0.07, LIFTorch, max_spikes_per_dt=1), (MLP[0],), "mlp",
                           "CubaLIF", {"max_spikes_per_dt": 1}),
        "mlp_lifneuron": (mlp(31, 0.8, LIFNeuronTorch), (MLP[0],), "mlp", "LIF", {}),
    }


def produce(outdir: Path) -> list[dict[str, Any]]:
    cases = []
    for seed, (name, (net, shape, kind, neuron, settings)) in enumerate(networks().items()):
        x = bernoulli(shape, 400 + seed)
        graph = to_nir(net)
        nir.write(outdir / f"{name}.nir", graph)
        layers: list[np.ndarray] = []
        spikes = run(net, x, layers)
        cases.append(save_case(outdir, name, x, spikes, network=kind, neuron=neuron,
                               settings={"dt": 1e-3, "reset": "subtract", **settings},
                               rates=[float((s > 0).mean()) for s in layers]))
    return cases


def consume(model: Path, x: np.ndarray) -> np.ndarray:
    """rockpool's importer as it is (LIFTorch with ``max_spikes_per_dt = 2**16``)."""
    return run(from_nir(nir.read(model)), x)


def command(argv: list[str]) -> None:
    run_command(argv, produce, consume, ("rockpool", "nir", "nirtorch", "torch"))


if __name__ == "__main__":
    main(command)
