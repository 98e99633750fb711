"""Robust combiners: exact statistics, bounded buffer, and resistance to a poisoned minority."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.aggregation import (Accumulator, Aggregator, BufferFull, CoordinateMedian, FixedClip, TrimmedMean,
                                WeightedMean, robust_fedavg)


def _run(agg: Aggregator, vecs: np.ndarray, weights=None) -> np.ndarray:
    state = agg.initialize()
    acc = agg.start(state, vecs.shape[1])
    for i, v in enumerate(vecs):
        acc.add(v, 1.0 if weights is None else weights[i])
    return agg.finish(state, acc).delta


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 30), st.integers(1, 20), st.integers(0, 2**31), st.floats(0.0, 0.49))
def test_median_and_trimmed_mean_match_numpy(k, n, seed, trim):
    vecs = np.random.default_rng(seed).normal(size=(k, n)).astype(np.float32)
    np.testing.assert_allclose(_run(Aggregator(CoordinateMedian(k)), vecs), np.median(vecs, axis=0), rtol=1e-6)
    cut = int(np.floor(trim * k))
    srt = np.sort(vecs.astype(np.float64), axis=0)
    expected = srt[cut:k - cut].mean(axis=0)
    np.testing.assert_allclose(_run(Aggregator(TrimmedMean(k, trim)), vecs), expected, rtol=1e-5, atol=1e-6)


def test_robust_combiners_ignore_claimed_weights():
    vecs = np.array([[0.0], [1.0], [10.0]], np.float32)
    heavy = [1.0, 1.0, 1e9]  # the outlier claims a billion examples
    assert _run(Aggregator(CoordinateMedian(3)), vecs, heavy)[0] == 1.0
    assert _run(Aggregator(TrimmedMean(3, 0.34)), vecs, heavy)[0] == 1.0


def test_poisoned_minority_moves_the_mean_but_not_the_robust_aggregates():
    rng = np.random.default_rng(4)
    honest = rng.normal(0.1, 0.01, size=(40, 50)).astype(np.float32)
    evil = np.full((9, 50), -100.0, np.float32)
    vecs = np.concatenate([honest, evil])
    truth = honest.mean(axis=0)
    mean = _run(Aggregator(WeightedMean()), vecs)
    med = _run(Aggregator(CoordinateMedian(49)), vecs)
    trim = _run(Aggregator(TrimmedMean(49, 0.2)), vecs)
    bounded = _run(Aggregator(WeightedMean(), FixedClip(1.0)), vecs)
    assert np.abs(mean - truth).max() > 10
    assert np.abs(med - truth).max() < 0.02
    assert np.abs(trim - truth).max() < 0.02
    # norm bounding caps each attacker's pull to ||.|| <= 1 (9/49 of the weight)
    assert np.linalg.norm(bounded - truth) <= 9 / 49 * (1.0 + np.linalg.norm(truth)) + 1e-6


def test_buffer_is_bounded_and_full_is_reported():
    agg = Aggregator(CoordinateMedian(capacity=3))
    acc = agg.start(agg.initialize(), 4)
    for _ in range(3):
        assert not acc.full
        acc.add(np.ones(4, np.float32), 1)
    assert acc.full
    with pytest.raises(BufferFull, match="capacity of 3"):
        acc.add(np.ones(4, np.float32), 1)
    assert acc.count == 3 and acc.sum is None


def test_buffered_accumulator_checkpoints_and_norm_bound_applies_before_buffering():
    pipe = robust_fedavg("trimmed_mean", capacity=10, trim_fraction=0.1, norm_bound=2.0)
    params = np.zeros(3, np.float32)
    state = pipe.initialize(params)
    acc = pipe.start(state, 3)
    acc.add(np.array([30.0, 40.0, 0.0], np.float32), 1)      # norm 50 -> clipped to 2
    acc = Accumulator.from_bytes(acc.to_bytes())
    assert np.linalg.norm(acc.buffer[0]) <= 2.0
    acc.add(np.array([0.0, 0.0, 1.0], np.float32), 1)
    res = pipe.finish(state, acc, params)
    np.testing.assert_allclose(res.params, [0.6, 0.8, 0.5], rtol=1e-6)


def test_robust_recipe_rejects_unknown_method():
    with pytest.raises(ValueError, match="robust.method"):
        robust_fedavg("krum")
