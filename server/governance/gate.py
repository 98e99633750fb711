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

This module only *decides* (it reads the evaluation reports and the
candidate's row).  Applying the decision is a use case of
:mod:`server.lifecycle.gate`: passed, the candidate becomes current (status
``published``); refused, status ``refused``, the current version stays, the
server optimizer's momentum is reset (it contains the refused step); the
privacy ledger keeps the spent epsilon.  Either way the decision (reasons,
metrics) is stored on the version, appended to the lineage (``gate`` history
entry) and to the audit trail.
"""
from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Connection

from server.governance import decisions
from server.governance.evaluation import summarize
from server.governance.policy import Policy

__all__ = ["judge", "public_decision"]


def judge(conn: Connection, model: str, candidate: Any, policy: Policy, now: float, *, actor: str = "server",
          force: bool = False) -> dict[str, Any] | None:
    """The gate's decision on the candidate version row ``candidate``; None while it still waits for evaluators.

    Reads only: applying the decision (status, current version, optimizer reset,
    lineage, audit) is :func:`server.lifecycle.gate.decide`.  The decision
    holds ``reference_population`` for later drift checks; strip it with
    :func:`public_decision` before it leaves the server.
    """
    target = int(candidate.version)
    gate = policy.gate
    summary = summarize(conn, model, target, policy, public=False)
    raw = summary["_raw"]
    metric, higher = summary["metric"], summary["higher_is_better"]
    reasons: list[dict[str, Any]] = []
    min_contrib = gate.min_contributors if gate else 1
    if candidate.contributors < min_contrib:
        reasons.append({"code": "too_few_contributors",
                        "message": f"formed from {candidate.contributors} updates; the gate needs {min_contrib}"})
    if gate is not None and gate.max_epsilon is not None:
        eps = candidate.epsilon
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
    show = not decisions.suppressed(evaluators, policy.k_min)  # metric values leave the server only above k_min
    return {"passed": passed, "reasons": reasons, "metric": metric, "evaluators": evaluators if show else None,
            "candidate": cand_val if show else None, "baseline": base_val if show else None,
            "baseline_version": baseline, "regression": regression if show else None, "decided_at": now,
            "actor": actor, "policy_version": policy.version,
            "reference_population": raw.get(target, {}).get("overall", {}).get("_population")}


def public_decision(decision: dict[str, Any]) -> dict[str, Any]:
    """The decision as answered and audited (without the stored reference population)."""
    return {k: v for k, v in decision.items() if k != "reference_population"}
