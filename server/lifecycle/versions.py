"""Publishing an artifact as a new current version, and rolling back to an earlier one.

Both make another version current, so both also end the open round (its
updates were computed against the old base), supersede a pending candidate
and reset the server optimizer's moments (momentum of another trajectory must
not be applied to the new base) while the privacy ledger is kept (epsilon
counts every release ever made).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy.exc import IntegrityError

from server.errors import ApiError
from server.governance import audit
from server.lifecycle.rounds import abandon_stale
from server.registry import service as registry
from server.registry.artifacts import Artifact
from server.storage import BlobStore, Store

__all__ = ["publish", "rollback"]


def publish(store: Store, blobs: BlobStore, name: str, artifact: Artifact, parent: int | None, actor: str,
            now: float) -> tuple[dict[str, Any], bool]:
    """Make ``artifact`` a new current version of ``name``; returns (answer, created).

    Publishing the same content again returns the existing version (created False)."""
    registry.check_model_name(name)
    for data in artifact.files.values():
        blobs.put(data)  # durable before the version row that points at it is committed
    key = registry.content_key(dataclasses.replace(artifact.manifest, model=name))
    for _ in range(3):
        try:
            with store.write() as conn:
                registry.ensure_model(conn, name, now)
                same = registry.same_content(conn, name, key)
                if same is not None:
                    return {"model": name, "version": same.version, "digest": same.digest}, False
                if parent is not None:
                    registry.version_row(conn, name, parent)
                superseded = registry.supersede_candidate(conn, name, "a new artifact was published")
                version, digest = registry.insert_version(conn, name, artifact.manifest, "publish", parent, now)
                abandoned = abandon_stale(conn, name, f"version {version} published", now)
                registry.reset_optimizer(conn, name)
                registry.record_event(conn, name, "publish", version, actor, {"digest": digest, "parent": parent}, now)
                audit.append(conn, now, [audit.Entry("version.published", name, actor, code="artifact",
                                                     subject=f"v{version}", detail={"version": version, "digest": digest,
                                                                                    "parent": parent})]
                             + superseded + registry.abandoned_entries(name, actor, "version_published", abandoned))
                return {"model": name, "version": version, "digest": digest}, True
        except IntegrityError:
            continue  # a concurrent publish took the version number; try the next one
    raise ApiError(503, "unavailable", "concurrent publishes of this model; retry", retry_after=1)


def rollback(store: Store, name: str, version: int, actor: str, now: float) -> dict[str, Any]:
    """Make the published ``version`` current again."""
    with store.write() as conn:
        model = registry.require_model(conn, name)
        row = registry.version_row(conn, name, version)
        if row.status not in registry.PUBLISHABLE:
            raise ApiError(409, "not_publishable", f"version {version} of {name!r} is {row.status!r}: only published "
                                                   "versions can be made current (a candidate passes its gate first)")
        superseded = registry.supersede_candidate(conn, name, f"rolled back to version {version}")
        registry.make_current(conn, name, version)
        abandoned = abandon_stale(conn, name, f"rolled back to version {version}", now)
        registry.reset_optimizer(conn, name)
        registry.record_event(conn, name, "rollback", version, actor, {"from": model.current_version, "to": version},
                              now)
        audit.append(conn, now, [audit.Entry("version.rolled_back", name, actor, subject=f"v{version}",
                                             detail={"from": model.current_version, "to": version})]
                     + superseded + registry.abandoned_entries(name, actor, "rolled_back", abandoned))
        return {"model": name, "current_version": version, "previous_version": model.current_version,
                "digest": row.digest}
