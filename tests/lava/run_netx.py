"""Run a lava-dl netx file in Lava's bit-accurate fixed-point simulator; save its spikes.

Runs INSIDE the Lava environment made by ``scripts/make_lava_env.sh`` (lava-nc 0.10.0, lava-dl
0.6.0, numpy < 2), never in the project's main environment; tests/test_lava_interop.py calls it
through ``subprocess``::

    .lava-venv/bin/python tests/lava/run_netx.py NET.net IN.npz OUT.npz [NET IN OUT ...]

(several triples run one after another in one process, which saves Lava's start-up time).

``IN.npz`` holds, in the per-sample axis order of the file and of the IR (``(C, H, W)`` or
``(N,)``, as stored in ``/layer/0/shape``; not Lava's ``(W, H, C)``):

- ``spikes``: ``[T, *input_shape]`` integer spikes (0/1) sent to the network's first block, one
  row per step; the network runs ``steps`` steps (default ``T``), rows beyond ``T`` are zero;
- ``steps`` (optional): number of steps to run;
- ``input_bias`` (optional): integer ``bias_mant`` of the neurons of a first ``input`` block,
  ``input_shape`` or broadcastable to it, replacing the block's transform bias (lava-dl's tinynet
  ground truth drives its input block this way, with no spikes at all);
- ``reset_interval`` (optional): zero block ``i``'s ``u`` and ``v`` after every Lava step ``t``
  with ``(t - 1) % reset_interval == (i - 1 + reset_offset) % reset_interval``: lava-dl's tinynet
  protocol (``reset_offset`` 0), which starts each block when the first data reaches it and
  resets between samples of ``reset_interval`` steps. Block ``i`` trails the input by the number
  of synapses up to it: ``i`` with a first input block, ``i + 1`` without (``reset_offset`` 1);
- ``reset_offset`` (optional, default 0): see ``reset_interval``.

Where the spikes go: a first ``input`` layer *with* a neuron group becomes netx's ``Input``
block, whose port ``net.inp`` cannot be connected (NotImplementedError), so the source feeds
``net.in_layer.neuron.a_in``. netx records the layer's transform (``weight``, default 64, and
``bias``, default 0) without applying it; as lava-dl does, this script applies it to the data:
the source sends ``weight * spikes`` (a graded ``a_in``, which adds ``(weight * s) << 6`` to the
neuron's current ``u``) and the neurons get ``bias_mant = bias``. That is the IR's
``Input -> Scale(weight / 64) -> neuron(bias / 64)`` (sbc_deploy.frontends.from_netx). For a
first ``conv`` or ``dense`` block the source feeds ``net.inp``, the block's synapse.

``OUT.npz`` holds ``output`` (``[steps, *output_shape]``, the last block's spikes) and
``layer_<i>`` for each Lava block ``i`` (``[steps, *block_shape]``); a ``flatten`` layer makes
no block, so block ``i`` is the ``i``-th input/conv/dense layer. Row ``t`` holds the spikes a
block emitted at Lava time step ``t + 1``. Each Dense/Conv synapse delivers one step late, so a
block trails the input by the synapses up to it (an input block has none).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _to_lava(values: np.ndarray, ndim: int) -> np.ndarray:
    """(C, H, W, ...) -> (W, H, C, ...): reverse the first ``ndim`` axes (Lava's XYZ order)."""
    axes = list(range(ndim))[::-1] + list(range(ndim, values.ndim))
    return np.transpose(values, axes)


def _from_lava(buffer: np.ndarray) -> np.ndarray:
    """A sink's ``(W, H, C, T)`` or ``(N, T)`` buffer -> ``[T, C, H, W]`` or ``[T, N]``."""
    ndim = buffer.ndim - 1
    return np.transpose(buffer, [ndim] + list(range(ndim))[::-1])


def run_netx(net_path: str, spikes: np.ndarray, steps: int | None = None,
             input_bias: np.ndarray | None = None,
             reset_interval: int | None = None,
             reset_offset: int = 0) -> dict[str, np.ndarray]:
    """Load ``net_path`` with ``lava.lib.dl.netx.hdf5.Network`` and run it in ``fixed_pt``.

    Args:
        net_path: netx HDF5 file.
        spikes: ``[T, *input_shape]`` input spikes in (C, H, W) / (N,) order.
        steps: steps to run; ``T`` when ``None``.
        input_bias: ``bias_mant`` of a first input block's neurons, in (C, H, W) order.
        reset_interval: when given, block ``i``'s ``u`` and ``v`` are set to 0 after every
            Lava step ``t`` with ``(t - 1) % reset_interval == (i - 1 + reset_offset) %
            reset_interval`` (lava-dl's tinynet protocol: ``io.reset.Reset(interval,
            offset=i - 1)``).
        reset_offset: shifts every block's reset phase (see ``reset_interval``).

    Returns:
        ``{"output": [steps, *out_shape], "layer_0": ..., ...}`` spike arrays (int8).
    """
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    net = netx.hdf5.Network(net_config=str(net_path))
    steps = int(spikes.shape[0] if steps is None else steps)
    first = net.in_layer
    has_input_block = type(first).__name__ == "Input"
    target = first.neuron.a_in if has_input_block else net.inp

    in_shape = tuple(target.shape)  # Lava order
    transform = getattr(first, "transform", None) if has_input_block else None
    gain = int(transform["weight"]) if transform else 1
    data = np.zeros((*in_shape, steps), dtype=np.int32)
    used = min(steps, spikes.shape[0])
    # (C, H, W) spikes into a flat first dense layer: flatten in C order (netx's flatten order)
    rows = np.asarray(spikes[:used]).reshape(used, *in_shape[::-1])
    data[..., :used] = _to_lava(np.moveaxis(rows, 0, -1), len(in_shape)) * gain
    source = io.source.RingBuffer(data=data)
    source.s_out.connect(target)

    if input_bias is not None and not has_input_block:
        raise SystemExit("input_bias given but the first layer is not an input block")
    if has_input_block:
        chw_shape = in_shape[::-1]
        bias = transform["bias"] if input_bias is None else input_bias
        bias = np.broadcast_to(np.asarray(bias), chw_shape)
        first.neuron.bias_mant.init = _to_lava(bias, len(chw_shape)).astype(np.int32)

    if reset_interval is not None:
        for i, layer in enumerate(net.layers):
            for var in (layer.neuron.u, layer.neuron.v):
                io.reset.Reset(interval=int(reset_interval),
                               offset=i - 1 + int(reset_offset)).connect_var(var)

    sinks = []
    for layer in net.layers:
        sink = io.sink.RingBuffer(shape=layer.out.shape, buffer=steps)
        layer.out.connect(sink.a_in)
        sinks.append(sink)

    net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    try:
        result = {f"layer_{i}": _from_lava(sink.data.get()).astype(np.int8)
                  for i, sink in enumerate(sinks)}
    finally:
        net.stop()
    result["output"] = result[f"layer_{len(sinks) - 1}"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("jobs", nargs="+", metavar="NET IN OUT",
                        help="triples: netx HDF5 file, .npz with spikes [T, *input_shape] (and "
                             "optional steps, input_bias, reset_interval), .npz to write "
                             "output and layer_<i> spikes to")
    args = parser.parse_args(argv)
    if len(args.jobs) % 3:
        parser.error("give NET IN OUT triples")
    for net, inputs, outputs in zip(*[iter(args.jobs)] * 3):
        with np.load(inputs) as stored:
            spikes = stored["spikes"]
            steps = int(stored["steps"]) if "steps" in stored else None
            input_bias = stored["input_bias"] if "input_bias" in stored else None
            reset = int(stored["reset_interval"]) if "reset_interval" in stored else None
            offset = int(stored["reset_offset"]) if "reset_offset" in stored else 0
        result = run_netx(net, spikes, steps, input_bias, reset, offset)
        out = Path(outputs)
        tmp = out.with_name(f".{out.name}.partial.npz")
        np.savez_compressed(tmp, **result)
        tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
