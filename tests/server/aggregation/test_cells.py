"""Per-cell aggregation: the flat aggregation is its one-cell case, bit for bit; cells keep their own ledgers."""
from __future__ import annotations

import numpy as np
import pytest

from server.aggregation import (AdaptiveClip, Aggregator, FixedClip, GaussianNoise, PartitionedAggregator,
                                PrivacyLedger, WeightedMean)

AGGREGATORS = {
    "plain": Aggregator(WeightedMean(max_weight=50.0), FixedClip(1.0)),
    "adaptive": Aggregator(WeightedMean(), AdaptiveClip(0.5, 0.5, 0.2)),
    "dp_adaptive": Aggregator(WeightedMean(uniform=True), AdaptiveClip(0.5, 0.5, 0.2), GaussianNoise(1.0, 20.0)),
    "dp_fixed": Aggregator(WeightedMean(uniform=True), FixedClip(0.5), GaussianNoise(1.2, 10.0)),
}


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_one_cell_is_bit_identical_to_the_flat_aggregator(name):
    agg = AGGREGATORS[name]
    rng = np.random.default_rng(3)
    ups = (rng.normal(size=(9, 301)) * 0.05).astype(np.float32)
    state = agg.initialize()
    acc = agg.start(state, 301)
    for i, u in enumerate(ups):
        acc.add(u, weight=float(i + 1))
    flat = agg.finish(state, acc, np.random.default_rng(42))

    parted = PartitionedAggregator(agg)
    acc2 = parted.start(state, state.privacy, 301)
    for i, u in enumerate(ups):
        acc2.add(u, weight=float(i + 1))
    rel = parted.release(state, state.privacy, None, acc2, np.random.default_rng(42))
    res, eps = parted.combine(state, [rel], {None: rel.privacy}, 1e-5, 301)
    np.testing.assert_array_equal(res.delta, flat.delta)
    assert res.state == flat.state and res.metrics == flat.metrics
    assert (eps is None) == (not agg.dp)


def test_cells_have_their_own_ledgers_and_the_model_carries_the_worst():
    agg = AGGREGATORS["dp_fixed"]
    parted = PartitionedAggregator(agg)
    state = agg.initialize()
    ledgers = {"eu|a": PrivacyLedger().record(1.2, 1.0, 3), "us|a": PrivacyLedger()}
    released = []
    for key in ("eu|a", "us|a"):
        acc = parted.start(state, ledgers[key], 5)
        acc.add(np.full(5, 0.1, np.float32))
        released.append(parted.release(state, ledgers[key], key, acc, np.random.default_rng(1)))
    after = {r.key: r.privacy for r in released}
    assert after["eu|a"].rounds == 4 and after["us|a"].rounds == 1   # each release only in its own cell
    res, eps = parted.combine(state, released, after, 1e-5, 5)
    assert res.state.privacy == after["eu|a"] and eps == pytest.approx(after["eu|a"].epsilon(1e-5))
    np.testing.assert_array_equal(res.delta, (released[0].delta.astype(np.float64)
                                              + released[1].delta).astype(np.float32))
    assert res.metrics["hierarchical"] and res.metrics["contributors"] == 2


def test_adaptive_clip_advances_once_from_the_raw_bit_sum_of_all_cells():
    agg = Aggregator(WeightedMean(), AdaptiveClip(1.0, 0.5, 0.2))
    parted = PartitionedAggregator(agg)
    state = agg.initialize()
    cells = {"a": [np.full(4, 0.1, np.float32)] * 3, "b": [np.full(4, 5.0, np.float32)]}   # 3 inside, 1 clipped
    released = []
    for key, ups in cells.items():
        acc = parted.start(state, state.privacy, 4)
        for u in ups:
            acc.add(u)
        released.append(parted.release(state, state.privacy, key, acc, None))
    res, _ = parted.combine(state, released, {}, 1e-5, 4)
    assert [r.bit_sum for r in released] == [3.0, 0.0]
    assert res.state.clip == agg.clip.next(state.clip, 3 / 4)
