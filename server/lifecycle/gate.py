"""Applying the publish gate's decision: a candidate becomes current, or is refused.

The decision itself is :func:`server.governance.gate.judge` (reads only); this
use case writes it: the version's status and stored decision, the model's
current version (passed) or a reset server optimizer (refused: its moments
contain the refused step; the privacy ledger keeps the spent epsilon), the
lineage event and the audit entry.
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, update

from server.governance import audit
from server.governance.gate import judge, public_decision
from server.governance.policy import Policy
from server.registry import service as registry
from server.storage import schema

__all__ = ["decide"]


def decide(conn: Connection, model: str, target: int, policy: Policy, now: float, *, actor: str = "server",
           force: bool = False) -> dict[str, Any] | None:
    """Decide the candidate ``target`` (inside the caller's write transaction); None while still waiting.

    A version that is no longer a candidate answers its stored decision (or None)."""
    row = registry.version_row(conn, model, target)
    if row.status != "candidate":
        return json.loads(row.gate) if row.gate else None
    decision = judge(conn, model, row, policy, now, actor=actor, force=force)
    if decision is None:
        return None
    passed = bool(decision["passed"])
    conn.execute(update(schema.versions).where(schema.versions.c.model == model, schema.versions.c.version == target)
                 .values(status="published" if passed else "refused", gate=json.dumps(decision, sort_keys=True)))
    conn.execute(update(schema.models).where(schema.models.c.name == model).values(candidate=None))
    if passed:
        registry.make_current(conn, model, target)
    else:
        registry.reset_optimizer(conn, model)
    public = public_decision(decision)
    registry.record_event(conn, model, "gate", target, actor, public, now)
    code = "gate_passed" if passed else decision["reasons"][0]["code"]
    audit.append(conn, now, [audit.Entry("version.published" if passed else "version.refused", model, actor,
                                         code=code, subject=f"v{target}", detail=public)])
    return public
