"""Federated evaluation: devices score versions on their local holdout and report aggregates only.

Why aggregates: a device reports, per version it evaluated and per segment,
a score histogram per label (``fedmark.metrics.ScoreHistogram``), the loss sum
and the record count (binary models), or hit / NDCG sums, the popularity
baseline's hit sum and the user count (recommenders).  These add up across
devices, so the server computes AUC, loss, calibration, lift, HR@k and the
score distribution per region and per segment without any score or record
leaving a device.  Anything computed from fewer than ``k_min`` distinct
devices is suppressed in every answer that leaves the server.

What is evaluated (the *target*): the model's pending candidate if there is
one, together with the current version as its baseline; otherwise the current
version (monitoring).  Leave-one-partner-out variants of the target are
evaluated alongside, which is how partner contribution is measured.

Report body (``POST /v1/evaluations/{model}/{target}/reports``)::

    {"reports": [{"version": 5, "segment": "all", "kind": "binary", "count": 120, "loss_sum": 40.2,
                  "histogram": {"pos": [...], "neg": [...], "score_sum_pos": 3.1, "score_sum_neg": 9.7}},
                 {"version": 5, "segment": "all", "kind": "ranking", "count": 30, "hits": 12,
                  "ndcg": 7.1, "baseline_hits": 5}]}

``segment`` ``"all"`` is the device's whole holdout (what overall and
per-region metrics use); other segment names are subsets (per-segment metrics).
A device re-reporting the same (version, segment) replaces its earlier report.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any, Iterable, Mapping

import numpy as np
from sqlalchemy import Connection, delete, select

from fedmark.metrics import HIST_BINS, ScoreHistogram, population_stability_index
from server.errors import ApiError
from server.governance import decisions, partners
from server.governance.policy import Policy
from server.storage import schema

ALL = "all"
_SEG_RE = re.compile(r"^[A-Za-z0-9._:=-]{1,64}$")
MAX_REPORTS = 64


def _bad(msg: str) -> ApiError:
    return ApiError(400, "bad_report", msg)


def _num(d: Mapping[str, Any], key: str, *, integer: bool = False, default: Any = None) -> Any:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not np.isfinite(v)) \
            or v < 0 or (integer and v > schema.MAX_INT) or v > 1e300:
        raise _bad(f"report field {key!r} must be a finite number >= 0"
                   f"{f' and <= {schema.MAX_INT}' if integer else ''}, got {v!r}")
    if integer and int(v) != v:
        raise _bad(f"report field {key!r} must be an integer, got {v!r}")
    return int(v) if integer else float(v)


def parse_reports(body: Any, allowed_versions: Iterable[int]) -> list[dict[str, Any]]:
    """Validate a report body; returns rows ready for ``eval_reports`` (without device/time columns)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("reports"), list) or not body["reports"]:
        raise _bad("body must be {\"reports\": [ {version, segment, kind, count, ...}, ... ]}")
    if len(body["reports"]) > MAX_REPORTS:
        raise _bad(f"at most {MAX_REPORTS} reports per request")
    allowed = set(allowed_versions)
    out = []
    for i, rep in enumerate(body["reports"]):
        if not isinstance(rep, Mapping):
            raise _bad(f"report {i} must be an object")
        v = rep.get("version")
        if v not in allowed:
            raise _bad(f"report {i}: version {v!r} is not being evaluated; evaluate {sorted(allowed)} "
                       "(POST /v1/evaluations/tasks lists them)")
        seg = rep.get("segment", ALL)
        if not isinstance(seg, str) or not _SEG_RE.match(seg):
            raise _bad(f"report {i}: segment must be 1-64 characters from A-Z a-z 0-9 . _ : = -, got {seg!r}")
        kind = rep.get("kind", "binary")
        row: dict[str, Any] = {"version": int(v), "segment": seg, "kind": kind, "count": _num(rep, "count", integer=True),
                               "loss_sum": _num(rep, "loss_sum", default=0.0), "hist": None, "hits": 0.0, "ndcg": 0.0,
                               "baseline_hits": 0.0}
        if row["count"] < 1:
            raise _bad(f"report {i}: count must be >= 1 (records, or users for ranking)")
        if kind == "binary":
            try:
                hist = ScoreHistogram.from_json(rep["histogram"])
            except (KeyError, TypeError, ValueError) as exc:
                raise _bad(f"report {i}: histogram must be fedmark.metrics.ScoreHistogram.to_json() "
                           f"({HIST_BINS} bins of non-negative counts per label): {exc}") from None
            if hist.pos.size != HIST_BINS or hist.count != row["count"]:
                raise _bad(f"report {i}: histogram needs {HIST_BINS} bins and must hold exactly count={row['count']} "
                           f"records (it holds {hist.count})")
            row["hist"] = json.dumps(hist.to_json())
        elif kind == "ranking":
            for key in ("hits", "ndcg", "baseline_hits"):
                row[key] = _num(rep, key, default=0.0)
            if row["hits"] > row["count"] or row["baseline_hits"] > row["count"] or row["ndcg"] > row["count"]:
                raise _bad(f"report {i}: hits, ndcg and baseline_hits are per-user sums and cannot exceed count")
        else:
            raise _bad(f"report {i}: kind must be 'binary' or 'ranking', got {kind!r}")
        out.append(row)
    return out


def store_reports(conn: Connection, model: str, target: int, device: str, region: str, partner: str,
                  rows: list[dict[str, Any]], body_bytes: int, now: float) -> int:
    r = schema.eval_reports
    share = max(1, body_bytes // max(1, len(rows)))
    for row in rows:
        conn.execute(delete(r).where(r.c.model == model, r.c.target == target, r.c.version == row["version"],
                                     r.c.device_id == device, r.c.segment == row["segment"]))
        conn.execute(r.insert().values(model=model, target=target, device_id=device, region=region, partner=partner,
                                       body_bytes=share, at=now, **row))
    return len(rows)


# ---------------------------------------------------------------------------- metrics from aggregates
def _lift_top(hist: ScoreHistogram, fraction: float = 0.1) -> float | None:
    """Positive rate among the top ``fraction`` scores over the overall rate (bins split proportionally)."""
    total = hist.count
    pos_total = int(hist.pos.sum())
    if total == 0 or pos_total == 0:
        return None
    want = fraction * total
    took = pos = 0.0
    for b in range(hist.pos.size - 1, -1, -1):
        n = float(hist.pos[b] + hist.neg[b])
        if n == 0:
            continue
        share = min(1.0, (want - took) / n)
        took += share * n
        pos += share * float(hist.pos[b])
        if took >= want - 1e-9:
            break
    return float((pos / took) / (pos_total / total)) if took > 0 else None


def _ece(hist: ScoreHistogram) -> float:
    """Expected calibration error with each bin's mean score taken as its centre (histogram approximation)."""
    n = hist.pos + hist.neg
    total = n.sum()
    if total == 0:
        return 0.0
    centres = (np.arange(n.size) + 0.5) / n.size
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, hist.pos / np.maximum(n, 1), 0.0)
    return float(np.sum(n / total * np.abs(centres - rate)))


def metrics_of(rows: list[Any]) -> dict[str, Any]:
    """Pooled metrics of report rows (one kind)."""
    devices = len({r.device_id for r in rows})
    if not rows:
        return {"devices": 0}
    if rows[0].kind == "ranking":
        users = sum(r.count for r in rows)
        hits, ndcg, base = sum(r.hits for r in rows), sum(r.ndcg for r in rows), sum(r.baseline_hits for r in rows)
        hr, bhr = hits / users, base / users
        return {"devices": devices, "kind": "ranking", "users": users, "hr": hr, "ndcg": ndcg / users,
                "baseline_hr": bhr, "lift": hr / bhr if bhr > 0 else None}
    hist = ScoreHistogram.empty()
    for r in rows:
        hist = hist + ScoreHistogram.from_json(json.loads(r.hist))
    count = hist.count
    out: dict[str, Any] = {"devices": devices, "kind": "binary", "count": count,
                           "loss": sum(r.loss_sum for r in rows) / count,
                           "positive_rate": float(hist.pos.sum()) / count,
                           "mean_score": (hist.score_sum_pos + hist.score_sum_neg) / count,
                           "ece": _ece(hist), "lift_top_decile": _lift_top(hist)}
    try:
        out["auc"] = hist.auc()
    except ValueError:
        out["auc"] = None
    out["_population"] = hist.population().tolist()
    return out


def _public(m: dict[str, Any], k_min: int) -> dict[str, Any]:
    if decisions.suppressed(m.get("devices", 0), k_min):
        return {"suppressed": True, "reason": f"fewer than k_min={k_min} devices"}
    return {k: v for k, v in m.items() if not k.startswith("_")}


def primary_metric(policy: Policy | None, kind: str) -> tuple[str, bool]:
    if policy is not None and policy.gate is not None:
        return policy.gate.metric, policy.gate.higher_is_better
    return ("hr", True) if kind == "ranking" else ("auc", True)


def versions_under_evaluation(conn: Connection, model: str, target: int) -> dict[int, dict[str, Any]]:
    """{version: {"role": target|baseline|variant, ...}} for an evaluation of ``target``."""
    row = conn.execute(select(schema.versions.c.kind, schema.versions.c.status, schema.versions.c.parent).where(
        schema.versions.c.model == model, schema.versions.c.version == target)).first()
    out: dict[int, dict[str, Any]] = {target: {"role": "target"}}
    if row is not None and row.kind == "round" and row.status in ("candidate", "published", "refused") \
            and row.parent is not None:  # a gated round result is compared with the version it was trained from
        out[int(row.parent)] = {"role": "baseline"}
    for row in conn.execute(select(schema.versions.c.version, schema.versions.c.metrics).where(
            schema.versions.c.model == model, schema.versions.c.status == "variant")):
        meta = json.loads(row.metrics)
        if meta.get("variant_of") == target:
            out[int(row.version)] = {"role": "variant", "without_partner": meta.get("without_partner")}
    return out


def summarize(conn: Connection, model: str, target: int, policy: Policy | None, *, public: bool = True) -> dict[str, Any]:
    """Metrics of every version under evaluation: overall, by region, by segment; spread, drift, contribution."""
    k = decisions.k_min(policy)
    roles = versions_under_evaluation(conn, model, target)
    rows = conn.execute(select(schema.eval_reports).where(schema.eval_reports.c.model == model,
                                                          schema.eval_reports.c.target == target)).all()
    by_version: dict[int, list[Any]] = defaultdict(list)
    for r in rows:
        by_version[int(r.version)].append(r)
    gate_row = conn.execute(select(schema.versions.c.gate, schema.versions.c.status).where(
        schema.versions.c.model == model, schema.versions.c.version == target)).first()
    stored_gate = json.loads(gate_row.gate) if gate_row is not None and gate_row.gate else None
    kind = next((r.kind for r in rows), "binary")
    metric, higher = primary_metric(policy, kind)
    # Policy k_counts "attested": a group's "devices" (what the k rule and the gate count) are its attested
    # devices only, so self-enrolled devices can neither lift a group over k nor make up the gate's evaluators.
    attested = partners.attested(conn, {r.device_id for r in rows}) \
        if policy is not None and policy.k_counts == "attested" else None

    def measure(group: list[Any]) -> dict[str, Any]:
        m = metrics_of(group)
        if attested is not None:
            m["devices"] = decisions.k_devices(policy, {r.device_id: attested.get(r.device_id, False) for r in group})
        return m

    versions: dict[str, Any] = {}
    raw: dict[int, dict[str, Any]] = {}
    for v, meta in sorted(roles.items()):
        vrows = by_version.get(v, [])
        overall_rows = [r for r in vrows if r.segment == ALL]
        overall = measure(overall_rows)
        regions: dict[str, list[Any]] = defaultdict(list)
        segments: dict[str, list[Any]] = defaultdict(list)
        for r in overall_rows:
            regions[r.region].append(r)
        for r in vrows:
            if r.segment != ALL:
                segments[r.segment].append(r)
        reg_m = {reg: measure(rs) for reg, rs in sorted(regions.items())}
        seg_m = {seg: measure(rs) for seg, rs in sorted(segments.items())}
        raw[v] = {"overall": overall, "by_region": reg_m}
        fmt = (lambda m: _public(m, k)) if public else (lambda m: m)
        versions[str(v)] = dict(meta, overall=fmt(overall), by_region={r: fmt(m) for r, m in reg_m.items()},
                                by_segment={s: fmt(m) for s, m in seg_m.items()})
    tgt = raw.get(target, {"overall": {"devices": 0}, "by_region": {}})
    visible = {r: m for r, m in tgt["by_region"].items()
               if not decisions.suppressed(m.get("devices", 0), k) and m.get(metric) is not None}
    spread = None
    if len(visible) >= 2:
        vals = [m[metric] for m in visible.values()]
        spread = float(max(vals) - min(vals))
    reference = None
    baseline = next((v for v, meta in roles.items() if meta["role"] == "baseline"), None)
    if baseline is not None and raw.get(baseline, {}).get("overall", {}).get("_population"):
        reference, ref_label = raw[baseline]["overall"]["_population"], f"baseline v{baseline}"
    elif stored_gate and stored_gate.get("reference_population"):
        reference, ref_label = stored_gate["reference_population"], f"v{target} at its publish gate"
    drift: dict[str, Any] | None = None
    if reference is not None and tgt["overall"].get("_population"):
        drift = {"reference": ref_label,
                 "psi": population_stability_index(np.asarray(reference), np.asarray(tgt["overall"]["_population"])),
                 "by_region": {r: population_stability_index(np.asarray(reference), np.asarray(m["_population"]))
                               for r, m in visible.items() if m.get("_population")}}
    pooled = tgt["overall"].get("_population")
    regional_shift = {r: population_stability_index(np.asarray(pooled), np.asarray(m["_population"]))
                      for r, m in visible.items() if pooled and m.get("_population")}
    contribution = {}
    tval = tgt["overall"].get(metric)
    for v, meta in roles.items():
        if meta["role"] != "variant":
            continue
        ov = raw.get(v, {}).get("overall", {})
        if tval is None or ov.get(metric) is None or (public and decisions.suppressed(min(ov["devices"], tgt["overall"]["devices"]), k)):
            contribution[meta["without_partner"]] = {"version": v, "metric": metric, "value": None}
            continue
        diff = (tval - ov[metric]) if higher else (ov[metric] - tval)
        contribution[meta["without_partner"]] = {"version": v, "metric": metric, "with": tval,
                                                 "without": ov[metric], "value": float(diff)}
    return {"model": model, "target": target, "status": gate_row.status if gate_row else None, "k_min": k,
            "metric": metric, "higher_is_better": higher, "evaluators": tgt["overall"].get("devices", 0),
            "versions": versions, "spread": {"metric": metric, "value": spread, "regions": len(visible)},
            "drift": drift, "regional_shift": regional_shift, "partner_contribution": contribution,
            "gate": {k2: v2 for k2, v2 in stored_gate.items() if k2 != "reference_population"} if stored_gate else None,
            **({} if public else {"_raw": raw})}


def latest_target(conn: Connection, model: str, *, with_variants: bool = False,
                  prefer: int | None = None) -> int | None:
    """The most recent evaluated target of ``model`` (optionally only one whose variants were reported);
    ``prefer`` (e.g. the current version) is taken first when it was evaluated."""
    r = schema.eval_reports
    targets = [int(t) for (t,) in conn.execute(select(r.c.target).where(r.c.model == model).distinct()
                                               .order_by(r.c.target.desc()))]
    if prefer is not None and prefer in targets:
        targets.remove(prefer)
        targets.insert(0, prefer)
    if not with_variants:
        return targets[0] if targets else None
    for t in targets:
        roles = versions_under_evaluation(conn, model, t)
        variants = [v for v, m in roles.items() if m["role"] == "variant"]
        if variants and conn.execute(select(r.c.id).where(r.c.model == model, r.c.target == t,
                                                          r.c.version.in_(variants)).limit(1)).first():
            return t
    return None
