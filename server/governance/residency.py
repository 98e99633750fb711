"""Data residency: region partitions of stored updates, and regional model lines.

Partitioning.  Every stored update carries its device's region (and partner)
as a partition key, set by the server from the device's enrolment, never from
the request.  A fold never reads update rows directly: it asks the
coordinator-side :func:`cells_of` for the partition keys only (region,
partner, id - no update content), then hands each region's ids to a
:class:`RegionReader`, the only code that reads update bodies.  The reader's
every query carries ``region = :its_region`` in SQL, so even a wrong id list
cannot make region A's fold read region B's update: the row simply does not
come back.  Each reader can record what it read (``FEDMARK_RESIDENCY_TRACE``:
a JSON-lines file of ``{fold_region, update_id, row_region}``) so tests and
auditors can check the partitions were respected.

Export.  A region whose policy says ``"none"`` exports nothing, not even its
aggregate.  Its devices never get tasks of the global model; they train a
separate model line ``<model>@<region>`` (its own rows in ``models`` and
``versions``: its own version series, rounds, privacy ledgers), created on
first use from the global model's current version (by
:func:`server.registry.lines.ensure_line`).  Its aggregates are folded only
into that line.  Which line a device trains is decided by
:func:`server.governance.decisions.training_line`.
"""
from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator

from sqlalchemy import Connection, select

from server.storage import schema

LINE_SEP = "@"
#: Region / partner of a device enrolled without one: its updates form the cell ("default", "default").
DEFAULT_PLACE = "default"
_TRACE_LOCK = threading.Lock()


def line_name(model: str, region: str) -> str:
    return f"{model}{LINE_SEP}{region}"


def is_line(model: str) -> bool:
    return LINE_SEP in model


@dataclass(frozen=True)
class Cell:
    """One aggregation partition: a region and a partner within it."""

    region: str
    partner: str

    @property
    def key(self) -> str:
        return f"{self.region}|{self.partner}"


def place(region: str | None, partner: str | None) -> Cell:
    """The cell (partition) a device's updates, reports and contributions belong to."""
    return Cell(region or DEFAULT_PLACE, partner or DEFAULT_PLACE)


def cells_of(conn: Connection, round_id: str, ids: list[int] | None = None) -> "OrderedDict[Cell, list[int]]":
    """Partition keys of the round's stored updates (no bodies): cell -> update ids in id order."""
    u = schema.updates
    q = select(u.c.id, u.c.region, u.c.partner).where(u.c.round_id == round_id).order_by(u.c.id)
    if ids is not None:
        q = q.where(u.c.id.in_(ids))
    out: "OrderedDict[Cell, list[int]]" = OrderedDict()
    for row in conn.execute(q):
        out.setdefault(place(row.region, row.partner), []).append(int(row.id))
    return OrderedDict(sorted(out.items(), key=lambda kv: (kv[0].region, kv[0].partner)))


class RegionReader:
    """Reads update rows of one region only; every query filters on the region in SQL."""

    def __init__(self, conn: Connection, round_id: str, region: str, trace_path: str | None = None,
                 fold_label: str = "") -> None:
        self.conn = conn
        self.round_id = round_id
        self.region = region
        self.trace_path = trace_path
        self.fold_label = fold_label
        self.read_ids: list[int] = []

    def rows(self, ids: list[int]) -> Iterator[Any]:
        """The update rows with these ids *that belong to this region* (others are not returned)."""
        u = schema.updates
        for uid in ids:
            row = self.conn.execute(select(u).where(u.c.id == uid, u.c.round_id == self.round_id,
                                                    u.c.region == self.region)).first()
            if row is None:
                continue
            self.read_ids.append(int(row.id))
            self._trace(row)
            yield row

    def _trace(self, row: Any) -> None:
        if not self.trace_path:
            return
        line = json.dumps({"fold": self.fold_label, "round_id": self.round_id, "fold_region": self.region,
                           "update_id": int(row.id), "row_region": row.region, "row_partner": row.partner})
        with _TRACE_LOCK, open(self.trace_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def lines_of(conn: Connection, model: str) -> list[Any]:
    return conn.execute(select(schema.models).where(schema.models.c.line_of == model)
                        .order_by(schema.models.c.name)).all()


def trace_path_from(config: Any) -> str | None:
    path = config.get("RESIDENCY_TRACE") if hasattr(config, "get") else None
    return str(path) if path else (os.environ.get("FEDMARK_RESIDENCY_TRACE") or None)
