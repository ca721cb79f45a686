r"""Torch layers -> IR nodes, by type (torch's own and spikingjelly's step-mode wrappers alike).

Each handler gets the layer's input :class:`~.build.Value` (per-sample shape known from the pass)
and returns the value of its output. Every synapse node records the module it came from
(``metadata["torch_module"]`` and the parameter names in ``metadata["torch_params"]``), which
is how :mod:`.writeback` puts compressed weights back under the module's own names.

BatchNorm (eval mode, running statistics) becomes a ``ChannelAffine`` (``scale = gamma /
sqrt(running_var + eps)``, ``shift = beta - running_mean * scale``), which
:func:`~sbc_deploy.ir.transforms.fold_channel_affines` folds exactly into the synapse before it
where that synapse feeds it alone:

.. math::

    \mathrm{BN}(W x + b) = (s \odot W) x + (s \odot b + \mathrm{shift})

The folded synapse's ``metadata["torch_batchnorm"]`` keeps the BatchNorm's module path, ``scale``
and ``shift`` (for :mod:`.writeback`). A BatchNorm after a residual sum, a neuron or a pool stays
a ``ChannelAffine`` node.

``MaxPool2d`` maps to the IR's ``MaxPool2d`` (on spikes a max is an OR); ``AdaptiveAvgPool2d``
to an ``AvgPool2d`` where its output size divides the input (exactly the same windows), else to
the IR's ``AdaptiveAvgPool2d``; ``LayerNorm`` to ``LayerNorm``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from torch import nn

from sbc_deploy.errors import ShapeError, UnsupportedNodeError
from sbc_deploy.frontends.from_snntorch import _conv_padding
from sbc_deploy.frontends.from_torch.build import GraphBuilder, Refused, Value, node_name, where
from sbc_deploy.ir import (
    AdaptiveAvgPool2d,
    Affine,
    AvgPool2d,
    ChannelAffine,
    Conv1d,
    Conv2d,
    Graph,
    LayerNorm,
    MaxPool2d,
    Node,
    batchnorm_affine,
)
from sbc_deploy.ir.transforms import fold_channel_affines

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


def linear(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    if value.shape != (module.in_features,):
        raise ShapeError(f"expects {module.in_features} inputs per sample, receives shape "
                         f"{value.shape}", where=where(path, module),
                         hint="flatten the input first (nn.Flatten or torch.flatten)")
    bias = None if module.bias is None else _array(module.bias)
    node = Affine(_array(module.weight), bias=bias, metadata=_params(path, module))
    return _shaped(b, path, module, node, value, out)


def conv2d(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    kernel = tuple(module.kernel_size)
    node = Conv2d(_array(module.weight), input_shape=value.shape,
                  bias=None if module.bias is None else _array(module.bias),
                  stride=tuple(module.stride),
                  padding=_conv_padding(module, kernel, where(path, module)),
                  dilation=tuple(module.dilation), groups=module.groups,
                  metadata=_params(path, module))
    return _shaped(b, path, module, node, value, out)


def conv1d(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    kernel = tuple(module.kernel_size)
    node = Conv1d(_array(module.weight), input_shape=value.shape,
                  bias=None if module.bias is None else _array(module.bias),
                  stride=module.stride[0],
                  padding=_conv_padding(module, kernel, where(path, module))[0],
                  dilation=module.dilation[0], groups=module.groups,
                  metadata=_params(path, module))
    return _shaped(b, path, module, node, value, out)


def batchnorm(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    if module.running_mean is None or module.running_var is None:
        raise UnsupportedNodeError("has no running statistics (track_running_stats=False): "
                                   "it normalises each batch by itself, which no chip does",
                                   where=where(path, module))
    channels = int(module.num_features)
    if not value.shape or value.shape[0] != channels:
        raise ShapeError(f"normalises {channels} channels, its input has per-sample shape "
                         f"{value.shape}", where=where(path, module))
    gamma = None if module.weight is None else _array(module.weight)
    beta = None if module.bias is None else _array(module.bias)
    scale, shift = batchnorm_affine(gamma, beta, _array(module.running_mean),
                                    _array(module.running_var), float(module.eps))
    node = ChannelAffine(scale, shift, value.shape, metadata={"torch_module": path,
                                                             "torch_batchnorm": path})
    name = b.add_node(node_name(path), node, replace(value, time_reduction=None), path)
    return Value.node(name, out, value.time_reduction)


def layernorm(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    shape = tuple(int(v) for v in module.normalized_shape)
    if tuple(value.shape[len(value.shape) - len(shape):]) != shape:
        raise ShapeError(f"normalises the trailing axes {shape}, its input has per-sample shape "
                         f"{value.shape}", where=where(path, module))
    weight = _array(module.weight) if module.weight is not None else np.ones(shape)
    bias = _array(module.bias) if getattr(module, "bias", None) is not None else np.zeros(shape)
    node = LayerNorm(value.shape, weight, bias, eps=float(module.eps),
                     metadata={"torch_module": path})
    return _shaped(b, path, module, node, value, out)


def avgpool2d(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    padding = _pair(module.padding)
    if module.ceil_mode or module.divisor_override is not None or \
            (not module.count_include_pad and any(padding)):
        raise UnsupportedNodeError("ceil_mode, divisor_override and count_include_pad=False "
                                   "are not supported", where=where(path, module))
    node = AvgPool2d(_pair(module.kernel_size), input_shape=value.shape,
                     stride=_pair(module.stride or module.kernel_size), padding=padding)
    return _shaped(b, path, module, node, value, out)


def adaptive_avgpool2d(b: GraphBuilder, path: str, module: nn.Module, value: Value,
                       out: Shape) -> Value:
    if len(value.shape) != 3:
        raise ShapeError(f"expects (C, H, W) per sample, receives {value.shape}",
                         where=where(path, module))
    size = module.output_size if isinstance(module.output_size, (tuple, list)) \
        else (module.output_size, module.output_size)
    _, h, w = value.shape
    wanted = (h if size[0] is None else int(size[0]), w if size[1] is None else int(size[1]))
    adaptive = AdaptiveAvgPool2d(wanted, value.shape)
    node = adaptive.as_avg_pool() or adaptive
    return _shaped(b, path, module, node, value, out)


def _shaped(b: GraphBuilder, path: str, module: nn.Module, node: Node, value: Value,
            out: Shape) -> Value:
    """Add ``node`` (a synapse, pool or norm) for ``module`` after checking its output shape
    against torch's ``out``."""
    if tuple(node.output_shape) != tuple(out):
        raise ShapeError(f"the IR computes output shape {tuple(node.output_shape)}, torch "
                         f"{tuple(out)}", where=where(path, module))
    name = b.add_node(node_name(path), node, replace(value, time_reduction=None), path)
    return Value.node(name, out, value.time_reduction)


def maxpool(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    if isinstance(module, nn.MaxPool1d) or len(value.shape) != 3:
        raise UnsupportedNodeError(f"max pooling of per-sample shape {value.shape}; only "
                                   "MaxPool2d on (C, H, W) is supported", where=where(path, module))
    if module.ceil_mode or _pair(module.dilation) != (1, 1) or module.return_indices:
        raise UnsupportedNodeError("ceil_mode, dilation and return_indices are not supported",
                                   where=where(path, module))
    node = MaxPool2d(_pair(module.kernel_size), input_shape=value.shape,
                     stride=_pair(module.stride or module.kernel_size),
                     padding=_pair(module.padding), metadata={"torch_module": path})
    return _shaped(b, path, module, node, value, out)


def flatten(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    if out == value.shape:
        return value
    try:
        return b.reshape(value, out, path)
    except Refused as err:
        raise UnsupportedNodeError(str(err), where=where(path, module)) from None


def identity(b: GraphBuilder, path: str, module: nn.Module, value: Value, out: Shape) -> Value:
    """Dropout in eval mode and nn.Identity: the input itself."""
    if out != value.shape:
        raise ShapeError(f"changes the shape {value.shape} -> {out}", where=where(path, module))
    return value


# --------------------------------------------------------------------------- BatchNorm folding


def fold_batchnorms(graph: Graph) -> Graph:
    """Fold each BatchNorm (``ChannelAffine``) that follows a synapse alone into it, and record
    on the synapse what :mod:`.writeback` needs to undo the fold (module docstring)."""
    folded, folds = fold_channel_affines(graph)
    if not folds:
        return folded
    changes = {}
    for fold in folds:
        synapse = folded.nodes[fold.synapse]
        bn_path = graph.nodes[fold.affine].metadata.get("torch_batchnorm", fold.affine)
        record = {"module": bn_path, "scale": tuple(float(v) for v in fold.scale),
                  "shift": tuple(float(v) for v in fold.shift)}
        changes[fold.synapse] = synapse.replace(
            metadata={**synapse.metadata, "torch_batchnorm": record})
    modules = {n: p for n, p in folded.metadata.get("torch_modules", {}).items()
               if n in folded.nodes}
    return folded.replace_nodes(changes).with_metadata(torch_modules=modules)
