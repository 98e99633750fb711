"""Model registry endpoints: publish, list, lineage, manifest and files (ETag / 304), rollback, training config."""
from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, jsonify, request, send_file

from server.api.bodies import read_body
from server.api.common import json_body, now
from server.auth import principal, requires
from server.errors import ApiError
from server.federation.roles import sync_only_on_region
from server.governance import access
from server.lifecycle import training, versions
from server.registry import service as registry
from server.registry.artifacts import ArtifactError, read_archive
from server.rounds.service import get_rounds
from server.storage import get_store, schema

bp = Blueprint("models", __name__)
_IMMUTABLE = "public, max-age=31536000, immutable"


def _blobs():  # type: ignore[no-untyped-def]
    return current_app.extensions["fedmark_blobs"]


def require_access(conn, name: str, purpose: str, *, version: int | None = None) -> access.Access:  # type: ignore[no-untyped-def]
    """The one access decision (server.governance.access) for the caller; raises its 404 / 403."""
    return access.require(conn, principal(), name, purpose, version=version)


def int_arg(name: str, raw: str | None, *, lo: int = 0, hi: int = schema.MAX_INT) -> int | None:
    """An integer query parameter bounded to what its column holds (400 ``bad_request`` naming it)."""
    if raw is None:
        return None
    try:
        v = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"query parameter {name} must be an integer, got {raw!r}") from None
    if not lo <= v <= hi:
        raise ApiError(400, "bad_request", f"query parameter {name} must be between {lo} and {hi}, got {raw!r}")
    return v


def _unknown_version(name: str, version: int) -> ApiError:
    return ApiError(404, "unknown_version", f"model {name!r} has no version {version}; GET /v1/models/{name} lists them")


@bp.post("/v1/models/<name>/versions")
@requires("admin")
def publish(name: str):  # type: ignore[no-untyped-def]
    ctype = (request.content_type or "").split(";")[0].strip().lower()
    if ctype not in ("application/gzip", "application/x-gzip", "application/x-tar+gzip", "application/octet-stream"):
        raise ApiError(415, "bad_content_type", "send the artifact as a gzip'd tar with Content-Type: application/gzip")
    parent_v = int_arg("parent", request.args.get("parent"), lo=1)
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
    if who.role != "admin":  # the same decision as every model route: a caller lists what it may see
        with get_store().read() as conn:
            listing = [m for m in listing if access.visible(conn, who, m["name"])]
    return jsonify({"models": listing})


@bp.get("/v1/models/<name>")
@requires("any")
def model_detail(name: str):  # type: ignore[no-untyped-def]
    with get_store().read() as conn:
        require_access(conn, name, "metadata")
    return jsonify(registry.model_detail(get_store(), name))


def _version(name: str, version: int, purpose: str):  # type: ignore[no-untyped-def]
    """(version row, access) after the one access decision for ``purpose`` ("manifest" or "files")."""
    if version > schema.MAX_INT:  # no version has a number its column cannot hold (same answer for any model)
        raise _unknown_version(name, version)
    with get_store().read() as conn:
        allowed = require_access(conn, name, purpose, version=version)
        return registry.version_row(conn, name, version), allowed


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
    row, _ = _version(name, version, "manifest")
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
    row, allowed = _version(name, version, "files")
    m = registry.manifest_of(row)
    digest = m.files.get(file)
    if digest is None:
        raise ApiError(404, "unknown_file", f"version {version} of {name!r} has no file {file!r}; "
                                            f"its files: {', '.join(sorted(m.files))}")
    early = _not_modified(digest)
    if early is not None:
        return early
    who = principal()
    if who.role == "device":  # every model file a device takes away is on the record, in the next group commit
        at = now()              # (the answer does not wait for it: a download is not data the server accepts)
        get_rounds().committer.submit(lambda conn: access.audit_download(conn, who, allowed, version, file, at))
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
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= schema.MAX_INT:
        raise ApiError(400, "bad_request", f"version must be an existing version number (1..{schema.MAX_INT}); "
                                           "body must be {\"version\": <existing version number>}")
    return jsonify(versions.rollback(get_store(), name, v, principal().name, now()))


@bp.put("/v1/models/<name>/training")
@requires("admin")
def put_training(name: str):  # type: ignore[no-untyped-def]
    body = json_body()
    _bounded_training(body)
    sync_only_on_region(current_app.config, body)  # a regional server pushes closed sync sub-rounds only
    return jsonify(training.set_training(get_store(), name, body, principal().name, now()))


#: Training-configuration numbers stored in Integer columns of ``rounds`` (goal, min_clients, task_cap ...).
_TRAINING_INTS = ("goal", "min_clients", "buffer_size", "max_staleness")
#: The longest round deadline: far beyond any real round, and within what timestamps can represent.
MAX_DEADLINE_S = 10 * 365 * 86400.0


def _bounded_training(body: object) -> None:
    """Numbers of a training configuration bounded to what the storage holds (400 ``bad_training_config``).

    (The other checks are TrainingConfig's; these bounds are the storage's.)"""
    if not isinstance(body, dict):
        return
    def bad(key: str, why: str) -> ApiError:
        return ApiError(400, "bad_training_config", f"training config: {key} {why}")
    for key in _TRAINING_INTS:
        v = body.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) > schema.MAX_INT:
            raise bad(key, f"must be <= {schema.MAX_INT}, got {v!r}")
    goal, over = body.get("goal", 10), body.get("over_select", 1.3)
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (goal, over)) \
            and goal * over > schema.MAX_INT:
        raise bad("over_select", f"makes goal x over_select (tasks per round) larger than {schema.MAX_INT}")
    d = body.get("deadline_s")
    if isinstance(d, (int, float)) and not isinstance(d, bool) and d > MAX_DEADLINE_S:
        raise bad("deadline_s", f"must be <= {MAX_DEADLINE_S:g} seconds, got {d!r}")


@bp.get("/v1/models/<name>/training")
@requires("admin", "marketer")
def get_training(name: str):  # type: ignore[no-untyped-def]
    with get_store().read() as conn:
        require_access(conn, name, "training")
    return jsonify(get_rounds().get_training(name))
