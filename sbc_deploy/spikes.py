"""``sbc-deploy simulate``: a model and its input data -> the spikes it produces, as a .npz.

What a user compares against their framework: the float simulator's output (and, with
``layers``, every neuron layer's), and with ``integer`` the bit-accurate integer core's. The
model is read exactly as every other command reads it (``--from``, ``--dt``, ``--reset``, ...),
the data as ``--eval`` data (checked against the model's input shape and ``dt``).

The .npz (arrays are samples first, like the input ``x``: ``[N, T, *shape]``)::

    output            float simulator, the graph's Output: spikes per step (spike counts for
                      multi-spike neurons; the membrane for a non-spiking read-out), float32
    layers            names of the recorded neuron layers (with layers=True), topological order
    layer_<k>         float simulator, the output of layers[k]
    integer_output    integer core (Lava's fixed-point CUBA), the Output: int8 spikes (int64 v
                      for netx's read-out integrator), as the core emits them, one step of
                      synaptic delay per synapse layer later than the float simulator
    integer_layers    names of the integer core's neuron layers (with layers=True)
    integer_layer_<k> integer core, the spikes of integer_layers[k]
    y                 the data's labels, when it has them
    dt                seconds per step

Node names are stored as strings inside the file, never as array keys (a name read from a model
file does not become a path inside the zip).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import numpy as np
import torch

from sbc_deploy.errors import ConfigError
from sbc_deploy.fileio import check_writable, write_atomic
from sbc_deploy.ir import Graph, Neuron

log = logging.getLogger(__name__)

Progress = Callable[..., None]  # progress(stage, done, total, *, unit="samples")


def _silent(stage: str, done: int, total: int, **info: Any) -> None:
    return None


@dataclass(frozen=True)
class SpikeRecord:
    """What :func:`simulate_spikes` returns: ``arrays`` (npz key -> array, see the module
    docstring) and ``notes`` (one line per fact a reader should know)."""

    arrays: Mapping[str, np.ndarray]
    notes: tuple[str, ...] = ()


def load_for_simulation(model: str | Path, data: str | Path, *, dt: float | None = None,
                        reset: Literal["zero", "subtract"] | None = None,
                        source: str | None = None, discretization: str | None = None,
                        input_shape: tuple[int, ...] | None = None) -> tuple[Graph, Any]:
    """The model (a file or a bundled name, with the model options) and the data checked
    against it."""
    from sbc_deploy import bundled
    from sbc_deploy.frontends import load_model
    from sbc_deploy.validate import check_dataset

    if str(model) in bundled.MODELS and not Path(model).exists():
        graph = bundled.load_bundled_model(str(model), dt=dt, reset=reset,  # type: ignore[arg-type]
                                           discretization=discretization,  # type: ignore[arg-type]
                                           source=source)
    else:
        graph = load_model(model, dt=dt, reset=reset, source=source,
                           discretization=discretization,  # type: ignore[arg-type]
                           input_shape=input_shape)
    return graph, check_dataset(data, graph, "DATA")


def simulate_spikes(graph: Graph, data: Any, *, layers: bool = False, integer: bool = False,
                    limit: int | None = None, batch_size: int = 64, device: str = "cpu",
                    progress: Progress = _silent) -> SpikeRecord:
    """Run ``graph`` on ``data`` (a :class:`~sbc_deploy.data.Dataset`) and collect spikes.

    Args:
        graph: the network.
        data: its input, checked against it (:func:`load_for_simulation`).
        layers: also every neuron layer's output.
        integer: also the integer core's (the graph must carry Lava's integer weights: a netx
            file, or a model compressed for a Loihi target).
        limit: the first ``limit`` samples only.
        batch_size: samples per simulation call (memory).
        device: torch device of both simulators.
        progress: called as ``progress(stage, done, total, unit="samples")``.

    Raises:
        ConfigError: ``integer`` for a graph the integer core cannot hold (says why), a bad
            ``limit`` or ``batch_size``.
    """
    from sbc_deploy.sim import simulate

    for what, value in (("limit", limit), ("batch_size", batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ConfigError(f"must be a positive integer, got {value!r}", where=what)
    n = len(data.x) if limit is None else min(limit, len(data.x))
    names = [name for name in graph.topological_order if isinstance(graph.nodes[name], Neuron)]
    outputs = list(graph.outputs)
    net = _integer_network(graph) if integer else None
    int_names = [layer.name for layer in net.layers] if net is not None else []
    parts: dict[str, list[np.ndarray]] = {}

    def keep(key: str, value: torch.Tensor) -> None:
        # [T, B, ...] -> [B, T, ...], samples first like the input
        parts.setdefault(key, []).append(np.swapaxes(value.cpu().numpy(), 0, 1))

    stage = "simulate" + (" (float simulator and integer core)" if integer else "")
    progress(stage, 0, n, unit="samples")
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        x = torch.from_numpy(np.swapaxes(np.asarray(data.x[start:stop]), 0, 1).astype(np.float32))
        result = simulate(graph, x, record=names if layers else (), device=device)
        for k, name in enumerate(outputs):
            keep("output" if len(outputs) == 1 else f"output_{k}", result.outputs[name])
        for k, name in enumerate(names if layers else ()):
            keep(f"layer_{k}", result.recorded[name])
        if net is not None:
            from sbc_deploy.sim.int_core import simulate_integer

            core = simulate_integer(net, x, record=int_names if layers else (), device=device)
            keep("integer_output", next(iter(core.outputs.values())))
            for k, name in enumerate(int_names if layers else ()):
                keep(f"integer_layer_{k}", core.recorded[name])
        progress(stage, stop, n, unit="samples")
    arrays: dict[str, np.ndarray] = {key: np.concatenate(chunks) for key, chunks in parts.items()}
    for key in [k for k in arrays if not k.startswith("integer")]:
        arrays[key] = arrays[key].astype(np.float32, copy=False)
    if len(outputs) > 1:
        arrays["outputs"] = np.array(outputs, dtype=str)
    if layers:
        arrays["layers"] = np.array(names, dtype=str)
        if net is not None:
            arrays["integer_layers"] = np.array(int_names, dtype=str)
    if data.y is not None:
        arrays["y"] = np.asarray(data.y[:n])
    arrays["dt"] = np.array(graph.dt)
    notes = [f"{n} samples x {data.x.shape[1]} steps, dt = {graph.dt:g} s"]
    if net is not None:
        notes.append(f"integer core: {len(net.layers)} layers, each one step of synaptic delay "
                     "later than the float simulator (Lava's Dense/Conv)")
    return SpikeRecord(arrays, tuple(notes))


def _integer_network(graph: Graph) -> Any:
    """The fixed-point network, or a ConfigError saying why the integer core cannot hold it."""
    from sbc_deploy.sim.fixed_point import to_fixed_point

    try:
        return to_fixed_point(graph)
    except ConfigError as err:
        raise ConfigError(f"the integer core (Lava's fixed-point CUBA LIF) cannot run this "
                          f"model: {err}", where="--integer",
                          hint="it needs Lava's integer weights: a netx file, or a model "
                               "compressed for loihi1/loihi2 (its model.net)") from err


def write_spikes(record: SpikeRecord, path: str | Path) -> Path:
    """Write ``record`` as an uncompressed .npz, atomically (``np.load`` reads it back)."""
    path = check_writable(path)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **record.arrays)

    return write_atomic(path, write)


__all__ = ["SpikeRecord", "load_for_simulation", "simulate_spikes", "write_spikes"]
