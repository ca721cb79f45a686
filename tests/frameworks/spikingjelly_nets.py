"""The spikingjelly networks of tests/test_spikingjelly.py, built by the same code in the
spikingjelly environment (tests/frameworks/spikingjelly_driver.py runs them there) and in the
main one (where sbc-deploy imports them with ``from_torch``).

Every network is spikingjelly's own model-zoo constructor (``spikingjelly.activation_based.
model``), multi-step, at a small input (T = 4, B = 2, 3x32x32 or 2x32x32). Its weights are put on
power-of-two grids by the driver (:func:`grid_weights`), so that every product and sum of a
forward pass is exact in float32 and float64 alike and spikingjelly's own float32 and float64
runs agree spike for spike (the driver checks it): an exact comparison then means something.
BatchNorm: ``gamma`` a power of two, ``beta`` and ``running_mean`` on a grid, ``running_var = 1 -
eps`` with ``eps = 2**-10``, so ``gamma / sqrt(var + eps)`` is ``gamma`` exactly.
"""

from __future__ import annotations

import sys
import types
from typing import Callable

import torch
from torch import nn

STEPS, BATCH = 4, 2
EPS = 2.0 ** -10


def _stub_torchvision() -> None:
    """The zoo modules import torchvision's ``load_state_dict_from_url`` (for pretrained
    weights, never used here); no torchvision matching the CPU torch is installed."""
    if "torchvision" in sys.modules:
        return
    for name in ("torchvision", "torchvision.models", "torchvision.models.utils"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["torchvision.models.utils"].load_state_dict_from_url = None  # type: ignore


def _zoo() -> dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]]:
    _stub_torchvision()
    from spikingjelly.activation_based import neuron
    from spikingjelly.activation_based.model import (
        sew_resnet,
        spike_driven_transformer,
        spiking_resnet,
        spiking_vgg,
        spikformer,
    )

    def transformer_kw() -> dict:
        return {"T": STEPS, "in_channels": 2, "num_classes": 10, "embed_dims": 32,
                "num_heads": 2, "depths": 1, "spiking_neuron": neuron.LIFNode}

    return {
        "sew_resnet18_add": (lambda: sew_resnet.sew_resnet18(
            spiking_neuron=neuron.IFNode, cnf="ADD", num_classes=10), (3, 32, 32)),
        "sew_resnet18_iand": (lambda: sew_resnet.sew_resnet18(
            spiking_neuron=neuron.IFNode, cnf="IAND", num_classes=10), (3, 32, 32)),
        "spiking_resnet18": (lambda: spiking_resnet.spiking_resnet18(
            spiking_neuron=neuron.IFNode, num_classes=10), (3, 32, 32)),
        "spiking_vgg11_bn": (lambda: spiking_vgg.spiking_vgg11_bn(
            spiking_neuron=neuron.IFNode, num_classes=10), (3, 32, 32)),
        "spikformer": (lambda: spikformer.Spikformer(
            img_size_h=32, img_size_w=32, patch_size=4, mlp_ratio=2.0, **transformer_kw()),
            (2, 32, 32)),
        "spike_driven_transformer": (lambda: spike_driven_transformer.SpikeDrivenTransformer(
            pooling_stat="1100", mlp_ratio=2.0, **transformer_kw()), (2, 32, 32)),
    }


CASES: tuple[str, ...] = ("sew_resnet18_add", "sew_resnet18_iand", "spiking_resnet18",
                          "spiking_vgg11_bn", "spikformer", "spike_driven_transformer")


def build(name: str) -> nn.Module:
    """The zoo network ``name``, multi-step, eval mode, BatchNorm eps = 2**-10 (seeded init)."""
    from spikingjelly.activation_based import functional

    make, _ = _zoo()[name]
    torch.manual_seed(0)
    net = make()
    functional.set_step_mode(net, "m")
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eps = EPS
    return net.eval()


def input_shape(name: str) -> tuple[int, ...]:
    return _zoo()[name][1]


def neurons(net: nn.Module) -> list[tuple[str, nn.Module]]:
    from spikingjelly.activation_based import neuron

    return [(p, m) for p, m in net.named_modules() if isinstance(m, neuron.BaseNode)]


def synapses(net: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(p, m) for p, m in net.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d,
                                                                        nn.Linear))]


# The exponents spikingjelly_driver.grid_weights found for each case (spikingjelly 2.0.0,
# torch 2.13.0): the driver checks them with one run (every neuron layer within its rate
# band) instead of searching again (~50 runs of each network).
EXPONENTS: dict[str, dict[str, int]] = {
    "sew_resnet18_add": {
        "conv1": 7, "layer1.0.conv1": 8, "layer1.0.conv2": 7, "layer1.1.conv1": 8,
        "layer1.1.conv2": 7, "layer2.0.conv1": 8, "layer2.0.conv2": 6, "layer2.0.downsample.0": 6,
        "layer2.1.conv1": 8, "layer2.1.conv2": 6, "layer3.0.conv1": 8, "layer3.0.conv2": 7,
        "layer3.0.downsample.0": 7, "layer3.1.conv1": 8, "layer3.1.conv2": 7, "layer4.0.conv1": 7,
        "layer4.0.conv2": 7, "layer4.0.downsample.0": 7, "layer4.1.conv1": 7, "layer4.1.conv2": 6,
        "fc": 8,
    },
    "sew_resnet18_iand": {
        "conv1": 7, "layer1.0.conv1": 8, "layer1.0.conv2": 8, "layer1.1.conv1": 8,
        "layer1.1.conv2": 6, "layer2.0.conv1": 7, "layer2.0.conv2": 8, "layer2.0.downsample.0": 6,
        "layer2.1.conv1": 9, "layer2.1.conv2": 7, "layer3.0.conv1": 7, "layer3.0.conv2": 7,
        "layer3.0.downsample.0": 6, "layer3.1.conv1": 7, "layer3.1.conv2": 7, "layer4.0.conv1": 7,
        "layer4.0.conv2": 7, "layer4.0.downsample.0": 6, "layer4.1.conv1": 6, "layer4.1.conv2": 6,
        "fc": 8,
    },
    "spiking_resnet18": {
        "conv1": 7, "layer1.0.conv1": 8, "layer1.0.conv2": 8, "layer1.1.conv1": 8,
        "layer1.1.conv2": 8, "layer2.0.conv1": 7, "layer2.0.conv2": 9, "layer2.0.downsample.0": 6,
        "layer2.1.conv1": 8, "layer2.1.conv2": 9, "layer3.0.conv1": 7, "layer3.0.conv2": 9,
        "layer3.0.downsample.0": 7, "layer3.1.conv1": 7, "layer3.1.conv2": 9, "layer4.0.conv1": 7,
        "layer4.0.conv2": 10, "layer4.0.downsample.0": 7, "layer4.1.conv1": 6,
        "layer4.1.conv2": 10, "fc": 8,
    },
    "spiking_vgg11_bn": {
        "features.0": 6, "features.4": 8, "features.8": 9, "features.11": 7, "features.15": 8,
        "features.18": 8, "features.22": 8, "features.25": 8, "classifier.0": 9,
        "classifier.3": 7, "classifier.6": 9,
    },
    "spikformer": {
        "patch_embed.stages.0.conv_bn.block.0": 3, "patch_embed.stages.1.conv_bn.block.0": 3,
        "patch_embed.stages.2.conv_bn.block.0": 5, "patch_embed.stages.3.conv_bn.block.0": 4,
        "patch_embed.positional_encoding.conv_bn.block.0": 5, "blocks.0.attn.qkv_conv_bn.0": 3,
        "blocks.0.attn.proj_conv_bn.0": 2, "blocks.0.mlp.fc1.0": 4, "blocks.0.mlp.fc2.0": 3,
        "head": 6,
    },
    "spike_driven_transformer": {
        "patch_embed.stages.0.0": 3, "patch_embed.stages.1.0": 4, "patch_embed.stages.2.0": 4,
        "patch_embed.final_stage.0": 4, "patch_embed.rpe_conv": 8, "blocks.0.attn.q_conv": 3,
        "blocks.0.attn.k_conv": 3, "blocks.0.attn.v_conv": 3, "blocks.0.attn.proj_conv": 6,
        "blocks.0.mlp.fc1": 4, "blocks.0.mlp.fc2": 6, "head": 6,
    },
}
