"""snntorch 1.0.0 as producer and consumer of NIR (run in the ``torch`` framework environment).

produce: an MLP (LIF and CubaLIF), a conv net with average pooling and a recurrent RLeaky net,
built with fixed seeds, written by ``snntorch.export_nir.export_to_nir`` and simulated by
snntorch itself. The neurons reset to zero (``reset_mechanism="zero"``), which is what the
exporter writes (``v_reset = 0``) and what the importer builds; ``mlp_lif_subtract`` keeps
snntorch's default reset by subtraction (``reset_delay=True``: the threshold is subtracted at
the step after the spike, after the leak), whose NIR file still says ``v_reset = 0``.
consume: ``snntorch.import_nir.import_from_nir`` on a .nir file, stepped through the input.

Workaround for snntorch 1.0.0 with nir 1.0.8 (in this driver, not in sbc-deploy): a scalar
``beta``/``threshold`` is exported as a 0-d array, and nir 1.0.8's type inference then fails
("type mismatch: ...output: [[16]] -> ...input: []", snntorch issue #410). The neurons here are
built with per-neuron ``beta`` and ``threshold`` vectors, which is the same network.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nir
import numpy as np
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir
from snntorch.import_nir import import_from_nir

sys.path.insert(0, str(Path(__file__).parent))
from _common import bernoulli, main, save_case  # noqa: E402

torch.set_num_threads(1)
DT = 1e-4  # snntorch's exporter and importer hard-code dt = 1e-4


def leaky(n: int, reset: str = "zero") -> snn.Leaky:
    return snn.Leaky(beta=torch.full((n,), 0.8), threshold=torch.full((n,), 1.0),
                     reset_mechanism=reset, init_hidden=True)


def synaptic(n: int) -> snn.Synaptic:
    return snn.Synaptic(alpha=torch.full((n,), 0.6), beta=torch.full((n,), 0.8),
                        threshold=torch.full((n,), 1.0), reset_mechanism="zero",
                        init_hidden=True)


def run(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Step ``net`` through ``x`` [T, B, ...] from a fresh state; output spikes [T, B, ...]."""
    for module in net.modules():
        if hasattr(module, "reset_hidden"):
            module.reset_hidden()
    outputs = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            out = net(torch.as_tensor(x[t]))
            outputs.append((out[0] if isinstance(out, tuple) else out).numpy().copy())
    return np.stack(outputs)


def networks() -> dict[str, tuple[torch.nn.Module, tuple[int, ...], str, str]]:
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(12, 16), leaky(16), torch.nn.Linear(16, 5),
                              leaky(5))
    torch.manual_seed(1)
    cuba = torch.nn.Sequential(torch.nn.Linear(12, 16), synaptic(16), torch.nn.Linear(16, 5),
                               synaptic(5))
    torch.manual_seed(2)
    conv = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), leaky(4 * 8 * 8),
                               torch.nn.AvgPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 4 * 4, 6), leaky(6))
    torch.manual_seed(3)
    rec = torch.nn.Sequential(torch.nn.Linear(12, 10),
                              snn.RLeaky(beta=torch.full((10,), 0.8), linear_features=10,
                                         threshold=torch.full((10,), 1.0), init_hidden=True,
                                         reset_mechanism="zero"),
                              torch.nn.Linear(10, 5), leaky(5))
    torch.manual_seed(0)
    sub = torch.nn.Sequential(torch.nn.Linear(12, 16), leaky(16, "subtract"),
                              torch.nn.Linear(16, 5), leaky(5, "subtract"))
    return {"mlp_lif": (mlp, (12,), "mlp", "LIF"), "mlp_cubalif": (cuba, (12,), "mlp", "CubaLIF"),
            "conv_lif": (conv, (2, 8, 8), "conv", "LIF"),
            "rec_lif": (rec, (12,), "recurrent", "LIF"),
            "mlp_lif_subtract": (sub, (12,), "mlp", "LIF")}


def _fix_conv_leaky(net: torch.nn.Module) -> None:
    """The conv net's first Leaky acts on [C, H, W] maps: give it [C, H, W]-shaped vectors."""
    lif = net[1]
    lif.beta = torch.full((4, 8, 8), 0.8)
    lif.threshold = torch.full((4, 8, 8), 1.0)


def boost(net: torch.nn.Module, gain: float) -> None:
    """Scale the synapse weights so that every layer spikes on the sparse test input."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                module.weight.mul_(gain)


def produce(outdir: Path) -> list[dict[str, Any]]:
    cases = []
    for seed, (name, (net, shape, kind, neuron)) in enumerate(networks().items()):
        if name == "conv_lif":
            _fix_conv_leaky(net)
        boost(net, 12.0 if kind == "conv" else 3.0)
        x = bernoulli(shape, 0.3, seed)
        graph = export_to_nir(net, torch.as_tensor(x[0, :1]), ignore_dims=[0])
        nir.write(outdir / f"{name}.nir", graph)
        spikes = run(net, x)
        reset = "subtract" if name.endswith("_subtract") else "zero"
        cases.append(save_case(outdir, name, x, spikes, network=kind, neuron=neuron,
                               settings={"dt": DT, "reset": reset}))
    return cases


def consume(model: Path, x: np.ndarray) -> np.ndarray:
    net = import_from_nir(nir.read(model))
    return run(net, x)


if __name__ == "__main__":
    main(produce, consume, ("snntorch", "nir", "nirtorch", "torch"))
