r"""Core-mapping estimate: which neurons go on which core, and how full each core is.

Only what runs on the chip is mapped: the nodes the chip / host split leaves to the host
(``check.split.offloaded``: a neuron model, a layer type or an operation the chip lacks, when
the chip runs part of the network) hold no core, their synapses cost no synapse memory, and a
value the host sends to the chip arrives like an input (one axon per value). A target that can
run none of the network's neuron layers is mapped whole (what the chip would need).

A *population* is a group of neurons the chip must hold: every neuron node of the graph, plus the
outputs of a synapse layer that reaches no neuron (a readout; also a chip synapse whose neuron
runs on the host). Each population is placed on cores under the target's per-core limits
(``Target.cores``):

- neurons per core (a single value, or one per core for heterogeneous chips such as Speck);
- synapse memory per core, in bits. A neuron's incoming synapses cost, per synapse layer::

      dense:   potential synapses x w_bits      (every synapse of the receptive field, zeros too)
      sparse:  non-zero synapses  x (w_bits + index_bits)
      dense_or_sparse: the cheaper of the two, chosen once per layer
      kernel:  the layer's weight tensor once (entries x w_bits), shared by all its neurons

  with ``w_bits`` the target's ``bits_per_weight`` or, for ``"layer"``, the layer's own width
  (its encoding's bits; the target's weight bits when the layer is not yet compressed). Dense
  storage does not reward pruning; sparse storage does. Headers and word rounding are ignored;
- distinct presynaptic sources per core (in-axons, Loihi) and (neuron, destination core) pairs
  leaving a core (out-axons, Loihi).

Placement: with ``split_layers`` a greedy pass fills one core after the other with consecutive
neurons of one population as long as every limit holds (nengo-loihi's block splitting). Neurons
of a (C, H, W) or (C, L) population are taken position-major (every channel of one position,
then the next position), so that a core holds a compact tile whose neurons share their inputs,
as a compiler tiles a convolution; 1-D populations are taken in order. Populations are
visited from the output backwards so that each layer's out-axons (which depend on how its
destinations were split) are known when it is placed. With ``share_cores`` all populations fill
one shared pool of cores (Xylo). Without ``split_layers`` each population needs one whole core,
and layers are matched to cores that can hold them (a bipartite matching, as sinabs does for
Speck). A neuron (or a layer) that exceeds a core on
its own is still placed, and reported as an issue; so is using more cores than the chip has.

Approximations, all on the conservative side: a pooling node between a synapse and its neuron
makes the in-axon count an upper bound (the sum of the neurons' fan-ins, capped by the input
size); two synapse layers that read the same source count its axons twice; a self-recurrent
layer's out-axons use its placement before it was split for out-axons. Speck's address padding
follows sinabs (``N = f 2^{ceil log2 fy + ceil log2 fx}``, ``K = c 2^{ceil log2(kx ky) +
ceil log2 f}``); a dense layer on Speck counts as a 1x1 convolution over its inputs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sbc_deploy.ir import (
    Affine,
    AvgPool2d,
    Conv1d,
    Conv2d,
    Delay,
    Flatten,
    Graph,
    Input,
    Neuron,
    Output,
    Scale,
    SumPool2d,
    Synapse,
)
from sbc_deploy.errors import UnsupportedNodeError
from sbc_deploy.targets import Target

log = logging.getLogger(__name__)

POOLS = (SumPool2d, AvgPool2d)
PASS_THROUGH = (Scale, Flatten, *POOLS, Delay)
_IDENTITY = (Scale, Flatten, Delay)  # one output element per input element, same C order


# =========================================================================== results


@dataclass(frozen=True)
class CoreUse:
    """One core of the estimate and what it holds."""

    index: int
    layers: tuple[str, ...]
    neurons: int
    synapse_bits: int
    in_axons: int | None
    out_axons: int | None
    neuron_capacity: int | None
    memory_capacity: int | None
    first: int = 0  # position of its first neuron in the layer's placement order

    @property
    def neuron_utilisation(self) -> float | None:
        """Neurons held / neurons the core can hold (``None`` when unlimited)."""
        return None if not self.neuron_capacity else self.neurons / self.neuron_capacity

    @property
    def memory_utilisation(self) -> float | None:
        """Synapse bits held / synapse memory of the core (``None`` when unlimited)."""
        return None if not self.memory_capacity else self.synapse_bits / self.memory_capacity


@dataclass(frozen=True)
class LayerPlacement:
    """Where one population went: its cores, neurons, synapse memory and storage format."""

    name: str
    neurons: int
    synapses: tuple[str, ...]
    storage: str
    synapse_bits: int
    fan_in_max: int
    cores: tuple[int, ...]


@dataclass(frozen=True)
class MappingIssue:
    """A limit the placement could not meet (becomes a violation of the matching rule)."""

    layer: str
    resource: str  # neurons_per_core | synapse_memory_per_core | in_axons_per_core |
    #                out_axons_per_core | total_cores
    limit: int
    actual: int
    message: str


@dataclass(frozen=True)
class Mapping:
    """The estimate: per-layer placements, per-core use, and what did not fit."""

    target: str
    layers: tuple[LayerPlacement, ...]
    cores: tuple[CoreUse, ...]
    cores_available: int | None
    readout_neurons: int
    issues: tuple[MappingIssue, ...]

    @property
    def cores_used(self) -> int:
        return len(self.cores)

    @property
    def fits(self) -> bool:
        return not self.issues

    def utilisation(self) -> dict[str, float | None]:
        """Mean neuron and synapse-memory utilisation over the cores used, and core share."""
        def mean(values: list[float | None]) -> float | None:
            known = [v for v in values if v is not None]
            return float(np.mean(known)) if known else None
        return {
            "neurons": mean([c.neuron_utilisation for c in self.cores]),
            "synapse_memory": mean([c.memory_utilisation for c in self.cores]),
            "cores": (self.cores_used / self.cores_available) if self.cores_available else None,
        }


# =========================================================================== graph analysis


@dataclass(frozen=True)
class Population:
    """Neurons the chip holds: a neuron node, or a readout synapse's outputs.

    ``synapses`` feed it (with the pass-through nodes between in ``chains``); ``readout`` is true
    when it feeds an Output node.
    """

    name: str
    shape: tuple[int, ...]
    synapses: tuple[str, ...]
    chains: tuple[tuple[str, ...], ...]
    readout: bool

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def synapse_target(graph: Graph, name: str, off: frozenset[str] = frozenset()
                   ) -> tuple[str | None, tuple[str, ...]]:
    """The neuron a synapse feeds (through pass-through nodes) and the nodes in between;
    ``None`` where the path ends, or reaches a node in ``off`` (the host's)."""
    chain: list[str] = []
    current = name
    while True:
        following = graph.successors(current)
        if len(following) != 1 or following[0] in off:
            return None, tuple(chain)
        node = graph.nodes[following[0]]
        if isinstance(node, Neuron):
            return following[0], tuple(chain)
        if isinstance(node, PASS_THROUGH):
            chain.append(following[0])
            current = following[0]
            continue
        return None, tuple(chain)


def synapse_source(graph: Graph, name: str, off: frozenset[str] = frozenset()
                   ) -> tuple[str | None, tuple[str, ...]]:
    """The neuron or Input a synapse reads (through pass-through nodes) and the nodes between,
    listed from the source towards the synapse; ``None`` when it reads a merge or a synapse.
    A node in ``off`` (the host's) is a source: its values reach the chip as an input's do."""
    chain: list[str] = []
    current = name
    while True:
        before = graph.predecessors(current)
        if len(before) != 1:
            return None, tuple(reversed(chain))
        node = graph.nodes[before[0]]
        if isinstance(node, (Neuron, Input)) or before[0] in off:
            return before[0], tuple(reversed(chain))
        if isinstance(node, PASS_THROUGH):
            chain.append(before[0])
            current = before[0]
            continue
        return None, tuple(reversed(chain))


def _feeds_output(graph: Graph, name: str, off: frozenset[str] = frozenset()) -> bool:
    pending, seen = [name], set()
    while pending:
        current = pending.pop()
        for nxt in graph.successors(current):
            node = graph.nodes[nxt]
            if isinstance(node, Output):
                return True
            if isinstance(node, PASS_THROUGH) and nxt not in seen and nxt not in off:
                seen.add(nxt)
                pending.append(nxt)
    return False


def populations(graph: Graph, off: frozenset[str] = frozenset()) -> tuple[Population, ...]:
    """Every population the chip holds, in topological order (see :class:`Population`); the
    nodes in ``off`` run on the host (``check.split.offloaded``) and hold none."""
    feeding: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    readouts: list[tuple[str, tuple[str, ...]]] = []
    for name in graph.topological_order:
        if isinstance(graph.nodes[name], Synapse) and name not in off:
            neuron, chain = synapse_target(graph, name, off)
            if neuron is None:
                readouts.append((name, chain))
            else:
                feeding.setdefault(neuron, []).append((name, chain))
    readout_names = {name for name, _ in readouts}
    result = []
    for name in graph.topological_order:
        node = graph.nodes[name]
        if isinstance(node, Neuron) and name not in off:
            incoming = feeding.get(name, [])
            result.append(Population(name, tuple(node.shape), tuple(s for s, _ in incoming),
                                     tuple(c for _, c in incoming),
                                     _feeds_output(graph, name, off)))
        elif name in readout_names:
            chain = dict(readouts)[name]
            end = chain[-1] if chain else name
            result.append(Population(name, tuple(graph.nodes[end].output_shape), (name,),
                                     (chain,), True))
    return tuple(result)


# --------------------------------------------------------------------------- convolution taps


def _taps(length_in: int, length_out: int, kernel: int, stride: int, padding: int,
          dilation: int) -> tuple[np.ndarray, np.ndarray]:
    """Input index ``idx[o, k]`` of tap ``k`` for output ``o``, and whether it lies inside."""
    idx = (np.arange(length_out)[:, None] * stride - padding
           + np.arange(kernel)[None, :] * dilation)
    return idx, (idx >= 0) & (idx < length_in)


def _conv_geometry(syn: Conv1d | Conv2d) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per spatial axis: (idx, valid) from :func:`_taps`."""
    if isinstance(syn, Conv2d):
        _, h, w = syn.input_shape
        _, ho, wo = syn.output_shape
        kh, kw = syn.weight.shape[2:]
        return [_taps(h, ho, kh, syn.stride[0], syn.padding[0], syn.dilation[0]),
                _taps(w, wo, kw, syn.stride[1], syn.padding[1], syn.dilation[1])]
    _, length = syn.input_shape
    _, lo = syn.output_shape
    return [_taps(length, lo, int(syn.weight.shape[2]), syn.stride, syn.padding, syn.dilation)]


def synapse_fan_in(syn: Synapse, multiplicity: np.ndarray | None = None) -> np.ndarray:
    """Non-zero synapses into each output element, shaped like ``syn.output_shape``.

    ``multiplicity`` (shaped like ``syn.input_shape``): how many source neurons each input
    element stands for -- a pool before the synapse, folded into it on export, turns one
    weight into one synapse per element of its window.
    """
    if multiplicity is not None and not isinstance(syn, (Affine, Conv2d)):
        raise UnsupportedNodeError("pool multiplicity is only defined for Affine and Conv2d",
                                   where=type(syn).__name__)
    if isinstance(syn, Affine):
        if multiplicity is None:
            return np.count_nonzero(syn.weight, axis=1)
        return (syn.weight != 0).astype(np.int64) @ multiplicity.reshape(-1).astype(np.int64)
    geometry = _conv_geometry(syn)  # type: ignore[arg-type]
    if isinstance(syn, Conv2d) and multiplicity is not None:
        (iy, vy), (ix, vx) = geometry
        m = multiplicity.reshape(syn.input_shape).astype(np.int64)
        nz = (syn.weight != 0).astype(np.int64)  # (C_out, C_in / groups, kH, kW)
        groups, c_out = syn.groups, syn.weight.shape[0]
        c_in = nz.shape[1]
        out = np.zeros(syn.output_shape, dtype=np.int64)
        for k in range(nz.shape[2]):
            for l in range(nz.shape[3]):
                # m at the input position of tap (k, l) of every output position, 0 outside
                at = m[:, np.clip(iy[:, k], 0, m.shape[1] - 1)][:, :, np.clip(ix[:, l], 0,
                                                                             m.shape[2] - 1)]
                at = at * (vy[:, k][:, None] & vx[:, l][None, :])
                for g in range(groups):
                    rows = slice(g * c_out // groups, (g + 1) * c_out // groups)
                    out[rows] += np.einsum("oc,cyx->oyx", nz[rows, :, k, l],
                                           at[g * c_in:(g + 1) * c_in])
        return out
    nnz = np.count_nonzero(syn.weight, axis=1)  # (C_out, *kernel): input channels per tap
    if isinstance(syn, Conv2d):
        vy, vx = (valid.astype(np.int64) for _, valid in geometry)
        return np.einsum("okl,yk,xl->oyx", nnz, vy, vx)
    (_, valid), = geometry
    return np.einsum("ok,lk->ol", nnz, valid.astype(np.int64))


def synapse_potential(syn: Synapse) -> np.ndarray:
    """Synapses each output element would have stored densely (zeros included, padding not)."""
    if isinstance(syn, Affine):
        return np.full(syn.output_shape, syn.weight.shape[1], dtype=np.int64)
    c_in = int(syn.weight.shape[1])
    counts = [valid.sum(axis=1) for _, valid in _conv_geometry(syn)]  # type: ignore[arg-type]
    per_position = counts[0] if len(counts) == 1 else np.outer(counts[0], counts[1])
    return np.broadcast_to(c_in * per_position, syn.output_shape).astype(np.int64)


def synapse_fan_out(syn: Synapse) -> np.ndarray:
    """Non-zero synapses leaving each input element, shaped like ``syn.input_shape``."""
    if isinstance(syn, Affine):
        return np.count_nonzero(syn.weight, axis=0)
    weight = syn.weight
    c_out = weight.shape[0]
    groups = syn.groups  # type: ignore[attr-defined]
    out_per_group = c_out // groups
    # nnz[c_in, *kernel]: output channels (of c_in's group) that tap c_in at that kernel offset
    nnz = np.concatenate([np.count_nonzero(weight[g * out_per_group:(g + 1) * out_per_group],
                                           axis=0) for g in range(groups)], axis=0)
    hits = []
    for (idx, valid), length in zip(_conv_geometry(syn), syn.input_shape[1:]):  # type: ignore
        # used[k, i]: how many outputs read input position i through tap k
        used = np.zeros((idx.shape[1], length), dtype=np.int64)
        for k in range(idx.shape[1]):
            np.add.at(used[k], idx[valid[:, k], k], 1)
        hits.append(used)
    if isinstance(syn, Conv2d):
        return np.einsum("ckl,ky,lx->cyx", nnz, hits[0], hits[1])
    return np.einsum("ck,kl->cl", nnz, hits[0])


def presynaptic_mask(syn: Synapse, outputs: slice | np.ndarray) -> np.ndarray:
    """Which input elements (flat, C order) feed the given output elements.

    Args:
        syn: the synapse layer.
        outputs: flat (C order) output indices, as an index array or a slice.
    """
    n_out = int(np.prod(syn.output_shape))
    index = np.arange(n_out)[outputs] if isinstance(outputs, slice) else np.asarray(outputs)
    if isinstance(syn, Affine):
        return np.any(syn.weight[index] != 0, axis=0)
    mask = np.zeros(syn.input_shape, dtype=bool)
    weight = syn.weight
    out_shape = syn.output_shape
    channel, position = np.divmod(index, int(np.prod(out_shape[1:])))
    coords = np.unravel_index(position, out_shape[1:])
    first_in = (channel // (weight.shape[0] // syn.groups)) * weight.shape[1]  # type: ignore
    geometry = _conv_geometry(syn)  # type: ignore[arg-type]
    for tap in np.ndindex(*weight.shape[2:]):
        # per selected output: which of its group's input channels this tap reads
        reads = weight[(channel, slice(None), *tap)] != 0  # (n, C_in/groups)
        inside = np.ones(index.size, dtype=bool)
        where = []
        for (idx, valid), k, p in zip(geometry, tap, coords):
            where.append(idx[p, k])
            inside &= valid[p, k]
        n, c = np.nonzero(reads & inside[:, None])
        mask[(first_in[n] + c, *(axis[n] for axis in where))] = True
    return mask.reshape(-1)


def placement_order(shape: tuple[int, ...]) -> np.ndarray:
    """Order in which a population's neurons fill cores: position-major for (C, H, W) or (C, L)
    shapes (all channels of one position together: they read the same inputs, as a compiler
    tiles a convolution), else flat C order. Entry ``i`` is the flat (C order) neuron index."""
    size = int(np.prod(shape))
    if len(shape) < 2:
        return np.arange(size)
    return np.arange(size).reshape(shape[0], -1).T.reshape(-1)


# --------------------------------------------------------------------------- pass-through maps


def _pool_windows(node: SumPool2d | AvgPool2d) -> list[tuple[slice, slice]]:
    """Per kernel offset, the slices of the zero-padded input that offset reads."""
    _, ho, wo = node.output_shape
    (kh, kw), (sh, sw) = node.kernel_size, node.stride  # type: ignore[misc]
    return [(slice(ky, ky + sh * (ho - 1) + 1, sh), slice(kx, kx + sw * (wo - 1) + 1, sw))
            for ky in range(kh) for kx in range(kw)]


def forward_counts(graph: Graph, values: np.ndarray, chain: Sequence[str]) -> np.ndarray:
    """Carry per-element counts through pass-through nodes (a pool sums its window)."""
    for name in chain:
        node = graph.nodes[name]
        if isinstance(node, POOLS):
            ph, pw = node.padding
            padded = np.pad(values.reshape(node.input_shape), ((0, 0), (ph, ph), (pw, pw)))
            values = sum(padded[:, ys, xs] for ys, xs in _pool_windows(node))
        values = np.asarray(values).reshape(node.output_shape)
    return values


def backward_counts(graph: Graph, values: np.ndarray, chain: Sequence[str]) -> np.ndarray:
    """Carry per-element counts back through pass-through nodes: each element of a pool's input
    receives the sum over the windows that contain it (the adjoint of :func:`forward_counts`)."""
    for name in reversed(chain):
        node = graph.nodes[name]
        if isinstance(node, POOLS):
            ph, pw = node.padding
            c, h, w = node.input_shape
            out = np.asarray(values).reshape(node.output_shape)
            padded = np.zeros((c, h + 2 * ph, w + 2 * pw), dtype=np.result_type(out, np.int64))
            for ys, xs in _pool_windows(node):
                padded[:, ys, xs] += out
            values = padded[:, ph:ph + h, pw:pw + w]
        values = np.asarray(values).reshape(node.input_shape)
    return values


def pool_multiplicity(graph: Graph, name: str, off: frozenset[str] = frozenset()
                      ) -> np.ndarray | None:
    """Source neurons behind each input element of synapse ``name`` when a pool lies between
    them (``None`` when none does): the window sizes, carried through the pass-through chain."""
    source, chain = synapse_source(graph, name, off)
    if source is None or not any(isinstance(graph.nodes[c], POOLS) for c in chain):
        return None
    ones = np.ones(graph.nodes[source].output_shape, dtype=np.int64)
    return forward_counts(graph, ones, chain).reshape(graph.nodes[name].input_shape)


def neuron_fan_in(graph: Graph, pop: Population, off: frozenset[str] = frozenset()
                  ) -> np.ndarray:
    """Non-zero synapses into each neuron of ``pop`` (flat), summed over its synapse layers
    (pools on either side counted as folded into the layer, as the netx export does)."""
    total = np.zeros(pop.size, dtype=np.int64)
    for name, chain in zip(pop.synapses, pop.chains):
        per_synapse = synapse_fan_in(graph.nodes[name],  # type: ignore[arg-type]
                                     pool_multiplicity(graph, name, off))
        counts = forward_counts(graph, per_synapse, chain)
        total += np.asarray(counts, dtype=np.int64).reshape(-1)
    return total


def source_fan_out(graph: Graph, off: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """Non-zero outgoing synapses of every element of every neuron and Input node (flat), on
    the chip: synapses in ``off`` run on the host and are not the chip's fan-out."""
    result: dict[str, np.ndarray] = {}
    for name in graph.topological_order:
        syn = graph.nodes[name]
        if not isinstance(syn, Synapse) or name in off:
            continue
        source, chain = synapse_source(graph, name, off)
        if source is None or source in off:
            continue
        counts = backward_counts(graph, synapse_fan_out(syn), chain).reshape(-1)
        result[source] = result.get(source, 0) + counts.astype(np.int64)
    return result


# =========================================================================== costs


def _weight_bits(syn: Synapse, target: Target) -> int:
    if target.cores.bits_per_weight is not None:
        return target.cores.bits_per_weight
    return syn.encoding.bits if syn.encoding is not None else target.weights.bits


def _pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(n))) if n > 1 else 1


def padded_neurons(shape: tuple[int, ...]) -> int:
    """sinabs' neuron-memory count ``f * 2^(ceil log2 fy + ceil log2 fx)`` (1-D: ``f``)."""
    if len(shape) < 2:
        return int(np.prod(shape))
    return int(shape[0]) * int(np.prod([_pow2(int(n)) for n in shape[1:]]))


def kernel_entries(syn: Synapse, padding: bool) -> int:
    """Weight entries of the layer's kernel memory (sinabs ``K_MT`` when ``padding``)."""
    if not padding:
        return int(syn.weight.size)
    if isinstance(syn, Affine):
        c, kernel, f = syn.weight.shape[1], 1, syn.weight.shape[0]
    else:
        f, c = syn.weight.shape[:2]
        kernel = int(np.prod(syn.weight.shape[2:]))
    return int(c) * _pow2(kernel) * _pow2(int(f))


@dataclass(frozen=True)
class _Costs:
    neurons: int                 # neurons the population occupies (padded when required)
    bits: np.ndarray             # per-neuron synapse bits (int64, flat)
    layer_bits: int              # whole-layer bits (kernel storage), else bits.sum()
    storage: str
    fan_in: np.ndarray
    in_axon_bound: int           # distinct inputs at most


def _costs(graph: Graph, pop: Population, target: Target,
           off: frozenset[str] = frozenset()) -> _Costs:
    spec = target.cores
    bits = np.zeros(pop.size, dtype=np.int64)
    storages = []
    kernel_bits = 0
    fan_in = np.zeros(pop.size, dtype=np.int64)  # neuron_fan_in, summed here as it goes
    for name, chain in zip(pop.synapses, pop.chains):
        syn: Synapse = graph.nodes[name]  # type: ignore[assignment]
        # a pool before the synapse is folded into it on export: its windows multiply the
        # synapses, stored (nnz) and potential (the folded layer with every weight non-zero)
        m = pool_multiplicity(graph, name, off)
        nnz = forward_counts(graph, synapse_fan_in(syn, m), chain).reshape(-1)
        fan_in += nnz.astype(np.int64)
        w_bits = _weight_bits(syn, target)
        if spec.synapse_storage == "kernel":
            kernel_bits += kernel_entries(syn, spec.address_padding) * w_bits
            storages.append("kernel")
            continue
        full = (synapse_potential(syn) if m is None else synapse_fan_in(
            dataclasses.replace(syn, weight=np.ones_like(syn.weight), encoding=None), m))
        potential = forward_counts(graph, full, chain).reshape(-1)
        dense = potential.astype(np.int64) * w_bits
        sparse = nnz.astype(np.int64) * (w_bits + spec.index_bits)
        storage = spec.synapse_storage
        if storage == "dense_or_sparse":
            storage = "dense" if dense.sum() <= sparse.sum() else "sparse"
        bits += dense if storage == "dense" else sparse
        storages.append(storage)
    neurons = padded_neurons(pop.shape) if spec.address_padding else pop.size
    bound = sum(int(np.prod(graph.nodes[s].input_shape)) for s in pop.synapses) or pop.size
    storage_text = "/".join(sorted(set(storages))) or "none"
    layer_bits = kernel_bits if spec.synapse_storage == "kernel" else int(bits.sum())
    return _Costs(neurons, bits, layer_bits, storage_text, fan_in, bound)


def _in_axons_fn(graph: Graph, pop: Population, costs: _Costs,
                 order: np.ndarray) -> Callable[[int, int], int]:
    """Distinct presynaptic inputs of neurons ``order[start:end]`` of ``pop``."""
    exact = all(all(isinstance(graph.nodes[n], _IDENTITY) for n in chain) for chain in pop.chains)

    def count(start: int, end: int) -> int:
        if not pop.synapses:
            return end - start  # fed element-wise: one axon per neuron
        neurons = order[start:end]
        if not exact:
            return int(min(costs.fan_in[neurons].sum(), costs.in_axon_bound))
        return sum(int(presynaptic_mask(graph.nodes[s], neurons).sum())  # type: ignore
                   for s in pop.synapses)
    return count


# =========================================================================== placement


def _fill(n: int, additive: list[tuple[np.ndarray, int | None]],
          in_axons: Callable[[int, int], int] | None,
          in_cap: int | None) -> list[tuple[int, int]]:
    """Greedy split of ``n`` consecutive neurons into cores; returns ``(start, end)`` ranges.

    ``additive``: per-neuron costs and the per-core capacity of each; ``in_axons(start, end)``:
    a count that grows with ``end`` and must stay within ``in_cap``.
    """
    sums = [(np.concatenate([[0], np.cumsum(cost)]), cap) for cost, cap in additive]
    ranges, start = [], 0
    while start < n:
        end = n
        for csum, cap in sums:
            if cap is not None:
                end = min(end, int(np.searchsorted(csum, csum[start] + cap, side="right")) - 1)
        end = max(end, start + 1)  # a neuron that exceeds a core alone still takes one
        if in_axons is not None and in_cap is not None and in_axons(start, end) > in_cap:
            low, high = start + 1, end  # largest e in [low, high] with in_axons(start, e) <= cap
            if in_axons(start, low) > in_cap:
                high = low
            while low < high:
                mid = (low + high + 1) // 2
                if in_axons(start, mid) <= in_cap:
                    low = mid
                else:
                    high = mid - 1
            end = low
        ranges.append((start, end))
        start = end
    return ranges


@dataclass
class _Placed:
    pop: Population
    costs: _Costs
    order: np.ndarray  # placement position -> flat neuron index
    ranges: list[tuple[int, int]]  # per core: positions start:end in ``order``
    in_axons: list[int | None]
    out_axons: list[int | None]


def _readers(graph: Graph, pops: Sequence[Population], off: frozenset[str] = frozenset()
             ) -> dict[str, list[tuple[Population, str, tuple[str, ...], tuple[str, ...]]]]:
    """Source population -> (destination, synapse, chain, source chain) of every synapse that
    reads it: found once, so that the out-axon costs are linear in the layers."""
    readers: dict[str, list[tuple[Population, str, tuple[str, ...], tuple[str, ...]]]] = {}
    for dest in pops:
        for syn_name, chain in zip(dest.synapses, dest.chains):
            source, source_chain = synapse_source(graph, syn_name, off)
            if source is not None:
                readers.setdefault(source, []).append((dest, syn_name, chain, source_chain))
    return readers


def _out_costs(graph: Graph, pop: Population, placed: dict[str, _Placed],
               readers: Mapping[str, Sequence[tuple[Population, str, tuple[str, ...],
                                                    tuple[str, ...]]]]) -> np.ndarray:
    """Per neuron of ``pop`` (flat): the destination cores it sends to (placed ones only)."""
    cost = np.zeros(pop.size, dtype=np.int64)
    for dest, syn_name, chain, source_chain in readers.get(pop.name, ()):
        if dest.name not in placed:
            continue
        syn: Synapse = graph.nodes[syn_name]  # type: ignore[assignment]
        exact = all(isinstance(graph.nodes[n], _IDENTITY) for n in chain)
        every = presynaptic_mask(syn, slice(None)) if not exact else None
        for start, end in placed[dest.name].ranges:
            mask = (presynaptic_mask(syn, placed[dest.name].order[start:end]) if exact
                    else every)
            back = backward_counts(graph, mask.astype(np.int64).reshape(syn.input_shape),
                                   source_chain)
            cost += (back.reshape(-1) > 0)
    return cost


def map_to_cores(graph: Graph, target: Target, off: frozenset[str] = frozenset()) -> Mapping:
    """Estimate how the part of ``graph`` that runs on ``target``'s chip spreads over its
    cores (see the module docstring).

    Args:
        graph: the network (weights as they will be deployed: pruned weights cost less in
            sparse storage, narrower encodings less with ``bits_per_weight = "layer"``).
        target: the hardware target.
        off: the nodes that run on the host and hold no core; default none (every node is
            mapped). The check passes ``check.split.offloaded(graph, target)``: the split
            decides what the chip runs, above this module.

    Returns:
        A :class:`Mapping` with one :class:`LayerPlacement` per population, one
        :class:`CoreUse` per core used, and a :class:`MappingIssue` for every limit not met.
    """
    spec = target.cores
    pops = populations(graph, off)
    separate_readouts = target.limits.max_output_neurons is not None
    on_chip = [p for p in pops if not (separate_readouts and p.readout)]
    readout_neurons = sum(p.size for p in pops if separate_readouts and p.readout)
    costs = {p.name: _costs(graph, p, target, off) for p in pops}
    issues: list[MappingIssue] = []
    if spec.split_layers and not spec.share_cores:
        layers, cores = _place_split(graph, target, on_chip, costs, issues, off)
    elif spec.share_cores:
        layers, cores = _place_shared(target, on_chip, costs, issues)
    else:
        layers, cores = _place_whole(target, on_chip, costs, issues)
    for p in pops:
        if separate_readouts and p.readout:
            c = costs[p.name]
            layers.append(LayerPlacement(p.name, p.size, p.synapses, c.storage, c.layer_bits,
                                         int(c.fan_in.max(initial=0)), ()))
    if spec.cores is not None and len(cores) > spec.cores:
        neurons = sum(c.neurons for c in cores)
        bits = sum(c.synapse_bits for c in cores)
        issues.append(MappingIssue(
            "graph", "total_cores", spec.cores, len(cores),
            f"{target.name} has {spec.cores} core{'s' if spec.cores > 1 else ''}; the estimate "
            f"needs {len(cores)} for {neurons} neurons and {bits} bits of synapse memory"))
    order = {p.name: i for i, p in enumerate(pops)}
    layers.sort(key=lambda placement: order[placement.name])
    return Mapping(target.name, tuple(layers), tuple(cores), spec.cores, readout_neurons,
                   tuple(issues))


def _place_split(graph: Graph, target: Target, pops: list[Population],
                 costs: dict[str, _Costs], issues: list[MappingIssue],
                 off: frozenset[str] = frozenset(),
                 ) -> tuple[list[LayerPlacement], list[CoreUse]]:
    spec = target.cores
    n_cap, m_cap = spec.neurons_of(0), spec.memory_of(0)
    placed: dict[str, _Placed] = {}
    readers = _readers(graph, pops, off) if spec.max_out_axons is not None else {}
    for pop in reversed(pops):  # destinations first: out-axons depend on their split
        c = costs[pop.name]
        order = placement_order(pop.shape)
        axons = (_in_axons_fn(graph, pop, c, order) if spec.max_in_axons is not None else None)
        need_axons = axons is not None and c.in_axon_bound > spec.max_in_axons  # type: ignore
        bits_in_order = c.bits[order]
        additive = [(np.ones(pop.size, dtype=np.int64), n_cap), (bits_in_order, m_cap)]
        out_cost = None
        if spec.max_out_axons is not None:
            if any(synapse_source(graph, s, off)[0] == pop.name for s in pop.synapses):
                # self-recurrent: its own split (without out-axons) sets its recurrent out-axons
                first = _fill(pop.size, additive, axons if need_axons else None,
                              spec.max_in_axons)
                placed[pop.name] = _Placed(pop, c, order, first, [], [])
            out_cost = _out_costs(graph, pop, placed, readers)[order]
            additive.append((out_cost, spec.max_out_axons))
        ranges = _fill(pop.size, additive, axons if need_axons else None, spec.max_in_axons)
        in_counts = [axons(a, b) if axons is not None else None for a, b in ranges]
        out_counts = [int(out_cost[a:b].sum()) if out_cost is not None else None
                      for a, b in ranges]
        placed[pop.name] = _Placed(pop, c, order, ranges, in_counts, out_counts)
        bits = [int(bits_in_order[a:b].sum()) for a, b in ranges]
        for resource, used, cap, what in (
                ("synapse_memory_per_core", bits, m_cap, "bits of synapse memory"),
                ("in_axons_per_core", in_counts, spec.max_in_axons, "in-axons (distinct inputs)"),
                ("out_axons_per_core", out_counts, spec.max_out_axons,
                 "out-axons ((neuron, destination core) pairs)")):
            over = [u for u in used if u is not None and cap is not None and u > cap]
            if over:
                alone = "" if resource == "out_axons_per_core" else \
                    ", even when holding a single neuron"
                issues.append(MappingIssue(
                    pop.name, resource, cap, max(over),  # type: ignore[arg-type]
                    f"{len(over)} of the {len(ranges)} cores of '{pop.name}' need more {what} "
                    f"than a {target.name} core has ({cap}), up to {max(over)}{alone}"))
    layers, cores = [], []
    for pop in pops:  # number the cores in graph order
        p = placed[pop.name]
        indices = []
        for (a, b), n_in, n_out in zip(p.ranges, p.in_axons, p.out_axons):
            indices.append(len(cores))
            cores.append(CoreUse(len(cores), (pop.name,), b - a,
                                 int(p.costs.bits[p.order[a:b]].sum()), n_in, n_out, n_cap,
                                 m_cap, first=a))
        layers.append(LayerPlacement(pop.name, pop.size, pop.synapses, p.costs.storage,
                                     p.costs.layer_bits, int(p.costs.fan_in.max(initial=0)),
                                     tuple(indices)))
    return layers, cores


def _place_shared(target: Target, pops: list[Population], costs: dict[str, _Costs],
                  issues: list[MappingIssue]) -> tuple[list[LayerPlacement], list[CoreUse]]:
    spec = target.cores
    n_cap, m_cap = spec.neurons_of(0), spec.memory_of(0)
    owner = np.concatenate([np.full(p.size, i) for i, p in enumerate(pops)]) if pops else \
        np.zeros(0, dtype=int)
    bits = (np.concatenate([costs[p.name].bits for p in pops]) if pops
            else np.zeros(0, dtype=np.int64))
    ranges = _fill(len(owner), [(np.ones(len(owner), dtype=np.int64), n_cap), (bits, m_cap)],
                   None, None)
    cores = []
    for index, (a, b) in enumerate(ranges):
        held = tuple(pops[i].name for i in sorted(set(owner[a:b].tolist())))
        used = int(bits[a:b].sum())
        cores.append(CoreUse(index, held, b - a, used, None, None, n_cap, m_cap, first=a))
        if m_cap is not None and used > m_cap:
            issues.append(MappingIssue(held[0], "synapse_memory_per_core", m_cap, used,
                                       f"a neuron of '{held[0]}' alone needs {used} bits of "
                                       f"synapse memory; a {target.name} core has {m_cap}"))
    layers = []
    for i, p in enumerate(pops):
        c = costs[p.name]
        indices = tuple(k for k, (a, b) in enumerate(ranges) if np.any(owner[a:b] == i))
        layers.append(LayerPlacement(p.name, p.size, p.synapses, c.storage, c.layer_bits,
                                     int(c.fan_in.max(initial=0)), indices))
    return layers, cores


def _place_whole(target: Target, pops: list[Population], costs: dict[str, _Costs],
                 issues: list[MappingIssue]) -> tuple[list[LayerPlacement], list[CoreUse]]:
    """One population per core; layers matched to cores that hold them (augmenting paths)."""
    spec = target.cores
    n_cores = spec.cores if spec.cores is not None else len(pops)
    caps = [(spec.neurons_of(k) if spec.cores is not None else None,
             spec.memory_of(k) if spec.cores is not None else None) for k in range(n_cores)]

    def fits(i: int, k: int) -> bool:
        n_cap, m_cap = caps[k]
        c = costs[pops[i].name]
        return (n_cap is None or c.neurons <= n_cap) and (m_cap is None or c.layer_bits <= m_cap)

    core_of: dict[int, int] = {}  # core -> population

    def augment(i: int, seen: set[int]) -> bool:
        for k in range(n_cores):
            if k not in seen and fits(i, k):
                seen.add(k)
                if k not in core_of or augment(core_of[k], seen):
                    core_of[k] = i
                    return True
        return False

    unplaced = [i for i in range(len(pops)) if not augment(i, set())]
    assignment = {i: k for k, i in core_of.items()}
    spare = iter([k for k in range(n_cores) if k not in core_of] +
                 list(range(n_cores, n_cores + len(unplaced))))
    for i in unplaced:
        p, c = pops[i], costs[pops[i].name]
        n_caps = [n for n, _ in caps if n is not None]
        m_caps = [m for _, m in caps if m is not None]
        if n_caps and c.neurons > max(n_caps):
            issues.append(MappingIssue(p.name, "neurons_per_core", max(n_caps), c.neurons,
                                       f"'{p.name}' needs {c.neurons} neurons in one core; the "
                                       f"largest {target.name} core has {max(n_caps)}"))
        elif m_caps and c.layer_bits > max(m for (n, m) in caps
                                           if m is not None and (n is None or c.neurons <= n)):
            limit = max(m for (n, m) in caps if m is not None and (n is None or c.neurons <= n))
            issues.append(MappingIssue(
                p.name, "synapse_memory_per_core", limit, c.layer_bits,
                f"'{p.name}' needs {c.layer_bits} bits of kernel memory; the largest "
                f"{target.name} core with room for its {c.neurons} neurons has {limit}"))
        else:
            issues.append(MappingIssue(p.name, "total_cores", n_cores, len(pops),
                                       f"no free {target.name} core can hold '{p.name}' once "
                                       "the other layers are placed"))
        assignment[i] = next(spare)
    layers, cores = [], []
    for i, p in enumerate(pops):
        k, c = assignment[i], costs[p.name]
        n_cap, m_cap = caps[k] if k < n_cores else (None, None)
        cores.append(CoreUse(k, (p.name,), c.neurons, c.layer_bits, None, None, n_cap, m_cap))
        layers.append(LayerPlacement(p.name, p.size, p.synapses, c.storage, c.layer_bits,
                                     int(c.fan_in.max(initial=0)), (k,)))
    cores.sort(key=lambda core: core.index)
    return layers, cores
