"""NIR writers for the graph-operation nodes (issue 18), and why NIR cannot hold the others.

NIR 1.0 has no max pool, no product of two activations (its edges only add), no normalisation,
no reshape other than ``Flatten``, no permutation, slice or reduction. What it can hold, exactly:

- ``ChannelAffine`` -> a convolution with a 1 x 1 kernel ``diag(scale)`` and bias ``shift``
  (``Conv2d`` / ``Conv1d``; not ``groups = C``: nir 1.0.8's type inference takes the input
  channels from the weight alone), or an ``Affine`` with a diagonal weight on a 1-D layer (a
  reader gets back a synapse layer computing the same map);
- ``Identity`` -> ``Scale`` by one;
- ``AdaptiveAvgPool2d`` whose output size divides its input size -> ``AvgPool2d``;
- ``Reshape`` that merges consecutive axes (a flatten) -> ``Flatten``.

Everything else is refused by :func:`refusal`, naming what NIR lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import nir
import numpy as np

from sbc_deploy.errors import ExportError
from sbc_deploy.ir import (
    AdaptiveAvgPool2d,
    ChannelAffine,
    Identity,
    LayerNorm,
    MatMul,
    MaxPool2d,
    Node,
    Permute,
    Product,
    Reduce,
    Reshape,
    Slice,
)

__all__ = ["OPERATION_WRITERS", "refusal"]

_NO_PRIMITIVE: dict[type, str] = {
    MaxPool2d: "NIR has no max-pooling primitive (only SumPool2d and AvgPool2d)",
    LayerNorm: "NIR has no normalisation primitive",
    Product: "NIR has no product of two activations (edges into a NIR node add up)",
    MatMul: "NIR has no product of two activations (edges into a NIR node add up)",
    Permute: "NIR has no permutation (transpose) primitive",
    Slice: "NIR has no slice primitive",
    Reduce: "NIR has no sum or mean over axes",
}


def _merged_axes(node: Reshape) -> tuple[int, int] | None:
    """``(start, end)`` when the reshape merges input axes ``start..end`` into one, else None."""
    shape_in, shape_out = node.input_shape, node.output_shape
    for start in range(len(shape_in)):
        for end in range(start, len(shape_in)):
            merged = (*shape_in[:start], int(np.prod(shape_in[start:end + 1])),
                      *shape_in[end + 1:])
            if merged == tuple(shape_out):
                return start, end
    return None


def _write_channel_affine(node: ChannelAffine, ctx: Any) -> nir.NIRNode:
    scale, shift = np.array(node.scale), np.array(node.shift)
    if len(node.input_shape) == 1:
        return nir.Affine(weight=np.diag(scale), bias=shift)
    if len(node.input_shape) == 2:
        return nir.Conv1d(input_shape=int(node.input_shape[1]),
                          weight=np.diag(scale)[:, :, None], stride=1, padding=0,
                          dilation=1, groups=1, bias=shift)
    if len(node.input_shape) == 3:
        return nir.Conv2d(input_shape=tuple(node.input_shape[1:]),
                          weight=np.diag(scale)[:, :, None, None], stride=np.array([1, 1]),
                          padding=np.array([0, 0]), dilation=np.array([1, 1]), groups=1,
                          bias=shift)
    raise ExportError(f"a ChannelAffine on a {len(node.input_shape)}-D layer has no NIR "
                     "equivalent (NIR convolutions are 1-D or 2-D)", where=ctx.where)


def _write_identity(node: Identity, ctx: Any) -> nir.NIRNode:
    return nir.Scale(scale=np.ones(node.shape))


def _write_adaptive(node: AdaptiveAvgPool2d, ctx: Any) -> nir.NIRNode:
    lowered = node.as_avg_pool()
    if lowered is None:
        raise ExportError(f"an adaptive pool from {node.input_shape[1:]} to {node.output_size} "
                          "has windows of unequal size; NIR's AvgPool2d has one window size",
                          where=ctx.where)
    return nir.AvgPool2d(kernel_size=np.array(lowered.kernel_size),
                         stride=np.array(lowered.stride), padding=np.array([0, 0]))


def _write_reshape(node: Reshape, ctx: Any) -> nir.NIRNode:
    axes = _merged_axes(node)
    if axes is None:
        raise ExportError(f"a reshape {node.input_shape} -> {node.output_shape} that does not "
                          "merge consecutive axes has no NIR equivalent (NIR has Flatten only)",
                          where=ctx.where)
    return nir.Flatten(input_type={"input": np.array(node.input_shape)}, start_dim=axes[0],
                       end_dim=axes[1])


OPERATION_WRITERS: dict[type, Callable[[Any, Any], nir.NIRNode]] = {
    ChannelAffine: _write_channel_affine,
    Identity: _write_identity,
    AdaptiveAvgPool2d: _write_adaptive,
    Reshape: _write_reshape,
}


def refusal(node: Node) -> str | None:
    """Why NIR cannot hold ``node`` (None when it is not a refused graph operation)."""
    return _NO_PRIMITIVE.get(type(node))
