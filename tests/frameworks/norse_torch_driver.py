"""norse 1.1.0 runs its own networks (run in the ``torch`` framework environment).

    python norse_torch_driver.py produce OUTDIR
    python norse_torch_driver.py rerun CASE STATE.pt INPUT.npz OUTPUT.npz [CASE STATE IN OUT ...]

produce: each network of norse_nets.py (norse's default neuron parameters, seeded weights), run
the way norse runs it (``norse_nets.RUN``) on Bernoulli 0.2 input spikes; writes ``CASE.pt`` (the
state dict), ``CASE.npz`` (the input ``x`` ``[T, B, *input]``, the output ``out`` and every
neuron layer's output ``n:<module path>``, ``[T, B, ...]``) and ``manifest.json`` (the firing
rate and spike count of every spiking layer, and the versions).
rerun: loads a state dict (sbc-deploy's compressed one) into the same network and runs it on the
input of ``INPUT.npz``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from norse_nets import BATCH, CASES, STEPS, build, input_shape, run  # noqa: E402

torch.set_num_threads(1)
SPIKING = ("LIFCell", "LIF", "LIFBoxCell", "IAFCell", "IAF", "LIFRecurrentCell", "LIFRecurrent")


def _save(path: Path, x: np.ndarray, out: torch.Tensor, layers: dict[str, torch.Tensor]) -> None:
    np.savez(path, x=x, out=out.numpy(), **{f"n:{p}": v.numpy() for p, v in layers.items()})


def produce(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"versions": versions(), "cases": {}}
    for k, case in enumerate(CASES):
        net = build(case)
        rng = np.random.default_rng(k)
        x = (rng.random((STEPS, BATCH, *input_shape(case))) < 0.2).astype(np.float32)
        out, layers = run(case, net, torch.from_numpy(x))
        torch.save(net.state_dict(), outdir / f"{case}.pt")
        _save(outdir / f"{case}.npz", x, out, layers)
        kinds = {p: type(m).__name__ for p, m in net.named_modules()}
        spiking = {p: v for p, v in layers.items() if kinds[p] in SPIKING}
        manifest["cases"][case] = {
            "rates": {p: float(v.mean()) for p, v in spiking.items()},
            "spikes": {p: int(v.sum()) for p, v in spiking.items()},
            "kinds": {p: kinds[p] for p in layers}}
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1))


def rerun(args: list[str]) -> None:
    for i in range(0, len(args), 4):
        case, state, inputs, output = args[i], *(Path(a) for a in args[i + 1:i + 4])
        net = build(case)
        net.load_state_dict(torch.load(state, map_location="cpu", weights_only=True))
        x = np.load(inputs)["x"]
        out, layers = run(case, net, torch.from_numpy(x))
        _save(output, x, out, layers)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("norse", "torch", "numpy")}


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "produce" and len(args) == 1:
        produce(Path(args[0]))
    elif command == "rerun" and args and len(args) % 4 == 0:
        rerun(args)
    else:
        sys.exit(f"unknown command {command!r} (see the module docstring)")


if __name__ == "__main__":
    main()
