"""One exception hierarchy for the aggregation package.

Why a hierarchy: the round loop (and the HTTP layer above it) must tell apart
"this client's update is bad" (reject one update), "the configuration is wrong"
(refuse the admin's PUT) and "the privacy budget is spent" (stop training).
All are ``ValueError`` subclasses so generic callers still catch them.
"""
from __future__ import annotations


class AggregationError(ValueError):
    """Base class for every error raised by ``server.aggregation``."""


class ConfigError(AggregationError):
    """A training / aggregation configuration is invalid; the message says which key and how to fix it."""


class UpdateRejected(AggregationError):
    """One client update cannot be folded in (wrong length, NaN, bad weight)."""


class StateError(AggregationError):
    """A persisted state or accumulator is corrupt or does not belong to this aggregator / round."""


class EmptyRound(AggregationError):
    """``finish`` was called on a round that received no contributions."""


class BufferFull(AggregationError):
    """A robust (median / trimmed-mean) round already holds its bounded number of updates."""


class PrivacyBudgetExceeded(AggregationError):
    """One more DP round would push epsilon past the configured budget."""

    def __init__(self, message: str, *, epsilon_now: float, epsilon_next: float, budget: float, delta: float):
        super().__init__(message)
        self.epsilon_now = epsilon_now
        self.epsilon_next = epsilon_next
        self.budget = budget
        self.delta = delta
