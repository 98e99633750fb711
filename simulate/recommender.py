"""The recommender workload: one customer per device, HR@k on every held-out user.

Why every held-out user and a bootstrap: on the demo's sample of 1,000 users
HR@10 has a standard error near 0.014, as large as the gaps between the
models being compared; all 2,829 held-out users with a percentile interval
make the comparison readable.  Evaluation reconstructs each user's vector
from their training items with the artifact, as the device does before it
recommends (the same procedure as the demo, so the figures are comparable).

Centralized is the same model with the same per-user step applied one user at
a time to one shared item table - what a server holding everyone's history
would run; "equal data passes" gives it as many user steps as the federation
had accepted updates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from edge_sdk.trainer import Trainer
from fedmark.metrics import ranking_at_k, top_k
from simulate.stats import bootstrap_mean

__all__ = ["RecommenderWorkload"]


@dataclass
class RecommenderWorkload:
    trainer: Trainer
    data: list[np.ndarray]          # device d's training item indices (artifact's item order)
    test: list[np.ndarray]          # device d's held-out items (may be empty)
    k: int = 10
    seed: int = 0
    curve_users: int | None = None  # evaluate the learning curve on a fixed subsample (None: everyone)
    primary = "hr@10"

    def __post_init__(self) -> None:
        self.primary = f"hr@{self.k}"
        self.held = [d for d, t in enumerate(self.test) if len(t) > 0]
        if not self.held:
            raise ValueError("no device has a held-out item: the data needs customers with two or more baskets")
        self._curve_users = self.held
        if self.curve_users is not None and self.curve_users < len(self.held):
            rng = np.random.default_rng(self.seed + 7)
            self._curve_users = sorted(int(u) for u in rng.choice(self.held, self.curve_users, replace=False))

    @property
    def sizes(self) -> list[int]:
        return [int(len(d)) for d in self.data]

    def _hits(self, params: Sequence[np.ndarray], users: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        hits, ndcg = [], []
        for u in users:
            local = self.trainer.initial_local(seed=self.seed + int(u))
            res = self.trainer.train(list(params), self.data[u], local=local, seed=self.seed + int(u))
            scores = np.asarray(self.trainer.predict(list(params), local=res.local)).ravel()
            m = ranking_at_k([top_k(scores, self.k, self.data[u].tolist())], [self.test[u].tolist()], self.k)
            hits.append(m[f"hr@{self.k}"])
            ndcg.append(m[f"ndcg@{self.k}"])
        return np.array(hits), np.array(ndcg)

    def evaluate(self, params: Sequence[np.ndarray]) -> dict[str, Any]:
        hits, _ = self._hits(params, self._curve_users)
        return {self.primary: float(hits.mean())}

    def report(self, params: Sequence[np.ndarray], seed: int = 0) -> dict[str, Any]:
        hits, ndcg = self._hits(params, self.held)
        return self._summary(hits, ndcg, seed)

    def _summary(self, hits: np.ndarray, ndcg: np.ndarray, seed: int) -> dict[str, Any]:
        hr, lo, hi = bootstrap_mean(hits, seed=seed)
        nd, nlo, nhi = bootstrap_mean(ndcg, seed=seed)
        return {self.primary: hr, f"{self.primary}_ci": [lo, hi], f"ndcg@{self.k}": nd, f"ndcg@{self.k}_ci": [nlo, nhi],
                "users": int(hits.size)}

    def baseline(self, seed: int = 0) -> dict[str, Any]:
        """Popularity: the best sellers among training histories, minus what the user already bought."""
        counts = np.zeros(self.trainer.manifest.params[0].shape[0])
        for d in self.data:
            counts[d] += 1
        hits, ndcg = [], []
        for u in self.held:
            m = ranking_at_k([top_k(counts, self.k, self.data[u].tolist())], [self.test[u].tolist()], self.k)
            hits.append(m[f"hr@{self.k}"])
            ndcg.append(m[f"ndcg@{self.k}"])
        return {"popularity": self._summary(np.array(hits), np.array(ndcg), seed)}

    def centralized(self, init: Sequence[np.ndarray], steps: int, seed: int, eval_every: int,
                    progress: Callable[..., Any] | None = None) -> tuple[list[tuple[int, dict[str, Any]]], list[np.ndarray]]:
        """``steps`` user steps on one shared table (users in shuffled epochs); curve every ``eval_every`` steps."""
        params = list(init)
        local: dict[int, Any] = {}
        rng = np.random.default_rng(seed + 11)
        order: list[int] = []
        curve = []
        it = range(1, steps + 1)
        for s in (progress(it, desc="centralized", unit="step", mininterval=1.0) if progress else it):
            if not order:
                order = [int(u) for u in rng.permutation(len(self.data))]
            u = order.pop()
            res = self.trainer.train(params, self.data[u], local=local.get(u), seed=seed + s * 7919 + u)
            params, local[u] = res.params, res.local
            if s % eval_every == 0 or s == steps:
                curve.append((s, self.evaluate(params)))
        return curve, params

    def local_only(self, init: Sequence[np.ndarray], devices: int, epochs: int, lr: float | None,
                   seed: int) -> dict[str, Any]:
        """Each sampled held-out user trains the model on their own history alone and is scored on it."""
        pick = np.random.default_rng(seed).choice(self.held, min(devices, len(self.held)), replace=False)
        hits = []
        for u in pick:
            res = self.trainer.train(list(init), self.data[int(u)], epochs=epochs, lr=lr, seed=seed + int(u))
            scores = np.asarray(self.trainer.predict(res.params, local=res.local)).ravel()
            m = ranking_at_k([top_k(scores, self.k, self.data[int(u)].tolist())], [self.test[int(u)].tolist()], self.k)
            hits.append(m[f"hr@{self.k}"])
        hr, lo, hi = bootstrap_mean(np.array(hits), seed=seed)
        return {self.primary: hr, f"{self.primary}_ci": [lo, hi], "devices": len(hits), "epochs": epochs}
