r"""What frameworks really write into NIR, read as they meant it (used by :mod:`from_nir`).

Each function takes the importer's flattened node table (its own copy: the caller's
``nir.NIRGraph`` is never changed) and returns what it did, as sentences for the log and the
graph's metadata:

- :func:`detect_convention`: which framework wrote a file, from what the file gives away
  (metadata written by sbc-deploy or a framework, the ``r`` each exporter writes, a batch axis in
  the port types), or None with the reason.
- :func:`strip_batch_axes`: a leading axis of size 1 in Input/Output port types (rockpool
  exports with sample data of shape (1, N), nirtorch keeps it) is dropped where the per-sample
  shape is what the graph needs.
- :func:`rewire_spyx_recurrence`: spyx writes a recurrent layer as a nested graph whose Input
  feeds the recurrent weights (input -> w_rec <-> lif); spyx itself adds the input to the
  neuron, so the edge is moved to the neuron.
- :func:`dt_from_r`: rockpool writes ``r = tau exp(-dt/tau) / dt``; the step is recovered by
  solving ``x e^x = 1/r`` for ``x = dt/tau`` (Newton on ``log x + x = -log r``).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import nir
import numpy as np

from sbc_deploy.errors import ConfigError

log = logging.getLogger(__name__)

Shape = tuple[int, ...]
_LEAKY = (nir.LIF, nir.LI)
_CUBA = (nir.CubaLIF, nir.CubaLI)


def _values(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float64).reshape(-1)


def _meta_text(meta: Mapping[str, Any], key: str) -> str | None:
    if key not in meta:
        return None
    value = meta[key]
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        value = value.decode("utf8")
    return str(value)


def _tau_r(node: nir.NIRNode) -> tuple[np.ndarray, np.ndarray] | None:
    if isinstance(node, _LEAKY):
        return _values(node.tau), _values(node.r)
    if isinstance(node, _CUBA):
        return _values(node.tau_mem), _values(node.r)
    return None


def dt_from_r(tau: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Per neuron ``dt`` with ``r = tau exp(-dt/tau) / dt`` (rockpool's export), i.e.
    ``x e^x = 1/r`` for ``x = dt / tau``; requires ``r > 0``."""
    target = -np.log(r)  # log x + x = -log r
    x = np.where(r > 1, 1.0 / np.maximum(r, 1e-300), 0.5)
    for _ in range(60):
        step = (np.log(x) + x - target) / (1.0 / x + 1.0)
        x = np.maximum(x - step, x * 1e-3)
        if np.all(np.abs(step) <= 1e-15 * np.maximum(1.0, x)):
            break
    return x * tau


def rockpool_dt(nodes: Mapping[str, nir.NIRNode]) -> tuple[float, str] | None:
    """The single ``dt`` rockpool's ``r`` encodes, or None when the neurons disagree."""
    found: list[np.ndarray] = []
    for node in nodes.values():
        pair = _tau_r(node)
        if pair is None:
            continue
        tau, r = pair
        if np.any(r <= 0) or np.any(tau <= 0):
            return None
        found.append(dt_from_r(tau, r))
    if not found:
        return None
    dts = np.concatenate(found)
    dt = float(np.median(dts))
    if not np.allclose(dts, dt, rtol=1e-6):
        return None
    return dt, f"recovered from r = tau exp(-dt/tau)/dt (rockpool) over {dts.size} neurons"


def detect_convention(graph: nir.NIRGraph, nodes: Mapping[str, nir.NIRNode]
                      ) -> tuple[str | None, str, tuple[str, ...]]:
    """``(framework, why, candidates)``: the framework when the file gives its writer away and
    no other fits, else None with the reason and, when two or more frameworks' signatures fit,
    their names (the caller must not pick one silently)."""
    meta = dict(graph.metadata or {})
    for key in ("sbc_nir_for", "sbc_convention", "convention", "framework"):
        name = _meta_text(meta, key)
        if name is not None:
            return name.lower(), f"graph metadata {key!r} = {name!r}", (name.lower(),)
    pairs = [p for p in (_tau_r(n) for n in nodes.values()) if p is not None]
    spiking = [n for n in nodes.values() if isinstance(n, (nir.LIF, nir.CubaLIF, nir.IF))]
    batch = any(_leading_ones(n) for n in nodes.values() if isinstance(n, nir.Input))
    r_one = bool(spiking) and all(np.allclose(_values(n.r), 1.0) for n in spiking)
    fits: dict[str, str] = {}
    if pairs and all(np.allclose(r * 1e-4, tau, rtol=1e-6) or (np.all(np.isinf(tau)) and
                                                              np.all(np.isinf(r)))
                     for tau, r in pairs):
        fits["snntorch"] = "every leaky neuron has r = tau / 1e-4 (snntorch's hard-coded dt)"
    if pairs and all(np.allclose(r, 1.0 - 1.0 / tau, rtol=1e-6) and np.all(r != 1)
                     for tau, r in pairs):
        fits["spyx"] = "every leaky neuron has r = 1 - 1/tau (spyx writes r = beta, dt = 1)"
    if batch and pairs and rockpool_dt(nodes) is not None:
        fits["rockpool"] = ("a batch axis in the Input type and r = tau exp(-dt/tau)/dt with one "
                            "dt (rockpool)")
    if batch and r_one:
        fits["norse"] = ("a batch axis in the Input type and r = 1 (norse, exported with a "
                         "batched sample)")
    if len(fits) == 1:
        name, why = next(iter(fits.items()))
        return name, why, (name,)
    if fits:
        listing = "; ".join(f"{name}: {why}" for name, why in fits.items())
        return None, f"the file fits {' and '.join(fits)} ({listing})", tuple(fits)
    if r_one:
        return None, ("r = 1 everywhere fits norse and sinabs alike (and the NIR spec), which "
                      "read it differently; read as the NIR spec says: pass --from norse or "
                      "--from sinabs if one of them wrote it"), ()
    return None, "no framework signature found; read as the NIR spec says", ()


def _leading_ones(node: nir.Input) -> bool:
    shape = node.input_type.get("input")
    return shape is not None and np.size(shape) > 1 and int(np.asarray(shape).reshape(-1)[0]) == 1


def strip_batch_axes(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]],
                     declared: Any) -> list[str]:
    """Drop leading size-1 axes of Input types where the nodes they feed need fewer axes
    (Output types are checked against what feeds them in the importer).

    ``declared(node)`` gives the per-sample input shape a node fixes by itself (or None).
    Replaces the port nodes in ``nodes`` (the importer's own table) and returns what it did.
    """
    notes: list[str] = []
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in edges:
        succs[src].append(dst)
        preds[dst].append(src)
    for name, node in list(nodes.items()):
        if isinstance(node, nir.Input):
            shape = tuple(int(v) for v in np.asarray(node.input_type.get("input")).reshape(-1))
            wanted = [declared(nodes[s]) for s in succs[name]]
            wanted = [w for w in wanted if w is not None]
            stripped = shape
            while len(stripped) > 1 and stripped[0] == 1 and wanted and \
                    all(tuple(w) != stripped for w in wanted):
                stripped = stripped[1:]
            if stripped != shape and any(tuple(w) == stripped for w in wanted):
                nodes[name] = nir.Input(input_type={"input": np.array(stripped)},
                                        metadata=dict(node.metadata or {}))
                notes.append(f"Input '{name}': dropped a batch axis from {shape} -> {stripped}")
    return notes


def rewire_spyx_recurrence(nodes: Mapping[str, nir.NIRNode], edges: list[tuple[str, str]]
                           ) -> tuple[list[tuple[str, str]], list[str]]:
    """Move spyx's ``x -> w_rec`` edge of a recurrent cell to ``x -> neuron``."""
    notes: list[str] = []
    edge_set = set(edges)
    new_edges = list(edges)
    for w_name, w_node in nodes.items():
        if not isinstance(w_node, (nir.Affine, nir.Linear)):
            continue
        loops = [n for s, n in edges if s == w_name and (n, w_name) in edge_set
                 and isinstance(nodes.get(n), (nir.LIF, nir.CubaLIF, nir.IF))]
        if len(loops) != 1:
            continue
        neuron = loops[0]
        feeders = [s for s, d in edges if d == w_name and s != neuron]
        for src in feeders:
            if (src, neuron) in edge_set:
                raise ConfigError(f"'{src}' feeds both the recurrent weights '{w_name}' and the "
                                  f"neuron '{neuron}'; spyx's layout has only the first",
                                  where=f"node '{w_name}' (convention spyx)")
            new_edges[new_edges.index((src, w_name))] = (src, neuron)
            notes.append(f"recurrent cell '{neuron}': input edge {src} -> {w_name} moved to "
                         f"{src} -> {neuron} (spyx adds the input to the neuron)")
    return new_edges, notes


def hwc_to_chw_columns(weight: np.ndarray, chw: Shape) -> np.ndarray:
    """Affine columns in (H, W, C) flatten order -> (C, H, W) order (spyx runs channels-last)."""
    c, h, w = chw
    return weight.reshape(weight.shape[0], h, w, c).transpose(0, 3, 1, 2).reshape(
        weight.shape[0], -1)


def chw_to_hwc_columns(weight: np.ndarray, chw: Shape) -> np.ndarray:
    """The inverse of :func:`hwc_to_chw_columns`."""
    c, h, w = chw
    return weight.reshape(weight.shape[0], c, h, w).transpose(0, 2, 3, 1).reshape(
        weight.shape[0], -1)
