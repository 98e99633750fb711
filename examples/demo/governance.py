"""The Govern → Validate → Activate → Monitor steps of the demo, against the real server.

Training runs under a policy (purpose, allowed regions and partners, k); the
last round's result is a *candidate* that devices holding the held-out split
evaluate on the device (aggregates only) before the publish gate decides; a
marketer then activates the model (once allowed, once denied) and pulls
k-suppressed audience segments; the six KPIs are read from the server, which
computes them from what it recorded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bench.fleet import Fleet
from examples.demo.fleet import AppKeys, SimDevice, run_sync_round


def policy(purpose: str, regions: Sequence[str], partners: Sequence[str], *, k_min: int,
           gate: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"purpose": purpose, "allowed_regions": sorted(set(regions)), "allowed_partners": sorted(set(partners)),
            "k_min": k_min, "gate": gate, "partner_contribution": gate is not None,
            "description": "propensity to subscribe to a term deposit, for outbound campaign targeting"}


def set_policy(admin: Fleet, model: str, body: dict[str, Any]) -> int:
    out = admin.ok(admin.admin("PUT", f"/v1/models/{model}/policy", json=body))
    return int(out.get("version", 0)) if isinstance(out, dict) else 0


def gated_round(admin: Fleet, model: str, devices: Sequence[SimDevice], evaluators: Sequence[SimDevice],
                keys: AppKeys, rng: np.random.Generator, base_policy: dict[str, Any], *, goal: int,
                dropout: float, max_regression: float, progress: Callable[..., Any]) -> dict[str, Any]:
    """One more round under a publish gate: its result is published only if federated
    evaluation on the evaluators' holdouts shows no regression beyond ``max_regression``."""
    gate = {"metric": "auc", "max_regression": max_regression, "min_contributors": max(1, goal // 2),
            "min_evaluators": len(evaluators), "max_epsilon": None}
    set_policy(admin, model, {**base_policy, "gate": gate, "partner_contribution": True})
    before = admin.model(model)["current_version"]
    outcome = run_sync_round(admin, model, devices, keys, rng, dropout=dropout, goal=goal)
    answers = []
    for dev in progress(evaluators, desc="federated validation", unit="device"):
        answers.append(dev.connect(admin.base_url, keys.of(dev)).validate(model, dev.records))
    info = admin.model(model)
    evaluation = admin.ok(admin.admin("GET", f"/v1/models/{model}/evaluations"))
    return {"round_state": outcome.state, "round_contributors": outcome.accepted, "previous_version": before,
            "current_version": info["current_version"], "published": info["current_version"] != before,
            "gate": evaluation.get("gate"), "evaluators": evaluation.get("evaluators"),
            "by_region": {r: v.get("auc") for r, v in
                          (evaluation.get("versions", {}).get(str(evaluation.get("target")), {}).get("by_region") or {}).items()
                          if isinstance(v, dict)},
            "spread": evaluation.get("spread"), "drift": evaluation.get("drift"),
            "partner_contribution": evaluation.get("partner_contribution")}


def activate(admin: Fleet, model: str, purpose: str, evaluators: Sequence[SimDevice], keys: AppKeys) -> dict[str, Any]:
    """A marketer's activation (allowed), one for a purpose the policy does not cover (denied),
    and audience segments built from counts the devices scored and reported themselves."""
    marketer = admin.ok(admin.admin("POST", "/v1/admin/tokens", json={"role": "marketer", "name": "campaign-team"}),
                        201)["token"]
    counts = {}
    for dev in evaluators:
        for seg, n in dev.connect(admin.base_url, keys.of(dev)).report_segments(model, dev.records).items():
            counts[seg] = counts.get(seg, 0) + n
    allowed = admin.call("POST", "/v1/activation/model", marketer, json={"model": model, "purpose": purpose})
    denied = admin.call("POST", "/v1/activation/model", marketer, json={"model": model, "purpose": "credit_decisioning"})
    segments = admin.call("POST", "/v1/activation/segments", marketer, json={"model": model, "purpose": purpose})
    return {"allowed": {"status": allowed.status_code, "version": allowed.json().get("version")},
            "denied": {"status": denied.status_code, "reason": (denied.json().get("error") or {}).get("reason")
                       or (denied.json().get("error") or {}).get("message")},
            "segments": segments.json().get("segments") if segments.ok else segments.json(),
            "device_reported_counts": counts}


def kpis(admin: Fleet, model: str) -> dict[str, Any]:
    return admin.ok(admin.admin("GET", f"/v1/kpis?model={model}"))


def audit_check(admin: Fleet) -> dict[str, Any]:
    """Walk the server's hash-chained audit trail: ``ok`` and the number of entries."""
    out = admin.ok(admin.admin("GET", "/v1/audit/verify"))
    return {"ok": bool(out["ok"]), "entries": int(out["entries"])}


def make_evaluators(test: list[dict[str, Any]], purpose: str, regions: dict[str, str], partners: Sequence[str],
                    root: Path, rows_per_device: int, rng: np.random.Generator, no_consent: float) -> list[SimDevice]:
    """The held-out split, spread over devices by job (so by region): each holds a local holdout."""
    by_job: dict[str, list[dict[str, Any]]] = {}
    for rec in test:
        r = dict(rec)
        r["consent"] = "analytics" if rng.random() < no_consent else f"{purpose},analytics"
        by_job.setdefault(str(rec["job"]), []).append(r)
    out = []
    for job, rows in sorted(by_job.items()):
        for start in range(0, len(rows), rows_per_device):
            n = len(out)
            out.append(SimDevice(f"eval-{job.rstrip('.')}-{start // rows_per_device}", regions.get(job, "algarve"),
                                 partners[n % len(partners)], rows[start:start + rows_per_device], root / f"eval{n}"))
    return out
