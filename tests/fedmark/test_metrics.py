"""Metrics checked against independent computations (sklearn where it has the metric)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fedmark import metrics as m


def _data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(np.float64)
    s = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * y)))
    return y, s


def test_auc_matches_sklearn_with_ties():
    y, s = _data()
    s = np.round(s, 2)  # many ties
    assert m.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_needs_both_classes():
    with pytest.raises(ValueError, match="both"):
        m.roc_auc(np.ones(3), np.arange(3))


def test_histogram_auc_adds_across_devices_and_matches_exact():
    y, s = _data(6000)
    parts = [m.ScoreHistogram.of(y[i::3], s[i::3]) for i in range(3)]
    total = parts[0] + parts[1] + parts[2]
    assert total.count == 6000
    assert total.auc() == pytest.approx(m.roc_auc(y, s), abs=0.005)
    assert m.ScoreHistogram.from_json(total.to_json()).auc() == total.auc()


def test_histogram_rejects_bad_counts():
    with pytest.raises(ValueError, match="non-negative"):
        m.ScoreHistogram.from_json({"pos": [1, -1], "neg": [0, 0]})


def test_lift_perfect_and_random():
    y = np.array([1] * 10 + [0] * 90, dtype=float)
    assert m.lift_at(y, y, 0.1) == pytest.approx(10.0)
    rng = np.random.default_rng(0)
    yy = (rng.random(100000) < 0.1).astype(float)
    assert m.lift_at(yy, rng.random(100000), 0.1) == pytest.approx(1.0, abs=0.1)


def test_calibration_of_calibrated_scores_is_small():
    rng = np.random.default_rng(0)
    s = rng.random(200000)
    y = (rng.random(s.size) < s).astype(float)
    c = m.calibration(y, s)
    assert c["ece"] < 0.01
    assert m.calibration(y, np.clip(s + 0.3, 0, 1))["ece"] > 0.2


def test_psi_zero_for_same_and_large_for_shift():
    y, s = _data()
    h = m.ScoreHistogram.of(y, s).population()
    assert m.population_stability_index(h, h) == pytest.approx(0.0, abs=1e-9)
    shifted = m.ScoreHistogram.of(y, np.clip(s + 0.3, 0, 1)).population()
    assert m.population_stability_index(h, shifted) > 0.2


def test_ranking_metrics():
    rec = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    truth = [{3}, {9, 1}, set()]
    r = m.ranking_at_k(rec, truth, k=3)
    assert r["users"] == 2 and r["hr@3"] == 0.5
    assert r["ndcg@3"] == pytest.approx((1 / np.log2(4)) / 2)


def test_top_k_excludes_bought_items():
    scores = np.array([0.9, 0.1, 0.8, 0.7, 0.95])
    assert m.top_k(scores, 3) == [4, 0, 2]
    assert m.top_k(scores, 3, exclude=[4, 0]) == [2, 3, 1]
