"""Every engine runs the same rounds to the same version: inline (the reference), local processes, Ray.

The Ray test starts a local Ray instance (2 CPUs, no dashboard), bounded by a
timeout, and shuts it down whatever happens.
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_sdk.trainer import Trainer
from simulate.engines import InlineEngine, RayEngine, split
from simulate.client import Job
from simulate.federation import FederationSettings, load_config, run_federated
from simulate.partition import by_column, chunk
from simulate.propensity import PropensityWorkload

CONFIG = {"mode": "sync", "goal": 12, "min_clients": 6, "over_select": 1.3,
          "clip": {"norm": 1.0, "adaptive": True, "target_quantile": 0.8, "lr": 0.2},
          "server_optimizer": {"name": "fedadam", "lr": 0.02}, "hyperparams": {"epochs": 1}}


@pytest.fixture(scope="module")
def fleet(bank):
    trainer = Trainer(bank.artifact)
    rows = [dict(r, consent=trainer.manifest.purpose) for r in bank.train[:3000]]
    return trainer, PropensityWorkload.build(trainer, chunk(by_column(rows, "job,month"), 60), bank.test[:2000])


def _run(engine, trainer, work, rounds=4, dropout=0.2):
    try:
        return run_federated(engine, trainer.manifest, trainer.initial_params(), load_config(CONFIG),
                             FederationSettings(rounds, dropout, seed=3, eval_every=2), work.sizes, work.evaluate)
    finally:
        engine.close()


def test_split_keeps_order_and_every_job():
    jobs = [Job(i, i) for i in range(7)]
    parts = split(jobs, 3)
    assert [len(p) for p in parts] == [3, 2, 2]
    assert [j.device for p in parts for j in p] == list(range(7))
    assert split(jobs[:1], 4) == [[jobs[0]]]


@pytest.mark.timeout(240)
def test_ray_engine_matches_inline(bank, fleet):
    import ray  # in the lock (the sim extra): a missing Ray fails this test, never skips it

    trainer, work = fleet
    ref = _run(InlineEngine(bank.artifact, work.data), trainer, work)
    assert not ray.is_initialized()
    engine = RayEngine(bank.artifact, work.data, workers=2)
    try:
        assert ray.is_initialized() and len(engine.actors) == 2
        got = _run(engine, trainer, work)
    finally:
        engine.close()
    assert not ray.is_initialized()  # the instance the engine started is shut down
    assert [r.contributors for r in got.rounds] == [r.contributors for r in ref.rounds]
    assert got.rounds[0].dropped > 0  # dropout was simulated, identically
    for a, b in zip(got.params, ref.params):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert [m["auc"] for _, m in got.curve] == pytest.approx([m["auc"] for _, m in ref.curve], abs=1e-6)
    assert got.curve[-1][1]["auc"] > got.curve[0][1]["auc"]  # it learned


def test_a_run_continued_from_its_state_equals_one_run(bank, fleet):
    """A schedule is a second run from the first one's state: with FedAvg (no optimizer moments to reset)
    and every device in every round, 2 + 2 rounds publish what 4 rounds publish."""
    trainer, work = fleet
    n = len(work.data)
    cfg = load_config({"mode": "sync", "goal": n, "min_clients": n, "over_select": 1.0,
                       "clip": {"norm": 1.0, "adaptive": True, "target_quantile": 0.5, "count_stddev": 5.0},
                       "noise_multiplier": 0.5, "server_optimizer": {"name": "fedavg", "lr": 1.0},
                       "hyperparams": {"epochs": 1}})
    engine = InlineEngine(bank.artifact, work.data)
    init = trainer.initial_params()
    whole = run_federated(engine, trainer.manifest, init, cfg, FederationSettings(4, 0.0, seed=5), work.sizes)
    first = run_federated(engine, trainer.manifest, init, cfg, FederationSettings(2, 0.0, seed=5), work.sizes)
    rest = run_federated(engine, trainer.manifest, first.params, cfg, FederationSettings(2, 0.0, seed=5), work.sizes,
                         state=first.state.without_optimizer(), first_round=2)
    for a, b in zip(rest.params, whole.params):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert rest.epsilon == pytest.approx(whole.epsilon, rel=1e-12)  # the ledger carried over: 4 releases
    assert rest.rounds[-1].clip_norm == pytest.approx(whole.rounds[-1].clip_norm, rel=1e-9)
    assert first.epsilon < whole.epsilon
