"""Setting a model's governance policy: a new policy version, and the end of the rounds run under the old one.

Validation and storage of the policy are :mod:`server.governance.policy`; this
use case also abandons the open rounds of the model and of its regional lines
(a round runs under one policy: its tasks carried the old version) and records
the change in the lineage and the audit trail.
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from server.governance import audit
from server.governance.policy import Policy, check_applicable, purpose_warnings, store_policy
from server.lifecycle.rounds import abandon_stale
from server.registry.service import record_event, require_model
from server.storage import Store, schema

__all__ = ["set_policy"]


def set_policy(store: Store, model: str, body: Any, actor: str, now: float) -> dict[str, Any]:
    """Validate and store a new policy version; the open rounds are abandoned (a round runs under one policy)."""
    policy = Policy.from_json(body)
    check_applicable(model, policy, None)
    warnings: list[str] = []
    with store.write() as conn:
        row = require_model(conn, model)
        check_applicable(model, policy, json.loads(row.training) if row.training is not None else None)
        if row.current_version is not None:
            man = json.loads(conn.execute(select(schema.versions.c.manifest).where(
                schema.versions.c.model == model, schema.versions.c.version == row.current_version)).scalar_one())
            warnings += purpose_warnings(policy, man)
        version, digest = store_policy(conn, model, policy, actor, now)
        abandoned = abandon_stale(conn, model, f"policy version {version} set", now, with_lines=True)
        record_event(conn, model, "policy", row.current_version, actor, {"policy_version": version, "digest": digest}, now)
        entries = [audit.Entry("policy.set", model, actor, subject=f"policy:{version}",
                               detail={"version": version, "digest": digest, "policy": policy.to_json()})]
        entries += [audit.Entry("round.abandoned", model, actor, code="policy_changed", subject=rid) for rid in abandoned]
        audit.append(conn, now, entries)
    return {"model": model, "version": version, "digest": digest, "policy": policy.to_json(), "warnings": warnings}
