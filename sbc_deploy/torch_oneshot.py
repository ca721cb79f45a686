"""A torch module through the whole pipeline, and its compressed weights back in the module.

Stage contract: ``(nn.Module, calibration data) -> (compressed nn.Module, Report)``, like
llm-compressor's ``oneshot(model, ...)`` for a Hugging Face model::

    compressed, report, graph = sbc_deploy.oneshot(net, calib, target="loihi2",
                                                    config=sbc_deploy.SBCConfig(sparsity=0.5))

The module is imported with :func:`~sbc_deploy.frontends.from_torch.from_torch` (the sample is
the first calibration samples, in the layout the module takes), the graph runs through
:func:`~sbc_deploy.pipeline.deploy`, and a deep copy of the module gets the compressed weights
(:mod:`sbc_deploy.frontends.from_torch.writeback`: folded BatchNorms are kept, the weights
divided by their scale). The CLI's ``FILE.py:FACTORY --weights CKPT`` path uses
:func:`module_request` and the same write-back, which puts ``compressed_state_dict.pt`` beside
the other outputs.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from sbc_deploy.compress.config import CompressionConfig
from sbc_deploy.data import Dataset, load_data
from sbc_deploy.errors import ConfigError
from sbc_deploy.frontends.from_torch import from_torch, takes_sequence
from sbc_deploy.frontends.from_torch.writeback import compressed_state_dict, write_state_dict
from sbc_deploy.ir import Graph
from sbc_deploy.pipeline import DeployRequest, deploy

__all__ = ["OneshotResult", "factory_graph", "graph_of_module", "module_request", "oneshot"]

SAMPLE_STEPS = 4   # steps of the sample factory_graph runs through a module (inspect, check)


class OneshotResult(NamedTuple):
    """What :func:`oneshot` returns: the compressed module, the report and the compressed
    graph (the first target's)."""

    module: nn.Module
    report: Any
    graph: Graph


def as_dataset(data: Any, *, dt: float | None, what: str) -> Dataset:
    """A :class:`Dataset` from a Dataset, a path (``load_data``), an array ``[N, T, *input]``
    or an ``(x, y)`` pair."""
    if data is None or isinstance(data, Dataset):
        return data
    if isinstance(data, (str, Path)):
        return load_data(data, dt=dt)
    x, y = data if isinstance(data, tuple) and len(data) == 2 else (data, None)
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    y = None if y is None else (y.detach().cpu().numpy() if isinstance(y, torch.Tensor)
                                else np.asarray(y))
    return Dataset(x, y, dt if dt is not None else 1e-3, what)


def graph_of_module(module: nn.Module, data: Dataset, *, source: str | None = None,
                    sequence: bool | None = None) -> Graph:
    """``from_torch`` on the first samples of ``data`` (its ``dt`` labels the step)."""
    x = torch.from_numpy(data.as_time_major(0, 2))   # [T, B, *input]
    sample = x if takes_sequence(module, source, sequence) else x[0]
    return from_torch(module, sample, source, dt=data.dt, sequence=sequence)


def factory_graph(spec: str, weights: str | Path | None, *,
                  input_shape: tuple[int, ...] | None, source: str | None = None,
                  dt: float | None = None) -> Graph:
    """``FILE.py:FACTORY`` (``--weights``) as a graph, for ``inspect`` and ``check``, which take
    no data: the sample is ``SAMPLE_STEPS`` steps of two samples of ``input_shape``, Bernoulli
    0.25 spikes from a fixed seed (its values only choose the branches the forward takes).

    Raises:
        ConfigError: no ``input_shape``; the factory's errors (:mod:`.factory`).
        FormatError: the weights do not load or do not fit.
    """
    from sbc_deploy.frontends.from_torch.factory import (
        apply_weights,
        load_factory,
        load_weights,
    )

    module = load_factory(spec)
    files = [spec.rsplit(":", 1)[0]]
    if weights is not None:
        apply_weights(module, load_weights(weights), str(weights))
        files.append(str(weights))
    if input_shape is None:
        raise ConfigError("a torch module needs --input-shape (e.g. 2,34,34 or 100): a sample "
                          "of that shape is run through it to capture the network",
                          where="--input-shape")
    rng = np.random.default_rng(0)
    x = (rng.random((SAMPLE_STEPS, 2, *input_shape)) < 0.25).astype(np.float32)
    sample = torch.from_numpy(x if takes_sequence(module, source) else x[0])
    graph = from_torch(module, sample, source, dt=dt)
    return graph.with_metadata(model_name=spec, input_files=tuple(files))


def module_request(module: nn.Module, calib: Any, evaluation: Any, *, dt: float | None,
                   source: str | None = None, sequence: bool | None = None,
                   model_name: str | None = None, input_files: tuple[str, ...] = (),
                   **fields: Any) -> DeployRequest:
    """The :class:`DeployRequest` for a torch module: its graph, the data as datasets, and the
    write-back of ``compressed_state_dict.pt`` into every target's output folder.

    Raises:
        ConfigError: no data to take the sample from.
    """
    calib_data = as_dataset(calib, dt=dt, what="--calib")
    eval_data = as_dataset(evaluation, dt=dt, what="--eval")
    first = calib_data if calib_data is not None else eval_data
    if first is None:
        raise ConfigError("a torch module needs --calib or --eval data: the first samples "
                          "are run through it to capture the network", where="MODEL")
    graph = graph_of_module(module, first, source=source, sequence=sequence)
    graph = graph.with_metadata(model_name=model_name or f"torch module {type(module).__name__}",
                                input_files=tuple(input_files))
    # paths stay paths, so that the pipeline reads (and the manifest hashes) the files itself
    keep = {"calib": calib if isinstance(calib, (str, Path)) else calib_data,
            "eval": evaluation if isinstance(evaluation, (str, Path)) else eval_data}
    return DeployRequest(model=graph, calib=keep["calib"], eval=keep["eval"],
                         write_back=lambda g, folder: write_state_dict(g, module, folder),
                         **fields)


def oneshot(module: nn.Module, calib_data: Any, *, target: str = "loihi2",
            config: CompressionConfig | None = None, eval_data: Any = None,
            source: str | None = None, sequence: bool | None = None, dt: float | None = None,
            out_dir: str | Path | None = None, **options: Any) -> OneshotResult:
    """Compress a torch module for ``target`` in one shot and return it compressed.

    Args:
        module: the trained network (spikingjelly, snntorch, norse); not modified.
        calib_data: calibration data: a Dataset, a path, an array ``[N, T, *input]`` or an
            ``(x, y)`` pair.
        target: a target name or TOML path.
        config: an :class:`~sbc_deploy.compress.config.CompressionConfig` used as it is
            (default: the target's format with ``options`` such as ``sparsity=0.5``).
        eval_data: labelled evaluation data (same forms), for the report's accuracies.
        source, sequence: see :func:`~sbc_deploy.frontends.from_torch.from_torch`.
        dt: seconds per step of array data (default 1e-3; files carry their own).
        out_dir: where the output set goes (default: a temporary folder, removed).
        **options: further :class:`~sbc_deploy.pipeline.DeployRequest` fields (``sparsity``,
            ``bits``, ``max_drop``, ``export`` ...).

    Returns:
        :class:`OneshotResult`: the compressed copy of ``module``, the report, the graph.
    """
    method = {"method": config.method} if config is not None else {}
    with tempfile.TemporaryDirectory(prefix="sbc-oneshot-") as tmp:
        out = Path(out_dir) if out_dir is not None else Path(tmp) / "out"
        request = module_request(module, calib_data, eval_data, dt=dt, source=source,
                                 sequence=sequence, targets=(target,), config=config,
                                 out_dir=out, **method, **options)
        result = deploy(request)
    graph = result.results[0].graph
    compressed = copy.deepcopy(module)
    compressed.load_state_dict(compressed_state_dict(graph, module))
    return OneshotResult(compressed, result.report, graph)
