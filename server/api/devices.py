"""``POST /v1/devices/enroll``: app key -> per-device token (no bearer token needed).

Enrolment is the one unauthenticated write, and the app key it takes ships in
every app, so it is rate-limited twice before anything is written: per client
address and per app key (``ENROL_*`` settings).  A wrong app key counts as a
failed authentication of that address.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from server.api.common import json_body, now
from server.auth.accounts import enroll
from server.auth.tokens import hash_secret
from server.errors import ApiError
from server.storage import get_store

bp = Blueprint("devices", __name__)


def _limit(scope: str, key: str, what: str) -> None:
    wait = current_app.extensions["fedmark_limiter"].take(scope, key)
    if wait > 0:
        raise ApiError(429, "rate_limited", f"too many enrolments {what}; retry after {wait:.1f} s", retry_after=wait)


@bp.post("/v1/devices/enroll")
def enroll_device():  # type: ignore[no-untyped-def]
    addr = request.remote_addr or "unknown"
    limiter = current_app.extensions["fedmark_limiter"]
    wait = limiter.blocked("auth_failure", addr)
    if wait > 0:
        raise ApiError(429, "rate_limited", f"too many failed requests from this address; retry after {wait:.1f} s",
                       retry_after=wait)
    _limit("enrol_address", addr, "from this address")
    body = json_body()
    app_key = body.get("app_key")
    if isinstance(app_key, str) and app_key:
        _limit("enrol_app_key", hash_secret(app_key), "with this app key")
    try:
        out = enroll(get_store(), app_key, body.get("device_id"), body.get("region", "default"), now())
    except ApiError as exc:
        if exc.status == 401:
            limiter.take("auth_failure", addr)
        raise
    return jsonify(out), 201
