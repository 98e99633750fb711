"""Admin endpoints: app keys, marketer tokens, an explicit deadline tick."""
from __future__ import annotations

from flask import Blueprint, jsonify

from server.api.common import json_body, now
from server.auth import requires
from server.auth.accounts import issue_app_key, issue_token
from server.rounds.service import get_rounds
from server.storage import get_store

bp = Blueprint("admin", __name__)


@bp.post("/v1/admin/app-keys")
@requires("admin")
def create_app_key():  # type: ignore[no-untyped-def]
    body = json_body()
    partner = body.get("partner", "default")
    key = issue_app_key(get_store(), partner, now())
    return jsonify({"app_key": key, "partner": partner}), 201


@bp.post("/v1/admin/tokens")
@requires("admin")
def create_token():  # type: ignore[no-untyped-def]
    body = json_body()
    role = body.get("role", "marketer")
    partner = body.get("partner")
    token = issue_token(get_store(), role, body.get("name", ""), now(), partner)
    return jsonify({"token": token, "role": role, "partner": partner}), 201


@bp.post("/v1/admin/tick")
@requires("admin")
def tick():  # type: ignore[no-untyped-def]
    """Run the deadline / buffer checks now (the timer does this every TICK_SECONDS)."""
    return jsonify({"checked": get_rounds().tick()})
