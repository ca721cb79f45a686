"""Integer weight encodings: how a synapse layer's float weights sit on a hardware grid.

A compressed (or natively integer) synapse layer carries a :class:`WeightEncoding` next to
its float ``weight``.  The encoding is exact, checked at construction::

    weight == mantissa * scale[:, None, ...]        (scale broadcast over output channels)

Grids (``grid``):

- ``"int"``: symmetric per-output-channel integers, ``scale`` free per channel.
- ``"int_exp"``: Loihi's integer mantissa times a power of two shared by the whole layer,
  ``scale[c] == unit * 2**exponent`` for every channel ``c``. ``unit`` is the value of one
  integer step of the downstream neuron's state (lava-dl: 1/64 of a float unit), so the
  integer weight the core adds is ``mantissa << exponent`` (or ``>>`` for a negative exponent).
- ``"ternary"``: mantissas in {-1, 0, 1}, one scale per channel.

``bits`` counts the sign bit for signed grids: a signed b-bit mantissa lies in
``[-2**(b-1), 2**(b-1) - 1]``; unsigned in ``[0, 2**b - 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from sbc_deploy.errors import IRError

Grid = Literal["int", "int_exp", "ternary"]
GRIDS: tuple[str, ...] = ("int", "int_exp", "ternary")


def frozen_array(values: object, dtype: type | None = np.float64) -> np.ndarray:
    """A read-only copy of ``values`` (so no stage can mutate another stage's arrays)."""
    array = np.array(values, dtype=dtype, copy=True)
    array.flags.writeable = False
    return array


def mantissa_range(bits: int, signed: bool) -> tuple[int, int]:
    """Inclusive (low, high) range of a ``bits``-bit mantissa."""
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


@dataclass(frozen=True, eq=False)
class WeightEncoding:
    """Integer mantissas and their scales; ``weight == mantissa * scale`` per output channel.

    Attributes:
        mantissa: integer array with the weight's shape, ``(n_out, n_in)`` or
            ``(c_out, c_in/groups, *kernel)``.
        scale: ``(n_out,)`` float value of one mantissa step, per output channel.
        bits: mantissa width, sign bit included when ``signed``.
        grid: one of :data:`GRIDS`.
        signed: two's complement mantissa when true.
        exponent: the shared power-of-two exponent of an ``"int_exp"`` grid, else ``None``.
        unit: the value of one integer state step of an ``"int_exp"`` grid, else ``None``.
    """

    mantissa: np.ndarray
    scale: np.ndarray
    bits: int
    grid: Grid = "int"
    signed: bool = True
    exponent: int | None = None
    unit: float | None = None

    def __post_init__(self) -> None:
        mantissa = np.asarray(self.mantissa)
        if mantissa.ndim < 2:
            raise IRError(f"mantissa must be at least 2-D (n_out, ...), got shape {mantissa.shape}",
                          where="WeightEncoding")
        if not np.issubdtype(mantissa.dtype, np.integer):
            if not np.array_equal(mantissa, np.round(mantissa)):
                raise IRError("mantissa holds non-integer values", where="WeightEncoding")
        object.__setattr__(self, "mantissa", frozen_array(mantissa, np.int64))
        scale = np.broadcast_to(np.asarray(self.scale, dtype=np.float64), (mantissa.shape[0],))
        object.__setattr__(self, "scale", frozen_array(scale))
        if self.grid not in GRIDS:
            raise IRError(f"unknown grid {self.grid!r}; known: {', '.join(GRIDS)}",
                          where="WeightEncoding.grid")
        if not 1 <= self.bits <= 32:
            raise IRError(f"bits must be in 1..32, got {self.bits}", where="WeightEncoding.bits")
        if not np.all(np.isfinite(self.scale)) or np.any(self.scale <= 0):
            raise IRError("scale must be finite and positive", where="WeightEncoding.scale")
        low, high = mantissa_range(self.bits, self.signed)
        if self.mantissa.size and (self.mantissa.min() < low or self.mantissa.max() > high):
            raise IRError(
                f"mantissa range [{self.mantissa.min()}, {self.mantissa.max()}] exceeds the "
                f"{self.bits}-bit {'signed' if self.signed else 'unsigned'} range [{low}, {high}]",
                where="WeightEncoding.mantissa")
        if self.grid == "int_exp":
            if self.exponent is None or self.unit is None:
                raise IRError("an int_exp grid needs both exponent and unit", where="WeightEncoding")
            expected = self.unit * 2.0 ** self.exponent
            if not np.allclose(self.scale, expected, rtol=1e-12, atol=0.0):
                raise IRError(f"int_exp scale must equal unit * 2**exponent = {expected!r}",
                              where="WeightEncoding.scale")
        if self.grid == "ternary" and self.mantissa.size and np.abs(self.mantissa).max() > 1:
            raise IRError("ternary mantissas must lie in {-1, 0, 1}", where="WeightEncoding")

    def dequantize(self) -> np.ndarray:
        """The float weight this encoding stands for: ``mantissa * scale``."""
        shape = (-1,) + (1,) * (self.mantissa.ndim - 1)
        return self.mantissa * self.scale.reshape(shape)

    def integer_weight(self) -> np.ndarray:
        """For an ``int_exp`` grid: the weight in units of ``unit`` (``mantissa * 2**exponent``)."""
        if self.grid != "int_exp":
            raise IRError(f"integer_weight needs an int_exp grid, this one is {self.grid!r}",
                          where="WeightEncoding")
        return self.mantissa * 2.0 ** self.exponent
