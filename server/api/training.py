"""Training endpoints: task assignment, round status, update upload."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from server.api.bodies import read_body
from server.api.common import json_body, now, refuse_withdrawn_consent
from server.auth import principal, requires
from server.errors import ApiError
from server.governance import access, audit
from server.rounds.ingest import ingest
from server.rounds.service import MAX_TASK_WAIT_S, get_rounds
from server.storage import get_store

bp = Blueprint("training", __name__)
log = logging.getLogger("fedmark.server.ingest")


@bp.post("/v1/tasks")
@requires("device")
def task():  # type: ignore[no-untyped-def]
    refuse_withdrawn_consent(principal())
    body = json_body()
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "bad_request", "body must be {\"model\": \"<model name>\"}")
    wait = body.get("wait", 0)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= MAX_TASK_WAIT_S:
        raise ApiError(400, "bad_request", f"wait must be a number of seconds from 0 to {MAX_TASK_WAIT_S:g} (how long "
                                           "to wait for the next round when the current one has no task for you)")
    return jsonify(get_rounds().assign_task(principal(), model, wait_s=float(wait)))


@bp.get("/v1/rounds/<round_id>")
@requires("any")
def round_status(round_id: str):  # type: ignore[no-untyped-def]
    """A round's state, after the access decision for its model; device counts under the model's k rule."""
    with get_store().read() as conn:
        model = access.round_model(conn, round_id)
        decided = access.model_access(conn, principal(), model, "rounds") if model is not None else None
    if model is None or (isinstance(decided, access.Denial) and decided.code == "unknown_model"):
        # a round of a model the caller may not see is answered like a round that does not exist
        raise ApiError(404, "unknown_round", f"no round {round_id!r}; request a task (POST /v1/tasks) for a current one")
    if isinstance(decided, access.Denial):
        raise access.error(decided)
    info = get_rounds().round_info(round_id)
    with get_store().read() as conn:
        return jsonify(access.round_counts_shown(conn, info, decided))


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
        refuse_withdrawn_consent(principal())
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
