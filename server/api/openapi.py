"""``GET /v1/openapi.json``: the OpenAPI 3 description of every endpoint.

Written by hand from one table (``ENDPOINTS``) rather than generated, so it
says what the docs say; ``tests/server/test_openapi.py`` compares it with the
app's URL map (paths and methods), so a route cannot be added or removed
without updating this table.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

bp = Blueprint("openapi", __name__)

_ERR = {"$ref": "#/components/responses/Error"}
_JSON_OBJ = {"application/json": {"schema": {"type": "object"}}}

# path, method, summary, roles (None = no bearer token), request content type, success statuses
ENDPOINTS: list[tuple[str, str, str, list[str] | None, str | None, dict[str, str]]] = [
    ("/v1/health", "get", "Liveness and database check", None, None, {"200": "status ok"}),
    ("/v1/openapi.json", "get", "This document", None, None, {"200": "OpenAPI 3 document"}),
    ("/v1/admin/app-keys", "post", "Issue an app key for a partner's app", ["admin"], "application/json",
     {"201": "app_key issued"}),
    ("/v1/admin/tokens", "post", "Issue a marketer token", ["admin"], "application/json", {"201": "token issued"}),
    ("/v1/admin/tick", "post", "Run round deadline and buffer checks now", ["admin"], None, {"200": "models checked"}),
    ("/v1/devices/enroll", "post", "Trade an app key for a device token", None, "application/json",
     {"201": "device token"}),
    ("/v1/models", "get", "List models", ["any"], None, {"200": "models"}),
    ("/v1/models/{name}", "get", "A model with its versions (lineage) and history", ["any"], None, {"200": "model"}),
    ("/v1/models/{name}/versions", "post", "Publish an artifact (gzip'd tar) as a new version", ["admin"],
     "application/gzip", {"201": "new version", "200": "same content already published"}),
    ("/v1/models/{name}/versions/{version}/manifest", "get", "A version's manifest (ETag = digest)", ["any"], None,
     {"200": "manifest", "304": "not modified"}),
    ("/v1/models/{name}/versions/{version}/files/{file}", "get", "A file of a version (ETag = sha256)", ["any"], None,
     {"200": "file bytes", "304": "not modified"}),
    ("/v1/models/{name}/rollback", "post", "Make an earlier version current", ["admin"], "application/json",
     {"200": "rolled back"}),
    ("/v1/models/{name}/training", "put", "Set the training configuration", ["admin"], "application/json",
     {"200": "configuration stored"}),
    ("/v1/models/{name}/training", "get", "Read the training configuration", ["admin", "marketer"], None,
     {"200": "configuration"}),
    ("/v1/tasks", "post", "Ask for a training task", ["device"], "application/json",
     {"200": "task", "409": "no_task / privacy_budget_exhausted (Retry-After)"}),
    ("/v1/rounds/{round_id}", "get", "Round status", ["any"], None, {"200": "round"}),
    ("/v1/rounds/{round_id}/updates", "post", "Upload one binary update", ["device"],
     "application/vnd.fedmark.update", {"202": "accepted (durable)", "200": "replay of an accepted update"}),
]

_PARAM_TYPES = {"version": {"type": "integer"}}


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for path, method, summary, roles, ctype, oks in ENDPOINTS:
        op: dict[str, Any] = {"summary": summary, "responses": {}}
        params = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True,
                                 "schema": _PARAM_TYPES.get(p, {"type": "string"})} for p in params]
        if roles is None:
            op["security"] = []
        else:
            op["x-roles"] = roles
        if ctype == "application/json":
            op["requestBody"] = {"required": True, "content": _JSON_OBJ}
        elif ctype is not None:
            op["requestBody"] = {"required": True, "content": {ctype: {"schema": {"type": "string", "format": "binary"}}}}
        for status, desc in oks.items():
            op["responses"][status] = {"description": desc}
        op["responses"]["default"] = _ERR
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "fedmark server", "version": "1",
                 "description": "Federated learning for marketing models; see docs/API.md for bodies and error codes."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "Any error", "content": {"application/json": {"schema": {
                "type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}}}}},
        },
        "security": [{"bearer": []}],
    }


@bp.get("/v1/openapi.json")
def openapi():  # type: ignore[no-untyped-def]
    return jsonify(document())
