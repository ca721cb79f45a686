"""Train the SBC paper's N-MNIST MLP with snntorch and bundle it as NIR.

    Flatten(2x34x34) -> Linear(2312, 256) -> LIF -> Linear(256, 10) -> LIF

LIF decay beta = 0.5 (the SBC authors' tau = 2 steps), threshold 1, snntorch's "zero" reset
(the same in the IR and on Loihi, so the export needs no reset bridge), no biases. Data: the
DVS-encoded real MNIST digits of nmnist_common (4,000 train / 1,000 test), 31 binary frames of
10 ms. Loss: cross-entropy of the output spike counts plus an L1 penalty on the weights;
random shifts of up to 2 pixels; decoding: the most spiking output. 20 epochs of Adam.

Writes sbc_deploy/bundled/nmnist_mlp.nir, nmnist_calib.npz, nmnist_eval.npz and the model's
entry in manifest.json (accuracies of snntorch and of sbc-deploy's simulator on the NIR file).

    .venv/bin/python examples/train_nmnist_mlp.py    # 3-5 minutes on 2 idle CPU cores, plus
                                                     # 1-2 minutes to encode the digits once
"""

from __future__ import annotations

import snntorch as snn
import torch
from nmnist_common import arguments, dvs_mnist, export, train
from torch import nn

BETA = 0.5
L1 = 2e-5   # L1 penalty on the weights: robust to one-shot 97 % pruning (examples/README.md)


def mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(2 * 34 * 34, 256, bias=False),
        snn.Leaky(beta=BETA, reset_mechanism="zero", init_hidden=True),
        nn.Linear(256, 10, bias=False),
        snn.Leaky(beta=BETA, reset_mechanism="zero", init_hidden=True),
    )


def main() -> None:
    args = arguments(__doc__.splitlines()[0], epochs=20)
    splits = dvs_mnist()
    torch.manual_seed(0)
    net = mlp()
    history = train(net, splits, epochs=args.epochs, lr=1e-3, l1=L1)
    export(net, "nmnist_mlp", splits, input_shape=(2, 34, 34),
           extra={"architecture": "2312-256-10 LIF, beta 0.5, zero reset, no bias",
                  "command": "examples/train_nmnist_mlp.py", "epochs": args.epochs, "l1": L1,
                  "history": history}, out=args.out)


if __name__ == "__main__":
    main()
