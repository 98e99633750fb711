"""Partners (tenants) in cross-brand collaboration: who may see what.

A partner is a tenant with its own fleet and keys: app keys are issued per
partner, every device belongs to the partner of the app key it enrolled with,
and marketer tokens may be bound to a partner.  A partner-bound token sees
its own devices and the models shared with it (the rule is
server.governance.access, the one decision of every model-reading route) (a model is shared with the
partners its policy allows; an ungoverned model with nobody), never another
partner's devices.  Admins and unbound marketers see everything.  What each
partner's data contributed to a shared model is measured by leave-one-partner-
out evaluation (server.governance.evaluation / kpis).
"""
from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import Connection, func, select

from server.auth.tokens import Principal
from server.clock import iso
from server.errors import ApiError
from server.governance import decisions
from server.governance.policy import current_policy
from server.storage import schema


def scoped_partner(who: Principal, requested: str | None = None) -> str | None:
    """The partner a request may look at: a partner-bound token is pinned to its own (403 for any other)."""
    if who.role == "admin" or who.partner is None:
        return requested
    if requested is not None and requested != who.partner:
        raise ApiError(403, "forbidden", f"this token belongs to partner {who.partner!r}; it cannot see partner "
                                         f"{requested!r}'s devices")
    return who.partner


def attested(conn: Connection, device_ids: Iterable[str]) -> dict[str, bool]:
    """device id -> attested (``devices.attested``: the attestation verifier vouched for it at enrolment)."""
    ids = sorted(set(device_ids))
    out = {i: False for i in ids}
    d = schema.devices
    for start in range(0, len(ids), 500):
        for row in conn.execute(select(d.c.device_id, d.c.attested).where(d.c.device_id.in_(ids[start:start + 500]))):
            out[row.device_id] = bool(row.attested)
    return out


def devices(conn: Connection, partner: str | None, limit: int = 1000) -> list[dict[str, Any]]:
    d = schema.devices
    q = select(d.c.device_id, d.c.region, d.c.partner, d.c.created_at).order_by(d.c.device_id).limit(limit)
    if partner is not None:
        q = q.where(d.c.partner == partner)
    return [{"device_id": r.device_id, "region": r.region, "partner": r.partner, "enrolled_at": iso(r.created_at)}
            for r in conn.execute(q)]


def partners(conn: Connection) -> list[dict[str, Any]]:
    d, k = schema.devices, schema.app_keys
    dev = dict(conn.execute(select(d.c.partner, func.count()).group_by(d.c.partner)).all())
    keys = dict(conn.execute(select(k.c.partner, func.count()).group_by(k.c.partner)).all())
    names = sorted(set(dev) | set(keys))
    shared: dict[str, list[str]] = {n: [] for n in names}
    for (m,) in conn.execute(select(schema.models.c.name).where(schema.models.c.line_of.is_(None))):
        pol = current_policy(conn, m)
        for n in names:
            if decisions.shared_with(pol, n):
                shared[n].append(m)
    return [{"partner": n, "devices": int(dev.get(n, 0)), "app_keys": int(keys.get(n, 0)), "shared_models": shared[n]}
            for n in names]
