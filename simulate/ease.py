"""Federated EASE (family ``ease``, protocol ``ease-gram/1``) in ``fedmark simulate``: rounds of fresh devices,
each sending its Gram counts once, closed by the server's solve.

Why its own round loop (next to :func:`simulate.federation.run_federated`): a Gram round does not step
parameters.  It mirrors the Gram branch of ``server.rounds.aggregate._fold`` call for call: the round's
tally is opened at the Gram's size (``PartitionedAggregator.start``), every device's sparse body is
folded on arrival (:func:`simulate.client.run_batch`: ``prepared_update`` -> ``decode_sparse_update``
-> ``check_contribution`` -> ``Accumulator.add_sparse`` at weight 1), ``release`` and ``combine`` run
as for any round, and the close adds the released sum (``gram_sum_of``) to the running Gram of the
rounds before - kept as float32, as the server stores a round's aggregate - and publishes
``published_factors`` (k-threshold, PSD repair, closed-form solve, rank-r factors).  Only who uploads
when is simulated: each round picks ``goal x over_select`` of the devices that have not yet
contributed (a device counts its history once, as in the demo), drops some, and the first ``goal``
count; a round short of ``min_clients`` is abandoned.

Also the one home of what the demo step (``examples/demo/recommender_ease.py``) and the sweep
(``sweeps/recommender_ease.py``) compute alike: the consent draw, the capped 0/1 device matrix and
its central Gram, the training document the demo puts, and the held-out scoring.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edge_sdk.trainer import Trainer
from fedmark.contract import Manifest, unflatten
from fedmark.contract.gram import GramSpace, capped_items, gram_space, history_seed
from fedmark.metrics import ranking_at_k, top_k
from server.aggregation import Accumulator, PartitionedAggregator, PipelineState, PrivacyBudgetExceeded
from server.aggregation.ease import ease_weights, gram_sum_of, low_rank_factors, published_factors
from server.rounds.aggregate import round_seed
from server.rounds.config import TrainingConfig
from simulate.client import Job, RoundSpec, device_seed
from simulate.engines import Engine, split
from simulate.federation import ConfigError, FederatedRun, FederationSettings, RoundLog
from simulate.stats import bootstrap_mean

__all__ = ["customers", "consenting", "capped_matrix", "central_gram", "training_config", "recommendations", "summary",
           "EaseWorkload", "run_gram"]


def customers(retail: Any, n: int | None, seed: int) -> list[int]:
    """The customers in a run - all, or a seeded subset of ``n`` (the demo's fast variant) - that have a
    training history."""
    users = np.arange(len(retail.customers))
    if n:
        users = np.sort(np.random.default_rng(seed).choice(users, min(n, users.size), replace=False))
    return [int(u) for u in users if len(retail.train[u]) > 0]


def consenting(customers: int, refuse: float, seed: int) -> np.ndarray:
    """Who consents to the recommendations purpose: the demo's draw (a ``refuse`` share says no, seed + 3)."""
    return np.random.default_rng(seed + 3).random(customers) >= refuse


def capped_matrix(histories: Sequence[np.ndarray], n: int, cap: int | None) -> tuple[Any, np.ndarray]:
    """Rows: each history's contributed 0/1 vector over ``n`` catalogue items - its distinct items, or the
    protocol's own seeded sample of ``cap`` (``history_seed``) - as a CSR matrix; and each row's item count."""
    from scipy import sparse

    rows = [capped_items(h, cap, np.random.default_rng(history_seed(h))) for h in histories]
    sizes = np.array([r.size for r in rows], np.int64)
    cols = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    m = sparse.csr_matrix((np.ones(int(sizes.sum())), (np.repeat(np.arange(len(rows)), sizes), cols)),
                          shape=(len(rows), n))
    return m, sizes


def central_gram(histories: Sequence[np.ndarray], n: int, cap: int | None) -> np.ndarray:
    """X'X (dense float64) of the capped device matrix: what the pooled histories give a central server."""
    m, _ = capped_matrix(histories, n, cap)
    return np.asarray((m.T @ m).toarray(), np.float64)


def training_config(space: GramSpace, devices: int, rounds: int, dropout: float) -> dict[str, Any]:
    """The training document the demo puts for federated EASE (``PUT /v1/models/{name}/training``): every
    device once over ``rounds`` rounds (goal = the expected survivors / rounds, 1.3x over-selected, any
    number closes at the deadline), the clip an honest body never exceeds, no noise (the k-threshold
    protects what is published; see ``server.aggregation.ease``)."""
    goal = max(1, math.ceil(devices * (1 - dropout) / rounds))
    return {"mode": "sync", "goal": goal, "min_clients": 1, "over_select": 1.3, "deadline_s": 60.0,
            "clip": {"norm": space.clip_norm, "adaptive": False}, "noise_multiplier": 0.0,
            "server_optimizer": {"name": "fedavg", "lr": 1.0}}


def recommendations(score_of: Callable[[np.ndarray], np.ndarray], local: Sequence[np.ndarray], cat: np.ndarray,
                    test: Sequence[Sequence[int]], users: Sequence[int],
                    k: int) -> tuple[list[list[int]], list[list[int]]]:
    """Top-k catalogue items (as global item ids) per user from their catalogue history ``local[u]``, their own
    items excluded (no history: zero scores); and each user's held-out items (global ids)."""
    recs, truth = [], []
    for u in users:
        s = score_of(local[u]) if local[u].size else np.zeros(cat.size)
        recs.append([int(cat[i]) for i in top_k(s, k, local[u].tolist())])
        truth.append([int(i) for i in test[u]])
    return recs, truth


def summary(recs: list[list[int]], truth: list[list[int]], k: int, resamples: int, seed: int) -> dict[str, Any]:
    """HR@k and NDCG@k over the users, with a percentile-bootstrap interval of HR@k."""
    out: dict[str, Any] = dict(ranking_at_k(recs, truth, k))
    hits = np.array([1.0 if set(r[:k]) & set(t) else 0.0 for r, t in zip(recs, truth)])
    _mean, lo, hi = bootstrap_mean(hits, resamples=resamples, seed=seed)
    out[f"hr@{k}_ci"] = [lo, hi]
    return out


@dataclass
class EaseWorkload:
    """The demo's EASE fleet on Online Retail: every consented customer with a catalogue item is a device.

    ``local[u]``: customer u's training items as catalogue positions (the artifact's item order);
    ``held``: every customer with a training history and a held-out basket, scored over the catalogue;
    popularity counts every consented customer's training items (all items, as the demo's baseline)."""

    trainer: Trainer
    retail: Any                       # models.data.RetailData
    users: list[int]                  # the customers in the run (all, or a seeded subset)
    consent: np.ndarray
    k: int = 10
    seed: int = 0
    resamples: int = 1000
    curve_users: int | None = None
    primary: str = "hr@10"
    local: list[np.ndarray] = field(init=False)
    cat: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.primary = f"hr@{self.k}"
        self.space = gram_space(self.trainer.manifest.hyperparams)
        if self.space is None:
            raise ValueError("the artifact is not Gram-trained (no hyperparams.gram)")
        d = self.retail
        index = {str(code): i for i, code in enumerate(d.items)}
        codes = [str(c) for c in self.trainer.manifest.features["items"]]
        missing = [c for c in codes if c not in index]
        if missing:
            raise ValueError(f"{len(missing)} catalogue items (e.g. {missing[0]!r}) are not in the data: "
                             "is the artifact exported from this data?")
        self.cat = np.array([index[c] for c in codes], np.int64)
        pos = -np.ones(d.n_items, np.int64)
        pos[self.cat] = np.arange(self.cat.size)
        self.local = [np.unique(pos[t][pos[t] >= 0]) if len(t) else np.zeros(0, np.int64) for t in d.train]
        self.consented = [u for u in self.users if self.consent[u]]
        self.devices = [u for u in self.consented if self.local[u].size]   # nothing to count without an item
        self.held = [u for u in self.users if len(d.test[u]) > 0]
        self._curve_users = self.held
        if self.curve_users is not None and self.curve_users < len(self.held):
            rng = np.random.default_rng(self.seed + 7)
            self._curve_users = [int(u) for u in rng.choice(self.held, self.curve_users, replace=False)]

    @property
    def data(self) -> list[np.ndarray]:
        """The engine's fleet: device i holds ``local[devices[i]]``."""
        return [self.local[u] for u in self.devices]

    def _device_scores(self, params: Sequence[np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        """As a device scores: the artifact's ONNX ``infer`` graph on its history."""
        return lambda items: np.asarray(self.trainer.predict(list(params), items, local=None), np.float64)

    def score(self, score_of: Callable[[np.ndarray], np.ndarray], users: Sequence[int],
              resamples: int) -> dict[str, Any]:
        """HR@k / NDCG@k of ``score_of`` on ``users`` over the catalogue, with a bootstrap interval."""
        recs, truth = recommendations(score_of, self.local, self.cat, self.retail.test, users, self.k)
        return summary(recs, truth, self.k, resamples, self.seed)

    def evaluate(self, params: Sequence[np.ndarray]) -> dict[str, Any]:
        """A learning-curve point (HR@k and its band on the curve's users)."""
        m = self.score(self._device_scores(params), self._curve_users, 200)
        return {self.primary: m[self.primary], f"{self.primary}_ci": m[f"{self.primary}_ci"]}

    def report(self, params: Sequence[np.ndarray]) -> dict[str, Any]:
        return self.score(self._device_scores(params), self.held, self.resamples)

    def centralized(self, contributors: Sequence[int]) -> tuple[dict[str, Any], np.ndarray]:
        """The same model (catalogue, cap, k, lambda, rank) from the contributors' histories pooled; and its B."""
        s = self.space
        b = ease_weights(central_gram([self.local[u] for u in contributors], s.items, s.cap), s.lam, s.k_min)
        left, right = low_rank_factors(b, s.rank)
        out = self.score(lambda x: left[x].astype(np.float64).sum(axis=0) @ right, self.held, self.resamples)
        out["devices"] = len(contributors)
        return out, left.astype(np.float64) @ right

    def popularity(self) -> dict[str, Any]:
        """The best sellers among the consented customers' training histories, minus what the user bought."""
        d = self.retail
        counts = np.zeros(d.n_items)
        for u in self.consented:
            counts[d.train[u]] += 1
        recs = [top_k(counts, self.k, d.train[u].tolist()) for u in self.held]
        return summary(recs, [d.test[u].tolist() for u in self.held], self.k, self.resamples, self.seed)


def run_gram(engine: Engine, manifest: Manifest, cfg: TrainingConfig, settings: FederationSettings,
             n_devices: int, evaluate: Callable[[list[np.ndarray]], Mapping[str, Any]] | None = None,
             progress: Callable[..., Any] | None = None) -> FederatedRun:
    """``settings.rounds`` Gram rounds over ``n_devices`` devices, each contributing at most once.

    Returns the run with ``params`` the last published factors, ``locals_`` unused, and
    ``contributors``: the devices whose counts are in the published sum, by round.
    """
    settings.check()
    space = gram_space(manifest.hyperparams)
    if space is None:
        raise ConfigError(f"model {manifest.model!r} is not Gram-trained: run it with run_federated")
    pipe = cfg.pipeline()
    parted = PartitionedAggregator(pipe.aggregator)
    params = np.zeros(manifest.num_params, np.float32)   # an EASE artifact publishes zeros before round one
    state = pipe.initialize(params)
    running = np.zeros(space.num_values, np.float64)   # the Gram of the rounds before (the base's aggregate)
    rng = np.random.default_rng(settings.seed)
    noise_seed = settings.noise_seed or (lambda r: round_seed(f"sim-{settings.seed}", f"round-{r}", 0))
    run = FederatedRun(unflatten(params, manifest.params), state)
    done: set[int] = set()
    by_round: list[list[int]] = []
    t0 = time.perf_counter()
    if evaluate is not None:
        run.curve.append((0, dict(evaluate(unflatten(params, manifest.params)))))
    bar = progress(total=settings.rounds, desc="federated (EASE)", unit="round") if progress else None
    for r in range(settings.rounds):
        try:
            pipe.check_budget(state)
        except PrivacyBudgetExceeded as exc:
            run.stopped = str(exc)
            break
        fresh = np.array([d for d in range(n_devices) if d not in done], np.int64)
        cap = min(cfg.task_cap, fresh.size)
        chosen = rng.choice(fresh, cap, replace=False) if cap else fresh
        drops = rng.random(cap) < settings.dropout
        survivors = [int(d) for d, dropped in zip(chosen, drops) if not dropped][:cfg.goal]
        log = RoundLog(r + 1, "abandoned", 0, int(drops.sum()), pipe.clip_norm(state), run.epsilon, 0,
                       cap * manifest.num_params * 4, None)
        if survivors and len(survivors) >= cfg.min_clients:
            clip = pipe.clip_norm(state)
            acc = parted.start(state.aggregator, state.aggregator.privacy, space.num_values)
            spec = RoundSpec(params, clip, None, None, cfg.encoding, cfg.local_noise, cfg.max_examples_weight,
                             acc.to_bytes())
            jobs = [Job(d, device_seed(settings.seed, r, d)) for d in survivors]
            t1 = time.perf_counter()
            batches = engine.run(spec, split(jobs, engine.workers))
            run.train_seconds += time.perf_counter() - t1
            for b in batches:
                acc.merge(Accumulator.from_bytes(b.tally))
                log.upload_bytes += sum(res.upload_bytes for res in b.results)
            rel = parted.release(state.aggregator, state.aggregator.privacy, None, acc,
                                 np.random.default_rng(noise_seed(r)))
            res_, eps = parted.combine(state.aggregator, [rel], {None: rel.privacy}, cfg.delta, space.num_values)
            weight = res_.metrics["denominator"] if parted.dp else res_.metrics["total_weight"]
            exact = not parted.dp and (clip is None or clip >= space.clip_norm)
            gram = running + gram_sum_of(res_.delta, weight, exact_counts=exact)
            params = published_factors(space, gram)
            running = gram.astype(np.float32).astype(np.float64)   # stored as the round's float32 aggregate
            state = PipelineState(res_.state, state.optimizer)
            done.update(survivors)
            by_round.append(survivors)
            run.updates += len(survivors)
            run.epsilon = eps if eps is not None and math.isfinite(eps) else run.epsilon
            log.state, log.contributors, log.epsilon, log.mean_loss = "closed", len(survivors), run.epsilon, 0.0
        run.rounds.append(log)
        if evaluate is not None and ((r + 1) % settings.eval_every == 0 or r + 1 == settings.rounds):
            m = dict(evaluate(unflatten(params, manifest.params)))
            run.curve.append((r + 1, m))
            if bar is not None:
                bar.set_postfix({k: f"{v:.3f}" for k, v in m.items() if isinstance(v, float)})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    run.params = unflatten(params, manifest.params)
    run.state = state
    run.contributors = by_round
    run.seconds = time.perf_counter() - t0
    return run
