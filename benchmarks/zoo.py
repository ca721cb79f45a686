"""spikingjelly's model-zoo networks for benchmarks/scale.py, as spikingjelly builds them.

Each network is the zoo constructor of ``spikingjelly.activation_based.model`` (spikingjelly
2.0.0), multi-step, in eval mode, with its own initialisation (seeded), then every synapse's
weight is scaled by a power of two, in the order the forward calls them, until the neuron
layer after it fires 2-30 % of the time on the benchmark's input (spikingjelly's default
initialisation leaves the later stages of a SEW-ResNet silent: a Hessian of zeros measures
nothing). The input is what spikingjelly's ImageNet/CIFAR recipes feed these networks: a
static image (uniform random values here) repeated over the ``T`` steps, encoded by the first
convolution. sbc-deploy imports the module with ``sbc_deploy.frontends.from_torch``.

Needs spikingjelly in the main environment (installed there ``--no-deps``, see README) and
``sbc_deploy.frontends.from_torch``; the zoo's optional torchvision import (pretrained weights,
never used) is given an empty module. Not run in CI.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Callable

import numpy as np

RATE_BAND = (0.02, 0.30)


def _stub_torchvision() -> None:
    if "torchvision" in sys.modules:
        return
    for name in ("torchvision", "torchvision.models", "torchvision.models.utils"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["torchvision.models.utils"].load_state_dict_from_url = None  # type: ignore


def _constructors() -> dict[str, Callable[[], Any]]:
    _stub_torchvision()
    from spikingjelly.activation_based import neuron
    from spikingjelly.activation_based.model import sew_resnet, spiking_resnet, spiking_vgg

    return {
        "sew_resnet18": lambda: sew_resnet.sew_resnet18(spiking_neuron=neuron.IFNode,
                                                        cnf="ADD"),
        "spiking_resnet18": lambda: spiking_resnet.spiking_resnet18(
            spiking_neuron=neuron.IFNode),
        "spiking_vgg11_bn": lambda: spiking_vgg.spiking_vgg11_bn(spiking_neuron=neuron.IFNode),
    }


# name in benchmarks/scale.py -> (label, zoo constructor, input shape)
NETWORKS: dict[str, tuple[str, str, tuple[int, int, int]]] = {
    "sj_sew_resnet18_64": ("spikingjelly sew_resnet18, ADD, IF (3x64x64)", "sew_resnet18",
                           (3, 64, 64)),
    "sj_sew_resnet18_224": ("spikingjelly sew_resnet18, ADD, IF (3x224x224)", "sew_resnet18",
                            (3, 224, 224)),
    "sj_spiking_resnet18_64": ("spikingjelly spiking_resnet18, IF (3x64x64)",
                               "spiking_resnet18", (3, 64, 64)),
    "sj_spiking_vgg11_bn_64": ("spikingjelly spiking_vgg11_bn, IF (3x64x64)",
                               "spiking_vgg11_bn", (3, 64, 64)),
}


def images(name: str, samples: int, steps: int, seed: int = 1) -> np.ndarray:
    """Static random images repeated over ``steps``: ``[N, T, C, H, W]`` float32."""
    shape = NETWORKS[name][2]
    rng = np.random.default_rng(seed)
    x = rng.random((samples, 1, *shape), dtype=np.float32)
    return np.repeat(x, steps, axis=1)


def _rates(net: Any, x: Any) -> dict[str, float]:
    """Every neuron layer's firing rate on ``x [T, B, ...]`` from a fresh state."""
    import torch
    from spikingjelly.activation_based import functional, neuron

    rates: dict[str, float] = {}
    hooks = [m.register_forward_hook(
        lambda mod, inp, out, p=path: rates.__setitem__(p, float(out.float().mean())))
        for path, m in net.named_modules() if isinstance(m, neuron.BaseNode)]
    try:
        functional.reset_net(net)
        with torch.no_grad():
            net(x)
    finally:
        for hook in hooks:
            hook.remove()
    return rates


def build_module(name: str, steps: int = 4, seed: int = 0) -> tuple[Any, Any]:
    """The zoo network ``name`` with weights scaled so that it fires, and the sample
    ``[T, 1, C, H, W]`` to import it with."""
    import torch
    from spikingjelly.activation_based import functional, neuron
    from torch import nn

    torch.manual_seed(seed)
    net = _constructors()[NETWORKS[name][1]]()
    functional.set_step_mode(net, "m")
    net.eval()
    x = torch.from_numpy(np.ascontiguousarray(np.swapaxes(images(name, 2, steps, seed=0), 0, 1)))
    synapses = {p: m for p, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    neurons = {p for p, m in net.named_modules() if isinstance(m, neuron.BaseNode)}
    order: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp, p=path: order.append(p))
             for path, m in net.named_modules() if path in synapses or path in neurons]
    _rates(net, x)
    for hook in hooks:
        hook.remove()
    for i, path in enumerate(order[:-1]):
        if path not in synapses or order[i + 1] not in neurons:
            continue
        for _ in range(12):   # powers of two until the next neuron layer fires in the band
            rate = _rates(net, x)[order[i + 1]]
            if RATE_BAND[0] <= rate <= RATE_BAND[1]:
                break
            synapses[path].weight.data *= 2.0 if rate < RATE_BAND[0] else 0.5
    functional.reset_net(net)
    return net, x[:, :1].clone()


def import_graph(module: Any, sample: Any) -> Any:
    """``sbc_deploy.frontends.from_torch`` of the module (a clear error where it is absent)."""
    try:
        from sbc_deploy.frontends.from_torch import from_torch
    except ImportError as err:  # the torch frontend lands with issue 18's torchfront branch
        raise RuntimeError("this checkout has no sbc_deploy.frontends.from_torch "
                           "(issue 18's torch frontend)") from err
    return from_torch(module, sample)


def rates(module: Any, sample: Any) -> dict[str, float]:
    """Firing rate of every neuron layer on ``sample`` (recorded beside the benchmark's rows)."""
    return _rates(module, sample)
