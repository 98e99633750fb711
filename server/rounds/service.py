"""Round lifecycle: training configuration, opening rounds, task assignment, deadlines.

The mechanics live here (database rows, conditional updates); the policy is
asked of a :mod:`server.rounds.strategy`; the maths happens in
:mod:`server.rounds.aggregate` via ``server.aggregation``.

Concurrency (several server processes on one database): at most one open
round per model is guaranteed by the unique ``rounds.open_key``; every state
transition is a conditional ``UPDATE`` whose row count says whether this
process made it, so a round closes, folds or is abandoned exactly once.
Deadlines are checked lazily on every request that touches the model, by the
app's timer thread, and on demand (``POST /v1/admin/tick``).
"""
from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

from flask import Flask, current_app
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

from fedmark.contract import (ERR_BAD_TRAINING_CONFIG, REASON_ALREADY_CONTRIBUTED, REASON_ROUND_FULL, Manifest,
                              ProtocolError, build_task)
from server.aggregation import PartitionedAggregator, PipelineState, PrivacyBudgetExceeded, PrivacyLedger
from server.auth.tokens import Principal
from server.clock import Clock, iso
from server.errors import ApiError
from server.governance import audit, decisions, residency
from server.governance.policy import Policy, current_policy, policy_version
from server.registry.lines import ensure_line
from server.registry.service import abandoned_entries, load_params, manifest_of, require_model, version_row
from server.rounds import aggregate
from server.rounds.config import TrainingConfig, config_of, pipeline_of
from server.rounds.state import OPEN, abandon, abandon_open
from server.rounds.strategy import RoundView, strategy_for
from server.rounds.sums import RoundSums
from server.storage import BlobStore, Store, schema
from server.storage.group import GroupCommitter

log = logging.getLogger("fedmark.server.rounds")

#: Longest a task request may wait for the next round (``"wait"`` in ``POST /v1/tasks``).
MAX_TASK_WAIT_S = 30.0
LONG_POLL_STEP_S = 0.25
#: The hint (``retry_after_s``) to a task request that found every long-poll slot of the process taken.
LONG_POLL_BUSY_RETRY_S = 0.2
#: ``no_task`` reasons that end when the open round ends, so a request may wait them out.
WAITABLE_REASONS = frozenset({REASON_ROUND_FULL, REASON_ALREADY_CONTRIBUTED})


# Built once (bind parameters): every task request runs them.
_OPEN_ROUND = select(schema.rounds).where(schema.rounds.c.model == bindparam("model"), schema.rounds.c.state == OPEN)
_ROUND = select(schema.rounds).where(schema.rounds.c.id == bindparam("rid"))
_DEVICE_TASKS = select(schema.tasks).where(schema.tasks.c.round_id == bindparam("rid"),
                                           schema.tasks.c.device_id == bindparam("dev")) \
    .order_by(schema.tasks.c.issued_at.desc())
_TASK = select(schema.tasks).where(schema.tasks.c.id == bindparam("tid"))


class RoundService:
    """Attached to the app with :meth:`init_app`; views reach it with :func:`get_rounds`."""

    def __init__(self) -> None:
        self.store: Store | None = None
        self.blobs: BlobStore | None = None
        self.clock: Clock | None = None
        self.secret = ""
        self.no_task_retry = 30
        self.trace_path: str | None = None
        #: A regional server (set by ``server.federation``) holds each closed round's result for its coordinator.
        self.hold_folds = False
        self._timer: threading.Thread | None = None
        self._stop = threading.Event()
        self.committer: GroupCommitter | None = None
        self.sums = RoundSums()
        self.batch_audit = audit.BatchEntries()
        self._manifests: "OrderedDict[tuple[str, int], Manifest]" = OrderedDict()
        self._policies: "OrderedDict[tuple[str, int], Policy | None]" = OrderedDict()
        self._open_rounds: "OrderedDict[str, tuple[Any, Manifest]]" = OrderedDict()
        self._lines: set[str] = set()
        self._cache_lock = threading.Lock()
        self._long_polls = threading.BoundedSemaphore(16)
        self._round_ended = threading.Condition()

    def init_app(self, app: Flask, store: Store, blobs: BlobStore) -> None:
        self.store, self.blobs, self.clock = store, blobs, app.config["CLOCK"]
        self.committer = GroupCommitter(store, max_batch=int(app.config.get("GROUP_COMMIT_MAX_BATCH", 64)),
                                        max_wait_s=float(app.config.get("GROUP_COMMIT_WAIT_MS", 0.0)) / 1000.0)
        self.committer.add_batch_hooks(lambda conn: self.sums.before_commit(conn, self.now), self.sums.after_commit)
        self.committer.add_batch_hooks(self.batch_audit.flush, self.batch_audit.clear)
        self.no_task_retry = int(app.config["NO_TASK_RETRY_S"])
        self._long_polls = threading.BoundedSemaphore(max(1, int(app.config.get("LONG_POLL_SLOTS", 16))))
        self.trace_path = app.config.get("RESIDENCY_TRACE") or None
        self.secret = app.config.get("NOISE_SECRET") or store.setting("noise_secret", lambda: secrets.token_hex(32))
        app.extensions["fedmark_rounds"] = self
        period = float(app.config.get("TICK_SECONDS", 0) or 0)
        if period > 0:
            self._timer = threading.Thread(target=self._run_timer, args=(period,), name="fedmark-tick", daemon=True)
            self._timer.start()

    # ------------------------------------------------------------------ helpers
    @property
    def now(self) -> float:
        assert self.clock is not None
        return self.clock.now()

    def _st(self) -> Store:
        assert self.store is not None
        return self.store

    def _run_timer(self, period: float) -> None:
        try:  # warm up: the privacy accountant's first import takes ~1 s; pay it here, not inside a round close
            import dp_accounting.rdp  # noqa: F401
        except ImportError:
            pass
        while not self._stop.wait(period):
            try:
                self.tick()
            except Exception:  # the timer must survive a bad round; the error is logged
                log.exception("deadline timer")

    def stop(self) -> None:
        self._stop.set()
        if self.committer is not None:
            self.committer.close()

    def version_manifest(self, conn: Any, model: str, version: int) -> Manifest:
        """A version's manifest, parsed once per process (versions are immutable)."""
        key = (model, version)
        m = self._manifests.get(key)
        if m is None:
            m = manifest_of(version_row(conn, model, version))
            with self._cache_lock:
                self._manifests[key] = m
                while len(self._manifests) > 256:
                    self._manifests.popitem(last=False)
        return m

    def round_for_upload(self, round_id: str) -> tuple[Any, Manifest] | None:
        """The round row and its base version's manifest; ``None`` for an unknown round.

        Remembered while the round is open (its model, version, config and deadline never change;
        its counters are re-read by the upload's write job, which also re-checks that it is open),
        and forgotten when this process folds or abandons it.  A round closed by another process
        stays remembered as open until then: its uploads are refused by that write job instead."""
        hit = self._open_rounds.get(round_id)
        if hit is not None:
            return hit
        with self._st().read() as conn:
            rnd = conn.execute(select(schema.rounds).where(schema.rounds.c.id == round_id)).first()
            if rnd is None:
                return None
            found = (rnd, self.version_manifest(conn, rnd.model, rnd.version))
        if rnd.state == OPEN:
            with self._cache_lock:
                self._open_rounds[round_id] = found
                while len(self._open_rounds) > 64:
                    self._open_rounds.popitem(last=False)
        return found

    def _forget_round(self, round_id: str) -> None:
        """This process folded or abandoned ``round_id``: drop what it remembered of it."""
        self.sums.forget(round_id)
        with self._cache_lock:
            self._open_rounds.pop(round_id, None)

    def policy_at(self, conn: Any, model: str, version: int) -> Policy | None:
        """A model's policy of a given version, read once per process (policy versions are immutable)."""
        key = (model, version)
        if key not in self._policies:
            pol = policy_version(conn, model, version)
            with self._cache_lock:
                self._policies[key] = pol
                while len(self._policies) > 256:
                    self._policies.popitem(last=False)
        return self._policies[key]

    def start_accumulator(self, conn: Any, rnd: Any, num_params: int) -> Any:
        """An empty running sum for ``rnd``, opened as its fold will open it (round index, clip norm, weighting)."""
        cfg_text = rnd.config
        pipe = pipeline_of(cfg_text)
        blob = conn.execute(select(schema.models.c.agg_state).where(schema.models.c.name == rnd.model)).scalar_one()
        agg = PipelineState.from_bytes(blob).aggregator if blob else pipe.aggregator.initialize()
        acc = PartitionedAggregator(pipe.aggregator).start(agg, PrivacyLedger(), num_params)
        if acc.clip_norm != rnd.clip_norm:
            raise ApiError(503, "unavailable", "the round's clip norm changed under it; retry", retry_after=1)
        return acc

    def after_accept(self, rnd: Any) -> None:
        """After a durable upload: fold the round if the strategy says it is complete.

        ``rnd`` is the round row as the upload's own transaction saw it, so this costs no
        query; deadlines are the timer's job (and every task request checks them too)."""
        try:
            strategy = strategy_for(config_of(rnd.config))
            if strategy.closes_round and strategy.ready(self._view(rnd)):
                self.run_fold(rnd.id, rnd.model)
            elif not strategy.closes_round:
                self.maintain(rnd.model)
        except Exception:
            log.exception("round maintenance of model %s failed; the timer will retry", rnd.model)

    @staticmethod
    def _view(rnd: Any, buffered: int = 0) -> RoundView:
        return RoundView(version=rnd.version, goal=rnd.goal, min_clients=rnd.min_clients, accepted=rnd.accepted,
                         buffered=buffered, deadline=rnd.deadline)

    def _open_round(self, model: str) -> Any:
        with self._st().read() as conn:
            return conn.execute(_OPEN_ROUND, {"model": model}).first()

    # ------------------------------------------------------------------ training config
    # (setting it is a use case that ends rounds: server.lifecycle.training.set_training)
    def get_training(self, model: str) -> dict[str, Any]:
        with self._st().read() as conn:
            row = require_model(conn, model)
        if row.training is None:
            raise ApiError(404, "no_training", f"model {model!r} has no training configuration; "
                                               f"set one with PUT /v1/models/{model}/training")
        out = json.loads(row.training)
        out["stopped"] = row.stopped
        return out

    # ------------------------------------------------------------------ rounds
    def ensure_open_round(self, model: str) -> Any:
        """The model's open round, opening one if training is configured and the budget allows."""
        rnd = self._open_round(model)
        if rnd is not None:
            return rnd
        now = self.now
        with self._st().read() as conn:
            m = require_model(conn, model)
            if m.training is None:
                raise ApiError(409, "no_task", f"model {model!r} is not being trained (no training configuration)",
                               retry_after=self.no_task_retry, extra={"reason": "not_training"})
            if m.current_version is None:
                raise ApiError(409, "no_task", f"model {model!r} has no version yet", retry_after=self.no_task_retry,
                               extra={"reason": "no_version"})
            if m.candidate is not None:
                why = ("awaits the global coordinator (this regional server pushed its aggregate); training resumes "
                       "with the next global round") if self.hold_folds else (
                    "awaits its publish gate (federated evaluation: POST /v1/evaluations/tasks); training resumes "
                    "after the decision")
                raise ApiError(409, "no_task", f"version {m.candidate} of {model!r} {why}",
                               retry_after=self.no_task_retry, extra={"reason": "awaiting_gate"})
            base = version_row(conn, model, m.current_version)
        if m.stopped:
            raise ApiError(409, "privacy_budget_exhausted", m.stopped)
        cfg = config_of(m.training)
        pipe = pipeline_of(m.training)
        params = load_params(self.blobs, manifest_of(base))  # type: ignore[arg-type]
        state = pipe.restore(m.agg_state, params)
        try:
            pipe.check_budget(state)
        except PrivacyBudgetExceeded as exc:
            self._stop_training(model, str(exc))
            raise ApiError(409, "privacy_budget_exhausted", str(exc)) from exc
        plan = strategy_for(cfg).plan(now)
        clip = pipe.clip_norm(state)
        try:
            with self._st().write() as conn:
                if m.agg_state is None:
                    conn.execute(update(schema.models).where(schema.models.c.name == model,
                                                             schema.models.c.agg_state.is_(None))
                                 .values(agg_state=state.to_bytes()))
                seq = int(conn.execute(select(func.count()).select_from(schema.rounds)
                                       .where(schema.rounds.c.model == model)).scalar_one()) + 1
                rid = "r_" + secrets.token_hex(8)
                conn.execute(schema.rounds.insert().values(
                    id=rid, model=model, seq=seq, mode=cfg.mode, state=OPEN, open_key=model, version=m.current_version,
                    goal=plan.goal, min_clients=plan.min_clients, task_cap=plan.task_cap, deadline=plan.deadline,
                    accepted=0, tasks_issued=0, folds=0, clip_norm=clip, config=json.dumps(cfg.to_json(), sort_keys=True),
                    created_at=now))
                audit.append(conn, now, [audit.Entry("round.opened", model, subject=rid,
                                                     detail={"version": m.current_version, "mode": cfg.mode,
                                                             "goal": plan.goal, "clip_norm": clip})])
        except IntegrityError:
            pass  # another process opened one first: use it
        rnd = self._open_round(model)
        if rnd is None:
            raise ApiError(503, "unavailable", "the round changed state while opening; retry", retry_after=1)
        return rnd

    def _stop_training(self, model: str, reason: str) -> None:
        with self._st().write() as conn:
            conn.execute(update(schema.models).where(schema.models.c.name == model).values(stopped=reason))
            abandoned = abandon_open(conn, model, "privacy budget exhausted", self.now)
            audit.append(conn, self.now, [audit.Entry("training.stopped", model, code="privacy_budget_exhausted",
                                                      detail={"reason": reason})]
                         + abandoned_entries(model, "server", "privacy_budget_exhausted", abandoned))

    def maintain(self, model: str) -> None:
        """Apply the strategy to the open round: aggregate if ready, close/abandon at the deadline."""
        rnd = self._open_round(model)
        if rnd is None:
            return
        strategy = strategy_for(config_of(rnd.config))
        view = self._view(rnd, aggregate.buffered(self._st(), rnd.id))
        action = strategy.at_deadline(view, self.now)
        if action == "abandon":
            if abandon(self._st(), rnd.id, f"deadline passed with {rnd.accepted} of at least "
                                                     f"{rnd.min_clients} updates", self.now):
                log.info("round %s abandoned at its deadline (%d < %d updates)", rnd.id, rnd.accepted, rnd.min_clients)
                self._forget_round(rnd.id)
                self._notify_round_ended()
        elif action == "close" or strategy.ready(view):
            self.run_fold(rnd.id, model)

    def _due(self, rnd: Any, now: float) -> bool:
        """Whether the open round ``rnd`` needs :meth:`maintain` before a task is handed out.

        Uploads fold a round the moment it completes and the timer watches deadlines, so a task
        request needs to act only on a deadline that passed or on a complete round whose fold
        did not happen (the server died in between); buffered (FedBuff) rounds fold on upload."""
        if rnd.deadline is not None and now >= rnd.deadline:
            return True
        strategy = strategy_for(config_of(rnd.config))
        return strategy.closes_round and strategy.ready(self._view(rnd))

    def maintain_quietly(self, model: str) -> None:
        """:meth:`maintain` for request paths whose answer does not depend on it: a failing
        aggregation is logged (and retried by the timer) instead of failing an unrelated request."""
        try:
            self.maintain(model)
        except Exception:
            log.exception("round maintenance of model %s failed; the timer will retry", model)

    def run_fold(self, round_id: str, model: str) -> aggregate.FoldResult | None:
        try:
            return aggregate.fold(self._st(), self.blobs, round_id, self.secret, self.now,  # type: ignore[arg-type]
                                  self.trace_path, hold=self.hold_folds and not residency.is_line(model))
        except PrivacyBudgetExceeded as exc:
            self._stop_training(model, str(exc))
            return None
        finally:
            self._forget_round(round_id)  # folded (or refused): its running sum is gone from the database too
            self._notify_round_ended()

    def tick(self) -> list[str]:
        """Check every model with an open round (deadlines, ready buffers); returns the models checked."""
        with self._st().read() as conn:
            models = [r[0] for r in conn.execute(select(schema.rounds.c.model).where(schema.rounds.c.state == OPEN))]
        for model in models:
            self.maintain(model)
        return models

    def round_info(self, round_id: str) -> dict[str, Any]:
        with self._st().read() as conn:
            rnd = conn.execute(select(schema.rounds).where(schema.rounds.c.id == round_id)).first()
        if rnd is None:
            raise ApiError(404, "unknown_round", f"no round {round_id!r}; request a task (POST /v1/tasks) for a current one")
        if rnd.state == OPEN:
            self.maintain_quietly(rnd.model)
            with self._st().read() as conn:
                rnd = conn.execute(select(schema.rounds).where(schema.rounds.c.id == round_id)).one()
        return {"round_id": rnd.id, "model": rnd.model, "version": rnd.version, "mode": rnd.mode, "state": rnd.state,
                "accepted": rnd.accepted, "goal": rnd.goal, "min_clients": rnd.min_clients,
                "tasks_issued": rnd.tasks_issued, "deadline": iso(rnd.deadline), "clip_norm": rnd.clip_norm,
                "result_version": rnd.result_version, "folds": rnd.folds, "reason": rnd.reason}

    # ------------------------------------------------------------------ tasks
    def assign_task(self, who: Principal, model: str, wait_s: float = 0.0) -> dict[str, Any]:
        """Give the device a task in the model's open round (idempotent while its task is pending).

        ``wait_s`` > 0 is a bounded long-poll: when the open round has no task for this device
        (all handed out, or it already contributed), the request waits until that round ends and
        asks the next one, instead of the device polling; it still ends with ``no_task`` and a
        ``Retry-After`` when ``wait_s`` runs out.  A waiting request holds one server thread, so at most
        ``LONG_POLL_SLOTS`` requests of a process wait at once (the others could starve the uploads that
        end the round); a request that finds no free slot is answered at once with ``retry_after_s``.
        """
        deadline = time.monotonic() + max(0.0, min(float(wait_s), MAX_TASK_WAIT_S))
        slot = False
        try:
            while True:
                try:
                    return self._assign_once(who, model)
                except ApiError as exc:
                    reason = exc.extra.get("reason")
                    if exc.code != "no_task" or reason not in WAITABLE_REASONS or time.monotonic() >= deadline:
                        raise
                    if not slot and not self._long_polls.acquire(blocking=False):
                        # every waiting slot is taken: answer now, with a short hint instead of the round's deadline
                        exc.extra["retry_after_s"] = LONG_POLL_BUSY_RETRY_S
                        raise
                    slot = True
                    if not self._wait_for_round_end(exc.extra.get("round_id"), deadline):
                        raise
        finally:
            if slot:
                self._long_polls.release()

    def _wait_for_round_end(self, round_id: str | None, deadline: float) -> bool:
        """Poll (in the server, against the database) until the round leaves 'open'; False at the deadline.

        A round past its own deadline is closed or abandoned here, as the timer would."""
        if round_id is None:
            return False
        r = schema.rounds
        while time.monotonic() < deadline:
            with self._st().read() as conn:
                row = conn.execute(select(r.c.state, r.c.model, r.c.deadline).where(r.c.id == round_id)).first()
            if row is None or row.state != OPEN:
                return True
            if row.deadline is not None and self.now >= row.deadline:
                self.maintain_quietly(row.model)
            # Woken at once when this process ends a round; another process's close is seen at the next look.
            with self._round_ended:
                self._round_ended.wait(min(LONG_POLL_STEP_S, max(0.0, deadline - time.monotonic())))
        return False

    def _notify_round_ended(self) -> None:
        with self._round_ended:
            self._round_ended.notify_all()

    def _assign_once(self, who: Principal, model: str) -> dict[str, Any]:
        if who.device_id is None:
            raise ApiError(403, "forbidden", "tasks are for enrolled devices; use a device token")
        with self._st().read() as conn:
            require_model(conn, model)
            policy = current_policy(conn, model)
        if policy is not None:
            model = self.governed_target(policy, who, model)
        now = self.now
        rnd = self._open_round(model)
        if rnd is not None and self._due(rnd, now):  # past its deadline, or complete but not folded (a crash)
            self.maintain_quietly(model)
            rnd = None
        rnd = rnd or self.ensure_open_round(model)
        cfg = config_of(rnd.config)
        strategy = strategy_for(cfg)

        def issue(conn: Any) -> dict[str, Any]:
            mine = conn.execute(_DEVICE_TASKS, {"rid": rnd.id, "dev": who.device_id}).all()
            pending = [t for t in mine if t.state == "issued" and (cfg.mode == "sync" or t.version == rnd.version)]
            if pending:
                return self._task_json(pending[0], rnd, cfg, policy, who)
            if cfg.mode == "sync" and mine:
                raise ApiError(409, "no_task", "this device already contributed to the current round; ask again later",
                               retry_after=self._retry_after(rnd, now),
                               extra={"reason": "already_contributed", "round_id": rnd.id})
            cond = [schema.rounds.c.id == rnd.id, schema.rounds.c.state == OPEN]
            if cfg.mode == "sync":
                cond.append(schema.rounds.c.tasks_issued < schema.rounds.c.task_cap)
            res = conn.execute(update(schema.rounds).where(*cond).values(tasks_issued=schema.rounds.c.tasks_issued + 1))
            if res.rowcount != 1:
                raise ApiError(409, "no_task", "the current round has handed out all its tasks; ask again later",
                               retry_after=self._retry_after(rnd, now), extra={"reason": "round_full", "round_id": rnd.id})
            current = conn.execute(_ROUND, {"rid": rnd.id}).one()
            tid = "t_" + secrets.token_hex(8)
            deadline = strategy.task_deadline(self._view(current), now)
            conn.execute(schema.tasks.insert().values(id=tid, round_id=rnd.id, device_id=who.device_id,
                                                      version=current.version, state="issued", issued_at=now,
                                                      deadline=deadline,
                                                      policy_version=policy.version if policy else None))
            task = conn.execute(_TASK, {"tid": tid}).one()
            return self._task_json(task, current, cfg, policy, who)

        assert self.committer is not None
        return self.committer.run(issue)  # tasks that are asked for together share one commit

    def governed_target(self, policy: Policy, who: Principal, model: str) -> str:
        """Apply the policy to a task request: refuse (403 + audit) or pick the model line to train.

        The decisions are :func:`server.governance.decisions.eligible` and
        :func:`~server.governance.decisions.training_line`; this method audits
        a refusal and creates the regional line on first use."""
        line_region = None
        if residency.is_line(model):
            with self._st().read() as conn:
                line_region = conn.execute(select(schema.models.c.region)
                                           .where(schema.models.c.name == model)).scalar_one()
        denial = decisions.eligible(policy, model, who.region, who.partner, line_region)
        if denial is not None:
            with self._st().write() as conn:
                audit.append_one(conn, self.now, "task.denied", model=model, actor=who.name, code=denial.code,
                                 subject=who.device_id, detail={"region": who.region, "partner": who.partner,
                                                                "policy_version": policy.version})
            raise ApiError(403, "policy_denied", denial.message, extra={"reason": denial.code})
        line = decisions.training_line(policy, model, who.region)
        if line is None:
            return model
        if line in self._lines:  # regional lines are never deleted: one write transaction per line and process
            return line
        try:
            with self._st().write() as conn:
                line = ensure_line(conn, model, decisions.place(who.region, who.partner).region, self.now)
        except IntegrityError:  # created concurrently
            pass
        with self._cache_lock:
            self._lines.add(line)
        return line

    def _retry_after(self, rnd: Any, now: float) -> float:
        if rnd.deadline is not None and rnd.deadline > now:
            return max(1.0, min(float(self.no_task_retry), rnd.deadline - now))
        return float(self.no_task_retry)

    @staticmethod
    def _task_json(task: Any, rnd: Any, cfg: TrainingConfig, policy: Policy | None = None,
                   who: Principal | None = None) -> dict[str, Any]:
        """The task document (schema: ``fedmark.contract.protocol``, the one every device parses with)."""
        governance: dict[str, Any] = {}
        if policy is not None:
            governance = {"purpose": policy.purpose, "consent_purposes": list(policy.consent_purposes),
                          "consent_signals": policy.consent_signals,
                          "policy_version": task.policy_version, "region": who.region if who else None}
        try:
            return build_task(
                task_id=task.id, round_id=rnd.id, model=rnd.model, version=task.version, mode=cfg.mode,
                manifest_url=f"/v1/models/{rnd.model}/versions/{task.version}/manifest",
                upload_url=f"/v1/rounds/{rnd.id}/updates", hyperparams=cfg.hyperparams, clip_norm=rnd.clip_norm,
                local_noise=cfg.local_noise, encoding=cfg.encoding, deadline=iso(task.deadline),
                eligibility=cfg.eligibility, **governance)
        except ProtocolError as exc:  # e.g. local_noise without clipping: no device could train this task
            raise ApiError(409, ERR_BAD_TRAINING_CONFIG, f"the training configuration of {rnd.model!r} yields a "
                                                         f"task no device can run: {exc}; fix it with PUT "
                                                         f"/v1/models/{rnd.model}/training") from exc


def get_rounds() -> RoundService:
    return current_app.extensions["fedmark_rounds"]
