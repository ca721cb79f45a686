"""A summary of a graph for people: what ``sbc-deploy inspect MODEL`` prints.

:func:`describe` turns a :class:`Graph` into a frozen :class:`GraphSummary` (numbers only, no
text), and :func:`format_summary` renders it as a plain-text table. Counting rules:

- ``parameters``: the values stored in a node's arrays (weights and biases of synapses; every
  per-neuron array of a neuron, e.g. alpha, beta, threshold, gain, v_leak, v_reset, bias; the
  array of Scale, Delay and Threshold). Ports, pooling and Flatten have none.
- ``weights`` / ``nonzero_weights`` / ``sparsity``: synapse weights only (biases excluded);
  ``sparsity = 1 - nonzero / weights``.
- ``fan_in_max``: the most non-zero synapses onto one output neuron (one output channel for a
  convolution: kernel entries, not counting positions).
- ``neurons``: units of the neuron nodes (the product of their shapes).
- ``synapses``: non-zero connections of a synapse layer, every output position counted (a
  convolution's kernel entries times the positions that use them; taps on zero padding do not
  count). ``kernel``, ``stride``, ``padding``, ``groups``: a convolution's or pool's geometry.

:func:`describe_model` is what ``inspect`` shows for a file or a bundled name: the structure
always, the continuous NIR parameters (``tau``, ``r``, ...) as stored, and the discrete form
(decays, reset) only when ``dt`` and the reset mode are known (from the file or the flags). A
NIR file that records neither is still shown: its structure does not depend on them, so it is
read with a placeholder step whose decays are never displayed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from sbc_deploy.errors import ConfigError
from sbc_deploy.ir import AvgPool2d, Conv1d, Conv2d, Graph, Neuron, Node, SumPool2d, Synapse
from sbc_deploy.untrusted import shown

_PROVENANCE_KEYS = ("source_format", "source_file", "dt_source", "reset", "reset_source",
                    "discretization")


@dataclass(frozen=True)
class NeuronSummary:
    """A neuron node's model: decays, threshold and reset as (min, max) over its units."""

    model: str
    spiking: bool
    alpha: tuple[float, float] | None
    beta: tuple[float, float]
    threshold: tuple[float, float] | None
    reset: str | None
    nonzero_bias: int
    spike_variant: str | None = None  # the non-default spike-variant fields, "key=value ..."


@dataclass(frozen=True)
class NodeSummary:
    """One node: shapes and counts (``None`` where a count does not apply)."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    parameters: int
    weights: int
    nonzero_weights: int | None
    sparsity: float | None
    fan_in_max: int | None
    weight_bits: int | None
    recurrent: bool
    neurons: int
    neuron: NeuronSummary | None
    synapses: int | None = None
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | None = None
    groups: int | None = None


@dataclass(frozen=True)
class GraphSummary:
    """Every node in topological order, the graph's time step and provenance, and totals."""

    nodes: tuple[NodeSummary, ...]
    dt: float
    provenance: tuple[tuple[str, Any], ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    recurrent_edges: tuple[tuple[str, str], ...]
    synapse_layers: int
    parameters: int
    weights: int
    nonzero_weights: int
    sparsity: float
    neurons: int
    fan_in_max: int


def _range(values: np.ndarray) -> tuple[float, float]:
    return float(np.min(values)), float(np.max(values))


def _parameters(node: Node) -> int:
    total = 0
    for f in fields(node):  # type: ignore[arg-type]
        value = getattr(node, f.name)
        if isinstance(value, np.ndarray) and f.name != "metadata":
            total += int(value.size)
    return total


def _neuron_summary(node: Neuron) -> NeuronSummary:
    threshold = getattr(node, "v_threshold", None)
    return NeuronSummary(
        model=node.kind,
        spiking=bool(node.spiking),
        alpha=None if node.synaptic_decay is None else _range(node.synaptic_decay),
        beta=_range(node.membrane_decay),
        threshold=None if threshold is None else _range(threshold),
        reset=getattr(node, "reset", None) if node.spiking else None,
        nonzero_bias=int(np.count_nonzero(node.bias)),
        spike_variant=_variant_text(node),
    )


def _variant_text(node: Neuron) -> str | None:
    """``max_spikes=31 fires_at_equal reset_timing=next_step v_min=-1`` (None: plain rule)."""
    parts = []
    for key, value in node.spike_variant().items():
        if key == "fires_at_equal":
            parts.append("fires_at_equal")
        elif key == "max_spikes":
            parts.append(f"max_spikes={'none' if value is None else value}")
        elif key == "v_min":
            parts.append(_span("v_min", _range(value)))
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts) or None


def _node_summary(graph: Graph, name: str) -> NodeSummary:
    node = graph.nodes[name]
    recurrent = any(name in edge for edge in graph.recurrent_edges)
    weights = nonzero = fan_in = bits = sparsity = None
    if isinstance(node, Synapse):
        weights = int(node.weight.size)
        nonzero = int(np.count_nonzero(node.weight))
        sparsity = 1.0 - nonzero / weights if weights else 0.0
        fan_in = int(node.fan_in().max()) if node.weight.size else 0
        bits = node.encoding.bits if node.encoding is not None else None
    neuron = _neuron_summary(node) if isinstance(node, Neuron) else None
    geometry = _geometry(node)
    synapses = None
    if isinstance(node, Synapse):
        from sbc_deploy.check.mapping import synapse_fan_in

        synapses = int(np.sum(synapse_fan_in(node)))
    return NodeSummary(
        name=name, kind=node.kind, input_shape=tuple(node.input_shape),
        output_shape=tuple(node.output_shape), parameters=_parameters(node),
        weights=weights or 0, nonzero_weights=nonzero, sparsity=sparsity, fan_in_max=fan_in,
        weight_bits=bits, recurrent=recurrent,
        neurons=int(np.prod(node.output_shape)) if neuron is not None else 0, neuron=neuron,
        synapses=synapses, **geometry)


def _ints(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    return tuple(int(v) for v in np.atleast_1d(np.asarray(value)))


def _geometry(node: Node) -> dict[str, Any]:
    """Kernel, stride, padding and groups of a convolution or a pool (else nothing)."""
    if isinstance(node, (Conv1d, Conv2d)):
        return {"kernel": tuple(int(v) for v in node.weight.shape[2:]),
                "stride": _ints(node.stride), "padding": _ints(node.padding),
                "groups": int(node.groups)}
    if isinstance(node, (SumPool2d, AvgPool2d)):
        kernel = _ints(node.kernel_size)
        return {"kernel": kernel, "stride": _ints(node.stride) or kernel,
                "padding": _ints(node.padding), "groups": None}
    return {}


def describe(graph: Graph) -> GraphSummary:
    """Count what the graph holds (see the module docstring for the rules)."""
    nodes = tuple(_node_summary(graph, name) for name in graph.topological_order)
    weights = sum(n.weights for n in nodes)
    nonzero = sum(n.nonzero_weights or 0 for n in nodes)
    return GraphSummary(
        nodes=nodes,
        dt=graph.dt,
        provenance=tuple((k, graph.metadata[k]) for k in _PROVENANCE_KEYS if k in graph.metadata),
        inputs=graph.inputs,
        outputs=graph.outputs,
        recurrent_edges=tuple(sorted(graph.recurrent_edges)),
        synapse_layers=sum(1 for n in nodes if n.nonzero_weights is not None),
        parameters=sum(n.parameters for n in nodes),
        weights=weights,
        nonzero_weights=nonzero,
        sparsity=1.0 - nonzero / weights if weights else 0.0,
        neurons=sum(n.neurons for n in nodes),
        fan_in_max=max((n.fan_in_max or 0 for n in nodes), default=0),
    )


# --------------------------------------------------------------------------- text


def _num(value: float) -> str:
    return f"{value:.4g}"


def _span(name: str, bounds: tuple[float, float] | None) -> str | None:
    if bounds is None:
        return None
    low, high = bounds
    return f"{name}={_num(low)}" if low == high else f"{name}={_num(low)}..{_num(high)}"


def _neuron_text(neuron: NeuronSummary | None) -> str:
    if neuron is None:
        return ""
    parts = [_span("alpha", neuron.alpha), _span("beta", neuron.beta),
             _span("thr", neuron.threshold)]
    if neuron.reset is not None:
        parts.append(f"reset={neuron.reset}")
    if neuron.nonzero_bias:
        parts.append(f"bias on {neuron.nonzero_bias}")
    if neuron.spike_variant:
        parts.append(neuron.spike_variant)
    return " ".join(p for p in parts if p)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)


def _geometry_text(n: NodeSummary) -> str:
    if n.kernel is None:
        return ""
    text = f"k{_shape(n.kernel)} s{_shape(n.stride or ())} p{_shape(n.padding or ())}"
    return text + (f" g{n.groups}" if n.groups not in (None, 1) else "")


def format_summary(summary: GraphSummary,
                   continuous: Mapping[str, str] | None = None) -> str:
    """A readable table of the summary, with provenance and totals below it.

    ``continuous`` (node name -> text) replaces the discrete neuron column by the NIR file's own
    parameters, for a graph whose ``dt`` or reset mode is not known.
    """
    header = ("node", "kind", "in", "out", "kernel/stride/pad", "params", "synapses",
              "non-zero/weights", "sparsity", "fan-in", "bits",
              "neuron (continuous, as in the file)" if continuous is not None else "neuron")
    rows = []
    for n in summary.nodes:
        weights = f"{n.nonzero_weights}/{n.weights}" if n.nonzero_weights is not None else ""
        neuron = (continuous.get(n.name, "") if continuous is not None
                  else _neuron_text(n.neuron))
        rows.append((
            shown(n.name) + (" (rec)" if n.recurrent else ""), n.kind, _shape(n.input_shape),
            _shape(n.output_shape), _geometry_text(n), str(n.parameters) if n.parameters else "",
            str(n.synapses) if n.synapses is not None else "", weights,
            f"{100 * n.sparsity:.1f}%" if n.sparsity is not None else "",
            str(n.fan_in_max) if n.fan_in_max is not None else "",
            str(n.weight_bits) if n.weight_bits is not None else "", neuron))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    numeric = {5, 6, 7, 8, 9, 10}

    def line(cells: tuple[str, ...]) -> str:
        text = "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
        return text.rstrip()

    out = [line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in rows), ""]
    provenance = dict(summary.provenance)
    if continuous is None:
        dt_text = f"dt: {_num(summary.dt)} s"
        if "dt_source" in provenance:
            dt_text += f" ({provenance['dt_source']})"
        out.append(dt_text)
    if provenance.get("reset") is not None and continuous is None:
        out.append(f"reset: {provenance['reset']} ({provenance.get('reset_source', '?')})")
    if "discretization" in provenance and continuous is None:
        out.append(f"discretization: {provenance['discretization']}")
    if "source_format" in provenance:
        out.append(f"source: {provenance['source_format']} "
                   f"{shown(provenance.get('source_file') or '')}".rstrip())
    edges = ", ".join(f"{shown(s)} -> {shown(d)}" for s, d in summary.recurrent_edges) or "none"
    out.append(f"recurrent edges: {edges}")
    out.append(
        f"totals: {len(summary.nodes)} nodes, {summary.synapse_layers} synapse layers, "
        f"{summary.nonzero_weights}/{summary.weights} non-zero weights "
        f"(sparsity {100 * summary.sparsity:.1f}%), {summary.parameters} parameters, "
        f"{summary.neurons} neurons, max fan-in {summary.fan_in_max}")
    return "\n".join(out)


# --------------------------------------------------------------------------- inspect


_CONTINUOUS_PARAMS = ("tau", "tau_mem", "tau_syn", "r", "v_leak", "v_threshold", "v_reset",
                      "w_in", "delay")
_PLACEHOLDER_DT = 1.0  # structure only: decays computed with it are never shown


@dataclass(frozen=True)
class ModelDescription:
    """What ``sbc-deploy inspect`` shows: the structure, and what is known of time.

    Attributes:
        source: the file (or bundled name) described.
        source_format: ``"nir"`` or ``"netx"``.
        summary: the graph summary; its neuron decays are meaningful only when ``discrete``.
        continuous: NIR node name -> its continuous parameters as stored (``tau`` ..., min/max).
        discrete: ``dt`` and the reset mode are known, so the discrete form is shown.
        missing: what is not known (``"dt"``, ``"reset"``), each with why and what it would
            change.
    """

    source: str
    source_format: str
    summary: GraphSummary
    continuous: Mapping[str, Mapping[str, tuple[float, float]]]
    discrete: bool
    missing: Mapping[str, str]


_NOT_GIVEN = "not in the file, no flag"
_EFFECT = {
    "dt": "--dt SECONDS sets the discrete form: beta = 1 - dt/tau_mem (forward Euler, the "
          "default; exp(-dt/tau_mem) when exact), alpha likewise from tau_syn, the input gain "
          "from r and dt",
    "reset": "--reset zero|subtract sets what a spike does: v <- v_reset (zero) or "
             "v <- v - threshold (subtract)",
}


def _nir_nodes(graph: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    import nir

    for key, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            yield from _nir_nodes(node, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", node


def _continuous(graph: Any) -> dict[str, dict[str, tuple[float, float]]]:
    out = {}
    for name, node in _nir_nodes(graph):
        params = {}
        for key in _CONTINUOUS_PARAMS:
            value = getattr(node, key, None)
            if value is None:
                continue
            array = np.asarray(value, dtype=np.float64)
            if array.size:
                params[key] = (float(array.min()), float(array.max()))
        if params:
            out[name] = params
    return out


def describe_model(model: str | Path, *, dt: float | None = None, reset: str | None = None,
                   source: str | None = None, discretization: str | None = None,
                   input_shape: tuple[int, ...] | None = None) -> ModelDescription:
    """Describe a NIR / netx file or a bundled network by name (see the module docstring).

    ``source``, ``discretization`` and ``input_shape`` are :func:`load_model`'s (``--from`` may
    supply the time step: snntorch's is fixed, for instance).

    Raises:
        SbcDeployError: the file is missing or unreadable (the frontends' errors).
    """
    from sbc_deploy import bundled
    from sbc_deploy.frontends import detect_format, load_model
    from sbc_deploy.frontends.from_nir import read_nir_file
    from sbc_deploy.safeio import reading, screen_hdf5

    path = Path(model)
    if not path.exists() and str(model) in bundled.MODELS:
        path = bundled.bundled_path(f"{model}.nir")
    with reading(path, "a NIR graph or a lava-dl netx network (HDF5)"):
        kind = detect_format(path)
        screen_hdf5(path)
    options: dict[str, Any] = {"dt": dt, "reset": reset, "source": source,
                               "discretization": discretization, "input_shape": input_shape}
    if kind != "nir":
        graph = load_model(path, **options)
        return ModelDescription(str(model), kind, describe(graph), {}, True, {})
    with reading(path, "a NIR graph (HDF5 with /node)"):
        raw = read_nir_file(path)
    metadata = dict(raw.metadata or {})
    missing = {}
    if dt is None and metadata.get("dt") is None:
        missing["dt"] = f"({_NOT_GIVEN}): {_EFFECT['dt']}"
    if reset is None and metadata.get("reset") is None and metadata.get("reset_mode") is None:
        missing["reset"] = f"({_NOT_GIVEN}): {_EFFECT['reset']}"
    try:  # the framework's convention (--from) may know what the file does not say
        graph = load_model(path, **options)
        missing = {}
    except ConfigError as err:
        if not missing:
            raise
        if "dt" in missing and "time" in err.message:  # the convention's own reason
            missing["dt"] = f"({err.message}): {_EFFECT['dt']}"
        from sbc_deploy.frontends import from_nir

        with reading(path, "a NIR graph (HDF5 with /node)"):  # structure only: 'exact'
            graph = from_nir(path, dt=_PLACEHOLDER_DT if "dt" in missing else dt,  # takes any dt
                             reset="zero" if "reset" in missing else reset,  # type: ignore
                             discretization="exact", framework=source)
    return ModelDescription(str(model), "nir", describe(graph), _continuous(raw),
                            not missing, missing)


def _continuous_text(params: Mapping[str, tuple[float, float]]) -> str:
    return " ".join(text for key, bounds in params.items() if (text := _span(key, bounds)))


def format_description(description: ModelDescription) -> str:
    """The text ``inspect`` prints: one table, then what dt and reset are or would change."""
    if description.discrete:
        text = format_summary(description.summary)
        if description.continuous:
            lines = [f"  {shown(name)}: {_continuous_text(p)}"
                     for name, p in description.continuous.items()]
            text += "\ncontinuous parameters in the file:\n" + "\n".join(lines)
        return text
    texts = {name: _continuous_text(p) for name, p in description.continuous.items()}
    text = format_summary(description.summary, continuous=texts)
    lines = [f"{key} unknown {why}" for key, why in description.missing.items()]
    return text + "\n" + "\n".join(lines)


def description_to_dict(description: ModelDescription) -> dict[str, Any]:
    """The ``inspect --json`` document (decays only when the discrete form is known)."""
    summary = asdict(description.summary)
    if not description.discrete:  # the placeholder step is not the model's: leave it out
        summary.pop("dt")
        summary["provenance"] = [item for item in summary["provenance"]
                                 if item[0] not in ("dt_source", "reset", "reset_source")]
        for node in summary["nodes"]:
            node.pop("neuron", None)
    return {"source": description.source, "format": description.source_format,
            "discrete": description.discrete, "missing": dict(description.missing),
            "continuous": {name: {k: list(v) for k, v in p.items()}
                           for name, p in description.continuous.items()},
            **summary}
