"""Global rounds on the coordinator (``--role global``): open, accept regional pushes, combine, publish.

A global round belongs to one model and one global version ``G``.  Each
region runs a sub-round of its own devices on its copy of ``G`` and pushes one
regional aggregate.  The round closes when every active region has pushed, or
at its deadline; it then publishes version ``G+1`` if at least
``min_regions`` aggregates arrived (a region that missed the deadline is left
out, and its late push is refused with ``deadline_passed``), else it closes
without publishing and the next round opens on ``G``.  Every transition is a
conditional ``UPDATE ... WHERE state='open'`` inside the transaction that also
writes the version, so a close happens exactly once across processes and a
SIGKILL mid-close leaves the round open to be closed again.

Combining.  Region ``r`` releases ``A_r = (S_r + N(0, (z C)^2)) / D_r`` (its DP
mean: clipped sum plus its own noise over its fixed denominator) with ``n_r``
contributors.  The coordinator's delta is the count-weighted mean
``sum_r n_r A_r / sum_r n_r`` - what one server would have computed from the
same updates, up to the noise - and the server optimizer (the model's
``server_optimizer``, FedAvg with lr 1 by default) turns it into the new
parameters.  Cost: O(regions x parameters), independent of the devices.

Privacy accounting (parallel composition).  A device enrols at exactly one
regional server: its app key is bound to that region, the regional server
issues keys for its own region only, and its credential lives only in that
region's database.  So the regional populations are disjoint, and one
device's data reaches exactly one region's releases.  Each region accounts
its releases in its own ledger (RDP, at its delta) and pushes its cumulative
epsilon.  The global version is post-processing of the regional releases, so
its guarantee is ``eps = max_r eps_r`` (at ``delta = max_r delta_r``) over every
region that ever contributed to the model's lineage - not the sum: adding a
region adds no epsilon for devices of the other regions.  Caveat, stated in
docs/GOVERNANCE.md: the unit is the device; a person with devices in two
regions is protected per device, exactly as on a single server.  A version
with a contributor whose aggregate carried no epsilon (no DP in that region)
has ``epsilon = None``: no guarantee is claimed.
"""
from __future__ import annotations

import json
import logging
import math
import secrets
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from server.errors import ApiError
from server.governance import audit
from server.registry.service import add_round_version, load_params, manifest_of, require_model, version_row
from server.rounds.config import pipeline_of
from server.rounds.state import CLOSED, OPEN
from server.aggregation import PipelineState
from server.storage import BlobStore, Store, schema

__all__ = ["DEFAULTS", "configure", "config_for", "model_info", "params_bytes", "accept", "tick", "close_round",
           "status", "epsilon_of_lineage"]

log = logging.getLogger("fedmark.server.federation")

DEFAULTS: dict[str, Any] = {"deadline_s": 60.0, "min_regions": 1, "server_optimizer": {"name": "fedavg", "lr": 1.0}}
#: Outcomes of a push the region must not retry (the aggregate will never be used).
FINAL_REFUSALS = ("stale_version", "deadline_passed", "already_contributed")

fr, fa, fm = schema.federation_rounds, schema.federation_aggregates, schema.federation_models


def _bad(field: str, why: str) -> ApiError:
    return ApiError(400, "bad_federation_config", f"{field} {why}", extra={"field": field})


def configure(store: Store, model: str, body: Any, now: float) -> dict[str, Any]:
    """Make ``model`` federated (``PUT /v1/federation/models/<model>``): deadline, minimum regions, optimizer."""
    if not isinstance(body, dict):
        raise _bad("body", "must be a JSON object such as {\"deadline_s\": 60, \"min_regions\": 2}")
    unknown = sorted(set(body) - set(DEFAULTS))
    if unknown:
        raise _bad(", ".join(unknown), f"unknown key(s); known keys: {', '.join(sorted(DEFAULTS))}")
    cfg = {**DEFAULTS, **body}
    d = cfg["deadline_s"]
    if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.5 <= d <= 7 * 86400:  # as given: float(10**400) raises
        raise _bad("deadline_s", "must be a number of seconds between 0.5 and 604800")
    k = cfg["min_regions"]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
        raise _bad("min_regions", "must be an integer between 1 and 1000")
    opt = cfg["server_optimizer"]
    if not isinstance(opt, dict):
        raise _bad("server_optimizer", "must be an object such as {\"name\": \"fedavg\", \"lr\": 1.0}")
    _pipeline(cfg)  # validates the optimizer (400 bad_training_config naming the problem)
    cfg["deadline_s"] = float(d)
    text = json.dumps(cfg, sort_keys=True)
    with store.write() as conn:
        require_model(conn, model)
        if conn.execute(update(fm).where(fm.c.model == model).values(config=text, updated_at=now)).rowcount == 0:
            conn.execute(fm.insert().values(model=model, config=text, updated_at=now))
        audit.append_one(conn, now, "federation.configured", model=model, detail=cfg)
    return {"model": model, **cfg}


def config_for(conn: Connection, model: str) -> dict[str, Any] | None:
    text = conn.execute(select(fm.c.config).where(fm.c.model == model)).scalar_one_or_none()
    return None if text is None else json.loads(text)


def _pipeline(cfg: dict[str, Any]) -> Any:
    return pipeline_of(json.dumps({"server_optimizer": cfg["server_optimizer"]}, sort_keys=True))


def _open_round(conn: Connection, model: str) -> Any:
    return conn.execute(select(fr).where(fr.c.model == model, fr.c.state == OPEN)).first()


def _round_json(r: Any) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"id": r.id, "version": r.version, "state": r.state, "deadline": r.deadline, "min_regions": r.min_regions,
            "result_version": r.result_version, "reason": r.reason}


def model_info(store: Store, model: str, region: str, now: float) -> dict[str, Any]:
    """What a region needs to follow ``model``: the current global version and the open global round."""
    with store.write() as conn:
        cfg = config_for(conn, model)
        if cfg is None:
            raise ApiError(404, "not_federated", f"model {model!r} runs no global rounds on this coordinator; its "
                                                 f"admin makes it federated with PUT /v1/federation/models/{model}")
        m = require_model(conn, model)
        v = version_row(conn, model, m.current_version)
        conn.execute(update(schema.federation_regions).where(schema.federation_regions.c.region == region)
                     .values(last_seen=now))
        rnd = _open_round(conn, model)
    # An admin-published version holds no device data: its guarantee is epsilon 0, so a region's first
    # sub-round on it accounts a finite epsilon (a version without any guarantee stays None).
    eps = 0.0 if v.kind == "publish" and v.epsilon is None else v.epsilon
    return {"model": model, "version": v.version, "num_params": manifest_of(v).num_params, "epsilon": eps,
            "delta": v.delta, "round": _round_json(rnd), "server_time": now}


def params_bytes(store: Store, blobs: BlobStore, model: str, version: int) -> bytes:
    with store.read() as conn:
        if config_for(conn, model) is None:
            raise ApiError(404, "not_federated", f"model {model!r} runs no global rounds on this coordinator")
        v = version_row(conn, model, version)
    m = manifest_of(v)
    return np.ascontiguousarray(load_params(blobs, m), dtype="<f4").tobytes()


def _number(meta: dict[str, Any], key: str, *, integer: bool = False, lo: float = 0.0, hi: float = 2**31 - 1,
            optional: bool = False) -> Any:
    v = meta.get(key)
    if v is None and optional:
        return None
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    # compared as given: float() of a JSON integer past 1e308 raises OverflowError (a 500, not a 400)
    if isinstance(v, bool) or not ok or (isinstance(v, float) and not math.isfinite(v)) or not lo <= v <= hi:
        raise ApiError(400, "bad_aggregate", f"aggregate field {key!r} must be a{'n integer' if integer else ' number'} "
                                             f"between {lo:g} and {hi:g}", extra={"field": key})
    return v


def accept(store: Store, blobs: BlobStore, model: str, region: str, key: str, meta: Any, body: bytes,
           now: float) -> tuple[int, dict[str, Any]]:
    """Store one regional aggregate durably, exactly once per idempotency key; returns (HTTP status, answer).

    The answer is sent only after the commit, so an acknowledged aggregate survives a SIGKILL; a retry of
    the same key (the region did not see the answer) gets the same answer with ``duplicate: true``."""
    if not isinstance(meta, dict):
        raise ApiError(400, "bad_aggregate", "the X-Fedmark-Aggregate header must be a JSON object",
                       extra={"field": "X-Fedmark-Aggregate"})
    if not key or len(key) > 200:
        raise ApiError(400, "bad_aggregate", "an Idempotency-Key header of 1-200 characters is required",
                       extra={"field": "Idempotency-Key"})
    version = _number(meta, "version", integer=True, lo=1)
    contributors = _number(meta, "contributors", integer=True, lo=1)
    clip_bits = _number(meta, "clip_bits", lo=-1e9, hi=1e9, optional=True)
    eps = _number(meta, "epsilon", hi=1e6, optional=True)
    delta = _number(meta, "delta", hi=1.0, optional=True)
    with store.read() as conn:
        dup = conn.execute(select(fa).where(fa.c.idem_key == key)).first()
        if dup is not None:
            return _duplicate(dup, region)
        if config_for(conn, model) is None:
            raise ApiError(404, "not_federated", f"model {model!r} runs no global rounds on this coordinator")
        m = require_model(conn, model)
        num = manifest_of(version_row(conn, model, m.current_version)).num_params
    if len(body) != 4 * num:
        raise ApiError(400, "bad_aggregate", f"the body must be {num} little-endian float32 values ({4 * num} bytes); "
                                             f"got {len(body)} bytes", extra={"field": "body"})
    vec = np.frombuffer(body, dtype="<f4")
    if not np.isfinite(vec).all():
        raise ApiError(400, "bad_aggregate", "the aggregate holds NaN or infinite values", extra={"field": "body"})
    sha = blobs.put(body)  # content-addressed: an orphan from a refused push costs one file, no state
    try:
        with store.write() as conn:
            rnd = _open_round(conn, model)
            if rnd is None:
                raise ApiError(409, "no_open_round", f"no global round of {model!r} is open; retry shortly",
                               retry_after=1, extra={"reason": "no_open_round"})
            if rnd.version != version:
                raise ApiError(409, "stale_version", f"the open global round of {model!r} trains version "
                                                     f"{rnd.version}, not {version}: pull the current version",
                               extra={"reason": "stale_version", "global_round": rnd.id})
            if now >= rnd.deadline:
                raise ApiError(409, "deadline_passed", f"global round {rnd.id} passed its deadline; this region is "
                                                       "left out of it", extra={"reason": "deadline_passed",
                                                                                "global_round": rnd.id})
            conn.execute(fa.insert().values(idem_key=key, global_round=rnd.id, model=model, region=region,
                                            version=version, contributors=contributors, clip_bits=clip_bits,
                                            epsilon=eps, delta=delta, aggregate_sha=sha, used=None, at=now))
            audit.append_one(conn, now, "federation.aggregate", model=model, actor=f"region:{region}",
                             subject=rnd.id, detail={"region": region, "contributors": contributors,
                                                     "epsilon": eps, "aggregate_sha": sha})
    except IntegrityError:
        with store.read() as conn:
            dup = conn.execute(select(fa).where(fa.c.idem_key == key)).first()
        if dup is not None:
            return _duplicate(dup, region)
        raise ApiError(409, "already_contributed", f"region {region!r} already pushed an aggregate into this global "
                                                   "round", extra={"reason": "already_contributed"}) from None
    return 201, {"global_round": rnd.id, "region": region, "accepted": True, "duplicate": False}


def _duplicate(row: Any, region: str) -> tuple[int, dict[str, Any]]:
    if row.region != region:
        raise ApiError(409, "idempotency_conflict", "this Idempotency-Key was used by another region",
                       extra={"field": "Idempotency-Key"})
    return 200, {"global_round": row.global_round, "region": region, "accepted": True, "duplicate": True}


def _active_regions(conn: Connection) -> set[str]:
    return {r[0] for r in conn.execute(select(schema.federation_regions.c.region)
                                       .where(schema.federation_regions.c.revoked.is_(False)))}


def tick(store: Store, blobs: BlobStore, now: float) -> list[str]:
    """Close due global rounds and open the next ones; returns the ids of the rounds closed."""
    closed: list[str] = []
    with store.read() as conn:
        models = [r[0] for r in conn.execute(select(fm.c.model))]
    for model in models:
        with store.read() as conn:
            rnd = _open_round(conn, model)
            pushed = set() if rnd is None else {r[0] for r in conn.execute(
                select(fa.c.region).where(fa.c.global_round == rnd.id))}
            everyone = _active_regions(conn)
        if rnd is not None and (now >= rnd.deadline or (everyone and everyone <= pushed)):
            if close_round(store, blobs, rnd.id, now):
                closed.append(rnd.id)
            rnd = None
        if rnd is None:
            _open_next(store, model, now)
    return closed


def _open_next(store: Store, model: str, now: float) -> None:
    try:
        with store.write() as conn:
            cfg = config_for(conn, model)
            m = require_model(conn, model)
            if cfg is None or m.current_version is None or _open_round(conn, model) is not None:
                return
            rid = "g_" + secrets.token_hex(8)
            conn.execute(fr.insert().values(id=rid, model=model, version=m.current_version, state=OPEN, open_key=model,
                                            deadline=now + float(cfg["deadline_s"]),
                                            min_regions=int(cfg["min_regions"]), created_at=now))
            audit.append_one(conn, now, "federation.round.opened", model=model, subject=rid,
                             detail={"version": m.current_version, "deadline_s": cfg["deadline_s"]})
    except IntegrityError:
        pass  # another process opened it


def epsilon_of_lineage(conn: Connection, model: str) -> tuple[float | None, float | None]:
    """``(max_r eps_r, max_r delta_r)`` over every aggregate the model's versions used (module docstring)."""
    rows = conn.execute(select(fa.c.epsilon, fa.c.delta).where(fa.c.model == model, fa.c.used.is_(True))).all()
    if not rows or any(r.epsilon is None for r in rows):
        return None, None
    return max(float(r.epsilon) for r in rows), max(float(r.delta or 0.0) for r in rows)


def close_round(store: Store, blobs: BlobStore, round_id: str, now: float) -> int | None:
    """Close a global round exactly once; publish when enough regions pushed.  Returns the new version."""
    with store.write() as conn:
        rnd = conn.execute(select(fr).where(fr.c.id == round_id)).first()
        if rnd is None or rnd.state != OPEN:
            return None
        claim = update(fr).where(fr.c.id == round_id, fr.c.state == OPEN).values(state=CLOSED, open_key=None,
                                                                                  closed_at=now)
        if conn.execute(claim).rowcount != 1:
            return None
        aggs = conn.execute(select(fa).where(fa.c.global_round == round_id).order_by(fa.c.region)).all()
        left_out = sorted(_active_regions(conn) - {a.region for a in aggs})
        current = conn.execute(select(schema.models.c.current_version).where(schema.models.c.name == rnd.model)
                               ).scalar_one()
        reason = None
        if current != rnd.version:  # an admin published or rolled back meanwhile: these deltas are for another base
            reason = f"the model's current version changed to v{current} during the round (trained on v{rnd.version})"
        elif len(aggs) < rnd.min_regions:
            reason = f"{len(aggs)} regional aggregate(s), fewer than min_regions={rnd.min_regions}"
        if reason is not None:
            conn.execute(update(fr).where(fr.c.id == round_id).values(reason=reason))
            conn.execute(update(fa).where(fa.c.global_round == round_id).values(used=False))
            audit.append_one(conn, now, "federation.round.closed", model=rnd.model, code="nothing_published",
                             subject=round_id, detail={"reason": reason, "left_out": left_out})
            log.info("global round %s of %s closed without publishing: %s", round_id, rnd.model, reason)
            return None
        version = _publish(conn, blobs, rnd, aggs, left_out, now)
    log.info("global round %s -> %s v%d from %d region(s) (left out: %s)", round_id, rnd.model, version, len(aggs),
             ", ".join(left_out) or "none")
    return version


def _publish(conn: Connection, blobs: BlobStore, rnd: Any, aggs: list[Any], left_out: list[str], now: float) -> int:
    model = conn.execute(select(schema.models).where(schema.models.c.name == rnd.model)).one()
    base = version_row(conn, rnd.model, rnd.version)
    manifest = manifest_of(base)
    params = load_params(blobs, manifest)
    total = sum(int(a.contributors) for a in aggs)
    delta = np.zeros(manifest.num_params, dtype=np.float64)
    for a in aggs:  # count-weighted mean of the regional releases (module docstring)
        delta += (int(a.contributors) / total) * np.frombuffer(blobs.get(a.aggregate_sha), dtype="<f4")
    cfg = config_for(conn, rnd.model) or DEFAULTS
    pipe = _pipeline(cfg)
    state = pipe.restore(model.agg_state, params)
    opt_state, new_params = pipe.optimizer.next(state.optimizer, params, delta.astype(np.float32))
    conn.execute(update(fa).where(fa.c.global_round == rnd.id).values(used=True))
    eps, dlt = epsilon_of_lineage(conn, rnd.model)
    regions = {a.region: {"contributors": int(a.contributors), "epsilon": a.epsilon, "clip_bits": a.clip_bits}
               for a in aggs}
    metrics = {"federated": True, "global_round": rnd.id, "regions": regions, "left_out": left_out,
               "delta_norm": float(np.linalg.norm(delta))}
    version, digest = add_round_version(conn, blobs, rnd.model, base, new_params, round_id=rnd.id,
                                        contributors=total, metrics=metrics, epsilon=eps, delta=dlt, now=now)
    conn.execute(update(schema.models).where(schema.models.c.name == rnd.model)
                 .values(agg_state=PipelineState(state.aggregator, opt_state).to_bytes()))
    conn.execute(update(fr).where(fr.c.id == rnd.id).values(result_version=version))
    audit.append(conn, now, [
        audit.Entry("federation.round.closed", rnd.model, code="released", subject=rnd.id,
                    detail={"version": version, "base": rnd.version, "regions": sorted(regions),
                            "left_out": left_out, "contributors": total, "epsilon": eps}),
        audit.Entry("version.published", rnd.model, code="federated", subject=f"v{version}",
                    detail={"version": version, "digest": digest, "epsilon": eps})])
    return version


def status(store: Store, limit: int = 20) -> dict[str, Any]:
    """The coordinator's view for the dashboard: regions, recent global rounds and each region's contributions."""
    with store.read() as conn:
        regions = conn.execute(select(schema.federation_regions).order_by(schema.federation_regions.c.region)).all()
        rounds = conn.execute(select(fr).order_by(fr.c.created_at.desc()).limit(limit)).all()
        ids = [r.id for r in rounds]
        aggs = conn.execute(select(fa).where(fa.c.global_round.in_(ids))).all() if ids else []
        totals = dict(conn.execute(select(fa.c.region, func.sum(fa.c.contributors))
                                   .where(fa.c.used.is_(True)).group_by(fa.c.region)).all())
    by_round: dict[str, list[dict[str, Any]]] = {}
    for a in aggs:
        by_round.setdefault(a.global_round, []).append(
            {"region": a.region, "contributors": a.contributors, "epsilon": a.epsilon, "used": a.used, "at": a.at})
    return {"role": "global",
            "regions": [{"region": r.region, "revoked": bool(r.revoked), "last_seen": r.last_seen,
                         "contributors_total": int(totals.get(r.region) or 0)} for r in regions],
            "rounds": [{**(_round_json(r) or {}), "model": r.model, "created_at": r.created_at,
                        "aggregates": sorted(by_round.get(r.id, []), key=lambda a: a["region"])} for r in rounds]}
