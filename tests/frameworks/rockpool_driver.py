"""rockpool 3.1.0 as producer and consumer of NIR (run in the ``torch`` framework environment).

produce: MLPs of LinearTorch with LIFTorch (NIR CubaLIF) and with LIFNeuronTorch (NIR LIF),
built with fixed seeds, written by ``rockpool.nn.modules.to_nir`` and simulated by rockpool
itself (dt = 1e-3 s; ``max_spikes_per_dt = 1``, the closest setting to NIR's single-spike
neurons: rockpool's default emits up to 2**16 spikes per step). rockpool 3.1.0 has no Conv2d,
pooling or Flatten module in its NIR bridge, so it has no conv case.
consume: ``rockpool.nn.modules.from_nir`` on a .nir file, with one spike per step at most (see
``consume``); input ``[B, T, N]`` (rockpool's
batch-first layout), output spikes back to ``[T, B, N]``.
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
from _common import bernoulli, main, save_case  # noqa: E402

torch.set_num_threads(1)
DT = 1e-3


def lif(n: int) -> LIFTorch:
    return LIFTorch(n, tau_mem=0.02, tau_syn=0.01, threshold=1.0, dt=DT, max_spikes_per_dt=1)


def lif_neuron(n: int) -> LIFNeuronTorch:
    return LIFNeuronTorch(n, tau_mem=0.02, threshold=1.0, dt=DT, max_spikes_per_dt=1)


def run(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """``x`` [T, B, N] -> rockpool's [B, T, N] -> output spikes [T, B, N], from a fresh state
    (rockpool modules keep their state between calls; ``to_nir`` itself runs the network)."""
    if hasattr(net, "reset_state"):  # a rockpool module (the imported GraphExecutor is new)
        net.reset_state()
    with torch.no_grad():
        out = net(torch.as_tensor(np.ascontiguousarray(x.transpose(1, 0, 2))))
    out = out[0] if isinstance(out, tuple) else out
    return out.detach().numpy().transpose(1, 0, 2).copy()


def networks() -> dict[str, tuple[Any, tuple[int, ...], str, str, float]]:
    torch.manual_seed(0)
    cuba = Sequential(LinearTorch((12, 16), has_bias=True), lif(16),
                      LinearTorch((16, 5), has_bias=True), lif(5))
    torch.manual_seed(1)
    plain = Sequential(LinearTorch((12, 16), has_bias=True), lif_neuron(16),
                       LinearTorch((16, 5), has_bias=True), lif_neuron(5))
    return {"mlp_cubalif": (cuba, (12,), "mlp", "CubaLIF", 4.0),
            "mlp_lif": (plain, (12,), "mlp", "LIF", 4.0)}


def produce(outdir: Path) -> list[dict[str, Any]]:
    cases = []
    for seed, (name, (net, shape, kind, neuron, gain)) in enumerate(networks().items()):
        with torch.no_grad():
            for module in net.modules():
                if isinstance(module, LinearTorch):
                    module.weight.mul_(gain)
        x = bernoulli(shape, 0.3, seed)
        graph = to_nir(net)
        nir.write(outdir / f"{name}.nir", graph)
        cases.append(save_case(outdir, name, x, run(net, x), network=kind, neuron=neuron,
                               settings={"dt": DT, "reset": "subtract"}))
    return cases


def consume(model: Path, x: np.ndarray) -> np.ndarray:
    """rockpool's importer builds LIFTorch with its default ``max_spikes_per_dt = 2**16``
    (``floor(v / threshold)`` spikes per step); the closest setting to NIR's one spike per step,
    ``max_spikes_per_dt = 1``, is set on the imported neurons (a NIR file cannot ask for it)."""
    net = from_nir(nir.read(model))
    for module in net.modules():
        if isinstance(module, (LIFTorch, LIFNeuronTorch)):
            module.max_spikes_per_dt = torch.tensor(1.0)
    return run(net, x)


if __name__ == "__main__":
    main(produce, consume, ("rockpool", "nir", "nirtorch", "torch"))
