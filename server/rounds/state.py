"""Low-level round state changes shared by the registry and the round service.

Kept apart (and free of imports from ``server.registry``) so that publishing or
rolling back a version can end the open round without a circular import.
"""
from __future__ import annotations

from sqlalchemy import Connection, delete, select, update

from server.storage import schema

OPEN, CLOSED, ABANDONED = "open", "closed", "abandoned"


def abandon_open(conn: Connection, model: str, reason: str, now: float) -> list[str]:
    """End the model's open round without aggregating it; its stored updates are deleted.

    Uses ``WHERE state='open'`` so that, when two processes race, exactly one
    transition happens.  Returns the ids of the rounds it abandoned.
    """
    ids = [r[0] for r in conn.execute(select(schema.rounds.c.id).where(schema.rounds.c.model == model,
                                                                       schema.rounds.c.state == OPEN))]
    return [rid for rid in ids if abandon_round(conn, rid, reason, now)]


def abandon_round(conn: Connection, round_id: str, reason: str, now: float) -> bool:
    """Abandon one round if it is still open (True if this call did it); its stored updates are deleted."""
    res = conn.execute(update(schema.rounds).where(schema.rounds.c.id == round_id, schema.rounds.c.state == OPEN)
                       .values(state=ABANDONED, open_key=None, closed_at=now, reason=reason))
    if res.rowcount != 1:
        return False
    conn.execute(delete(schema.updates).where(schema.updates.c.round_id == round_id))
    return True
