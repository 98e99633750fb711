"""L2 clipping of an update: the one function the device and the server both clip with."""
from __future__ import annotations

import math

import numpy as np

from fedmark.contract.errors import ContractError

__all__ = ["l2_clip"]


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
    # float32 rounding can leave the result a hair above C: scale by slightly less.
    scale = np.float32(clip_norm / norm * (1 - 1e-6))
    return (vec * scale).astype(np.float32), norm, False
