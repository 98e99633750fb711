"""Streaming weighted mean: equals numpy's weighted average, independent of order, checkpointable."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedmark.contract import l2_clip
from server.aggregation import Accumulator, Aggregator, EmptyRound, FixedClip, StateError, WeightedMean, plain_fedavg


@st.composite
def rounds(draw):
    n = draw(st.integers(1, 40))
    k = draw(st.integers(1, 25))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    vecs = (rng.normal(size=(k, n)) * draw(st.sampled_from([1e-3, 1.0, 1e3]))).astype(np.float32)
    weights = rng.integers(1, 5000, size=k).astype(float)
    return vecs, weights


@settings(max_examples=150, deadline=None)
@given(rounds(), st.sampled_from([None, 1.0, 100.0, 1000.0]))
def test_weighted_mean_equals_numpy_average_with_capped_weights(data, cap):
    vecs, weights = data
    agg = Aggregator(WeightedMean(max_weight=cap))
    state = agg.initialize()
    acc = agg.start(state, vecs.shape[1])
    used = [acc.add(v, w).weight for v, w in zip(vecs, weights)]
    res = agg.finish(state, acc)
    capped = weights if cap is None else np.minimum(weights, cap)
    np.testing.assert_array_equal(used, capped)
    expected = np.average(vecs.astype(np.float64), axis=0, weights=capped)
    np.testing.assert_allclose(res.delta, expected, rtol=1e-6, atol=1e-6 * np.abs(vecs).max())
    assert res.metrics["contributors"] == len(vecs)
    assert res.metrics["total_weight"] == pytest.approx(capped.sum())


@settings(max_examples=100, deadline=None)
@given(rounds(), st.randoms(use_true_random=False), st.floats(0.01, 10))
def test_streaming_in_any_order_matches_the_batch_result(data, shuffler, c):
    vecs, weights = data
    agg = Aggregator(WeightedMean(max_weight=2000.0), FixedClip(c))
    order = list(range(len(vecs)))
    shuffler.shuffle(order)
    state = agg.initialize()
    acc = agg.start(state, vecs.shape[1])
    for i in order:
        acc.add(vecs[i], weights[i])
    res = agg.finish(state, acc)
    # batch: clip all, then one weighted average
    clipped = np.stack([l2_clip(v, c)[0] for v in vecs]).astype(np.float64)
    w = np.minimum(weights, 2000.0)
    batch = (clipped * w[:, None]).sum(0) / w.sum()
    np.testing.assert_allclose(res.delta, batch, rtol=1e-5, atol=1e-6 * c)


def test_same_order_is_bit_identical_and_checkpoint_resumes_exactly():
    rng = np.random.default_rng(7)
    vecs = rng.normal(size=(30, 257)).astype(np.float32)
    agg = Aggregator(WeightedMean(max_weight=50.0), FixedClip(5.0))
    state = agg.initialize()

    def run(checkpoint_at: int | None) -> np.ndarray:
        acc = agg.start(state, 257)
        for i, v in enumerate(vecs):
            if i == checkpoint_at:
                acc = Accumulator.from_bytes(acc.to_bytes())  # simulated crash + restore
            acc.add(v, float(i + 1))
        return agg.finish(state, acc).delta

    straight = run(None)
    np.testing.assert_array_equal(straight, run(None))
    np.testing.assert_array_equal(straight, run(13))


def test_finish_refuses_an_empty_round_and_a_foreign_accumulator():
    agg = Aggregator(WeightedMean(), FixedClip(1.0))
    state = agg.initialize()
    acc = agg.start(state, 3)
    with pytest.raises(EmptyRound, match="no updates"):
        agg.finish(state, acc)
    acc.add(np.ones(3, np.float32), 1)
    later = agg.finish(state, acc).state
    with pytest.raises(StateError, match="round 0"):
        agg.finish(later, acc)  # the round-0 accumulator cannot be applied to round 1


def test_corrupt_checkpoint_is_refused():
    agg = Aggregator(WeightedMean())
    acc = agg.start(agg.initialize(), 5)
    acc.add(np.ones(5, np.float32), 1.0)
    blob = acc.to_bytes()
    with pytest.raises(StateError):
        Accumulator.from_bytes(blob[:-8])
    with pytest.raises(StateError):
        Accumulator.from_bytes(b"XXXX" + blob[4:])


def test_plain_fedavg_round_moves_params_to_the_weighted_average_of_client_models():
    params = np.array([1.0, -1.0, 0.5], np.float32)
    clients = [np.array([2.0, 0.0, 0.5], np.float32), np.array([0.0, -3.0, 1.5], np.float32)]
    weights = [30.0, 10.0]
    pipe = plain_fedavg()
    state = pipe.initialize(params)
    acc = pipe.start(state, 3)
    for m, w in zip(clients, weights):
        acc.add(m - params, w)
    res = pipe.finish(state, acc, params)
    np.testing.assert_allclose(res.params, np.average(np.stack(clients), axis=0, weights=weights), rtol=1e-6)
    assert res.state.round == 1 and res.state.optimizer.step == 1
