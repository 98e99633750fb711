"""How accepted updates are combined: weighted mean (streaming) or robust statistics (buffered).

Why here: combining is the piece a deployment swaps when it fears poisoning.
- :class:`WeightedMean` streams: the round holds one float64 running sum, so
  memory is O(parameters) however many clients report.  Weights are the
  client-reported example counts capped at ``max_weight`` (a client cannot buy
  influence by claiming a billion examples).
- :class:`CoordinateMedian` and :class:`TrimmedMean` cannot stream in
  O(parameters): an exact per-coordinate median needs every value.  They hold a
  *bounded buffer* of at most ``capacity`` updates (memory O(capacity x
  parameters)); the round policy must close a robust round at ``capacity``
  (``Accumulator.full``), and a further ``add`` raises :class:`BufferFull`.
  Both ignore client weights on purpose: a weight is an unverifiable claim, and
  robustness means one client = one vote.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class WeightedMean:
    """Streaming mean weighted by min(weight, max_weight) (``max_weight=None``: uncapped).

    ``uniform=True`` ignores weights (each client counts 1), as DP aggregation does.
    """

    max_weight: float | None = None
    uniform: bool = False

    def __post_init__(self) -> None:
        if self.max_weight is not None and not (math.isfinite(self.max_weight) and self.max_weight > 0):
            raise ConfigError(f"max_examples_weight must be a finite number > 0 (or null), got {self.max_weight}")

    @property
    def capacity(self) -> None:
        return None


@dataclass(frozen=True)
class CoordinateMedian:
    """Coordinate-wise median of at most ``capacity`` buffered updates."""

    capacity: int = 100

    def __post_init__(self) -> None:
        if not (isinstance(self.capacity, int) and self.capacity >= 1):
            raise ConfigError(f"robust.capacity must be an integer >= 1, got {self.capacity!r}")


@dataclass(frozen=True)
class TrimmedMean:
    """Coordinate-wise mean after dropping the floor(trim_fraction * n) largest and smallest values."""

    capacity: int = 100
    trim_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not (isinstance(self.capacity, int) and self.capacity >= 1):
            raise ConfigError(f"robust.capacity must be an integer >= 1, got {self.capacity!r}")
        if not 0 <= self.trim_fraction < 0.5:
            raise ConfigError(f"robust.trim_fraction must be in [0, 0.5), got {self.trim_fraction}")


Combiner = Union[WeightedMean, CoordinateMedian, TrimmedMean]


def coordinate_median(rows: list[np.ndarray]) -> np.ndarray:
    """Per-coordinate median (mean of the two middle values for an even count), float32."""
    return np.median(np.stack(rows), axis=0).astype(np.float32)


def trimmed_mean(rows: list[np.ndarray], trim_fraction: float) -> np.ndarray:
    """Per-coordinate mean of the values left after trimming k = floor(trim_fraction * n) from each end."""
    n = len(rows)
    k = int(math.floor(trim_fraction * n))
    stacked = np.stack(rows).astype(np.float64)
    if k == 0:
        return stacked.mean(axis=0).astype(np.float32)
    stacked.sort(axis=0)
    return stacked[k:n - k].mean(axis=0).astype(np.float32)
