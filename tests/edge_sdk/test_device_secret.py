"""The SDK's device secret against a real server (issue 18, points 1 and 10).

The device makes its secret at first enrolment, keeps it beside its token
(0600, kept when a refused token is dropped) and sends it on every enrolment:
a lost token, a revoked one or an expired one (401 ``token_expired``) is
replaced by enrolling again, while the same device id from another storage
(another secret) is refused.
"""
from __future__ import annotations

import json
import stat
import time
from typing import Iterator

import pytest
import requests

from edge_sdk import AuthenticationError, Client

TTL_S = 2.0


@pytest.fixture(scope="module")
def fedmark_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """This module's server issues device tokens that live TTL_S seconds."""
    from server.testing import running_server

    env = {"FEDMARK_DEVICE_TOKEN_TTL_S": str(TTL_S)}
    with running_server(tmp_path_factory.mktemp("server-ttl"), extra_env=env) as srv:
        yield srv.base_url, srv.admin_token


def test_the_device_secret_is_kept_and_proves_the_device(fedmark_server, admin, tmp_path):
    url = fedmark_server[0]
    key = admin.app_key("eu")
    c = Client(url, app_key=key, device_id="sec-1", region="eu", storage_dir=tmp_path / "d")
    first = c.enroll()
    path = tmp_path / "d" / "device_secret.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (entry,) = json.loads(path.read_text()).values()
    assert len(entry["device_secret"]) >= 43 and entry["registered"] is True

    # an attacker with the app key and the id gets nothing
    r = requests.post(url + "/v1/devices/enroll", json={"app_key": key, "device_id": "sec-1", "region": "eu"},
                      timeout=30)
    assert r.status_code == 409 and r.json()["error"]["code"] == "device_proof_required"
    other = Client(url, app_key=key, device_id="sec-1", region="eu", storage_dir=tmp_path / "elsewhere")
    with pytest.raises(AuthenticationError) as ei:
        other.enroll()
    assert ei.value.code == "device_proof_required" and "admin reset" in str(ei.value)

    # the app lost its token but not its storage: a restarted client enrols again with the same secret
    (tmp_path / "d" / "device.json").unlink()
    again = Client(url, app_key=key, device_id="sec-1", region="eu", storage_dir=tmp_path / "d")
    token = again.credentials.token()  # no stored token: enrols, with the stored secret
    assert token != first
    assert requests.get(url + "/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 200


def test_an_expired_token_is_replaced_by_enrolling_with_the_secret(fedmark_server, admin, tmp_path, artifacts):
    admin.publish("p-ttl", artifacts.propensity)
    c = Client(fedmark_server[0], app_key=admin.app_key("eu"), device_id="ttl-1", region="eu",
               storage_dir=tmp_path / "d")
    assert c.current_version("p-ttl") == 1
    old = c.credentials.token()
    time.sleep(TTL_S + 0.5)
    r = requests.get(fedmark_server[0] + "/v1/models/p-ttl", headers={"Authorization": f"Bearer {old}"}, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_expired"
    assert c.current_version("p-ttl") == 1  # the SDK enrolled again with its secret and retried
    assert c.credentials.token() != old


def test_a_region_the_app_key_was_not_issued_for_is_refused(fedmark_server, admin, tmp_path):
    c = Client(fedmark_server[0], app_key=admin.app_key("eu"), device_id="reg-1", region="us",
               storage_dir=tmp_path / "d")
    with pytest.raises(AuthenticationError) as ei:
        c.enroll()
    assert ei.value.status == 403 and ei.value.code == "region_mismatch" and "'eu'" in str(ei.value)
