"""The six governance KPIs, computed from recorded events (never typed in).

Sources: ``contributions`` (one row per accepted update: bytes, record count,
policy version), ``eval_reports`` / ``segment_reports`` (device aggregates and
their sizes), ``activations`` (every activation decision), the versions'
manifests (feature schema) and the evaluation summaries.  A model's KPIs
include its regional lines (``<model>@<region>``).

1. **Raw Data Movement Reduction** - raw-record bytes moved (0: no endpoint
   accepts records; the figure sums the ingress categories that carry records,
   of which there are none) and the bytes that did move (update bodies +
   evaluation and segment reports), against the bytes centralising the same
   records would have moved once: records x bytes per record.  Records: per
   device, the largest record count it reported with an update (devices report
   the records they trained on), summed over devices.  Bytes per record: the
   policy's ``record_bytes`` if set, else estimated from the manifest's feature
   schema as a CSV row (numeric 8 B, one-hot the mean category length, hash
   16 B, label 1 B, 1 B separator each); 24 B (user, item, time ids) for models
   without a tabular schema.  ``reduction = 1 - moved / centralised``
   (negative when updates outweigh the data, e.g. a large model on tiny devices).
   Model downloads (server to device) are not counted: they carry no customer data.
2. **Governed Training Coverage** - contributions whose task was issued under a
   recorded policy decision (a policy version) / all contributions; next to it,
   which consent signal allowed or excluded how many records, and how many
   withdrawals devices reported (their ``consent.report`` audit entries: counts
   only, never which record or whose).
3. **Personalization Lift** - from the latest federated evaluation: binary models,
   the positive rate in the top score decile over the overall rate (random
   targeting = 1.0), with AUC next to 0.5; recommenders, HR@k over the
   popularity baseline's HR@k as reported by devices.
4. **Partner Model Contribution** - per partner, the gate metric of the
   evaluated version minus that of the same round's aggregate without that
   partner's cells (leave-one-out, federated evaluation).
5. **Model Confidence** - the spread (max - min) of the gate metric across
   regions and the largest population stability index between a region's score
   distribution and the pooled one (regions the model scores differently);
   level high (spread <= 0.05 and PSI <= 0.1), medium (<= 0.1 and <= 0.25) or
   low.  The drift of the pooled scores against the reference (baseline, or the
   version at its gate) is reported next to it.
6. **Compliant Activation Rate** - allowed / all activation requests.
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, func, select

from fedmark.contract.consent import ALLOW_REASONS
from server.governance import audit
from server.governance.evaluation import latest_target, summarize
from server.governance.policy import Policy, current_policy
from server.storage import schema

FALLBACK_RECORD_BYTES = 24.0


def record_bytes(manifest: dict[str, Any], policy: Policy | None) -> tuple[float, str]:
    """(bytes per record, how it was estimated)."""
    if policy is not None and policy.record_bytes is not None:
        return float(policy.record_bytes), "policy.record_bytes"
    cols = (manifest.get("features") or {}).get("columns") or []
    if not cols:
        return FALLBACK_RECORD_BYTES, "no tabular schema: 24 B per interaction (user, item, time ids)"
    total = 0.0
    for c in cols:
        if c.get("kind") == "numeric":
            total += 8
        elif c.get("kind") == "onehot":
            vocab = c.get("vocabulary") or [""]
            total += sum(len(str(v).encode()) for v in vocab) / len(vocab)
        else:
            total += 16
        total += 1
    if (manifest.get("features") or {}).get("label"):
        total += 2
    return total, f"CSV estimate from the manifest's {len(cols)} feature columns"


def _names(conn: Connection, model: str) -> list[str]:
    lines = [r[0] for r in conn.execute(select(schema.models.c.name).where(schema.models.c.line_of == model))]
    return [model] + lines


def raw_data_movement(conn: Connection, model: str, names: list[str], policy: Policy | None) -> dict[str, Any]:
    c = schema.contributions
    update_bytes = int(conn.execute(select(func.coalesce(func.sum(c.c.body_bytes), 0))
                                    .where(c.c.model.in_(names))).scalar_one())
    per_device = select(c.c.device_id, func.max(c.c.num_examples).label("n")).where(c.c.model.in_(names)) \
        .group_by(c.c.device_id).subquery()
    records = int(conn.execute(select(func.coalesce(func.sum(per_device.c.n), 0))).scalar_one())
    devices = int(conn.execute(select(func.count()).select_from(per_device)).scalar_one())
    eval_bytes = int(conn.execute(select(func.coalesce(func.sum(schema.eval_reports.c.body_bytes), 0))
                                  .where(schema.eval_reports.c.model.in_(names))).scalar_one())
    seg_bytes = int(conn.execute(select(func.coalesce(func.sum(schema.segment_reports.c.body_bytes), 0))
                                 .where(schema.segment_reports.c.model.in_(names))).scalar_one())
    m = conn.execute(select(schema.models.c.current_version).where(schema.models.c.name == model)).scalar_one()
    manifest: dict[str, Any] = {}
    if m is not None:
        manifest = json.loads(conn.execute(select(schema.versions.c.manifest).where(
            schema.versions.c.model == model, schema.versions.c.version == m)).scalar_one())
    per_record, how = record_bytes(manifest, policy)
    centralised = records * per_record
    moved = update_bytes + eval_bytes + seg_bytes
    return {"raw_record_bytes_moved": 0, "raw_record_ingress_categories": [],
            "bytes_moved": {"updates": update_bytes, "evaluation_reports": eval_bytes, "segment_reports": seg_bytes,
                            "total": moved},
            "records_on_devices": records, "devices": devices, "bytes_per_record": per_record,
            "bytes_per_record_estimate": how, "centralised_bytes": centralised,
            "value": (1.0 - moved / centralised) if centralised > 0 else None}


def consent_records(conn: Connection, names: list[str]) -> dict[str, Any]:
    """Records per consent decision reason and withdrawals, summed over the devices' consent reports."""
    a = schema.audit_log
    by_reason: dict[str, int] = {}
    withdrawn = reports = 0
    for (detail,) in conn.execute(select(a.c.detail).where(a.c.kind == audit.CONSENT_REPORT, a.c.model.in_(names))):
        d = json.loads(detail)
        reports += 1
        withdrawn += int(d.get("withdrawn", 0))
        for reason, n in d.get("counts", {}).items():
            by_reason[reason] = by_reason.get(reason, 0) + int(n)
    allowed = sum(n for r, n in by_reason.items() if r in ALLOW_REASONS)
    return {"reports": reports, "records_by_reason": dict(sorted(by_reason.items())), "records_allowed": allowed,
            "records_excluded": sum(by_reason.values()) - allowed, "withdrawals": withdrawn}


def governed_coverage(conn: Connection, names: list[str]) -> dict[str, Any]:
    c = schema.contributions
    total = int(conn.execute(select(func.count()).where(c.c.model.in_(names))).scalar_one())
    governed = int(conn.execute(select(func.count()).where(c.c.model.in_(names), c.c.policy_version.is_not(None)))
                   .scalar_one())
    return {"contributions": total, "governed": governed, "value": governed / total if total else None,
            "consent": consent_records(conn, names)}


def personalization_lift(summary: dict[str, Any] | None) -> dict[str, Any]:
    if summary is None:
        return {"value": None, "reason": "no federated evaluation yet"}
    overall = summary["versions"][str(summary["target"])]["overall"]
    if overall.get("suppressed"):
        return {"value": None, "version": summary["target"], "reason": overall["reason"]}
    if overall.get("kind") == "ranking":
        return {"value": overall.get("lift"), "version": summary["target"], "baseline": "popularity",
                "model_hr": overall.get("hr"), "baseline_hr": overall.get("baseline_hr")}
    return {"value": overall.get("lift_top_decile"), "version": summary["target"], "baseline": "random targeting (1.0)",
            "auc": overall.get("auc"), "random_auc": 0.5}


def partner_contribution(summary: dict[str, Any] | None) -> dict[str, Any]:
    if summary is None or not summary["partner_contribution"]:
        return {"value": None, "reason": "no leave-one-partner-out evaluation yet (policy partner_contribution)"}
    return {"version": summary["target"], "metric": summary["metric"],
            "value": {p: c.get("value") for p, c in sorted(summary["partner_contribution"].items())},
            "detail": summary["partner_contribution"]}


def model_confidence(summary: dict[str, Any] | None) -> dict[str, Any]:
    if summary is None:
        return {"value": None, "reason": "no federated evaluation yet"}
    spread = summary["spread"]["value"]
    shift = summary["regional_shift"]
    psi = max(shift.values()) if shift else None
    level = None
    if spread is not None or psi is not None:
        s, p = spread or 0.0, psi or 0.0
        level = "high" if s <= 0.05 and p <= 0.1 else "medium" if s <= 0.1 and p <= 0.25 else "low"
    return {"value": level, "version": summary["target"], "metric": summary["metric"], "spread": spread,
            "regions": summary["spread"]["regions"], "max_psi": psi, "reference": "the version's pooled scores",
            "drift_vs_reference": summary["drift"]}


def activation_rate(conn: Connection, names: list[str]) -> dict[str, Any]:
    a = schema.activations
    total = int(conn.execute(select(func.count()).where(a.c.model.in_(names))).scalar_one())
    allowed = int(conn.execute(select(func.count()).where(a.c.model.in_(names), a.c.allowed.is_(True))).scalar_one())
    denied = dict(conn.execute(select(a.c.reason, func.count()).where(a.c.model.in_(names), a.c.allowed.is_(False))
                               .group_by(a.c.reason)).all())
    return {"requests": total, "allowed": allowed, "denied_by_reason": {k: int(v) for k, v in denied.items()},
            "value": allowed / total if total else None}


def kpis(conn: Connection, model: str) -> dict[str, Any]:
    """All six KPIs of ``model`` (and its regional lines)."""
    names = _names(conn, model)
    policy = current_policy(conn, model)
    cur = conn.execute(select(schema.models.c.current_version).where(schema.models.c.name == model)).scalar_one()
    # the published (current) version's own evaluation if there is one, else the latest evaluation
    target = latest_target(conn, model, prefer=cur)
    summary = summarize(conn, model, target, policy) if target is not None else None
    loo_target = latest_target(conn, model, with_variants=True, prefer=cur)
    loo = summary if loo_target == target else (summarize(conn, model, loo_target, policy) if loo_target else None)
    return {"model": model, "current_version": cur, "lines": names[1:],
            "raw_data_movement_reduction": raw_data_movement(conn, model, names, policy),
            "governed_training_coverage": governed_coverage(conn, names),
            "personalization_lift": personalization_lift(summary),
            "partner_model_contribution": partner_contribution(loo),
            "model_confidence": model_confidence(summary),
            "compliant_activation_rate": activation_rate(conn, names)}
