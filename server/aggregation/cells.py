"""Per-cell aggregation: one inner :class:`Aggregator` release per disjoint cell, combined into one round.

Why a wrapper (the way TFF wraps an inner aggregation factory): the maths of a
cell is exactly the flat aggregation (clip, sum, noise, fixed denominator); what
partitioning adds is *where the state lives* and *how releases combine*:

* **state**: the clip norm and round counter are the model's (one C for every
  cell); the privacy ledger is the cell's own (``ledger`` passed to
  :meth:`PartitionedAggregator.start` / :meth:`~PartitionedAggregator.release`),
  because a device's data reaches exactly one cell (parallel composition).
* **combining**: with DP every release shares the fixed denominator, so the
  global delta is the *sum* of the cell releases; without DP it is the mean of
  the cell means weighted by the cells' total weights (= the flat weighted
  mean).  The next C comes from the sum of the cells' raw noised bit sums
  (:attr:`~server.aggregation.aggregator.Release.bit_sum`), and the model-level
  ledger becomes the worst cell's, so ``epsilon = max over cells``.

The flat (unpartitioned) aggregation is the one-cell case: ``key=None`` and the
model's own ledger.  Its result is bit-identical to :meth:`Aggregator.finish`
(a sum of one float32 delta, a weight ratio of exactly 1) and carries the inner
aggregator's own metrics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from .accounting import PrivacyLedger
from .accumulator import Accumulator
from .aggregator import AggregateResult, Aggregator, AggregatorState

__all__ = ["CellRelease", "PartitionedAggregator"]


@dataclass(frozen=True)
class CellRelease:
    """One cell's release: ``key`` None is the single cell of an unpartitioned (flat) aggregation."""

    key: str | None
    delta: np.ndarray
    privacy: PrivacyLedger   # the cell's ledger after this release
    contributors: int
    weight: float
    bit_sum: float           # raw noised bit sum (see Release.bit_sum), never a clamped fraction
    metrics: dict[str, Any]


@dataclass(frozen=True)
class PartitionedAggregator:
    """An inner aggregator applied per cell, with explicit per-cell privacy state."""

    inner: Aggregator

    @property
    def dp(self) -> bool:
        return self.inner.dp

    def cell_state(self, state: AggregatorState, ledger: PrivacyLedger) -> AggregatorState:
        """The inner state of one cell: the model's round and clip norm, the cell's ledger."""
        prepared = self.inner.state_for_round(state)
        return AggregatorState(prepared.round, prepared.clip, ledger)

    def start(self, state: AggregatorState, ledger: PrivacyLedger, num_params: int) -> Accumulator:
        """Open one cell's accumulator; raises PrivacyBudgetExceeded if the *cell's* ledger is spent."""
        return self.inner.start(self.cell_state(state, ledger), num_params)

    def release(self, state: AggregatorState, ledger: PrivacyLedger, key: str | None, acc: Accumulator,
                rng: np.random.Generator | None) -> CellRelease:
        """Release one cell: its noised aggregate, recorded in (only) its ledger."""
        rel = self.inner.release(self.cell_state(state, ledger), acc, rng)
        return CellRelease(key, rel.delta, rel.privacy, rel.contributors,
                           rel.weight if not self.dp else float(rel.contributors), rel.bit_sum, rel.metrics)

    def combine_deltas(self, releases: Iterable[CellRelease], num_params: int) -> np.ndarray:
        """The global delta of these releases (also used for leave-one-partner-out variants)."""
        releases = list(releases)
        out = np.zeros(num_params, np.float64)
        if self.dp:  # releases share the fixed denominator: the global DP mean is their sum
            for r in releases:
                out += r.delta
            return out.astype(np.float32)
        total = sum(r.weight for r in releases)
        for r in releases:
            out += (r.weight / total) * r.delta.astype(np.float64)
        return out.astype(np.float32)

    def combine(self, state: AggregatorState, releases: list[CellRelease], ledgers: Mapping[str | None, PrivacyLedger],
                delta: float, num_params: int) -> tuple[AggregateResult, float | None]:
        """Combine the releases of one fold into the global delta and the model's next state.

        ``ledgers``: every cell ledger of the model *after* this fold (cells not
        released this time included), so the model-level ledger is the worst
        cell's.  Returns (result, epsilon of that ledger at ``delta``; None without DP).
        """
        if not releases:
            raise ValueError("combine() needs at least one release")
        prepared = self.inner.state_for_round(state)
        global_delta = self.combine_deltas(releases, num_params)
        contributors = sum(r.contributors for r in releases)
        clip_state = self.inner.next_clip(prepared, sum(r.bit_sum for r in releases), contributors)
        worst, epsilon = prepared.privacy, None
        if self.dp:
            eps = {k: led.epsilon(delta) for k, led in ledgers.items()}
            worst_key = max(eps, key=lambda k: (eps[k], k or ""))
            worst, epsilon = ledgers[worst_key], eps[worst_key]
        next_state = AggregatorState(prepared.round + 1, clip_state, worst)
        if len(releases) == 1 and releases[0].key is None:  # flat: the inner aggregator's own metrics
            metrics = dict(releases[0].metrics)
            metrics["next_clip_norm"] = None if clip_state is None else clip_state.norm
            return AggregateResult(global_delta, next_state, metrics), epsilon
        first = releases[0].metrics
        metrics = {"hierarchical": True, "dp": self.dp, "contributors": contributors,
                   "clip_norm": prepared.clip_norm, "next_clip_norm": None if clip_state is None else clip_state.norm,
                   "round": prepared.round, "delta_norm": float(np.linalg.norm(global_delta.astype(np.float64)))}
        for key in ("noise_multiplier", "value_noise_multiplier", "noise_stddev", "denominator"):
            if key in first:
                metrics[key] = first[key]
        if self.dp:
            metrics["cell_noise_stddev_total"] = float(first.get("noise_stddev", 0.0)) * math.sqrt(len(releases))
        else:
            metrics["total_weight"] = sum(r.weight for r in releases)
        return AggregateResult(global_delta, next_state, metrics), epsilon
