"""Closing a round (sync) or folding a buffer (FedBuff) into a new published version.

One fold loop for every model: the round's updates are split into *parts* -
the whole round for an ungoverned model, one part per released (region,
partner) cell for a governed one (:mod:`server.rounds.hierarchical`) - and
each part is one release of :class:`server.aggregation.PartitionedAggregator`;
the flat aggregation is its one-cell case and publishes the same bits as a
plain ``Pipeline`` round.

Sync rounds with a mean combiner were summed as their updates arrived
(:mod:`server.rounds.sums`): their close merges each part's running sums,
O(parameters) whatever the number of updates.  Robust and FedBuff rounds keep
their update bodies and are folded here, streaming from storage, one update
at a time by id (memory O(parameters) for the mean; a robust buffer holds its
capacity).

Crash-safe and exactly once across processes either way: the claim of the round
(``UPDATE … WHERE state='open'`` / ``WHERE folds = :seen``), the fold, the new
version, the new aggregation state and the deletion of the folded updates and
sums commit together.  A crash anywhere before the commit leaves the round
open with its updates (or sums) intact; the next trigger repeats the close on
the same inputs, in the same order (update id; sums in shard order), with the
same noise seed, and publishes the identical version.

The noise RNG is seeded from (server noise secret, round id, fold number) -
for a governed cell from (secret, ``round id|cell key``, fold number) - so a
re-run publishes bit-identical parameters; the secret keeps the noise
unpredictable to anyone without database access.
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np
from sqlalchemy import Connection, delete, func, select, update

from fedmark.contract import decode_update
from fedmark.contract.gram import GramSpace, gram_space
from server.aggregation import (BufferFull, PartitionedAggregator, PipelineState, PrivacyBudgetExceeded,
                                PrivacyLedger, StateError)
from server.aggregation.ease import gram_sum_of, published_factors
from server.governance import audit
from server.governance.policy import Policy, current_policy
from server.registry.service import add_round_version, load_params, manifest_of, version_row
from server.rounds import hierarchical
from server.rounds.config import TrainingConfig, config_of, pipeline_of
from server.rounds.hierarchical import Folded, Part, Withheld
from server.rounds.state import CLOSED, OPEN
from server.rounds.strategy import Strategy, strategy_for
from server.rounds.sums import FLAT_PART, RoundSums, folds_on_arrival
from server.storage import BlobStore, Store, schema

__all__ = ["FoldResult", "round_seed", "fold", "buffered"]

log = logging.getLogger("fedmark.server.rounds")


@dataclass(frozen=True)
class FoldResult:
    round_id: str
    version: int
    digest: str
    contributors: int
    epsilon: float | None


def round_seed(secret: str, round_id: str, fold: int) -> int:
    """Deterministic 64-bit seed of one aggregation's noise (see module docstring)."""
    h = hashlib.sha256(f"fedmark-noise|{secret}|{round_id}|{fold}".encode()).digest()
    return int.from_bytes(h[:8], "little")


class _NotReady(Exception):
    """Raised inside the transaction to roll it back when another process already folded."""


def _all_rows(conn: Connection):  # type: ignore[no-untyped-def]
    """The reader of an ungoverned model's single part: its update rows by id, without partition keys."""
    def rows(ids: list[int]) -> Iterator[Any]:
        for uid in ids:
            yield conn.execute(select(schema.updates).where(schema.updates.c.id == uid)).one()
    return rows


def fold(store: Store, blobs: BlobStore, round_id: str, secret: str, now: float,
         trace_path: str | None = None, hold: bool = False) -> FoldResult | None:
    """Aggregate the round's stored updates into a new version, exactly once across processes.

    Returns None when there is nothing to do (round not open, another process
    won the claim, or — FedBuff — fewer than ``buffer_size`` updates remain).
    Raises ``server.aggregation.PrivacyBudgetExceeded`` (nothing changed) when
    the budget forbids releasing this aggregate.
    """
    try:
        with store.write() as conn:
            rnd = conn.execute(select(schema.rounds).where(schema.rounds.c.id == round_id)).first()
            if rnd is None or rnd.state != OPEN:
                return None
            cfg = config_of(rnd.config)
            strategy = strategy_for(cfg)
            if strategy.closes_round:
                claim = update(schema.rounds).where(schema.rounds.c.id == round_id, schema.rounds.c.state == OPEN) \
                    .values(state=CLOSED, open_key=None, closed_at=now)
            else:
                claim = update(schema.rounds).where(schema.rounds.c.id == round_id, schema.rounds.c.state == OPEN,
                                                    schema.rounds.c.folds == rnd.folds).values(folds=rnd.folds + 1)
            if conn.execute(claim).rowcount != 1:
                return None
            q = select(schema.updates.c.id).where(schema.updates.c.round_id == round_id).order_by(schema.updates.c.id)
            k = strategy.fold_size()
            if k is not None:
                q = q.limit(k)
            ids = [r[0] for r in conn.execute(q)]
            if not ids or (k is not None and len(ids) < k):
                raise _NotReady()
            return _fold(conn, blobs, rnd, cfg, strategy, ids, secret, now, trace_path,
                         hold and strategy.closes_round)
    except _NotReady:
        return None


def _fold(conn: Connection, blobs: BlobStore, rnd: Any, cfg: TrainingConfig, strategy: Strategy, ids: list[int],
          secret: str, now: float, trace_path: str | None, hold: bool = False) -> FoldResult | None:
    """The one fold loop: every part (the whole round, or each released cell of a governed model) in turn."""
    model = conn.execute(select(schema.models).where(schema.models.c.name == rnd.model)).one()
    base = version_row(conn, rnd.model, rnd.version)
    manifest = manifest_of(base)
    params = load_params(blobs, manifest)
    pipe = pipeline_of(rnd.config)
    state = pipe.restore(model.agg_state, params)
    pipe.check_budget(state)  # the model-level ledger (the worst cell's): refuse before any release
    policy = current_policy(conn, rnd.model)
    parted = PartitionedAggregator(pipe.aggregator)
    withheld: list[Withheld] = []
    if policy is None:
        ledgers: dict[str | None, PrivacyLedger] = {}
        parts = [Part(None, ids, _all_rows(conn), state.aggregator.privacy, round_seed(secret, rnd.id, rnd.folds))]
    else:
        ledgers = hierarchical.load_ledgers(conn, rnd.model)
        parts, withheld = hierarchical.partition(
            conn, round_id=rnd.id, ids=ids, policy=policy, line_region=model.region, ledgers=ledgers,
            seed_for=lambda cell: round_seed(secret, f"{rnd.id}|{cell.key}", rnd.folds), trace_path=trace_path,
            fold_label=f"{rnd.id}#{rnd.folds}")

    space = gram_space(manifest.hyperparams)
    if space is not None and policy is not None:
        raise StateError(f"model {rnd.model}: a Gram-trained model cannot fold per governance cell yet; train it "
                         "without a policy")
    num_params = manifest.num_params if space is None else space.num_values  # the size of what devices sum
    arrival = folds_on_arrival(cfg)
    released: list[Folded] = []
    staleness_sum = 0
    for part in parts:
        try:
            acc = parted.start(state.aggregator, part.ledger, num_params)
        except PrivacyBudgetExceeded:
            if part.cell is None:
                raise
            withheld.append(Withheld(part.cell, part.ids, "cell_budget_exhausted"))
            continue
        used: list[int] = []
        if arrival:  # the part's updates were clipped and summed as they arrived; their rows hold no body
            for row in part.rows(part.ids):
                staleness_sum += rnd.version - row.base_version
                used.append(int(row.id))
            summed = RoundSums.merge_into(conn, rnd.id, FLAT_PART if part.key is None else part.key, acc)
            if summed != len(used):
                raise StateError(f"round {rnd.id}{'' if part.cell is None else ' cell ' + str(part.key)}: the running "
                                 f"sums hold {summed} updates, the stored rows {len(used)}")
        for row in ([] if arrival else part.rows(part.ids)):
            vec, _enc = decode_update(row.body, num_params)
            s = rnd.version - row.base_version
            weight = min(float(row.num_examples), cfg.max_examples_weight) * strategy.weight_factor(s)
            try:
                acc.add(vec, weight=weight, within_clip=None if row.within_clip is None else bool(row.within_clip))
            except BufferFull:
                log.warning("round %s%s: robust buffer full after %d updates; the rest are dropped", rnd.id,
                            "" if part.cell is None else f" cell {part.key}", len(used))
                break
            staleness_sum += s
            used.append(int(row.id))
            del vec
        if not used and part.cell is not None:
            withheld.append(Withheld(part.cell, part.ids, "empty"))
            continue
        rel = parted.release(state.aggregator, part.ledger, part.key, acc,
                             np.random.default_rng(part.seed))  # raises EmptyRound for an empty flat round
        released.append(Folded(part.cell, used, rel))
        ledgers[part.key] = rel.privacy
        if part.cell is not None:
            folded = set(used)
            withheld.extend(Withheld(part.cell, [i], "not_folded") for i in part.ids if i not in folded)

    conn.execute(delete(schema.updates).where(schema.updates.c.id.in_(ids)))
    RoundSums.discard(conn, rnd.id)
    if not released:
        return _release_nothing(conn, rnd, strategy, ids, withheld, now)
    res, worst_eps = parted.combine(state.aggregator, [r.release for r in released], ledgers, cfg.delta, num_params)
    if space is None:
        opt_state, new_params = pipe.optimizer.next(state.optimizer, params, res.delta)
    else:  # a Gram round publishes the solve of the running sum, not a step (server.aggregation.ease)
        opt_state = state.optimizer
        weight = res.metrics["denominator"] if parted.dp else res.metrics["total_weight"]
        # Counts are whole numbers only without noise and with a clip that leaves an honest body unscaled.
        exact = not parted.dp and (rnd.clip_norm is None or rnd.clip_norm >= space.clip_norm)
        gram = _running_gram(conn, blobs, rnd, space) + gram_sum_of(res.delta, weight, exact_counts=exact)
        new_params = published_factors(space, gram)
        res = replace(res, delta=gram.astype(np.float32))  # the round's aggregate: the running sum, kept server-side
    new_state = PipelineState(res.state, opt_state)
    metrics = res.public_metrics()
    metrics["delta_norm"] = float(np.linalg.norm(res.delta.astype(np.float64)))
    metrics.update(mode=cfg.mode, fold=rnd.folds)
    dp = parted.dp
    contributors = sum(r.release.contributors for r in released)
    if policy is None and not dp:
        metrics["mean_staleness"] = staleness_sum / contributors
    if policy is not None:
        metrics["policy_version"] = policy.version
        metrics["cells"] = hierarchical.cell_summary(released, withheld, policy.k_min)
    parent_has_guarantee = base.kind == "publish" or base.epsilon is not None
    epsilon = worst_eps if dp and parent_has_guarantee else None
    if epsilon is not None and not math.isfinite(epsilon):
        epsilon = None

    gated = policy is not None and policy.gate is not None and strategy.closes_round
    agg_sha = blobs.put(np.ascontiguousarray(res.delta, dtype="<f4").tobytes())
    version, digest = add_round_version(
        conn, blobs, rnd.model, base, new_params, round_id=rnd.id, contributors=contributors, metrics=metrics,
        epsilon=epsilon, delta=cfg.delta if dp else None, now=now,
        status="regional" if hold else None if policy is None else ("candidate" if gated else "published"))
    variant_versions: dict[str, int] = {}
    if policy is not None:
        for partner, vparams in _variants(pipe, parted, state, params, released, policy, num_params).items():
            variant_versions[partner], _ = add_round_version(
                conn, blobs, rnd.model, base, vparams, round_id=rnd.id, contributors=0,
                metrics={"variant_of": version, "without_partner": partner}, epsilon=epsilon,
                delta=cfg.delta if dp else None, now=now, status="variant")
        hierarchical.persist(conn, blobs, model=rnd.model, round_id=rnd.id, fold=rnd.folds, version=version,
                             released=released, dp=dp, delta=cfg.delta, now=now)
    conn.execute(update(schema.models).where(schema.models.c.name == rnd.model).values(agg_state=new_state.to_bytes()))
    values: dict[str, Any] = {"result_version": version, "aggregate_sha": agg_sha}
    if not strategy.closes_round:
        values.update(version=version, clip_norm=pipe.clip_norm(new_state))
    stop_reason = None
    try:
        pipe.check_budget(new_state)
    except PrivacyBudgetExceeded as exc:  # the next release would overspend: stop training now
        stop_reason = str(exc)
        conn.execute(update(schema.models).where(schema.models.c.name == rnd.model).values(stopped=stop_reason))
        if not strategy.closes_round:
            values.update(state=CLOSED, open_key=None, closed_at=now, reason="privacy budget exhausted")
    conn.execute(update(schema.rounds).where(schema.rounds.c.id == rnd.id).values(**values))

    closed = "round.closed" if strategy.closes_round else "round.folded"
    detail: dict[str, Any] = {"version": version, "base": rnd.version, "fold": rnd.folds, "contributors": contributors}
    if policy is None:
        entries = [audit.Entry(closed, rnd.model, code="released", subject=rnd.id,
                               detail=detail | {"epsilon": epsilon, "policy_version": None, "aggregate_sha": agg_sha}),
                   audit.Entry("version.regional" if hold else "version.published", rnd.model, code="round",
                               subject=f"v{version}", detail={"version": version, "digest": digest, "epsilon": epsilon})]
    else:
        regions: dict[str, int] = {}
        for r in released:
            assert r.cell is not None
            regions[r.cell.region] = regions.get(r.cell.region, 0) + r.release.contributors
        entries = _withheld_entries(rnd, withheld)
        entries.append(audit.Entry(closed, rnd.model, code="released", subject=rnd.id, detail=detail | {
            "regions": regions, "cells": len(released), "epsilon": epsilon, "policy_version": policy.version,
            "aggregate_sha": agg_sha}))
        kind = "version.regional" if hold else "version.candidate" if gated else "version.published"
        entries.append(audit.Entry(kind, rnd.model, code="round",
                                   subject=f"v{version}", detail={"version": version, "digest": digest,
                                                                  "epsilon": epsilon, "variants": variant_versions}))
        if stop_reason:
            entries.append(audit.Entry("training.stopped", rnd.model, code="privacy_budget_exhausted",
                                       detail={"reason": stop_reason}))
    audit.append(conn, now, entries)
    log.info("round %s (%s%s) -> %s v%d from %d updates in %d part(s), epsilon=%s", rnd.id, cfg.mode,
             "" if policy is None else ", governed", rnd.model, version, contributors, len(released), epsilon)
    return FoldResult(rnd.id, version, digest, contributors, epsilon)


def _running_gram(conn: Connection, blobs: BlobStore, rnd: Any, space: GramSpace) -> np.ndarray:
    """The Gram summed by the rounds before this one (the aggregate of the round that made the base
    version), or zeros for the first round."""
    sha = conn.execute(select(schema.rounds.c.aggregate_sha).where(
        schema.rounds.c.model == rnd.model, schema.rounds.c.result_version == rnd.version)).scalar_one_or_none()
    if sha is None:
        return np.zeros(space.num_values, np.float64)
    prev = np.frombuffer(blobs.get(sha), dtype="<f4").astype(np.float64)
    if prev.size != space.num_values:
        raise StateError(f"model {rnd.model}: the base version's aggregate has {prev.size} values, the Gram {space.num_values}")
    return prev


def _variants(pipe: Any, parted: PartitionedAggregator, state: PipelineState, params: np.ndarray,
              released: list[Folded], policy: Policy, num_params: int) -> dict[str, np.ndarray]:
    """Leave-one-partner-out parameters (policy ``partner_contribution``): post-processing of the cell releases."""
    partners = sorted({r.cell.partner for r in released if r.cell is not None})
    if not policy.partner_contribution or len(partners) < 2:
        return {}
    out: dict[str, np.ndarray] = {}
    for p in partners:
        rest = [r.release for r in released if r.cell is not None and r.cell.partner != p]
        _, out[p] = pipe.optimizer.next(state.optimizer, params, parted.combine_deltas(rest, num_params))
    return out


def _withheld_entries(rnd: Any, withheld: list[Withheld]) -> list[audit.Entry]:
    return [audit.Entry("cell.withheld", rnd.model, code=w.code, subject=rnd.id,
                        detail={"region": w.cell.region, "partner": w.cell.partner, "updates": len(w.ids)})
            for w in withheld]


def _release_nothing(conn: Connection, rnd: Any, strategy: Strategy, ids: list[int], withheld: list[Withheld],
                     now: float) -> None:
    """A governed fold in which no cell could be released: the updates are dropped, nothing is published."""
    values: dict[str, Any] = {"reason": "no cell could be released: " + ", ".join(sorted({w.code for w in withheld}))}
    if strategy.closes_round:
        values.update(state=CLOSED, open_key=None, closed_at=now)
    conn.execute(update(schema.rounds).where(schema.rounds.c.id == rnd.id).values(**values))
    audit.append(conn, now, _withheld_entries(rnd, withheld) + [
        audit.Entry("round.closed", rnd.model, code="nothing_released", subject=rnd.id, detail={"updates": len(ids)})])
    return None


def buffered(store: Store, round_id: str) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.updates)
                                .where(schema.updates.c.round_id == round_id)).scalar_one())
