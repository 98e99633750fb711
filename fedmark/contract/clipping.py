"""L2 clipping of an update: the one function the device and the server both clip with."""
from __future__ import annotations

import math

import numpy as np

from fedmark.contract.errors import ContractError

__all__ = ["clip_scale", "l2_clip", "l2_norm", "DEVICE_MARGIN", "NORM_CHUNK"]

#: The device scales a clipped update to C * (1 - DEVICE_MARGIN): float32 rounding can then never leave it
#: above C.  The server applies the same rule in float64 with a far smaller margin.
DEVICE_MARGIN = 1e-6


#: Slice length of the float64 passes over an update: a model-sized float64 copy is never made.
NORM_CHUNK = 1 << 14


def l2_norm(vec: np.ndarray) -> float:
    """L2 norm accumulated in float64 over slices: the one norm the device and the server clip by.

    float64, because float32 accumulation drifts at a million entries.  ``einsum``
    rather than ``dot`` / ``np.linalg.norm``: those go to the BLAS, whose worker
    threads spin on ``sched_yield`` after every call; a server whose request
    threads fill the cores (or a fleet simulated in one process) then spends
    more CPU on that spinning than on the norm itself.
    """
    v = np.asarray(vec).reshape(-1)
    total = 0.0
    for start in range(0, v.size, NORM_CHUNK):
        part = v[start:start + NORM_CHUNK].astype(np.float64)
        total += float(np.einsum("i,i->", part, part))
    return math.sqrt(total)


def clip_scale(norm: float, clip_norm: float, margin: float = DEVICE_MARGIN) -> float:
    """The factor that brings a vector of L2 norm ``norm`` inside the ball of radius ``clip_norm``.

    1 when ``norm <= clip_norm`` (the update is *not* clipped), else
    ``clip_norm / norm * (1 - margin)``: the rule of ``tf.clip_by_global_norm``,
    scaled strictly inside so rounding cannot leave the result above C.  The one
    definition of clipping: the device's :func:`l2_clip` and the server's
    accumulator (which applies it to float64 slices) both call it.
    """
    if not clip_norm > 0:
        raise ContractError(f"clip norm must be > 0, got {clip_norm}")
    if norm <= clip_norm:
        return 1.0
    return clip_norm / norm * (1 - margin)


def l2_clip(vec: np.ndarray, clip_norm: float) -> tuple[np.ndarray, float, bool]:
    """Scale ``vec`` to L2 norm at most ``clip_norm``.

    Returns (clipped, original norm, within) where ``within`` is the bit adaptive
    clipping needs: True iff the update was *not* clipped (norm <= C).
    """
    norm = l2_norm(vec)
    if not math.isfinite(norm):
        raise ContractError("update contains NaN or Inf")
    within = norm <= clip_norm
    if within:
        return vec.astype(np.float32, copy=False), norm, True
    scale = np.float32(clip_scale(norm, clip_norm))
    return (vec * scale).astype(np.float32), norm, False
