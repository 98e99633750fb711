"""One error shape for every failure: ``{"error": {"code": ..., "message": ...}}``.

Why: device SDKs branch on a machine-readable ``code`` (retry, re-enrol, give
up), and an HTML error page from a framework default would break them.  Views
raise :class:`ApiError`; the handlers registered by :func:`register_error_handlers`
turn it, every werkzeug ``HTTPException`` (404, 405, 413 …) and any unexpected
exception (500) into that JSON shape.  The full list of codes is in docs/API.md.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("fedmark.server")

# Default codes for framework-raised HTTP errors.
_HTTP_CODES = {
    400: "bad_request", 401: "bad_token", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "body_too_large", 414: "uri_too_long", 415: "bad_content_type", 429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error", 503: "unavailable",
}


class ApiError(Exception):
    """An error answer: HTTP status, machine-readable code, human message (what is wrong + how to fix it)."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: float | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.extra = extra or {}


def error_response(status: int, code: str, message: str, retry_after: float | None = None,
                   extra: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    body.update(extra or {})
    resp = jsonify({"error": body})
    resp.status_code = status
    if retry_after is not None:
        resp.headers["Retry-After"] = str(max(1, int(-(-retry_after // 1))))
    return resp


def _is_lock_error(exc: OperationalError) -> bool:
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return "locked" in text or "busy" in text or "could not obtain lock" in text or "deadlock" in text


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.retry_after, exc.extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        message = exc.description or exc.name
        if status == 404:
            message = "no such endpoint; the endpoints are listed at /v1/openapi.json"
        elif status == 405:
            message = f"method not allowed here; allowed: {', '.join(sorted(exc.valid_methods or []))}" \
                if getattr(exc, "valid_methods", None) else "method not allowed for this endpoint"
        elif status == 413:
            message = "request body is larger than this server accepts; send a smaller body (for updates: exactly one encoded update)"
        resp = error_response(status, code, message)
        if status == 405 and getattr(exc, "valid_methods", None):
            resp.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return resp

    @app.errorhandler(OperationalError)
    def _db_error(exc: OperationalError) -> Response:
        if _is_lock_error(exc):
            return error_response(503, "unavailable", "the database is busy; retry after the indicated delay", 1)
        log.exception("database error")
        return error_response(500, "internal_error", "database error; the server log has details")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); the server log has details")
