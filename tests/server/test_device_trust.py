"""Issue 18, points 1, 2, 9 (attestation) and 10, over real HTTP against a live server.

* 1 device takeover: re-enrolling a known device id needs the secret it made at first enrolment or its current
  token; without either, 409 ``device_proof_required`` until an admin reset (audited).
* 2 a device picks its own region: app keys are issued per region and the key decides (403 ``region_mismatch``).
* 9 attestation: a pluggable verifier at enrolment, stored as ``devices.attested``.
* 10 revocation (device, marketer token by id), token lifetimes with refresh (401 ``token_expired``), and a
  server-side consent-withdrawn flag that refuses the device's uploads (403 ``consent_withdrawn``).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from server.auth.attestation import AttestationResult
from tests.server.conftest import ones

TEST_ATTESTATION_KEY = b"test-attestation-key"


class HmacVerifier:
    """The test stand-in for a platform verifier: evidence = HMAC-SHA256(test key, device id), hex."""

    def verify(self, device_id: str, evidence: Any) -> AttestationResult:
        want = hmac.new(TEST_ATTESTATION_KEY, device_id.encode(), hashlib.sha256).hexdigest()
        if isinstance(evidence, str) and hmac.compare_digest(evidence, want):
            return AttestationResult(True)
        return AttestationResult(False, "evidence does not verify")


def evidence(device_id: str) -> str:
    return hmac.new(TEST_ATTESTATION_KEY, device_id.encode(), hashlib.sha256).hexdigest()


def _enrol(live, key: str, device_id: str, region: str | None = "eu", token: str | None = None, **extra: Any):
    body = {"app_key": key, "device_id": device_id, **extra}
    if region is not None:
        body["region"] = region
    return live.call("POST", "/v1/devices/enroll", token, json=body)


def _code(r) -> str:
    return r.json()["error"]["code"]


def _audit(live, kind: str) -> list[dict[str, Any]]:
    r = live.admin("GET", "/v1/audit", params={"kind": kind, "limit": 1000})
    assert r.status_code == 200, r.text
    return r.json()["entries"]


# ---------------------------------------------------------------------------- 1: takeover
def test_an_app_key_and_a_device_id_do_not_take_a_device_over(live):
    live.publish("toy")
    live.train("toy", goal=2, min_clients=1, deadline_s=600)
    key = live.app_key("eu")
    secret = secrets.token_urlsafe(32)
    r = _enrol(live, key, "victim-1", device_secret=secret)
    assert r.status_code == 201, r.text
    victim = r.json()["device_token"]
    task = live.task(victim)
    assert task.status_code == 200, task.text

    # the attack of the issue: the public app key and the victim's id
    r = _enrol(live, key, "victim-1")
    assert r.status_code == 409 and _code(r) == "device_proof_required", r.text
    assert "/v1/admin/devices/victim-1/reset" in r.json()["error"]["message"]
    # ... with a secret of its own, or a token of another device
    r = _enrol(live, key, "victim-1", device_secret=secrets.token_urlsafe(32))
    assert r.status_code == 409 and _code(r) == "device_proof_required"
    other = live.enroll("attacker-1")
    r = _enrol(live, key, "victim-1", token=other)
    assert r.status_code == 409 and _code(r) == "device_proof_required"
    # the victim keeps its token and its task
    assert live.call("GET", "/v1/models", victim).status_code == 200
    assert live.upload(victim, task.json(), ones(15)).status_code == 202

    # the device itself re-enrols with its secret, or with its current token
    r = _enrol(live, key, "victim-1", device_secret=secret)
    assert r.status_code == 201, r.text
    fresh = r.json()["device_token"]
    assert live.call("GET", "/v1/models", victim).json()["error"]["code"] == "bad_token"
    r = _enrol(live, key, "victim-1", token=fresh)
    assert r.status_code == 201, r.text
    # a short or non-base64url secret is refused before anything is stored
    r = _enrol(live, key, "new-1", device_secret="short")
    assert r.status_code == 400 and "device_secret" in r.json()["error"]["message"]


def test_a_device_without_a_stored_secret_needs_its_token_or_an_admin_reset(live, db_url):
    key = live.app_key("eu")
    first = _enrol(live, key, "old-1")  # enrolled without a secret, like every device before migration 0004
    assert first.status_code == 201
    token = first.json()["device_token"]
    r = _enrol(live, key, "old-1", device_secret=secrets.token_urlsafe(32))
    assert r.status_code == 409 and _code(r) == "device_proof_required", r.text
    # its current token proves it, and registers the secret it sends
    secret = secrets.token_urlsafe(32)
    r = _enrol(live, key, "old-1", token=token, device_secret=secret)
    assert r.status_code == 201, r.text
    assert _enrol(live, key, "old-1", device_secret=secret).status_code == 201

    # a device that lost both: the admin reset (audited) revokes its tokens and lets the id enrol afresh
    eng = create_engine(db_url)
    try:
        with eng.begin() as c:
            c.execute(text("UPDATE devices SET secret_hash = NULL WHERE device_id = 'old-1'"))
    finally:
        eng.dispose()
    current = _enrol(live, key, "old-1", device_secret=secrets.token_urlsafe(32))
    assert current.status_code == 409 and _code(current) == "device_proof_required"
    mt = live.admin("POST", "/v1/admin/tokens", json={"role": "marketer", "name": "m"}).json()["token"]
    assert live.call("POST", "/v1/admin/devices/old-1/reset", mt).status_code == 403
    assert live.admin("POST", "/v1/admin/devices/nobody/reset").status_code == 404
    r = live.admin("POST", "/v1/admin/devices/old-1/reset")
    assert r.status_code == 200 and r.json()["reset"] is True, r.text
    entries = _audit(live, "device.reset")
    assert [(e["subject"], e["actor"]) for e in entries] == [("old-1", "admin")]
    new_secret = secrets.token_urlsafe(32)
    r = _enrol(live, key, "old-1", device_secret=new_secret)
    assert r.status_code == 201, r.text
    # and from then on only the new secret proves it
    assert _code(_enrol(live, key, "old-1", device_secret=secret)) == "device_proof_required"
    assert _enrol(live, key, "old-1", device_secret=new_secret).status_code == 201


# ---------------------------------------------------------------------------- 2: region from the app key
def test_the_region_comes_from_the_app_key(live):
    eu = live.app_key("eu")
    r = _enrol(live, eu, "spoof-1", region="us")
    assert r.status_code == 403 and _code(r) == "region_mismatch", r.text
    assert "'eu'" in r.json()["error"]["message"]
    r = _enrol(live, eu, "eu-1", region=None)  # no claim: the key's region
    assert r.status_code == 201 and r.json()["region"] == "eu"
    # a key issued without a region is bound to "default", never to any region
    plain = live.admin("POST", "/v1/admin/app-keys", json={"partner": "acme"})
    assert plain.status_code == 201 and plain.json()["region"] == "default"
    r = _enrol(live, plain.json()["app_key"], "spoof-2", region="eu")
    assert r.status_code == 403 and _code(r) == "region_mismatch"
    r = _enrol(live, plain.json()["app_key"], "plain-1", region=None)
    assert r.status_code == 201 and r.json()["region"] == "default"
    assert live.admin("POST", "/v1/admin/app-keys", json={"region": "../x"}).status_code == 400

    # the case: a cn build is refused by policy; its key cannot enrol a new device as eu
    live.publish("toy")
    live.admin("PUT", "/v1/models/toy/policy", json={"purpose": "propensity_scoring", "allowed_regions": ["eu"]})
    live.train("toy", goal=2, min_clients=1)
    cn = live.app_key("cn")
    r = _enrol(live, cn, "fresh-1", region="eu")
    assert r.status_code == 403 and _code(r) == "region_mismatch"
    t = live.task(_enrol(live, cn, "fresh-2", region=None).json()["device_token"])
    assert t.status_code == 403, t.text


# ---------------------------------------------------------------------------- 10: revocation, lifetimes, consent
def test_admin_revokes_a_device_and_a_marketer_token_by_id(live):
    key = live.app_key("eu")
    secret = secrets.token_urlsafe(32)
    dev = _enrol(live, key, "lost-1", device_secret=secret).json()["device_token"]
    r = live.admin("POST", "/v1/admin/devices/lost-1/revoke")
    assert r.status_code == 200 and r.json()["tokens_revoked"] == 1, r.text
    assert _code(live.call("GET", "/v1/models", dev)) == "bad_token"
    r = _enrol(live, key, "lost-1", device_secret=secret)  # its secret no longer helps
    assert r.status_code == 403 and _code(r) == "device_revoked", r.text
    assert live.admin("POST", "/v1/admin/devices/lost-1/reset").status_code == 200
    assert _enrol(live, key, "lost-1", device_secret=secrets.token_urlsafe(32)).status_code == 201

    issued = live.admin("POST", "/v1/admin/tokens", json={"role": "marketer", "name": "ana", "partner": "acme"})
    assert issued.status_code == 201 and isinstance(issued.json()["id"], int)
    mt = issued.json()["token"]
    assert live.call("GET", "/v1/models", mt).status_code == 200
    r = live.admin("POST", f"/v1/admin/tokens/{issued.json()['id']}/revoke")
    assert r.status_code == 200 and r.json()["revoked"] is True
    assert _code(live.call("GET", "/v1/models", mt)) == "bad_token"
    assert live.admin("POST", "/v1/admin/tokens/999999/revoke").status_code == 404
    assert live.admin("POST", f"/v1/admin/tokens/{2**70}/revoke").status_code == 404  # bounded, not a 500
    assert [e["subject"] for e in _audit(live, "device.revoked")] == ["lost-1"]
    assert [e["subject"] for e in _audit(live, "token.revoked")] == [str(issued.json()["id"])]


def test_tokens_expire_and_refresh(make_live):
    with make_live(DEVICE_TOKEN_TTL_S=100.0, MARKETER_TOKEN_TTL_S=200.0) as lv:
        key = lv.app_key("eu")
        secret = secrets.token_urlsafe(32)
        r = _enrol(lv, key, "d-1", device_secret=secret)
        assert r.json()["expires_at"] == pytest.approx(lv.clock.now() + 100.0)
        dev = r.json()["device_token"]
        issued = lv.admin("POST", "/v1/admin/tokens", json={"role": "marketer", "name": "ana"}).json()
        lv.clock.advance(60)
        r = lv.call("POST", "/v1/tokens/refresh", dev)
        assert r.status_code == 200, r.text
        renewed = r.json()["token"]
        assert r.json()["expires_at"] == pytest.approx(lv.clock.now() + 100.0)
        assert _code(lv.call("GET", "/v1/models", dev)) == "bad_token"  # the old one is gone
        lv.clock.advance(60)  # 120 s after enrolment, 60 s after the refresh
        assert lv.call("GET", "/v1/models", renewed).status_code == 200
        lv.clock.advance(41)
        r = lv.call("GET", "/v1/models", renewed)
        assert r.status_code == 401 and _code(r) == "token_expired", r.text
        assert _code(lv.call("POST", "/v1/tokens/refresh", renewed)) == "token_expired"
        # an expired token proves nothing at enrolment; the device's secret does
        assert _code(_enrol(lv, key, "d-1", token=renewed)) == "device_proof_required"
        r = _enrol(lv, key, "d-1", device_secret=secret)
        assert r.status_code == 201 and lv.call("GET", "/v1/models", r.json()["device_token"]).status_code == 200
        # marketer tokens: refresh keeps the id (revocation by id still works), then expiry
        r = lv.call("POST", "/v1/tokens/refresh", issued["token"])
        assert r.status_code == 200 and r.json()["id"] == issued["id"]
        mt = r.json()["token"]
        lv.clock.advance(201)
        assert _code(lv.call("GET", "/v1/models", mt)) == "token_expired"
        assert lv.admin("POST", "/v1/tokens/refresh").status_code == 400


def test_consent_withdrawn_on_the_server_refuses_the_devices_uploads(live):
    live.publish("toy")
    live.train("toy", goal=3, min_clients=1, deadline_s=600)
    a, b = live.enroll("c-1"), live.enroll("c-2")
    ta, tb = live.task(a).json(), live.task(b).json()
    r = live.admin("POST", "/v1/admin/devices/c-1/consent-withdrawn")
    assert r.status_code == 200 and r.json()["consent_withdrawn"] is True, r.text
    r = live.upload(a, ta, ones(15))
    assert r.status_code == 403 and _code(r) == "consent_withdrawn", r.text
    # nor may it ask for work or report: tasks, evaluation reports and segment reports ask the same rule
    assert _code(live.task(a)) == "consent_withdrawn"
    assert _code(live.call("POST", "/v1/segments/reports", a, json={"model": "toy", "version": 1,
                                                                     "purpose": "p", "counts": {"s": 1}})) == "consent_withdrawn"
    assert _code(live.call("POST", "/v1/evaluations/toy/1/reports", a, json={"reports": []})) == "consent_withdrawn"
    assert live.upload(b, tb, ones(15)).status_code == 202
    rejected = [e for e in _audit(live, "update.rejected") if e["code"] == "consent_withdrawn"]
    assert [e["actor"] for e in rejected] == ["c-1"]
    assert [e["subject"] for e in _audit(live, "device.consent_withdrawn")] == ["c-1"]
    # consent given again: an admin clears the flag
    r = live.admin("POST", "/v1/admin/devices/c-1/consent-withdrawn", json={"withdrawn": False})
    assert r.status_code == 200 and r.json()["consent_withdrawn"] is False
    assert live.upload(a, ta, ones(15)).status_code == 202


# ---------------------------------------------------------------------------- 9: attestation
@pytest.mark.parametrize("spec", ["object", "import path"])
def test_attestation_verifier_decides_devices_attested(make_live, tmp_path, spec):
    verifier = HmacVerifier() if spec == "object" else "tests.server.test_device_trust:HmacVerifier"
    with make_live(ATTESTATION_VERIFIER=verifier) as lv:
        key = lv.app_key("eu")
        r = _enrol(lv, key, "real-1", attestation=evidence("real-1"))
        assert r.status_code == 201 and r.json()["attested"] is True, r.text
        r = _enrol(lv, key, "fake-1", attestation=evidence("real-1"))
        assert r.status_code == 201 and r.json()["attested"] is False
        assert _enrol(lv, key, "bare-1").json()["attested"] is False
        eng = create_engine(f"sqlite:///{tmp_path / 'custom.db'}")
        try:
            with eng.connect() as c:
                rows = dict(c.execute(text("SELECT device_id, attested FROM devices")).all())
        finally:
            eng.dispose()
        assert {k: bool(v) for k, v in rows.items()} == {"real-1": True, "fake-1": False, "bare-1": False}


def test_attestation_can_be_required_and_the_default_attests_nothing(make_live):
    with make_live(ATTESTATION_VERIFIER=HmacVerifier(), ATTESTATION_REQUIRED=True) as lv:
        key = lv.app_key("eu")
        r = _enrol(lv, key, "fake-1", attestation="nope")
        assert r.status_code == 403 and _code(r) == "attestation_required", r.text
        assert _enrol(lv, key, "real-1", attestation=evidence("real-1")).status_code == 201
    with make_live() as lv:
        r = _enrol(lv, lv.app_key("eu"), "any-1", attestation=evidence("any-1"))
        assert r.status_code == 201 and r.json()["attested"] is False
