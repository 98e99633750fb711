"""Statistics tasks: open one for a declared schema, hand it to devices, ingest contributions, release.

A statistics task is the *Prepare* step's round kind: instead of a model
update, each device sends the sufficient statistics of its consented,
rule-passing records (``fedmark.contract.statistics``).  It travels the
same way an update does:

* the same authentication (a device token; the one consent-withdrawn
  refusal; the model's policy decides eligibility as for a training task);
* a strict reading of the body, refused with a 4xx and a code before
  anything is stored (``bad_statistics``, ``bad_columns``, ``out_of_range``,
  ``non_finite``, ``bad_rules``), so a bad body never reaches a release;
* the same durability: the contribution and its receipt (``Idempotency-Key``
  + body hash) are written in the process's group-commit transaction
  (:mod:`server.storage.group`) and the 202 is sent after it committed; a
  retry with the same key and body gets the original answer (200), the same
  key with another body 409 ``idempotency_conflict``, a second contribution
  of the device 409 ``duplicate_contribution`` (one per device and task: that
  is what bounds a device's influence together with the clip);
* an audit entry per accepted contribution and one per release.

The release (:func:`release_task`) sums the contributions per cell with
:func:`server.aggregation.statistics.release` (clip, noise, k), records the
release's epsilon in the model's statistics ledger, fits the schema
(:func:`fedmark.contract.statistics.fit_from_totals`), versions it per model
and empties the stored bodies: what remains is the release and who
contributed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
from typing import Any, Mapping

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from fedmark.contract import HDR_IDEMPOTENCY, sha256_bytes
from fedmark.contract.statistics import StatisticsError, StatisticsPlan, fit_from_totals, parse_contribution
from server.aggregation import ConfigError, PrivacyLedger
from server.aggregation.statistics import DeviceContribution, StatisticsConfig, release
from server.auth.tokens import Principal
from server.errors import ApiError
from server.governance import audit, decisions
from server.governance.policy import current_policy
from server.rounds.service import RoundService
from server.storage import schema

__all__ = ["open_task", "task_for_device", "contribute", "release_task", "released", "task_json", "OPEN", "RELEASED"]

OPEN, RELEASED = "open", "released"
_T, _R = schema.statistics_tasks, schema.statistics_reports
MAX_KEY_CHARS = 200
#: A noised release's std is kept at or above this fraction of the column's half-range, so standardised
#: inputs stay within about ±5: noise on the sum of squares can push a column's variance towards zero, and
#: the model then meets huge inputs (it did: AUC 0.5 in sweeps/statistics_fit.py without centring and
#: floor; the fast demo's small fleet still diverged with a floor of 0.05).  Every bank column's true std is
#: above 0.2 of its declared half-range, so the floor bites only where noise crushed the variance.
STD_FLOOR = 0.2


def _policy(conn: Any, model: str) -> Any:
    exists = conn.execute(select(schema.models.c.name).where(schema.models.c.name == model)).first()
    return current_policy(conn, model) if exists is not None else None


def open_task(svc: RoundService, model: str, body: Mapping[str, Any], actor: str) -> dict[str, Any]:
    """Open a statistics task for ``model`` on ``body["declaration"]`` (400 ``bad_plan`` / ``bad_config``).

    The model need not be published yet: measuring comes before training.  If it has a policy, the
    policy's purpose decides which records may be measured and its k_min is a floor under the task's k.
    """
    decl = body.get("declaration")
    try:
        plan = StatisticsPlan.from_declaration(decl)  # type: ignore[arg-type]
    except StatisticsError as exc:
        raise ApiError(400, "bad_plan", f"declaration: {exc}") from None
    try:
        cfg = StatisticsConfig.from_json(body.get("config") or {})
    except ConfigError as exc:
        raise ApiError(400, "bad_config", f"config: {exc}") from None
    store = svc._st()
    now = svc.now
    task_id = "st-" + secrets.token_hex(8)
    with store.write() as conn:
        policy = _policy(conn, model)
        if policy is not None and cfg.k < decisions.k_min(policy):
            cfg = dataclasses.replace(cfg, k=decisions.k_min(policy))
        purpose = policy.purpose if policy is not None else body.get("purpose")
        if purpose is not None and not isinstance(purpose, str):
            raise ApiError(400, "bad_request", "purpose must be a string (the purpose records must consent to)")
        # not key-sorted: the order of the declaration's columns is the fitted schema's column order
        conn.execute(_T.insert().values(id=task_id, model=model, plan=json.dumps(plan.to_json()),
                                        config=json.dumps(cfg.to_json()), state=OPEN, purpose=purpose,
                                        created_at=now))
        audit.append_one(conn, now, "statistics.opened", model=model, actor=actor, code="opened", subject=task_id,
                         detail={"config": cfg.to_json(), "purpose": purpose})
    return task_json(task_id, model, plan, cfg, purpose, policy)


def task_json(task_id: str, model: str, plan: StatisticsPlan, cfg: StatisticsConfig, purpose: str | None,
              policy: Any) -> dict[str, Any]:
    """The task document a device reads: what to measure, under which consent, where to send it."""
    return {"task_id": task_id, "model": model, "kind": "statistics", "declaration": plan.to_json(),
            "purpose": purpose, "consent_purposes": list(policy.consent_purposes) if policy is not None else None,
            "consent_signals": policy.consent_signals if policy is not None else None,
            "max_records": cfg.max_records, "report_url": f"/v1/statistics/{task_id}/reports"}


def _task_row(conn: Any, task_id: str) -> Any:
    row = conn.execute(select(_T).where(_T.c.id == task_id)).first()
    if row is None:
        raise ApiError(404, "unknown_task", f"no statistics task {task_id!r}; ask for one (POST /v1/statistics/tasks)")
    return row


def task_for_device(svc: RoundService, who: Principal, model: str) -> dict[str, Any]:
    """The model's newest open statistics task, if the model's policy lets this device take part."""
    with svc._st().read() as conn:
        policy = _policy(conn, model)
        row = conn.execute(select(_T).where(_T.c.model == model, _T.c.state == OPEN)
                           .order_by(_T.c.created_at.desc()).limit(1)).first()
    if policy is not None:
        denial = decisions.eligible(policy, model, who.region, who.partner, None)
        if denial is not None:
            raise ApiError(403, "policy_denied", denial.message, extra={"reason": denial.code})
    if row is None:
        raise ApiError(409, "no_task", f"no statistics task is open for {model!r}", retry_after=svc.no_task_retry)
    return task_json(row.id, row.model, StatisticsPlan.from_declaration(json.loads(row.plan)),
                     StatisticsConfig.from_json(json.loads(row.config)), row.purpose, policy)


def _answer(task_id: str, rid: int) -> dict[str, Any]:
    return {"accepted": True, "task_id": task_id, "report_id": int(rid)}


def contribute(svc: RoundService, who: Principal, task_id: str, raw: bytes,
               headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """Check and durably store one device's statistics; (HTTP status, answer)."""
    if who.role != "device" or who.device_id is None:
        raise ApiError(403, "forbidden", "only an enrolled device can send statistics; use its device token")
    key = headers.get(HDR_IDEMPOTENCY) or ""
    if not 0 < len(key) <= MAX_KEY_CHARS:
        raise ApiError(400, "bad_header", f"header {HDR_IDEMPOTENCY} must be 1 to {MAX_KEY_CHARS} characters "
                                          "(one key per contribution; a retry reuses it)")
    with svc._st().read() as conn:
        row = _task_row(conn, task_id)
    body_sha = sha256_bytes(raw)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_statistics", "the body must be the JSON object of "
                                              "fedmark.contract.statistics.local_statistics") from None
    if row.state != OPEN:
        with svc._st().read() as conn:
            rec = conn.execute(select(_R).where(_R.c.task_id == task_id, _R.c.device_id == who.device_id)).first()
        if rec is not None and rec.idem_key == key and rec.body_sha == body_sha:
            return 200, _answer(task_id, rec.id)
        raise ApiError(409, "task_closed", f"statistics task {task_id} was released; ask for a new task")
    plan = StatisticsPlan.from_declaration(json.loads(row.plan))
    cfg = StatisticsConfig.from_json(json.loads(row.config))
    with svc._st().read() as conn:
        policy = _policy(conn, row.model)
    if policy is not None:
        denial = decisions.eligible(policy, row.model, who.region, who.partner, None)
        if denial is not None:
            raise ApiError(403, "policy_denied", denial.message, extra={"reason": denial.code})
    try:
        parsed = parse_contribution(data, plan, cfg.max_records)
    except StatisticsError as exc:
        raise ApiError(400, exc.code, f"statistics rejected: {exc}") from None
    cell = decisions.place(who.region, who.partner)
    now = svc.now

    def store_one(conn: Any) -> Any:
        """The durable part, in the next group-commit transaction."""
        # A no-op conditional UPDATE first: it takes the task row's lock (PostgreSQL) / the write lock (SQLite),
        # so a release that locked the row first makes this one see "released" and refuse, and a release
        # that comes later waits for this contribution and folds it.  Never a 202 for an unfolded body.
        still_open = conn.execute(update(_T).where(_T.c.id == task_id, _T.c.state == OPEN)
                                  .values(state=OPEN)).rowcount
        rec = conn.execute(select(_R).where(_R.c.task_id == task_id, _R.c.device_id == who.device_id)).first()
        if rec is not None:
            return rec
        if not still_open:
            raise ApiError(409, "task_closed", f"statistics task {task_id} was released before this arrived")
        rid = conn.execute(_R.insert().values(
            task_id=task_id, device_id=who.device_id, region=cell.region, partner=cell.partner, idem_key=key,
            body_sha=body_sha, body=json.dumps(parsed, sort_keys=True), body_bytes=len(raw),
            at=now)).inserted_primary_key[0]
        svc.batch_audit.add(now, audit.Entry("statistics.accepted", model=row.model, actor=who.device_id,
                                             code="accepted", subject=task_id,
                                             detail={"report_id": int(rid), "region": cell.region,
                                                     "partner": cell.partner, "bytes": len(raw)}))
        return int(rid)

    assert svc.committer is not None
    try:
        out = svc.committer.run(store_one)
    except IntegrityError:  # a concurrent contribution of the same device won
        with svc._st().read() as conn:
            out = conn.execute(select(_R).where(_R.c.task_id == task_id, _R.c.device_id == who.device_id)).first()
    if isinstance(out, int):
        return 202, _answer(task_id, out)
    if out.idem_key != key:
        raise ApiError(409, "duplicate_contribution", "this device already contributed to this statistics task; "
                                                      "one contribution per device and task")
    if out.body_sha != body_sha:
        raise ApiError(409, "idempotency_conflict", "this Idempotency-Key was already used for a different body")
    return 200, _answer(task_id, out.id)


def _seed(secret: str, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"fedmark-statistics|{secret}|{key}".encode()).digest()[:8], "little")


def release_task(svc: RoundService, task_id: str, actor: str) -> dict[str, Any]:
    """Release an open task: noised, clipped, k-suppressed totals, the ledger's epsilon, the fitted schema."""
    now = svc.now
    with svc._st().write() as conn:
        row = _task_row(conn, task_id)
        # lock the row as "releasing" before reading the contributions (see store_one in contribute)
        if not conn.execute(update(_T).where(_T.c.id == task_id, _T.c.state == OPEN).values(state="releasing")).rowcount:
            raise ApiError(409, "task_closed", f"statistics task {task_id} was already released")
        plan = StatisticsPlan.from_declaration(json.loads(row.plan))
        cfg = StatisticsConfig.from_json(json.loads(row.config))
        reports = conn.execute(select(_R).where(_R.c.task_id == task_id).order_by(_R.c.id)).all()
        if not reports:  # raising rolls the "releasing" mark back: the task stays open
            raise ApiError(409, "no_contributions", f"no device has contributed to {task_id} yet; wait for devices")
        prev = conn.execute(select(_T.c.ledger, _T.c.schema_version).where(_T.c.model == row.model,
                                                                           _T.c.state == RELEASED)
                            .order_by(_T.c.schema_version.desc()).limit(1)).first()
        ledger = PrivacyLedger.from_json(json.loads(prev.ledger)) if prev is not None and prev.ledger else PrivacyLedger()
        version = (prev.schema_version if prev is not None else 0) + 1
        # noise seeded from (server secret, model, release number): a re-run with the same secret and the same
        # contributions draws the same noise; the secret keeps it unpredictable to anyone else
        out = release(plan, [DeviceContribution(r.device_id, f"{r.region}|{r.partner}", json.loads(r.body))
                             for r in reports], cfg, np.random.default_rng(_seed(svc.secret, f"{row.model}|{version}")),
                      ledger)
        try:
            fitted: dict[str, Any] | None = fit_from_totals(
                plan, out["totals"], std_floor=STD_FLOOR if cfg.noise_multiplier > 0 else 0.0).to_json()
            out["fit_error"] = None
        except StatisticsError as exc:
            fitted, out["fit_error"] = None, str(exc)
        out["hashed_columns"] = [c.name for c in plan.columns  # no value released: fitted as a hash column
                                 if c.kind == "categorical" and not out["totals"]["columns"][c.name]["values"]]
        out.update(task_id=task_id, model=row.model, schema_version=version, fitted_schema=fitted,
                   purpose=row.purpose, released_at=now, contributors=len(reports), declaration=plan.to_json())
        text = json.dumps(out)  # not key-sorted: column order is the schema's order
        conn.execute(update(_T).where(_T.c.id == task_id).values(
            state=RELEASED, released_at=now, release=text, schema_version=version, epsilon=out["epsilon"],
            ledger=json.dumps(out["ledger"])))
        conn.execute(update(_R).where(_R.c.task_id == task_id).values(body=""))
        audit.append_one(conn, now, "statistics.released", model=row.model, actor=actor, code="released",
                         subject=task_id, detail={"schema_version": version, "epsilon": out["epsilon"],
                                                  "delta": cfg.delta, "noise_multiplier": cfg.noise_multiplier,
                                                  "k": cfg.k, "contributors": len(reports),
                                                  "release_sha": sha256_bytes(text.encode())})
    return out


def released(conn: Any, model: str, version: int | None = None, *, before: int | None = None) -> dict[str, Any] | None:
    """A model's released statistics: the newest, a given schema version, or the newest before one."""
    q = select(_T.c.release).where(_T.c.model == model, _T.c.state == RELEASED)
    if version is not None:
        q = q.where(_T.c.schema_version == version)
    if before is not None:
        q = q.where(_T.c.schema_version < before)
    text = conn.execute(q.order_by(_T.c.schema_version.desc()).limit(1)).scalar_one_or_none()
    return json.loads(text) if text else None
