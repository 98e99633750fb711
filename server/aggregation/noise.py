"""Gaussian noise calibration for DP aggregation.

Why a separate piece: the maths of *how much* noise (and how a total noise
multiplier is split between the update sum and the adaptive-clipping bit count)
is independent of how updates are summed, and is what an auditor checks.

Conventions (as TFF's ``DifferentiallyPrivateFactory``):
- every client's clipped update has L2 norm <= C, so one client changes the
  *unweighted* sum by at most C; noise N(0, (z_v * C)^2) per coordinate on that
  sum gives noise multiplier z_v.
- the adaptive-clipping bit count is shifted to b - 1/2 so one client changes it
  by at most 1/2; noise with stddev sigma_b gives noise multiplier 2 * sigma_b.
- releasing both is one Gaussian mechanism with multiplier z when
  z^-2 = z_v^-2 + (2 sigma_b)^-2, hence z_v = (z^-2 - (2 sigma_b)^-2)^(-1/2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError


def default_bit_stddev(expected_clients: float) -> float:
    """TFF's default stddev of the noise on the clipped-bit count: 0.05 x clients per round."""
    return 0.05 * expected_clients


def value_noise_multiplier(noise_multiplier: float, bit_stddev: float) -> float:
    """Noise multiplier for the update sum when the bit count also consumes budget.

    Raises :class:`ConfigError` when ``bit_stddev`` is too small: the bit release
    alone would already cost more than the whole budget z (needs 2 sigma_b > z).
    """
    z = float(noise_multiplier)
    if z < 0 or not math.isfinite(z):
        raise ConfigError(f"noise_multiplier must be a finite number >= 0, got {noise_multiplier}")
    if z == 0:
        return 0.0
    if not 2 * bit_stddev > z:
        raise ConfigError(
            f"adaptive clipping with noise_multiplier={z} needs the clipped-count noise stddev "
            f"sigma_b > z/2 = {z / 2:g}, got sigma_b={bit_stddev:g} (default is 0.05 x clients per round). "
            f"Increase clients per round (or clip.count_stddev), lower noise_multiplier, or use a fixed clip.")
    return (z ** -2 - (2 * bit_stddev) ** -2) ** -0.5


@dataclass(frozen=True)
class GaussianNoise:
    """DP noise configuration for one aggregator.

    ``noise_multiplier`` z: the *total* multiplier used for accounting.
    ``expected_clients``: the denominator of the DP mean (fixed, public), and the
    denominator of the noised unclipped fraction.
    ``sampling_rate`` q: probability that a given client takes part in a round
    (Poisson subsampling assumption used by the accountant).
    ``bit_stddev``: noise on the adaptive-clipping bit count; None = TFF default.
    """

    noise_multiplier: float
    expected_clients: float
    sampling_rate: float = 1.0
    bit_stddev: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise ConfigError(f"noise_multiplier must be a finite number >= 0, got {self.noise_multiplier}")
        if not (math.isfinite(self.expected_clients) and self.expected_clients > 0):
            raise ConfigError(
                f"expected clients per round must be > 0 for DP (the mean's fixed denominator), "
                f"got {self.expected_clients}; set the round goal / buffer_size")
        if not 0 < self.sampling_rate <= 1:
            raise ConfigError(f"sampling_rate must be in (0, 1], got {self.sampling_rate}")
        if self.bit_stddev is not None and not (math.isfinite(self.bit_stddev) and self.bit_stddev >= 0):
            raise ConfigError(f"bit_stddev must be >= 0, got {self.bit_stddev}")

    def bit_noise_stddev(self, adaptive: bool) -> float:
        """Stddev of the noise on the bit count (0 without adaptive clipping or without noise)."""
        if not adaptive or self.noise_multiplier == 0:
            return 0.0
        return default_bit_stddev(self.expected_clients) if self.bit_stddev is None else float(self.bit_stddev)

    def value_multiplier(self, adaptive: bool) -> float:
        """z_v: the multiplier of the noise actually added to the update sum."""
        if not adaptive:
            return float(self.noise_multiplier)
        return value_noise_multiplier(self.noise_multiplier, self.bit_noise_stddev(True))


NOISE_CHUNK = 1 << 14


def noised_mean(total: np.ndarray, stddev: float, denominator: float, rng: np.random.Generator) -> np.ndarray:
    """float32 ``(total + N(0, stddev^2 I)) / denominator`` without modifying ``total``.

    Noise is drawn in fixed chunks of NOISE_CHUNK coordinates, in order, so
    extra memory is O(chunk) besides the float32 result, and the same generator
    state always yields the same output (a recovered round re-publishes the same
    bits).  stddev = 0 draws nothing.
    """
    out = np.empty(total.size, np.float32)
    for start in range(0, total.size, NOISE_CHUNK):
        part = total[start:start + NOISE_CHUNK]
        if stddev > 0:
            part = part + rng.normal(0.0, stddev, size=part.size)
        out[start:start + NOISE_CHUNK] = part / denominator
    return out
