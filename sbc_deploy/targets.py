"""Hardware targets as data: ``targets/*.toml`` -> frozen :class:`Target` values.

A target file names a chip's weight format, neuron model, supported layers, limits, core
resources and energy costs. Every hardware value is a provenance table (one schema, enforced)::

    [limits.max_fan_in]
    value = 2048
    evidence = "verified"
    source = "Akida user guide: Dense1D input <= 2048"

``evidence`` grades the source (ecosystem.md's legend): ``"verified"`` (the vendor's or the
maintainers' own code or documents), ``"secondary"`` (a third party quoting the primary paper),
``"estimate"`` (no public number: ``source`` says how the value was derived and why) or
``"definition"`` (a format or a project choice, not a measured fact). A limit that does not exist
is written ``value = "none"``, still with its source saying why. Unknown or misspelt keys, a
value without ``source``, a wrong type or an unknown rule, node or neuron kind raise
:class:`~sbc_deploy.errors.TargetError` naming the file, the section and the key, with a
suggestion for misspellings. ``targets/README.md`` documents every key.

Lookup: ``load_target("loihi2")`` searches the copy packaged in the wheel (``sbc_deploy/_targets``)
and then the source tree's ``targets/`` (editable installs); a path (``./mychip.toml``, or any
name ending in ``.toml`` or holding a path separator) is read as a file.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sbc_deploy.errors import TargetError
from sbc_deploy.ir.encoding import GRIDS
from sbc_deploy.ir.nodes import NEURON_TYPES, NODE_TYPES, RESETS
from sbc_deploy.untrusted import shown

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
EVIDENCE: tuple[str, ...] = ("verified", "secondary", "estimate", "definition")
NODE_KINDS: tuple[str, ...] = tuple(t.kind for t in NODE_TYPES)
NEURON_KINDS: tuple[str, ...] = tuple(t.kind for t in NEURON_TYPES)
TARGET_GRIDS: tuple[str, ...] = (*GRIDS, "float")
SCALE_SHARING: tuple[str, ...] = ("per_channel", "per_layer")
DECAY_FORMATS: tuple[str, ...] = ("linear", "bitshift", "none", "float")
TOPOLOGIES: tuple[str, ...] = ("sequential", "feedforward", "any")
SYNAPSE_STORAGE: tuple[str, ...] = ("dense", "sparse", "dense_or_sparse", "kernel")
EXPORT_FORMATS: tuple[str, ...] = ("netx", "nir", "onnx")
# The design rules sbc_deploy.check implements (check.rules.RULES has exactly these keys).
RULE_NAMES: tuple[str, ...] = (
    "supported_layer_types", "supported_neuron_model", "synapse_bias_foldable", "topology",
    "destinations", "io_channels", "weights_on_grid", "weight_bits", "fan_in", "fan_out",
    "delays", "thresholds_fit_bits", "decays_fit_bits", "neurons_per_core",
    "synapse_memory_per_core", "axons_per_core", "total_cores", "spikes_per_step",
    "max_pool_windows",
)
NONE = "none"  # the TOML spelling of "no such limit"
EXP_LIMIT = 64  # |weight exponent| of an int_exp grid (2**64 scales stay far inside float64)
# A target's name becomes a folder under OUTDIR when targets are compared (OUTDIR/<name>/), and
# is shown on the terminal and in the reports: 1 to 64 ASCII letters, digits, '.', '_' or '-',
# starting with a letter or a digit (so never '.', '..', a path, or a control character).
NAME_RULE = "1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a letter or a digit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Provenance:
    """Where a target value comes from: ``source`` text and its ``evidence`` grade."""

    source: str
    evidence: str
    borrowed_from: str | None = None  # another chip's figure stood in (``borrowed_from = ...``)

    @property
    def is_estimate(self) -> bool:
        return self.evidence == "estimate"


@dataclass(frozen=True)
class WeightSpec:
    """Synaptic weight format.

    Attributes:
        bits: mantissa width, sign bit included when ``signed`` (Loihi: 8, stored by netx as
            even integers in [-256, 254], i.e. an 8-bit mantissa times ``2**(1 + weight_exp)``).
        signed: two's complement weights.
        grid: ``"int"`` (symmetric integers, free scale), ``"int_exp"`` (integer mantissa times a
            power of two shared by the layer), ``"ternary"``, or ``"float"`` (no integer grid).
        scale_sharing: ``"per_channel"`` or ``"per_layer"`` (one scale for the whole layer).
        exp_range: inclusive range of the ``int_exp`` exponent (the encoding's ``exponent``:
            integer weight = ``mantissa << exponent``), else ``None``.
    """

    bits: int
    signed: bool
    grid: str
    scale_sharing: str
    exp_range: tuple[int, int] | None


@dataclass(frozen=True)
class NeuronSpec:
    """Neuron model the chip implements.

    Attributes:
        kinds: IR neuron kinds it can run (``LIF``, ``CubaLIF``, ...).
        reset_modes: ``"zero"`` and/or ``"subtract"``.
        bias: a per-neuron bias exists.
        synapse_bias: a bias on the synapse layer (added to the input current) exists; when not,
            it must fold exactly into the neuron bias.
        v_leak: a non-zero resting potential can be expressed.
        v_reset: a non-zero reset value can be expressed.
        decay_format: ``"linear"`` (decay = k / 2**decay_bits), ``"bitshift"``
            (decay = 1 - 2**-k, k < 2**decay_bits), ``"none"`` (no decay: decays must be 1)
            or ``"float"`` (any decay).
        decay_bits: see ``decay_format``; ``None`` for ``"none"`` and ``"float"``.
        state_bits: width of the membrane state, or ``None``.
        threshold_range: inclusive integer range of the threshold in state units, or ``None``.
        bias_range: inclusive integer range of the neuron bias in state units, or ``None``.
        max_spikes_per_step: the most spikes (events) one neuron sends in one step, ``None``
            for no limit. Optional in a target file (see :data:`OPTIONAL`): 1 when absent.
    """

    kinds: tuple[str, ...]
    reset_modes: tuple[str, ...]
    bias: bool
    synapse_bias: bool
    v_leak: bool
    v_reset: bool
    decay_format: str
    decay_bits: int | None
    state_bits: int | None
    threshold_range: tuple[int, int] | None
    bias_range: tuple[int, int] | None
    max_spikes_per_step: int | None = 1

    @property
    def threshold_bits(self) -> int | None:
        """Register width of the threshold (sign bit included when its range is signed)."""
        return _range_bits(self.threshold_range)

    @property
    def bias_bits(self) -> int | None:
        """Register width of the bias (sign bit included when its range is signed)."""
        return _range_bits(self.bias_range)


def _range_bits(span: tuple[int, int] | None) -> int | None:
    if span is None:
        return None
    low, high = span
    if low >= 0:
        return max(1, int(high).bit_length())
    return 1 + max(int(high).bit_length(), int(-low - 1).bit_length())


@dataclass(frozen=True)
class LayerSpec:
    """Node kinds (IR ``kind`` names) and the graph topology the export format can express.

    ``topology``: ``"sequential"`` (one chain; recurrence only as a dense layer's
    self-recurrence, netx ``dense_rec``), ``"feedforward"`` (any DAG, no recurrent edge) or
    ``"any"``.
    """

    node_kinds: tuple[str, ...]
    topology: str
    # max pooling the chip computes, as (square window size, stride) pairs; ``None``: any.
    # ``max_pool_first``: after the layer that reads the input (Akida's InputConv2D)
    max_pool: tuple[tuple[int, int], ...] | None = None
    max_pool_first: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class Limits:
    """Per-neuron and per-graph limits; ``None`` means the chip has no such limit.

    ``max_fan_in`` is per neuron: chips that limit inputs per *core* (Loihi: in-axons per core)
    have ``None`` here and ``CoreSpec.max_in_axons`` instead. ``max_destinations`` counts the
    layers one layer may send to; ``max_delay`` is in steps (0: no delays).
    """

    max_fan_in: int | None
    max_fan_out: int | None
    max_destinations: int | None
    max_delay: int | None
    max_input_channels: int | None
    max_output_neurons: int | None


@dataclass(frozen=True)
class CoreSpec:
    """Core resources used by the mapping estimate (``sbc_deploy.check.mapping``).

    Attributes:
        cores: cores available (one chip), or ``None`` for unlimited / unknown.
        neurons_per_core: per core, or one value per core (heterogeneous chips), or ``None``.
        synapse_memory_bits: per core (or one per core), or ``None``.
        synapse_storage: ``"dense"`` (every potential synapse, zeros included),
            ``"sparse"`` (non-zero synapses, each with ``index_bits``), ``"dense_or_sparse"``
            (the cheaper of the two per layer) or ``"kernel"`` (a layer's weight tensor stored
            once, shared by all its neurons; needs ``split_layers = false``).
        bits_per_weight: bits one stored weight takes, or ``None`` for the layer's own width.
        index_bits: bits of the target index stored with each sparse synapse.
        max_in_axons: distinct presynaptic sources per core, or ``None``.
        max_out_axons: (source neuron, destination core) pairs per core, or ``None``.
        split_layers: a layer may be spread over several cores.
        share_cores: several layers may share one core.
        address_padding: neuron and kernel address spaces round up to powers of two (sinabs).
    """

    cores: int | None
    neurons_per_core: int | tuple[int, ...] | None
    synapse_memory_bits: int | tuple[int, ...] | None
    synapse_storage: str
    bits_per_weight: int | None
    index_bits: int
    max_in_axons: int | None
    max_out_axons: int | None
    split_layers: bool
    share_cores: bool
    address_padding: bool

    def neurons_of(self, core: int) -> int | None:
        """Neuron capacity of core ``core``."""
        return _per_core(self.neurons_per_core, core)

    def memory_of(self, core: int) -> int | None:
        """Synapse memory (bits) of core ``core``."""
        return _per_core(self.synapse_memory_bits, core)


def _per_core(value: int | tuple[int, ...] | None, core: int) -> int | None:
    if isinstance(value, tuple):
        return value[core]
    return value


@dataclass(frozen=True)
class EnergySpec:
    """Energy per operation in picojoules (each with its source in ``Target.provenance``)."""

    synop_pj: float
    neuron_update_pj: float
    spike_routed_pj: float
    core_step_pj: float


@dataclass(frozen=True)
class TimingSpec:
    """How long the chip takes per time step, in microseconds (``None``: not known); the
    report's latency is ``steps x step_us`` and its throughput one over that."""

    step_us: float | None = None


@dataclass(frozen=True, eq=False)
class Target:
    """A hardware target, loaded from a TOML file. Frozen; compare by name and file."""

    name: str
    description: str
    export_formats: tuple[str, ...]
    rules: tuple[str, ...]
    weights: WeightSpec
    neurons: NeuronSpec
    layers: LayerSpec
    limits: Limits
    cores: CoreSpec
    energy: EnergySpec
    provenance: Mapping[str, Provenance] = field(default_factory=dict)
    path: Path | None = None
    timing: TimingSpec = TimingSpec()

    def __post_init__(self) -> None:
        check_target_name(self.name, "target name")  # a folder under OUTDIR; shown raw
        object.__setattr__(self, "provenance", MappingProxyType(dict(self.provenance)))

    def source(self, key: str) -> Provenance:
        """Provenance of ``"section.key"`` (e.g. ``"energy.synop_pj"``)."""
        try:
            return self.provenance[key]
        except KeyError:
            raise TargetError(f"no value '{key}'", where=f"target {self.name}",
                              hint=suggest(key, list(self.provenance))) from None

    def is_estimate(self, key: str) -> bool:
        """True when ``"section.key"`` is an estimate (no public number)."""
        return self.source(key).is_estimate

    # Shortcuts the compression stage reads.
    @property
    def weight_bits(self) -> int:
        return self.weights.bits

    @property
    def max_fan_in(self) -> int | None:
        return self.limits.max_fan_in

    @property
    def memory_budget_bits(self) -> int | None:
        """Synapse memory of the whole chip (all cores), or ``None`` when unknown/unlimited."""
        per_core = self.cores.synapse_memory_bits
        if isinstance(per_core, tuple):
            return sum(per_core)
        if per_core is None or self.cores.cores is None:
            return None
        return per_core * self.cores.cores

    @property
    def node_kinds(self) -> tuple[str, ...]:
        return self.layers.node_kinds

    @property
    def neuron_kinds(self) -> tuple[str, ...]:
        return self.neurons.kinds

    @property
    def integer_only(self) -> bool:
        """True when weights must lie on an integer grid (float weights do not run)."""
        return self.weights.grid != "float"


# --------------------------------------------------------------------------- schema

Check = Callable[[Any, str], Any]


def _fail(message: str, where: str, hint: str | None = None) -> TargetError:
    return TargetError(message, where=where, hint=hint)


def suggest(word: str, options: tuple[str, ...] | list[str]) -> str | None:
    """``"did you mean 'x'?"`` for the closest options (case-insensitive first), or ``None``."""
    word = str(word).lower()
    scores = sorted(((difflib.SequenceMatcher(None, word, o.lower()).ratio(), o)
                     for o in options), key=lambda pair: (-pair[0], pair[1]))
    if not scores or scores[0][0] < 0.6:
        return None
    close = [o for score, o in scores if score >= scores[0][0] - 0.02]
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def _int(minimum: int | None = None, maximum: int | None = None) -> Check:
    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(f"must be an integer, got {value!r}", where)
        if minimum is not None and value < minimum:
            raise _fail(f"must be >= {minimum}, got {value}", where)
        if maximum is not None and value > maximum:
            raise _fail(f"must be <= {maximum}, got {value}", where)
        return value
    return check


def _or_none(inner: Check) -> Check:
    def check(value: Any, where: str) -> Any:
        return None if value == NONE else inner(value, where)
    return check


def _int_or_list(minimum: int) -> Check:
    def check(value: Any, where: str) -> int | tuple[int, ...]:
        if isinstance(value, list):
            if not value:
                raise _fail("an empty list; give one value per core or a single integer", where)
            return tuple(_int(minimum)(v, where) for v in value)
        return _int(minimum)(value, where)
    return check


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(f"must be a finite number, got {value!r}", where)
    if value < 0:
        raise _fail(f"must be >= 0, got {value}", where)
    return float(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(f"must be true or false, got {value!r}", where)
    return value


def _choice(options: tuple[str, ...]) -> Check:
    def check(value: Any, where: str) -> str:
        if value not in options:
            raise _fail(f"must be one of {', '.join(options)}; got {value!r}", where,
                        suggest(str(value), options))
        return str(value)
    return check


def _subset(options: tuple[str, ...]) -> Check:
    def check(value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise _fail(f"must be a list, got {value!r}", where)
        items = tuple(_choice(options)(v, where) for v in value)
        if len(set(items)) != len(items):
            raise _fail(f"lists an entry twice: {list(items)}", where)
        return items
    return check


def _pair(value: Any, where: str) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise _fail(f"must be a [low, high] pair of integers, got {value!r}", where)
    low, high = (_int()(v, where) for v in value)
    if low > high:
        raise _fail(f"low {low} exceeds high {high}", where)
    return low, high


def _pool_pairs(value: Any, where: str) -> tuple[tuple[int, int], ...]:
    """A list of ``[size, stride]`` pairs of positive integers (max-pool windows)."""
    if not isinstance(value, list) or not value:
        raise _fail(f"must be a non-empty list of [size, stride] pairs, got {value!r}", where)
    pairs = []
    for item in value:
        if not isinstance(item, list) or len(item) != 2:
            raise _fail(f"must hold [size, stride] pairs, got {item!r}", where)
        pairs.append((_int(1)(item[0], where), _int(1)(item[1], where)))
    return tuple(pairs)


def _exponent_pair(value: Any, where: str) -> tuple[int, int]:
    """An ``int_exp`` exponent range: weights are ``mantissa * 2**exp``, so beyond +-64 the
    scale leaves float64's range (and no chip has such an exponent)."""
    low, high = _pair(value, where)
    if low < -EXP_LIMIT or high > EXP_LIMIT:
        raise _fail(f"exponents must lie in [-{EXP_LIMIT}, {EXP_LIMIT}] (weights are "
                    f"mantissa x 2**exp), got [{low}, {high}]", where)
    return low, high


def _bits_per_weight(value: Any, where: str) -> int | None:
    if value == "layer":
        return None
    return _int(1, 64)(value, where)


# Keys a target file may leave out (added after schema 1 was published, so that the users'
# files stay valid): "section.key" -> (value, source of that default).
OPTIONAL: dict[str, tuple[Any, str]] = {
    "neurons.max_spikes_per_step": (1, "not in the target file: one spike per neuron per step "
                                       "(binary spikes) is assumed"),
    "layers.max_pool": (None, "not in the target file: no max-pool window limit is known"),
    "layers.max_pool_first": (None, "not in the target file: no max-pool window limit is "
                                    "known"),
}

SCHEMA: dict[str, dict[str, Check]] = {
    "weights": {
        "bits": _int(1, 32),
        "signed": _bool,
        "grid": _choice(TARGET_GRIDS),
        "scale_sharing": _choice(SCALE_SHARING),
        "exp_range": _or_none(_exponent_pair),
    },
    "neurons": {
        "kinds": _subset(NEURON_KINDS),
        "reset_modes": _subset(RESETS),
        "bias": _bool,
        "synapse_bias": _bool,
        "v_leak": _bool,
        "v_reset": _bool,
        "decay_format": _choice(DECAY_FORMATS),
        "decay_bits": _or_none(_int(1, 32)),
        "state_bits": _or_none(_int(1, 64)),
        "threshold_range": _or_none(_pair),
        "bias_range": _or_none(_pair),
        "max_spikes_per_step": _or_none(_int(1)),
    },
    "layers": {
        "node_kinds": _subset(NODE_KINDS),
        "topology": _choice(TOPOLOGIES),
        "max_pool": _or_none(_pool_pairs),
        "max_pool_first": _or_none(_pool_pairs),
    },
    "limits": {
        "max_fan_in": _or_none(_int(1)),
        "max_fan_out": _or_none(_int(1)),
        "max_destinations": _or_none(_int(1)),
        "max_delay": _or_none(_int(0)),
        "max_input_channels": _or_none(_int(1)),
        "max_output_neurons": _or_none(_int(1)),
    },
    "cores": {
        "cores": _or_none(_int(1)),
        "neurons_per_core": _or_none(_int_or_list(1)),
        "synapse_memory_bits": _or_none(_int_or_list(1)),
        "synapse_storage": _choice(SYNAPSE_STORAGE),
        "bits_per_weight": _bits_per_weight,
        "index_bits": _int(0, 64),
        "max_in_axons": _or_none(_int(1)),
        "max_out_axons": _or_none(_int(1)),
        "split_layers": _bool,
        "share_cores": _bool,
        "address_padding": _bool,
    },
    "energy": {
        "synop_pj": _float,
        "neuron_update_pj": _float,
        "spike_routed_pj": _float,
        "core_step_pj": _float,
    },
}
# Optional sections: a file without one gets its values "not known" (added after schema 1's
# first files; every key inside a given section is required as elsewhere).
OPTIONAL_SECTIONS: dict[str, dict[str, Check]] = {
    "timing": {"step_us": _or_none(_float)},
}
TOP_LEVEL: tuple[str, ...] = ("schema", "name", "description", "export_formats", "rules",
                              *SCHEMA, *OPTIONAL_SECTIONS)
ENTRY_KEYS: tuple[str, ...] = ("value", "source", "evidence")
OPTIONAL_ENTRY_KEYS: tuple[str, ...] = ("borrowed_from",)  # the chip whose figure stands in


def _unknown(key: str, known: tuple[str, ...] | list[str], place: str, file: str) -> TargetError:
    hint = suggest(key, known)
    suggestion = f"; {hint}" if hint else f"; known: {', '.join(known)}"
    return TargetError(f"unknown key '{key}' in {place} of {file}{suggestion}")


# --------------------------------------------------------------------------- parsing


# Long: the TOML schema checked top to bottom (top-level keys, then each section's entries,
# then the Target built from them); each check raises with its own place, so one straight
# pass over the document reads as the schema does.
def parse_target(data: Mapping[str, Any], file: str = "<target>",
                 path: Path | None = None) -> Target:
    """A :class:`Target` from a parsed TOML document (``file`` names it in errors)."""
    for key in data:
        if key not in TOP_LEVEL:
            raise _unknown(key, TOP_LEVEL, "the top level", file)
    missing = [key for key in TOP_LEVEL if key not in data and key not in OPTIONAL_SECTIONS]
    if missing:
        raise TargetError(f"lacks {', '.join(missing)}", where=file)
    if data["schema"] != SCHEMA_VERSION:
        raise TargetError(f"schema {data['schema']!r} is not supported (this version reads "
                          f"schema {SCHEMA_VERSION})", where=f"{file} schema")
    for key in ("name", "description"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise TargetError("must be a non-empty string", where=f"{file} {key}")
    check_target_name(data["name"], f"{file} name")
    formats = _subset(EXPORT_FORMATS)(data["export_formats"], f"{file} export_formats")
    rules = _subset(RULE_NAMES)(data["rules"], f"{file} rules")

    values: dict[str, dict[str, Any]] = {}
    provenance: dict[str, Provenance] = {}
    for section, schema in {**SCHEMA, **OPTIONAL_SECTIONS}.items():
        if section in OPTIONAL_SECTIONS and section not in data:
            continue
        table = data[section]
        place = f"[{section}]"
        if not isinstance(table, dict):
            raise TargetError(f"{place} must be a table", where=file)
        for key in table:
            if key not in schema:
                raise _unknown(key, tuple(schema), place, file)
        values[section] = {}
        for key, check in schema.items():
            where = f"{file} {place} {key}"
            if key not in table and f"{section}.{key}" in OPTIONAL:
                default, why = OPTIONAL[f"{section}.{key}"]
                values[section][key] = default
                provenance[f"{section}.{key}"] = Provenance(why, "definition")
                continue
            if key not in table:
                raise TargetError(f"{place} lacks '{key}'", where=file,
                                  hint="every key is required; write value = \"none\" with a "
                                       "source saying why when a limit does not exist")
            entry = table[key]
            if not isinstance(entry, dict):
                raise TargetError(
                    f"must be a table {{ value = ..., source = \"...\", evidence = \"...\" }}, "
                    f"got the bare value {entry!r}: every value carries its source", where=where)
            for sub in entry:
                if sub not in ENTRY_KEYS + OPTIONAL_ENTRY_KEYS:
                    raise _unknown(sub, ENTRY_KEYS + OPTIONAL_ENTRY_KEYS, f"{place} {key}",
                                   file)
            for sub in ENTRY_KEYS:
                if sub not in entry:
                    raise TargetError(f"has no '{sub}'" + (": every value carries its source"
                                                            if sub == "source" else ""),
                                      where=where)
            source = entry["source"]
            if not isinstance(source, str) or not source.strip():
                raise TargetError("source must be a non-empty string", where=where)
            evidence = _choice(EVIDENCE)(entry["evidence"], f"{where} evidence")
            values[section][key] = check(entry["value"], where)
            borrowed = entry.get("borrowed_from")
            if borrowed is not None and (not isinstance(borrowed, str) or not borrowed.strip()):
                raise TargetError("borrowed_from must name the chip whose figure stands in",
                                  where=where)
            provenance[f"{section}.{key}"] = Provenance(source.strip(), evidence,
                                                        None if borrowed is None
                                                        else borrowed.strip())

    target = Target(
        name=data["name"],
        description=data["description"],
        export_formats=formats,
        rules=rules,
        weights=WeightSpec(**values["weights"]),
        neurons=NeuronSpec(**values["neurons"]),
        layers=LayerSpec(**values["layers"]),
        limits=Limits(**values["limits"]),
        cores=CoreSpec(**values["cores"]),
        energy=EnergySpec(**values["energy"]),
        provenance=provenance,
        path=path,
        timing=TimingSpec(**values.get("timing", {})),
    )
    _check_consistency(target, file)
    return target


def check_target_name(name: str, where: str) -> str:
    """Return ``name`` when it is a safe target name (:data:`NAME_RULE`), else raise.

    Raises:
        TargetError: the name could leave OUTDIR as a folder name ('..', '/x', 'a/b'), is
            empty or too long for one, or holds characters a terminal or report would obey.
    """
    if not _NAME.fullmatch(name):
        text = shown(name[:60]) + ("..." if len(name) > 60 else "")
        raise TargetError(f"'{text}' ({len(name)} characters) is not a valid target name: it "
                          f"names the target's folder under OUTDIR, so it must be {NAME_RULE}",
                          where=where)
    return name


def _check_consistency(t: Target, file: str) -> None:
    """Cross-key rules that a single key's type cannot express."""
    w, n, c = t.weights, t.neurons, t.cores
    if (w.grid == "int_exp") != (w.exp_range is not None):
        raise TargetError("exp_range is required with grid 'int_exp' and must be \"none\" "
                          "otherwise", where=f"{file} [weights] exp_range")
    if w.grid == "int_exp" and w.scale_sharing != "per_layer":
        raise TargetError("grid 'int_exp' shares one power of two per layer: scale_sharing "
                          "must be 'per_layer'", where=f"{file} [weights] scale_sharing")
    if w.grid == "ternary" and w.bits != 2:
        raise TargetError("a ternary grid has 2-bit signed weights", where=f"{file} [weights] bits")
    if (n.decay_format in ("linear", "bitshift")) != (n.decay_bits is not None):
        raise TargetError("decay_bits is required with decay_format 'linear' or 'bitshift' and "
                          "must be \"none\" otherwise", where=f"{file} [neurons] decay_bits")
    missing_kinds = [k for k in n.kinds if k not in t.layers.node_kinds]
    if missing_kinds:
        raise TargetError(f"neuron kinds {missing_kinds} are not in [layers] node_kinds",
                          where=f"{file} [layers] node_kinds")
    for key in ("neurons_per_core", "synapse_memory_bits"):
        value = getattr(c, key)
        if isinstance(value, tuple):
            if c.split_layers or c.share_cores:
                raise TargetError("one value per core needs split_layers = false and "
                                  "share_cores = false", where=f"{file} [cores] {key}")
            if c.cores is None or len(value) != c.cores:
                raise TargetError(f"lists {len(value)} values for {c.cores} cores",
                                  where=f"{file} [cores] {key}")
    if c.synapse_storage == "kernel" and c.split_layers:
        raise TargetError("'kernel' storage keeps a layer's weights in one core: needs "
                          "split_layers = false", where=f"{file} [cores] synapse_storage")
    if c.share_cores and (c.max_in_axons is not None or c.max_out_axons is not None):
        raise TargetError("axon limits per core are only estimated for cores that hold one "
                          "layer (share_cores = false)", where=f"{file} [cores] share_cores")


# --------------------------------------------------------------------------- lookup


def _packaged_dir() -> Path | None:
    try:
        folder = resources.files("sbc_deploy") / "_targets"
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - broken installs
        return None
    path = Path(str(folder))
    return path if path.is_dir() else None


def target_dirs() -> tuple[Path, ...]:
    """Folders searched for bundled targets: the wheel's copy, then the source tree's."""
    dirs = [_packaged_dir(), Path(__file__).resolve().parents[1] / "targets"]
    seen: list[Path] = []
    for folder in dirs:
        if folder is not None and folder.is_dir() and folder.resolve() not in seen:
            seen.append(folder.resolve())
    return tuple(seen)


def _bundled() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in target_dirs():
        for file in sorted(folder.glob("*.toml")):
            found.setdefault(file.stem, file)
    return found


def read_target_file(path: str | Path) -> Target:
    """Load the target in the TOML file ``path``."""
    path = Path(path)
    if not path.is_file():
        raise TargetError("target file does not exist" if not path.exists() else
                          "is not a file", where=str(path))
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise TargetError(f"is not valid TOML: {err}", where=path.name) from err
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise TargetError(f"cannot be read as TOML: {err}", where=str(path)) from err
    log.debug("loading target %s", path)
    from sbc_deploy.safeio import reading

    with reading(path, "a target TOML file (see targets/*.toml)"):
        return parse_target(data, file=path.name, path=path)


def _looks_like_path(text: str) -> bool:
    return text.endswith(".toml") or "/" in text or "\\" in text or text.startswith(".")


def load_target(name_or_path: str | Path | Target) -> Target:
    """Resolve a bundled target by name, or read a target file by path.

    Args:
        name_or_path: ``"loihi2"``, ``"./mychip.toml"``, a :class:`~pathlib.Path`, or a
            :class:`Target` (returned as is).

    Raises:
        TargetError: unknown name (listing the known targets), unreadable file, or an invalid
            file (unknown key with a suggestion, value without source, wrong type, ...).
    """
    if isinstance(name_or_path, Target):
        return name_or_path
    if isinstance(name_or_path, Path) or _looks_like_path(str(name_or_path)):
        return read_target_file(name_or_path)
    name = str(name_or_path).strip()
    bundled = _bundled()
    if name not in bundled and name.lower() in bundled:  # --target Loihi2: names ignore case
        name = name.lower()
    if name not in bundled:
        known = ", ".join(sorted(bundled)) or "none found"
        raise TargetError(f"unknown target '{name}'; known targets: {known}",
                          where="--target",
                          hint=suggest(name, sorted(bundled)) or
                          "or pass a path to a target TOML file (./mychip.toml)")
    target = read_target_file(bundled[name])
    if target.name != name:
        raise TargetError(f"declares name '{target.name}' but the file is {name}.toml",
                          where=bundled[name].name)
    return target


def list_targets() -> tuple[Target, ...]:
    """Every bundled target, sorted by name."""
    return tuple(load_target(name) for name in sorted(_bundled()))


def format_targets(targets: tuple[Target, ...] | list[Target]) -> str:
    """A plain-text table of targets (name, weights, neurons per core, cores, description)."""
    rows = [("name", "weights", "neurons/core", "cores", "description")]
    for t in targets:
        grid = f"{t.weights.bits}-bit {t.weights.grid}" if t.weights.grid != "float" else "float"
        npc = t.cores.neurons_per_core
        npc_text = ("-" if npc is None else
                    f"{min(npc)}-{max(npc)}" if isinstance(npc, tuple) else str(npc))
        rows.append((t.name, grid, npc_text, "-" if t.cores.cores is None else str(t.cores.cores),
                     t.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4]
                     for r in rows)
