"""Per-layer details of a report: what each synapse layer costs, stores and fires.

Pure functions of values the pipeline already has (the compressed graph, the target, the
mapping estimate, the SynOps counts of the dense and the compressed network); the pipeline puts
the results into :class:`~sbc_deploy.report.model.LayerRow`. Counting rules:

- ``synops``: SynOps per sample of the layer (:mod:`sbc_deploy.report.synops`).
- ``energy_j``: the dynamic energy per sample the layer causes on the target::

      E_layer = synops x E_synop + spikes_in x E_spike + updates(neuron) x E_update

  (spikes routed into the layer; updates of the neuron it drives, counted for the first synapse
  layer that drives it when several do, so that the layers add up to the network). The
  per-core static term is not split across layers (it belongs to the chip; the report shows it
  among the terms): the layers' energies plus that term are the total.
- ``memory_bits``: synapse memory of the layer in both storage forms, with the target's costs::

      dense  = potential synapses x w_bits      (zeros stored too)
      sparse = non-zero synapses  x (w_bits + index_bits)

  where ``w_bits`` is the target's ``bits_per_weight`` or, when that is ``"layer"``, the layer's
  own width. The mapping picks the form the target uses (``storage``); dense storage does not
  reward pruning, which is why a pruned network can keep its core count.
- ``rate``: mean spikes per neuron per time step of the neuron the layer drives, measured by the
  float simulator on the evaluation data (``None`` for a read-out without a spiking neuron).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from sbc_deploy.check.mapping import synapse_fan_in, synapse_potential
from sbc_deploy.ir import Graph, Synapse
from sbc_deploy.report.energy import costs_from_target


@dataclass(frozen=True)
class LayerDetail:
    """Everything per layer that the report adds to the compression statistics."""

    name: str
    neuron: str | None
    synops_dense: float | None
    synops_compressed: float | None
    energy_dense_j: float | None
    energy_compressed_j: float | None
    rate_dense: float | None
    rate_compressed: float | None
    storage: str | None
    memory_bits_dense: int
    memory_bits_sparse: int
    cores: tuple[int, ...]


def _per_sample_layers(synops: Any) -> dict[str, dict[str, float]]:
    """``name -> {synops, spikes_in}`` per sample, from a SynOpsReport (or ``{}``)."""
    if synops is None:
        return {}
    return {layer.name: {"synops": float(layer.synops.sum()) / synops.samples,
                         "spikes_in": float(layer.spikes_in.sum()) / synops.samples}
            for layer in synops.layers}


def _updates(synops: Any) -> dict[str, float]:
    if synops is None:
        return {}
    return {n.name: float(n.updates.sum()) / synops.samples for n in synops.neurons}


def _energy(costs: Any, counts: Mapping[str, float] | None, updates: float | None) -> float | None:
    if counts is None:
        return None
    total = 0.0
    if costs.synop is not None:
        total += counts["synops"] * costs.synop.joules
    if costs.spike is not None:
        total += counts["spikes_in"] * costs.spike.joules
    if costs.neuron_update is not None and updates is not None:
        total += updates * costs.neuron_update.joules
    return total


def memory_forms(syn: Synapse, target: Any) -> tuple[int, int]:
    """``(dense_bits, sparse_bits)`` of one synapse layer's weights on ``target``."""
    spec = target.cores
    w_bits = spec.bits_per_weight
    if w_bits is None:
        w_bits = syn.encoding.bits if syn.encoding is not None else target.weights.bits
    if spec.synapse_storage == "kernel":  # the weight tensor once, shared by every neuron
        return int(syn.weight.size) * int(w_bits), int(syn.weight.size) * int(w_bits)
    nnz = int(np.sum(synapse_fan_in(syn)))
    potential = int(np.sum(synapse_potential(syn)))
    return potential * int(w_bits), nnz * (int(w_bits) + int(spec.index_bits))


def layer_details(graph: Graph, target: Any, mapping: Any, dense_synops: Any,
                  compressed_synops: Any, rates_dense: Mapping[str, float],
                  rates_compressed: Mapping[str, float],
                  host: Any = ()) -> dict[str, LayerDetail]:
    """One :class:`LayerDetail` per synapse layer of ``graph`` (see the module docstring).
    ``host``: nodes the target's host runs (``CheckResult.offloaded``): a synapse layer there
    costs no chip energy (``None``), a neuron there no chip neuron updates."""
    host = set(host)
    costs = costs_from_target(target)
    dense, compressed = _per_sample_layers(dense_synops), _per_sample_layers(compressed_synops)
    upd_dense, upd_compressed = _updates(dense_synops), _updates(compressed_synops)
    placement = {}
    for place in getattr(mapping, "layers", ()):
        for syn in place.synapses:
            placement[syn] = place
    out = {}
    counted: set[str] = set()  # neurons whose updates a layer already carries
    for layer in graph.synapse_layers():
        name, neuron = layer.name, layer.neuron_name
        own = neuron if neuron and neuron not in counted else None
        if neuron:
            counted.add(neuron)
        place = placement.get(name)
        dense_bits, sparse_bits = memory_forms(layer.synapse, target)
        out[name] = LayerDetail(
            name=name, neuron=neuron,
            synops_dense=dense.get(name, {}).get("synops"),
            synops_compressed=compressed.get(name, {}).get("synops"),
            energy_dense_j=None if name in host else _energy(
                costs, dense.get(name), None if own in host else upd_dense.get(own or "")),
            energy_compressed_j=None if name in host else _energy(
                costs, compressed.get(name),
                None if own in host else upd_compressed.get(own or "")),
            rate_dense=rates_dense.get(neuron) if neuron else None,
            rate_compressed=rates_compressed.get(neuron) if neuron else None,
            storage=None if place is None else place.storage,
            memory_bits_dense=dense_bits, memory_bits_sparse=sparse_bits,
            cores=() if place is None else tuple(place.cores))
    return out


def layer_label(name: str, neuron: str | None) -> str:
    """The one name of a layer used everywhere: ``"linear1 -> leaky1"``."""
    return name if not neuron else f"{name} -> {neuron}"


def cost_evidence(target: Any) -> dict[str, str]:
    """Evidence grade per energy term name (as :func:`estimate_energy` names the terms)."""
    costs = costs_from_target(target)
    grades = {}
    for name, cost in (("synops", costs.synop), ("neuron updates", costs.neuron_update),
                       ("spikes routed", costs.spike), ("core steps", costs.core_step)):
        if cost is not None:
            grades[name] = cost.evidence or "unknown"
    return grades
