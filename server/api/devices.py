"""``POST /v1/devices/enroll``: app key (+ the device's proof) -> per-device token; ``POST /v1/tokens/refresh``.

The enrolment body is ``{"app_key", "device_id", "region"?, "device_secret"?,
"attestation"?}``: the region comes from the app key (a differing claim is
refused), a known device proves itself with its ``device_secret`` or its current
token (``Authorization: Bearer``), and ``attestation`` goes to the configured
verifier (server/auth/attestation.py).  See server/auth/accounts.py.

Enrolment is the one unauthenticated write, and the app key it takes ships in
every app, so it is rate-limited twice before anything is written: per client
address and per app key (``ENROL_*`` settings).  A wrong app key counts as a
failed authentication of that address.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from server.api.common import json_body, now
from server.auth.accounts import check_name, enroll, refresh
from server.auth.attestation import AttestationResult, attest
from server.auth.tokens import (count_failure, forget_verified_tokens, hash_secret, principal, refuse_failing_address,
                                 requires, token_ttl)
from server.errors import ApiError
from server.rounds.service import get_rounds
from server.storage import get_store

bp = Blueprint("devices", __name__)


def _limit(scope: str, key: str, what: str) -> None:
    wait = current_app.extensions["fedmark_limiter"].take(scope, key)
    if wait > 0:
        raise ApiError(429, "rate_limited", f"too many enrolments {what}; retry after {wait:.1f} s", retry_after=wait)


@bp.post("/v1/devices/enroll")
def enroll_device():  # type: ignore[no-untyped-def]
    addr = refuse_failing_address()
    _limit("enrol_address", addr, "from this address")
    body = json_body()
    app_key = body.get("app_key")
    if isinstance(app_key, str) and app_key:
        _limit("enrol_app_key", hash_secret(app_key), "with this app key")
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    if not isinstance(app_key, str) or not app_key:
        raise ApiError(400, "bad_request", "app_key is required: the key an admin issued with POST /v1/admin/app-keys")
    device_id = check_name(body.get("device_id"), "device_id")
    evidence = body.get("attestation")
    result = attest(device_id, evidence) if evidence is not None else AttestationResult(False, "no attestation sent")
    try:
        out = enroll(get_store(), app_key, device_id, body.get("region"), now(),
                     device_secret=body.get("device_secret"),
                     bearer=bearer.strip() if scheme.lower() == "bearer" else None,
                     attestation=result, attestation_required=bool(current_app.config.get("ATTESTATION_REQUIRED")),
                     ttl=token_ttl("device"), writer=get_rounds().committer.run)
    except ApiError as exc:
        if exc.status == 401 or exc.code == "device_proof_required":  # a wrong key or proof: a failed login
            count_failure(addr)
        raise
    forget_verified_tokens()  # a re-enrolment revoked the device's earlier tokens
    return jsonify(out), 201


@bp.post("/v1/tokens/refresh")
@requires("device", "marketer")
def refresh_token():  # type: ignore[no-untyped-def]
    """Trade the caller's valid token for a new one (same id, new lifetime); the old one stops working."""
    who = principal()
    out = refresh(get_store(), who, now(), token_ttl(who.role))
    forget_verified_tokens()  # the old token stopped working
    return jsonify(out), 200
