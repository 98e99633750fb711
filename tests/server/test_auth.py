"""Enrolment, roles, hashed token storage, per-device rate limit."""
from __future__ import annotations

import secrets
import time


import requests
from sqlalchemy import create_engine, text


def test_enrolment_roles_and_reenrolment(live):
    app_key = live.admin("POST", "/v1/admin/app-keys", json={"partner": "acme", "region": "eu-west"}).json()["app_key"]
    secret = secrets.token_urlsafe(32)
    r = live.call("POST", "/v1/devices/enroll", json={"app_key": app_key, "device_id": "phone-1", "region": "eu-west",
                                                      "device_secret": secret})
    assert r.status_code == 201
    first = r.json()
    assert (first["device_id"], first["region"], first["partner"]) == ("phone-1", "eu-west", "acme")
    assert live.call("GET", "/v1/models", first["device_token"]).status_code == 200
    # device tokens cannot use admin endpoints
    r = live.call("POST", "/v1/admin/app-keys", first["device_token"], json={})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    # enrolling again with the same key: a fresh token, the old one revoked
    second = live.call("POST", "/v1/devices/enroll", json={"app_key": app_key, "device_id": "phone-1",
                                                           "region": "eu-west", "device_secret": secret}).json()
    assert second["device_token"] != first["device_token"]
    assert live.call("GET", "/v1/models", second["device_token"]).status_code == 200
    assert live.call("GET", "/v1/models", first["device_token"]).json()["error"]["code"] == "bad_token"
    # another partner's key cannot take the device over
    other = live.admin("POST", "/v1/admin/app-keys", json={"partner": "globex", "region": "eu"}).json()["app_key"]
    r = live.call("POST", "/v1/devices/enroll", json={"app_key": other, "device_id": "phone-1", "region": "eu"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "device_conflict"
    r = live.call("POST", "/v1/devices/enroll", json={"app_key": "ak_wrong", "device_id": "phone-2", "region": "eu"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "bad_app_key"
    r = live.call("POST", "/v1/devices/enroll", json={"app_key": app_key, "device_id": "../x", "region": "eu-west"})
    assert r.status_code == 400 and "device_id" in r.json()["error"]["message"]
    # marketer: read-only access, no tasks
    mt = live.admin("POST", "/v1/admin/tokens", json={"role": "marketer", "name": "ana"}).json()["token"]
    assert live.call("GET", "/v1/models", mt).status_code == 200
    assert live.call("POST", "/v1/tasks", mt, json={"model": "toy"}).status_code == 403
    assert live.call("PUT", "/v1/models/toy/training", mt, json={}).status_code == 403
    # no token on a protected endpoint, health and openapi open
    assert requests.get(live.url("/v1/models"), timeout=10).status_code == 401
    assert requests.get(live.url("/v1/openapi.json"), timeout=10).status_code == 200


def test_only_token_hashes_are_stored(live, db_url):
    app_key = live.admin("POST", "/v1/admin/app-keys", json={}).json()["app_key"]
    device_secret = secrets.token_urlsafe(32)
    dev = live.call("POST", "/v1/devices/enroll", json={"app_key": app_key, "device_id": "d",
                                                        "device_secret": device_secret}).json()["device_token"]
    mt = live.admin("POST", "/v1/admin/tokens", json={"role": "marketer", "name": "m"}).json()["token"]
    eng = create_engine(db_url)
    try:
        with eng.connect() as c:
            stored = [str(v) for row in c.execute(text("SELECT * FROM tokens UNION ALL SELECT id, key_hash, partner, "
                                                       "NULL, NULL, NULL, created_at, NULL FROM app_keys"))
                      for v in row]
            stored += [str(v) for row in c.execute(text("SELECT * FROM devices")) for v in row]
    finally:
        eng.dispose()
    blob = " ".join(stored)
    for secret in (app_key, dev, mt, live.admin_token, device_secret):
        assert secret not in blob


def test_rate_limit_per_device_answers_429_with_retry_after(make_live):
    # 3 requests per 2 s window (1.5/s sustained); the counters run on real time (the limits library's clock)
    with make_live(RATE_LIMIT_PER_S=1.5, RATE_LIMIT_BURST=3) as lv:
        a, b = lv.enroll("a"), lv.enroll("b")
        codes = [lv.call("GET", "/v1/models", a).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = lv.call("GET", "/v1/models", a)
        assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) == 2
        assert lv.call("GET", "/v1/models", b).status_code == 200  # per device
        time.sleep(float(r.json()["error"]["message"].split("retry after ")[1].split(" s")[0]) + 0.05)
        assert [lv.call("GET", "/v1/models", a).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_a_consent_report_names_only_a_model_the_device_may_see(live):
    """The report route asks the one access decision: an attacker with the app key cannot write into the
    audit trail (and the coverage KPI) of a model that does not exist or that it may not see."""
    tok = live.enroll("d-consent")
    r = live.call("POST", "/v1/consent/reports", tok, json={"model": "someone-elses-model", "counts": {"allowed": 3}})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_model"
    ok = live.call("POST", "/v1/consent/reports", tok, json={"counts": {"allowed": 3}})
    assert ok.status_code == 202 and ok.json()["recorded"] > 0
