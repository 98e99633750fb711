"""Ending the open rounds that a change of version, policy or training configuration makes stale."""
from __future__ import annotations

from sqlalchemy import Connection, select

from server.rounds.state import abandon_open
from server.storage import schema

__all__ = ["abandon_stale"]


def abandon_stale(conn: Connection, model: str, reason: str, now: float, *, with_lines: bool = False) -> list[str]:
    """Abandon the open round of ``model`` (and, ``with_lines``, of its regional lines); returns the round ids.

    A round runs under one base version, one policy and one training
    configuration: when one of them changes, its updates no longer fit and are
    dropped (the devices get new tasks)."""
    abandoned = abandon_open(conn, model, reason, now)
    if with_lines:
        for (line,) in conn.execute(select(schema.models.c.name).where(schema.models.c.line_of == model)
                                    .order_by(schema.models.c.name)).all():
            abandoned += abandon_open(conn, line, reason, now)
    return abandoned
