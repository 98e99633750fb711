"""The model registry: immutable, content-addressed versions with lineage.

A version is a manifest plus the files it hashes.  Its address (``digest``) is
``fedmark.contract.manifest_digest`` of the stored manifest, whose ``model`` and
``version`` fields the server sets.  Publishing the same content again (same
files, same manifest apart from version number) returns the existing version.
Versions written by a round reuse the parent's graphs and carry a new
``params.bin``; files are stored once per content hash (``BlobStore``).
Every publish, round and rollback appends a lineage/audit event.

This module holds the registry's own operations (inside the caller's
transaction); the use cases that also end rounds - publish and rollback - are
in :mod:`server.lifecycle.versions`, regional lines in :mod:`server.registry.lines`.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import numpy as np
from sqlalchemy import Connection, bindparam, func, select, update

from fedmark.contract import Manifest, manifest_digest, params_file
from server.aggregation import reset_optimizer as reset_optimizer_state
from server.clock import iso
from server.errors import ApiError
from server.governance import audit
from server.registry.artifacts import params_from_bytes
from server.storage import BlobStore, Store, schema

# A name starts with a letter or digit: "." and ".." (and hidden-file names) would read as paths in URLs and logs.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_model_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ApiError(400, "bad_request", f"model name {name!r} must be 1-128 characters from A-Z a-z 0-9 . _ -, "
                                           "starting with a letter or digit")
    return name


def content_key(m: Manifest) -> str:
    return manifest_digest(dataclasses.replace(m, version=0))


def record_event(conn: Connection, model: str, kind: str, version: int | None, actor: str,
                 detail: dict[str, Any], now: float) -> None:
    conn.execute(schema.events.insert().values(model=model, kind=kind, version=version, actor=actor,
                                               detail=json.dumps(detail, sort_keys=True), at=now))


# Built once: device requests (tasks, downloads) read these on every call.
_MODEL = select(schema.models).where(schema.models.c.name == bindparam("name"))
_VERSION = select(schema.versions).where(schema.versions.c.model == bindparam("name"),
                                         schema.versions.c.version == bindparam("version"))


def model_row(conn: Connection, name: str) -> Any:
    return conn.execute(_MODEL, {"name": name}).first()


def require_model(conn: Connection, name: str) -> Any:
    row = model_row(conn, name)
    if row is None:
        raise ApiError(404, "unknown_model", f"no model named {name!r}; publish one with POST /v1/models/{name}/versions")
    return row


def version_row(conn: Connection, name: str, version: int) -> Any:
    row = conn.execute(_VERSION, {"name": name, "version": version}).first()
    if row is None:
        raise ApiError(404, "unknown_version", f"model {name!r} has no version {version}; GET /v1/models/{name} lists them")
    return row


def manifest_of(row: Any) -> Manifest:
    return Manifest.loads(row.manifest)


def load_params(blobs: BlobStore, m: Manifest) -> np.ndarray:
    """The global parameters of a version as a flat float32 vector (manifest order)."""
    return params_from_bytes(m, blobs.get(m.files[params_file(m)]))


def version_json(row: Any) -> dict[str, Any]:
    return {"version": row.version, "digest": row.digest, "kind": row.kind, "parent": row.parent,
            "round_id": row.round_id, "contributors": row.contributors, "metrics": json.loads(row.metrics),
            "epsilon": row.epsilon, "delta": row.delta, "created_at": iso(row.created_at),
            "status": row.status or "published", "gate": json.loads(row.gate) if row.gate else None}


#: Version statuses that may be current (a candidate becomes "published" only through its gate).
PUBLISHABLE = (None, "published")


def insert_version(conn: Connection, name: str, m: Manifest, kind: str, parent: int | None, now: float,
                    status: str | None = None, **lineage: Any) -> tuple[int, str]:
    """Insert the next version number of ``name`` with manifest ``m`` (version field rewritten).

    The new version becomes current unless its ``status`` says otherwise (candidate, variant)."""
    nxt = int(conn.execute(select(func.coalesce(func.max(schema.versions.c.version), 0))
                           .where(schema.versions.c.model == name)).scalar_one()) + 1
    final = dataclasses.replace(m, model=name, version=nxt)
    digest = manifest_digest(final)
    conn.execute(schema.versions.insert().values(
        model=name, version=nxt, digest=digest, content_key=content_key(final), kind=kind,
        manifest=json.dumps(final.to_json(), sort_keys=True), parent=parent, created_at=now,
        round_id=lineage.get("round_id"), contributors=int(lineage.get("contributors", 0)),
        metrics=json.dumps(lineage.get("metrics", {}), sort_keys=True),
        epsilon=lineage.get("epsilon"), delta=lineage.get("delta"), status=status))
    if status in PUBLISHABLE:
        conn.execute(update(schema.models).where(schema.models.c.name == name).values(current_version=nxt))
    elif status in ("candidate", "regional"):  # regional: held for the coordinator (server.federation)
        conn.execute(update(schema.models).where(schema.models.c.name == name).values(candidate=nxt))
    return nxt, digest


def reset_optimizer(conn: Connection, name: str) -> None:
    """Forget the model's server-optimizer moments (its current version changed); the privacy ledger stays."""
    blob = conn.execute(select(schema.models.c.agg_state).where(schema.models.c.name == name)).scalar_one_or_none()
    if blob:
        conn.execute(update(schema.models).where(schema.models.c.name == name)
                     .values(agg_state=reset_optimizer_state(blob)))


def ensure_model(conn: Connection, name: str, now: float) -> None:
    """Create the model's row on its first publish."""
    if model_row(conn, name) is None:
        conn.execute(schema.models.insert().values(name=name, current_version=None, training=None,
                                                   agg_state=None, stopped=None, created_at=now))


def same_content(conn: Connection, name: str, key: str) -> Any:
    """The published version of ``name`` with content key ``key`` (see :func:`content_key`), if any."""
    return conn.execute(select(schema.versions).where(
        schema.versions.c.model == name, schema.versions.c.content_key == key,
        schema.versions.c.kind == "publish")).first()


def make_current(conn: Connection, name: str, version: int) -> None:
    """Point the model at ``version`` (the caller checked it may be current)."""
    conn.execute(update(schema.models).where(schema.models.c.name == name).values(current_version=version))


def supersede_candidate(conn: Connection, name: str, why: str) -> list[audit.Entry]:
    """A pending candidate loses its chance when another version is made current: mark it refused."""
    cand = conn.execute(select(schema.models.c.candidate).where(schema.models.c.name == name)).scalar_one_or_none()
    if cand is None:
        return []
    conn.execute(update(schema.versions).where(schema.versions.c.model == name, schema.versions.c.version == cand,
                                               schema.versions.c.status == "candidate")
                 .values(status="refused", gate=json.dumps({"passed": False, "reasons": [
                     {"code": "superseded", "message": why}]}, sort_keys=True)))
    conn.execute(update(schema.models).where(schema.models.c.name == name).values(candidate=None))
    return [audit.Entry("version.refused", name, "server", code="superseded", subject=f"v{cand}",
                        detail={"version": cand, "reason": why})]


def abandoned_entries(model: str, actor: str, code: str, round_ids: list[str]) -> list[audit.Entry]:
    return [audit.Entry("round.abandoned", model, actor, code=code, subject=rid) for rid in round_ids]


def add_round_version(conn: Connection, blobs: BlobStore, name: str, base: Any, new_params: np.ndarray, *,
                      round_id: str, contributors: int, metrics: dict[str, Any], epsilon: float | None,
                      delta: float | None, now: float, status: str | None = None,
                      kind: str = "round") -> tuple[int, str]:
    """Write the version a round produced: the base's graphs with new parameters (inside the caller's transaction).

    ``status``: None (current at once), ``"candidate"`` (awaits its publish gate), ``"regional"`` (a regional
    server's held result, pushed to its coordinator) or ``"variant"`` (a leave-one-partner-out model for
    evaluation only; no lineage event).  ``kind`` ``"federated"``: a regional server's copy of a global version."""
    m = manifest_of(base)
    pname = params_file(m)
    data = np.ascontiguousarray(new_params, dtype="<f4").tobytes()
    if len(data) != 4 * m.num_params:
        raise ValueError(f"new parameters have {len(data) // 4} values, the manifest needs {m.num_params}")
    digest_params = blobs.put(data)
    files = dict(m.files)
    files[pname] = digest_params
    new_m = dataclasses.replace(m, files=files)
    version, digest = insert_version(conn, name, new_m, kind, base.version, now, status=status,
                                      round_id=round_id, contributors=contributors, metrics=metrics, epsilon=epsilon,
                                      delta=delta)
    if status != "variant":
        record_event(conn, name, kind, version, "server", {"round_id": round_id, "parent": base.version,
                                                              "contributors": contributors, "status": status}, now)
    return version, digest


def list_models(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        counts = dict(conn.execute(select(schema.versions.c.model, func.count()).group_by(schema.versions.c.model)).all())
        rows = conn.execute(select(schema.models).order_by(schema.models.c.name)).all()
    return [{"name": r.name, "current_version": r.current_version, "num_versions": int(counts.get(r.name, 0)),
             "training": r.training is not None, "stopped": r.stopped, "candidate": r.candidate,
             "line_of": r.line_of, "region": r.region} for r in rows]


def model_detail(store: Store, name: str) -> dict[str, Any]:
    with store.read() as conn:
        model = require_model(conn, name)
        vers = conn.execute(select(schema.versions).where(schema.versions.c.model == name)
                            .order_by(schema.versions.c.version)).all()
        evs = conn.execute(select(schema.events).where(schema.events.c.model == name)
                           .order_by(schema.events.c.id)).all()
    return {"name": name, "current_version": model.current_version, "stopped": model.stopped,
            "candidate": model.candidate, "line_of": model.line_of, "region": model.region,
            "versions": [version_json(v) for v in vers],
            "history": [{"kind": e.kind, "version": e.version, "actor": e.actor, "detail": json.loads(e.detail),
                         "at": iso(e.at)} for e in evs]}
