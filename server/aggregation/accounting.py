"""Privacy accounting: the ledger of DP events that lives in aggregation state.

Why in state: epsilon must be a function of what was actually released, read
from the same record the server persists between rounds, not reconstructed
from logs that may be incomplete.  Every DP round appends one event, a
Poisson-subsampled Gaussian mechanism (sampling rate q, total noise multiplier
z); consecutive identical rounds are run-length encoded, so the ledger stays
tiny after thousands of rounds.

Epsilon is computed with dp-accounting's RDP accountant
(``dp_accounting.rdp.RdpAccountant``): the RDP curve of one round,
``PoissonSampledDpEvent(q, GaussianDpEvent(z))`` (a plain Gaussian when q = 1),
is computed once per distinct (z, q) and composed additively ``count`` times,
which is what ``SelfComposedDpEvent`` does inside the accountant; the sum is
converted with dp-accounting's ``compute_epsilon``.  The tests check equality
with the accountant called directly.
Note: q is the configured per-client participation probability; the guarantee
is only as good as that assumption (uniform sampling of the population).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, PrivacyBudgetExceeded, StateError


@dataclass(frozen=True)
class PrivacyEvent:
    """``count`` rounds of a Gaussian mechanism with ``noise_multiplier`` under Poisson sampling ``sampling_rate``."""

    noise_multiplier: float
    sampling_rate: float
    count: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"z": self.noise_multiplier, "q": self.sampling_rate, "n": self.count}

    @staticmethod
    def from_json(d: Any) -> "PrivacyEvent":
        try:
            ev = PrivacyEvent(float(d["z"]), float(d["q"]), int(d["n"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"bad privacy event {d!r}: needs z, q, n") from exc
        if ev.noise_multiplier < 0 or not 0 < ev.sampling_rate <= 1 or ev.count < 1:
            raise StateError(f"bad privacy event {d!r}: z >= 0, 0 < q <= 1, n >= 1 required")
        return ev


def _dp_event(events: tuple[PrivacyEvent, ...]) -> Any:
    import dp_accounting  # imported lazily: only accounting needs it, and it pulls scipy

    parts = []
    for ev in events:
        one: Any = dp_accounting.GaussianDpEvent(ev.noise_multiplier)
        if ev.sampling_rate < 1:
            one = dp_accounting.PoissonSampledDpEvent(ev.sampling_rate, one)
        parts.append(dp_accounting.SelfComposedDpEvent(one, ev.count))
    return dp_accounting.ComposedDpEvent(parts)


def epsilon_for(events: tuple[PrivacyEvent, ...] | list[PrivacyEvent], delta: float) -> float:
    """Epsilon at ``delta`` after all ``events`` (0 for none; inf if any has z = 0)."""
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    return _epsilon_cached(tuple(events), float(delta))


@functools.lru_cache(maxsize=256)
def _rdp_one_round(noise_multiplier: float, sampling_rate: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(orders, RDP curve) of one round, from dp-accounting's RdpAccountant.

    Why cached per mechanism: RDP composes additively, so a ledger's curve is
    sum(count_i x curve_i); the expensive part (tens to hundreds of ms for a
    subsampled Gaussian) is then paid once per distinct (z, q), not per round.
    """
    from dp_accounting.rdp import RdpAccountant

    acc = RdpAccountant()
    acc.compose(_dp_event((PrivacyEvent(noise_multiplier, sampling_rate, 1),)))
    return tuple(acc.orders.tolist()), tuple(acc.rdp.tolist())


@functools.lru_cache(maxsize=512)
def _epsilon_cached(events: tuple[PrivacyEvent, ...], delta: float) -> float:
    if not events:
        return 0.0
    if any(ev.noise_multiplier == 0 for ev in events):
        return math.inf
    import numpy as np
    from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

    orders: tuple[float, ...] = ()
    total = None
    for ev in events:
        orders, curve = _rdp_one_round(ev.noise_multiplier, ev.sampling_rate)
        part = ev.count * np.asarray(curve)
        total = part if total is None else total + part
    return float(compute_epsilon(np.asarray(orders), total, delta)[0])


@dataclass(frozen=True)
class PrivacyLedger:
    """Run-length-encoded list of DP events released so far (immutable; ``record`` returns a new one)."""

    events: tuple[PrivacyEvent, ...] = field(default_factory=tuple)

    @property
    def rounds(self) -> int:
        return sum(ev.count for ev in self.events)

    def record(self, noise_multiplier: float, sampling_rate: float, count: int = 1) -> "PrivacyLedger":
        new = PrivacyEvent(float(noise_multiplier), float(sampling_rate), count)
        if self.events:
            last = self.events[-1]
            if (last.noise_multiplier, last.sampling_rate) == (new.noise_multiplier, new.sampling_rate):
                merged = PrivacyEvent(last.noise_multiplier, last.sampling_rate, last.count + count)
                return PrivacyLedger(self.events[:-1] + (merged,))
        return PrivacyLedger(self.events + (new,))

    def epsilon(self, delta: float) -> float:
        """Epsilon at ``delta`` spent so far."""
        return epsilon_for(self.events, delta)

    def to_json(self) -> list[dict[str, Any]]:
        return [ev.to_json() for ev in self.events]

    @staticmethod
    def from_json(d: Any) -> "PrivacyLedger":
        if not isinstance(d, list):
            raise StateError(f"privacy ledger must be a list of events, got {type(d).__name__}")
        return PrivacyLedger(tuple(PrivacyEvent.from_json(e) for e in d))


@dataclass(frozen=True)
class PrivacyBudget:
    """A configured (epsilon, delta) budget; ``check`` raises before a round that would exceed it."""

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        if not (self.epsilon > 0):
            raise ConfigError(f"epsilon_budget must be > 0, got {self.epsilon}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"delta must be in (0, 1), got {self.delta}")

    def check(self, ledger: PrivacyLedger, noise_multiplier: float, sampling_rate: float) -> float:
        """Return epsilon after one more round; raise :class:`PrivacyBudgetExceeded` if it is over budget."""
        now = ledger.epsilon(self.delta)
        nxt = ledger.record(noise_multiplier, sampling_rate).epsilon(self.delta)
        if nxt > self.epsilon:
            raise PrivacyBudgetExceeded(
                f"privacy budget exhausted: after {ledger.rounds} DP round(s) epsilon={now:.4g} at delta={self.delta:g}; "
                f"one more round (z={noise_multiplier:g}, q={sampling_rate:g}) would reach epsilon={nxt:.4g} > "
                f"budget {self.epsilon:g}. Stop training this model, raise epsilon_budget, or increase "
                f"noise_multiplier / lower sampling_rate.",
                epsilon_now=now, epsilon_next=nxt, budget=self.epsilon, delta=self.delta)
        return nxt


def check_budget(ledger: PrivacyLedger, noise_multiplier: float, sampling_rate: float,
                 epsilon_budget: float, delta: float) -> float:
    """Functional form of :meth:`PrivacyBudget.check`."""
    return PrivacyBudget(epsilon_budget, delta).check(ledger, noise_multiplier, sampling_rate)
