"""``POST /v1/devices/enroll``: app key -> per-device token (no bearer token needed)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from server.api.common import json_body, now
from server.auth.accounts import enroll
from server.storage import get_store

bp = Blueprint("devices", __name__)


@bp.post("/v1/devices/enroll")
def enroll_device():  # type: ignore[no-untyped-def]
    body = json_body()
    out = enroll(get_store(), body.get("app_key"), body.get("device_id"), body.get("region", "default"), now())
    return jsonify(out), 201
