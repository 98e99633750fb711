"""Model registry endpoints: publish, list, lineage, manifest and files (ETag / 304), rollback, training config."""
from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, jsonify, request, send_file

from server.api.bodies import read_body
from server.api.common import json_body, now
from server.auth import principal, requires
from server.errors import ApiError
from server.governance import activation, decisions, partners
from server.governance.policy import current_policy
from server.lifecycle import training, versions
from server.registry import service as registry
from server.registry.artifacts import ArtifactError, read_archive
from server.rounds.service import get_rounds
from server.storage import get_store

bp = Blueprint("models", __name__)
_IMMUTABLE = "public, max-age=31536000, immutable"


def _blobs():  # type: ignore[no-untyped-def]
    return current_app.extensions["fedmark_blobs"]


@bp.post("/v1/models/<name>/versions")
@requires("admin")
def publish(name: str):  # type: ignore[no-untyped-def]
    ctype = (request.content_type or "").split(";")[0].strip().lower()
    if ctype not in ("application/gzip", "application/x-gzip", "application/x-tar+gzip", "application/octet-stream"):
        raise ApiError(415, "bad_content_type", "send the artifact as a gzip'd tar with Content-Type: application/gzip")
    parent = request.args.get("parent")
    try:
        parent_v = int(parent) if parent is not None else None
    except ValueError:
        raise ApiError(400, "bad_request", f"query parameter parent must be a version number, got {parent!r}") from None
    try:
        artifact = read_archive(read_body(cache=False))
    except ArtifactError as exc:
        raise ApiError(400, "bad_artifact", str(exc)) from exc
    out, created = versions.publish(get_store(), _blobs(), name, artifact, parent_v, principal().name, now())
    return jsonify(out), 201 if created else 200


@bp.get("/v1/models")
@requires("any")
def list_models():  # type: ignore[no-untyped-def]
    who = principal()
    listing = registry.list_models(get_store())
    if who.role == "marketer" and who.partner is not None:  # a partner sees the models shared with it
        with get_store().read() as conn:
            listing = [m for m in listing if partners.model_visible(conn, who, m["line_of"] or m["name"])]
    return jsonify({"models": listing})


@bp.get("/v1/models/<name>")
@requires("any")
def model_detail(name: str):  # type: ignore[no-untyped-def]
    out = registry.model_detail(get_store(), name)
    with get_store().read() as conn:
        partners.require_visible(conn, principal(), out["line_of"] or name)
    return jsonify(out)


def _version(name: str, version: int, *, files: bool = False):  # type: ignore[no-untyped-def]
    """The version row, after the governance check of who may fetch it.

    Devices: the model's policy must allow their region and partner.  Marketers:
    files only after an allowed model activation of that version (POST /v1/activation/model)."""
    who = principal()
    with get_store().read() as conn:
        row = registry.version_row(conn, name, version)
        if who.role == "device":
            if not decisions.device_allowed(current_policy(conn, name), who.region, who.partner):
                raise ApiError(403, "policy_denied", f"the policy of {name!r} does not allow this device's region "
                                                     "or partner", extra={"reason": "device_not_allowed"})
        elif who.role == "marketer" and files and not activation.has_grant(conn, who, name, version):
            raise ApiError(403, "activation_required", f"marketers fetch model files through an activation request "
                                                       f"(POST /v1/activation/model with model {name!r} and your "
                                                       "purpose); it is checked against the model's policy")
        return row


def _not_modified(etag: str) -> Response | None:
    if request.if_none_match and request.if_none_match.contains(etag):
        resp = Response(status=304)
        resp.set_etag(etag)
        resp.headers["Cache-Control"] = _IMMUTABLE
        return resp
    return None


@bp.get("/v1/models/<name>/versions/<int:version>/manifest")
@requires("any")
def manifest(name: str, version: int):  # type: ignore[no-untyped-def]
    row = _version(name, version)
    early = _not_modified(row.digest)
    if early is not None:
        return early
    text = json.dumps(json.loads(row.manifest), sort_keys=True, indent=2)
    resp = Response(text, mimetype="application/json")
    resp.set_etag(row.digest)
    resp.headers["Cache-Control"] = _IMMUTABLE
    return resp


@bp.get("/v1/models/<name>/versions/<int:version>/files/<file>")
@requires("any")
def file(name: str, version: int, file: str):  # type: ignore[no-untyped-def]
    m = registry.manifest_of(_version(name, version, files=True))
    digest = m.files.get(file)
    if digest is None:
        raise ApiError(404, "unknown_file", f"version {version} of {name!r} has no file {file!r}; "
                                            f"its files: {', '.join(sorted(m.files))}")
    early = _not_modified(digest)
    if early is not None:
        return early
    resp = send_file(_blobs().path(digest), mimetype="application/octet-stream", etag=False, conditional=False,
                     max_age=None)
    resp.set_etag(digest)
    resp.headers["Cache-Control"] = _IMMUTABLE
    return resp


@bp.post("/v1/models/<name>/rollback")
@requires("admin")
def rollback(name: str):  # type: ignore[no-untyped-def]
    body = json_body()
    v = body.get("version")
    if isinstance(v, bool) or not isinstance(v, int):
        raise ApiError(400, "bad_request", "body must be {\"version\": <existing version number>}")
    return jsonify(versions.rollback(get_store(), name, v, principal().name, now()))


@bp.put("/v1/models/<name>/training")
@requires("admin")
def put_training(name: str):  # type: ignore[no-untyped-def]
    return jsonify(training.set_training(get_store(), name, json_body(), principal().name, now()))


@bp.get("/v1/models/<name>/training")
@requires("admin", "marketer")
def get_training(name: str):  # type: ignore[no-untyped-def]
    return jsonify(get_rounds().get_training(name))
