"""The regional server's agent (``--role region``): pull global versions, push regional aggregates, resync.

It runs in the background (every ``FEDERATION_SYNC_S``) and on demand
(``POST /v1/federation/tick``), and is safe to run in several worker processes
at once: every write is a conditional update or an insert on a key.

One pass, per local model that is not a regional line:

1. **Pull.**  Ask the coordinator for the model (404 ``not_federated``: the
   model stays local).  If the coordinator's version is newer than the one the
   local current version holds (table ``federation_links``), download its
   parameters and install them as a new local version (kind ``federated``).
   An open local sub-round on the old version is abandoned (its updates
   trained a stale model) and a held result is released.  A region that was
   down comes back exactly this way: it resyncs to the current version.
2. **Push.**  Every closed local sub-round whose result is held (status
   ``regional``) and not yet in the outbox ``federation_pushes`` is pushed:
   the noised aggregate the round's fold released (its ``aggregate_sha``
   blob), its contributor count, its noised clip-bit sum, its epsilon and
   delta.  Nothing else leaves: no device id, no individual update, no
   per-cell breakdown.  A count below ``k`` (the policy's ``k_min``, else
   ``FEDERATION_K_MIN``) is not pushed at all (outbox ``withheld``).  The
   idempotency key is ``<region>:<local round id>``, derived from durable
   state, so a push repeated after a SIGKILL of either side is stored once.
3. **Release.**  The held result pauses local training until the global
   round it went to has ended (published, or closed short of regions), or
   until the push was refused for good (deadline passed: the region is left
   out of that round).

A region whose policy exports nothing trains the line ``<model>@<region>``
(:mod:`server.governance.residency`): lines are never pushed or held, so it
keeps its own line and sends nothing up.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any

import numpy as np
from sqlalchemy import and_, select, update
from sqlalchemy.exc import IntegrityError

from server.clock import Clock
from server.federation.coordinator import FINAL_REFUSALS
from server.federation.upstream import Refused, Upstream, UpstreamError
from server.governance import audit
from server.governance.policy import current_policy
from server.registry.service import add_round_version, manifest_of, version_row
from server.rounds.state import CLOSED, abandon_open
from server.storage import BlobStore, Store, schema

__all__ = ["RegionAgent", "HELD"]

log = logging.getLogger("fedmark.server.federation")

HELD = "regional"
fl, fp = schema.federation_links, schema.federation_pushes


class RegionAgent:
    def __init__(self, store: Store, blobs: BlobStore, clock: Clock, upstream: Upstream, k_min: int,
                 period: float) -> None:
        self.store, self.blobs, self.clock, self.upstream = store, blobs, clock, upstream
        self.region = upstream.region
        self.k_min = max(2, int(k_min))
        self.period = float(period)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        if self.period > 0:
            self._thread = threading.Thread(target=self._run, name="fedmark-region-agent", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.step()
            except Exception:  # the agent must survive one bad pass; the error is logged
                log.exception("region agent pass")

    def step(self) -> dict[str, Any]:
        """One pass over every local model (see module docstring); returns what it did, per model."""
        with self._lock:
            with self.store.read() as conn:
                models = [r.name for r in conn.execute(select(schema.models).where(
                    schema.models.c.line_of.is_(None), schema.models.c.current_version.is_not(None)))]
            out: dict[str, Any] = {}
            for model in models:
                try:
                    out[model] = self._follow(model)
                    self.last_error = None
                except Refused as exc:
                    out[model] = {"skipped": exc.code}
                except UpstreamError as exc:
                    self.last_error = str(exc)
                    log.warning("region %s: %s", self.region, exc)
                    out[model] = {"error": str(exc)}
            return out

    @property
    def now(self) -> float:
        return self.clock.now()

    # ------------------------------------------------------------------ the three steps
    def _follow(self, model: str) -> dict[str, Any]:
        info = self.upstream.json("GET", f"/v1/federation/models/{model}")
        done: dict[str, Any] = {"global_version": info["version"]}
        if self._linked_global(model) != info["version"]:
            done["installed"] = self._install(model, info)
        done["pushed"] = self._push_pending(model)
        done["released"] = self._release(model, info)
        return done

    def _linked_global(self, model: str) -> int | None:
        with self.store.read() as conn:
            cur = conn.execute(select(schema.models.c.current_version).where(schema.models.c.name == model)).scalar_one()
            return conn.execute(select(fl.c.global_version).where(fl.c.model == model, fl.c.local_version == cur)
                                ).scalar_one_or_none()

    def _install(self, model: str, info: dict[str, Any]) -> int | None:
        gv = int(info["version"])
        with self.store.read() as conn:
            if conn.execute(select(fl).where(fl.c.model == model, fl.c.global_version == gv)).first() is not None:
                return None  # installed before (another process, or a rollback here): nothing to do
            m = conn.execute(select(schema.models).where(schema.models.c.name == model)).one()
            base = version_row(conn, model, m.current_version)
        local_n = manifest_of(base).num_params
        if int(info["num_params"]) != local_n:
            raise UpstreamError(f"model {model!r} has {local_n} parameters here and {info['num_params']} on the "
                                "coordinator: publish the coordinator's artifact on this regional server")
        _, data = self.upstream.call("GET", f"/v1/federation/models/{model}/versions/{gv}/params")
        params = np.frombuffer(data, dtype="<f4")
        now = self.now
        try:
            with self.store.write() as conn:
                version, digest = add_round_version(
                    conn, self.blobs, model, base, params, round_id=None, contributors=0,  # type: ignore[arg-type]
                    metrics={"global_version": gv, "coordinator": self.upstream.base_url},
                    epsilon=info.get("epsilon"), delta=info.get("delta"), now=now, kind="federated")
                conn.execute(fl.insert().values(model=model, global_version=gv, local_version=version, at=now))
                conn.execute(update(schema.models).where(schema.models.c.name == model).values(candidate=None))
                abandoned = abandon_open(conn, model, f"global version {gv} arrived from the coordinator", now)
                audit.append_one(conn, now, "federation.synced", model=model, subject=f"v{version}",
                                 detail={"global_version": gv, "local_version": version, "digest": digest,
                                         "abandoned_rounds": abandoned})
        except IntegrityError:
            return None  # another worker installed it first
        log.info("region %s: %s global v%d installed as local v%d", self.region, model, gv, version)
        return version

    def _push_pending(self, model: str) -> list[str]:
        r, v = schema.rounds, schema.versions
        with self.store.read() as conn:
            rows = conn.execute(
                select(r.c.id, r.c.version, r.c.aggregate_sha, v.c.contributors, v.c.epsilon, v.c.delta, v.c.metrics)
                .select_from(r.join(v, and_(v.c.model == r.c.model, v.c.version == r.c.result_version)))
                .where(r.c.model == model, r.c.state == CLOSED, v.c.status == HELD,
                       r.c.id.not_in(select(fp.c.round_id))).order_by(r.c.created_at)).all()
            pol = current_policy(conn, model)
            links = dict(conn.execute(select(fl.c.local_version, fl.c.global_version).where(fl.c.model == model)).all())
        k = max(self.k_min, int(pol.k_min) if pol is not None else 0)
        pushed = []
        for row in rows:
            gv = links.get(row.version)
            if gv is None:
                self._record(row.id, model, "unlinked", None, {"local_version": row.version})
                continue
            if int(row.contributors) < k:
                self._record(row.id, model, "withheld", None, {"reason": "below_k", "k": k})
                continue
            metrics = json.loads(row.metrics)
            frac = metrics.get("unclipped_fraction_noised", metrics.get("unclipped_fraction"))
            meta = {"version": gv, "contributors": int(row.contributors), "epsilon": row.epsilon, "delta": row.delta,
                    "clip_bits": None if frac is None else float(frac) * int(row.contributors)}
            try:
                _, data = self.upstream.call(
                    "POST", f"/v1/federation/models/{model}/aggregates", body=self.blobs.get(row.aggregate_sha),
                    headers={"Content-Type": "application/octet-stream", "Idempotency-Key": f"{self.region}:{row.id}",
                             "X-Fedmark-Aggregate": json.dumps(meta)})
            except Refused as exc:
                if exc.code in FINAL_REFUSALS:
                    self._record(row.id, model, "late", None, {"code": exc.code})
                    log.info("region %s: aggregate of round %s refused (%s)", self.region, row.id, exc.code)
                continue  # anything else (no open round yet, coordinator busy): retried next pass
            ans = json.loads(data)
            self._record(row.id, model, "acked", ans.get("global_round"), {"duplicate": ans.get("duplicate")})
            pushed.append(row.id)
        return pushed

    def _record(self, round_id: str, model: str, state: str, global_round: str | None, detail: dict[str, Any]) -> None:
        now = self.now
        try:
            with self.store.write() as conn:
                conn.execute(fp.insert().values(round_id=round_id, model=model, state=state, global_round=global_round,
                                                detail=json.dumps(detail, sort_keys=True), at=now))
                audit.append_one(conn, now, f"federation.push.{state}", model=model, subject=round_id,
                                 detail={"global_round": global_round, **detail})
        except IntegrityError:
            pass  # recorded by another worker

    def _release(self, model: str, info: dict[str, Any]) -> bool:
        """Resume local training once the held result's global round is over (see module docstring)."""
        r, v = schema.rounds, schema.versions
        with self.store.read() as conn:
            cand = conn.execute(select(schema.models.c.candidate).where(schema.models.c.name == model)).scalar_one()
            if cand is None:
                return False
            held = conn.execute(select(v.c.status).where(v.c.model == model, v.c.version == cand)).scalar_one()
            if held != HELD:
                return False  # a gate candidate: the gate decides
            rid = conn.execute(select(r.c.id).where(r.c.model == model, r.c.result_version == cand)).scalar_one()
            push = conn.execute(select(fp).where(fp.c.round_id == rid)).first()
        if push is None:
            return False
        open_round = (info.get("round") or {}).get("id")
        if push.state == "acked" and open_round == push.global_round:
            return False
        with self.store.write() as conn:
            conn.execute(update(schema.models).where(schema.models.c.name == model, schema.models.c.candidate == cand)
                         .values(candidate=None))
        return True

    def status(self) -> dict[str, Any]:
        with self.store.read() as conn:
            links = conn.execute(select(fl).order_by(fl.c.model, fl.c.global_version)).all()
            pushes = conn.execute(select(fp).order_by(fp.c.at.desc()).limit(50)).all()
        return {"role": "region", "region": self.region, "upstream": self.upstream.base_url,
                "last_error": self.last_error,
                "links": [{"model": x.model, "global_version": x.global_version, "local_version": x.local_version}
                          for x in links],
                "pushes": [{"round_id": p.round_id, "model": p.model, "state": p.state, "global_round": p.global_round,
                            "detail": json.loads(p.detail or "{}"), "at": p.at} for p in pushes]}
