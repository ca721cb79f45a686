r"""Torch modules -> IR: spikingjelly, snntorch and norse networks as their authors build them.

Stage contract: ``(torch.nn.Module, sample) -> Graph`` (and, after compression, the graph's
weights back into the module's own parameter names: :mod:`.writeback`).

NIR cannot be the only door: the frameworks' NIR exporters trace symbolically and stop at the
control flow in the networks' forwards. ``from_torch`` takes the module itself:

1. **Capture** (:mod:`.capture`): run a deep copy of the module once on ``sample`` (eval mode, no
   gradients) with the framework's layers as leaves. Forward hooks record each leaf call (the
   module, its input, its output); a ``TorchFunctionMode`` records the torch ops *between* the
   leaves (residual sums, ``torch.flatten``, moves of the time and batch axes, ``x.mean(0)``).
   Control flow is taken as the sample takes it, so ``if x.dim() == 5`` and loops over ``T``
   need nothing special; a branch that depends on the *values* of the data is captured as the
   sample took it.
2. **Build** (:mod:`.build`): each tensor is a sum of IR node outputs; each leaf call one node,
   found again when a loop over time calls it again; per-sample shapes come from the tensors.
3. **Map by type** through one table (:func:`leaf_table`): torch's layers and spikingjelly's
   step-mode wrappers (:mod:`.layers`: Linear, Conv1d/2d, BatchNorm1d/2d folded into the synapse
   before it (a ``ChannelAffine`` elsewhere), MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, LayerNorm,
   Flatten, Dropout,
   Identity), and the frameworks' neurons (:mod:`.neurons`, with each framework's equations:
   spikingjelly fires at ``v >= threshold``, ``decay_input``, ``v_reset=None`` is a soft
   reset, ``tau`` counts steps, surrogate functions do not matter; snntorch's neurons as
   :mod:`~sbc_deploy.frontends.from_snntorch` maps them; norse's LIF / LIFBox / LI / LIBox /
   IAF / recurrent LIF cells and layers). Containers (``nn.Sequential``, spikingjelly's
   ``SeqToANNContainer`` / ``MultiStepContainer``, norse's ``SequentialState`` and ``Lift``,
   the user's own blocks) are transparent. A module it cannot map is refused when it is called, naming its path in the
   module tree, its type and what is supported; an op it cannot map is refused where its
   result reaches a layer or the output.

The sample is ``[T, B, *input_shape]`` for a module that takes sequences (spikingjelly multi-step,
a forward that loops over time, norse) and ``[B, *input_shape]`` for a single-step module
(spikingjelly ``step_mode='s'``): the step mode of spikingjelly's layers decides, else
``sequence=`` (default True). A norse ``SequentialState`` of cells (or a cell) takes one step per
call: it is run as norse runs it, ``out, state = module(x[t], state)`` for every ``t``
(:func:`norse_stepped`). The graph is one step of the network; its output is what the
forward returns (the first tensor of a tuple), read by spike count when it is spikes, else by
the mean over time (``Output.metadata["decoding"]``). A mean or sum over time followed only by
linear layers (``head(x.mean(0))``) is moved to the output's decoding.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from sbc_deploy.errors import ConfigError, ShapeError, UnsupportedNodeError
from sbc_deploy.frontends.from_torch import layers, neurons
from sbc_deploy.frontends.from_torch.build import GraphBuilder, LeafHandler, Value, where
from sbc_deploy.frontends.from_torch.capture import run_captured
from sbc_deploy.ir import Graph

log = logging.getLogger(__name__)

FRAMEWORKS: tuple[str, ...] = ("spikingjelly", "snntorch", "norse")
Shape = tuple[int, ...]

__all__ = ["FRAMEWORKS", "from_torch", "leaf_table", "supported_modules", "takes_sequence"]


def _framework_of(module: nn.Module) -> str | None:
    top = type(module).__module__.split(".")[0]
    return top if top in FRAMEWORKS else None


def leaf_table(frameworks: set[str]) -> dict[type, LeafHandler]:
    """Module type -> handler, for torch and the frameworks present in the network."""
    table: dict[type, LeafHandler] = {
        nn.Linear: layers.linear, nn.Conv1d: layers.conv1d, nn.Conv2d: layers.conv2d,
        nn.BatchNorm1d: layers.batchnorm, nn.BatchNorm2d: layers.batchnorm,
        nn.AvgPool2d: layers.avgpool2d, nn.AdaptiveAvgPool2d: layers.adaptive_avgpool2d,
        nn.MaxPool1d: layers.maxpool, nn.MaxPool2d: layers.maxpool,
        nn.Flatten: layers.flatten, nn.Dropout: layers.identity, nn.Dropout1d: layers.identity,
        nn.Dropout2d: layers.identity, nn.Identity: layers.identity,
        nn.LayerNorm: layers.layernorm,
    }
    if "spikingjelly" in frameworks:
        from spikingjelly.activation_based import layer, neuron

        table.update({
            layer.Linear: layers.linear, layer.Conv1d: layers.conv1d,
            layer.Conv2d: layers.conv2d, layer.BatchNorm1d: layers.batchnorm,
            layer.BatchNorm2d: layers.batchnorm, layer.AvgPool2d: layers.avgpool2d,
            layer.AdaptiveAvgPool2d: layers.adaptive_avgpool2d, layer.MaxPool1d: layers.maxpool,
            layer.MaxPool2d: layers.maxpool, layer.Flatten: layers.flatten,
            layer.Dropout: layers.identity, layer.Dropout2d: layers.identity,
            neuron.LIFNode: neurons.spikingjelly_neuron, neuron.IFNode: neurons.spikingjelly_neuron,
            neuron.SimpleLIFNode: neurons.spikingjelly_neuron,
            neuron.SimpleIFNode: neurons.spikingjelly_neuron,
        })
    if "snntorch" in frameworks:
        import snntorch

        table.update({snntorch.Leaky: neurons.snntorch_neuron,
                      snntorch.Synaptic: neurons.snntorch_neuron,
                      snntorch.RLeaky: neurons.snntorch_neuron})
    if "norse" in frameworks:
        import norse.torch as norse

        table.update({cell: neurons.norse_neuron for cell in (
            norse.LIFCell, norse.LIF, norse.LIFBoxCell, norse.LICell, norse.LI,
            norse.LIBoxCell, norse.IAFCell, norse.IAF, norse.LIFRecurrentCell,
            norse.LIFRecurrent)})
    return table


def supported_modules(frameworks: set[str]) -> str:
    names = sorted({f"{t.__module__.split('.')[0]}.{t.__name__}" for t in leaf_table(frameworks)
                    if t.__name__ != "MaxPool1d"})
    return ", ".join(names)


def _containers(frameworks: set[str]) -> tuple[type, ...]:
    """Modules whose forward only calls their children (norse's ``SequentialState`` is an
    ``nn.Sequential``; its ``Lift`` applies one module at every step)."""
    found: tuple[type, ...] = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    if "norse" in frameworks:
        import norse.torch as norse

        found += (norse.Lift,)
    return found


def _refuse(reason: str, frameworks: set[str]) -> LeafHandler:
    def handler(b: GraphBuilder, path: str, module: nn.Module, value: Value,
                out: Shape) -> Value:
        raise UnsupportedNodeError(f"{reason}; supported: {supported_modules(frameworks)}",
                                   where=where(path, module))
    return handler


def _classify(table: dict[type, LeafHandler], frameworks: set[str]) -> tuple[
        Callable[[str, nn.Module], bool], Callable[[str, nn.Module], LeafHandler]]:
    """``is_leaf`` and ``handler_for``: known types map; unknown stateful or parameterised
    modules are leaves whose handler refuses them (only if they are called)."""
    containers = _containers(frameworks)

    def refusal(module: nn.Module) -> str | None:
        if type(module) in table or isinstance(module, containers):
            return None
        own = [n for n, p in list(module._parameters.items()) + list(module._buffers.items())
               if p is not None]
        framework = _framework_of(module)
        if framework is not None and _is_stateful(module, framework):
            return f"{framework}.{type(module).__name__} has no IR mapping"
        if own:
            return (f"{type(module).__name__} holds parameters or buffers ({', '.join(own)}) "
                    "but is not a layer the importer knows")
        return None

    def is_leaf(path: str, module: nn.Module) -> bool:
        return type(module) in table or refusal(module) is not None

    def handler_for(path: str, module: nn.Module) -> LeafHandler:
        reason = refusal(module)
        return _refuse(reason, frameworks) if reason else table[type(module)]

    return is_leaf, handler_for


def _is_stateful(module: nn.Module, framework: str) -> bool:
    """A framework module with its own dynamics (neurons, synapse filters, recurrent cells)."""
    if framework == "spikingjelly":
        from spikingjelly.activation_based import base, layer

        containers = (layer.SeqToANNContainer, layer.MultiStepContainer,
                      getattr(layer, "StepModeContainer", layer.SeqToANNContainer))
        return isinstance(module, base.MemoryModule) and not isinstance(module, containers)
    if framework == "snntorch":
        import snntorch

        return isinstance(module, snntorch.SpikingNeuron)
    return True   # norse: every module has dynamics of its own


def _frameworks(module: nn.Module, source: str | None) -> set[str]:
    found = {f for f in (_framework_of(m) for m in module.modules()) if f is not None}
    if source is not None:
        if source not in FRAMEWORKS:
            raise ConfigError(f"unknown framework {source!r} for a torch module; known: "
                              f"{', '.join(FRAMEWORKS)}", where="from_torch(source=)")
        if found and source not in found:
            raise ConfigError(f"the module holds {', '.join(sorted(found))} layers, not "
                              f"{source} ones", where="from_torch(source=)")
    return found


def _sequence(module: nn.Module, frameworks: set[str], sequence: bool | None) -> bool:
    if sequence is not None:
        return bool(sequence)
    if "spikingjelly" in frameworks:
        modes = {getattr(m, "step_mode", None) for m in module.modules()} - {None}
        if modes:
            return "m" in modes
    return True


def takes_sequence(module: nn.Module, source: str | None = None,
                   sequence: bool | None = None) -> bool:
    """Whether ``from_torch`` runs ``module`` on ``[T, B, ...]`` (else ``[B, ...]``)."""
    return _sequence(module, _frameworks(module, source), sequence)


def _prepared_sample(sample: Any, sequence: bool, dtype: torch.dtype) -> torch.Tensor:
    """``sample`` as the module's dtype, with a batch of >= 2 samples and ``B != T``."""
    x = torch.as_tensor(sample).detach().cpu().to(dtype)
    needed = 3 if sequence else 2
    if x.dim() < needed:
        layout = "[T, B, *input_shape]" if sequence else "[B, *input_shape]"
        raise ShapeError(f"sample must be {layout}, got shape {tuple(x.shape)}",
                         where="from_torch(sample=)")
    steps = int(x.shape[0]) if sequence else 0
    axis = 1 if sequence else 0
    batch = int(x.shape[axis])
    if batch >= 2 and batch != steps:
        return x
    wanted = 3 if steps == 2 else 2
    index = torch.zeros(wanted, dtype=torch.long)   # repeat the first sample
    return x.index_select(axis, index).contiguous()


def norse_stepped(module: nn.Module) -> bool:
    """Whether a norse network takes one step per call, ``out, state = module(x[t], state)``:
    its top-level module is a ``SequentialState`` or a cell, and it holds a cell that no
    ``Lift`` steps through time."""
    import norse.torch as norse
    from norse.torch.module.snn import SNNCell, SNNRecurrentCell

    cells = (SNNCell, SNNRecurrentCell)
    if not isinstance(module, (norse.SequentialState, *cells)):
        return False
    lifted = {id(m) for lift in module.modules() if isinstance(lift, norse.Lift)
              for m in lift.modules()}
    return any(isinstance(m, cells) and id(m) not in lifted for m in module.modules())


def _run_norse_steps(module: nn.Module, x: torch.Tensor) -> Any:
    """norse's own loop over time for a network of cells: ``out, state = module(x[t], state)``
    from ``state = None``; the outputs stacked over time."""
    state, outputs = None, []
    for t in range(int(x.shape[0])):
        out, state = module(x[t], state)
        outputs.append(out)
    return torch.stack(outputs)


def _norse_dt(module: nn.Module) -> float | None:
    """The ``dt`` of a norse network's cells and layers, if they agree."""
    from norse.torch.module.snn import SNN, SNNCell, SNNRecurrent, SNNRecurrentCell

    dts = {float(m.dt) for m in module.modules()
           if isinstance(m, (SNN, SNNCell, SNNRecurrent, SNNRecurrentCell))}
    return dts.pop() if len(dts) == 1 else None


def _prepare(copied: nn.Module) -> None:
    """Neuron states of the copy back to their initial values (spikingjelly's reset)."""
    for sub in copied.modules():
        reset = getattr(sub, "reset", None)
        if callable(reset) and _framework_of(sub) == "spikingjelly":
            reset()


def from_torch(module: nn.Module, sample: Any, source: str | None = None, *,
               dt: float | None = None, sequence: bool | None = None) -> Graph:
    """Import a spikingjelly, snntorch or norse network (any ``nn.Module``) into the IR.

    Args:
        module: the network; not modified (a deep copy runs).
        sample: input of the network's ``forward``: ``[T, B, *input_shape]`` for a sequence
            module, ``[B, *input_shape]`` for a single-step one (module docstring). Its values
            only choose the branches the forward takes.
        source: the framework (``"spikingjelly"``, ``"snntorch"``, ``"norse"``); None: detected
            from the module's layer types. Recorded in the metadata.
        dt: seconds per step (these frameworks are discrete: it only labels the step; default
            1e-3, recorded as a default).
        sequence: whether ``forward`` takes a sequence; None: spikingjelly's step mode, else
            True.

    Returns:
        A graph ``input -> ... -> output`` whose nodes are named after the module paths
        (``layer1.0.conv1`` -> ``layer1_0_conv1``); ``metadata["torch_modules"]`` maps node ->
        path, synapse nodes carry their parameter names (``metadata["torch_params"]``).

    Raises:
        UnsupportedNodeError: a module or op with no IR equivalent (its path and type named).
        ShapeError: the sample does not fit the module.
        ConfigError: bad ``source`` or ``dt``.
    """
    if not isinstance(module, nn.Module):
        raise ConfigError(f"expected a torch.nn.Module, got {type(module).__name__}",
                          where="from_torch(module=)")
    if dt is not None and not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
        raise ConfigError(f"dt must be a positive number of seconds, got {dt!r}",
                          where="from_torch(dt=)")
    frameworks = _frameworks(module, source)
    seq = _sequence(module, frameworks, sequence)
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    x = _prepared_sample(sample, seq, dtype)
    table = leaf_table(frameworks)
    is_leaf, handler_for = _classify(table, frameworks)
    builder = GraphBuilder(x, sequence=seq, handler_for=handler_for,
                           root_type=type(module).__name__)
    stepped = "norse" in frameworks and seq and norse_stepped(module)
    output = run_captured(module, x, builder, is_leaf, prepare=_prepare,
                          call=_run_norse_steps if stepped else None)
    resets = set(builder.resets.values())
    framework = source or ("+".join(sorted(frameworks)) if frameworks else "torch")
    cells_dt = _norse_dt(module) if "norse" in frameworks and dt is None else None
    metadata = {
        "source_format": "torch", "framework": framework,
        "dt": float(dt or cells_dt or 1e-3),
        "dt_source": ("argument dt of from_torch" if dt else "the norse cells' dt" if cells_dt
                      else "default label 1 ms (the framework counts time in steps)"),
        "reset": resets.pop() if len(resets) == 1 else None,
        "reset_source": f"{framework} neurons' reset modes",
        "discretization": "euler", "torch_sequence": seq, "torch_root": type(module).__name__,
        "torch_steps": int(x.shape[0]) if seq else None, "torch_stepped": bool(stepped),
    }
    graph = layers.fold_batchnorms(builder.finish(output, metadata))
    log.info("from_torch: %s, %d nodes, %d edges, sequence=%s", framework, len(graph.nodes),
             len(graph.edges), seq)
    return graph
