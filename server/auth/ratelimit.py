"""Rate limits that hold across server processes, on the maintained ``limits`` library.

Why ``limits`` (the engine under Flask-Limiter) rather than a bucket in each
process's memory: ``fedmark server`` runs several worker processes, and a
limit each process enforces on its own share of the traffic is no limit.  The
counters live in a shared store named by a URI: ``memory://`` (one process:
tests, ``--dev``, a single worker) or ``redis://host:port`` (every worker, and
every server behind one load balancer, sees the same counts).

Why not Flask-Limiter's decorators: the keys are decided after
authentication (the device a token belongs to, the app key inside an
enrolment body, the address a failed login came from), so the views ask
:meth:`RateLimits.take` at the point where the key is known.

Each scope is a moving window: ``burst`` requests within ``burst / rate``
seconds.  That allows the short burst of an app waking up (task, manifest,
upload) and caps the sustained rate; a refusal carries the exact wait until
the oldest request leaves the window, sent as ``Retry-After``.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Mapping

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

__all__ = ["Limit", "RateLimits", "SCOPES"]

#: The scopes every server enforces (see docs/GOVERNANCE.md, threat model).
SCOPES = ("device", "enrol_app_key", "enrol_address", "auth_failure")


@dataclass(frozen=True)
class Limit:
    """``burst`` requests per ``burst / rate`` seconds (``rate`` per second sustained)."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.burst >= 1 and math.isfinite(self.rate)):
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1, got rate={self.rate} burst={self.burst}")

    def item(self) -> RateLimitItem:
        return RateLimitItemPerSecond(int(self.burst), max(1, math.ceil(self.burst / self.rate)))


class RateLimits:
    """One moving-window limiter per scope over one shared ``limits`` storage."""

    def __init__(self, limits: Mapping[str, Limit], storage_uri: str = "memory://", key_prefix: str = "fedmark") -> None:
        unknown = set(limits) - set(SCOPES)
        if unknown:
            raise ValueError(f"unknown rate-limit scope(s) {sorted(unknown)}; known: {list(SCOPES)}")
        self.storage_uri = storage_uri
        options = {"key_prefix": key_prefix} if storage_uri.startswith(("redis", "valkey")) else {}
        self._storage: Storage = storage_from_string(storage_uri, **options)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._items = {scope: lim.item() for scope, lim in limits.items()}
        self._lock = threading.Lock()  # the memory storage is shared by this process's request threads

    @property
    def shared(self) -> bool:
        """True when the counts are shared between processes (not ``memory://``)."""
        return not self.storage_uri.startswith("memory")

    def take(self, scope: str, key: str) -> float:
        """Count one request of ``key`` in ``scope``: 0.0 if allowed, else the seconds to wait."""
        return self._wait(scope, key, count=True)

    def blocked(self, scope: str, key: str) -> float:
        """Like :meth:`take` but counts nothing: the wait if ``key`` is already over its limit, else 0.0."""
        return self._wait(scope, key, count=False)

    def _wait(self, scope: str, key: str, *, count: bool) -> float:
        item = self._items.get(scope)
        if item is None:
            return 0.0
        with self._lock:
            allowed = self._limiter.hit(item, scope, key) if count else self._limiter.test(item, scope, key)
            if allowed:
                return 0.0
            reset = self._limiter.get_window_stats(item, scope, key).reset_time
        return max(0.001, reset - time.time())

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> "RateLimits":
        """The scopes from the server config (``RATE_LIMIT_*``, ``ENROL_*``, ``AUTH_FAILURE_*``)."""
        def lim(prefix: str) -> Limit:
            return Limit(float(config[f"{prefix}_PER_S"]), int(config[f"{prefix}_BURST"]))  # type: ignore[arg-type]

        return cls({"device": lim("RATE_LIMIT"), "enrol_address": lim("ENROL_ADDRESS_LIMIT"),
                    "enrol_app_key": lim("ENROL_APP_KEY_LIMIT"), "auth_failure": lim("AUTH_FAILURE_LIMIT")},
                   str(config.get("RATE_LIMIT_STORAGE") or "memory://"),
                   str(config.get("RATE_LIMIT_KEY_PREFIX") or "fedmark"))

    def reset(self) -> None:
        """Forget every count (tests; an operator after an incident)."""
        self._storage.reset()
