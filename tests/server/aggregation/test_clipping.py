"""Clipping: the norm bound holds for any input, and the server decides the bit itself."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedmark.contract import l2_clip
from server.aggregation import (BOUNDARY_RTOL, AdaptiveClip, Aggregator, ConfigError, FixedClip, UpdateRejected,
                                WeightedMean, clip_scale, l2_norm)

finite32 = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
vectors = arrays(np.float32, st.integers(1, 300), elements=finite32)
clip_norms = st.floats(1e-4, 1e4, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(vectors, clip_norms)
def test_clipped_norm_never_exceeds_c(vec, c):
    out, norm, _within = l2_clip(vec, c)  # the one clip rule, shared by device and server
    assert out.dtype == np.float32
    assert l2_norm(out) <= c
    assert math.isclose(norm, l2_norm(vec), rel_tol=1e-12)
    if norm <= c:
        np.testing.assert_array_equal(out, vec)  # inside the ball: untouched
    else:
        # direction preserved: out is a non-negative multiple of vec
        ratio = l2_norm(out) / norm
        np.testing.assert_allclose(out, vec.astype(np.float64) * ratio, rtol=1e-5, atol=1e-30 + c * 1e-6)


@settings(max_examples=200, deadline=None)
@given(vectors, clip_norms)
def test_server_reclips_every_update_inside_the_accumulator(vec, c):
    """A single update's contribution to the mean is the clipped vector: its norm is <= C."""
    agg = Aggregator(WeightedMean(), FixedClip(c))
    state = agg.initialize()
    acc = agg.start(state, vec.size)
    info = acc.add(vec, weight=3.0, within_clip=True)
    res = agg.finish(state, acc)
    assert l2_norm(res.delta.astype(np.float64)) <= c * (1 + 1e-6)  # float32 cast of the mean
    assert l2_norm(acc.sum / acc.total_weight) <= c
    assert info.clipped == (not info.norm <= c * (1 - BOUNDARY_RTOL))


def test_bit_is_computed_by_the_server_not_taken_from_the_claim():
    c = 1.0
    agg = Aggregator(WeightedMean(), FixedClip(c))
    acc = agg.start(agg.initialize(), 4)
    big = np.array([3.0, 4.0, 0, 0], np.float32)        # norm 5: clipped
    small = np.array([0.3, 0.4, 0, 0], np.float32)      # norm 0.5: inside
    liar = acc.add(big, 1, within_clip=True)             # claims "not clipped" but is far outside
    honest = acc.add(small, 1, within_clip=True)
    modest = acc.add(small, 1, within_clip=False)        # claims clipped but is inside
    silent = acc.add(big, 1, within_clip=None)
    assert (liar.unclipped_bit, liar.claim_mismatch, liar.clipped) == (0, True, True)
    assert (honest.unclipped_bit, honest.claim_mismatch) == (1, False)
    assert (modest.unclipped_bit, modest.claim_mismatch) == (1, True)
    assert (silent.unclipped_bit, silent.claim_mismatch) == (0, False)
    assert (acc.unclipped, acc.mismatches) == (2, 2)


def test_device_clipped_update_counts_as_clipped_on_the_server():
    """A device clips with contract.l2_clip (to C(1-1e-6)); the server must still see bit 0."""
    rng = np.random.default_rng(1)
    c = 0.7
    agg = Aggregator(WeightedMean(), AdaptiveClip(c, 0.5, 0.2))
    acc = agg.start(agg.initialize(), 10_000)
    for scale in (2.0, 50.0):
        raw = rng.normal(size=10_000).astype(np.float32) * scale
        sent, norm, within = l2_clip(raw, c)
        assert not within
        info = acc.add(sent, 1.0, within_clip=within)
        assert info.unclipped_bit == 0 and not info.claim_mismatch
    inside = rng.normal(size=10_000).astype(np.float32) * (0.5 * c / 100)
    sent, _, within = l2_clip(inside, c)
    assert acc.add(sent, 1.0, within_clip=within).unclipped_bit == 1
    # And the adaptive rule saw 1 of 3 unclipped.
    res = agg.finish(agg.initialize(), acc)
    assert res.metrics["unclipped_fraction"] == pytest.approx(1 / 3)
    assert res.state.clip.norm == pytest.approx(c * math.exp(-0.2 * (1 / 3 - 0.5)))


@pytest.mark.parametrize("bad, match", [
    (np.ones(3, np.float32), "shape"),
    (np.ones((2, 2), np.float32), "shape"),
    (np.array([1, np.nan, 0, 0], np.float32), "NaN"),
    (np.array([1, np.inf, 0, 0], np.float32), "NaN or Inf"),
    (np.array([1, 2, 3, 4], np.int32), "floating"),
])
def test_bad_updates_are_rejected_without_changing_the_sum(bad, match):
    agg = Aggregator(WeightedMean(), FixedClip(1.0))
    acc = agg.start(agg.initialize(), 4)
    acc.add(np.ones(4, np.float32) * 0.1, 2.0)
    before = (acc.sum.copy(), acc.count, acc.total_weight)
    with pytest.raises(UpdateRejected, match=match):
        acc.add(bad, 1.0)
    np.testing.assert_array_equal(acc.sum, before[0])
    assert (acc.count, acc.total_weight) == before[1:]


@pytest.mark.parametrize("weight", [0, -1, float("nan"), float("inf"), "ten", None])
def test_bad_weights_are_rejected(weight):
    agg = Aggregator(WeightedMean(max_weight=100))
    acc = agg.start(agg.initialize(), 2)
    with pytest.raises(UpdateRejected, match="weight"):
        acc.add(np.ones(2, np.float32), weight)
    assert acc.count == 0


@pytest.mark.parametrize("kwargs", [dict(initial_norm=0.0), dict(target_quantile=1.5), dict(learning_rate=-0.1)])
def test_adaptive_clip_config_is_validated(kwargs):
    with pytest.raises(ConfigError):
        AdaptiveClip(**kwargs)


def test_fixed_clip_must_be_positive():
    with pytest.raises(ConfigError, match="clip.norm"):
        FixedClip(0.0)
    with pytest.raises(ConfigError):
        clip_scale(l2_norm(np.ones(3, np.float32)), -1.0)


def test_changed_fixed_norm_in_config_wins_over_the_persisted_one_consistently():
    old = Aggregator(WeightedMean(), FixedClip(1.0))
    state = old.initialize()
    new = Aggregator(WeightedMean(), FixedClip(2.0))
    assert new.clip_norm(state) == 2.0              # what the tasks announce ...
    acc = new.start(state, 2)
    assert acc.clip_norm == 2.0                     # ... is what the server clips to
    acc.add(np.array([3.0, 0.0], np.float32), 1)
    res = new.finish(state, acc)
    assert res.delta[0] == pytest.approx(2.0) and res.state.clip.norm == 2.0
    # switching to adaptive keeps the persisted norm as the starting point
    assert Aggregator(WeightedMean(), AdaptiveClip(0.1)).clip_norm(res.state) == 2.0
