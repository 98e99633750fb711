"""Federated feature statistics: tasks (admin opens, devices take), contributions, releases, readiness.

The use cases live in :mod:`server.rounds.statistics`; this blueprint reads
bodies within their caps, asks the one access decision, and answers.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from server.api.bodies import read_body
from server.api.common import json_body, refuse_withdrawn_consent
from server.auth import principal, requires
from server.errors import ApiError
from server.governance import access, readiness
from server.rounds import statistics as stats
from server.rounds.service import get_rounds
from server.storage import get_store, schema

bp = Blueprint("statistics", __name__)


def _model_arg(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 128:
        raise ApiError(400, "bad_request", "body must be {\"model\": \"<model name>\"}")
    return model


@bp.post("/v1/models/<name>/statistics")
@requires("admin")
def open_statistics(name: str):  # type: ignore[no-untyped-def]
    """Open a statistics task: ``{"declaration": {...}, "config": {noise_multiplier, clip, k, delta}}``."""
    if len(name) > 128:
        raise ApiError(400, "bad_request", "a model name has at most 128 characters")
    return jsonify(stats.open_task(get_rounds(), name, json_body(), principal().name)), 201


@bp.post("/v1/statistics/tasks")
@requires("device")
def statistics_task():  # type: ignore[no-untyped-def]
    refuse_withdrawn_consent(principal())
    return jsonify(stats.task_for_device(get_rounds(), principal(), _model_arg(json_body())))


@bp.post("/v1/statistics/<task_id>/reports")
@requires("device")
def statistics_report(task_id: str):  # type: ignore[no-untyped-def]
    refuse_withdrawn_consent(principal())
    status, answer = stats.contribute(get_rounds(), principal(), task_id, read_body(), request.headers)
    return jsonify(answer), status


@bp.post("/v1/models/<name>/statistics/<task_id>/release")
@requires("admin")
def release_statistics(name: str, task_id: str):  # type: ignore[no-untyped-def]
    out = stats.release_task(get_rounds(), task_id, principal().name)
    if out["model"] != name:
        raise ApiError(404, "unknown_task", f"statistics task {task_id!r} is not a task of {name!r}")
    return jsonify(out)


def _released(name: str, version: int | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    with get_store().read() as conn:
        if principal().role != "admin":
            access.require(conn, principal(), name, "statistics")
        cur = stats.released(conn, name, version)
        if cur is None:
            raise ApiError(404, "no_statistics", f"{name!r} has no released statistics"
                                                 + (f" version {version}" if version else "")
                                                 + "; open a task (POST /v1/models/<name>/statistics) and release it")
        prev = stats.released(conn, name, before=int(cur["schema_version"]))
    return cur, prev


def _version_arg() -> int | None:
    raw = request.args.get("version")
    if raw is None:
        return None
    if not (raw.isdigit() and len(raw) <= 10) or not 1 <= int(raw) <= schema.MAX_INT:
        raise ApiError(400, "bad_request", "version must be a whole number >= 1 (a fitted schema version)")
    return int(raw)


@bp.get("/v1/models/<name>/statistics")
@requires("admin", "marketer")
def get_statistics(name: str):  # type: ignore[no-untyped-def]
    """The newest (or ``?version=N``) release: totals, per-cell views, epsilon, the fitted schema."""
    cur, _ = _released(name, _version_arg())
    return jsonify(cur)


@bp.get("/v1/models/<name>/readiness")
@requires("admin", "marketer")
def get_readiness(name: str):  # type: ignore[no-untyped-def]
    """The data-readiness assessment of the newest (or ``?version=N``) release, drift against the one before."""
    cur, prev = _released(name, _version_arg())
    return jsonify(readiness.assess(cur, prev))
