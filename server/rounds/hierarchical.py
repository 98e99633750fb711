"""Hierarchical federated averaging for governed models: cells -> regions -> global.

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
cells: the next C comes from the sum of the cells' noised unclipped counts.

Leave-one-partner-out variants (policy ``partner_contribution``) are the
global delta recomputed without one partner's cells: free post-processing, used
to measure each partner's contribution by federated evaluation.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from sqlalchemy import Connection, select, update

from fedmark.contract import decode_update
from server.governance.policy import Policy
from server.governance.residency import Cell, RegionReader, cells_of
from server.storage import schema

log = logging.getLogger("fedmark.server.rounds")


@dataclass
class CellRelease:
    cell: Cell
    ids: list[int]
    contributors: int
    weight: float
    delta: np.ndarray
    ledger: Any
    metrics: dict[str, Any]
    unclipped: float


@dataclass
class Withheld:
    cell: Cell
    ids: list[int]
    code: str


@dataclass
class HierarchicalResult:
    delta: np.ndarray
    params: np.ndarray
    state: Any
    releases: list[CellRelease]
    withheld: list[Withheld]
    variants: dict[str, np.ndarray] = field(default_factory=dict)
    epsilon: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def used_ids(self) -> list[int]:
        return [i for r in self.releases for i in r.ids]

    @property
    def all_ids(self) -> list[int]:
        return self.used_ids + [i for w in self.withheld for i in w.ids]


def load_ledgers(conn: Connection, model: str) -> dict[str, Any]:
    from server.aggregation import PrivacyLedger

    rows = conn.execute(select(schema.cell_states).where(schema.cell_states.c.model == model)).all()
    return {r.cell: PrivacyLedger.from_json(json.loads(r.ledger)) for r in rows}


def _withhold_reason(policy: Policy, model: str, line_region: str | None, cell: Cell, n: int) -> str | None:
    if not policy.region_allowed(cell.region):
        return "region_not_allowed"
    if not policy.partner_allowed(cell.partner):
        return "partner_not_allowed"
    if line_region is None and not policy.exports(cell.region):
        return "region_exports_nothing"
    if line_region is not None and cell.region != line_region:
        return "wrong_region_line"
    if n < policy.min_region_contributors:
        return "below_min_region_contributors"
    return None


def _combine(releases: list[CellRelease], dp: bool, size: int) -> np.ndarray:
    if dp:  # releases share the fixed denominator: the global DP mean is their sum
        out = np.zeros(size, np.float64)
        for r in releases:
            out += r.delta
        return out.astype(np.float32)
    total = sum(r.weight for r in releases)
    out = np.zeros(size, np.float64)
    for r in releases:
        out += (r.weight / total) * r.delta.astype(np.float64)
    return out.astype(np.float32)


def fold_cells(conn: Connection, *, model: str, line_region: str | None, round_id: str, fold_label: str,
               ids: list[int], base_version: int, cfg: Any, pipe: Any, state: Any, params: np.ndarray,
               num_params: int, strategy: Any, policy: Policy, rng_for: Callable[[Cell], np.random.Generator],
               trace_path: str | None) -> HierarchicalResult:
    """Aggregate the given stored updates cell by cell and combine (see module docstring)."""
    from server.aggregation import AggregatorState, BufferFull, FixedClip, PipelineState, PrivacyBudgetExceeded

    agg = pipe.aggregator
    dp = bool(agg.dp)
    base_clip = state.aggregator.clip
    if agg.clip is not None and (base_clip is None or isinstance(agg.clip, FixedClip)):
        base_clip = agg.clip.initialize()
    ledgers = load_ledgers(conn, model)
    from server.aggregation import PrivacyLedger

    releases: list[CellRelease] = []
    withheld: list[Withheld] = []
    for cell, cell_ids in cells_of(conn, round_id, ids).items():
        code = _withhold_reason(policy, model, line_region, cell, len(cell_ids))
        if code is not None:
            withheld.append(Withheld(cell, cell_ids, code))
            continue
        ledger = ledgers.get(cell.key, PrivacyLedger())
        cell_state = AggregatorState(state.aggregator.round, base_clip if agg.clip is not None else None, ledger)
        try:
            acc = agg.start(cell_state, num_params)
        except PrivacyBudgetExceeded:
            withheld.append(Withheld(cell, cell_ids, "cell_budget_exhausted"))
            continue
        reader = RegionReader(conn, round_id, cell.region, trace_path, fold_label)
        used: list[int] = []
        for row in reader.rows(cell_ids):
            vec, _enc = decode_update(row.body, num_params)
            weight = min(float(row.num_examples), cfg.max_examples_weight) * strategy.weight_factor(
                base_version - row.base_version)
            try:
                acc.add(vec, weight=weight, within_clip=bool(row.within_clip))
            except BufferFull:
                log.warning("round %s cell %s: robust buffer full; the rest are dropped", round_id, cell.key)
                break
            used.append(int(row.id))
        if not used:
            withheld.append(Withheld(cell, cell_ids, "empty"))
            continue
        res = agg.finish(cell_state, acc, rng_for(cell))
        n = int(res.metrics["contributors"])
        if dp:
            unclipped = float(res.metrics.get("unclipped_fraction_noised", 0.5)) - 0.5
        else:
            unclipped = float(res.metrics.get("unclipped_fraction", 1.0)) * n
        releases.append(CellRelease(cell, used, n, float(res.metrics.get("total_weight", n)), res.delta,
                                    res.state.privacy, res.metrics, unclipped))
        folded = set(used)
        withheld.extend(Withheld(cell, [i], "not_folded") for i in cell_ids if i not in folded)
    if not releases:
        return HierarchicalResult(np.zeros(0, np.float32), params, state, [], withheld)

    delta = _combine(releases, dp, num_params)
    clip_state = base_clip if agg.clip is not None else None
    if agg.clip is not None and agg.clip.adaptive and clip_state is not None:
        if dp:
            bit_mean = sum(r.unclipped for r in releases) + 0.5
        else:
            bit_mean = sum(r.unclipped for r in releases) / sum(r.contributors for r in releases)
        clip_state = agg.clip.next(clip_state, min(1.0, max(0.0, bit_mean)))
    for r in releases:
        ledgers[r.cell.key] = r.ledger
    worst = state.aggregator.privacy
    epsilon = None
    if dp:
        eps = {k: led.epsilon(cfg.delta) for k, led in ledgers.items()}
        worst_key = max(eps, key=lambda k: (eps[k], k))
        worst, epsilon = ledgers[worst_key], eps[worst_key]
    new_agg = AggregatorState(state.aggregator.round + 1, clip_state, worst)
    opt_state, new_params = pipe.optimizer.next(state.optimizer, params, delta)
    new_state = PipelineState(new_agg, opt_state)

    variants: dict[str, np.ndarray] = {}
    partners = sorted({r.cell.partner for r in releases})
    if policy.partner_contribution and len(partners) >= 2:
        for p in partners:
            rest = [r for r in releases if r.cell.partner != p]
            _, variants[p] = pipe.optimizer.next(state.optimizer, params, _combine(rest, dp, num_params))

    first = releases[0].metrics
    metrics: dict[str, Any] = {"hierarchical": True, "dp": dp, "contributors": sum(r.contributors for r in releases),
                               "clip_norm": None if base_clip is None else base_clip.norm,
                               "next_clip_norm": None if clip_state is None else clip_state.norm,
                               "round": state.aggregator.round,
                               "delta_norm": float(np.linalg.norm(delta.astype(np.float64)))}
    for key in ("noise_multiplier", "value_noise_multiplier", "noise_stddev", "denominator"):
        if key in first:
            metrics[key] = first[key]
    if dp:
        metrics["cell_noise_stddev_total"] = float(first.get("noise_stddev", 0.0)) * math.sqrt(len(releases))
    else:
        metrics["total_weight"] = sum(r.weight for r in releases)
    metrics["cells"] = cell_summary(releases, withheld, policy.k_min)
    return HierarchicalResult(delta, new_params, new_state, releases, withheld, variants, epsilon, metrics)


def cell_summary(releases: list[CellRelease], withheld: list[Withheld], k_min: int) -> list[dict[str, Any]]:
    """Per-cell counts for the version's public metrics; counts below k_min are suppressed."""
    out = []
    for r in releases:
        n = r.contributors if r.contributors >= k_min else None
        out.append({"region": r.cell.region, "partner": r.cell.partner, "released": True, "contributors": n,
                    "suppressed": n is None})
    seen: dict[tuple[str, str, str], int] = {}
    for w in withheld:
        key = (w.cell.region, w.cell.partner, w.code)
        seen[key] = seen.get(key, 0) + len(w.ids)
    for (region, partner, code), n in sorted(seen.items()):
        shown = n if n >= k_min else None
        out.append({"region": region, "partner": partner, "released": False, "reason": code, "contributors": shown,
                    "suppressed": shown is None})
    return out


def persist(conn: Connection, blobs: Any, *, model: str, round_id: str, fold: int, version: int,
            result: HierarchicalResult, delta: float, now: float) -> None:
    """Store every cell's ledger and release (inside the fold's transaction)."""
    for r in result.releases:
        ledger_text = json.dumps(r.ledger.to_json())
        eps = r.ledger.epsilon(delta) if result.epsilon is not None else None
        if eps is not None and not math.isfinite(eps):
            eps = None
        sha = blobs.put(np.ascontiguousarray(r.delta, dtype="<f4").tobytes())
        conn.execute(schema.cell_aggregates.insert().values(
            model=model, round_id=round_id, fold=fold, version=version, region=r.cell.region, partner=r.cell.partner,
            contributors=r.contributors, weight=r.weight, aggregate_sha=sha, epsilon=eps, at=now))
        res = conn.execute(update(schema.cell_states).where(schema.cell_states.c.model == model,
                                                            schema.cell_states.c.cell == r.cell.key)
                           .values(ledger=ledger_text, releases=schema.cell_states.c.releases + 1, updated_at=now))
        if res.rowcount == 0:
            conn.execute(schema.cell_states.insert().values(model=model, cell=r.cell.key, region=r.cell.region,
                                                            partner=r.cell.partner, ledger=ledger_text, releases=1,
                                                            updated_at=now))
