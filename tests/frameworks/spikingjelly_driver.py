"""spikingjelly 2.0.0 runs its own networks (run in the ``spikingjelly`` framework environment).

    python spikingjelly_driver.py produce OUTDIR [CASE ...]
    python spikingjelly_driver.py rerun CASE STATE.pt INPUT.npz OUTPUT.npz [CASE STATE IN OUT ...]
    python spikingjelly_driver.py evaluate FILE.py:FACTORY STATE.pt DATA.npz OUTPUT.json
    python spikingjelly_driver.py nir OUTDIR
    python spikingjelly_driver.py batch JOBS.json     (a JSON list of the argument lists above)

produce: each zoo network of spikingjelly_nets.py (its own constructor, multi-step) with weights
on power-of-two grids, each layer's grid step chosen so that the neurons after it fire 2-30 %
of the time per step; writes ``CASE.pt`` (the state dict), ``CASE.npz`` (the input ``x``
``[T, B, *input]``, the network's output ``out`` and every neuron layer's spikes
``n:<module path>``) and ``manifest.json`` (firing rates per neuron layer, output spikes, and
whether spikingjelly's float64 run of the same network gives the same spikes and outputs).
rerun: loads a state dict (sbc-deploy's compressed one) into the same network and runs it; a
state dict of some entries only (those that changed) is loaded over ``CASE.pt`` beside
``INPUT.npz``.
evaluate: builds a module with the user's factory, loads a state dict, and measures its
accuracy on labelled data (``x [N, T, *input]``, ``y``), read out as the mean output over time.
nir: small single-step networks written by spikingjelly's own NIR exporter, with its output.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from spikingjelly_nets import (  # noqa: E402
    BATCH,
    CASES,
    EPS,
    EXPONENTS,
    STEPS,
    build,
    input_shape,
    neurons,
    synapses,
)

torch.set_num_threads(1)
RATE_BAND = (0.02, 0.30)


def run(net: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Output and every neuron layer's spikes of one multi-step pass from a fresh state."""
    from spikingjelly.activation_based import functional

    spikes: dict[str, np.ndarray] = {}
    hooks = [m.register_forward_hook(
        lambda mod, inp, out, p=path: spikes.__setitem__(p, out.detach().double().numpy()))
        for path, m in neurons(net)]
    try:
        functional.reset_net(net)
        with torch.no_grad():
            out = net(x)
    finally:
        for hook in hooks:
            hook.remove()
    return out.detach().double().numpy(), spikes


def _call_order(net: nn.Module, x: torch.Tensor) -> list[tuple[str, str]]:
    """``(kind, path)`` of the synapses and neurons in the order the forward calls them."""
    order: list[tuple[str, str]] = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp, k=kind, p=path: order.append((k, p)))
             for kind, items in (("syn", synapses(net)), ("neuron", neurons(net)))
             for path, m in items]
    try:
        run(net, x)
    finally:
        for hook in hooks:
            hook.remove()
    return order


def grid_weights(net: nn.Module, x: torch.Tensor, seed: int,
                 known: dict[str, int] | None = None) -> dict[str, int]:
    """Integer weights in [-8, 8] times 2**-e per layer, e chosen so that the next neuron
    layer fires within RATE_BAND; BatchNorm on grids (module docstring of spikingjelly_nets).
    ``known``: exponents found before (``spikingjelly_nets.EXPONENTS``); kept if one run shows
    every layer in the band, else the search runs from the fan-in guess."""
    gen = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            c = module.num_features
            module.weight.data = 2.0 ** torch.randint(-1, 2, (c,), generator=gen).float()
            module.bias.data = torch.randint(-2, 3, (c,), generator=gen).float() / 16
            module.running_mean.data = torch.randint(-2, 3, (c,), generator=gen).float() / 16
            module.running_var.data = torch.full((c,), 1.0 - EPS)
    mantissa = {}
    for path, module in synapses(net):
        mantissa[path] = torch.randint(-8, 9, module.weight.shape, generator=gen).float()
        if module.bias is not None:
            module.bias.data = torch.randint(-2, 3, module.bias.shape, generator=gen).float() / 32
    modules = dict(net.named_modules())
    exponents = {}
    for path in mantissa:   # a first guess from the fan-in
        fan_in = mantissa[path][0].numel()
        exponents[path] = int(np.ceil(np.log2(8 * np.sqrt(fan_in))))
        modules[path].weight.data = mantissa[path] * 2.0 ** -exponents[path]
    if known is not None and set(known) == set(mantissa):
        for path in mantissa:
            modules[path].weight.data = mantissa[path] * 2.0 ** -known[path]
        _, spikes = run(net, x)
        if all(RATE_BAND[0] / 2 <= float(s.mean()) <= 0.5 for s in spikes.values()):
            return dict(known)
        for path in mantissa:
            modules[path].weight.data = mantissa[path] * 2.0 ** -exponents[path]
    order = _call_order(net, x)
    for i, (kind, path) in enumerate(order):
        if kind != "syn":
            continue
        # the neurons called after this synapse and before the next one: the first integrates
        # it; the others (an attention's neuron after a product of spikes) depend on its rate
        following = []
        for k, p in order[i + 1:]:
            if k == "syn":
                break
            following.append(p)
        if not following:
            continue
        for _ in range(16):
            _, spikes = run(net, x)
            rate = float(spikes[following[0]].mean())
            silent = any(spikes[p].mean() < RATE_BAND[0] / 2 for p in following[1:])
            if rate < RATE_BAND[0] or (silent and rate < 0.5):
                exponents[path] -= 1
            elif rate > RATE_BAND[1] and not silent:
                exponents[path] += 1
            else:
                break
            modules[path].weight.data = mantissa[path] * 2.0 ** -exponents[path]
    return exponents


def produce(outdir: Path, cases: list[str]) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"versions": versions(), "cases": {}}
    for k, case in enumerate(cases):
        start = time.perf_counter()
        net = build(case)
        rng = np.random.default_rng(k)
        x = torch.from_numpy((rng.random((STEPS, BATCH, *input_shape(case))) < 0.25)
                             .astype(np.float32))
        exponents = grid_weights(net, x, seed=k, known=EXPONENTS.get(case))
        out, spikes = run(net, x)
        out64, spikes64 = run(copy.deepcopy(net).double(), x.double())
        mismatches = int((out64 != out).sum()) + sum(int((spikes64[p] != s).sum())
                                                     for p, s in spikes.items())
        torch.save(net.state_dict(), outdir / f"{case}.pt")
        np.savez(outdir / f"{case}.npz", x=x.numpy(), out=out,
                 **{f"n:{p}": s.astype(np.uint8) for p, s in spikes.items()})
        manifest["cases"][case] = {
            "rates": {p: float(s.mean()) for p, s in spikes.items()},
            "spikes": int(sum(s.sum() for s in spikes.values())),
            "float64_mismatches": mismatches, "exponents": exponents,
            "exponents_cached": exponents == EXPONENTS.get(case),
            "seconds": round(time.perf_counter() - start, 2)}
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1))


def rerun(args: list[str]) -> None:
    for i in range(0, len(args), 4):
        case, state, inputs, output = args[i], *(Path(a) for a in args[i + 1:i + 4])
        net = build(case)
        entries = torch.load(state, map_location="cpu", weights_only=True)
        if set(entries) != set(net.state_dict()):   # only the changed entries: CASE.pt first
            net.load_state_dict(torch.load(inputs.with_suffix(".pt"), map_location="cpu",
                                           weights_only=True))
            entries = {**net.state_dict(), **entries}
        net.load_state_dict(entries)
        out, spikes = run(net, torch.from_numpy(np.load(inputs)["x"]))
        np.savez(output, out=out, **{f"n:{p}": s.astype(np.uint8) for p, s in spikes.items()})


def evaluate(factory: str, state: Path, data: Path, output: Path) -> None:
    """Accuracy of FACTORY() with ``state`` loaded, spikingjelly run, mean output over time."""
    from spikingjelly.activation_based import functional

    file, name = factory.rsplit(":", 1)
    spec = importlib.util.spec_from_file_location("user_factory", file)
    code = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(file).resolve().parent))
    spec.loader.exec_module(code)
    net = getattr(code, name)().eval()
    net.load_state_dict(torch.load(state, map_location="cpu", weights_only=True))
    loaded = np.load(data)
    x, y = loaded["x"], loaded["y"]
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), 100):
            batch = torch.from_numpy(np.moveaxis(x[start:start + 100], 0, 1).astype(np.float32))
            functional.reset_net(net)
            out = net(batch)
            score = out.mean(0) if out.dim() == 3 else out
            correct += int((score.argmax(-1).numpy() == y[start:start + 100]).sum())
    output.write_text(json.dumps({"accuracy": correct / len(x), "samples": int(len(x)),
                                  "versions": versions()}))


def nir_cases() -> dict[str, nn.Module]:
    """Single-step networks spikingjelly's exporter takes (no BatchNorm, MaxPool or soft reset:
    it refuses or cannot trace them), weights scaled so that every layer fires and put on a
    grid of 1/16 (so that a membrane lands exactly on its threshold, where spikingjelly's
    v >= threshold differs from NIR's v > threshold)."""
    from spikingjelly.activation_based import layer, neuron

    torch.manual_seed(7)
    cases = {
        "mlp_lif": nn.Sequential(layer.Linear(20, 16), neuron.LIFNode(tau=2.0),
                                 layer.Linear(16, 6), neuron.LIFNode(tau=2.0)),
        "mlp_lif_nodecay": nn.Sequential(layer.Linear(20, 16),
                                         neuron.LIFNode(tau=4.0, decay_input=False),
                                         layer.Linear(16, 6),
                                         neuron.LIFNode(tau=4.0, decay_input=False)),
        "conv_if": nn.Sequential(layer.Conv2d(2, 4, 3), neuron.IFNode(), layer.Flatten(),
                                 layer.Linear(4 * 6 * 6, 6), neuron.IFNode()),
    }
    for name, net in cases.items():
        for module in net.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.weight.data *= {"mlp_lif": 8.0, "mlp_lif_nodecay": 5.0}.get(name, 3.0)
                # on a grid of 1/16: every sum is exact, membranes land on the threshold
                module.weight.data = torch.round(module.weight.data * 16) / 16
                module.bias.data = torch.round(module.bias.data * 16) / 16
    return cases


def nir_export(outdir: Path) -> None:
    """Each nir_cases() network written by spikingjelly's export_to_nir (its default dt) and
    run by spikingjelly step by step: ``CASE.nir``, ``CASE.npz`` (x, out)."""
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    shapes = {"mlp_lif": (20,), "mlp_lif_nodecay": (20,), "conv_if": (2, 8, 8)}
    summary = {}
    for name, net in nir_cases().items():
        x = torch.from_numpy((rng.random((40, 8, *shapes[name])) < 0.3).astype(np.float32))
        export_to_nir(net.eval(), x[0], save_path=outdir / f"{name}.nir")
        functional.reset_net(net)
        with torch.no_grad():
            out = torch.stack([net(x[t]) for t in range(x.shape[0])])
        np.savez(outdir / f"{name}.npz", x=x.numpy(), out=out.numpy())
        summary[name] = int(out.sum())
    (outdir / "manifest.json").write_text(json.dumps({"versions": versions(),
                                                      "output_spikes": summary}))


def versions() -> dict[str, str]:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("spikingjelly", "torch", "numpy")}


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "batch" and len(args) == 1:   # several commands, one start-up
        for argv in json.loads(Path(args[0]).read_text()):
            dispatch(str(argv[0]), [str(a) for a in argv[1:]])
    else:
        dispatch(command, args)


def dispatch(command: str, args: list[str]) -> None:
    if command == "produce":
        produce(Path(args[0]), args[1:] or list(CASES))
    elif command == "rerun" and args and len(args) % 4 == 0:
        rerun(args)
    elif command == "nir" and len(args) == 1:
        nir_export(Path(args[0]))
    elif command == "evaluate" and len(args) == 4:
        evaluate(args[0], Path(args[1]), Path(args[2]), Path(args[3]))
    else:
        sys.exit(f"unknown command {command!r} (see the module docstring)")


if __name__ == "__main__":
    main()
