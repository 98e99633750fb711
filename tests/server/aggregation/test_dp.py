"""DP aggregation: noise calibration, the value/bit noise split, fixed denominator, seeded replay."""
from __future__ import annotations

import math

import numpy as np
import pytest

from server.aggregation import (AdaptiveClip, Aggregator, ConfigError, CoordinateMedian, FixedClip, GaussianNoise,
                                PrivacyBudget, PrivacyBudgetExceeded, PrivacyLedger, WeightedMean, dp_fedavg,
                                value_noise_multiplier)
from server.aggregation.noise import NOISE_CHUNK


def test_value_noise_multiplier_composes_back_to_the_total():
    for z, sb in [(0.5, 1.0), (1.0, 5.0), (1.2, 0.61), (3.0, 50.0)]:
        zv = value_noise_multiplier(z, sb)
        assert zv > z
        # two Gaussian releases with multipliers zv and 2*sb compose to one with z: z^-2 = zv^-2 + (2 sb)^-2
        assert zv ** -2 + (2 * sb) ** -2 == pytest.approx(z ** -2, rel=1e-12)
    assert value_noise_multiplier(0.0, 0.0) == 0.0


@pytest.mark.parametrize("z, sb", [(1.0, 0.5), (1.0, 0.2), (2.0, 0.0)])
def test_too_little_bit_noise_is_a_clear_error(z, sb):
    with pytest.raises(ConfigError, match=r"sigma_b > z/2"):
        value_noise_multiplier(z, sb)
    # the same check fires when the aggregator is built, not at the first round
    with pytest.raises(ConfigError, match="clients per round"):
        Aggregator(WeightedMean(uniform=True), AdaptiveClip(1.0), GaussianNoise(z, 10, bit_stddev=sb))


def test_noise_stddev_on_the_sum_is_z_times_c():
    n, c, z, clients = 200_000, 0.8, 1.3, 40.0
    agg = Aggregator(WeightedMean(uniform=True), FixedClip(c), GaussianNoise(z, clients))
    state = agg.initialize()
    acc = agg.start(state, n)
    acc.add(np.zeros(n, np.float32), 7.0)   # contributes nothing but noise
    res = agg.finish(state, acc, np.random.default_rng(3))
    emp = float(np.std(res.delta.astype(np.float64) * clients))
    assert res.metrics["noise_stddev"] == pytest.approx(z * c)
    assert emp == pytest.approx(z * c, rel=0.01)  # sd of a sample sd at n=2e5: 0.16%
    assert abs(float(np.mean(res.delta))) < 5 * z * c / clients / math.sqrt(n)


def test_adaptive_dp_uses_the_split_value_multiplier_and_noised_bits():
    n, clients, z = 1000, 20.0, 1.0
    sb = 0.05 * clients  # TFF default: 1.0
    agg = Aggregator(WeightedMean(uniform=True), AdaptiveClip(0.5, 0.5, 0.2), GaussianNoise(z, clients))
    state = agg.initialize()
    rng = np.random.default_rng(11)
    ups = rng.normal(size=(17, n)).astype(np.float32) * 0.02   # norms ~0.63: all clipped at 0.5
    acc = agg.start(state, n)
    for u in ups:
        acc.add(u, 100.0)    # weight ignored under DP
    res = agg.finish(state, acc, np.random.default_rng(99))
    zv = value_noise_multiplier(z, sb)
    assert res.metrics["value_noise_multiplier"] == pytest.approx(zv)
    # Replay the documented draw order by hand: value noise in chunks, then one scalar for the bits.
    replay = np.random.default_rng(99)
    total = sum(u.astype(np.float64) * min(1.0, 0.5 / np.linalg.norm(u.astype(np.float64)) * (1 - 1e-12))
                for u in ups)
    noise = np.concatenate([replay.normal(0, zv * 0.5, size=min(NOISE_CHUNK, n - s)) for s in range(0, n, NOISE_CHUNK)])
    np.testing.assert_allclose(res.delta, (total + noise) / clients, rtol=1e-6, atol=1e-7)
    bits = 0 - 17 / 2 + replay.normal(0, sb)
    b = min(1.0, max(0.0, bits / clients + 0.5))
    assert res.state.clip.norm == pytest.approx(0.5 * math.exp(-0.2 * (b - 0.5)), rel=1e-12)
    # Denominator is the configured clients per round (20), not the 17 received.
    assert res.metrics["denominator"] == clients and res.metrics["contributors"] == 17


def test_seeded_noise_replays_bit_identically_and_differs_across_seeds():
    pipe = dp_fedavg(1.0, 50, clip=1.0, adaptive=True)
    params = np.zeros(300, np.float32)
    state = pipe.initialize(params)
    ups = np.random.default_rng(0).normal(size=(50, 300)).astype(np.float32) * 0.1

    def run(seed: int):
        acc = pipe.start(state, 300)
        for u in ups:
            acc.add(u, 1.0)
        return pipe.finish(state, acc, params, np.random.default_rng(seed))

    a, b, c = run(5), run(5), run(6)
    assert a.params.tobytes() == b.params.tobytes()
    assert a.state == b.state
    assert a.params.tobytes() != c.params.tobytes()


def test_dp_finish_needs_an_rng():
    agg = Aggregator(WeightedMean(uniform=True), FixedClip(1.0), GaussianNoise(1.0, 10))
    acc = agg.start(agg.initialize(), 3)
    acc.add(np.ones(3, np.float32), 1)
    with pytest.raises(ConfigError, match="rng"):
        agg.finish(agg.initialize(), acc)


def test_public_metrics_hide_exact_counts_under_dp():
    agg = Aggregator(WeightedMean(uniform=True), AdaptiveClip(1.0), GaussianNoise(1.0, 100))
    state = agg.initialize()
    acc = agg.start(state, 4)
    acc.add(np.ones(4, np.float32), 1)
    res = agg.finish(state, acc, np.random.default_rng(0))
    pub = res.public_metrics()
    assert "unclipped_fraction" in res.metrics and "unclipped_fraction" not in pub
    assert "claim_mismatches" not in pub and "max_norm" not in pub
    assert pub["noise_multiplier"] == 1.0 and pub["dp"] is True


@pytest.mark.parametrize("build, match", [
    (lambda: Aggregator(WeightedMean(uniform=True), None, GaussianNoise(1.0, 10)), "needs clipping"),
    (lambda: Aggregator(CoordinateMedian(10), FixedClip(1.0), GaussianNoise(1.0, 10)), "median"),
    (lambda: Aggregator(WeightedMean(), FixedClip(1.0), None, PrivacyBudget(1.0, 1e-5)), "budget needs DP"),
    (lambda: GaussianNoise(1.0, 0), "expected clients"),
    (lambda: GaussianNoise(1.0, 10, sampling_rate=0.0), "sampling_rate"),
])
def test_unsafe_combinations_are_refused(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_budget_is_enforced_before_a_round_opens_and_before_noise_is_released():
    budget = PrivacyBudget(epsilon=3.0, delta=1e-5)
    agg = Aggregator(WeightedMean(uniform=True), FixedClip(1.0), GaussianNoise(1.0, 10, sampling_rate=0.1), budget)
    state = agg.initialize()
    rounds = 0
    with pytest.raises(PrivacyBudgetExceeded, match="would reach epsilon") as info:
        while True:
            acc = agg.start(state, 2)
            acc.add(np.ones(2, np.float32), 1)
            state = agg.finish(state, acc, np.random.default_rng(rounds)).state
            rounds += 1
    affordable = 0
    while PrivacyLedger().record(1.0, 0.1, affordable + 1).epsilon(1e-5) <= 3.0:
        affordable += 1
    assert rounds == affordable
    assert state.epsilon(1e-5) <= 3.0 < info.value.epsilon_next
    assert info.value.epsilon_now == pytest.approx(state.epsilon(1e-5))
