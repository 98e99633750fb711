"""The audit trail: append-only, hash-chained, verifiable offline.

Why a hash chain: governance claims ("this version was trained only on
consented contributions from allowed regions") are only as good as the record
behind them.  Each entry stores the SHA-256 of the previous entry, and its own
hash covers its sequence number, time, kind, model, actor, reason code,
subject, detail and that previous hash, all as canonical JSON (sorted keys, no
spaces, UTF-8).  Editing an entry changes its hash; deleting one leaves a gap
in ``seq`` and a ``prev_hash`` that no longer matches; swapping two breaks both.
``verify`` names the first entry where the chain breaks.  Truncating the tail
is the one change a chain cannot see on its own: keep an *anchor* (the
``seq:hash`` printed by ``fedmark audit verify``, or the head reported by
``GET /v1/audit``) somewhere else and pass it back with ``--anchor``.

Concurrency: ``append`` reads the head and inserts the next entry inside the
caller's transaction.  On SQLite write transactions start with
``BEGIN IMMEDIATE`` (one writer at a time); on PostgreSQL a transaction-scoped
advisory lock serialises appenders.  Callers append *last* in their
transactions, so a transaction holding that lock never waits for a row lock
(no lock-order cycles).  ``seq`` is the primary key, so a forked chain is
impossible even if the locking were wrong: the second insert fails.

Never put an update, a record or a secret in ``detail``: ids, counts and
reason codes only.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from sqlalchemy import Connection, Engine, func, select

from server.storage import schema

GENESIS = "0" * 64
#: A device's consent counts: records per decision reason and withdrawals (server.api.consent); counts only.
CONSENT_REPORT = "consent.report"
_PG_AUDIT_LOCK = 0x61_75_64_74  # "audt"


def canonical(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _at_us(at: float) -> int:
    return int(round(float(at) * 1_000_000))


def entry_hash(seq: int, at: float, kind: str, model: str | None, actor: str, code: str | None,
               subject: str | None, detail: str, prev_hash: str) -> str:
    """The hash an entry must carry (``detail`` is the stored canonical JSON text)."""
    body = {"seq": int(seq), "at_us": _at_us(at), "kind": kind, "model": model, "actor": actor, "code": code,
            "subject": subject, "detail": json.loads(detail), "prev": prev_hash}
    return hashlib.sha256(canonical(body)).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One audit entry to append (the chain fields are added by :func:`append`)."""

    kind: str
    model: str | None = None
    actor: str = "server"
    code: str | None = None
    subject: str | None = None
    detail: Mapping[str, Any] | None = None


# Built once: every accepted update appends an entry, and building a statement costs more than running it.
_HEAD = select(schema.audit_log.c.seq, schema.audit_log.c.hash).order_by(schema.audit_log.c.seq.desc()).limit(1)
_INSERT = schema.audit_log.insert()


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_AUDIT_LOCK})")


def append(conn: Connection, at: float, entries: Iterable[Entry]) -> list[int]:
    """Append ``entries`` (in order) to the chain inside the caller's write transaction; returns their seqs."""
    return _append(conn, [(at, e) for e in entries])


def _append(conn: Connection, timed: list[tuple[float, Entry]]) -> list[int]:
    if not timed:
        return []
    _lock(conn)
    head = conn.execute(_HEAD).first()
    seq, prev = (int(head.seq), str(head.hash)) if head is not None else (0, GENESIS)
    rows = []
    for at, e in timed:
        seq += 1
        detail = canonical(dict(e.detail or {})).decode("utf-8")
        h = entry_hash(seq, at, e.kind, e.model, e.actor, e.code, e.subject, detail, prev)
        rows.append({"seq": seq, "at": float(at), "kind": e.kind, "model": e.model, "actor": e.actor, "code": e.code,
                     "subject": e.subject, "detail": detail, "prev_hash": prev, "hash": h})
        prev = h
    conn.execute(_INSERT, rows)
    return [r["seq"] for r in rows]


def append_one(conn: Connection, at: float, kind: str, **fields: Any) -> int:
    return append(conn, at, [Entry(kind, **fields)])[0]


class BatchEntries:
    """Entries the jobs of one group-commit batch append together when the batch commits.

    Why: an accepted update's entry, appended on its own, costs a head read and an insert
    per update; the batch's entries share one of each (``flush``, the committer's
    before-commit hook, inside the same transaction, so they are exactly as durable as
    the updates).  A job adds its entry only once nothing in it can fail any more, so a
    job rolled back to its savepoint never leaves an entry behind.  Used from the
    committer's thread only.
    """

    def __init__(self) -> None:
        self._timed: list[tuple[float, Entry]] = []

    def add(self, at: float, entry: Entry) -> None:
        self._timed.append((at, entry))

    def flush(self, conn: Connection) -> None:
        _append(conn, self._timed)

    def clear(self, _committed: bool = True) -> None:
        self._timed = []


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    first_bad: int | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "head": {"seq": self.head_seq, "hash": self.head_hash},
                "first_bad": self.first_bad, "reason": self.reason}


def _rows(conn: Connection, batch: int = 5000) -> Iterator[Any]:
    last = -1
    while True:
        chunk = conn.execute(select(schema.audit_log).where(schema.audit_log.c.seq > last)
                             .order_by(schema.audit_log.c.seq).limit(batch)).all()
        if not chunk:
            return
        yield from chunk
        last = int(chunk[-1].seq)


def verify_conn(conn: Connection, anchors: Iterable[tuple[int, str]] = ()) -> Verdict:
    """Walk the chain from the first entry; stop at the first entry that does not check out."""
    want = dict(anchors)
    expected_seq, prev, n = 1, GENESIS, 0
    for row in _rows(conn):
        seq = int(row.seq)
        if seq != expected_seq:
            what = f"entries {expected_seq}..{seq - 1} are missing (deleted)" if seq > expected_seq else "sequence out of order"
            return Verdict(False, n, expected_seq - 1, prev, seq, f"entry {seq}: {what}")
        if row.prev_hash != prev:
            return Verdict(False, n, seq - 1, prev, seq, f"entry {seq}: prev_hash does not match entry {seq - 1} "
                                                         "(an earlier entry was deleted, replaced or reordered)")
        try:
            actual = entry_hash(seq, row.at, row.kind, row.model, row.actor, row.code, row.subject, row.detail,
                                row.prev_hash)
        except (ValueError, TypeError):
            actual = ""
        if actual != row.hash:
            return Verdict(False, n, seq - 1, prev, seq, f"entry {seq} ({row.kind}): content does not match its hash "
                                                         "(the entry was edited)")
        if seq in want and want.pop(seq) != row.hash:
            return Verdict(False, n, seq - 1, prev, seq, f"entry {seq}: hash differs from the anchor you kept")
        prev, expected_seq, n = str(row.hash), seq + 1, n + 1
    if want:
        missing = min(want)
        return Verdict(False, n, expected_seq - 1, prev, missing,
                       f"anchor entry {missing} is beyond the end of the trail (head is {expected_seq - 1}): "
                       "the tail was truncated")
    return Verdict(True, n, expected_seq - 1, prev)


def verify(engine: Engine, anchors: Iterable[tuple[int, str]] = ()) -> Verdict:
    with engine.connect() as conn:
        return verify_conn(conn, anchors)


def head(conn: Connection) -> dict[str, Any]:
    row = conn.execute(select(schema.audit_log.c.seq, schema.audit_log.c.hash)
                       .order_by(schema.audit_log.c.seq.desc()).limit(1)).first()
    return {"seq": 0, "hash": GENESIS} if row is None else {"seq": int(row.seq), "hash": str(row.hash)}


def entry_json(row: Any) -> dict[str, Any]:
    return {"seq": int(row.seq), "at": float(row.at), "kind": row.kind, "model": row.model, "actor": row.actor,
            "code": row.code, "subject": row.subject, "detail": json.loads(row.detail), "prev_hash": row.prev_hash,
            "hash": row.hash}


def read(conn: Connection, *, after: int = 0, limit: int = 100, model: str | None = None,
         kind: str | None = None) -> list[dict[str, Any]]:
    q = select(schema.audit_log).where(schema.audit_log.c.seq > after)
    if model is not None:
        q = q.where(schema.audit_log.c.model == model)
    if kind is not None:
        q = q.where(schema.audit_log.c.kind == kind)
    return [entry_json(r) for r in conn.execute(q.order_by(schema.audit_log.c.seq).limit(limit))]


def counts(conn: Connection) -> list[tuple[str, str | None, str | None, int]]:
    """(kind, code, model, count) over the whole trail: what the Prometheus counters are read from."""
    a = schema.audit_log
    return [(r[0], r[1], r[2], int(r[3])) for r in
            conn.execute(select(a.c.kind, a.c.code, a.c.model, func.count()).group_by(a.c.kind, a.c.code, a.c.model))]
