"""Federated evaluation endpoints: evaluation tasks and reports (devices), summaries and gate decisions."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from server.api.bodies import read_body
from server.api.common import json_body, now, refuse_withdrawn_consent
from server.api.models import int_arg, require_access
from server.auth import principal, requires
from server.errors import ApiError
from server.governance import access, evaluation
from server.governance.policy import current_policy
from server.lifecycle import gate
from server.registry.service import require_model, version_row
from server.rounds.service import get_rounds
from server.storage import get_store, schema

bp = Blueprint("evaluation", __name__)


@bp.post("/v1/evaluations/tasks")
@requires("device")
def evaluation_task():  # type: ignore[no-untyped-def]
    """What this device should evaluate: the target version (candidate or current), its baseline and variants."""
    who = principal()
    model = json_body().get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "bad_request", "body must be {\"model\": \"<model name>\"}")
    with get_store().read() as conn:
        require_model(conn, model)
        policy = current_policy(conn, model)
    if policy is not None:
        model = get_rounds().governed_target(policy, who, model)
    with get_store().write() as conn:
        m = require_model(conn, model)
        target = m.candidate if m.candidate is not None else m.current_version
        if target is None:
            raise ApiError(409, "no_task", f"model {model!r} has no version to evaluate", retry_after=30)
        roles = evaluation.versions_under_evaluation(conn, model, target)
        access.record_evaluation_task(conn, who, model, target, now())  # scopes the device's downloads
    return jsonify({
        "model": model, "target": target, "purpose": policy.purpose if policy else None,
        "consent_purposes": list(policy.consent_purposes) if policy else None,
        "consent_signals": policy.consent_signals if policy else None,
        "versions": [dict(meta, version=v, manifest_url=f"/v1/models/{model}/versions/{v}/manifest")
                     for v, meta in sorted(roles.items())],
        "report_url": f"/v1/evaluations/{model}/{target}/reports",
        "segments": "report segment 'all' (the whole local holdout) and optionally named subsets",
    })


@bp.post("/v1/evaluations/<model>/<int:target>/reports")
@requires("device")
def evaluation_reports(model: str, target: int):  # type: ignore[no-untyped-def]
    who = principal()
    refuse_withdrawn_consent(who)
    if target > schema.MAX_INT:
        raise ApiError(404, "unknown_version", f"model {model!r} has no version {target}")
    raw = read_body()
    body = json_body()
    with get_store().read() as conn:
        require_model(conn, model)
        policy = current_policy(conn, model)
    if policy is not None:
        if get_rounds().governed_target(policy, who, model) != model:
            raise ApiError(403, "policy_denied", f"devices of region {who.region!r} evaluate their regional line, "
                                                 f"not {model!r}", extra={"reason": "region_exports_nothing"})
    store = get_store()
    with store.write() as conn:
        version_row(conn, model, target)
        roles = evaluation.versions_under_evaluation(conn, model, target)
        rows = evaluation.parse_reports(body, roles)
        n = evaluation.store_reports(conn, model, target, who.device_id or who.name, who.region or "default",
                                     who.partner or "default", rows, len(raw), now())
    decision = None
    if policy is not None and policy.gate is not None:
        with store.write() as conn:
            decision = gate.decide(conn, model, target, policy, now())
    return jsonify({"accepted": n, "model": model, "target": target, "decision": decision}), 202


@bp.get("/v1/models/<name>/evaluations")
@requires("admin", "marketer")
def evaluation_summary(name: str):  # type: ignore[no-untyped-def]
    raw = request.args.get("target")
    asked = int_arg("target", raw, lo=1)
    with get_store().read() as conn:
        allowed = require_access(conn, name, "evaluations")
        if asked is None:
            target = evaluation.latest_target(conn, name)
            if target is None:
                raise ApiError(404, "no_evaluation", f"no device has reported an evaluation of {name!r} yet")
        else:
            target = asked
            version_row(conn, name, target)
        return jsonify(evaluation.summarize(conn, name, target, allowed.policy))


@bp.post("/v1/models/<name>/candidates/<int:version>/decide")
@requires("admin")
def decide(name: str, version: int):  # type: ignore[no-untyped-def]
    force = bool(json_body(optional=True).get("force", False))
    if version > schema.MAX_INT:
        raise ApiError(404, "unknown_version", f"model {name!r} has no version {version}")
    with get_store().write() as conn:
        m = require_model(conn, name)
        policy = current_policy(conn, name)
        row = version_row(conn, name, version)
        if row.status != "candidate" or m.candidate != version:
            raise ApiError(409, "not_candidate", f"version {version} of {name!r} is {row.status or 'published'!r}, "
                                                 "not the pending candidate")
        if policy is None:
            raise ApiError(409, "no_policy", f"{name!r} has no policy, so no gate")
        out = gate.decide(conn, name, version, policy, now(), actor=principal().name, force=force)
    if out is None:
        raise ApiError(409, "gate_pending", "not enough devices have evaluated the candidate yet; wait or send "
                                            "{\"force\": true} to decide now (it is then refused: too_few_evaluators)")
    return jsonify({"model": name, "version": version, "decision": out})
