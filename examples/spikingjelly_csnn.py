"""A spikingjelly CSNN as the SBC authors build theirs: (Conv-BN-LIF-MaxPool) x 2, Linear-LIF.

This file is what ``sbc-deploy`` imports on the command line (``FILE.py:FACTORY``)::

    sbc-deploy examples/spikingjelly_csnn.py:build --weights examples/spikingjelly_csnn.pt \\
        --from spikingjelly --target loihi2 --calib sbc_deploy/bundled/nmnist_calib.npz \\
        --eval sbc_deploy/bundled/nmnist_eval.npz --sparsity 0.7 -o csnn-out/

    2x34x34 -> Conv5x5(2->8) -> BN -> LIF -> MaxPool2 -> Conv5x5(8->16) -> BN -> LIF -> MaxPool2
            -> Flatten -> Linear(16*5*5, 10) -> LIF

spikingjelly 2.0.0, multi-step (``forward`` takes ``[T, B, 2, 34, 34]`` and returns the output
spikes ``[T, B, 10]``; the class is the neuron that spikes most), LIF ``tau = 2`` steps,
``decay_input=True``, hard reset to 0, ATan surrogate. ``build()`` returns the untrained network;
``examples/train_spikingjelly_csnn.py`` trains it and writes ``spikingjelly_csnn.pt``.
"""

from __future__ import annotations

from spikingjelly.activation_based import layer, neuron, surrogate
from torch import nn


class CSNN(nn.Module):
    def __init__(self, channels: tuple[int, int] = (8, 16), tau: float = 2.0):
        super().__init__()
        c1, c2 = channels

        def lif() -> neuron.LIFNode:
            return neuron.LIFNode(tau=tau, surrogate_function=surrogate.ATan(), step_mode="m")

        self.features = nn.Sequential(
            layer.Conv2d(2, c1, 5, bias=False, step_mode="m"),     # 34 -> 30
            layer.BatchNorm2d(c1, step_mode="m"),
            lif(),
            layer.MaxPool2d(2, step_mode="m"),                      # 30 -> 15
            layer.Conv2d(c1, c2, 5, bias=False, step_mode="m"),     # 15 -> 11
            layer.BatchNorm2d(c2, step_mode="m"),
            lif(),
            layer.MaxPool2d(2, step_mode="m"),                      # 11 -> 5
        )
        self.classifier = nn.Sequential(
            layer.Flatten(step_mode="m"),
            layer.Linear(c2 * 5 * 5, 10, bias=False, step_mode="m"),
            lif(),
        )

    def forward(self, x_seq):
        return self.classifier(self.features(x_seq))


def build() -> CSNN:
    """The untrained network (the factory ``sbc-deploy`` calls; weights come with --weights)."""
    return CSNN()
