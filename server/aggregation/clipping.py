"""L2 clipping and the clip-norm estimators (fixed and adaptive quantile).

Why estimators: a fixed clip norm is just a constant estimator, so fixed and
adaptive clipping share one code path (DESIGN.md).  An estimator's state is one
float (the current norm C); its configuration (target quantile, learning rate)
lives in the estimator object, so an admin can retune it between rounds while
the persisted C carries over.

Adaptive rule (Andrew et al. 2021, "Differentially Private Learning with
Adaptive Clipping", geometric update, as TFF / TF Privacy's
``QuantileEstimatorQuery``): every client contributes the bit
b = 1 iff ||delta|| <= C (the update was *not* clipped); with b_bar the (noised)
mean bit and gamma the target quantile,

    C <- C * exp(-eta * (b_bar - gamma)).

Sign check: if more than a gamma fraction of clients fit inside C (b_bar > gamma),
C is too large and must shrink, so the exponent is negative.  Writing
exp(+eta * (b_bar - gamma)) grows C whenever it is already too large and the
estimate runs off to 0 or infinity (the test suite shows both behaviours).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Union

import numpy as np

from fedmark.contract import NORM_CHUNK, ContractError, l2_norm
from fedmark.contract import clip_scale as contract_clip_scale

from .errors import ConfigError, StateError

# The server never trusts a client's "within clip" claim.  Devices clip with
# fedmark.contract.l2_clip, which scales to C * (1 - 1e-6); a received vector
# whose norm lies within BOUNDARY_RTOL of C (or beyond) sits on the clipping
# sphere, i.e. it was clipped, so its bit is 0.  1e-3 also absorbs the norm
# change of the f16/q8 wire encodings for vectors of realistic size, at the
# cost of counting the rare honest update with norm in (C(1-1e-3), C] as clipped.
BOUNDARY_RTOL = 1e-3


#: Slice length of the float64 passes over an update (the norm, the fold): a model-sized float64 copy is never made.
FOLD_CHUNK = NORM_CHUNK


#: The server scales a clipped update to C * (1 - INSIDE): applied in float64,
#: rounding can then never leave it above C (the device's ``l2_clip`` keeps a
#: larger float32 margin of 1e-6, which the server's BOUNDARY_RTOL covers).
INSIDE = 1e-12


def clip_scale(norm: float, clip_norm: float | None) -> float:
    """Factor that brings a vector of L2 norm ``norm`` inside the ball of radius ``clip_norm``.

    The contract's one clipping rule (``fedmark.contract.clip_scale``, which the
    device's ``l2_clip`` uses too; None: no clipping), scaled strictly inside by
    :data:`INSIDE`.  The accumulator applies it to float64 slices of the
    update, so no model-sized float64 copy is made.
    """
    if clip_norm is None:
        return 1.0
    try:
        return contract_clip_scale(norm, clip_norm, margin=INSIDE)
    except ContractError as exc:
        raise ConfigError(str(exc)) from exc


def unclipped_bit(norm: float, clip_norm: float | None, rtol: float = BOUNDARY_RTOL) -> int:
    """The adaptive-clipping bit the server counts: 1 iff the update lies clearly inside C (see BOUNDARY_RTOL)."""
    if clip_norm is None:
        return 1
    return int(norm <= clip_norm * (1.0 - rtol))


@dataclass(frozen=True)
class ClipState:
    """Persisted clip-estimator state: the clip norm C for the next round."""

    norm: float

    def to_json(self) -> dict[str, float]:
        return {"norm": self.norm}

    @staticmethod
    def from_json(d: dict) -> "ClipState":
        try:
            norm = float(d["norm"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"bad clip state {d!r}: needs a numeric 'norm'") from exc
        if not (math.isfinite(norm) and norm > 0):
            raise StateError(f"bad clip state: norm must be finite and > 0, got {norm}")
        return ClipState(norm)


class ClipEstimator(Protocol):
    """What clipping needs from a norm estimator."""

    @property
    def adaptive(self) -> bool: ...

    def initialize(self) -> ClipState: ...

    def next(self, state: ClipState, unclipped_fraction: float) -> ClipState: ...


@dataclass(frozen=True)
class FixedClip:
    """Constant clip norm: ``next`` returns the state unchanged."""

    norm: float

    def __post_init__(self) -> None:
        if not (isinstance(self.norm, (int, float)) and math.isfinite(self.norm) and self.norm > 0):
            raise ConfigError(f"clip.norm must be a finite number > 0, got {self.norm!r}")

    @property
    def adaptive(self) -> bool:
        return False

    def initialize(self) -> ClipState:
        return ClipState(float(self.norm))

    def next(self, state: ClipState, unclipped_fraction: float) -> ClipState:
        return state


@dataclass(frozen=True)
class AdaptiveClip:
    """Geometric quantile tracking of the update norms (Andrew et al. 2021).

    ``initial_norm``: C before the first round; ``target_quantile`` gamma: the
    fraction of clients that should end up unclipped; ``learning_rate`` eta: C
    changes by at most a factor exp(eta) per round (0.2 is the paper's choice).
    """

    initial_norm: float = 0.1
    target_quantile: float = 0.5
    learning_rate: float = 0.2

    def __post_init__(self) -> None:
        if not (math.isfinite(self.initial_norm) and self.initial_norm > 0):
            raise ConfigError(f"clip.norm (initial adaptive norm) must be > 0, got {self.initial_norm}")
        if not 0.0 <= self.target_quantile <= 1.0:
            raise ConfigError(f"clip.target_quantile must be in [0, 1], got {self.target_quantile}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate >= 0):
            raise ConfigError(f"clip.lr must be >= 0, got {self.learning_rate}")

    @property
    def adaptive(self) -> bool:
        return True

    def initialize(self) -> ClipState:
        return ClipState(float(self.initial_norm))

    def next(self, state: ClipState, unclipped_fraction: float) -> ClipState:
        # Noise can push the estimate outside [0, 1]; clamp as TF Privacy does.
        b = min(1.0, max(0.0, float(unclipped_fraction)))
        return ClipState(state.norm * math.exp(-self.learning_rate * (b - self.target_quantile)))


Estimator = Union[FixedClip, AdaptiveClip]
