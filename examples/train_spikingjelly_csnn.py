"""Train the spikingjelly CSNN of examples/spikingjelly_csnn.py on the N-MNIST-like digits.

Same data, augmentation, loss and read-out as the bundled networks (examples/README.md):
4,000 DVS-encoded training digits, 31 binary frames of 10 ms, every sample shifted by up to
2 pixels, Adam with a cosine schedule on the cross-entropy of the output spike counts; the class
is the output neuron that spikes most. spikingjelly 2.0.0 runs the network itself (multi-step,
BPTT through its LIF kernel with the ATan surrogate), BatchNorm in training mode while training.

Writes examples/spikingjelly_csnn.pt (the state dict, 40 KB) and prints the test accuracy that
spikingjelly measures on the 1,000 test digits (the bundled nmnist_eval.npz).

    .venv/bin/python examples/train_spikingjelly_csnn.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from nmnist_common import _batch, dvs_mnist, shifted
from spikingjelly.activation_based import functional
from spikingjelly_csnn import build
from torch.nn import functional as F

HERE = Path(__file__).resolve().parent
log = logging.getLogger("examples")


def accuracy(net: torch.nn.Module, data, batch: int = 250) -> float:
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(data), batch):
            x, y = _batch(data, np.arange(start, min(start + batch, len(data))), flatten=False)
            functional.reset_net(net)
            correct += int((net(x).sum(0).argmax(-1) == y).sum())
    return correct / len(data)


def train(epochs: int, lr: float, batch: int, seed: int) -> tuple[torch.nn.Module, list[dict]]:
    splits = dvs_mnist()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    steps = int(np.ceil(len(splits.train) / batch))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps)
    history = []
    for epoch in range(epochs):
        net.train()
        start, total = time.time(), 0.0
        order = rng.permutation(len(splits.train))
        for first in range(0, len(order), batch):
            x, y = _batch(splits.train, order[first:first + batch], flatten=False)
            functional.reset_net(net)
            loss = F.cross_entropy(net(shifted(x, rng, 2)).sum(0), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(y)
        test = accuracy(net, splits.test)
        history.append({"epoch": epoch + 1, "loss": round(total / len(order), 4),
                        "test_accuracy": test, "seconds": round(time.time() - start, 1)})
        log.info("epoch %d: %s", epoch + 1, history[-1])
    return net.eval(), history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "spikingjelly_csnn.pt")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    net, history = train(args.epochs, lr=2e-3, batch=50, seed=0)
    torch.save(net.state_dict(), args.out)
    summary = {"weights": args.out.name, "test_accuracy_spikingjelly": history[-1]["test_accuracy"],
               "history": history}
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    log.info("wrote %s: spikingjelly test accuracy %.4f", args.out, history[-1]["test_accuracy"])


if __name__ == "__main__":
    main()
