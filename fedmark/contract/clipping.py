"""L2 clipping of an update: the one function the device and the server both clip with."""
from __future__ import annotations

import math

import numpy as np

from fedmark.contract.errors import ContractError

__all__ = ["clip_scale", "l2_clip", "DEVICE_MARGIN"]

#: The device scales a clipped update to C * (1 - DEVICE_MARGIN): float32 rounding can then never leave it
#: above C.  The server applies the same rule in float64 with a far smaller margin.
DEVICE_MARGIN = 1e-6


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
    norm = float(np.linalg.norm(vec.astype(np.float64)))
    if not math.isfinite(norm):
        raise ContractError("update contains NaN or Inf")
    within = norm <= clip_norm
    if within:
        return vec.astype(np.float32, copy=False), norm, True
    scale = np.float32(clip_scale(norm, clip_norm))
    return (vec * scale).astype(np.float32), norm, False
