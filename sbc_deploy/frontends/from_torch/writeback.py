r"""The compressed graph's weights back in the user's module, under its own parameter names.

Stage contract: (compressed Graph from :func:`~sbc_deploy.frontends.from_torch.from_torch`, the
module it came from) -> a state dict (name -> tensor) that ``module.load_state_dict`` takes, so
that the user's framework runs the compressed network.

Every synapse node of an imported graph names its parameters (``metadata["torch_params"]``:
``{"weight": "layer1.0.conv1.weight", "bias": ...}``); every other entry of the module's state
dict is copied unchanged.

Folded BatchNorm. The importer folded ``BN(W x + b)`` into ``W' = s W``, ``b' = s b + shift``
(``s = gamma / sqrt(var + eps)``, ``shift = beta - mean s``, per output channel; :mod:`.layers`).
The state dict keeps the BatchNorm exactly as it is and undoes the fold on the synapse
(:meth:`~sbc_deploy.ir.transforms.AffineFold.unfold`): ``W = W'_compressed / s`` row by row and
``b = (b' - shift) / s``, so the user's ``BN(W x + b)`` computes ``W'_compressed x + b'`` again,
and a pruned weight (``0``) stays exactly ``0`` in the module. A channel with ``s = 0`` (``gamma
= 0``) ignores its weights; they are written as zeros. Compression leaves biases as they are, so
a layer without a bias stays without one; if the folded bias was changed all the same, a layer
without a bias gets the difference through the BatchNorm's ``running_mean`` instead. With ``s`` a
power of two the division is exact; otherwise ``W'/s`` is rounded once to the module's dtype and
the BatchNorm multiplies it back within one rounding of ``W'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from sbc_deploy.errors import ExportError
from sbc_deploy.ir import Graph, Synapse
from sbc_deploy.ir.transforms import AffineFold

STATE_DICT_FILE = "compressed_state_dict.pt"

__all__ = ["STATE_DICT_FILE", "compressed_state_dict", "write_state_dict"]


def _unfold(node: Synapse, bn: Mapping[str, Any], state: dict[str, torch.Tensor],
            params: Mapping[str, str | None]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The weight to store for a synapse that carries a folded BatchNorm, and the other
    entries that must change to keep the compressed bias (see the module docstring)."""
    scale = np.asarray(bn["scale"], dtype=np.float64)
    shift = np.asarray(bn["shift"], dtype=np.float64)
    fold = AffineFold(str(bn["module"]), "", scale, shift)
    weight, bias = fold.unfold(node.weight, node.bias)
    changes: dict[str, np.ndarray] = {}
    if params.get("bias"):
        changes[str(params["bias"])] = np.zeros_like(scale) if bias is None else bias
    elif bias is not None:   # the folded bias changed: move the change into running_mean
        prefix = f"{bn['module']}." if bn["module"] else ""
        key = f"{prefix}running_mean"
        if key not in state:
            raise ExportError(f"the compressed bias needs '{key}', which the module does not "
                              "have")
        mean = state[key].detach().cpu().double().numpy()
        changes[key] = np.where(scale != 0, mean - bias, mean)
    return weight, changes


def compressed_state_dict(graph: Graph, module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state dict with every synapse of ``graph`` written back (module docstring).

    Raises:
        ExportError: the graph names a parameter the module does not have, or of another shape
            (the graph was not imported from this module).
    """
    state = {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}
    for name, node in graph.nodes.items():
        params = node.metadata.get("torch_params") if isinstance(node, Synapse) else None
        if not params:
            continue
        key = str(params["weight"])
        if key not in state:
            raise ExportError(f"names the parameter '{key}', which the module does not have",
                              where=f"node '{name}'")
        bn = node.metadata.get("torch_batchnorm")
        changes: dict[str, np.ndarray] = {}
        if bn:
            weight, changes = _unfold(node, bn, state, params)
        else:
            weight = np.asarray(node.weight, dtype=np.float64)
            bias_key = params.get("bias")
            if bias_key and node.bias is not None:
                changes[str(bias_key)] = np.asarray(node.bias, dtype=np.float64)
        changes[key] = weight
        for entry, array in changes.items():
            target = state[entry]
            if tuple(target.shape) != tuple(array.shape):
                raise ExportError(f"'{entry}' has shape {tuple(target.shape)} in the module, "
                                  f"{tuple(array.shape)} in the graph", where=f"node '{name}'")
            state[entry] = torch.from_numpy(np.array(array, dtype=np.float64)).to(target.dtype)
    return state


def write_state_dict(graph: Graph, module: nn.Module, folder: str | Path) -> dict[str, Path]:
    """Write :func:`compressed_state_dict` to ``folder/compressed_state_dict.pt`` (atomically:
    a temporary file renamed over it). Returns ``{"torch_state_dict": path}``."""
    path = Path(folder) / STATE_DICT_FILE
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(compressed_state_dict(graph, module), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"torch_state_dict": path}
