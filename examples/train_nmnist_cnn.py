"""Train a small spiking CNN with snntorch on the N-MNIST-like digits and bundle it as NIR.

    2x34x34 -> Conv2d(2, 8, 5) -> LIF -> SumPool 2 -> Conv2d(8, 16, 5) -> LIF -> SumPool 2
            -> Flatten -> Linear(16*5*5, 10) -> LIF

LIF beta 0.5, threshold 1, "zero" reset, no biases. Sum pooling (``nn.LPPool2d(1, 2)``) rather
than average pooling keeps integer weights integer when the netx exporter folds each pool into
the following layer; max pooling has no IR equivalent. Same data, loss and decoding as the MLP.

Writes sbc_deploy/bundled/nmnist_cnn.nir (and the shared nmnist_calib.npz / nmnist_eval.npz)
and the model's entry in manifest.json.

    .venv/bin/python examples/train_nmnist_cnn.py    # about 10 minutes on 2 idle CPU cores
"""

from __future__ import annotations

import snntorch as snn
import torch
from nmnist_common import arguments, dvs_mnist, export, train
from torch import nn

BETA = 0.5


def cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 8, 5, bias=False),                     # 34 -> 30
        snn.Leaky(beta=BETA, reset_mechanism="zero", init_hidden=True),
        nn.LPPool2d(1, 2),                                  # sum pool: 30 -> 15
        nn.Conv2d(8, 16, 5, bias=False),                    # 15 -> 11
        snn.Leaky(beta=BETA, reset_mechanism="zero", init_hidden=True),
        nn.LPPool2d(1, 2),                                  # 11 -> 5
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 10, bias=False),
        snn.Leaky(beta=BETA, reset_mechanism="zero", init_hidden=True),
    )


def main() -> None:
    args = arguments(__doc__.splitlines()[0], epochs=6)
    splits = dvs_mnist()
    torch.manual_seed(0)
    net = cnn()
    history = train(net, splits, epochs=args.epochs, lr=2e-3)
    export(net, "nmnist_cnn", splits, input_shape=(2, 34, 34),
           extra={"architecture": "conv5x5(8)-LIF-sumpool2-conv5x5(16)-LIF-sumpool2-fc10-LIF, "
                                  "beta 0.5, zero reset, no bias",
                  "command": "examples/train_nmnist_cnn.py", "epochs": args.epochs,
                  "history": history}, out=args.out)


if __name__ == "__main__":
    main()
