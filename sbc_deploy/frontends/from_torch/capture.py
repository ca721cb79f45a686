"""Capture the dataflow of a torch module by running it once, with its framework's layers as leaves.

Stage contract: (module, sample) -> the events of one forward pass (leaf calls and the torch
ops between them), fed one by one to a :class:`Sink` that builds the graph.

Why run instead of trace: the forwards of spikingjelly, snntorch and norse networks branch on
their input (spikingjelly's BatchNorm checks ``x.dim()``, transformers ``x.ndim``, multi-step
loops over ``T``), which symbolic tracing (torch.fx, nirtorch) cannot pass. Running the module on
a real ``sample`` takes every branch as the sample takes it, and two hooks record what happened:

- forward hooks on the *leaf* modules (those the mapping table knows by type: convolutions,
  BatchNorm, pools, neurons, ...): a leaf's call is one event (module, its input, its output),
  and nothing inside it is recorded;
- a :class:`torch.overrides.TorchFunctionMode`, active for the whole pass, that records every
  torch function or tensor method called *outside* the leaves (``x + identity``,
  ``torch.flatten(x, 1)``, ``x_seq.flatten(0, 1)`` in a container, ``x.mean(0)``, ``x[t]`` in a
  time loop).

A module stack (pre/post hooks on every module) names where each op happened, so a refusal says
"at 'layer1.0' (BasicBlock): ...". The pass runs on a deep copy of the module in eval mode
under ``torch.no_grad()``: the user's module, its neuron states and its mode are not touched.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from sbc_deploy.errors import SbcDeployError, ShapeError


class Sink(Protocol):
    """What the capture reports to (the graph builder)."""

    def on_leaf(self, path: str, module: nn.Module, args: tuple[Any, ...],
                kwargs: dict[str, Any], output: Any) -> None: ...

    def on_op(self, where: str, name: str, func: Callable[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any], output: Any) -> None: ...


@dataclass
class _State:
    depth: int = 0              # > 0 while a leaf runs: its inner ops are not recorded
    stack: list[str] = field(default_factory=list)   # paths of the modules running now
    failed_at: str | None = None   # the innermost module whose forward raised


class _Recorder(TorchFunctionMode):
    """Reports every torch function called outside a leaf to the sink."""

    def __init__(self, sink: Sink, state: _State):
        super().__init__()
        self.sink, self.state = sink, state

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        if self.state.depth == 0:
            name = getattr(func, "__name__", repr(func))
            where = self.state.stack[-1] if self.state.stack else ""
            self.sink.on_op(where, name, func, args, kwargs, output)
        return output


def op_name(func: Callable[..., Any]) -> str:
    """``Tensor.__radd__`` -> ``radd``, ``torch.flatten`` -> ``flatten``."""
    return getattr(func, "__name__", repr(func)).strip("_")


@contextlib.contextmanager
def _hooks(root: nn.Module, is_leaf: Callable[[str, nn.Module], bool], sink: Sink,
           state: _State) -> Iterator[None]:
    """Module-stack hooks on every module, leaf hooks on the leaves; removed on exit."""
    handles = []
    leaf_paths: list[str] = []
    for path, module in root.named_modules():
        if any(path.startswith(p + ".") for p in leaf_paths):
            continue  # inside a leaf: run as part of it, not recorded
        leaf = path != "" and is_leaf(path, module)
        if leaf:
            leaf_paths.append(path)
        handles.append(module.register_forward_pre_hook(_enter(path, leaf, state),
                                                        with_kwargs=True))
        handles.append(module.register_forward_hook(_leave(path, module, leaf, sink, state),
                                                     with_kwargs=True, always_call=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _enter(path: str, leaf: bool, state: _State) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any, kwargs: Any) -> None:
        state.stack.append(path)
        if leaf:
            state.depth += 1
    return hook


def _leave(path: str, module: nn.Module, leaf: bool, sink: Sink,
           state: _State) -> Callable[..., None]:
    def hook(mod: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if state.stack and state.stack[-1] == path:
            state.stack.pop()
        if output is None and state.failed_at is None:
            state.failed_at = f"module '{path}' ({type(mod).__name__})" if path else \
                f"{type(mod).__name__}.forward"
        if leaf:
            state.depth -= 1
            if state.depth == 0 and output is not None:   # None: the forward raised
                sink.on_leaf(path, module, tuple(args), dict(kwargs), output)
    return hook


@contextlib.contextmanager
def _no_triton_notice() -> Iterator[None]:
    """spikingjelly 2.0.0 registers its LIF kernels with ``torch.library.triton_op`` when a
    neuron first runs, and torch logs "Triton not available" (a warning meant for GPU builds)
    on a CPU-only install; that notice is held back while the module runs."""
    logger = logging.getLogger("torch._library.triton")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_captured(module: nn.Module, sample: torch.Tensor, sink: Sink,
                 is_leaf: Callable[[str, nn.Module], bool],
                 prepare: Callable[[nn.Module], None] | None = None,
                 call: Callable[[nn.Module, torch.Tensor], Any] | None = None) -> Any:
    """Run a deep copy of ``module`` on ``sample`` (eval mode, no grad), reporting to ``sink``.

    Args:
        module: the user's network (not modified).
        sample: what its ``forward`` takes (already on the module's dtype).
        sink: receives the events (:class:`Sink`), in call order.
        is_leaf: which modules are leaves (called as ``is_leaf(path, module)``).
        prepare: called on the copy before the pass (e.g. to reset neuron states).
        call: runs the copy on the sample (default ``copy(sample)``; norse's networks of cells
            are stepped through time by the caller's loop).

    Returns:
        What the copy's ``forward`` returned.

    Raises:
        ShapeError: the module fails on the sample (its own exception is chained).
        SbcDeployError: raised by the sink (passed through).
    """
    copied = copy.deepcopy(module).cpu().eval()
    if prepare is not None:
        prepare(copied)
    state = _State()
    with _hooks(copied, is_leaf, sink, state), torch.no_grad(), _no_triton_notice():
        try:
            with _Recorder(sink, state):
                return call(copied, sample) if call is not None else copied(sample)
        except SbcDeployError:   # the importer's own refusals
            raise
        except Exception as err:  # the user's forward failing on the sample
            raise ShapeError(f"fails on the sample of shape {tuple(sample.shape)}: "
                             f"{type(err).__name__}: {err}",
                             where=state.failed_at or f"{type(module).__name__}.forward") from err
