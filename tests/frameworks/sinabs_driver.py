"""sinabs 3.1.3 as producer and consumer of NIR (run in the ``sinabs`` framework environment,
nir 1.0.4: sinabs 3.1.3 declares ``nir<=1.0.4``).

produce: an MLP with IAF (NIR IF) and one with LIF (NIR LIF), a conv net with IAF and sum
pooling, and the trained IF-CNN of examples/train_sinabs_cnn.py when it is given, built with
fixed seeds, written by ``sinabs.nir.to_nir`` and simulated by sinabs itself. sinabs counts
time in steps (dt = 1 step; the NIR file has no dt), resets by subtraction
(``MembraneSubtract``, its default). Closest settings to NIR's neurons, also what
``sinabs.from_nir`` builds: ``SingleSpike`` (sinabs' default ``MultiSpike`` may emit several
spikes per step) and, for LIF, ``norm_input=False`` (sinabs' LIF default scales the input by
``1 - exp(-1/tau)``, which its exporter does not write). sinabs 3.1.3 exports no recurrent
layer (``IAFRecurrent`` raises NotImplementedError in ``_extract_sinabs_module``).
evaluate: the trained IF-CNN of examples/train_sinabs_cnn.py, run by sinabs on event data.
consume: ``sinabs.from_nir(graph, batch_size=B)`` on a .nir file, with ``SingleSpike`` switched on
in the imported layers (see ``consume``); input ``[B*T, ...]``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nir
import numpy as np
import sinabs
import sinabs.activation as sa
import sinabs.layers as sl
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import B, bernoulli, main, save_case  # noqa: E402

torch.set_num_threads(1)


def iaf() -> sl.IAFSqueeze:
    return sl.IAFSqueeze(batch_size=B, spike_fn=sa.SingleSpike)


def lif() -> sl.LIFSqueeze:
    return sl.LIFSqueeze(tau_mem=torch.tensor(5.0), batch_size=B, spike_fn=sa.SingleSpike,
                         norm_input=False)


def run(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """``x`` [T, B, ...] -> sinabs' squeezed [B*T, ...] -> output spikes [T, B, ...]."""
    steps, batch = x.shape[:2]
    for module in net.modules():
        if isinstance(module, sl.StatefulLayer):
            module.reset_states()
    flat = torch.as_tensor(np.ascontiguousarray(np.swapaxes(x, 0, 1))).flatten(0, 1)
    with torch.no_grad():
        out = net(flat)
    if isinstance(out, tuple):  # nirtorch 1.0's GraphExecutor returns (output, state)
        out = out[0]
    out = out.reshape(batch, steps, *out.shape[1:]).numpy()
    return np.ascontiguousarray(np.swapaxes(out, 0, 1))


def numpy_fields(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Workaround for sinabs 3.1.3 with nir 1.0.4: the exporter stores torch tensors in the NIR
    nodes and leaves ``Conv2d.input_shape`` None; ``nir.write`` then fails ("One of data, shape
    or dtype must be specified"). Convert to numpy and let nir infer the conv input shapes."""
    for node in graph.nodes.values():
        if isinstance(node, nir.NIRGraph):
            numpy_fields(node)
            continue
        for key, value in vars(node).items():
            if isinstance(value, torch.Tensor):
                setattr(node, key, value.detach().numpy())
    graph.infer_types()
    return graph


def networks() -> dict[str, tuple[torch.nn.Module, tuple[int, ...], str, str, float]]:
    torch.manual_seed(0)
    mlp_if = torch.nn.Sequential(torch.nn.Linear(12, 16), iaf(), torch.nn.Linear(16, 5), iaf())
    torch.manual_seed(1)
    mlp_lif = torch.nn.Sequential(torch.nn.Linear(12, 16), lif(), torch.nn.Linear(16, 5), lif())
    torch.manual_seed(2)
    conv = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1, bias=False), iaf(),
                               sl.SumPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 4 * 4, 6, bias=False), iaf())
    return {"mlp_if": (mlp_if, (12,), "mlp", "IF", 1.5),
            "mlp_lif": (mlp_lif, (12,), "mlp", "LIF", 3.0),
            "conv_if": (conv, (2, 8, 8), "conv", "IF", 2.0)}


def produce(outdir: Path) -> list[dict[str, Any]]:
    cases = []
    for seed, (name, (net, shape, kind, neuron, gain)) in enumerate(networks().items()):
        with torch.no_grad():
            for module in net.modules():
                if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                    module.weight.mul_(gain)
        x = bernoulli(shape, 0.3, seed)
        spikes = run(net, x)
        flat = torch.as_tensor(np.swapaxes(x, 0, 1)).flatten(0, 1)
        graph = sinabs.to_nir(net, flat)
        nir.write(outdir / f"{name}.nir", numpy_fields(graph))
        cases.append(save_case(outdir, name, x, spikes, network=kind, neuron=neuron,
                               settings={"dt": 1.0, "reset": "subtract"}))
    return cases


def consume(model: Path, x: np.ndarray) -> np.ndarray:
    """sinabs' importer builds every IF/LIF layer with sinabs' default ``MultiSpike``
    (``floor(v / threshold)`` spikes per step); NIR neurons and the IR fire one spike. The
    closest setting, sinabs' own ``SingleSpike``, is switched on in the imported layers (nothing
    in a NIR file can ask for it)."""
    net = sinabs.from_nir(nir.read(model), batch_size=x.shape[1])
    for module in net.modules():
        if isinstance(module, (sl.IAFSqueeze, sl.LIFSqueeze)):
            module.spike_fn = sa.SingleSpike
    return run(net, x)


def evaluate(weights: Path, inputs: Path, output: Path) -> None:
    """Run the trained IF-CNN of examples/train_sinabs_cnn.py (its state dict) in sinabs on
    ``x`` [N, T, 2, 34, 34]; save its output spikes [T, N, 10]."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    from train_sinabs_cnn import build_model

    x = torch.as_tensor(np.load(inputs)["x"]).float()
    batch = 20 if len(x) % 20 == 0 else 1
    model = build_model(batch)
    state = torch.load(weights, map_location="cpu")
    model.load_state_dict({k: v for k, v in state.items() if k.endswith("weight")}, strict=False)
    outputs = [run(model, np.swapaxes(x[i:i + batch].numpy(), 0, 1))
               for i in range(0, len(x), batch)]
    np.savez(output, spikes=np.concatenate(outputs, axis=1))


if __name__ == "__main__":
    if sys.argv[1] == "evaluate":
        evaluate(*map(Path, sys.argv[2:5]))
    else:
        main(produce, consume, ("sinabs", "nir", "nirtorch", "torch"))
