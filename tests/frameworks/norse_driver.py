"""norse 1.1.0 as producer and consumer of NIR (run in the ``torch`` framework environment).

produce: MLPs with LIFBoxCell (NIR LIF), LIFCell (NIR CubaLIF) and IAFCell (NIR IF), and a conv
net, built with fixed seeds, written by ``norse.torch.to_nir`` and simulated by norse itself
(dt = 1e-3 s, norse's default; reset to ``v_reset = 0``, norse's default). norse 1.1.0's
exporter maps no pooling, no Flatten and no recurrent cell (``_extract_norse_module`` returns
None for them), so its conv net is a Conv2d + LIF layer, and it has no recurrent case.
consume: ``norse.torch.from_nir`` (dt = 1e-3 s, its default) on a .nir file, stepped through
the input with its state.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nir
import norse.torch as norse
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import bernoulli, main, save_case  # noqa: E402

torch.set_num_threads(1)
DT = 1e-3


def lif_box(shape: tuple[int, ...]) -> norse.LIFBoxCell:
    p = norse.LIFBoxParameters(tau_mem_inv=torch.full(shape, 100.0), v_th=torch.full(shape, 1.0),
                               v_leak=torch.zeros(shape), v_reset=torch.zeros(shape))
    return norse.LIFBoxCell(p, dt=DT)


def lif(shape: tuple[int, ...]) -> norse.LIFCell:
    p = norse.LIFParameters(tau_syn_inv=torch.full(shape, 200.0),
                            tau_mem_inv=torch.full(shape, 100.0), v_th=torch.full(shape, 1.0),
                            v_leak=torch.zeros(shape), v_reset=torch.zeros(shape))
    return norse.LIFCell(p, dt=DT)


def iaf(shape: tuple[int, ...]) -> norse.IAFCell:
    return norse.IAFCell(norse.IAFParameters(v_th=torch.full(shape, 1.0),
                                             v_reset=torch.zeros(shape)), dt=DT)


def run(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Step ``net`` (returns ``(out, state)``) through ``x`` [T, B, ...] from a fresh state."""
    state, outputs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            out, state = net(torch.as_tensor(x[t]), state)
            outputs.append(out.numpy().copy())
    return np.stack(outputs)


def networks() -> dict[str, tuple[torch.nn.Module, tuple[int, ...], str, str, float]]:
    """name -> (network, input shape, kind, neuron, weight gain that makes every layer spike)."""
    torch.manual_seed(0)
    mlp = norse.SequentialState(torch.nn.Linear(12, 16), lif_box((16,)), torch.nn.Linear(16, 5),
                                lif_box((5,)))
    torch.manual_seed(1)
    cuba = norse.SequentialState(torch.nn.Linear(12, 16), lif((16,)), torch.nn.Linear(16, 5),
                                 lif((5,)))
    torch.manual_seed(2)
    if_net = norse.SequentialState(torch.nn.Linear(12, 16), iaf((16,)), torch.nn.Linear(16, 5),
                                   iaf((5,)))
    torch.manual_seed(3)
    conv = norse.SequentialState(torch.nn.Conv2d(2, 4, 3, padding=1), lif_box((4, 8, 8)))
    return {"mlp_lif": (mlp, (12,), "mlp", "LIF", 30.0),
            "mlp_cubalif": (cuba, (12,), "mlp", "CubaLIF", 20.0),
            "mlp_if": (if_net, (12,), "mlp", "IF", 1.5),
            "conv_lif": (conv, (2, 8, 8), "conv", "LIF", 30.0)}


def numpy_fields(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Workaround for norse 1.1.0: ``_extract_norse_module`` stores torch tensors (``.detach()``)
    in the NIR nodes, and ``nir.write`` (1.0.8) then fails with "One of data, shape or dtype
    must be specified". Convert them to numpy arrays in place (the values are unchanged).
    A Conv2d's ``input_shape`` stays None, which ``nir.write`` cannot store either."""
    for node in graph.nodes.values():
        if isinstance(node, nir.NIRGraph):
            numpy_fields(node)
            continue
        for key, value in vars(node).items():
            if isinstance(value, torch.Tensor):
                setattr(node, key, value.detach().numpy())
    graph.infer_types()  # fills Conv2d.input_shape, which norse leaves None (not writable)
    return graph


def produce(outdir: Path) -> list[dict[str, Any]]:
    cases = []
    for seed, (name, (net, shape, kind, neuron, gain)) in enumerate(networks().items()):
        with torch.no_grad():
            for module in net.modules():
                if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                    module.weight.mul_(gain)
        x = bernoulli(shape, 0.3, seed)
        graph = norse.to_nir(net, torch.as_tensor(x[0, 0]), dt=DT)  # one unbatched sample
        nir.write(outdir / f"{name}.nir", numpy_fields(graph))
        cases.append(save_case(outdir, name, x, run(net, x), network=kind, neuron=neuron,
                               settings={"dt": DT, "reset": "zero"}))
    return cases


def consume(model: Path, x: np.ndarray) -> np.ndarray:
    return run(norse.from_nir(nir.read(model), dt=DT), x)


if __name__ == "__main__":
    main(produce, consume, ("norse", "nir", "nirtorch", "torch"))
