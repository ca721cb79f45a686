r"""Framework neurons -> IR neurons, by type, each with the framework's equations.

spikingjelly 2.0.0 (``activation_based/neuron/lif.py``, ``integrate_and_fire.py``,
``_ops/lif/reference.py``, ``_ops/reset.py``, ``surrogate.py``), per step::

    LIFNode, decay_input=True:   H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau
    LIFNode, decay_input=False:  H[t] = V[t-1] - (V[t-1] - V_reset) / tau + X[t]
    IFNode:                      H[t] = V[t-1] + X[t]
    spike:                       S[t] = heaviside(H[t] - V_threshold),  heaviside(x) = x >= 0
    reset, v_reset a number:     V[t] = V_reset where S[t], else H[t]          (hard)
    reset, v_reset=None:         V[t] = H[t] - V_threshold * S[t]                 (soft)
    V[0] = V_reset (0 for v_reset=None)

In the IR's terms (``sbc_deploy.ir.nodes``): ``tau`` counts steps, so ``beta = 1 - 1/tau``,
``gain = 1/tau`` with ``decay_input`` (else 1), ``v_leak = V_reset`` (``(1 - beta) v_leak =
V_reset / tau``), reset ``"zero"`` to ``v_reset = V_reset`` or ``"subtract"`` for
``v_reset=None``. The surrogate function only shapes gradients and does not matter here;
``detach_reset`` and ``store_v_seq`` neither. A non-zero ``v_reset`` is refused: spikingjelly
starts the membrane at ``V_reset``, the IR at 0.

spikingjelly fires at ``H >= V_threshold``: the IR neuron gets ``fires_at_equal=True`` (the
IR's spike variant for it, ``sbc_deploy.ir.nodes``), with the threshold as it is.

snntorch 1.0.0 ``Leaky`` / ``Synaptic`` / ``RLeaky`` map exactly as
:mod:`sbc_deploy.frontends.from_snntorch` maps them (its reset-timing correction nodes
included), whether called with ``init_hidden=True`` or as ``spk, mem = lif(cur, mem)`` in a loop
over time: the state argument and the returned membrane are the neuron's own state, not data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from sbc_deploy.errors import UnsupportedNodeError
from sbc_deploy.frontends.from_torch.build import GraphBuilder, Value, node_name, where
from sbc_deploy.ir import IF, LIF, Node, Synapse

Shape = tuple[int, ...]


def _check_no_time_reduction(value: Value, path: str, module: nn.Module) -> None:
    if value.time_reduction:
        raise UnsupportedNodeError(f"receives a tensor already reduced over time "
                                   f"({value.time_reduction}); neurons need every step",
                                   where=where(path, module))


def _spikingjelly_reset(module: Any, path: str) -> tuple[str, float]:
    v_reset = module.v_reset
    if v_reset is None:
        return "subtract", 0.0
    if float(v_reset) != 0.0:
        raise UnsupportedNodeError(
            f"v_reset={v_reset}: spikingjelly starts the membrane at v_reset, the IR at 0",
            where=where(path, module), hint="use v_reset=0.0 or None (soft reset)")
    return "zero", 0.0


def spikingjelly_neuron(b: GraphBuilder, path: str, module: nn.Module, value: Value,
                        out: Shape) -> Value:
    """``LIFNode`` / ``IFNode`` (and their Simple* forms) -> IR ``LIF`` / ``IF``."""
    _check_no_time_reduction(value, path, module)
    shape = value.shape
    threshold = float(module.v_threshold)
    reset, v_reset = _spikingjelly_reset(module, path)
    meta = {"torch_module": path, "framework": "spikingjelly",
            "spikingjelly": type(module).__name__}
    thr = np.full(shape, threshold)
    if hasattr(module, "tau"):
        tau = float(module.tau)
        if not tau > 1.0:
            raise UnsupportedNodeError(f"tau={tau} (spikingjelly requires tau > 1)",
                                       where=where(path, module))
        gain = 1.0 / tau if module.decay_input else 1.0
        node: Node = LIF(beta=np.full(shape, 1.0 - 1.0 / tau), v_threshold=thr,
                         gain=np.full(shape, gain), v_leak=np.full(shape, v_reset),
                         v_reset=np.full(shape, v_reset), reset=reset,
                         fires_at_equal=True, metadata={**meta, "tau_steps": tau,
                                                        "decay_input": bool(module.decay_input)})
    else:
        node = IF(v_threshold=thr, v_reset=np.full(shape, v_reset), reset=reset,
                  fires_at_equal=True, metadata=meta)
    name = b.add_node(node_name(path), node, value, path)
    b.resets[name] = reset
    return Value.node(name, out)


def snntorch_neuron(b: GraphBuilder, path: str, module: nn.Module, value: Value,
                    out: Shape) -> Value:
    """snntorch ``Leaky`` / ``Synaptic`` / ``RLeaky`` through ``from_snntorch``'s mapping."""
    from sbc_deploy.frontends import from_snntorch as snn_map

    _check_no_time_reduction(value, path, module)
    kind = type(module).__name__
    name = node_name(path)
    sub = snn_map._Builder(reset=None, tail="__input__", shape=value.shape)
    sub.nodes["__input__"] = None  # type: ignore[assignment]  # a placeholder, never kept
    snn_map._convert_neuron(module, path, name, sub, kind)
    for node_key, node in sub.nodes.items():
        if node_key != "__input__":
            if isinstance(node, Node) and "torch_module" not in node.metadata:
                extra: dict[str, Any] = {"torch_module": path, "framework": "snntorch"}
                if node_key == f"{name}_rec" and isinstance(node, Synapse):
                    # RLeaky's recurrent layer; its bias moved into the neuron and stays as is
                    extra["torch_params"] = {"weight": f"{path}.recurrent.weight", "bias": None}
                node = node.replace(metadata={**node.metadata, **extra})
            b.add_node(node_key, node, None, path)
    for src, dst in sub.edges:
        if src == "__input__":
            b.connect(value, dst)
        else:
            b.add_edge(src, dst)
    b.resets[name] = sub.resets.get(name, "")
    return Value.node(sub.tail, out)
