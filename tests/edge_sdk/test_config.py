"""Configuration is validated up front with messages that say how to fix it; errors map cleanly."""
from __future__ import annotations

import pytest

from edge_sdk import Client, ClientConfig, RetryPolicy
from edge_sdk.errors import (AuthenticationError, ConfigurationError, EdgeError, NoTaskError, RejectedUpdateError,
                             ServerError, error_from_response)

OK = dict(server_url="http://127.0.0.1:8000", device_id="dev-1", region="eu", app_key="ak_x")


def test_valid_config(tmp_path):
    cfg = ClientConfig(storage_dir=tmp_path / "s", **OK)
    assert cfg.base_url == "http://127.0.0.1:8000" and (tmp_path / "s").is_dir()


@pytest.mark.parametrize("change,message", [
    ({"server_url": "ftp://x"}, "not an http(s) URL"),
    ({"server_url": "http://fl.example.com"}, "use https"),
    ({"app_key": None}, "credentials missing"),
    ({"device_id": "has space"}, "device_id"),
    ({"region": ""}, "region"),
    ({"region": "eu:west"}, "region"),
    ({"device_id": "d" * 129}, "device_id"),
    ({"timeout": 0}, "timeouts are always on"),
    ({"threads": 0}, "threads"),
])
def test_bad_settings_are_named(tmp_path, change, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ClientConfig(storage_dir=tmp_path, **{**OK, **change})


def test_insecure_http_can_be_allowed_explicitly_and_https_is_fine(tmp_path):
    ClientConfig(storage_dir=tmp_path, **{**OK, "server_url": "http://10.0.0.5"}, allow_insecure_http=True)
    ClientConfig(storage_dir=tmp_path, **{**OK, "server_url": "https://fl.example.com", "app_key": None},
                 device_token="tok")


def test_unwritable_storage_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigurationError, match="storage_dir"):
        ClientConfig(storage_dir=f / "sub", **OK)


def test_retry_policy_validation():
    with pytest.raises(ConfigurationError):
        RetryPolicy(max_retries=-1)


def test_client_builds_with_keyword_settings(tmp_path):
    c = Client("http://127.0.0.1:9", device_id="d", region="eu", storage_dir=tmp_path, app_key="k")
    assert c.pending() == 0 and c.config.timeout == 10.0


def test_error_hierarchy_and_mapping():
    for cls in (ConfigurationError, ServerError, AuthenticationError, NoTaskError, RejectedUpdateError):
        assert issubclass(cls, EdgeError)
    assert isinstance(error_from_response(401, "bad_token", "x"), AuthenticationError)
    assert isinstance(error_from_response(409, "no_task", "x"), NoTaskError)
    e = error_from_response(409, "round_closed", "closed")
    assert type(e) is ServerError and e.code == "round_closed" and e.status == 409
    r = RejectedUpdateError(409, "stale_version", "old")
    assert r.code == "stale_version" and "stale_version" in str(r)
