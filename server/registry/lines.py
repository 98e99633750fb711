"""Regional model lines ``<model>@<region>``: created from the model's current version, following its training.

Why in the registry: a line is a model of its own (its own row in ``models``
and its own version series, rounds and privacy ledgers), and creating one
writes its first version.  *Whether* a device trains a line is a governance
decision (:func:`server.governance.decisions.training_line`); the residency
rules themselves are documented in :mod:`server.governance.residency`.
"""
from __future__ import annotations

from sqlalchemy import Connection, select, update

from server.governance import audit
from server.governance.residency import line_name, lines_of
from server.registry.service import insert_version, manifest_of, record_event, version_row
from server.storage import schema

__all__ = ["ensure_line", "propagate_training"]


def ensure_line(conn: Connection, model: str, region: str, now: float, actor: str = "server") -> str:
    """The regional line of ``model`` for ``region``, created from the model's current version if new.

    Raises ``IntegrityError`` when another process created it concurrently (the caller then uses the name).
    """
    name = line_name(model, region)
    row = conn.execute(select(schema.models).where(schema.models.c.name == name)).first()
    if row is not None:
        return name
    base_model = conn.execute(select(schema.models).where(schema.models.c.name == model)).one()
    base = version_row(conn, model, base_model.current_version)
    conn.execute(schema.models.insert().values(name=name, current_version=None, training=base_model.training,
                                               agg_state=None, stopped=None, created_at=now, line_of=model,
                                               region=region))
    version, digest = insert_version(conn, name, manifest_of(base), "publish", None, now,
                                     metrics={"forked_from": {"model": model, "version": base.version}})
    record_event(conn, name, "line", version, actor, {"forked_from": model, "version": base.version,
                                                     "region": region}, now)
    audit.append(conn, now, [audit.Entry("line.created", name, actor, subject=f"v{version}",
                                         detail={"model": model, "region": region, "from_version": base.version,
                                                 "digest": digest})])
    return name


def propagate_training(conn: Connection, model: str, training_json: str) -> list[str]:
    """A model's training configuration applies to its regional lines too; returns the lines updated."""
    names = [r.name for r in lines_of(conn, model)]
    for name in names:
        conn.execute(update(schema.models).where(schema.models.c.name == name).values(training=training_json,
                                                                                      stopped=None))
    return names
