"""Reading request bodies within their caps: one rule for every route.

Why one module: a cap that a route forgets is no cap.  Every body is read
through :func:`read_body`, under the limit :func:`apply_default_cap` set before
the view ran (JSON routes: ``MAX_JSON_BYTES``; the update upload and artifact
publish set their own, larger, limits).  Two traps it closes:

* werkzeug's ``LimitedStream`` stops *silently* at ``max_content_length`` when a
  body arrives chunked (no ``Content-Length``): the view would see a prefix of
  the body and could accept it.  The stream is opened one byte past the limit,
  and a body that fills it is refused with 413.
* ``json.loads`` raises ``RecursionError`` (not ``ValueError``) on input nested
  tens of thousands deep; that is a bad request, not a server error.
"""
from __future__ import annotations

import json
from typing import Any

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from server.errors import ApiError

__all__ = ["apply_default_cap", "read_body", "json_body", "OWN_CAP_ENDPOINTS"]

#: Views that set their own body limit before reading (an update's exact size; an artifact archive; a regional
#: aggregate).
OWN_CAP_ENDPOINTS = frozenset({"training.upload", "models.publish", "federation.push"})


def apply_default_cap() -> None:
    """``before_request`` hook: every route but the two above reads at most ``MAX_JSON_BYTES``."""
    if request.endpoint not in OWN_CAP_ENDPOINTS:
        request.max_content_length = int(current_app.config["MAX_JSON_BYTES"])


def read_body(cache: bool = True) -> bytes:
    """The whole body, or 413 if it exceeds the request's limit, however it was framed.

    The stream is opened one byte past the limit, so a chunked body that is
    longer shows itself by that byte instead of being cut silently.
    """
    limit = request.max_content_length
    if limit is not None:
        request.max_content_length = limit + 1
    data = request.get_data(cache=cache)
    if limit is not None and len(data) > limit:
        raise RequestEntityTooLarge()
    return data


def json_body(optional: bool = False) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says how to send one (``optional``: an empty body is ``{}``)."""
    raw = read_body(cache=True)
    if optional and not raw.strip():
        return {}
    try:
        data = json.loads(raw) if raw else None
    except RecursionError:
        raise ApiError(400, "bad_request", "the JSON body is nested too deeply; send a flat JSON object") from None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object sent with Content-Type: application/json")
    return data
