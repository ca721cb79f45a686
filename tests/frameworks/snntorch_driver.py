"""snntorch 1.0.0 as producer and consumer of NIR (run in the ``torch`` framework environment).

produce: 100-64-10 MLPs of Leaky and Synaptic neurons, a Conv-AvgPool-Linear net of Leaky
neurons and recurrent RLeaky and RSynaptic nets (see _common.py for the sizes and the activity), built with
fixed seeds, written by ``snntorch.export_nir.export_to_nir`` and simulated by snntorch itself.
Each neuron type runs with snntorch's defaults (``reset_mechanism="subtract"``,
``reset_delay=True``: the threshold is subtracted at the step after the spike, after the decay)
and with the settings the README mentions: ``reset_mechanism="zero"`` (what the exporter writes,
``v_reset = 0``, and what the importer builds), ``reset_delay=False``, and ``beta = 1`` (an
integrate-and-fire Leaky, exported with ``tau = inf``). snntorch takes ``beta`` without a
default; these nets use 0.9 (membrane) and 0.8 (synapse).
consume: ``snntorch.import_nir.import_from_nir`` on a .nir file, stepped through the input.

Workaround for snntorch 1.0.0 with nir 1.0.8 (in this driver, not in sbc-deploy): a scalar
``beta``/``threshold`` is exported as a 0-d array, and nir 1.0.8's type inference then fails
("type mismatch: ...output: [[64]] -> ...input: []", snntorch issue #410). The neurons here are
built with per-neuron ``beta`` and ``threshold`` vectors, which is the same network.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import nir
import numpy as np
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir
from snntorch.import_nir import import_from_nir

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

torch.set_num_threads(1)
DT = 1e-4  # snntorch's exporter and importer hard-code dt = 1e-4
BETA, ALPHA = 0.9, 0.8


def _vector(shape: tuple[int, ...], value: float) -> torch.Tensor:
    return torch.full(shape, value)


def leaky(shape: tuple[int, ...], beta: float = BETA, **kw: Any) -> snn.Leaky:
    return snn.Leaky(beta=_vector(shape, beta), threshold=_vector(shape, 1.0),
                     init_hidden=True, **kw)


def synaptic(shape: tuple[int, ...], **kw: Any) -> snn.Synaptic:
    return snn.Synaptic(alpha=_vector(shape, ALPHA), beta=_vector(shape, BETA),
                        threshold=_vector(shape, 1.0), init_hidden=True, **kw)


def linear(w: np.ndarray, b: np.ndarray) -> torch.nn.Linear:
    layer = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w))
        layer.bias.copy_(torch.as_tensor(b))
    return layer


def mlp(seed: int, gain: float, neuron: Callable[..., torch.nn.Module], **kw: Any
        ) -> torch.nn.Sequential:
    (w1, b1), (w2, b2) = mlp_params(seed, gain)
    return torch.nn.Sequential(linear(w1, b1), neuron((MLP[1],), **kw), linear(w2, b2),
                               neuron((MLP[2],), **kw))


def conv_net(seed: int, gain: float) -> torch.nn.Sequential:
    (k, bk), (w, b) = conv_params(seed, gain)
    layer = torch.nn.Conv2d(CONV_IN[0], CONV_CHANNELS, 3, padding=1)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(k))
        layer.bias.copy_(torch.as_tensor(bk))
    return torch.nn.Sequential(layer, leaky((CONV_CHANNELS, *CONV_IN[1:])),
                               torch.nn.AvgPool2d(2), torch.nn.Flatten(), linear(w, b),
                               leaky((CONV_OUT,)))


def rec_net(seed: int, gain: float, **kw: Any) -> torch.nn.Sequential:
    (w1, b1), (w2, b2) = mlp_params(seed, gain)
    n = MLP[1]
    cell = snn.RLeaky(beta=_vector((n,), BETA), threshold=_vector((n,), 1.0),
                      linear_features=n, init_hidden=True, **kw)
    with torch.no_grad():
        cell.recurrent.weight.copy_(torch.as_tensor(recurrent(seed + 7, n)))
        cell.recurrent.bias.copy_(torch.as_tensor(b1[::-1].copy()))
    return torch.nn.Sequential(linear(w1, b1), cell, linear(w2, b2), leaky((MLP[2],), **kw))


def rec_synaptic_net(seed: int, gain: float, **kw: Any) -> torch.nn.Sequential:
    (w1, b1), (w2, b2) = mlp_params(seed, gain)
    n = MLP[1]
    cell = snn.RSynaptic(alpha=_vector((n,), ALPHA), beta=_vector((n,), BETA),
                         threshold=_vector((n,), 1.0), linear_features=n, init_hidden=True,
                         **kw)
    with torch.no_grad():
        cell.recurrent.weight.copy_(torch.as_tensor(recurrent(seed + 7, n, 0.15)))
        cell.recurrent.bias.copy_(torch.as_tensor(b1[::-1].copy() * 0.5))
    return torch.nn.Sequential(linear(w1, b1), cell, linear(w2, b2),
                               synaptic((MLP[2],), **kw))


def run(net: torch.nn.Module, x: np.ndarray, record: list[np.ndarray] | None = None
        ) -> np.ndarray:
    """Step ``net`` through ``x`` [T, B, ...] from a fresh state; output spikes [T, B, ...]
    (the torch.fx module ``import_from_nir`` returns is called as nirtorch documents it,
    ``out, state = net(x, state)``).
    With ``record``, the spikes of every snntorch neuron layer are appended per layer
    ``[T, B, ...]`` (forward hooks)."""
    for module in net.modules():
        if hasattr(module, "reset_hidden"):
            module.reset_hidden()
    neurons = [m for m in net.modules() if isinstance(m, snn.SpikingNeuron)]
    steps: list[list[np.ndarray]] = [[] for _ in neurons]
    hooks = [m.register_forward_hook(
        lambda _m, _i, out, k=k: steps[k].append(
            (out[0] if isinstance(out, tuple) else out).detach().numpy().copy()))
        for k, m in enumerate(neurons)]
    outputs, state = [], None
    graph_module = isinstance(net, torch.fx.GraphModule)  # import_from_nir's result
    with torch.no_grad():
        for t in range(x.shape[0]):
            if graph_module:  # nirtorch keeps a recurrent cell's last output in its state
                out, state = net(torch.as_tensor(x[t]), state)
            else:
                out = net(torch.as_tensor(x[t]))
            outputs.append((out[0] if isinstance(out, tuple) else out).numpy().copy())
    for hook in hooks:
        hook.remove()
    if record is not None:
        record.extend(np.stack(s) for s in steps if s)
    return np.stack(outputs)


# name -> (network, input shape, kind, neuron, settings)
def networks() -> dict[str, tuple[torch.nn.Module, tuple[int, ...], str, str, dict[str, Any]]]:
    default = {"reset_mechanism": "subtract", "reset_delay": True}
    zero = {"reset_mechanism": "zero"}
    nodelay = {"reset_mechanism": "subtract", "reset_delay": False}
    return {
        "mlp_leaky": (mlp(0, 1.0, leaky), (MLP[0],), "mlp", "LIF", default),
        "mlp_leaky_zero": (mlp(0, 1.4, leaky, **zero), (MLP[0],), "mlp", "LIF",
                           {**zero, "reset_delay": True}),
        "mlp_leaky_nodelay": (mlp(0, 1.0, leaky, **nodelay), (MLP[0],), "mlp", "LIF", nodelay),
        "mlp_leaky_beta1": (mlp(1, 0.8, leaky, beta=1.0), (MLP[0],), "mlp", "IF",
                            {**default, "beta": 1.0}),
        "mlp_synaptic": (mlp(2, 0.25, synaptic), (MLP[0],), "mlp", "CubaLIF", default),
        "mlp_synaptic_zero": (mlp(2, 0.5, synaptic, **zero), (MLP[0],), "mlp", "CubaLIF",
                              {**zero, "reset_delay": True}),
        "conv_leaky": (conv_net(3, 1.0), CONV_IN, "conv", "LIF", default),
        "rec_rleaky": (rec_net(4, 1.0), (MLP[0],), "recurrent", "LIF", default),
        "rec_rleaky_zero": (rec_net(4, 1.4, **zero), (MLP[0],), "recurrent", "LIF",
                            {**zero, "reset_delay": True}),
        "rec_rsynaptic": (rec_synaptic_net(5, 0.25), (MLP[0],), "recurrent", "CubaLIF",
                          default),
    }


def produce(outdir: Path) -> list[dict[str, Any]]:
    cases = []
    for seed, (name, (net, shape, kind, neuron, settings)) in enumerate(networks().items()):
        x = bernoulli(shape, 100 + seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tau = inf for beta = 1 (divide by zero)
            graph = export_to_nir(net, torch.as_tensor(x[0, :1]), ignore_dims=[0])
        nir.write(outdir / f"{name}.nir", graph)
        layers: list[np.ndarray] = []
        spikes = run(net, x, layers)
        cases.append(save_case(outdir, name, x, spikes, network=kind, neuron=neuron,
                               settings={"dt": DT, **settings},
                               rates=[float((s > 0).mean()) for s in layers]))
    return cases


def consume(model: Path, x: np.ndarray) -> np.ndarray:
    net = import_from_nir(nir.read(model))
    return run(net, x)


def imported_layers(model: Path, if_as: str) -> list[torch.nn.Module]:
    """The layers ``import_from_nir`` builds from a feed-forward file, in execution order.

    ``if_as="importer"``: as built (every IF a ``Leaky(beta=0.9, reset_delay=False,
    init_hidden=False)``); ``"leaky_beta1"``: each of those Leaky replaced by
    ``snn.Leaky(beta=1.0, threshold=<the node's>)`` with snntorch's defaults (subtract,
    reset_delay=True), the integrate-and-fire neuron the IF node names."""
    net = import_from_nir(nir.read(model))
    layers = [net.get_submodule(n.target) for n in net.graph.nodes if n.op == "call_module"]
    if if_as == "leaky_beta1":
        layers = [snn.Leaky(beta=1.0, threshold=float(m.threshold))
                  if isinstance(m, snn.Leaky) else m for m in layers]
    return layers


def step_layers(layers: list[torch.nn.Module], x: np.ndarray
                ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Step ``layers`` through ``x`` [T, B, ...] by hand, as the NIR paper's snntorch notebook
    runs this importer's output (neuromorphs/NIR paper/02_cnn/snntorch_apply.ipynb): each Leaky
    keeps its membrane, and Flatten flattens from axis 1 (import_from_nir's module cannot run
    it: an IF's Leaky returns ``(spk, mem)`` to the next layer, and the stored
    ``Flatten(0, -1)`` would merge the batch axis). Output spikes and every Leaky's spikes."""
    leaky = [m for m in layers if isinstance(m, snn.Leaky)]
    for m in leaky:
        m.reset_mem()
    recorded: list[list[np.ndarray]] = [[] for _ in leaky]
    outputs = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            h = torch.as_tensor(x[t])
            for m in layers:
                if isinstance(m, snn.Leaky):
                    h, _ = m(h)
                    recorded[leaky.index(m)].append(h.numpy().copy())
                elif isinstance(m, torch.nn.Flatten):
                    h = h.flatten(1)
                else:
                    h = m(h)
            outputs.append(h.numpy().copy())
    return np.stack(outputs), [np.stack(r) for r in recorded]


def imported_run(model: Path, x: np.ndarray, if_as: str) -> tuple[np.ndarray, list[float]]:
    """Output spikes of ``model`` run by snntorch (see :func:`imported_layers`) and the
    fraction of each Leaky layer's entries that spiked."""
    out, layers = step_layers(imported_layers(model, if_as), x)
    return out, [float((s > 0).mean()) for s in layers]


def imported(args: list[str]) -> None:
    """``imported IF_AS MODEL INPUT OUTPUT [IF_AS MODEL INPUT OUTPUT ...]``: see
    :func:`imported_run`; OUTPUT holds ``spikes`` and ``rates``."""
    for k in range(0, len(args), 4):
        if_as, model, inputs, output = args[k:k + 4]
        spikes, rates = imported_run(Path(model), np.load(inputs)["x"], if_as)
        np.savez(output, spikes=spikes, rates=np.asarray(rates))


def command(argv: list[str]) -> None:
    run_command(argv, produce, consume, ("snntorch", "nir", "nirtorch", "torch"),
                {"imported": imported})


if __name__ == "__main__":
    main(command)
