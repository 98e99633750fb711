"""Update ingestion: ``POST /v1/rounds/{round_id}/updates``.

Checks, in order (each refusal is a 4xx with its own code, see docs/API.md):
content type, round exists, headers, body size (capped at the exact size of an
f32 update of this model, so a body can never exceed O(parameters)), replay
(idempotency key), round open, decodable body (magic, length, checksum),
encoding, every value finite, the device holds a task in this round, version /
staleness.  The body is decoded once here, to validate it; its norm is
measured and the update re-clipped server-side at fold time, whatever the
device claims (its ``X-Fedmark-Within-Clip`` claim is stored as sent, NULL
when absent, and only compared with the server's own bit).

Exactly once: the idempotency receipt ``(device, round, key) -> body hash,
update id`` is inserted in the same transaction as the update and the round's
counter; the unique constraint on it makes a concurrent duplicate fail, and a
retry with the same body gets the original answer (200) while a different
body under the same key is refused (409 ``idempotency_conflict``).  Receipts
outlive the update rows, so a retry after the round closed still gets the
original answer.

Durability: the 202 is sent only after that transaction committed; the body
is a BLOB in the same row (SQLite ``synchronous=FULL`` / PostgreSQL commit =
WAL flush), so an acknowledged update survives a crash of the server.
"""
from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any, Mapping

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from fedmark.contract import (UPDATE_CONTENT_TYPE, Manifest, ProtocolError, UploadHeaders, WireError, decode_update,
                              encoded_size, parse_upload_headers, sha256_bytes)
from server.auth.tokens import Principal
from server.errors import ApiError
from server.governance import audit, decisions
from server.governance.policy import policy_version
from server.registry.service import version_row
from server.rounds.config import TrainingConfig
from server.rounds.service import RoundService
from server.rounds.state import OPEN
from server.rounds.strategy import StaleUpdate, strategy_for
from server.storage import schema

log = logging.getLogger("fedmark.server.ingest")


def parse_headers(h: Mapping[str, str]) -> UploadHeaders:
    """The update's headers, validated by the contract (``fedmark.contract.parse_upload_headers``); 400 bad_header."""
    try:
        return parse_upload_headers(h)
    except ProtocolError as exc:
        raise ApiError(400, exc.code, str(exc)) from None


@lru_cache(maxsize=256)
def _manifest(model: str, version: int, text: str) -> Manifest:
    return Manifest.loads(text)


class _Replay(Exception):
    def __init__(self, receipt: Any) -> None:
        super().__init__("replay")
        self.receipt = receipt


def _answer(round_id: str, update_id: int) -> dict[str, Any]:
    return {"accepted": True, "update_id": update_id, "round_id": round_id}


def _receipt(conn: Any, device: str, round_id: str, key: str) -> Any:
    return conn.execute(select(schema.receipts).where(schema.receipts.c.device_id == device,
                                                      schema.receipts.c.round_id == round_id,
                                                      schema.receipts.c.idem_key == key)).first()


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
    with store.read() as conn:
        rnd = conn.execute(select(schema.rounds).where(schema.rounds.c.id == round_id)).first()
        if rnd is None:
            raise ApiError(404, "unknown_round", f"no round {round_id!r}; request a task (POST /v1/tasks)")
        base = version_row(conn, rnd.model, rnd.version)
    manifest = _manifest(rnd.model, base.version, base.manifest)
    hdr = parse_headers(headers)
    limit = min(max_update_bytes, encoded_size(manifest.num_params, "f32"))
    set_limit(limit)
    body: bytes = read_body()  # raises 413 (body_too_large) beyond the limit
    body_sha = sha256_bytes(body)
    with store.read() as conn:
        rec = _receipt(conn, who.device_id, round_id, hdr.key)
    if rec is not None:
        return _replay(rec, body_sha, round_id)
    if rnd.state != OPEN:
        raise ApiError(409, "round_closed", f"round {round_id} is {rnd.state}; request a new task (POST /v1/tasks)")
    cfg = TrainingConfig.from_json(json.loads(rnd.config))
    try:
        vec, enc = decode_update(body, manifest.num_params)
    except WireError as exc:
        msg = str(exc)
        if "NaN" in msg or "Inf" in msg:
            raise ApiError(400, "non_finite", f"update rejected: {msg}; check the local training (learning rate, data)") from exc
        if "encoding" in msg:
            raise ApiError(400, "bad_encoding", f"update rejected: {msg}") from exc
        raise ApiError(400, "bad_update", f"update rejected: {msg}") from exc
    if enc not in ("f32", cfg.encoding):
        raise ApiError(400, "bad_encoding", f"the task asked for encoding {cfg.encoding!r} (or lossless 'f32'); "
                                            f"the update is {enc!r}")
    del vec  # decoded once, to validate it; the fold decodes, measures and re-clips it from storage
    strategy = strategy_for(cfg)
    now = svc.now
    if rnd.deadline is not None and now >= rnd.deadline:
        svc.maintain_quietly(rnd.model)
        raise ApiError(409, "round_closed", f"round {round_id} passed its deadline; request a new task")
    try:
        with store.write() as conn:
            # The conditional UPDATE comes first: it locks the round row (PostgreSQL) / holds the write lock
            # (SQLite), so the receipt read after it sees any concurrent retry that committed meanwhile.
            res = conn.execute(update(schema.rounds).where(schema.rounds.c.id == round_id, schema.rounds.c.state == OPEN)
                               .values(accepted=schema.rounds.c.accepted + 1))
            rec = _receipt(conn, who.device_id, round_id, hdr.key)
            if rec is not None:
                raise _Replay(rec)  # leaves the transaction by rollback: the counter is not touched
            if res.rowcount != 1:
                raise ApiError(409, "round_closed", f"round {round_id} closed before this update arrived; request a new task")
            cur = conn.execute(select(schema.rounds).where(schema.rounds.c.id == round_id)).one()
            tasks = conn.execute(select(schema.tasks).where(schema.tasks.c.round_id == round_id,
                                                            schema.tasks.c.device_id == who.device_id)
                                 .order_by(schema.tasks.c.issued_at)).all()
            open_tasks = [t for t in tasks if t.state == "issued"]
            if not open_tasks:
                if tasks:
                    raise ApiError(409, "duplicate_update", "this device already uploaded an update for its task in this "
                                                            "round; request a new task for another update")
                raise ApiError(403, "forbidden", f"no task in round {round_id} was issued to device {who.device_id!r}; "
                                                 "a device may only upload for its own task (POST /v1/tasks)")
            matching = [t for t in open_tasks if t.version == hdr.version] or open_tasks
            task = matching[-1]
            try:
                strategy.check_version(svc._view(cur), task.version, hdr.version)
            except StaleUpdate as exc:
                raise ApiError(409, "stale_version", str(exc)) from exc
            cell = decisions.place(who.region, who.partner)  # the update's partition keys
            region, partner = cell.region, cell.partner
            uid = conn.execute(schema.updates.insert().values(
                round_id=round_id, task_id=task.id, device_id=who.device_id, base_version=task.version,
                num_examples=hdr.num_examples, within_clip=hdr.within_clip, encoding=enc, body=body, created_at=now, region=region, partner=partner)).inserted_primary_key[0]
            conn.execute(schema.receipts.insert().values(device_id=who.device_id, round_id=round_id, idem_key=hdr.key,
                                                         body_sha=body_sha, update_id=uid, created_at=now))
            conn.execute(update(schema.tasks).where(schema.tasks.c.id == task.id).values(state="done"))
            # Governance record, same transaction (appended last: see server.governance.audit).
            pol = policy_version(conn, rnd.model, task.policy_version) if task.policy_version is not None else None
            conn.execute(schema.contributions.insert().values(
                update_id=uid, model=rnd.model, round_id=round_id, region=region, partner=partner,
                device_id=who.device_id, num_examples=hdr.num_examples, body_bytes=len(body),
                policy_version=task.policy_version, purpose=pol.purpose if pol else None, at=now))
            audit.append_one(conn, now, "update.accepted", model=rnd.model, actor=who.device_id, code="accepted",
                             subject=round_id, detail={"update_id": int(uid), "region": region, "partner": partner,
                                                       "policy_version": task.policy_version, "bytes": len(body),
                                                       "examples": hdr.num_examples})
    except _Replay as rp:
        return _replay(rp.receipt, body_sha, round_id)
    except IntegrityError:
        with store.read() as conn:
            rec = _receipt(conn, who.device_id, round_id, hdr.key)
        if rec is None:
            raise ApiError(409, "duplicate_update", "a concurrent upload for the same task won; request a new task")
        return _replay(rec, body_sha, round_id)
    # Durable now.  Aggregate if the strategy says so (the answer does not depend on it).
    svc.maintain_quietly(rnd.model)
    return 202, _answer(round_id, int(uid))
