"""Local evaluation on the device: the project's shared metrics, as aggregates only.

Why a thin layer over :mod:`fedmark.metrics`: the device, the server and the
demo must compute AUC, lift or HR@k the same way, so the formulas live in one
shared module; this layer only adds what a device needs around them — NaN
instead of an exception where a small local holdout makes a metric undefined
(one class only), the log loss, and the score histogram (the additive,
record-free form of a device's scores that a fleet can sum up).
"""
from __future__ import annotations

import math

import numpy as np

from fedmark.metrics import ScoreHistogram, binary_report, ranking_at_k, top_k

__all__ = ["log_loss", "propensity_metrics", "recommender_metrics", "top_k", "ScoreHistogram"]


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities ``p`` for 0/1 labels ``y`` (NaN when empty)."""
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.clip(np.asarray(p, dtype=np.float64).ravel(), eps, 1 - eps)
    if y.size == 0:
        return float("nan")
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def propensity_metrics(y: np.ndarray, p: np.ndarray) -> tuple[dict[str, float], ScoreHistogram]:
    """Loss, AUC, top-decile lift, calibration, n and positive rate, plus the score histogram.

    AUC and lift need both classes; a holdout with only one gets NaN for them
    (reporting 0.5 would be a made-up figure).
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    out: dict[str, float] = {"loss": log_loss(y, p), "n": float(y.size),
                             "positive_rate": float(y.mean()) if y.size else math.nan}
    try:
        rep = binary_report(y, p)
        out.update({k: float(v) for k, v in rep.items() if k not in ("n", "positive_rate")})
    except ValueError:
        out.update(auc=math.nan, lift_top_decile=math.nan)
    return out, ScoreHistogram.of(y, p)


def recommender_metrics(scores: np.ndarray, held_out: np.ndarray, k: int,
                        known: np.ndarray | None = None) -> dict[str, float]:
    """HR@k and NDCG@k of this device's customer (shared definitions), recall@k, and the held-out count.

    ``known`` items (already bought, not held out) are excluded from the ranking,
    exactly as :meth:`edge_sdk.Client.recommend` does.
    """
    held = np.asarray(held_out, dtype=np.int64).ravel()
    if held.size == 0:
        return {f"hr@{k}": math.nan, f"ndcg@{k}": math.nan, f"recall@{k}": math.nan, "n": 0.0}
    ranked = top_k(np.asarray(scores).ravel(), k, () if known is None else known.tolist())
    shared = ranking_at_k([ranked], [held.tolist()], k)
    recall = len(set(ranked) & set(held.tolist())) / held.size
    return {f"hr@{k}": float(shared[f"hr@{k}"]), f"ndcg@{k}": float(shared[f"ndcg@{k}"]),
            f"recall@{k}": float(recall), "n": float(held.size)}
