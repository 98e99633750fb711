"""The aggregator: combiner + clipping + DP noise, with explicit persisted state.

Why one composed object rather than nested wrappers: the DP guarantee holds
only for one exact combination (clip every update, *unweighted* sum, noise
calibrated to C, fixed denominator, noised bit count for adaptive C).  The
pieces stay separate and swappable (combiner, clip estimator, noise, budget) and
``Aggregator.__post_init__`` refuses combinations that would break it.

Round protocol (memory O(parameters) for the mean):

    state = agg.initialize()                        # once per model; persist state.to_json()
    acc = agg.start(state, num_params)              # when a round opens
    acc.add(vec, weight=num_examples, within_clip=claim)   # per accepted update
    res = agg.finish(state, acc, rng)               # at goal / deadline
    res.delta, res.state, res.metrics               # persist res.state

Weighting and denominator:
- without DP: weighted mean, sum_i w_i c_i / sum_i w_i with w_i the capped
  example counts and c_i the clipped updates.
- with DP (as TFF's ``DifferentiallyPrivateFactory``): every client weighs 1 and
  the mean is (sum_i c_i + N(0, (z_v C)^2 I)) / expected_clients.  The
  denominator is the *configured* clients per round, not the count received,
  so the count needs no noise and a missing client only shrinks the step.
- the unclipped fraction for adaptive clipping is
  (sum_i (b_i - 1/2) + N(0, sigma_b^2)) / expected_clients + 1/2 with DP (TF
  Privacy's shifted count), and sum_i b_i / count without DP.

Noise draw order (for bit-identical replay from the same ``rng`` state): the
value noise for coordinates 0..n-1 in chunks, then one scalar for the bit count
(only when sigma_b > 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import codec
from .accounting import PrivacyBudget, PrivacyLedger
from .accumulator import Accumulator
from .clipping import BOUNDARY_RTOL, AdaptiveClip, ClipState, Estimator, FixedClip
from .errors import ConfigError, EmptyRound, StateError
from .noise import GaussianNoise, noised_mean
from .robust import Combiner, CoordinateMedian, TrimmedMean, WeightedMean, coordinate_median, trimmed_mean

# Metrics that are safe to publish next to a DP model (the rest are exact per-round
# counts meant for operators, which would leak under DP if published).
# A partitioned (per-cell) result adds only public keys of its own (see cells.py).
PUBLIC_METRICS = frozenset({"round", "contributors", "clip_norm", "next_clip_norm", "noise_stddev",
                            "noise_multiplier", "value_noise_multiplier", "denominator",
                            "unclipped_fraction_noised", "dp", "epsilon",
                            "hierarchical", "delta_norm", "cell_noise_stddev_total"})


@dataclass(frozen=True)
class AggregatorState:
    """Everything that evolves across rounds: round counter, clip norm, privacy ledger.

    JSON form: ``{"round": int, "clip": {"norm": float} | null, "privacy": [{"z", "q", "n"}, ...]}``.
    """

    round: int = 0
    clip: ClipState | None = None
    privacy: PrivacyLedger = field(default_factory=PrivacyLedger)

    @property
    def clip_norm(self) -> float | None:
        return None if self.clip is None else self.clip.norm

    def epsilon(self, delta: float) -> float:
        """Epsilon at ``delta`` spent by all DP rounds so far (0.0 if none)."""
        return self.privacy.epsilon(delta)

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "clip": None if self.clip is None else self.clip.to_json(),
                "privacy": self.privacy.to_json()}

    @staticmethod
    def from_json(d: Any) -> "AggregatorState":
        try:
            return AggregatorState(int(d["round"]), None if d.get("clip") is None else ClipState.from_json(d["clip"]),
                                   PrivacyLedger.from_json(d.get("privacy", [])))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise StateError(f"bad aggregator state {str(d)[:200]}: {exc}") from exc

    def to_bytes(self) -> bytes:
        return codec.pack(self.to_json())

    @staticmethod
    def from_bytes(b: bytes) -> "AggregatorState":
        return AggregatorState.from_json(codec.unpack(b))


@dataclass(frozen=True)
class AggregateResult:
    """Output of one round: the aggregate delta (float32), the next state and metrics."""

    delta: np.ndarray
    state: AggregatorState
    metrics: dict[str, Any]

    def public_metrics(self) -> dict[str, Any]:
        """The subset of metrics that may be published with a DP model."""
        if not self.metrics.get("dp"):
            return dict(self.metrics)
        return {k: v for k, v in self.metrics.items() if k in PUBLIC_METRICS}


@dataclass(frozen=True)
class Release:
    """One accumulator's aggregate as released: what a (per-cell) DP release is made of.

    ``bit_sum`` is the raw count adaptive clipping needs: with DP the noised,
    shifted sum ``sum_i (b_i - 1/2) + N(0, sigma_b^2)`` (NaN without adaptive
    clipping), without DP the number of unclipped updates.  It is kept raw, not
    as a clamped fraction, so the bit sums of several releases add up exactly.
    """

    delta: np.ndarray
    privacy: PrivacyLedger
    contributors: int
    weight: float
    bit_sum: float
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Aggregator:
    """Composition of a combiner, an optional clip estimator, optional DP noise and an optional budget."""

    combiner: Combiner = field(default_factory=WeightedMean)
    clip: Estimator | None = None
    noise: GaussianNoise | None = None
    budget: PrivacyBudget | None = None
    boundary_rtol: float = BOUNDARY_RTOL

    def __post_init__(self) -> None:
        if self.clip is not None and not isinstance(self.clip, (FixedClip, AdaptiveClip)):
            raise ConfigError(f"clip must be FixedClip or AdaptiveClip, got {type(self.clip).__name__}")
        if self.noise is not None:
            if self.clip is None:
                raise ConfigError("DP noise needs clipping (noise is calibrated to the clip norm C): set clip.norm")
            if not isinstance(self.combiner, WeightedMean):
                raise ConfigError("DP noise works only with the (uniform) mean: a median or trimmed mean has a "
                                  "different sensitivity. Set robust to null or noise_multiplier to 0")
            # Validate the noise split now, not at the first round.
            self.noise.value_multiplier(self.adaptive)
        if self.budget is not None and self.noise is None:
            raise ConfigError("an epsilon budget needs DP noise (noise_multiplier > 0)")
        if not 0 <= self.boundary_rtol < 1:
            raise ConfigError(f"boundary_rtol must be in [0, 1), got {self.boundary_rtol}")

    # ------------------------------------------------------------------ properties
    @property
    def adaptive(self) -> bool:
        return isinstance(self.clip, AdaptiveClip)

    @property
    def dp(self) -> bool:
        return self.noise is not None

    def initialize(self) -> AggregatorState:
        """Fresh state for a model that has never been aggregated."""
        return AggregatorState(0, None if self.clip is None else self.clip.initialize(), PrivacyLedger())

    def clip_norm(self, state: AggregatorState) -> float | None:
        """The clip norm C to hand to devices in this round's task (None: no clipping)."""
        return self.state_for_round(state).clip_norm

    def state_for_round(self, state: AggregatorState) -> AggregatorState:
        """``state`` as the next round uses it: a configured clip norm initialised, a changed fixed norm applied."""
        if self.clip is not None and state.clip is None:
            return replace(state, clip=self.clip.initialize())
        if isinstance(self.clip, FixedClip) and state.clip is not None and state.clip.norm != self.clip.norm:
            # An admin changed the fixed norm: the configuration wins.
            return replace(state, clip=self.clip.initialize())
        return state

    def check_budget(self, state: AggregatorState) -> float | None:
        """Epsilon after one more round, or None without a budget; raises PrivacyBudgetExceeded if over."""
        if self.budget is None or self.noise is None:
            return None
        return self.budget.check(state.privacy, self.noise.noise_multiplier, self.noise.sampling_rate)

    # ------------------------------------------------------------------ round
    def start(self, state: AggregatorState, num_params: int) -> Accumulator:
        """Open a round: an empty accumulator bound to this state's clip norm and weighting."""
        self.check_budget(state)
        state = self.state_for_round(state)
        comb = self.combiner
        return Accumulator(
            round_index=state.round, num_params=num_params, clip_norm=state.clip_norm,
            uniform=self.dp or (isinstance(comb, WeightedMean) and comb.uniform),
            max_weight=comb.max_weight if isinstance(comb, WeightedMean) else None,
            boundary_rtol=self.boundary_rtol,
            capacity=None if isinstance(comb, WeightedMean) else comb.capacity)

    def finish(self, state: AggregatorState, acc: Accumulator, rng: np.random.Generator | None = None) -> AggregateResult:
        """Close a round: combine, add noise (DP), update C, record the privacy event.

        ``rng`` is required with DP (the caller seeds it per round, so a
        recovered round re-publishes the same bits).  Raises :class:`EmptyRound`
        when nothing was added and :class:`StateError` when ``acc`` was opened
        for another round or clip norm.  Equals :meth:`release` followed by
        :meth:`next_clip` on the release's bit sum (what a partitioned
        aggregation does with the sum over its cells).
        """
        state = self.state_for_round(state)
        rel = self.release(state, acc, rng)
        clip_state = self.next_clip(state, rel.bit_sum, rel.contributors)
        metrics = dict(rel.metrics)
        metrics["next_clip_norm"] = None if clip_state is None else clip_state.norm
        return AggregateResult(rel.delta, AggregatorState(state.round + 1, clip_state, rel.privacy), metrics)

    def release(self, state: AggregatorState, acc: Accumulator, rng: np.random.Generator | None = None) -> Release:
        """The round's aggregate as it may leave the accumulator: noised (DP), with its privacy event recorded.

        Does not advance the clip norm (see :meth:`next_clip`): a partitioned
        aggregation releases several accumulators and advances C once, from the
        sum of their noised bit counts.
        """
        state = self.state_for_round(state)
        if acc.round_index != state.round or acc.clip_norm != state.clip_norm:
            raise StateError(f"accumulator was opened for round {acc.round_index} with clip norm {acc.clip_norm}, "
                             f"but the state is at round {state.round} with clip norm {state.clip_norm}")
        if acc.count == 0:
            raise EmptyRound(f"round {state.round} received no updates; abandon it instead of publishing")
        metrics: dict[str, Any] = {"round": state.round, "contributors": acc.count, "dp": self.dp,
                                   "clip_norm": state.clip_norm, "max_norm": acc.max_norm,
                                   "claim_mismatches": acc.mismatches}
        if self.noise is not None:
            if rng is None:
                raise ConfigError("finish() with DP noise needs rng=np.random.Generator (seed it per round)")
            eps_next = self.check_budget(state)
            delta, bit_sum = self._finish_dp(state, acc, rng, metrics)
            ledger = state.privacy.record(self.noise.noise_multiplier, self.noise.sampling_rate)
            if eps_next is not None:
                metrics["epsilon"] = eps_next
        else:
            delta = self._combine(acc)
            bit_sum = float(acc.unclipped)
            ledger = state.privacy
            metrics["total_weight"] = acc.total_weight
            if self.clip is not None:
                metrics["unclipped_fraction"] = acc.unclipped / acc.count
                metrics["clipped"] = acc.count - acc.unclipped
        return Release(delta, ledger, acc.count, acc.total_weight, bit_sum, metrics)

    def unclipped_mean(self, bit_sum: float, contributors: int) -> float:
        """The mean bit b-bar adaptive clipping needs, from a (sum of) :attr:`Release.bit_sum`.

        With DP the sum is of shifted, noised bits (sum_i (b_i - 1/2) + noise), so
        b-bar = sum / expected_clients + 1/2 (not clamped; the estimator clamps);
        without DP it is the plain count over the contributors.
        """
        if self.noise is not None:
            return bit_sum / self.noise.expected_clients + 0.5
        return bit_sum / contributors

    def next_clip(self, state: AggregatorState, bit_sum: float, contributors: int) -> ClipState | None:
        """The clip state of the next round, given this round's noised bit sum over ``contributors`` updates."""
        state = self.state_for_round(state)
        if self.clip is None or state.clip is None:
            return state.clip
        return self.clip.next(state.clip, self.unclipped_mean(bit_sum, contributors))

    def _combine(self, acc: Accumulator) -> np.ndarray:
        comb = self.combiner
        if isinstance(comb, CoordinateMedian):
            return coordinate_median(acc.buffer)
        if isinstance(comb, TrimmedMean):
            return trimmed_mean(acc.buffer, comb.trim_fraction)
        assert acc.sum is not None
        return (acc.sum / acc.total_weight).astype(np.float32)

    def _finish_dp(self, state: AggregatorState, acc: Accumulator, rng: np.random.Generator,
                   metrics: dict[str, Any]) -> tuple[np.ndarray, float]:
        noise = self.noise
        assert noise is not None and acc.sum is not None and state.clip is not None
        z_v = noise.value_multiplier(self.adaptive)
        sigma = z_v * state.clip.norm
        delta = noised_mean(acc.sum, sigma, noise.expected_clients, rng)
        sigma_b = noise.bit_noise_stddev(self.adaptive)
        shifted = math.nan
        if self.adaptive:
            shifted = acc.unclipped - acc.count / 2.0
            if sigma_b > 0:
                shifted += float(rng.normal(0.0, sigma_b))
            metrics["unclipped_fraction_noised"] = min(1.0, max(0.0, self.unclipped_mean(shifted, acc.count)))
        metrics.update(noise_multiplier=noise.noise_multiplier, value_noise_multiplier=z_v, noise_stddev=sigma,
                       bit_noise_stddev=sigma_b, denominator=noise.expected_clients,
                       unclipped_fraction=acc.unclipped / acc.count, clipped=acc.count - acc.unclipped)
        return delta, shifted
