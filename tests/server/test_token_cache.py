"""The in-process memory of verified tokens: bounded in time and size, forgotten on demand."""
from __future__ import annotations

import time

from server.auth.cache import TokenCache


def test_rows_expire_after_ttl_and_forget_all_drops_everything():
    c = TokenCache(0.2)
    c.put("h1", "row1")
    assert c.get("h1") == "row1" and c.get("nope") is None
    time.sleep(0.25)
    assert c.get("h1") is None  # past its ttl: the next request looks the token up again
    c.put("h2", "row2")
    c.forget_all()
    assert c.get("h2") is None


def test_size_is_bounded_oldest_first_and_zero_ttl_disables():
    c = TokenCache(60, max_entries=3)
    for i in range(5):
        c.put(f"h{i}", i)
    assert [c.get(f"h{i}") for i in range(5)] == [None, None, 2, 3, 4]
    off = TokenCache(0)
    off.put("h", "row")
    assert not off.enabled and off.get("h") is None
