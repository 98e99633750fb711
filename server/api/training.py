"""Training endpoints: task assignment, round status, update upload."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from server.api.common import json_body
from server.auth import principal, requires
from server.errors import ApiError
from server.rounds.ingest import ingest
from server.rounds.service import get_rounds

bp = Blueprint("training", __name__)


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


@bp.post("/v1/rounds/<round_id>/updates")
@requires("device")
def upload(round_id: str):  # type: ignore[no-untyped-def]
    def set_limit(n: int) -> None:
        request.max_content_length = n

    status, answer = ingest(get_rounds(), principal(), round_id, request.content_type, request.headers,
                            lambda: request.get_data(cache=False), set_limit,
                            int(current_app.config["MAX_UPDATE_BYTES"]))
    return jsonify(answer), status
