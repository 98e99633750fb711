"""The HTTP transport over real loopback sockets: retries, backoff, Retry-After, timeouts, error conversion."""
from __future__ import annotations

import json
import random
import socket
import time

import pytest

from edge_sdk.config import RetryPolicy
from edge_sdk.errors import AuthenticationError, NoTaskError, ServerError, TransportError
from edge_sdk.transport import Transport, parse_retry_after


def _err(code: str, message: str = "m") -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def _transport(url: str, **retry: float) -> Transport:
    policy = RetryPolicy(**{"max_retries": 3, "base_backoff": 0.01, "max_backoff": 0.05, **retry})
    return Transport(url, timeout=2.0, retry=policy)


def test_503_with_retry_after_is_waited_out_then_succeeds(scripted_server):
    R = scripted_server.Reply
    answers = iter([R(503, _err("busy"), {"Retry-After": "1"}), R(200, b'{"ok": true}')])
    scripted_server.handler = lambda req: next(answers)
    t = _transport(scripted_server.url)
    resp = t.request("GET", "/v1/health")
    assert resp.json() == {"ok": True}
    gap = scripted_server.requests[1].at - scripted_server.requests[0].at
    assert len(scripted_server.requests) == 2
    assert gap >= 1.0, f"the retry came after {gap:.3f} s, before the server's Retry-After of 1 s"


def test_429_retries_are_bounded_and_carry_the_hint(scripted_server):
    R = scripted_server.Reply
    scripted_server.handler = lambda req: R(429, _err("rate_limited", "slow down"), {"Retry-After": "0"})
    t = _transport(scripted_server.url, max_retries=2)
    with pytest.raises(TransportError) as ei:
        t.request("POST", "/v1/tasks", json_body={"model": "m"})
    assert len(scripted_server.requests) == 3  # 1 + max_retries
    assert ei.value.retry_after == 0.0
    assert "429" in str(ei.value) and "rate_limited" in str(ei.value)


def test_retry_after_beyond_the_cap_is_not_waited(scripted_server):
    R = scripted_server.Reply
    scripted_server.handler = lambda req: R(503, _err("maintenance"), {"Retry-After": "3600"})
    t = _transport(scripted_server.url, max_retry_after=5)
    start = time.monotonic()
    with pytest.raises(TransportError) as ei:
        t.request("GET", "/x")
    assert time.monotonic() - start < 1.0
    assert len(scripted_server.requests) == 1
    assert ei.value.retry_after == 3600


def test_backoff_is_exponential_with_full_jitter(scripted_server):
    R = scripted_server.Reply
    scripted_server.handler = lambda req: R(503, _err("busy"))  # no Retry-After: client-chosen backoff
    delays: list[float] = []
    policy = RetryPolicy(max_retries=6, base_backoff=0.001, max_backoff=0.004)
    t = Transport(scripted_server.url, timeout=2.0, retry=policy, sleep=lambda d: delays.append(d),
                  rng=random.Random(7))
    with pytest.raises(TransportError):
        t.request("GET", "/x")
    assert len(delays) == 6
    caps = [min(0.004, 0.001 * 2 ** i) for i in range(6)]
    assert all(0 <= d <= c for d, c in zip(delays, caps)), (delays, caps)
    assert len(set(delays)) == len(delays), "jitter should make every delay different"


def test_client_errors_are_not_retried_and_keep_the_server_code(scripted_server):
    R = scripted_server.Reply
    scripted_server.handler = lambda req: R(409, _err("round_closed", "round r1 is closed"))
    t = _transport(scripted_server.url)
    with pytest.raises(ServerError) as ei:
        t.request("POST", "/v1/rounds/r1/updates", body=b"x")
    assert len(scripted_server.requests) == 1
    assert (ei.value.status, ei.value.code) == (409, "round_closed")
    assert "round r1 is closed" in str(ei.value)


def test_error_mapping_auth_and_no_task(scripted_server):
    R = scripted_server.Reply
    scripted_server.handler = lambda req: (R(401, _err("bad_token")) if req.path == "/a"
                                           else R(409, _err("no_task"), {"Retry-After": "30"}))
    t = _transport(scripted_server.url)
    with pytest.raises(AuthenticationError):
        t.request("GET", "/a")
    with pytest.raises(NoTaskError) as ei:
        t.request("POST", "/b")
    assert ei.value.retry_after == 30


def test_non_json_error_body_still_gives_a_clear_error(scripted_server):
    R = scripted_server.Reply
    scripted_server.handler = lambda req: R(500, b"<html>Internal Server Error</html>", {"Content-Type": "text/html"})
    with pytest.raises(ServerError) as ei:
        _transport(scripted_server.url).request("GET", "/x")
    assert ei.value.code == "http_500" and "Internal Server Error" in str(ei.value)


def test_304_is_an_answer(scripted_server):
    R = scripted_server.Reply
    scripted_server.handler = lambda req: R(304, b"", {"ETag": '"abc"'})
    resp = _transport(scripted_server.url).request("GET", "/m", headers={"If-None-Match": '"abc"'})
    assert resp.status == 304 and resp.header("etag") == '"abc"'
    assert scripted_server.requests[0].headers["if-none-match"] == '"abc"'


def test_read_timeout_is_always_on(scripted_server):
    R = scripted_server.Reply
    scripted_server.handler = lambda req: R(200, b"{}", delay=1.5)
    t = Transport(scripted_server.url, timeout=0.3, retry=RetryPolicy(max_retries=1, base_backoff=0.01))
    start = time.monotonic()
    with pytest.raises(TransportError) as ei:
        t.request("GET", "/slow")
    assert time.monotonic() - start < 1.4
    assert "no answer within 0.3 s" in str(ei.value)
    assert len(scripted_server.requests) == 2


def test_connection_refused_becomes_transport_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    t = _transport(f"http://127.0.0.1:{port}", max_retries=2)
    with pytest.raises(TransportError) as ei:
        t.request("GET", "/v1/health")
    assert "after 3 attempt(s)" in str(ei.value) and "ConnectionRefusedError" in str(ei.value)


def test_absolute_urls_must_stay_on_the_configured_server(scripted_server):
    t = _transport(scripted_server.url)
    with pytest.raises(TransportError, match="not on the configured server"):
        t.request("GET", "http://127.0.0.1:1/v1/health")
    resp = t.request("GET", scripted_server.url + "/v1/health?x=1")
    assert resp.status == 200 and scripted_server.requests[0].path == "/v1/health?x=1"


def test_parse_retry_after_forms():
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
