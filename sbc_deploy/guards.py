"""Quality guards: a network can fit every rule of a target and still be useless.

Each guard turns measurements (accuracy, per-layer firing rates) into a
:class:`~sbc_deploy.report.model.Finding` with a severity, the place, and a hint that names the
likely cause. ``error`` findings make the run exit 1, like a rule violation.

Firing rate of a spiking layer = spikes / (neurons x steps x samples), on the evaluation data
(or, before calibration, on a few calibration samples). A multi-spike neuron (``max_spikes``
above 1, ir/nodes.py "Spike variants") sends several spikes in one step, so its rate can pass 1;
the share of neuron-steps with at least one spike (``active``) is what the silent and saturated
guards judge, and their messages give the rate beside it.

Guards, with their codes:

- ``silent_layer`` (error): a spiking layer never fires on the data. Usually the time step: a
  NIR file stores none, and a dt far below the trained one makes every decay ~1 and every
  threshold out of reach; also thresholds, or an input encoding other than the one trained on.
- ``saturated_layer`` (warning): a layer fires (one spike or more) on > 90 % of neuron-steps
  (reset mode, a dt far above the trained one, or thresholds too low).
- ``dense_at_chance`` (error): the *dense* network, before any compression, classifies at or
  near chance on the user's labelled data; compressing it cannot help (time step, reset,
  encoding, or the labels).
- ``accuracy_drop`` (error): the compressed network loses more than ``max_drop`` accuracy points
  against the dense one, on the float simulator or on the integer core.
- ``integer_float_mismatch`` (warning): the integer core and the float simulator disagree by
  more than 5 points on the compressed network (rounded thresholds or decays).
- ``activity_shift`` (warning): a layer's firing rate moved by more than 4x after compression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from sbc_deploy.ir import Graph, Neuron
from sbc_deploy.report.model import Finding

#: Default for ``--max-drop``: accuracy points the compressed network may lose.
DEFAULT_MAX_DROP = 5.0
#: A dense accuracy below chance + this margin (fraction) is "at or near chance".
CHANCE_MARGIN = 0.05
SATURATED_RATE = 0.9
MISMATCH_POINTS = 5.0
SHIFT_FACTOR = 4.0

_DT_HINT = ("likely the time step: the model runs with dt = {dt:g} s; a NIR file stores no dt and "
            "frameworks disagree on its meaning ({conventions}): pass --from FRAMEWORK (or "
            "--dt in seconds) as the writer meant it. Else the input encoding (0/1 spikes per "
            "step, shape and polarity as trained) or thresholds out of reach")


def _dt_conventions() -> str:
    """Each framework's reading of time, from the one conventions table (the missing-dt
    message of the NIR reader says the same)."""
    from sbc_deploy.frontends.conventions import time_step_advice

    return time_step_advice()


def spiking_layers(graph: Graph) -> list[str]:
    """Names of the graph's spiking neuron nodes, in topological order."""
    return [name for name in graph.topological_order
            if isinstance(graph.nodes[name], Neuron) and graph.nodes[name].spiking]


@dataclass(frozen=True)
class Activity:
    """Firing per spiking layer on some data.

    Attributes:
        rate: mean spikes per neuron per step (above 1 is possible for multi-spike neurons).
        silent_neurons: fraction of the layer's neurons that never fired.
        samples: samples seen; ``source``: which data (``"evaluation"``, ``"calibration"``).
        active: fraction of neuron-steps with at least one spike (equal to ``rate`` for a
            layer that sends one spike at most; a layer missing here reads its rate).
    """

    rate: Mapping[str, float]
    silent_neurons: Mapping[str, float]
    samples: int
    source: str
    active: Mapping[str, float] = field(default_factory=dict)

    def active_share(self, name: str) -> float:
        """Neuron-steps of layer ``name`` with at least one spike, as a fraction."""
        return self.active.get(name, self.rate.get(name, 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "samples": self.samples,
                "rate": dict(self.rate), "silent_neurons": dict(self.silent_neurons),
                "active": {n: self.active_share(n) for n in self.rate}}


class ActivityMeter:
    """Accumulates spike counts per layer over batches of recorded ``[T, B, ...]`` spikes.

    Each batch (or chunk) is reduced once per layer to spikes per neuron::

        count[n] += sum_{t, b} s[t, b, n]

    from which both results follow: rate = sum_n count[n] / cells, and a neuron fired iff
    ``count[n] > 0`` (spikes are non-negative: 0/1 from a spiking layer, a count from a
    multi-spike one). Where a chunk holds a count above 1, the neuron-steps with at least one
    spike are counted too (``active``; otherwise they equal the spikes). The per-neuron sums
    are exact (see :func:`_spike_counts`) and accumulate in float64, exact below 2**53.
    """

    def __init__(self, layers: Iterable[str], source: str):
        self.layers = list(layers)
        self.source = source
        self._counts: dict[str, torch.Tensor] = {}
        self._active: dict[str, float] = {}
        self._cells: dict[str, int] = {}
        self._samples = 0

    def add(self, recorded: Mapping[str, torch.Tensor]) -> None:
        batch = 0
        for name in self.layers:
            spikes = recorded[name].detach()
            batch = int(spikes.shape[1])
            counts = _spike_counts(spikes)
            several = spikes.numel() > 0 and float(spikes.max()) > 1
            active = float(_spike_counts(spikes > 0).sum()) if several else float(counts.sum())
            self._counts[name] = counts if name not in self._counts else \
                self._counts[name] + counts
            self._active[name] = self._active.get(name, 0.0) + active
            self._cells[name] = self._cells.get(name, 0) + int(spikes.numel())
        self._samples += batch

    def result(self) -> Activity:
        rate = {n: float(self._counts[n].sum()) / self._cells[n] if self._cells.get(n) else 0.0
                for n in self.layers}
        active = {n: self._active[n] / self._cells[n] if self._cells.get(n) else 0.0
                  for n in self.layers}
        silent = {n: 1.0 - float((self._counts[n] != 0).float().mean())
                  if n in self._counts else 1.0 for n in self.layers}
        return Activity(rate, silent, self._samples, self.source, active)


def _spike_counts(spikes: torch.Tensor) -> torch.Tensor:
    """Spikes per neuron, ``sum_{t, b} s[t, b, n]``, as float64 on the CPU (exact).

    One reduction in the spikes' dtype: the addends are non-negative integers, so every partial
    sum is at most the total, and a computed total below ``2 / eps`` of the dtype (2**24 for
    float32) means that no addition rounded; a larger one is summed again in float64.
    """
    flat = spikes.reshape(spikes.shape[0] * spikes.shape[1], -1)
    if not flat.is_floating_point():
        return flat.sum(dim=0, dtype=torch.int64).cpu().double()
    counts = flat.sum(dim=0)
    if counts.numel() and float(counts.max()) >= 2.0 / torch.finfo(flat.dtype).eps:
        counts = flat.sum(dim=0, dtype=torch.float64)
    return counts.cpu().double()


def measure_activity(graph: Graph, x: np.ndarray, source: str) -> Activity:
    """Firing rates of ``graph`` on ``x`` ``[N, T, *input]`` (one float simulation)."""
    from sbc_deploy.sim import simulate

    layers = spiking_layers(graph)
    meter = ActivityMeter(layers, source)
    inputs = torch.from_numpy(np.array(np.swapaxes(x, 0, 1))).to(torch.float32)
    meter.add(simulate(graph, inputs, record=layers).recorded)
    return meter.result()


def _chance(n_classes: int | None) -> float | None:
    return None if not n_classes or n_classes < 2 else 1.0 / n_classes


def dense_findings(activity: Activity | None, accuracy: float | None, *, dt: float,
                   n_classes: int | None, reset: str | None = None,
                   cause: str | None = None) -> list[Finding]:
    """Guards on the dense network, before compression (fail early: compressing a silent or
    chance-level network wastes the run and reports nonsense). ``cause``: the hint when the
    caller knows what made the network fail (the conversion to a NIR consumer's model), in
    place of the time-step hint."""
    found = []
    hint = cause or _DT_HINT.format(dt=dt, conventions=_dt_conventions())
    if activity is not None:
        for name, rate in activity.rate.items():
            if rate == 0.0:
                found.append(Finding(
                    "error", "silent_layer", name,
                    f"spiking layer '{name}' never fires on {activity.samples} samples of the "
                    f"{activity.source} data (dense network)", hint, value=0.0))
            elif (share := activity.active_share(name)) > SATURATED_RATE:
                several = "" if abs(rate - share) < 1e-12 else (
                    f" ({rate:.3g} spikes per neuron per step: it sends several in one step)")
                found.append(Finding(
                    "warning", "saturated_layer", name,
                    f"spiking layer '{name}' fires on {100 * share:.1f} % of neuron-steps"
                    f"{several} on the {activity.source} data (dense network)",
                    f"likely the reset mode (now {reset or 'unknown'}; try --reset "
                    f"{'zero' if reset == 'subtract' else 'subtract'}), a dt far above the trained "
                    "one, or thresholds too low", value=share, limit=SATURATED_RATE))
    chance = _chance(n_classes)
    if accuracy is not None and chance is not None and accuracy <= chance + CHANCE_MARGIN:
        found.append(Finding(
            "error", "dense_at_chance", "accuracy.dense_float",
            f"the dense network, before compression, classifies {100 * accuracy:.1f} % of the "
            f"evaluation data correctly; chance is {100 * chance:.1f} % ({n_classes} classes)",
            hint + "; or labels that do not match the output neurons' order",
            value=accuracy, limit=chance + CHANCE_MARGIN))
    return found


def compressed_findings(target: str, *, dense: Activity | None, compressed: Activity | None,
                        dense_accuracy: float | None, float_accuracy: float | None,
                        integer_accuracy: float | None,
                        max_drop: float | None) -> list[Finding]:
    """Guards on one target's compressed network against the dense one."""
    found = []
    fix = ("compress less (lower --sparsity, a higher --fan-in or --bits where the target allows) "
           "or use --method sbc with calibration data (magnitude pruning ignores what the "
           "neurons need); --max-drop none turns this guard off")
    if dense_accuracy is not None and max_drop is not None:
        for label, value in (("float simulator", float_accuracy),
                             ("integer core", integer_accuracy)):
            if value is None:
                continue
            drop = 100.0 * (dense_accuracy - value)
            if drop > max_drop + 1e-9:  # exactly max_drop is allowed (float rounding)
                found.append(Finding(
                    "error", "accuracy_drop",
                    f"accuracy.compressed_{'float' if label[0] == 'f' else 'integer'}",
                    f"{target}: the compressed network loses {drop:.1f} accuracy points on the "
                    f"{label} ({100 * dense_accuracy:.1f} % dense -> {100 * value:.1f} %); "
                    f"--max-drop allows {max_drop:g}", fix, target, drop, max_drop))
    if float_accuracy is not None and integer_accuracy is not None:
        gap = 100.0 * abs(float_accuracy - integer_accuracy)
        if gap > MISMATCH_POINTS:
            found.append(Finding(
                "warning", "integer_float_mismatch", "accuracy.compressed_integer",
                f"{target}: the integer core ({100 * integer_accuracy:.1f} %) and the float "
                f"simulator ({100 * float_accuracy:.1f} %) disagree by {gap:.1f} points",
                "thresholds and decays are rounded to the target's registers (see the "
                "thresholds_fit_bits / decays_fit_bits warnings); a dt far from the trained one "
                "makes decays round badly", target, gap, MISMATCH_POINTS))
    if dense is not None and compressed is not None:
        for name, before in dense.rate.items():
            after = compressed.rate.get(name)
            if after is None or before == 0.0:
                continue
            if after == 0.0:
                found.append(Finding(
                    "error", "silent_layer", name,
                    f"{target}: spiking layer '{name}' fires at {before:.3g} spikes/neuron/step "
                    "dense but never after compression",
                    "the compression removed the synapses this layer needs (compress less or "
                    "use --method sbc), or integer thresholds rounded above reach",
                    target, 0.0))
            elif after / before > SHIFT_FACTOR or before / after > SHIFT_FACTOR:
                found.append(Finding(
                    "warning", "activity_shift", name,
                    f"{target}: spiking layer '{name}' fires at {after:.3g} spikes/neuron/step "
                    f"after compression vs {before:.3g} dense",
                    "compression changed the balance of this layer's input (compress less, or "
                    "--method sbc, whose loss is the membrane potential)", target,
                    after / before, SHIFT_FACTOR))
    return found


def parse_max_drop(text: str) -> float | None:
    """``--max-drop``: points in [0, 100], or ``none`` / ``off`` to turn the guard off."""
    if text.strip().lower() in ("none", "off"):
        return None
    value = float(text)
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"must lie in [0, 100] accuracy points, got {text}")
    return value


__all__ = ["DEFAULT_MAX_DROP", "Activity", "ActivityMeter", "compressed_findings",
           "dense_findings", "measure_activity", "parse_max_drop", "spiking_layers"]
