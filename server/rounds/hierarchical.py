"""Hierarchical federated averaging for governed models: cells -> regions -> global.

This module is the storage side of it: which cells a fold has (and which are
withheld, by :func:`server.governance.decisions.cell_withheld`), each cell's
ledger (table ``cell_states``) and release record (``cell_aggregates``), and
the per-cell counts of a version's public metrics.  The maths is
:class:`server.aggregation.PartitionedAggregator`; the one fold loop is
:func:`server.rounds.aggregate.fold`.

A *cell* is a (region, partner) pair.  Devices never change region (enrolment
refuses it) and belong to one partner (their app key), so cells are disjoint
populations.  At a fold each cell is aggregated on its own, reading only its
region's partition through :class:`server.governance.residency.RegionReader`:

* with DP, each cell's aggregate is its **own DP release**: its updates are
  clipped to the round's C, summed, and Gaussian noise N(0, (z_v C)^2) is added
  to that cell's sum before anything leaves the cell; the release is
  ``(S_c + noise_c) / D`` with D the configured clients per round (the same
  fixed denominator as flat DP-FedAvg).  The global delta is the *sum* of the
  cell releases, i.e. ``(sum_c S_c + sum_c noise_c) / D``: the flat DP mean
  with the noise variance multiplied by the number of cells (the price of
  releasing every cell separately).
* without DP, the cell aggregate is the (example-weighted) mean and the global
  delta weighs cells by their total weight, which equals the flat weighted mean.

Privacy accounting (parallel composition).  Every cell keeps its own privacy
ledger (table ``cell_states``); a release is recorded only in its cell's
ledger.  One device's data reaches exactly one cell, and the global model,
regional aggregates and leave-one-partner-out variants are post-processing of
the cell releases, so the model's guarantee is ``eps = max_c eps_c`` at the
configured delta.  The model-level aggregation state carries the ledger of the
worst cell, so budget checks, the ``epsilon`` of every version and the
Prometheus gauge all read that bound.  Adaptive clipping uses one C for all
cells: the next C comes from the sum of the cells' raw noised bit sums
(never from a clamped fraction).

Leave-one-partner-out variants (policy ``partner_contribution``) are the
global delta recomputed without one partner's cells: free post-processing, used
to measure each partner's contribution by federated evaluation.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
from sqlalchemy import Connection, select, update

from server.aggregation import CellRelease, PrivacyLedger
from server.governance import decisions
from server.governance.policy import Policy
from server.governance.residency import Cell, RegionReader, cells_of
from server.storage import schema

__all__ = ["Part", "Folded", "Withheld", "load_ledgers", "partition", "cell_summary", "persist"]


@dataclass
class Part:
    """One cell to fold: its updates, the only reader allowed to read them, its ledger and its noise seed.

    ``cell`` None is the single part of an ungoverned (flat) model, read without partition keys.
    """

    cell: Cell | None
    ids: list[int]
    rows: Callable[[list[int]], Iterator[Any]]
    ledger: PrivacyLedger
    seed: int

    @property
    def key(self) -> str | None:
        return None if self.cell is None else self.cell.key


@dataclass
class Folded:
    """A part that was released: the update ids folded into it and its release."""

    cell: Cell | None
    ids: list[int]
    release: CellRelease


@dataclass
class Withheld:
    cell: Cell
    ids: list[int]
    code: str


def load_ledgers(conn: Connection, model: str) -> dict[str | None, PrivacyLedger]:
    """Every cell ledger of ``model`` (cell key -> ledger)."""
    rows = conn.execute(select(schema.cell_states).where(schema.cell_states.c.model == model)).all()
    return {r.cell: PrivacyLedger.from_json(json.loads(r.ledger)) for r in rows}


def partition(conn: Connection, *, round_id: str, ids: list[int], policy: Policy, line_region: str | None,
              ledgers: dict[str | None, PrivacyLedger], seed_for: Callable[[Cell], int], trace_path: str | None,
              fold_label: str) -> tuple[list[Part], list[Withheld]]:
    """The cells of these stored updates: those the policy lets join the line, and the withheld ones."""
    parts: list[Part] = []
    withheld: list[Withheld] = []
    for cell, cell_ids in cells_of(conn, round_id, ids).items():
        code = decisions.cell_withheld(policy, cell, len(cell_ids), line_region)
        if code is not None:
            withheld.append(Withheld(cell, cell_ids, code))
            continue
        reader = RegionReader(conn, round_id, cell.region, trace_path, fold_label)
        parts.append(Part(cell, cell_ids, reader.rows, ledgers.get(cell.key, PrivacyLedger()), seed_for(cell)))
    return parts, withheld


def cell_summary(released: list[Folded], withheld: list[Withheld], k_min: int) -> list[dict[str, Any]]:
    """Per-cell counts for the version's public metrics; counts below k_min are suppressed."""
    out = []
    for r in released:
        assert r.cell is not None
        n = decisions.shown(r.release.contributors, k_min)
        out.append({"region": r.cell.region, "partner": r.cell.partner, "released": True, "contributors": n,
                    "suppressed": n is None})
    seen: dict[tuple[str, str, str], int] = {}
    for w in withheld:
        key = (w.cell.region, w.cell.partner, w.code)
        seen[key] = seen.get(key, 0) + len(w.ids)
    for (region, partner, code), n in sorted(seen.items()):
        shown = decisions.shown(n, k_min)
        out.append({"region": region, "partner": partner, "released": False, "reason": code, "contributors": shown,
                    "suppressed": shown is None})
    return out


def persist(conn: Connection, blobs: Any, *, model: str, round_id: str, fold: int, version: int,
            released: list[Folded], dp: bool, delta: float, now: float) -> None:
    """Store every cell's ledger and release (inside the fold's transaction)."""
    for r in released:
        assert r.cell is not None
        ledger = r.release.privacy
        ledger_text = json.dumps(ledger.to_json())
        eps = ledger.epsilon(delta) if dp else None
        if eps is not None and not math.isfinite(eps):
            eps = None
        sha = blobs.put(np.ascontiguousarray(r.release.delta, dtype="<f4").tobytes())
        conn.execute(schema.cell_aggregates.insert().values(
            model=model, round_id=round_id, fold=fold, version=version, region=r.cell.region, partner=r.cell.partner,
            contributors=r.release.contributors, weight=r.release.weight, aggregate_sha=sha, epsilon=eps, at=now))
        res = conn.execute(update(schema.cell_states).where(schema.cell_states.c.model == model,
                                                            schema.cell_states.c.cell == r.cell.key)
                           .values(ledger=ledger_text, releases=schema.cell_states.c.releases + 1, updated_at=now))
        if res.rowcount == 0:
            conn.execute(schema.cell_states.insert().values(model=model, cell=r.cell.key, region=r.cell.region,
                                                            partner=r.cell.partner, ledger=ledger_text, releases=1,
                                                            updated_at=now))
