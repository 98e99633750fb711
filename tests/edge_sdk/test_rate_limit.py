"""Against a real server with a tight per-device rate limit: the SDK waits out 429 + Retry-After and succeeds."""
from __future__ import annotations

from typing import Iterator

import pytest

from edge_sdk import Client, DeviceConditions, RetryPolicy, TransportError


@pytest.fixture(scope="module")
def fedmark_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """This module's server allows a device 2 requests per second with a burst of 2."""
    from server.testing import running_server

    env = {"FEDMARK_RATE_LIMIT_PER_S": "2", "FEDMARK_RATE_LIMIT_BURST": "2"}
    with running_server(tmp_path_factory.mktemp("server-rl"), extra_env=env) as srv:
        yield srv.base_url, srv.admin_token


def test_training_succeeds_through_rate_limiting(admin, artifacts, proxy, tmp_path, bank_rows):
    admin.publish("p-rl", artifacts.propensity)
    admin.training("p-rl", goal=3)
    c = Client(proxy.url, app_key=admin.app_key(), device_id="rl-a", region="eu", storage_dir=tmp_path / "d",
               retry=RetryPolicy(max_retries=6, base_backoff=0.05))
    rows = [{**r, "consent": "propensity_scoring"} for r in bank_rows[:100]]
    rep = c.train("p-rl", rows, conditions=DeviceConditions(battery=1.0), seed=0)
    assert rep.status == "accepted" and admin.round(rep.round_id)["accepted"] == 1
    limited = [i for i, entry in enumerate(proxy.log) if entry[2] == 429]
    assert limited, "the server never rate-limited the device: the test did not exercise retries"
    for i in limited:
        t, what, _, retry_after = proxy.log[i]
        assert retry_after is not None
        nxt = next(e for e in proxy.log[i + 1:] if e[1] == what)  # the retry of the same request
        assert nxt[0] - t >= float(retry_after) - 0.05, f"{what} was retried before Retry-After"


def test_exhausted_retries_raise_a_transport_error_with_the_hint(admin, artifacts, proxy, tmp_path):
    admin.publish("p-rl2", artifacts.propensity)
    c = Client(proxy.url, app_key=admin.app_key(), device_id="rl-b", region="eu", storage_dir=tmp_path / "d",
               retry=RetryPolicy(max_retries=0))
    c.enroll()
    with pytest.raises(TransportError) as ei:
        for _ in range(6):
            c.current_version("p-rl2")
    assert ei.value.retry_after is not None and ei.value.retry_after > 0
    assert "rate_limited" in str(ei.value)
