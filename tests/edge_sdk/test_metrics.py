"""Device-side evaluation: shared metric definitions, NaN where a small holdout makes them undefined."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edge_sdk.metrics import log_loss, propensity_metrics, recommender_metrics


def _auc_bruteforce(y, s):
    pos = [si for yi, si in zip(y, s) if yi]
    neg = [si for yi, si in zip(y, s) if not yi]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def test_propensity_metrics_match_definitions_and_the_histogram_adds_up():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200).astype(float)
    p = np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1)
    m, h = propensity_metrics(y, p)
    assert m["auc"] == pytest.approx(_auc_bruteforce(y, p))
    assert m["loss"] == pytest.approx(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), rel=1e-6)
    assert m["n"] == 200 and m["positive_rate"] == pytest.approx(y.mean())
    _, h1 = propensity_metrics(y[:100], p[:100])
    _, h2 = propensity_metrics(y[100:], p[100:])
    assert np.array_equal((h1 + h2).pos, h.pos) and np.array_equal((h1 + h2).neg, h.neg)


def test_one_class_holdout_gives_nan_not_an_error():
    m, h = propensity_metrics(np.zeros(5), np.full(5, 0.2))
    assert math.isnan(m["auc"]) and math.isnan(m["lift_top_decile"]) and h.count == 5
    assert m["loss"] == pytest.approx(-math.log(0.8))
    assert math.isnan(log_loss(np.zeros(0), np.zeros(0)))


def test_recommender_metrics_exclude_known_items():
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.5])
    m = recommender_metrics(scores, np.array([4, 3]), 2, known=np.array([0, 1]))
    assert m == {"hr@2": 1.0, "ndcg@2": pytest.approx(1 / np.log2(3) / (1 + 1 / np.log2(3))), "recall@2": 0.5,
                 "n": 2.0}
    assert recommender_metrics(scores, np.array([4, 3]), 2)["hr@2"] == 0.0
    assert math.isnan(recommender_metrics(scores, np.array([], np.int64), 2)["hr@2"])
