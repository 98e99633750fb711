"""Confidence intervals for headline metrics: a percentile bootstrap over evaluation units.

Why a bootstrap: HR@10 on 1,000 users has a standard error near 0.014 and a
propensity AUC moves about 0.004 between seeds, so a single number cannot tell
two models apart.  Resampling the evaluation units (users for ranking, rows
for AUC) with replacement gives an interval without distributional
assumptions; the resampling RNG is seeded so a report is reproducible.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from fedmark.metrics import roc_auc

__all__ = ["bootstrap_mean", "bootstrap_auc"]


def bootstrap_mean(values: np.ndarray, *, resamples: int = 1000, level: float = 0.95,
                   seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) of per-unit values (e.g. per-user hits)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    a = (1.0 - level) / 2.0
    return float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a))


def bootstrap_auc(labels: np.ndarray, scores: np.ndarray, *, resamples: int = 200, level: float = 0.95,
                  seed: int = 0, auc: Callable[[np.ndarray, np.ndarray], float] = roc_auc) -> tuple[float, float, float]:
    """(AUC, low, high), resampling rows stratified by label (every resample has both classes)."""
    y = np.asarray(labels).ravel()
    s = np.asarray(scores).ravel()
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y != 1)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(resamples):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        vals.append(auc(y[idx], s[idx]))
    a = (1.0 - level) / 2.0
    return float(roc_auc(y, s)), float(np.quantile(vals, a)), float(np.quantile(vals, 1.0 - a))
