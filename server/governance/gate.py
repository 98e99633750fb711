"""The publish gate: a round's candidate becomes current only if it passes.

Why a gate: a round can make a model worse (a bad partner's data, drift,
too few contributors, noise); under a policy with a gate the round's result is
stored as a *candidate* (``versions.status = 'candidate'``, the model's
``candidate``), training pauses, devices evaluate candidate and current
version side by side (server.governance.evaluation), and this module decides:

* ``too_few_contributors`` - the candidate was formed from fewer updates than ``gate.min_contributors``;
* ``privacy_budget_exceeded`` - its epsilon exceeds ``gate.max_epsilon`` (or it has no finite epsilon);
* ``metric_regression`` - the gate metric is worse than the baseline's by more than ``gate.max_regression``
  (both measured in the same federated evaluation);
* ``too_few_evaluators`` - fewer than ``gate.min_evaluators`` devices reported (only when an admin
  forces a decision; otherwise the decision waits).

Passed: the candidate becomes current (status ``published``).  Refused: status
``refused``, the current version stays, the server optimizer's momentum is
reset (it contains the refused step); the privacy ledger keeps the spent
epsilon.  Either way the decision (reasons, metrics) is stored on the version,
appended to the lineage (``gate`` history entry) and to the audit trail.
"""
from __future__ import annotations

import json
import math
from typing import Any

from sqlalchemy import Connection, select, update

from server.governance import audit
from server.governance.evaluation import summarize
from server.governance.policy import Policy
from server.storage import schema


def decide(conn: Connection, model: str, target: int, policy: Policy, now: float, *, actor: str = "server",
           force: bool = False) -> dict[str, Any] | None:
    """Decide the candidate ``target`` (inside the caller's write transaction); None while still waiting."""
    from server.registry.service import record_event, version_row
    from server.rounds.aggregate import reset_optimizer

    row = version_row(conn, model, target)
    if row.status != "candidate":
        return json.loads(row.gate) if row.gate else None
    gate = policy.gate
    summary = summarize(conn, model, target, policy, public=False)
    raw = summary["_raw"]
    metric, higher = summary["metric"], summary["higher_is_better"]
    reasons: list[dict[str, Any]] = []
    min_contrib = gate.min_contributors if gate else 1
    if row.contributors < min_contrib:
        reasons.append({"code": "too_few_contributors",
                        "message": f"formed from {row.contributors} updates; the gate needs {min_contrib}"})
    if gate is not None and gate.max_epsilon is not None:
        eps = row.epsilon
        if eps is None or not math.isfinite(eps) or eps > gate.max_epsilon:
            reasons.append({"code": "privacy_budget_exceeded",
                            "message": f"epsilon {eps} exceeds the gate's max_epsilon {gate.max_epsilon}"
                            if eps is not None else "the candidate has no finite epsilon (no DP noise)"})
    evaluators = int(summary["evaluators"])
    need = gate.min_evaluators if gate else 1
    if evaluators < need:
        if not force:
            return None
        reasons.append({"code": "too_few_evaluators", "message": f"{evaluators} devices evaluated it; the gate needs {need}"})
    baseline = next((int(v) for v, m in summary["versions"].items() if m["role"] == "baseline"), None)
    cand_val = raw.get(target, {}).get("overall", {}).get(metric)
    base_val = raw.get(baseline, {}).get("overall", {}).get(metric) if baseline is not None else None
    regression = None
    if cand_val is not None and base_val is not None:
        regression = (base_val - cand_val) if higher else (cand_val - base_val)
        if regression > (gate.max_regression if gate else 0.0) + 1e-12:
            reasons.append({"code": "metric_regression",
                            "message": f"{metric} {cand_val:.4f} vs baseline {base_val:.4f}: regression "
                                       f"{regression:.4f} > max_regression {gate.max_regression if gate else 0.0}"})
    elif evaluators >= need and cand_val is None:
        reasons.append({"code": "metric_unavailable", "message": f"{metric} could not be computed from the reports"})
    passed = not reasons
    show = evaluators >= policy.k_min  # metric values leave the server only above k_min
    decision = {"passed": passed, "reasons": reasons, "metric": metric, "evaluators": evaluators if show else None,
                "candidate": cand_val if show else None, "baseline": base_val if show else None,
                "baseline_version": baseline, "regression": regression if show else None, "decided_at": now,
                "actor": actor, "policy_version": policy.version,
                "reference_population": raw.get(target, {}).get("overall", {}).get("_population")}
    conn.execute(update(schema.versions).where(schema.versions.c.model == model, schema.versions.c.version == target)
                 .values(status="published" if passed else "refused", gate=json.dumps(decision, sort_keys=True)))
    m = conn.execute(select(schema.models).where(schema.models.c.name == model)).one()
    values: dict[str, Any] = {"candidate": None}
    if passed:
        values["current_version"] = target
    else:
        values["agg_state"] = reset_optimizer(m.agg_state)
    conn.execute(update(schema.models).where(schema.models.c.name == model).values(**values))
    public = {k: v for k, v in decision.items() if k != "reference_population"}
    record_event(conn, model, "gate", target, actor, public, now)
    code = "gate_passed" if passed else reasons[0]["code"]
    audit.append(conn, now, [audit.Entry("version.published" if passed else "version.refused", model, actor,
                                         code=code, subject=f"v{target}", detail=public)])
    return public
