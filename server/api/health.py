"""``GET /v1/health``: liveness plus a database round trip (no auth, for load balancers)."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from server.storage import get_store

bp = Blueprint("health", __name__)


@bp.get("/v1/health")
def health():  # type: ignore[no-untyped-def]
    with get_store().read() as conn:
        conn.execute(text("SELECT 1"))
    return jsonify({"status": "ok"})
