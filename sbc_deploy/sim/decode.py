"""Decoding a network's output sequence into class predictions.

An Output sequence is ``[T, B, C]``. Four read-outs:

- ``"spike_count"``: the class whose neuron spiked most, ``argmax_c sum_t y[t, b, c]``;
- ``"membrane_last"``: ``argmax_c y[T-1, b, c]`` (the read-out potential at the last step);
- ``"membrane_max"``: ``argmax_c max_t y[t, b, c]``;
- ``"membrane_mean"``: ``argmax_c mean_t y[t, b, c]``.

Ties (equal counts are common with few spikes, including a silent output layer) go to the lowest
class index, always: ``torch.argmax`` returns the first maximal index, and this module relies on
that documented behaviour on every device.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

from sbc_deploy.errors import ConfigError, DataError
from sbc_deploy.ir import Delay, Graph, Neuron, Threshold

Decoding = Literal["spike_count", "membrane_last", "membrane_max", "membrane_mean"]
DECODINGS: tuple[str, ...] = get_args(Decoding)


def classify(outputs: Tensor | np.ndarray, mode: Decoding) -> Tensor:
    """Predicted class per sample.

    Args:
        outputs: ``[T, B, C]`` output sequence (spikes or membrane potentials).
        mode: one of :data:`DECODINGS` (see the module docstring).

    Returns:
        ``LongTensor [B]``; ties go to the lowest class index.

    Raises:
        ConfigError: unknown ``mode``.
        DataError: ``outputs`` is not 3-D or has no step or class.
    """
    if mode not in DECODINGS:
        raise ConfigError(f"unknown decoding {mode!r}; known: {', '.join(DECODINGS)}",
                          where="classify(mode=)")
    y = torch.as_tensor(outputs)
    if y.dim() != 3 or y.shape[0] == 0 or y.shape[2] == 0:
        raise DataError(f"outputs must be [T, B, C] with T, C >= 1, got shape {tuple(y.shape)}",
                        where="classify(outputs=)")
    if not y.is_floating_point():
        y = y.to(torch.float64)
    if mode == "spike_count":
        score = y.sum(0)
    elif mode == "membrane_last":
        score = y[-1]
    elif mode == "membrane_max":
        score = y.amax(0)
    else:
        score = y.mean(0)
    return score.argmax(-1)


def accuracy(pred: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> float:
    """Fraction of samples with ``pred == labels`` (both ``[B]`` integer class indices)."""
    pred_t = torch.as_tensor(np.array(pred) if isinstance(pred, np.ndarray) else pred).reshape(-1)
    labels_t = torch.as_tensor(np.array(labels) if isinstance(labels, np.ndarray)
                               else labels).reshape(-1)
    if pred_t.shape != labels_t.shape or pred_t.numel() == 0:
        raise DataError(f"pred {tuple(torch.as_tensor(pred).shape)} and labels "
                        f"{tuple(torch.as_tensor(labels).shape)} must be two non-empty [B] "
                        "arrays of the same length", where="accuracy")
    return float((pred_t.to(torch.long) == labels_t.to(torch.long)).to(torch.float64).mean())


def default_decoding(graph: Graph, output: str | None = None) -> Decoding:
    """The natural read-out of an Output node.

    ``"spike_count"`` when everything feeding the Output spikes (a spiking neuron, or a
    Threshold, also through a Delay: late spikes are spikes, as in a network converted for
    spyx, which sends each spike one step late); ``"membrane_last"`` for LI / CubaLI /
    Integrator and synapse read-outs.

    Args:
        graph: the network.
        output: the Output node (default: the graph's only Output).

    Raises:
        ConfigError: ``output`` is not an Output node, or the graph has several and none is
            named.
    """
    if output is None:
        if len(graph.outputs) != 1:
            raise ConfigError(f"the graph has {len(graph.outputs)} Outputs "
                              f"({', '.join(graph.outputs)}); name one",
                              where="default_decoding(output=)")
        output = graph.outputs[0]
    if output not in graph.outputs:
        raise ConfigError(f"'{output}' is not an Output node; Outputs: "
                          f"{', '.join(graph.outputs)}", where="default_decoding(output=)")
    declared = graph.nodes[output].metadata.get("decoding")
    if declared in DECODINGS:   # set by the importer (from_torch: how the module is read out)
        return declared  # type: ignore[return-value]
    frontier, seen, sources = list(graph.predecessors(output)), set(), []
    while frontier:  # what feeds the Output, looking through Delays
        name = frontier.pop()
        if name not in seen:
            seen.add(name)
            if isinstance(graph.nodes[name], Delay):
                frontier.extend(graph.predecessors(name))
            else:
                sources.append(graph.nodes[name])
    spiking = all((isinstance(n, Neuron) and n.spiking) or isinstance(n, Threshold)
                  for n in sources)
    return "spike_count" if spiking else "membrane_last"
