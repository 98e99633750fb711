"""A short-lived, in-process memory of verified tokens.

Why: every device request authenticates, and the token lookup (a read
transaction with a three-table join) was about a tenth of an upload's server
CPU.  A device sends its task request and its upload within seconds, so the
row verified for the first serves the second.

What it changes in the access decision: nothing is decided from the cache
that the database would decide differently, except for ``ttl_s`` seconds
after a revocation or a consent withdrawal made *by another process*; this
process forgets everything it cached as soon as it commits such a change
(:func:`forget_all`, called by the admin, enrolment and refresh routes).
Expiry is re-checked on every request from the cached expiry time.  Only
valid tokens are cached: an unknown token always reaches the database (and
the failed-authentication limit).  ``AUTH_CACHE_S = 0`` turns it off.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

__all__ = ["TokenCache"]


class TokenCache:
    """Verified token rows by token hash, each kept ``ttl_s`` seconds (monotonic clock), at most ``max_entries``."""

    def __init__(self, ttl_s: float, max_entries: int = 100_000) -> None:
        self.ttl_s = float(ttl_s)
        self.max_entries = int(max_entries)
        self._rows: "OrderedDict[str, tuple[float, Any]]" = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def get(self, token_hash: str) -> Any | None:
        """The cached row of ``token_hash`` if it was verified less than ``ttl_s`` ago."""
        if not self.enabled:
            return None
        with self._lock:
            hit = self._rows.get(token_hash)
            if hit is None:
                return None
            if time.monotonic() - hit[0] >= self.ttl_s:
                del self._rows[token_hash]
                return None
            return hit[1]

    def put(self, token_hash: str, row: Any) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._rows[token_hash] = (time.monotonic(), row)
            self._rows.move_to_end(token_hash)
            while len(self._rows) > self.max_entries:
                self._rows.popitem(last=False)

    def forget_all(self) -> None:
        """Drop everything (this process just committed a revocation, a withdrawal or a new token)."""
        with self._lock:
            self._rows.clear()
