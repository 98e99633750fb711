"""Small helpers shared by the blueprints."""
from __future__ import annotations

from typing import Any

from flask import current_app, request

from server.errors import ApiError


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400 that says how to send one."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object sent with Content-Type: application/json")
    return data


def now() -> float:
    return float(current_app.config["CLOCK"].now())
