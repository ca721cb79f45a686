"""The one value every data source turns into: inputs per time step, labels, the step length."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from sbc_deploy.errors import DataError


def _frozen(array: np.ndarray) -> bool:
    """True when nothing can write to the array's memory: it and every base are read-only
    arrays down to one that owns its memory (e.g. a broadcast view of a frozen copy)."""
    current: object = array
    while isinstance(current, np.ndarray):
        if current.flags.writeable:
            return False
        current = current.base
    return current is None


def _readonly(array: np.ndarray) -> np.ndarray:
    if _frozen(array):   # already immutable: no copy (a direct encoding's T-fold view)
        return array
    array = np.array(array, copy=True)
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class Dataset:
    """Samples as sequences of inputs, one per time step of ``dt`` seconds.

    Attributes:
        x: ``[N, T, *input_shape]`` inputs per step. Spike data stays in a small integer dtype
            (``uint8``); consumers cast (``as_time_major`` gives float32).
        y: ``[N]`` integer class labels, or ``None`` for unlabelled data.
        dt: the length of one step in seconds.
        source: where the data came from (a path or a spec), for reports and error messages.
    """

    x: np.ndarray
    y: np.ndarray | None
    dt: float
    source: str

    def __post_init__(self) -> None:
        x = np.asarray(self.x)
        if x.ndim < 3:
            raise DataError(f"x must have shape [N, T, *input_shape] (at least 3-D), got {x.shape}",
                            where=self.source)
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise DataError(f"x holds no samples or no time steps: shape {x.shape}",
                            where=self.source)
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise DataError(f"x must be numeric, got dtype {x.dtype}", where=self.source)
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
            raise DataError("x holds NaN or infinite values", where=self.source)
        object.__setattr__(self, "x", _readonly(x))
        if self.y is not None:
            y = np.asarray(self.y)
            if y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise DataError(f"y must have shape [N] = [{x.shape[0]}], got {y.shape}",
                                where=self.source)
            if not np.issubdtype(y.dtype, np.integer):
                raise DataError(f"y must hold integer class labels, got dtype {y.dtype}",
                                where=self.source)
            if y.size and y.min() < 0:
                raise DataError(f"y holds a negative label ({y.min()})", where=self.source)
            object.__setattr__(self, "y", _readonly(y.astype(np.int64)))
        if isinstance(self.dt, bool) or not isinstance(self.dt, (int, float, np.floating)) \
                or not math.isfinite(self.dt) or self.dt <= 0:
            raise DataError(f"dt must be a positive number of seconds, got {self.dt!r}",
                            where=self.source)
        object.__setattr__(self, "dt", float(self.dt))
        object.__setattr__(self, "source", str(self.source))

    # ------------------------------------------------------------------ views

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def steps(self) -> int:
        """Number of time steps ``T``."""
        return int(self.x.shape[1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample, per-step shape."""
        return tuple(int(v) for v in self.x.shape[2:])

    @property
    def num_classes(self) -> int | None:
        """``max(y) + 1``, or ``None`` without labels."""
        return None if self.y is None else int(self.y.max()) + 1

    def as_time_major(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples ``start:stop`` as float32 ``[T, B, *input_shape]`` (the simulator's layout)."""
        return np.ascontiguousarray(np.moveaxis(self.x[start:stop], 0, 1), dtype=np.float32)

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """``(x [T, B, *shape] float32, y [B] or None)`` in order; the last may be smaller."""
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}", where=self.source)
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            yield self.as_time_major(start, stop), None if self.y is None else self.y[start:stop]

    # ------------------------------------------------------------------ new datasets

    def subset(self, indices: np.ndarray | slice | list[int]) -> Dataset:
        """A new dataset with the selected samples."""
        index = indices if isinstance(indices, slice) else np.asarray(indices, dtype=np.int64)
        return replace(self, x=self.x[index], y=None if self.y is None else self.y[index])

    def with_steps(self, steps: int) -> Dataset:
        """The first ``steps`` time steps (``steps`` may not exceed ``T``)."""
        if not 1 <= steps <= self.steps:
            raise DataError(f"cannot keep {steps} steps of data that has {self.steps}",
                            where=self.source)
        return replace(self, x=self.x[:, :steps])

    def with_input_shape(self, input_shape: tuple[int, ...]) -> Dataset:
        """The same data with each step reshaped to ``input_shape`` (same size, C order)."""
        shape = tuple(int(v) for v in input_shape)
        if shape == self.input_shape:
            return self
        if math.prod(shape) != math.prod(self.input_shape):
            raise DataError(f"samples have shape {self.input_shape} per step "
                            f"({math.prod(self.input_shape)} values); the model expects {shape} "
                            f"({math.prod(shape)} values)", where=self.source)
        return replace(self, x=self.x.reshape(len(self), self.steps, *shape))
