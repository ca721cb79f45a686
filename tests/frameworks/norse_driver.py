"""norse 1.1.0 as producer and consumer of NIR (run in the ``torch`` framework environment).

produce: 100-64-10 MLPs of LIFBoxCell (NIR LIF), LIFCell (NIR CubaLIF) and IAFCell (NIR IF),
and a Conv2d + LIFBoxCell net on 2x16x16, built with fixed seeds, written by
``norse.torch.to_nir`` and simulated by norse itself with norse's defaults (dt = 1e-3 s, the
parameter classes' default values, reset to ``v_reset = 0``). norse 1.1.0's exporter maps no
pooling, no Flatten and no recurrent cell (``_extract_norse_module`` returns None for them), so
its conv net is a Conv2d + LIF layer, and it has no recurrent case. ``mlp_lifbox_batched`` is
the LIFBox MLP exported with a batched sample ``[1, 100]`` (nirtorch then writes the batch axis
into the port types).
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
from _common import (  # noqa: E402
    CONV_CHANNELS,
    CONV_IN,
    MLP,
    bernoulli,
    conv_params,
    main,
    mlp_params,
    run_command,
    save_case,
)

torch.set_num_threads(1)
DT = 1e-3  # norse's default


def _full(shape: tuple[int, ...], value: torch.Tensor) -> torch.Tensor:
    """A default parameter (a 0-d tensor) as one value per neuron: nir 1.0.8 cannot infer the
    types of 0-d parameters (the same network)."""
    return torch.full(shape, float(value))


def lif_box(shape: tuple[int, ...]) -> norse.LIFBoxCell:
    d = norse.LIFBoxParameters()
    p = norse.LIFBoxParameters(tau_mem_inv=_full(shape, d.tau_mem_inv),
                               v_th=_full(shape, d.v_th), v_leak=_full(shape, d.v_leak),
                               v_reset=_full(shape, d.v_reset))
    return norse.LIFBoxCell(p, dt=DT)


def lif(shape: tuple[int, ...]) -> norse.LIFCell:
    d = norse.LIFParameters()
    p = norse.LIFParameters(tau_syn_inv=_full(shape, d.tau_syn_inv),
                            tau_mem_inv=_full(shape, d.tau_mem_inv), v_th=_full(shape, d.v_th),
                            v_leak=_full(shape, d.v_leak), v_reset=_full(shape, d.v_reset))
    return norse.LIFCell(p, dt=DT)


def iaf(shape: tuple[int, ...]) -> norse.IAFCell:
    d = norse.IAFParameters()
    return norse.IAFCell(norse.IAFParameters(v_th=_full(shape, d.v_th),
                                             v_reset=_full(shape, d.v_reset)), dt=DT)


def linear(w: np.ndarray, b: np.ndarray) -> torch.nn.Linear:
    layer = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w))
        layer.bias.copy_(torch.as_tensor(b))
    return layer


def mlp(seed: int, gain: float, cell: Any) -> norse.SequentialState:
    (w1, b1), (w2, b2) = mlp_params(seed, gain)
    return norse.SequentialState(linear(w1, b1), cell((MLP[1],)), linear(w2, b2),
                                 cell((MLP[2],)))


def conv_net(seed: int, gain: float) -> norse.SequentialState:
    (k, bk), _ = conv_params(seed, gain)
    layer = torch.nn.Conv2d(CONV_IN[0], CONV_CHANNELS, 3, padding=1)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(k))
        layer.bias.copy_(torch.as_tensor(bk))
    return norse.SequentialState(layer, lif_box((CONV_CHANNELS, *CONV_IN[1:])))


def run(net: torch.nn.Module, x: np.ndarray, record: list[np.ndarray] | None = None
        ) -> np.ndarray:
    """Step ``net`` (returns ``(out, state)``) through ``x`` [T, B, ...] from a fresh state;
    with ``record``, every norse cell's spikes ``[T, B, ...]`` are appended (forward hooks)."""
    cells = [m for m in net.modules()
             if isinstance(m, (norse.LIFBoxCell, norse.LIFCell, norse.IAFCell))]
    steps: list[list[np.ndarray]] = [[] for _ in cells]
    hooks = [m.register_forward_hook(
        lambda _m, _i, out, k=k: steps[k].append(out[0].detach().numpy().copy()))
        for k, m in enumerate(cells)]
    state, outputs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            out, state = net(torch.as_tensor(x[t]), state)
            outputs.append(out.numpy().copy())
    for hook in hooks:
        hook.remove()
    if record is not None:
        record.extend(np.stack(s) for s in steps if s)
    return np.stack(outputs)


def networks() -> dict[str, tuple[torch.nn.Module, tuple[int, ...], str, str]]:
    """name -> (network, input shape, kind, neuron)."""
    return {"mlp_lifbox": (mlp(10, 10.0, lif_box), (MLP[0],), "mlp", "LIF"),
            "mlp_lif": (mlp(11, 2.5, lif), (MLP[0],), "mlp", "CubaLIF"),
            "mlp_iaf": (mlp(12, 0.8, iaf), (MLP[0],), "mlp", "IF"),
            "conv_lifbox": (conv_net(13, 10.0), CONV_IN, "conv", "LIF"),
            "mlp_lifbox_batched": (mlp(10, 10.0, lif_box), (MLP[0],), "mlp", "LIF")}


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
    if any(isinstance(n, nir.Conv2d) and n.input_shape is None for n in graph.nodes.values()):
        graph.infer_types()  # fills Conv2d.input_shape, which norse leaves None (not writable)
    return graph


def produce(outdir: Path) -> list[dict[str, Any]]:
    cases = []
    for seed, (name, (net, shape, kind, neuron)) in enumerate(networks().items()):
        x = bernoulli(shape, 200 + seed)
        sample = x[0, :1] if name.endswith("_batched") else x[0, 0]  # [1, 100] or [100]
        graph = norse.to_nir(net, torch.as_tensor(sample), dt=DT)
        nir.write(outdir / f"{name}.nir", numpy_fields(graph))
        layers: list[np.ndarray] = []
        spikes = run(net, x, layers)
        cases.append(save_case(outdir, name, x, spikes, network=kind, neuron=neuron,
                               settings={"dt": DT, "reset": "zero"},
                               rates=[float((s > 0).mean()) for s in layers]))
    return cases


def consume(model: Path, x: np.ndarray) -> np.ndarray:
    return run(norse.from_nir(nir.read(model), dt=DT), x)


def command(argv: list[str]) -> None:
    run_command(argv, produce, consume, ("norse", "nir", "nirtorch", "torch"))


if __name__ == "__main__":
    main(command)
