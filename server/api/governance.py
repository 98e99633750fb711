"""Governance endpoints: policies, the audit trail, partners and their devices, rounds of a model."""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from server.api.common import json_body, now
from server.api.models import require_access
from server.auth import principal, requires
from server.clock import iso
from server.errors import ApiError
from server.governance import audit, decisions, partners
from server.governance import policy as policies
from server.lifecycle.policy import set_policy
from server.registry.service import require_model
from server.rounds.service import get_rounds
from server.storage import get_store, schema

bp = Blueprint("governance", __name__)


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"query parameter {name} must be an integer, got {raw!r}") from None
    if not lo <= v <= hi:
        raise ApiError(400, "bad_request", f"query parameter {name} must be between {lo} and {hi}, got {v}")
    return v


@bp.put("/v1/models/<name>/policy")
@requires("admin")
def put_policy(name: str):  # type: ignore[no-untyped-def]
    return jsonify(set_policy(get_store(), name, json_body(), principal().name, now()))


@bp.get("/v1/models/<name>/policy")
@requires("admin", "marketer")
def get_policy(name: str):  # type: ignore[no-untyped-def]
    with get_store().read() as conn:
        pol = require_access(conn, name, "policy").policy
    if pol is None:
        raise ApiError(404, "no_policy", f"model {name!r} has no policy; set one with PUT /v1/models/{name}/policy")
    return jsonify({"model": name, "version": pol.version, "policy": pol.to_json()})


@bp.get("/v1/models/<name>/policy/history")
@requires("admin")
def policy_history(name: str):  # type: ignore[no-untyped-def]
    with get_store().read() as conn:
        require_model(conn, name)
        return jsonify({"model": name, "versions": policies.history(conn, name)})


@bp.get("/v1/audit")
@requires("admin")
def audit_entries():  # type: ignore[no-untyped-def]
    after = _int_arg("after", 0, 0, 2**62)
    limit = _int_arg("limit", 100, 1, 1000)
    get_rounds().committer.flush()  # records queued by this process's answered requests (downloads) first
    with get_store().read() as conn:
        entries = audit.read(conn, after=after, limit=limit, model=request.args.get("model"),
                             kind=request.args.get("kind"))
        head = audit.head(conn)
    return jsonify({"entries": entries, "head": head})


@bp.get("/v1/audit/verify")
@requires("admin")
def audit_verify():  # type: ignore[no-untyped-def]
    get_rounds().committer.flush()
    with get_store().read() as conn:
        return jsonify(audit.verify_conn(conn).to_json())


@bp.get("/v1/partners")
@requires("admin")
def list_partners():  # type: ignore[no-untyped-def]
    with get_store().read() as conn:
        return jsonify({"partners": partners.partners(conn)})


@bp.get("/v1/devices")
@requires("admin", "marketer")
def list_devices():  # type: ignore[no-untyped-def]
    who = principal()
    partner = partners.scoped_partner(who, request.args.get("partner"))
    with get_store().read() as conn:
        return jsonify({"partner": partner, "devices": partners.devices(conn, partner, _int_arg("limit", 1000, 1, 10000))})


@bp.get("/v1/models/<name>/rounds")
@requires("admin", "marketer")
def list_rounds(name: str):  # type: ignore[no-untyped-def]
    limit = _int_arg("limit", 100, 1, 1000)
    get_rounds().committer.flush()  # records queued by this process's answered requests (downloads) first
    with get_store().read() as conn:
        allowed = require_access(conn, name, "rounds")
        r = schema.rounds
        rows = conn.execute(select(r).where(r.c.model == name).order_by(r.c.created_at.desc()).limit(limit)).all()
        k = decisions.k_min(allowed.policy)
    out = []
    for row in reversed(rows):
        shown = decisions.shown(row.accepted, k) if row.accepted else 0  # an empty round reveals no one
        out.append({"round_id": row.id, "seq": row.seq, "mode": row.mode, "state": row.state, "version": row.version,
                    "accepted": shown, "goal": row.goal, "result_version": row.result_version,
                    "opened_at": iso(row.created_at), "closed_at": iso(row.closed_at), "reason": row.reason})
    return jsonify({"model": name, "k_min": k, "rounds": out})
