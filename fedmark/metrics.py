"""Model-quality metrics shared by the device SDK, the server and the demo.

Pure numpy so a phone can compute them.  Two forms of each ranking metric:
exact (from scores and labels, for centralised baselines and local holdouts)
and *aggregate* (from a score histogram per label) — the latter is what a
device may report, because a histogram of counts reveals no single record and
histograms from many devices add up to the fleet's, from which AUC, lift and
calibration follow without any score leaving a device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

HIST_BINS = 100  # score histogram resolution for aggregate metrics


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos = int(y.sum())
    neg = y.size - pos
    if pos == 0 or neg == 0:
        raise ValueError("AUC needs both positive and negative labels")
    # average ranks over ties, vectorised (simulations score thousands of times)
    _, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inv]
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def lift_at(labels: np.ndarray, scores: np.ndarray, fraction: float = 0.1) -> float:
    """Positive rate among the top ``fraction`` by score over the overall positive rate."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.sum() == 0:
        raise ValueError("lift needs at least one positive label")
    k = max(1, int(round(fraction * y.size)))
    top = np.argsort(-s, kind="mergesort")[:k]
    return float(y[top].mean() / y.mean())


def calibration(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> dict[str, float]:
    """Expected calibration error (equal-width bins) and Brier score."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.clip(np.asarray(scores, dtype=np.float64).ravel(), 0.0, 1.0)
    idx = np.minimum((s * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(s[m].mean() - y[m].mean())
    return {"ece": float(ece), "brier": float(np.mean((s - y) ** 2))}


def binary_report(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The propensity figures the demo and the docs quote."""
    out = {"auc": roc_auc(labels, scores), "lift_top_decile": lift_at(labels, scores, 0.1),
           "n": int(np.size(labels)), "positive_rate": float(np.mean(labels))}
    out.update(calibration(labels, scores))
    return out


# --------------------------------------------------------------------------- aggregate form
@dataclass
class ScoreHistogram:
    """Counts of scores in [0, 1] per bin, split by label; adds up across devices."""

    pos: np.ndarray
    neg: np.ndarray
    score_sum_pos: float = 0.0
    score_sum_neg: float = 0.0

    @staticmethod
    def empty(bins: int = HIST_BINS) -> "ScoreHistogram":
        return ScoreHistogram(np.zeros(bins, np.int64), np.zeros(bins, np.int64))

    @staticmethod
    def of(labels: np.ndarray, scores: np.ndarray, bins: int = HIST_BINS) -> "ScoreHistogram":
        y = np.asarray(labels).ravel() > 0.5
        s = np.clip(np.asarray(scores, dtype=np.float64).ravel(), 0.0, 1.0)
        idx = np.minimum((s * bins).astype(int), bins - 1)
        return ScoreHistogram(np.bincount(idx[y], minlength=bins).astype(np.int64),
                              np.bincount(idx[~y], minlength=bins).astype(np.int64),
                              float(s[y].sum()), float(s[~y].sum()))

    def __add__(self, other: "ScoreHistogram") -> "ScoreHistogram":
        return ScoreHistogram(self.pos + other.pos, self.neg + other.neg,
                              self.score_sum_pos + other.score_sum_pos, self.score_sum_neg + other.score_sum_neg)

    @property
    def count(self) -> int:
        return int(self.pos.sum() + self.neg.sum())

    def auc(self) -> float:
        """AUC with scores in one bin counted as ties: exact up to the bin width."""
        p, n = self.pos.astype(np.float64), self.neg.astype(np.float64)
        if p.sum() == 0 or n.sum() == 0:
            raise ValueError("AUC needs both positive and negative labels")
        neg_below = np.concatenate([[0.0], np.cumsum(n)[:-1]])
        return float((p * (neg_below + 0.5 * n)).sum() / (p.sum() * n.sum()))

    def to_json(self) -> dict[str, object]:
        return {"pos": self.pos.tolist(), "neg": self.neg.tolist(),
                "score_sum_pos": self.score_sum_pos, "score_sum_neg": self.score_sum_neg}

    @staticmethod
    def from_json(d: dict) -> "ScoreHistogram":
        pos, neg = np.asarray(d["pos"], np.int64), np.asarray(d["neg"], np.int64)
        if pos.shape != neg.shape or pos.ndim != 1 or (pos < 0).any() or (neg < 0).any():
            raise ValueError("a score histogram needs two equal-length lists of non-negative counts")
        return ScoreHistogram(pos, neg, float(d.get("score_sum_pos", 0.0)), float(d.get("score_sum_neg", 0.0)))

    def population(self) -> np.ndarray:
        """Share of all scores in each bin (for drift: population stability index)."""
        tot = self.pos + self.neg
        return tot / max(int(tot.sum()), 1)


def population_stability_index(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> float:
    """PSI between two binned distributions (shares); > 0.2 is commonly read as a real shift."""
    e = np.clip(np.asarray(expected, np.float64), eps, None)
    a = np.clip(np.asarray(actual, np.float64), eps, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


# --------------------------------------------------------------------------- recommendation
def ranking_at_k(recommended: Sequence[Sequence[int]], held_out: Sequence[Iterable[int]], k: int = 10) -> dict[str, float]:
    """HR@k (a user counts as a hit if any held-out item is in the top k) and NDCG@k
    (binary relevance), averaged over users with at least one held-out item."""
    hits, ndcg, users = 0.0, 0.0, 0
    for rec, truth in zip(recommended, held_out):
        t = set(truth)
        if not t:
            continue
        users += 1
        top = list(rec)[:k]
        gains = [1.0 if item in t else 0.0 for item in top]
        hits += 1.0 if any(gains) else 0.0
        dcg = sum(g / np.log2(i + 2) for i, g in enumerate(gains))
        ideal = sum(1.0 / np.log2(i + 2) for i in range(min(len(t), k)))
        ndcg += dcg / ideal
    if users == 0:
        raise ValueError("no user has a held-out item")
    return {f"hr@{k}": hits / users, f"ndcg@{k}": ndcg / users, "users": users}


def top_k(scores: np.ndarray, k: int, exclude: Iterable[int] = ()) -> list[int]:
    """Indices of the k highest scores, skipping ``exclude`` (items already bought)."""
    s = np.asarray(scores, dtype=np.float64).copy()
    ex = np.fromiter(exclude, dtype=np.int64)
    if ex.size:
        s[ex] = -np.inf
    k = min(k, int(np.isfinite(s).sum()))
    part = np.argpartition(-s, k - 1)[:k] if k > 0 else np.array([], dtype=np.int64)
    return [int(i) for i in part[np.argsort(-s[part], kind="mergesort")]]
