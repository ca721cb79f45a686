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

norse 1.1.0 (``norse/torch/functional/lif.py``, ``lif_box.py``, ``iaf.py``,
``leaky_integrator.py``, ``leaky_integrator_box.py``, ``reset.py``, ``heaviside.py``), per step,
with ``a = dt * tau_mem_inv`` and ``b = dt * tau_syn_inv``::

    LIFCell / LIF:      i' = i + x;  v = v + a (v_leak - v + i');  i = (1 - b) i'
    LICell / LI:        the same without a threshold; the output is v
    LIFBoxCell:         v = v + a (x + v_leak - v)
    LIBoxCell:          the same without a threshold; the output is v
    IAFCell / IAF:      v = v + x                     (dt unused)
    spike:              z = heaviside(v - v_th),  heaviside(x) = x > 0
    reset:              v = v_reset where z (reset_value), v - v_th (LIFBox's reset_subtract)
    start:              v = v_leak (v_reset for IAF), i = 0

In the IR's terms: LIFCell / LIF is a ``CubaLIF`` with ``alpha = 1 - b``, ``gain_syn = 1`` (the
IR's ``i[t]`` is norse's ``i'``), ``beta = 1 - a``, ``gain = a``; LICell / LI a ``CubaLI`` with
the same; LIFBoxCell a ``LIF`` and LIBoxCell a ``LI`` with ``beta = 1 - a``, ``gain = a``;
IAFCell / IAF an ``IF``; LIFRecurrentCell / LIFRecurrent (``lif_step``: ``i' = i + W_in x +
W_rec z[t-1]``) a CubaLIF fed by an Affine on its input and one on its own spikes (a cycle).
norse fires at ``v > v_th`` (``fires_at_equal=False``). The threshold
``method`` only shapes gradients: every method norse 1.1.0's ``threshold`` takes computes
``heaviside`` forward (its stochastic ``logistic_fn`` is not one of them). The IR
starts every membrane at 0, so a non-zero ``v_leak`` (``v_reset`` for IAF) is refused;
``a`` and ``b`` must lie in (0, 1] and [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from sbc_deploy.errors import UnsupportedNodeError
from sbc_deploy.frontends.from_torch.build import GraphBuilder, Value, node_name, where
from sbc_deploy.ir import IF, LI, LIF, Affine, CubaLI, CubaLIF, Node, Synapse

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


def _norse_param(module: nn.Module, name: str, shape: Shape, path: str) -> np.ndarray:
    """A norse parameter (a number or a tensor that broadcasts) as one value per neuron."""
    import torch

    raw = getattr(module.p, name)
    value = torch.as_tensor(raw).detach().cpu().double().numpy()
    try:
        return np.broadcast_to(value, shape).copy()
    except ValueError as err:
        raise UnsupportedNodeError(f"p.{name} has shape {value.shape}, which does not broadcast "
                                   f"to the layer's {shape}", where=where(path, module)) from err


def _norse_checks(module: nn.Module, path: str, shape: Shape, start: str) -> None:
    offset = _norse_param(module, start, shape, path)
    if np.any(offset != 0):
        raise UnsupportedNodeError(
            f"p.{start} = {offset.flat[int(np.argmax(offset != 0))]:g}: norse starts the "
            f"membrane at {start}, the IR at 0", where=where(path, module),
            hint=f"use {start}=0 (shift v_th and v_reset by -{start} instead)")


def _norse_rates(module: nn.Module, path: str, shape: Shape) -> dict[str, np.ndarray]:
    """``a = dt tau_mem_inv`` and, for current-based cells, ``b = dt tau_syn_inv``."""
    dt = float(module.dt)
    rates = {"a": dt * _norse_param(module, "tau_mem_inv", shape, path)}
    if hasattr(module.p, "tau_syn_inv"):
        rates["b"] = dt * _norse_param(module, "tau_syn_inv", shape, path)
    for key, what in (("a", "dt * tau_mem_inv"), ("b", "dt * tau_syn_inv")):
        if key in rates and not (np.all(rates[key] > 0) and np.all(rates[key] <= 1)):
            raise UnsupportedNodeError(
                f"{what} ranges over [{rates[key].min():g}, {rates[key].max():g}]; the forward "
                "Euler step norse takes is a decay only for values in (0, 1]",
                where=where(path, module))
    return rates


def _norse_reset(module: nn.Module, path: str) -> str:
    from norse.torch.functional.reset import reset_subtract, reset_value

    method = getattr(module.p, "reset_method", reset_value)
    if method is reset_value:
        return "zero"
    if method is reset_subtract:
        return "subtract"
    raise UnsupportedNodeError(f"reset_method {getattr(method, '__name__', method)!r}: only "
                               "norse's reset_value and reset_subtract map",
                               where=where(path, module))


def _norse_weights(module: nn.Module, path: str, which: str) -> tuple[np.ndarray, str]:
    """A recurrent cell's ``input_weights`` / ``recurrent_weights`` and its state-dict name."""
    if which not in module._parameters:
        raise UnsupportedNodeError(
            f"{which} is a plain tensor, not a parameter of the module: the compressed weights "
            "could not be written back into it", where=where(path, module),
            hint=f"pass {which}=torch.nn.Parameter(...)")
    tensor = getattr(module, which)
    return tensor.detach().cpu().double().numpy().copy(), f"{path}.{which}"


def _norse_recurrent(b: GraphBuilder, path: str, module: nn.Module, value: Value,
                     neuron: Node) -> str:
    """``LIFRecurrentCell`` / ``LIFRecurrent``: ``i' = i + W_in x + W_rec z[t-1]`` (norse's
    ``lif_step``) is the CubaLIF fed by two Affines: ``<node>_in`` on the input and
    ``<node>_rec`` on the neuron's own spikes (a cycle: the previous step's)."""
    name = node_name(path)
    meta = {"torch_module": path, "framework": "norse"}
    synapses = {}
    for which, suffix in (("input_weights", "in"), ("recurrent_weights", "rec")):
        weight, key = _norse_weights(module, path, which)
        synapses[suffix] = Affine(weight, metadata={**meta, "torch_params": {
            "weight": key, "bias": None}})
    b.add_node(f"{name}_in", synapses["in"], value, path)
    b.add_node(name, neuron, Value.node(f"{name}_in", neuron.shape), path)
    b.add_node(f"{name}_rec", synapses["rec"], Value.node(name, neuron.shape), path)
    b.add_edge(f"{name}_rec", name)
    return name


def norse_neuron(b: GraphBuilder, path: str, module: nn.Module, value: Value,
                 out: Shape) -> Value:
    """norse's LIF / LIFBox / LI / LIBox / IAF cells and layers -> IR neurons (docstring)."""
    from norse.torch.module import iaf, leaky_integrator, leaky_integrator_box, lif

    _check_no_time_reduction(value, path, module)
    shape = tuple(out)
    kind = type(module).__name__
    meta: dict[str, Any] = {"torch_module": path, "framework": "norse", "norse": kind,
                            "dt": float(module.dt)}
    start = "v_reset" if isinstance(module, (iaf.IAFCell, iaf.IAF)) else "v_leak"
    _norse_checks(module, path, shape, start)
    node: Node
    reset = ""
    if isinstance(module, (iaf.IAFCell, iaf.IAF)):
        reset = "zero"
        node = IF(v_threshold=_norse_param(module, "v_th", shape, path), v_reset=np.zeros(shape),
                  reset="zero", metadata=meta)
    else:
        rates = _norse_rates(module, path, shape)
        decay = {"beta": 1.0 - rates["a"], "gain": rates["a"]}
        if "b" in rates:
            decay.update(alpha=1.0 - rates["b"], gain_syn=np.ones(shape))
        if isinstance(module, (leaky_integrator.LICell, leaky_integrator.LI)):
            node = CubaLI(**decay, metadata=meta)
        elif isinstance(module, leaky_integrator_box.LIBoxCell):
            node = LI(**decay, metadata=meta)
        else:
            reset = _norse_reset(module, path)
            spiking = {"v_threshold": _norse_param(module, "v_th", shape, path),
                       "v_reset": _norse_param(module, "v_reset", shape, path), "reset": reset}
            cls = LIF if "b" not in rates else CubaLIF   # LIFBoxCell: a LIF
            node = cls(**decay, **spiking, metadata=meta)
    if isinstance(module, (lif.LIFRecurrentCell, lif.LIFRecurrent)):
        name = _norse_recurrent(b, path, module, value, node)
    else:
        name = b.add_node(node_name(path), node, value, path)
    if reset:
        b.resets[name] = reset
    return Value.node(name, out)
