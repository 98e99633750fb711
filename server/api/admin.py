"""Admin endpoints: app keys, marketer tokens, device reset / revocation / consent, an explicit deadline tick.

Every change to a device's or token's standing is written to the audit trail in the same transaction.
"""
from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, current_app, jsonify

from server.api.common import json_body, now
from server.auth import principal, requires
from server.auth.accounts import (issue_app_key, issue_token, reset_device, revoke_device, revoke_token,
                                  set_consent_withdrawn)
from server.auth.tokens import forget_verified_tokens, token_ttl
from server.errors import ApiError
from server.federation.roles import app_key_region
from server.governance import audit
from server.rounds.service import get_rounds
from server.storage import get_store

bp = Blueprint("admin", __name__)


@bp.post("/v1/admin/app-keys")
@requires("admin")
def create_app_key():  # type: ignore[no-untyped-def]
    body = json_body()
    region = app_key_region(current_app.config, body.get("region"))  # a regional server: its own region only
    return jsonify(issue_app_key(get_store(), body.get("partner", "default"), now(), region)), 201


@bp.post("/v1/admin/tokens")
@requires("admin")
def create_token():  # type: ignore[no-untyped-def]
    body = json_body()
    role = body.get("role", "marketer")
    partner = body.get("partner")
    out = issue_token(get_store(), role, body.get("name", ""), now(), partner, ttl=token_ttl("marketer"))
    return jsonify({**out, "role": role, "partner": partner}), 201


def _audited(kind: str, subject: str, change: Callable[[Any], dict[str, Any]]) -> Any:
    """Apply ``change(conn)`` and record ``kind`` in the audit trail, in one transaction."""
    t = now()
    with get_store().write() as conn:
        out = change(conn)
        audit.append_one(conn, t, kind, actor=principal().name, subject=subject,
                         detail={k: v for k, v in out.items() if k != "device_id"})
    forget_verified_tokens()  # committed: this process's remembered tokens may be stale now
    return jsonify(out)


@bp.post("/v1/admin/devices/<device_id>/reset")
@requires("admin")
def device_reset(device_id: str):  # type: ignore[no-untyped-def]
    """Forget a device's secret, revoke its tokens: the next enrolment of the id starts afresh."""
    return _audited("device.reset", device_id, lambda conn: reset_device(conn, device_id, now()))


@bp.post("/v1/admin/devices/<device_id>/revoke")
@requires("admin")
def device_revoke(device_id: str):  # type: ignore[no-untyped-def]
    """Revoke every token of a device and block its re-enrolment (until a reset)."""
    return _audited("device.revoked", device_id, lambda conn: revoke_device(conn, device_id))


@bp.post("/v1/admin/devices/<device_id>/consent-withdrawn")
@requires("admin")
def device_consent_withdrawn(device_id: str):  # type: ignore[no-untyped-def]
    """Record that the device's person withdrew consent (body ``{"withdrawn": false}`` clears it)."""
    withdrawn = json_body(optional=True).get("withdrawn", True)
    if not isinstance(withdrawn, bool):
        raise ApiError(400, "bad_request", "withdrawn must be true or false")
    kind = "device.consent_withdrawn" if withdrawn else "device.consent_restored"
    return _audited(kind, device_id, lambda conn: set_consent_withdrawn(conn, device_id, withdrawn, now()))


@bp.post("/v1/admin/tokens/<int:token_id>/revoke")
@requires("admin")
def token_revoke(token_id: int):  # type: ignore[no-untyped-def]
    """Revoke one token by id (a marketer's, or one device token)."""
    return _audited("token.revoked", str(token_id), lambda conn: revoke_token(conn, token_id))


@bp.post("/v1/admin/tick")
@requires("admin")
def tick():  # type: ignore[no-untyped-def]
    """Run the deadline / buffer checks now (the timer does this every TICK_SECONDS)."""
    return jsonify({"checked": get_rounds().tick()})
