"""Fold as updates arrive: each process keeps running sums of the open sync rounds it ingests.

Why: closing a round by re-reading, decoding and re-clipping every stored
update costs O(updates x parameters) inside one device's request.  Here each
accepted update is clipped and added to its round's running sum while it is
ingested; the close then merges a few partial sums, O(parameters).

Crash story, unchanged: the sums are written in the *same* group-commit
transaction as the updates they contain (``before_commit``), so after a
SIGKILL at any point the database holds exactly the acknowledged updates and
exactly their sum.  In memory, a batch works on a copy of the committed sum,
which replaces it only when the batch committed (``after_commit``).

Several processes: each writes only its own row (``shard`` = a random id per
process), so no two writers touch one row; the close reads every shard of
the round in shard order, which makes a replay of the close bit-identical.
The update rows remain (without their bodies) as the record of who
contributed: governance, receipts, residency partitions and counts read them.

Robust combiners (median, trimmed mean) need every update, and FedBuff folds
a buffer of exactly ``buffer_size`` updates: both keep the stored-update path.
"""
from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from typing import Callable

import numpy as np
from sqlalchemy import Connection, delete, select, update

from server.aggregation import Accumulator
from server.storage import schema

__all__ = ["RoundSums", "FLAT_PART", "folds_on_arrival"]

#: The part key of an ungoverned round (its one cell).
FLAT_PART = ""


def folds_on_arrival(cfg: object) -> bool:
    """Sync rounds with a mean combiner fold on arrival; robust and FedBuff rounds keep stored updates."""
    return getattr(cfg, "mode", None) == "sync" and getattr(cfg, "robust", None) is None


class RoundSums:
    """This process's running sums, keyed (round id, part); written once per group-commit batch."""

    def __init__(self, max_cached: int = 8) -> None:
        self.shard = secrets.token_hex(8)
        self.max_cached = max_cached
        self._committed: "OrderedDict[tuple[str, str], Accumulator]" = OrderedDict()
        self._pending: dict[tuple[str, str], Accumulator] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ ingest side (committer thread)
    def add(self, conn: Connection, round_id: str, part: str, start: Callable[[], Accumulator],
            vec: np.ndarray | tuple[np.ndarray, np.ndarray], weight: float, within_clip: bool | None) -> None:
        """Clip and add one update to its part's sum (inside the batch that stores the update);
        ``vec`` is a dense vector or a sparse ``(indices, values)`` pair (Accumulator.add_sparse).

        Call it last in the job: what follows it in the same job must not fail, because the
        job's savepoint would roll back the row but not this addition.
        """
        key = (round_id, part)
        acc = self._pending.get(key)
        if acc is None:
            with self._lock:
                base = self._committed.get(key)
            if base is None:
                base = self._load(conn, key) or start()
            acc = base.copy()
            self._pending[key] = acc
        if isinstance(vec, tuple):
            acc.add_sparse(*vec, weight=weight, within_clip=within_clip)
        else:
            acc.add(vec, weight=weight, within_clip=within_clip)

    def before_commit(self, conn: Connection, now: float = 0.0) -> None:
        """Write every sum the batch changed (one row per part and process)."""
        t = schema.round_sums
        for (round_id, part), acc in self._pending.items():
            data = acc.to_bytes()
            res = conn.execute(update(t).where(t.c.round_id == round_id, t.c.part == part, t.c.shard == self.shard)
                               .values(count=acc.count, state=data, updated_at=now))
            if res.rowcount == 0:
                conn.execute(t.insert().values(round_id=round_id, part=part, shard=self.shard, count=acc.count,
                                               state=data, updated_at=now))

    def after_commit(self, committed: bool) -> None:
        with self._lock:
            if committed:
                for key, acc in self._pending.items():
                    self._committed[key] = acc
                    self._committed.move_to_end(key)
                while len(self._committed) > self.max_cached:
                    self._committed.popitem(last=False)  # reloaded from its row if that round goes on
        self._pending.clear()

    def _load(self, conn: Connection, key: tuple[str, str]) -> Accumulator | None:
        t = schema.round_sums
        data = conn.execute(select(t.c.state).where(t.c.round_id == key[0], t.c.part == key[1],
                                                    t.c.shard == self.shard)).scalar_one_or_none()
        return None if data is None else Accumulator.from_bytes(data)

    def forget(self, round_id: str) -> None:
        """Drop cached sums of a round that was folded or abandoned."""
        with self._lock:
            for key in [k for k in self._committed if k[0] == round_id]:
                del self._committed[key]

    # ------------------------------------------------------------------ close side
    @staticmethod
    def merge_into(conn: Connection, round_id: str, part: str, target: Accumulator) -> int:
        """Add every process's sum of this part into ``target`` (shard order); returns the updates they hold."""
        t = schema.round_sums
        n = 0
        for (data,) in conn.execute(select(t.c.state).where(t.c.round_id == round_id, t.c.part == part)
                                    .order_by(t.c.shard)):
            part_acc = Accumulator.from_bytes(data)
            target.merge(part_acc)
            n += part_acc.count
        return n

    @staticmethod
    def discard(conn: Connection, round_id: str) -> None:
        conn.execute(delete(schema.round_sums).where(schema.round_sums.c.round_id == round_id))
