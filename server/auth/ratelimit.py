"""Per-device token bucket.

Why a token bucket: it allows a short burst (an app waking up, fetching a
task, a manifest and uploading) while capping the sustained rate, and the
answer to a refused request is exact: the time until one token refills, sent
as ``Retry-After``.  The buckets live in this process's memory; with several
server processes each enforces the limit on its own share of the traffic.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from server.clock import Clock


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBucketLimiter:
    """``rate`` tokens per second, at most ``burst`` stored; one request costs one token."""

    def __init__(self, rate: float, burst: int, clock: Clock, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate limit needs rate > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token for ``key``; returns 0.0 if allowed, else the seconds to wait."""
        now = self.clock.now()
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self.max_keys:
                    self._evict(now)
                b = self._buckets[key] = _Bucket(self.burst, now)
            b.tokens = min(self.burst, b.tokens + max(0.0, now - b.stamp) * self.rate)
            b.stamp = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0.0
            return (1.0 - b.tokens) / self.rate

    def _evict(self, now: float) -> None:
        # Buckets that would be full again carry no information: drop them.
        full_after = self.burst / self.rate
        for k in [k for k, b in self._buckets.items() if now - b.stamp >= full_after]:
            del self._buckets[k]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()
