"""Parity with TensorFlow Federated's aggregators on the same client updates (noise off).

Compared, round by round over ROUNDS rounds with the clip norm carried in state:
- fixed clipping + weighted mean: ``tff.aggregators.clipping_factory(C, MeanFactory())``
- adaptive clipping, no noise:   ``clipping_factory(PrivateQuantileEstimationProcess.no_noise(...), MeanFactory())``
- the DP aggregators with z = 0: ``DifferentiallyPrivateFactory.gaussian_adaptive`` and ``gaussian_fixed``
  (uniform weights, denominator = clients_per_round, shifted clipped count) with
  fewer clients than ``clients_per_round`` so the fixed denominator matters.
TFF computes in float32 and we in float64, so values agree to float32 precision.

TFF's C++ runtime starts a ``worker_binary`` child that outlives Python; the
module fixture ends every such descendant of this process (found with psutil,
by pid) at teardown and asserts none is left.
"""
from __future__ import annotations

import contextlib
import signal
import time
from typing import Any, Callable

import numpy as np
import psutil
import pytest

from server.aggregation import BOUNDARY_RTOL, Aggregator, AggregatorState, clipped_fedavg, dp_fedavg

pytestmark = pytest.mark.tff

CLIENTS, DIM, ROUNDS = 10, 20, 8
AGG_ATOL = 5e-7     # aggregates are O(0.1-1): float32 rounding of sums of 10 terms (seen: 3e-8)
CLIP_RTOL = 2e-6    # clip norms after 8 float32 geometric updates (seen: 3.6e-7)


def _my_workers() -> list[psutil.Process]:
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "worker_binary" in child.name() or any("worker_binary" in a for a in child.cmdline()):
                out.append(child)
        except psutil.NoSuchProcess:
            continue
    return out


def _dead(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_dead(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(_dead(p) for p in procs):
        time.sleep(0.05)
    return [p for p in procs if not _dead(p)]


def _stop_workers() -> list[int]:
    """SIGINT (what TFF itself sends), then SIGKILL; by pid, only our own descendants.

    The worker is deliberately not reaped: TFF's Popen still owns it and reaps it
    (reaping it here makes TFF's own clean-up raise ProcessLookupError).
    """
    procs = _my_workers()
    for sig, p in [(signal.SIGINT, p) for p in procs]:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)
    for p in _wait_dead(procs, 5.0):
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    _wait_dead(procs, 5.0)
    return [p.pid for p in procs]


@pytest.fixture(scope="module")
def tff() -> Any:
    import tensorflow_federated as tff_mod  # default context: the sync local C++ executor

    try:
        yield tff_mod
    finally:
        _stop_workers()
        # Later TFF users in this session get a fresh worker, not a dead one.
        tff_mod.backends.native.set_sync_local_cpp_execution_context()
        assert not [p for p in _my_workers() if not _dead(p)], "a TFF worker survived teardown"


def _round_data(rng: np.random.Generator, clip_now: float) -> tuple[list[np.ndarray], list[float]]:
    """Updates with lognormal norms around 1.2 (some clipped, some not, C drifts), and example counts."""
    scales = rng.lognormal(np.log(1.2), 0.6, size=CLIENTS)
    vecs = []
    for s in scales:
        v = rng.normal(size=DIM)
        v *= s / np.linalg.norm(v)
        # Keep clear of the server's boundary band (where a *device-clipped* update lands),
        # so the bit is decided identically by TFF's rule (norm <= C) and ours.
        if abs(np.linalg.norm(v) / clip_now - 1) < 3 * BOUNDARY_RTOL:
            v *= 1.02
        vecs.append(v.astype(np.float32))
    return vecs, [float(w) for w in rng.integers(1, 100, size=CLIENTS)]


def _ours(agg: Aggregator, state: AggregatorState, vecs, weights) -> tuple[np.ndarray, AggregatorState, dict]:
    acc = agg.start(state, DIM)
    for v, w in zip(vecs, weights):
        acc.add(v, w)
    res = agg.finish(state, acc, np.random.default_rng(0))
    return res.delta, res.state, res.metrics


def _run_pair(weighted: bool, make_tff: Callable[[], Any], agg: Aggregator, clip_of: Callable[[Any], float],
              n_clients: int = CLIENTS) -> dict[str, float]:
    """Run TFF's process and ours side by side; return the max abs / rel differences."""
    proc = make_tff()
    tff_state = proc.initialize()
    state = agg.initialize()
    rng = np.random.default_rng(2024)
    worst = {"aggregate_abs": 0.0, "clip_rel": 0.0, "clipped_count": 0}
    clips = []
    for _ in range(ROUNDS):
        vecs, weights = _round_data(rng, state.clip_norm)
        vecs, weights = vecs[:n_clients], weights[:n_clients]
        out = proc.next(tff_state, vecs, weights) if weighted else proc.next(tff_state, vecs)
        tff_state = out.state
        mine, state, metrics = _ours(agg, state, vecs, weights)
        worst["aggregate_abs"] = max(worst["aggregate_abs"], float(np.abs(np.asarray(out.result) - mine).max()))
        tff_clip = clip_of(out)
        my_clip = metrics["clip_norm"] if weighted else state.clip_norm
        worst["clip_rel"] = max(worst["clip_rel"], abs(tff_clip - my_clip) / tff_clip)
        if weighted:
            worst["clipped_count"] = max(worst["clipped_count"],
                                         abs(int(out.measurements["clipped_count"]) - metrics["clipped"]))
        clips.append(my_clip)
    worst["clip_span"] = max(clips) / min(clips)
    print({k: f"{v:.3g}" for k, v in worst.items()})
    return worst


def _weighted_types(tff):
    return tff.TensorType(np.float32, [DIM]), tff.TensorType(np.float32)


def test_fixed_clipping_weighted_mean_matches_clipping_factory(tff):
    vt, wt = _weighted_types(tff)
    worst = _run_pair(True, lambda: tff.aggregators.clipping_factory(0.8, tff.aggregators.MeanFactory()).create(vt, wt),
                      clipped_fedavg(0.8).aggregator, lambda out: float(out.measurements["clipping_norm"]))
    assert worst["aggregate_abs"] < AGG_ATOL
    assert worst["clip_rel"] < 1e-7  # 0.8 as float32 in TFF
    assert worst["clipped_count"] == 0


@pytest.mark.parametrize("gamma", [0.2, 0.8])
def test_adaptive_clipping_state_evolution_matches_no_noise_quantile_process(tff, gamma):
    vt, wt = _weighted_types(tff)

    def make():
        est = tff.aggregators.PrivateQuantileEstimationProcess.no_noise(
            initial_estimate=0.5, target_quantile=gamma, learning_rate=0.2)
        return tff.aggregators.clipping_factory(est, tff.aggregators.MeanFactory()).create(vt, wt)

    ours = clipped_fedavg(0.5, adaptive=True, target_quantile=gamma, clip_lr=0.2).aggregator
    worst = _run_pair(True, make, ours, lambda out: float(out.measurements["clipping_norm"]))
    assert worst["clip_span"] > 1.2          # the clip norm really moved over the rounds
    assert worst["clip_rel"] < CLIP_RTOL
    assert worst["aggregate_abs"] < AGG_ATOL
    assert worst["clipped_count"] == 0


@pytest.mark.parametrize("n_clients", [CLIENTS, 7], ids=["full-round", "short-round"])
def test_dp_adaptive_aggregator_without_noise_matches_gaussian_adaptive(tff, n_clients):
    vt = tff.TensorType(np.float32, [DIM])

    def make():
        f = tff.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(
            noise_multiplier=0.0, clients_per_round=float(CLIENTS), initial_l2_norm_clip=0.5,
            target_unclipped_quantile=0.5, learning_rate=0.2)
        return f.create(vt)

    ours = dp_fedavg(0.0, CLIENTS, clip=0.5, adaptive=True, target_quantile=0.5, clip_lr=0.2).aggregator
    # TFF reports the clip norm *after* the round's update in dp_query_metrics.clip.
    worst = _run_pair(False, make, ours, lambda out: float(out.measurements["dp_query_metrics"]["clip"]),
                      n_clients=n_clients)
    assert worst["clip_span"] > 1.2
    assert worst["clip_rel"] < CLIP_RTOL
    assert worst["aggregate_abs"] < AGG_ATOL


def test_dp_fixed_aggregator_without_noise_matches_gaussian_fixed(tff):
    vt = tff.TensorType(np.float32, [DIM])
    make = lambda: tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(  # noqa: E731
        noise_multiplier=0.0, clients_per_round=12.0, clip=0.6).create(vt)
    ours = dp_fedavg(0.0, 12, clip=0.6, adaptive=False).aggregator
    worst = _run_pair(False, make, ours, lambda out: 0.6)
    assert worst["aggregate_abs"] < AGG_ATOL
