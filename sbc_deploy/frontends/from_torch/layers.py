r"""Torch layers -> IR nodes, by type (torch's own and spikingjelly's step-mode wrappers alike).

Each handler gets the layer's input :class:`~.build.Value` (per-sample shape known from the pass)
and returns the value of its output. Every synapse node records the module it came from
(``metadata["torch_module"]`` and the parameter names in ``metadata["torch_params"]``), which
is how :mod:`.writeback` puts compressed weights back under the module's own names.

BatchNorm (eval mode, running statistics) is folded exactly into the synapse before it: with
``s = gamma / sqrt(running_var + eps)`` per output channel,

.. math::

    \mathrm{BN}(W x + b) = (s \odot W) x + (s \odot (b - \mu) + \beta)

so the synapse's weight rows are multiplied by ``s`` and its bias becomes
``s * (b - mean) + beta``; ``metadata["torch_batchnorm"]`` keeps the BatchNorm's path and
``s``. A BatchNorm that does not directly follow a convolution or linear layer whose output
goes only to it is refused (the IR has no per-channel affine node yet).

``AdaptiveAvgPool2d`` whose output size divides the input size is exactly an ``AvgPool2d``
(kernel = stride = input / output); other output sizes are refused. ``MaxPool`` is refused until
the IR has a max-pool node (a max of binary spikes is their OR).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from torch import nn

from sbc_deploy.errors import ShapeError, UnsupportedNodeError
from sbc_deploy.frontends.from_snntorch import _conv_padding
from sbc_deploy.frontends.from_torch.build import (
    GraphBuilder,
    PendingBatchNorm,
    Value,
    node_name,
    where,
)
from sbc_deploy.ir import Affine, AvgPool2d, Conv1d, Conv2d, Synapse

Shape = tuple[int, ...]


def _array(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().double().numpy().copy()


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _params(path: str, module: nn.Module) -> dict[str, Any]:
    prefix = f"{path}." if path else ""
    bias = getattr(module, "bias", None)
    return {"torch_module": path,
            "torch_params": {"weight": f"{prefix}weight",
                             "bias": None if bias is None else f"{prefix}bias"}}


def _synapse(b: GraphBuilder, path: str, node: Synapse, value: Value, out_shape: Shape,
             module: nn.Module) -> Value:
    if tuple(node.output_shape) != tuple(out_shape):
        raise ShapeError(f"the IR computes output shape {tuple(node.output_shape)}, torch "
                         f"{tuple(out_shape)}", where=where(path, module))
    name = b.add_node(node_name(path), node, replace(value, time_reduction=None), path)
    return Value.node(name, out_shape, value.time_reduction)


def linear(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    if value.shape != (module.in_features,):
        raise ShapeError(f"expects {module.in_features} inputs per sample, receives shape "
                         f"{value.shape}", where=where(path, module),
                         hint="flatten the input first (nn.Flatten or torch.flatten)")
    bias = None if module.bias is None else _array(module.bias)
    return _synapse(b, path, Affine(_array(module.weight), bias=bias,
                                    metadata=_params(path, module)), value, out, module)


def conv2d(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    kernel = tuple(module.kernel_size)
    node = Conv2d(_array(module.weight), input_shape=value.shape,
                  bias=None if module.bias is None else _array(module.bias),
                  stride=tuple(module.stride),
                  padding=_conv_padding(module, kernel, where(path, module)),
                  dilation=tuple(module.dilation), groups=module.groups,
                  metadata=_params(path, module))
    return _synapse(b, path, node, value, out, module)


def conv1d(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    kernel = tuple(module.kernel_size)
    node = Conv1d(_array(module.weight), input_shape=value.shape,
                  bias=None if module.bias is None else _array(module.bias),
                  stride=module.stride[0],
                  padding=_conv_padding(module, kernel, where(path, module))[0],
                  dilation=module.dilation[0], groups=module.groups,
                  metadata=_params(path, module))
    return _synapse(b, path, node, value, out, module)


def batchnorm(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    if module.running_mean is None or module.running_var is None:
        raise UnsupportedNodeError("has no running statistics (track_running_stats=False): "
                                   "it normalises each batch by itself, which no chip does",
                                   where=where(path, module))
    channels = int(module.num_features)
    if not value.shape or value.shape[0] != channels:
        raise ShapeError(f"normalises {channels} channels, its input has per-sample shape "
                         f"{value.shape}", where=where(path, module))
    var = _array(module.running_var)
    scale = (_array(module.weight) if module.weight is not None else np.ones(channels)) / \
        np.sqrt(var + float(module.eps))
    beta = _array(module.bias) if module.bias is not None else np.zeros(channels)
    shift = beta - _array(module.running_mean) * scale
    name = b.add_node(node_name(path), PendingBatchNorm(path, scale, shift, value.shape),
                      replace(value, time_reduction=None), path)
    return Value.node(name, out, value.time_reduction)


def avgpool2d(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    padding = _pair(module.padding)
    if module.ceil_mode or module.divisor_override is not None or \
            (not module.count_include_pad and any(padding)):
        raise UnsupportedNodeError("ceil_mode, divisor_override and count_include_pad=False "
                                   "are not supported", where=where(path, module))
    node = AvgPool2d(_pair(module.kernel_size), input_shape=value.shape,
                     stride=_pair(module.stride or module.kernel_size), padding=padding)
    return _pool(b, path, module, node, value, out)


def adaptive_avgpool2d(b: GraphBuilder, path: str, module: nn.Module, value: Value,
                       out: Shape) -> Value:
    if len(value.shape) != 3:
        raise ShapeError(f"expects (C, H, W) per sample, receives {value.shape}",
                         where=where(path, module))
    size = module.output_size if isinstance(module.output_size, (tuple, list)) \
        else (module.output_size, module.output_size)
    _, h, w = value.shape
    wanted = (h if size[0] is None else int(size[0]), w if size[1] is None else int(size[1]))
    if h % wanted[0] or w % wanted[1]:
        raise UnsupportedNodeError(
            f"adaptive pooling of {h}x{w} to {wanted[0]}x{wanted[1]} uses windows of unequal "
            "size; only output sizes that divide the input are supported (an AvgPool2d)",
            where=where(path, module))
    kernel = (h // wanted[0], w // wanted[1])
    node = AvgPool2d(kernel, input_shape=value.shape, stride=kernel)
    return _pool(b, path, module, node, value, out)


def _pool(b: GraphBuilder, path: str, module: nn.Module, node: AvgPool2d, value: Value,
          out: Shape) -> Value:
    if tuple(node.output_shape) != tuple(out):
        raise ShapeError(f"the IR computes output shape {tuple(node.output_shape)}, torch "
                         f"{tuple(out)}", where=where(path, module))
    name = b.keyed(("module", path), lambda: b.add_node(
        node_name(path), node, replace(value, time_reduction=None), path))
    return Value.node(name, out, value.time_reduction)


def maxpool(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    raise UnsupportedNodeError(
        "max pooling is not in the IR yet (a max of binary spikes is their OR; the node is "
        "being added, issue 18)", where=where(path, module),
        hint="use AvgPool2d, or wait for the MaxPool2d node")


def flatten(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    if out == value.shape:
        return value
    from sbc_deploy.frontends.from_torch.build import _Refused

    try:
        return b.reshape(value, out, path)
    except _Refused as err:
        raise UnsupportedNodeError(str(err), where=where(path, module)) from None


def identity(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    """Dropout in eval mode and nn.Identity: the input itself."""
    if out != value.shape:
        raise ShapeError(f"changes the shape {value.shape} -> {out}", where=where(path, module))
    return value


# --------------------------------------------------------------------------- BatchNorm folding


def fold_batchnorms(b: GraphBuilder) -> None:
    """Fold every :class:`PendingBatchNorm` into the synapse that feeds it (module docstring)."""
    for name, node in list(b.nodes.items()):
        if not isinstance(node, PendingBatchNorm):
            continue
        sources = b.predecessors(name)
        synapse = b.synapse(sources[0]) if len(sources) == 1 else None
        if synapse is None or b.successors(sources[0]) != [name]:
            feeding = ", ".join(f"'{s}' ({getattr(b.nodes[s], 'kind', '?')})" for s in sources)
            raise UnsupportedNodeError(
                f"BatchNorm is fed by {feeding or 'nothing'}; it folds only into a "
                "convolution or linear layer whose output goes to it alone (the IR has no "
                "per-channel affine node yet)", where=f"module '{node.path}' (BatchNorm)")
        b.nodes[sources[0]] = _folded(synapse, node)
        b.edges = [(sources[0] if s == name else s, d) for s, d in b.edges if d != name]
        del b.nodes[name]


def _folded(synapse: Synapse, bn: PendingBatchNorm) -> Synapse:
    scale, shift = bn.scale, bn.shift
    weight = np.asarray(synapse.weight)
    if weight.shape[0] != scale.shape[0]:
        raise ShapeError(f"BatchNorm of {scale.shape[0]} channels after a layer of "
                         f"{weight.shape[0]} outputs", where=f"module '{bn.path}' (BatchNorm)")
    bias = np.zeros(weight.shape[0]) if synapse.bias is None else np.asarray(synapse.bias)
    folded_weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    metadata = {**synapse.metadata,
                "torch_batchnorm": {"module": bn.path, "scale": tuple(float(v) for v in scale),
                                    "had_bias": synapse.bias is not None}}
    return replace(synapse, weight=folded_weight, bias=bias * scale + shift,  # type: ignore
                   encoding=None, metadata=metadata)
