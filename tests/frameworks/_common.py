"""Shared by the framework drivers (run inside each framework's own environment, not the main one)
and by tests/test_framework_interop.py (which builds the same networks in the IR).

A driver command is ``produce OUTDIR`` or ``consume MODEL.nir INPUT.npz OUTPUT.npz [MODEL INPUT
OUTPUT ...]`` (several models in one call), or one of the driver's own; each driver's
``command(argv)`` runs one, from its command line (``python <framework>_driver.py ...``) or from
serve.py, which runs all the commands of one framework environment in one process (the
frameworks are imported once per test session: tests/frameworks/harness.py starts it). Only
numpy and the standard library are used here, so that every framework environment can import
it.

Exchange files (.npz): ``x`` is the input ``[T, B, *input_shape]`` (float32), ``spikes`` the output
``[T, B, *output_shape]`` of the network's last layer, as the framework computed it (spike
counts for multi-spike neurons). ``produce`` also writes ``OUTDIR/manifest.json``: one entry per
case with its name, the NIR file, the neuron types, the framework's settings and the versions of
the packages involved.

Real activity. Every network is a 100-64-10 MLP, a Conv-Pool-Linear net on 2x16x16 inputs or a
100-64(recurrent)-10 net, run for ``T = 50`` steps on ``B = 8`` samples of Bernoulli input at
``INPUT_RATE``. The weights come from :func:`dense` / :func:`conv` (fixed seeds): every neuron
gets a positive mean drive, spread over neurons, so that a layer fires several percent of its
neurons per step; each case scales them by a gain chosen for its neuron model (a neuron that
scales its input by ``1 - beta`` needs a larger one). tests/test_framework_interop.py asserts
the activity (>= 5 % of the neurons of every spiking layer per step, >= 300 output spikes).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

T, B = 50, 8  # time steps and samples per case
INPUT_RATE = 0.2  # Bernoulli rate of the input spikes
MLP = (100, 64, 10)  # MLP layer sizes (input, hidden, output)
CONV_IN = (2, 16, 16)  # conv net input (C, H, W)
CONV_CHANNELS, CONV_OUT = 8, 10  # Conv2d(2 -> 8, 3x3, padding 1), 2x2 pool, Linear(512 -> 10)


def versions(*packages: str) -> dict[str, str]:
    return {p: md.version(p) for p in packages}


def bernoulli(shape: tuple[int, ...], seed: int, p: float = INPUT_RATE) -> np.ndarray:
    """Input spikes ``[T, B, *shape]`` with firing probability ``p`` (fixed seed)."""
    rng = np.random.default_rng(seed)
    return (rng.random((T, B, *shape)) < p).astype(np.float32)


def dense(seed: int, n_in: int, n_out: int, drive: float = 0.3,
          in_rate: float = INPUT_RATE, bias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``[n_out, n_in]`` and bias ``[n_out]`` (float32) of a dense layer whose neurons
    get, per step, a mean input between 0.2 and 1.8 times ``drive`` (at input rate ``in_rate``)
    plus a zero-mean spread of the same size; the bias is a small fraction of the drive."""
    rng = np.random.default_rng(seed)
    active = n_in * in_rate
    mean = drive * rng.uniform(0.2, 1.8, n_out) / active
    weight = mean[:, None] + drive / np.sqrt(active) * rng.standard_normal((n_out, n_in))
    b = (0.05 * drive * rng.standard_normal(n_out)) if bias else np.zeros(n_out)
    return weight.astype(np.float32), b.astype(np.float32)


def conv(seed: int, c_in: int, c_out: int, k: int = 3, drive: float = 0.3,
         in_rate: float = INPUT_RATE, bias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Kernel ``[c_out, c_in, k, k]`` and bias ``[c_out]`` built like :func:`dense`."""
    weight, b = dense(seed, c_in * k * k, c_out, drive, in_rate, bias)
    return weight.reshape(c_out, c_in, k, k), b


def recurrent(seed: int, n: int, scale: float = 0.3) -> np.ndarray:
    """Recurrent weights ``[n, n]``: zero-mean, so that the layer neither dies nor explodes."""
    rng = np.random.default_rng(seed)
    return (scale / np.sqrt(n) * rng.standard_normal((n, n))).astype(np.float32)


def mlp_params(seed: int, gain: float = 1.0, bias: bool = True
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(W1, b1), (W2, b2)]`` of the 100-64-10 MLP, scaled by ``gain``."""
    layers = [dense(seed, MLP[0], MLP[1], bias=bias), dense(seed + 1, MLP[1], MLP[2], bias=bias)]
    return [(w * gain, b * gain) for w, b in layers]


def conv_params(seed: int, gain: float = 1.0, bias: bool = True
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(K, bk), (W, b)]`` of Conv2d(2 -> 8, 3x3, pad 1) and Linear(8 * 8 * 8 -> 10) (after a
    2x2 pool), scaled by ``gain``. The pooled layer's weights are made for a 2x2 *average* of
    its input; a sum pool gives four times the drive, so a sum-pool net divides them by 4."""
    k, bk = conv(seed, CONV_IN[0], CONV_CHANNELS, bias=bias)
    w, b = dense(seed + 1, CONV_CHANNELS * 8 * 8, CONV_OUT, bias=bias)
    return [(k * gain, bk * gain), (w * gain, b * gain)]


def save_case(outdir: Path, name: str, x: np.ndarray, spikes: np.ndarray,
              **info: Any) -> dict[str, Any]:
    np.savez(outdir / f"{name}.npz", x=np.asarray(x, np.float32),
             spikes=np.asarray(spikes, np.float32))
    return {"name": name, "nir": f"{name}.nir", "data": f"{name}.npz", **info}


Command = Callable[[list[str]], None]


class UnknownCommand(Exception):
    """A driver was asked for a command it does not have."""


def run_command(argv: list[str], produce: Callable[[Path], list[dict[str, Any]]],
                consume: Callable[[Path, np.ndarray], np.ndarray], packages: tuple[str, ...],
                extra: dict[str, Command] | None = None) -> None:
    """One driver command: ``produce OUTDIR``, ``consume MODEL INPUT OUTPUT [...]`` or one of
    the driver's ``extra`` commands (called with the rest of ``argv``); UnknownCommand for
    another. A driver runs it from its command line (``python <name>_driver.py ...``) or
    from serve.py, which runs every command of one environment in one process."""
    command, *args = argv
    if extra and command in extra:
        extra[command](args)
    elif command == "produce":
        outdir = Path(args[0])
        outdir.mkdir(parents=True, exist_ok=True)
        cases = produce(outdir)
        (outdir / "manifest.json").write_text(json.dumps(
            {"versions": versions(*packages), "cases": cases}, indent=1))
    elif command == "consume" and args and len(args) % 3 == 0:
        for i in range(0, len(args), 3):
            model, inputs, output = Path(args[i]), Path(args[i + 1]), Path(args[i + 2])
            try:
                spikes = consume(model, np.load(inputs)["x"])
            except Exception:  # one model failing in the framework must not hide the others
                np.savez(output, error=traceback.format_exc()[-4000:],
                         versions=json.dumps(versions(*packages)))
                continue
            np.savez(output, spikes=np.asarray(spikes, np.float32),
                     versions=json.dumps(versions(*packages)))
    else:
        raise UnknownCommand(f"unknown command {command!r}: produce OUTDIR | consume MODEL INPUT "
                         f"OUTPUT{''.join(f' | {name} ...' for name in extra or {})}")


def main(command: Command) -> None:
    """Command-line entry of a driver: ``command(sys.argv[1:])``, exit 1 with the message of
    an unknown command."""
    try:
        command(sys.argv[1:])
    except UnknownCommand as err:
        sys.exit(str(err))
