"""Adaptive clipping converges to the target quantile of the update norms, and only with this sign.

Set-up: every round 100 clients send updates whose L2 norms are drawn from a
lognormal(0, 1) distribution, so the gamma-quantile is exp(Phi^-1(gamma)).
The geometric rule moves log C by -eta (b_bar - gamma).  Near the fixed point
log C contracts by 1 - eta * phi(Phi^-1(gamma)) per round (0.92-0.94 for
eta = 0.2) and is shaken by the sampling error of b_bar (sd ~0.04-0.05 for 100
clients; with the DP bit noise sigma_b = 5 it is ~0.065-0.07).  The stationary sd
of log C is then ~0.02-0.045, and the mean of log C over 200 rounds (correlation
time ~15 rounds) has sd ~0.01-0.015; measured over 8 seeds: sd 0.006-0.009 with
exact bits, 0.014-0.017 with noised bits, mean error <= 0.01.  A tolerance of
0.06 on the average log C (about 6% on C) is therefore ~4 sd while still
excluding any biased rule, and the realised unclipped fraction over those
rounds must be within 0.03 of gamma.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Callable

import numpy as np
import pytest

from server.aggregation import AdaptiveClip, Aggregator, ClipState, GaussianNoise, WeightedMean

CLIENTS, ROUNDS, BURN_IN, DIM = 100, 300, 100, 8
ETA = 0.2


def _round_updates(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    norms = rng.lognormal(0.0, 1.0, size=CLIENTS)
    dirs = rng.normal(size=(CLIENTS, DIM))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return (dirs * norms[:, None]).astype(np.float32), norms


def simulate(gamma: float, noisy_bits: bool, *, c0: float = 0.1, seed: int = 0,
             step: Callable[[AdaptiveClip, ClipState, float], ClipState] | None = None) -> tuple[list[float], float]:
    """Run the real aggregator for ROUNDS rounds; returns the clip norms used and the late unclipped fraction."""
    est = AdaptiveClip(c0, gamma, ETA)
    noise = GaussianNoise(1.0, CLIENTS) if noisy_bits else None   # sigma_b = 0.05 * 100 = 5
    agg = Aggregator(WeightedMean(uniform=noisy_bits), est, noise)
    state = agg.initialize()
    rng = np.random.default_rng(seed)
    norms_used: list[float] = []
    inside = total = 0
    for r in range(ROUNDS):
        vecs, norms = _round_updates(rng)
        c = state.clip.norm
        norms_used.append(c)
        acc = agg.start(state, DIM)
        for v in vecs:
            acc.add(v, 1.0)
        res = agg.finish(state, acc, np.random.default_rng([seed, r]))
        if step is not None:  # an alternative update rule applied to the same noised fraction
            b = res.metrics.get("unclipped_fraction_noised", res.metrics.get("unclipped_fraction"))
            res = type(res)(res.delta, type(res.state)(res.state.round, step(est, state.clip, b), res.state.privacy),
                            res.metrics)
        if r >= BURN_IN:
            inside += int((norms <= c).sum())
            total += CLIENTS
        state = res.state
    return norms_used, inside / total


@pytest.mark.parametrize("noisy_bits", [False, True], ids=["exact-bits", "dp-noised-bits"])
@pytest.mark.parametrize("gamma", [0.2, 0.5, 0.8])
def test_clip_converges_to_the_target_quantile(gamma, noisy_bits):
    target = math.exp(NormalDist().inv_cdf(gamma))
    norms_used, frac = simulate(gamma, noisy_bits)
    late = np.log(norms_used[BURN_IN:])
    err = abs(late.mean() - math.log(target))
    print(f"gamma={gamma} noisy={noisy_bits}: mean C={math.exp(late.mean()):.4f} target={target:.4f} "
          f"log-err={err:.4f} sd(logC)={late.std():.4f} unclipped={frac:.4f}")
    assert err < 0.06
    assert abs(frac - gamma) < 0.03
    # Starting 10x too small it has arrived well within the burn-in (step <= eta per round).
    assert abs(math.log(norms_used[BURN_IN] / target)) < 0.3


def _inverted(est: AdaptiveClip, state: ClipState, b: float) -> ClipState:
    """The sign error found in the wild: C <- C * exp(+eta (b_bar - gamma))."""
    b = min(1.0, max(0.0, b))
    return ClipState(state.norm * math.exp(+est.learning_rate * (b - est.target_quantile)))


@pytest.mark.parametrize("c0", [0.1, 30.0], ids=["start-low", "start-high"])
def test_inverted_sign_diverges_while_ours_converges(c0):
    gamma = 0.5
    target = 1.0  # median of lognormal(0, 1)
    ours, _ = simulate(gamma, False, c0=c0)
    wrong, _ = simulate(gamma, False, c0=c0, step=_inverted)
    print(f"c0={c0}: ours final {ours[-1]:.4g}, inverted final {wrong[-1]:.4g}")
    assert abs(math.log(ours[-1] / target)) < 0.3
    # Inverted: away from the quantile it runs off (to 0 from below, to infinity from above) by e^-10 or more.
    assert abs(math.log(wrong[-1] / target)) > 10
    assert (wrong[-1] < target) == (c0 < target)
