"""Round states and ending a round without aggregating it.

A round is ``open`` until it is ``closed`` (aggregated, :mod:`server.rounds.aggregate`)
or ``abandoned``: at its deadline with too few updates (:func:`abandon`), when
its privacy budget is spent, or when a use case of :mod:`server.lifecycle`
changes what the round was training (publish, rollback, policy, training
configuration).  Every transition is a conditional ``UPDATE ... WHERE
state='open'``, so when processes race exactly one of them makes it.
"""
from __future__ import annotations

from sqlalchemy import Connection, delete, select, update

from server.governance import audit
from server.rounds.sums import RoundSums
from server.storage import Store, schema

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
    """Abandon one round if it is still open (True if this call did it); its stored updates and sums are deleted."""
    res = conn.execute(update(schema.rounds).where(schema.rounds.c.id == round_id, schema.rounds.c.state == OPEN)
                       .values(state=ABANDONED, open_key=None, closed_at=now, reason=reason))
    if res.rowcount != 1:
        return False
    conn.execute(delete(schema.updates).where(schema.updates.c.round_id == round_id))
    RoundSums.discard(conn, round_id)
    return True


def abandon(store: Store, round_id: str, reason: str, now: float) -> bool:
    """Abandon one round at its deadline (audited ``round.abandoned`` / ``deadline``); True if this call did it."""
    with store.write() as conn:
        done = abandon_round(conn, round_id, reason, now)
        if done:
            model = conn.execute(select(schema.rounds.c.model).where(schema.rounds.c.id == round_id)).scalar_one()
            audit.append_one(conn, now, "round.abandoned", model=model, code="deadline", subject=round_id,
                             detail={"reason": reason})
        return done
