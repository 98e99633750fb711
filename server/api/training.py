"""Training endpoints: task assignment, round status, update upload."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from server.api.bodies import read_body
from server.api.common import json_body, now
from server.auth import principal, requires
from server.errors import ApiError
from server.governance import audit
from server.rounds.ingest import ingest
from server.rounds.service import get_rounds
from server.storage import get_store

bp = Blueprint("training", __name__)
log = logging.getLogger("fedmark.server.ingest")


@bp.post("/v1/tasks")
@requires("device")
def task():  # type: ignore[no-untyped-def]
    body = json_body()
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "bad_request", "body must be {\"model\": \"<model name>\"}")
    return jsonify(get_rounds().assign_task(principal(), model))


@bp.get("/v1/rounds/<round_id>")
@requires("any")
def round_status(round_id: str):  # type: ignore[no-untyped-def]
    return jsonify(get_rounds().round_info(round_id))


def _audit_rejection(round_id: str, code: str) -> None:
    """Record a refused update (reason code only, never the body) in its own small transaction."""
    who = principal()
    try:
        with get_store().write() as conn:
            audit.append_one(conn, now(), "update.rejected", actor=who.device_id or who.name, code=code,
                             subject=round_id, detail={"region": who.region, "partner": who.partner})
    except Exception:  # the device gets its real answer even if the audit write fails; the log has it
        log.exception("could not audit the rejection %s of an update to round %s", code, round_id)


@bp.post("/v1/rounds/<round_id>/updates")
@requires("device")
def upload(round_id: str):  # type: ignore[no-untyped-def]
    def set_limit(n: int) -> None:
        request.max_content_length = n

    try:
        status, answer = ingest(get_rounds(), principal(), round_id, request.content_type, request.headers,
                                lambda: read_body(cache=False), set_limit,
                                int(current_app.config["MAX_UPDATE_BYTES"]))
    except ApiError as exc:
        if exc.status < 500:
            _audit_rejection(round_id, exc.code)
        raise
    except RequestEntityTooLarge:
        _audit_rejection(round_id, "body_too_large")
        raise
    return jsonify(answer), status
