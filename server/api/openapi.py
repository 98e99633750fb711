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
    ("/v1/admin/tokens", "post", "Issue a marketer token", ["admin"], "application/json",
     {"201": "token issued (with its id and expires_at)"}),
    ("/v1/admin/tokens/{token_id}/revoke", "post", "Revoke a token by id", ["admin"], None, {"200": "revoked"}),
    ("/v1/admin/devices/{device_id}/reset", "post", "Forget a device's secret and revoke its tokens (it enrols afresh)",
     ["admin"], None, {"200": "reset"}),
    ("/v1/admin/devices/{device_id}/revoke", "post", "Revoke every token of a device and block its re-enrolment",
     ["admin"], None, {"200": "revoked"}),
    ("/v1/admin/devices/{device_id}/consent-withdrawn", "post",
     "Record that a device's person withdrew consent (its uploads are refused)", ["admin"], "application/json",
     {"200": "flag set"}),
    ("/v1/admin/tick", "post", "Run round deadline and buffer checks now", ["admin"], None, {"200": "models checked"}),
    ("/v1/devices/enroll", "post", "Trade an app key (and, for a known device, its proof) for a device token", None,
     "application/json", {"201": "device token"}),
    ("/v1/tokens/refresh", "post", "Trade a valid token for a new one (same id, new lifetime)", ["device", "marketer"],
     None, {"200": "new token"}),
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
    # governance (docs/GOVERNANCE.md)
    ("/v1/models/{name}/policy", "put", "Set the governance policy (new version)", ["admin"], "application/json",
     {"200": "policy stored"}),
    ("/v1/models/{name}/policy", "get", "The policy in force", ["admin", "marketer"], None, {"200": "policy"}),
    ("/v1/models/{name}/policy/history", "get", "Every policy version", ["admin"], None, {"200": "versions"}),
    ("/v1/models/{name}/rounds", "get", "Rounds of a model", ["admin", "marketer"], None, {"200": "rounds"}),
    ("/v1/audit", "get", "Audit trail entries (hash-chained)", ["admin"], None, {"200": "entries and head"}),
    ("/v1/audit/verify", "get", "Verify the audit chain", ["admin"], None, {"200": "verdict"}),
    ("/v1/partners", "get", "Partners (tenants) with devices and shared models", ["admin"], None, {"200": "partners"}),
    ("/v1/devices", "get", "Devices (a partner-bound token sees its own only)", ["admin", "marketer"], None,
     {"200": "devices"}),
    ("/v1/evaluations/tasks", "post", "Ask what to evaluate", ["device"], "application/json", {"200": "evaluation task"}),
    ("/v1/evaluations/{model}/{target}/reports", "post", "Report federated-evaluation aggregates", ["device"],
     "application/json", {"202": "stored"}),
    ("/v1/models/{name}/evaluations", "get", "Evaluation metrics by region / segment, spread, drift, contribution",
     ["admin", "marketer"], None, {"200": "summary"}),
    ("/v1/models/{name}/statistics", "post", "Open a federated statistics task on a declared schema", ["admin"],
     "application/json", {"201": "statistics task"}),
    ("/v1/statistics/tasks", "post", "Ask for the model's open statistics task", ["device"], "application/json",
     {"200": "statistics task"}),
    ("/v1/statistics/{task_id}/reports", "post", "Send this device's sufficient statistics (Idempotency-Key)",
     ["device"], "application/json", {"202": "stored", "200": "replay of a stored contribution"}),
    ("/v1/models/{name}/statistics/{task_id}/release", "post", "Release a statistics task: noised, k-suppressed, "
     "fitted schema", ["admin"], None, {"200": "release"}),
    ("/v1/models/{name}/statistics", "get", "The newest (or ?version=N) statistics release and fitted schema",
     ["admin", "marketer"], None, {"200": "release"}),
    ("/v1/models/{name}/readiness", "get", "Data-readiness assessment per region and partner", ["admin", "marketer"],
     None, {"200": "assessment"}),
    ("/v1/models/{name}/candidates/{version}/decide", "post", "Run the publish gate now", ["admin"],
     "application/json", {"200": "decision"}),
    ("/v1/activation/model", "post", "Pull a published inference model (policy-checked)", ["marketer"],
     "application/json", {"200": "manifest and file URLs"}),
    ("/v1/activation/segments", "post", "Audience segments (policy-checked, k-suppressed)", ["marketer"],
     "application/json", {"200": "segments"}),
    ("/v1/consent/reports", "post", "Report records per consent decision reason and withdrawals (counts only)",
     ["device"], "application/json", {"202": "recorded"}),
    ("/v1/segments/reports", "post", "Report segment counts (device-side scoring)", ["device"], "application/json",
     {"202": "stored"}),
    ("/v1/kpis", "get", "The six governance KPIs", ["admin", "marketer"], None, {"200": "KPIs"}),
    ("/metrics", "get", "Prometheus metrics, k-suppressed; bearer METRICS_TOKEN only (its own credential)",
     ["metrics"], None, {"200": "text exposition format", "401": "missing or wrong METRICS_TOKEN",
                         "404": "off: no METRICS_TOKEN configured"}),
    ("/dashboard", "get", "Monitoring dashboard page", None, None, {"200": "HTML"}),
    ("/dashboard/dashboard.js", "get", "Dashboard script", None, None, {"200": "JavaScript"}),
    ("/dashboard/vendor/{name}", "get", "Dashboard chart library (bundled from the npm lock)", None, None, {"200": "JavaScript"}),
    # the browser trainer page (server/api/web.py)
    ("/train", "get", "Browser trainer page: trains in the visitor's browser, uploads a clipped update", None, None,
     {"200": "HTML"}),
    ("/train/{name}", "get", "A trainer page file (allow-listed script / style)", None, None, {"200": "file"}),
    ("/train/sdk/{name}", "get", "A browser ES module of the JavaScript SDK", None, None,
     {"200": "JavaScript", "503": "web_sdk_unavailable"}),
    ("/train/sdk/families/{name}", "get", "A training-protocol plug-in module of the JavaScript SDK", None, None,
     {"200": "JavaScript"}),
    ("/train/ort/{name}", "get", "onnxruntime-web module / WebAssembly (allow-listed)", None, None,
     {"200": "JavaScript or application/wasm", "503": "web_sdk_unavailable"}),
    # federation (server/federation): "region" is a region credential of the coordinator, not a token role
    ("/v1/federation/regions", "post", "Issue a region credential (coordinator)", ["admin"], "application/json",
     {"201": "credential issued"}),
    ("/v1/federation/models/{model}", "put", "Run global rounds of a model (coordinator)", ["admin"],
     "application/json", {"200": "federation configuration"}),
    ("/v1/federation/models/{model}", "get", "The current global version and open global round (coordinator)",
     ["region"], None, {"200": "model info"}),
    ("/v1/federation/models/{model}/versions/{version}/params", "get", "A global version's parameters (coordinator)",
     ["region"], None, {"200": "little-endian float32 vector"}),
    ("/v1/federation/models/{model}/aggregates", "post", "Push a noised regional aggregate, exactly once per "
     "Idempotency-Key (coordinator)", ["region"], "application/octet-stream",
     {"201": "stored", "200": "stored before (duplicate)"}),
    ("/v1/federation/status", "get", "Regions and their contributions (coordinator) or links and pushes (region)",
     ["admin", "marketer"], None, {"200": "status"}),
    ("/v1/federation/tick", "post", "Run the role's federation pass now", ["admin"], None, {"200": "what it did"}),
]

_PARAM_TYPES = {"version": {"type": "integer"}, "target": {"type": "integer"}, "token_id": {"type": "integer"}}


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
        elif roles == ["metrics"]:  # not a role: the scrape credential of config METRICS_TOKEN
            op["security"] = [{"metricsBearer": []}]
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
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "metricsBearer": {"type": "http", "scheme": "bearer",
                                                  "description": "config METRICS_TOKEN (FEDMARK_METRICS_TOKEN)"}},
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
