"""Update ingestion: ``POST /v1/rounds/{round_id}/updates``.

Checks, in order (each refusal is a 4xx with its own code, see docs/API.md):
content type, round exists, headers, body size (capped at the exact size of an
f32 update of this model, so a body can never exceed O(parameters)), round open
(a replay of an update to a closed round gets its original answer), decodable
body (magic, length, checksum), encoding, every value finite; then, in the write
job, replay (idempotency key), the device holds a task in this round, version /
staleness.  The body is decoded once here.  In a sync round with a mean
combiner it is then measured, re-clipped server-side and added to the round's
running sum in the same transaction (:mod:`server.rounds.sums`); otherwise
the body is stored and the fold does that.  Either way the server clips
whatever the device claims (its ``X-Fedmark-Within-Clip`` claim is stored as
sent, NULL when absent, and only compared with the server's own bit).

Exactly once: the idempotency receipt ``(device, round, key) -> body hash,
update id`` is inserted in the same transaction as the update and the round's
counter; the unique constraint on it makes a concurrent duplicate fail, and a
retry with the same body gets the original answer (200) while a different
body under the same key is refused (409 ``idempotency_conflict``).  Receipts
outlive the update rows, so a retry after the round closed still gets the
original answer.

Durability: the 202 is sent only after that transaction committed (SQLite
``synchronous=FULL`` / PostgreSQL commit = WAL flush), with the running sum or
the body in it, so an acknowledged update survives a crash of the server.
Uploads that arrive together share that transaction and its flush
(:mod:`server.storage.group`): each waits a few milliseconds at most.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from fedmark.contract import (UPDATE_CONTENT_TYPE, ProtocolError, UploadHeaders, WireError, decode_update,
                              encoded_size, parse_upload_headers, sha256_bytes)
from fedmark.contract.gram import check_contribution, gram_space
from fedmark.contract.wire import decode_sparse_update, sparse_size, wire_error_code
from server.auth.tokens import Principal
from server.errors import ApiError
from server.governance import audit, decisions
from server.rounds.config import config_of
from server.rounds.service import RoundService
from server.rounds.state import OPEN
from server.rounds.strategy import StaleUpdate, strategy_for
from server.rounds.sums import FLAT_PART, folds_on_arrival
from server.storage import schema

log = logging.getLogger("fedmark.server.ingest")


def parse_headers(h: Mapping[str, str]) -> UploadHeaders:
    """The update's headers, validated by the contract (``fedmark.contract.parse_upload_headers``); 400 bad_header."""
    try:
        return parse_upload_headers(h)
    except ProtocolError as exc:
        raise ApiError(400, exc.code, str(exc)) from None


class _Replay(Exception):
    def __init__(self, receipt: Any) -> None:
        super().__init__("replay")
        self.receipt = receipt


def _answer(round_id: str, update_id: int) -> dict[str, Any]:
    return {"accepted": True, "update_id": update_id, "round_id": round_id}


# The statements of the durable part, built once (with bind parameters): they run for every accepted update
# inside the group commit, where building and hashing a fresh statement each time cost more than executing it.
_R, _T = schema.rounds, schema.tasks
_RECEIPT = select(schema.receipts).where(schema.receipts.c.device_id == bindparam("dev"),
                                         schema.receipts.c.round_id == bindparam("rid"),
                                         schema.receipts.c.idem_key == bindparam("key"))
_COUNT_ONE = update(_R).where(_R.c.id == bindparam("rid"), _R.c.state == OPEN) \
    .values(accepted=_R.c.accepted + 1).returning(*_R.c)
_DEVICE_TASKS = select(_T).where(_T.c.round_id == bindparam("rid"), _T.c.device_id == bindparam("dev")) \
    .order_by(_T.c.issued_at)
_TASK_DONE = update(_T).where(_T.c.id == bindparam("tid")).values(state="done")
_INSERT_UPDATE = schema.updates.insert()
_INSERT_RECEIPT = schema.receipts.insert()
_INSERT_CONTRIBUTION = schema.contributions.insert()


def _receipt(conn: Any, device: str, round_id: str, key: str) -> Any:
    return conn.execute(_RECEIPT, {"dev": device, "rid": round_id, "key": key}).first()


def _replay(rec: Any, body_sha: str, round_id: str) -> tuple[int, dict[str, Any]]:
    if rec.body_sha != body_sha:
        raise ApiError(409, "idempotency_conflict", "this Idempotency-Key was already used for a different update "
                                                     "in this round; use a new key for a new update")
    return 200, _answer(round_id, rec.update_id)


def ingest(svc: RoundService, who: Principal, round_id: str, content_type: str | None,
           headers: Mapping[str, str], read_body: Any, set_limit: Any, max_update_bytes: int) -> tuple[int, dict[str, Any]]:
    """Validate and durably store one update; returns (HTTP status, answer)."""
    if who.role != "device" or who.device_id is None:
        raise ApiError(403, "forbidden", "only an enrolled device can upload updates; use its device token")
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype != UPDATE_CONTENT_TYPE:
        raise ApiError(415, "bad_content_type", f"Content-Type must be {UPDATE_CONTENT_TYPE} (the binary body of "
                                                f"fedmark.contract.encode_update), got {content_type!r}")
    store = svc._st()
    hdr = parse_headers(headers)
    # The round and its base manifest: remembered by this process while the round is open, so a hot
    # round's uploads read nothing before their write job (which re-checks the state and the receipt).
    found = svc.round_for_upload(round_id)
    if found is None:
        raise ApiError(404, "unknown_round", f"no round {round_id!r}; request a task (POST /v1/tasks)")
    rnd, manifest = found
    space = gram_space(manifest.hyperparams)  # a Gram-trained model (federated EASE) takes sparse bodies
    size = encoded_size(manifest.num_params, "f32") if space is None else sparse_size(space.max_nnz)
    limit = min(max_update_bytes, size)
    set_limit(limit)
    body: bytes = read_body()  # raises 413 (body_too_large) beyond the limit
    body_sha = sha256_bytes(body)
    if rnd.state != OPEN:  # a retry after the close still gets its original answer
        with store.read() as conn:
            rec = _receipt(conn, who.device_id, round_id, hdr.key)
        if rec is not None:
            return _replay(rec, body_sha, round_id)
        raise ApiError(409, "round_closed", f"round {round_id} is {rnd.state}; request a new task (POST /v1/tasks)")
    cfg = config_of(rnd.config)
    try:
        if space is None:
            vec, enc = decode_update(body, manifest.num_params)
        else:
            vec, enc = decode_sparse_update(body, space.num_values, space.max_nnz), "f32"
            try:
                check_contribution(*vec, space.items)
            except ValueError as exc:
                raise ApiError(400, "bad_update", f"update rejected: {exc}") from exc
    except WireError as exc:
        code = wire_error_code(exc)
        hint = "; check the local training (learning rate, data)" if code == "non_finite" else ""
        raise ApiError(400, code, f"update rejected: {exc}{hint}") from exc
    if enc not in ("f32", cfg.encoding):
        raise ApiError(400, "bad_encoding", f"the task asked for encoding {cfg.encoding!r} (or lossless 'f32'); "
                                            f"the update is {enc!r}")
    strategy = strategy_for(cfg)
    now = svc.now
    if rnd.deadline is not None and now >= rnd.deadline:
        svc.maintain_quietly(rnd.model)
        raise ApiError(409, "round_closed", f"round {round_id} passed its deadline; request a new task")
    arrival = folds_on_arrival(cfg)
    if space is not None and not arrival:
        raise ApiError(400, "bad_update", "a Gram-trained model folds sparse bodies on arrival: its training must be "
                                          "mode 'sync' without a robust combiner (PUT /v1/models/{name}/training)")

    def store_update(conn: Any) -> tuple[int, Any]:
        """The durable part, run in the process's next group-commit transaction (server.storage.group)."""
        # The conditional UPDATE comes first: it locks the round row (PostgreSQL) / holds the write lock
        # (SQLite), so the receipt read after it sees any concurrent retry that committed meanwhile.
        cur = conn.execute(_COUNT_ONE, {"rid": round_id}).first()
        rec = _receipt(conn, who.device_id, round_id, hdr.key)
        if rec is not None:
            raise _Replay(rec)  # leaves the savepoint by rollback: the counter is not touched
        if cur is None:
            raise ApiError(409, "round_closed", f"round {round_id} closed before this update arrived; request a new task")
        tasks = conn.execute(_DEVICE_TASKS, {"rid": round_id, "dev": who.device_id}).all()
        open_tasks = [t for t in tasks if t.state == "issued"]
        if not open_tasks:
            if tasks:
                raise ApiError(409, "duplicate_update", "this device already uploaded an update for its task in this "
                                                        "round; request a new task for another update")
            raise ApiError(403, "forbidden", f"no task in round {round_id} was issued to device {who.device_id!r}; "
                                             "a device may only upload for its own task (POST /v1/tasks)")
        matching = [t for t in open_tasks if t.version == hdr.version] or open_tasks
        task = matching[-1]
        if space is not None and task.policy_version is not None:
            raise ApiError(400, "bad_update", "a Gram-trained (EASE) model cannot yet fold per governance cell, and "
                                              "this model has a policy: train Gram models under a model name that "
                                              "has no policy (docs/SIMULATE.md, federated EASE)")
        try:
            strategy.check_version(svc._view(cur), task.version, hdr.version)
        except StaleUpdate as exc:
            raise ApiError(409, "stale_version", str(exc)) from exc
        cell = decisions.place(who.region, who.partner)  # the update's partition keys
        region, partner = cell.region, cell.partner
        # Folded on arrival: the row records the contribution; its body lives on only in the round's sum.
        uid = conn.execute(_INSERT_UPDATE, {
            "round_id": round_id, "task_id": task.id, "device_id": who.device_id, "base_version": task.version,
            "num_examples": hdr.num_examples, "within_clip": hdr.within_clip, "encoding": enc,
            "body": b"" if arrival else body, "created_at": now, "region": region,
            "partner": partner}).inserted_primary_key[0]
        conn.execute(_INSERT_RECEIPT, {"device_id": who.device_id, "round_id": round_id, "idem_key": hdr.key,
                                       "body_sha": body_sha, "update_id": uid, "created_at": now})
        conn.execute(_TASK_DONE, {"tid": task.id})
        # Governance record, same transaction; its audit entry joins the batch's (written when it commits).
        pol = svc.policy_at(conn, rnd.model, task.policy_version) if task.policy_version is not None else None
        conn.execute(_INSERT_CONTRIBUTION, {
            "update_id": uid, "model": rnd.model, "round_id": round_id, "region": region, "partner": partner,
            "device_id": who.device_id, "num_examples": hdr.num_examples, "body_bytes": len(body),
            "policy_version": task.policy_version, "purpose": pol.purpose if pol else None, "at": now})
        if arrival:  # last but the audit entry: nothing after it may fail (see RoundSums.add)
            weight = min(float(hdr.num_examples), cfg.max_examples_weight) * strategy.weight_factor(
                rnd.version - task.version)
            if space is not None:
                weight = 1.0  # one device, one count: what the k-threshold reads
            part = cell.key if task.policy_version is not None else FLAT_PART
            size = manifest.num_params if space is None else space.num_values
            svc.sums.add(conn, round_id, part, lambda: svc.start_accumulator(conn, rnd, size),
                         vec, weight, hdr.within_clip)
        # Only now, when nothing can roll this job back any more (see audit.BatchEntries):
        svc.batch_audit.add(now, audit.Entry(
            "update.accepted", model=rnd.model, actor=who.device_id, code="accepted", subject=round_id,
            detail={"update_id": int(uid), "region": region, "partner": partner,
                    "policy_version": task.policy_version, "bytes": len(body), "examples": hdr.num_examples}))
        return int(uid), cur

    try:
        uid, cur = svc.committer.run(store_update)
    except _Replay as rp:
        return _replay(rp.receipt, body_sha, round_id)
    except IntegrityError:
        with store.read() as conn:
            rec = _receipt(conn, who.device_id, round_id, hdr.key)
        if rec is None:
            raise ApiError(409, "duplicate_update", "a concurrent upload for the same task won; request a new task")
        return _replay(rec, body_sha, round_id)
    # Durable now.  Fold the round if this update completed it (the answer does not depend on it).
    svc.after_accept(cur)
    return 202, _answer(round_id, uid)
