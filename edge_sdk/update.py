"""From new parameters to the bytes that travel: delta, clip, local noise, encode.

Why in this order: the server's DP guarantee assumes each device's contribution
has L2 norm at most C, so the update is clipped on the device (and re-checked
on the server).  The bit "was not clipped" (norm <= C) is taken *before*
clipping, because adaptive clipping (Andrew et al. 2021) moves C towards the
quantile of *raw* update norms.  Optional local Gaussian noise with standard
deviation ``local_noise * C`` is added after clipping (local DP on top of the
server's central DP).  The noise and q8's stochastic rounding always draw from
OS entropy unless a test passes its own generator: a seeded privacy noise would
be no privacy at all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from edge_sdk.errors import ConfigurationError, ModelError
from fedmark.contract import ENCODINGS, ContractError, ParamSpec, encode_update, flatten, l2_clip, l2_norm


@dataclass(frozen=True)
class PreparedUpdate:
    """One update ready to upload; ``vector`` is exactly what ``body`` encodes (before quantization)."""

    vector: np.ndarray = field(repr=False)
    body: bytes = field(repr=False)
    encoding: str
    norm: float
    within_clip: bool
    clip_norm: float | None  # None: sent unclipped (the training configuration has no clipping)
    num_examples: int


def compute_delta(new: Sequence[np.ndarray], old: Sequence[np.ndarray], specs: Sequence[ParamSpec]) -> np.ndarray:
    """new − old global parameters, flattened in manifest order (float32)."""
    if len(new) != len(specs) or len(old) != len(specs):
        raise ModelError(f"the trainer returned {len(new)} parameter tensors, the manifest lists {len(specs)}")
    for spec, a, b in zip(specs, new, old):
        if tuple(np.shape(a)) != spec.shape or tuple(np.shape(b)) != spec.shape:
            raise ModelError(f"parameter {spec.name!r} has shape {np.shape(a)}, the manifest says {spec.shape}")
    return (flatten(new).astype(np.float64) - flatten(old).astype(np.float64)).astype(np.float32)


def privatize(delta: np.ndarray, clip_norm: float | None, local_noise: float = 0.0,
              rng: np.random.Generator | None = None) -> tuple[np.ndarray, float, bool]:
    """Clip ``delta`` to L2 norm ``clip_norm`` and add N(0, (local_noise·C)²) per coordinate.

    Returns (vector, norm before clipping, within-clip bit).  ``clip_norm=None``
    (a server configured without clipping) sends the update unclipped; local
    noise, defined relative to C, then cannot be applied.
    """
    if clip_norm is None:
        if local_noise:
            raise ConfigurationError("local noise is a multiple of the clip norm; it needs a clip norm")
        vec = np.asarray(delta, dtype=np.float32)
        norm = l2_norm(vec)
        if not math.isfinite(norm):
            raise ModelError("training produced an invalid update: it contains NaN or Inf; check the data and "
                             "learning rate")
        return vec, norm, True
    if not (isinstance(clip_norm, (int, float)) and math.isfinite(clip_norm) and clip_norm > 0):
        raise ConfigurationError(f"clip norm must be a positive number, got {clip_norm!r}")
    if not (math.isfinite(local_noise) and local_noise >= 0):
        raise ConfigurationError(f"local_noise must be >= 0, got {local_noise!r}")
    try:
        clipped, norm, within = l2_clip(np.asarray(delta, dtype=np.float32), float(clip_norm))
    except ContractError as exc:
        raise ModelError(f"training produced an invalid update: {exc}; check the data and learning rate") from exc
    if local_noise > 0:
        rng = rng if rng is not None else np.random.default_rng()
        clipped = (clipped + rng.normal(0.0, local_noise * clip_norm, clipped.shape)).astype(np.float32)
    return clipped, norm, within


def build_update(new: Sequence[np.ndarray], old: Sequence[np.ndarray], specs: Sequence[ParamSpec], *,
                 clip_norm: float | None, num_examples: int, encoding: str = "f32", local_noise: float = 0.0,
                 rng: np.random.Generator | None = None) -> PreparedUpdate:
    """The whole device-side pipeline for one update."""
    if encoding not in ENCODINGS:
        raise ConfigurationError(f"update encoding {encoding!r} is unknown; use one of {sorted(ENCODINGS)}")
    if num_examples <= 0:
        raise ConfigurationError("an update needs at least one training example")
    delta = compute_delta(new, old, specs)
    vec, norm, within = privatize(delta, clip_norm, local_noise, rng)
    rng = rng if rng is not None else np.random.default_rng()
    try:
        body = encode_update(vec, encoding, rng)
    except ContractError as exc:
        raise ModelError(f"update cannot be encoded as {encoding}: {exc}") from exc
    return PreparedUpdate(vec, body, encoding, norm, within, None if clip_norm is None else float(clip_norm),
                          int(num_examples))
