"""The norse networks of tests/test_norse.py, built by the same code in the ``torch`` framework
environment (tests/frameworks/norse_torch_driver.py runs them there with norse 1.1.0) and in
the main one (where sbc-deploy imports them with ``from_torch``; norse is installed there with
``--no-deps``, see README).

Every neuron has norse's default parameters (``LIFParameters()``, ``LIFBoxParameters()``,
``LIParameters()``, ``IAFParameters()``, ``dt = 1e-3``), except the subtractive reset of one
LIFBox layer. The weights are torch's default initialisation from a fixed seed, multiplied per
layer by a gain (``GAINS``) chosen so that every spiking layer fires a few percent of the time per
step at these inputs (Bernoulli 0.2 input spikes, T = 50, B = 8); the driver records the
rates and the test checks them with the interop bar (tests/frameworks/harness.py).

``RUN``: how norse runs the network. ``"stepped"``: a ``SequentialState`` of cells, called once
per step as ``out, state = net(x[t], state)`` (norse's documented loop); ``"sequence"``: time
layers (``LIF``, ``LI``, ``IAF``, ``LIFRecurrent``, ``Lift``) on the whole ``[T, B, ...]`` tensor,
returning
``(out, state)``; ``"own_loop"``: a user's module whose forward loops over time itself.
"""

from __future__ import annotations

import torch
from torch import nn

STEPS, BATCH = 50, 8
CASES = ("cells_lif", "cells_lifbox_li", "cells_iaf_libox", "layers_conv", "own_loop",
         "recurrent_cell", "recurrent_layer")
RUN = {"cells_lif": "stepped", "cells_lifbox_li": "stepped", "cells_iaf_libox": "stepped",
       "layers_conv": "sequence", "own_loop": "own_loop", "recurrent_cell": "stepped",
       "recurrent_layer": "sequence"}
RECURRENT_GAINS = {"recurrent_cell": (4.0, 1.0), "recurrent_layer": (4.0, 1.0)}
INPUT = {"layers_conv": (2, 8, 8)}
GAINS = {"cells_lif": (8.0, 12.0), "cells_lifbox_li": (20.0, 8.0),
         "cells_iaf_libox": (2.5, 1.0), "layers_conv": (16.0, 4.0, 1.0),
         "own_loop": (16.0, 16.0), "recurrent_cell": (12.0,), "recurrent_layer": (12.0,)}


def input_shape(case: str) -> tuple[int, ...]:
    return INPUT.get(case, (100,))


class OwnLoop(nn.Module):
    """A user's network that steps its cells through time in its own forward."""

    def __init__(self) -> None:
        super().__init__()
        import norse.torch as norse

        self.fc1 = nn.Linear(100, 64)
        self.lif = norse.LIFBoxCell(norse.LIFBoxParameters(
            reset_method=norse.reset_subtract))
        self.fc2 = nn.Linear(64, 10)
        self.iaf = norse.IAFCell()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = s2 = None
        outputs = []
        for t in range(x.shape[0]):
            z, s1 = self.lif(self.fc1(x[t]), s1)
            out, s2 = self.iaf(self.fc2(z), s2)
            outputs.append(out)
        return torch.stack(outputs)


def _build(case: str) -> nn.Module:
    import norse.torch as norse

    if case == "cells_lif":
        return norse.SequentialState(nn.Linear(100, 64), norse.LIFCell(), nn.Linear(64, 16),
                                     norse.LIFCell())
    if case == "cells_lifbox_li":
        return norse.SequentialState(nn.Linear(100, 64), norse.LIFBoxCell(), nn.Linear(64, 10),
                                     norse.LICell())
    if case == "cells_iaf_libox":
        return norse.SequentialState(nn.Linear(100, 64), norse.IAFCell(), nn.Linear(64, 10),
                                     norse.LIBoxCell())
    if case == "layers_conv":
        return norse.SequentialState(
            norse.Lift(nn.Conv2d(2, 8, 3, padding=1)), norse.LIF(), norse.Lift(nn.Flatten()),
            norse.Lift(nn.Linear(8 * 8 * 8, 32)), norse.IAF(), norse.Lift(nn.Linear(32, 10)),
            norse.LI())
    if case == "own_loop":
        return OwnLoop()
    if case == "recurrent_cell":
        return norse.SequentialState(norse.LIFRecurrentCell(100, 64), nn.Linear(64, 16),
                                     norse.LIFCell())
    if case == "recurrent_layer":
        return norse.SequentialState(norse.LIFRecurrent(100, 64), norse.Lift(nn.Linear(64, 16)),
                                     norse.LIF())
    raise KeyError(case)


def build(case: str) -> nn.Module:
    """The network of ``case`` with its seeded, scaled weights."""
    torch.manual_seed(CASES.index(case))
    net = _build(case)
    layers = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        for layer, gain in zip(layers, GAINS[case]):
            layer.weight.mul_(gain)
        for cell in net.modules():   # norse's own input and recurrent weights
            if hasattr(cell, "recurrent_weights"):
                cell.input_weights.mul_(RECURRENT_GAINS[case][0])
                cell.recurrent_weights.mul_(RECURRENT_GAINS[case][1])
    return net.eval()


def cells(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of every norse neuron (cells and time layers)."""
    from norse.torch.module.snn import SNN, SNNCell, SNNRecurrent, SNNRecurrentCell

    kinds = (SNN, SNNCell, SNNRecurrent, SNNRecurrentCell)
    return [(p, m) for p, m in net.named_modules() if isinstance(m, kinds)]


def run(case: str, net: nn.Module, x: torch.Tensor
        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The output ``[T, B, ...]`` and every neuron's output ``[T, B, ...]`` (spikes, or the
    membrane of LI cells), run the way ``RUN`` says."""
    recorded: dict[str, list[torch.Tensor]] = {p: [] for p, _ in cells(net)}
    hooks = [m.register_forward_hook(lambda _m, _i, out, p=p: recorded[p].append(out[0]))
             for p, m in cells(net)]
    try:
        with torch.no_grad():
            if RUN[case] == "own_loop":
                out = net(x)
            elif RUN[case] == "stepped":   # a SequentialState of cells: norse's loop
                state, steps = None, []
                for t in range(x.shape[0]):
                    o, state = net(x[t], state)
                    steps.append(o)
                out = torch.stack(steps)
            else:
                out, _ = net(x)
    finally:
        for hook in hooks:
            hook.remove()
    layers = {p: (torch.stack(v) if len(v) > 1 else v[0]) for p, v in recorded.items()}
    return out, layers
