"""Compression configs: frozen, validated values, one type per method (torchao style).

Stage contract: user choices -> a config value; ``compress()`` dispatches on its type
(``sbc_deploy.compress.PASSES``). Every invalid field raises :class:`ConfigError` naming it.

    SBCConfig        SBC: OBS on the spiking neuron's membrane potential (SMP Hessian)
    OBCConfig        OBC / GPTQ / SparseGPT ported to SNNs: OBS on the input current (K = I)
    MagnitudeConfig  baselines: magnitude pruning and round-to-nearest (no Hessian needed)

All three share the same fields, so every comparison is one flag. Example::

    >>> SBCConfig(sparsity=0.9, allocation="global", bits=8, grid="int_exp")
    >>> config_for("obc", sparsity=0.5, n_m=(2, 4))

The config knows nothing about hardware targets; :func:`config_for_target` reads a target's
weight format and fan-in limit by attribute (any object with ``weights.bits``, ``weights.grid``,
``weights.exp_range``, ``weights.scale_sharing`` and ``limits.max_fan_in``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Literal

from sbc_deploy.compress.grids import CLIPS
from sbc_deploy.errors import ConfigError
from sbc_deploy.ir.encoding import GRIDS

ALLOCATIONS: tuple[str, ...] = ("uniform", "lamp", "global")
SOLVERS: tuple[str, ...] = ("admm", "exact", "sparsegpt")
PROPAGATIONS: tuple[str, ...] = ("parallel", "sequential")
METHODS: tuple[str, ...] = ("sbc", "obc", "magnitude")

__all__ = [
    "ALLOCATIONS", "METHODS", "PROPAGATIONS", "SOLVERS", "Budget", "CompressionConfig",
    "MagnitudeConfig", "OBCConfig", "SBCConfig", "config_for", "config_for_target",
]


@dataclass(frozen=True)
class Budget:
    """A memory budget the compressed synapse layers must fit: total synapses or bytes.

    Attributes:
        synapses: most non-zero weights kept over all compressed layers.
        bytes: most bytes of kept weights; each kept weight costs ``bits_per_synapse`` bits.
        bits_per_synapse: storage per kept synapse for ``bytes`` (weight plus any index); default
            the config's ``bits`` (32 when not quantising).
        allocation: how the resulting overall sparsity is split over layers.
    """

    synapses: int | None = None
    bytes: int | None = None
    bits_per_synapse: float | None = None
    allocation: Literal["uniform", "lamp", "global"] = "global"

    def __post_init__(self) -> None:
        if (self.synapses is None) == (self.bytes is None):
            raise ConfigError("give exactly one of synapses= or bytes=", where="Budget")
        for name in ("synapses", "bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ConfigError(f"must be an integer >= 0, got {value!r}", where=f"Budget.{name}")
        if self.bits_per_synapse is not None and not (
                math.isfinite(self.bits_per_synapse) and self.bits_per_synapse > 0):
            raise ConfigError(f"must be > 0, got {self.bits_per_synapse}",
                              where="Budget.bits_per_synapse")
        if self.allocation not in ALLOCATIONS:
            raise ConfigError(f"unknown allocation {self.allocation!r}; known: "
                              f"{', '.join(ALLOCATIONS)}", where="Budget.allocation")

    def max_synapses(self, bits: int | None) -> int:
        """The most synapses this budget allows (``bits``: the config's weight bits)."""
        if self.synapses is not None:
            return self.synapses
        per = self.bits_per_synapse or float(bits if bits is not None else 32)
        return math.floor(8 * int(self.bytes or 0) / per)


@dataclass(frozen=True)
class CompressionConfig:
    """Fields shared by every method. Use a subclass (:class:`SBCConfig`, ...).

    Attributes:
        sparsity: overall fraction of weights to prune in the compressed layers.
        allocation: per-layer split of ``sparsity``: ``"uniform"``, ``"lamp"`` (SBC's choice),
            ``"global"`` (least relative OBS loss), or a :class:`Budget`.
        n_m: keep at most ``n`` of every ``m`` consecutive inputs (``(2, 4)``).
        fan_in: keep at most this many inputs per output neuron.
        bits: weight bits (sign included); ``None``: no quantisation (except ``"ternary"``).
        grid: ``"int"`` (per-channel symmetric), ``"int_exp"`` (Loihi mantissa x 2**exp per
            layer) or ``"ternary"``.
        per_channel: ``"int"`` grid: one scale per output channel (else one per layer).
        exp_range: ``"int_exp"`` grid: inclusive exponent range.
        clip: range of the ``"int"`` / ``"int_exp"`` grids: ``"mse"`` (a per-scale search of
            the clipping factor, OBQ's quantiser) or ``"minmax"`` (the weights' range, SBC's
            and GPTQ's); see :mod:`sbc_deploy.compress.grids`.
        act_order: quantise columns in SBC's order, ascending ``diag(H^-1)`` (most sensitive
            first); False: natural input order.
        damp_frac: damping relative to the mean Hessian diagonal (GPTQ's ``percdamp``).
        block_size: columns per lazy block of the GPTQ / SparseGPT sweep.
        propagation: ``"parallel"`` (every layer calibrated on the dense network, as SBC) or
            ``"sequential"`` (each layer on the already-compressed layers before it, as GPTQ).
        solver: pruning solver: ``"admm"`` (fast, near exact greedy OBS), ``"exact"`` (greedy
            OBS, SBC's algorithm; O(n_out n_in^3), small layers) or ``"sparsegpt"``.
        device: torch device of the solvers (``"cuda"`` when present).
        lamp_power: exponent of LAMP scores (SBC: 2 for neuromorphic nets, 3 for CIFAR/ImageNet).
        max_sparsity: most sparsity the allocation gives one layer.
        layers: names of the synapse layers to compress (``None``: all).
        threads: torch intra-op threads while compressing (``None``: leave as is).
    """

    sparsity: float = 0.0
    allocation: str | Budget = "uniform"
    n_m: tuple[int, int] | None = None
    fan_in: int | None = None
    bits: int | None = None
    grid: str = "int"
    per_channel: bool = True
    exp_range: tuple[int, int] = (-8, 7)
    clip: str = "mse"
    act_order: bool = True
    damp_frac: float = 0.01
    block_size: int = 128
    propagation: str = "parallel"
    solver: str = "admm"
    device: str = "cpu"
    lamp_power: int = 2
    max_sparsity: float = 0.99
    layers: tuple[str, ...] | None = None
    threads: int | None = None
    version: int = 1

    method: ClassVar[str] = ""
    kernel: ClassVar[str] = "smp"
    needs_calibration: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if type(self) is CompressionConfig:
            raise ConfigError("use SBCConfig, OBCConfig or MagnitudeConfig (or config_for)",
                              where="CompressionConfig")
        name = type(self).__name__
        _check(isinstance(self.sparsity, (int, float)) and 0.0 <= self.sparsity < 1.0,
               f"must lie in [0, 1), got {self.sparsity!r}", f"{name}.sparsity")
        _check(isinstance(self.allocation, Budget) or self.allocation in ALLOCATIONS,
               f"must be one of {', '.join(ALLOCATIONS)} or a Budget, got {self.allocation!r}",
               f"{name}.allocation")
        if self.n_m is not None:
            n_m = tuple(self.n_m)
            _check(len(n_m) == 2 and all(isinstance(v, int) for v in n_m)
                   and 1 <= n_m[1] and 0 < n_m[0] <= n_m[1],
                   f"must be (n, m) with 0 < n <= m, got {self.n_m!r}", f"{name}.n_m")
            object.__setattr__(self, "n_m", n_m)
        _check(self.fan_in is None or (isinstance(self.fan_in, int) and self.fan_in >= 1),
               f"must be an integer >= 1, got {self.fan_in!r}", f"{name}.fan_in")
        _check(self.bits is None or (isinstance(self.bits, int) and 2 <= self.bits <= 32),
               f"must be an integer in 2..32, got {self.bits!r}", f"{name}.bits")
        _check(self.grid in GRIDS, f"must be one of {', '.join(GRIDS)}, got {self.grid!r}",
               f"{name}.grid")
        _check(self.clip in CLIPS, f"must be one of {', '.join(CLIPS)}, got {self.clip!r}",
               f"{name}.clip")
        exp_range = tuple(self.exp_range)
        _check(len(exp_range) == 2 and all(isinstance(v, int) for v in exp_range)
               and exp_range[0] <= exp_range[1],
               f"must be (low, high) integers with low <= high, got {self.exp_range!r}",
               f"{name}.exp_range")
        object.__setattr__(self, "exp_range", exp_range)
        _check(isinstance(self.damp_frac, (int, float)) and math.isfinite(self.damp_frac)
               and self.damp_frac >= 0, f"must be a finite number >= 0, got {self.damp_frac!r}",
               f"{name}.damp_frac")
        _check(isinstance(self.block_size, int) and self.block_size >= 1,
               f"must be an integer >= 1, got {self.block_size!r}", f"{name}.block_size")
        _check(self.propagation in PROPAGATIONS,
               f"must be one of {', '.join(PROPAGATIONS)}, got {self.propagation!r}",
               f"{name}.propagation")
        _check(self.solver in SOLVERS, f"must be one of {', '.join(SOLVERS)}, got "
               f"{self.solver!r}", f"{name}.solver")
        _check(isinstance(self.device, str) and bool(self.device),
               f"must name a torch device, got {self.device!r}", f"{name}.device")
        _check(isinstance(self.lamp_power, int) and self.lamp_power >= 1,
               f"must be an integer >= 1, got {self.lamp_power!r}", f"{name}.lamp_power")
        _check(isinstance(self.max_sparsity, (int, float)) and 0 < self.max_sparsity <= 1,
               f"must lie in (0, 1], got {self.max_sparsity!r}", f"{name}.max_sparsity")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers))
        _check(self.threads is None or (isinstance(self.threads, int) and self.threads >= 1),
               f"must be an integer >= 1, got {self.threads!r}", f"{name}.threads")

    @property
    def quantize(self) -> bool:
        """True when weights go on a grid (``bits`` given, or the ternary grid)."""
        return self.bits is not None or self.grid == "ternary"

    @property
    def prune(self) -> bool:
        """True when weights are pruned (sparsity, budget, N:M or a fan-in cap)."""
        return (self.sparsity > 0 or isinstance(self.allocation, Budget)
                or self.n_m is not None or self.fan_in is not None)

    def calibration_key(self) -> tuple[Any, ...]:
        """Configs with equal keys can share one calibration."""
        return (self.kernel, self.device)

    def replace(self, **changes: Any) -> CompressionConfig:
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)


def _check(ok: bool, message: str, where: str) -> None:
    if not ok:
        raise ConfigError(message, where=where)


@dataclass(frozen=True)
class SBCConfig(CompressionConfig):
    """Spiking Brain Compression: OBS with the SMP Hessian of the neuron after each layer."""

    method: ClassVar[str] = "sbc"
    kernel: ClassVar[str] = "smp"


@dataclass(frozen=True)
class OBCConfig(CompressionConfig):
    """OBC / GPTQ / SparseGPT ported to SNNs: the same solvers with the current Hessian."""

    method: ClassVar[str] = "obc"
    kernel: ClassVar[str] = "current"


@dataclass(frozen=True)
class MagnitudeConfig(CompressionConfig):
    """Baselines: magnitude pruning and round-to-nearest; a calibration is used only to report
    the (SMP) layer loss."""

    method: ClassVar[str] = "magnitude"
    kernel: ClassVar[str] = "smp"
    needs_calibration: ClassVar[bool] = False


CONFIG_TYPES: dict[str, type[CompressionConfig]] = {
    "sbc": SBCConfig, "obc": OBCConfig, "magnitude": MagnitudeConfig,
}


def config_for(method: str, **fields_: Any) -> CompressionConfig:
    """The config of ``method`` (``"sbc"``, ``"obc"``, ``"magnitude"``) with ``fields_``."""
    if method not in CONFIG_TYPES:
        raise ConfigError(f"unknown method {method!r}; known: {', '.join(METHODS)}",
                          where="method")
    known = {f.name for f in fields(CompressionConfig)}
    unknown = sorted(set(fields_) - known)
    if unknown:
        raise ConfigError(f"unknown field(s) {', '.join(unknown)}", where="config")
    return CONFIG_TYPES[method](**fields_)


def config_for_target(target: Any, *, method: str = "sbc", sparsity: float | None = None,
                      bits: int | None = None, fan_in: int | None = None,
                      n_m: tuple[int, int] | None = None, **overrides: Any) -> CompressionConfig:
    """A config from a hardware target's weight format and fan-in limit; flags override.

    Reads by attribute (no import of the targets module): ``weights.bits``, ``weights.grid``
    (``"float"`` or ``"none"``: no quantisation), ``weights.exp_range``,
    ``weights.scale_sharing`` and ``limits.max_fan_in``.
    """
    weights = getattr(target, "weights", None)
    limits = getattr(target, "limits", None)
    fields_: dict[str, Any] = {"sparsity": 0.0 if sparsity is None else sparsity}
    grid = getattr(weights, "grid", None)
    if grid in GRIDS:
        fields_["grid"] = grid
        fields_["bits"] = bits if bits is not None else getattr(weights, "bits", None)
        exp_range = getattr(weights, "exp_range", None)
        if grid == "int_exp" and exp_range is not None:
            fields_["exp_range"] = tuple(exp_range)
        if getattr(weights, "scale_sharing", "per_channel") == "per_layer" and grid == "int":
            fields_["per_channel"] = False
    elif bits is not None:
        fields_["bits"] = bits
    cap = fan_in if fan_in is not None else getattr(limits, "max_fan_in", None)
    if cap is not None:
        fields_["fan_in"] = int(cap)
    if n_m is not None:
        fields_["n_m"] = tuple(n_m)
    fields_.update(overrides)
    return config_for(method, **fields_)
