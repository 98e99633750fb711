"""An injectable time source.

Why: round deadlines and token buckets depend on time, and tests must not sleep
for them.  The app reads time only through ``Clock.now()`` (seconds since the
epoch, float); tests hand in a :class:`ManualClock` and move it forward.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to (thread-safe)."""

    def __init__(self, start: float | None = None) -> None:
        self._t = time.time() if start is None else float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._t += float(seconds)
            return self._t


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> RFC 3339 UTC string (``2026-11-29T21:00:00Z``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")
