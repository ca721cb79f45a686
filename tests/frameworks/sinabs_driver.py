"""sinabs 3.1.3 as producer and consumer of NIR (run in the ``sinabs`` framework environment,
nir 1.0.4: sinabs 3.1.3 declares ``nir<=1.0.4``).

produce: 100-64-10 MLPs of IAF (NIR IF) and LIF (NIR LIF) layers and a Conv-SumPool-Linear net
of IAF layers on 2x16x16, built with fixed seeds, written by ``sinabs.to_nir`` and simulated by
sinabs itself. sinabs counts time in steps (the NIR file has no dt) and resets by subtraction
(``MembraneSubtract``, its default). Each layer type runs with sinabs' defaults -- ``MultiSpike``
(``floor(v / threshold)`` spikes per step), LIF ``norm_input=True`` (the input scaled by
``1 - exp(-1/tau)``, which the exporter does not write: it writes ``r = 1`` either way), no
lower membrane bound -- and with the settings the README mentions: ``SingleSpike``,
``norm_input=False``, ``min_v_mem`` (sinabs' importer builds ``-threshold`` for IF), and the
zero reset ``MembraneReset()`` (which the exporter does not write either).
sinabs 3.1.3 exports no recurrent layer (``IAFRecurrent`` raises NotImplementedError in
``_extract_sinabs_module``). The trained IF-CNN of examples/train_sinabs_cnn.py is run by
``evaluate``.
consume: ``sinabs.from_nir(graph, batch_size=B)`` on a .nir file, as sinabs builds it
(``MultiSpike``, ``MembraneSubtract``; IF with ``min_v_mem = -v_threshold``); input
``[B*T, ...]``.
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
from _common import (  # noqa: E402
    B,
    CONV_CHANNELS,
    CONV_IN,
    CONV_OUT,
    MLP,
    bernoulli,
    conv_params,
    main,
    mlp_params,
    run_command,
    save_case,
)

torch.set_num_threads(1)
TAU = 10.0  # LIF tau_mem in steps (sinabs has no default)


def iaf(**kw: Any) -> sl.IAFSqueeze:
    return sl.IAFSqueeze(batch_size=B, **kw)


def lif(**kw: Any) -> sl.LIFSqueeze:
    return sl.LIFSqueeze(tau_mem=torch.tensor(TAU), batch_size=B, **kw)


def linear(w: np.ndarray, b: np.ndarray) -> torch.nn.Linear:
    layer = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w))
        layer.bias.copy_(torch.as_tensor(b))
    return layer


def mlp(seed: int, gain: float, neuron: Any, **kw: Any) -> torch.nn.Sequential:
    (w1, b1), (w2, b2) = mlp_params(seed, gain)
    return torch.nn.Sequential(linear(w1, b1), neuron(**kw), linear(w2, b2), neuron(**kw))


def conv_net(seed: int, gain: float, **kw: Any) -> torch.nn.Sequential:
    (k, bk), (w, b) = conv_params(seed, gain)
    layer = torch.nn.Conv2d(CONV_IN[0], CONV_CHANNELS, 3, padding=1)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(k))
        layer.bias.copy_(torch.as_tensor(bk))
    return torch.nn.Sequential(layer, iaf(**kw), sl.SumPool2d(2), torch.nn.Flatten(),
                               linear(w / 4, b), iaf(**kw))  # sum pool: 4x the average


def run(net: torch.nn.Module, x: np.ndarray, record: list[np.ndarray] | None = None
        ) -> np.ndarray:
    """``x`` [T, B, ...] -> sinabs' squeezed [B*T, ...] -> output spikes [T, B, ...]; with
    ``record``, every sinabs spiking layer's spikes ``[T, B, ...]`` are appended."""
    steps, batch = x.shape[:2]
    for module in net.modules():
        if isinstance(module, sl.StatefulLayer):
            module.reset_states()

    def unsqueeze(out: torch.Tensor) -> np.ndarray:
        out = out.detach().reshape(batch, steps, *out.shape[1:]).numpy()
        return np.ascontiguousarray(np.swapaxes(out, 0, 1))

    layers: list[np.ndarray] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: layers.append(unsqueeze(out)))
             for m in net.modules() if isinstance(m, (sl.IAFSqueeze, sl.LIFSqueeze))]
    flat = torch.as_tensor(np.ascontiguousarray(np.swapaxes(x, 0, 1))).flatten(0, 1)
    with torch.no_grad():
        out = net(flat)
    for hook in hooks:
        hook.remove()
    if isinstance(out, tuple):  # nirtorch 1.0's GraphExecutor returns (output, state)
        out = out[0]
    if record is not None:
        record.extend(layers)
    return unsqueeze(out)


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


def networks() -> dict[str, tuple[torch.nn.Module, tuple[int, ...], str, str, dict[str, Any]]]:
    """name -> (network, input shape, kind, neuron, the non-default settings)."""
    single = {"spike_fn": sa.SingleSpike}
    return {
        "mlp_iaf": (mlp(20, 1.3, iaf), (MLP[0],), "mlp", "IF", {}),
        "mlp_iaf_single": (mlp(20, 1.0, iaf, **single), (MLP[0],), "mlp", "IF",
                           {"spike_fn": "SingleSpike"}),
        "mlp_iaf_clamped": (mlp(21, 1.0, iaf, min_v_mem=-1.0), (MLP[0],), "mlp", "IF",
                            {"min_v_mem": -1.0}),
        "mlp_iaf_zero": (mlp(24, 1.6, iaf, reset_fn=sa.MembraneReset()), (MLP[0],), "mlp",
                         "IF", {"reset": "zero"}),
        "mlp_lif": (mlp(22, 12.0, lif), (MLP[0],), "mlp", "LIF", {}),
        "mlp_lif_plain": (mlp(22, 1.0, lif, spike_fn=sa.SingleSpike, norm_input=False),
                          (MLP[0],), "mlp", "LIF",
                          {"spike_fn": "SingleSpike", "norm_input": False}),
        "conv_iaf": (conv_net(23, 1.3), CONV_IN, "conv", "IF", {}),
        "conv_iaf_single": (conv_net(23, 1.0, **single), CONV_IN, "conv", "IF",
                            {"spike_fn": "SingleSpike"}),
    }


def produce(outdir: Path) -> list[dict[str, Any]]:
    cases = []
    for seed, (name, (net, shape, kind, neuron, settings)) in enumerate(networks().items()):
        x = bernoulli(shape, 300 + seed)
        layers: list[np.ndarray] = []
        spikes = run(net, x, layers)
        flat = torch.as_tensor(np.swapaxes(x, 0, 1)).flatten(0, 1)
        graph = sinabs.to_nir(net, flat)
        nir.write(outdir / f"{name}.nir", numpy_fields(graph))
        cases.append(save_case(outdir, name, x, spikes, network=kind, neuron=neuron,
                               settings={"dt": "1 step", "reset": "subtract", **settings},
                               rates=[float((s > 0).mean()) for s in layers]))
    return cases


def consume(model: Path, x: np.ndarray) -> np.ndarray:
    """sinabs' importer as it is: every IF/LIF layer with sinabs' default ``MultiSpike``."""
    net = sinabs.from_nir(nir.read(model), batch_size=x.shape[1])
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


def command(argv: list[str]) -> None:
    run_command(argv, produce, consume, ("sinabs", "nir", "nirtorch", "torch"),
                {"evaluate": lambda args: evaluate(*map(Path, args[:3]))})


if __name__ == "__main__":
    main(command)
