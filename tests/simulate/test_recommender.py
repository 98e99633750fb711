"""The recommender through the simulator: personal vectors stay per device across rounds, every held-out
user is scored, and the popularity baseline and the interval come with it."""
from __future__ import annotations

import numpy as np
import pytest

from edge_sdk.trainer import Trainer
from simulate.data import retail_for
from simulate.engines import ProcessEngine
from simulate.federation import FederationSettings, load_config, run_federated
from simulate.recommender import RecommenderWorkload


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    from models.data import load_retail
    from models.export import export

    root = tmp_path_factory.mktemp("sim-rec")
    items = load_retail(min_item_count=200).items  # a small catalogue keeps the test fast
    export("recommender", root / "rec", seed=0, items=items, negatives=4)
    trainer = Trainer(str(root / "rec"))
    train, test, _ = retail_for(None, trainer.manifest.features["items"])
    keep = [i for i, t in enumerate(train) if t.size > 0][:400]
    return str(root / "rec"), RecommenderWorkload(trainer, [train[i] for i in keep], [test[i] for i in keep])


@pytest.mark.timeout(240)
def test_recommender_rounds_keep_personal_vectors(rec):
    artifact, work = rec
    trainer = work.trainer
    cfg = load_config({"mode": "sync", "goal": 30, "min_clients": 10, "over_select": 1.3,
                       "clip": {"norm": 1.0, "adaptive": True, "target_quantile": 0.5},
                       "server_optimizer": {"name": "fedavg", "lr": 10.0}})
    engine = ProcessEngine(artifact, work.data, workers=2)
    try:
        run = run_federated(engine, trainer.manifest, trainer.initial_params(), cfg,
                            FederationSettings(3, 0.1, seed=1, eval_every=3), work.sizes, work.evaluate)
    finally:
        engine.close()
    assert run.updates == sum(r.contributors for r in run.rounds) == 90
    # every device that trained keeps its own user vector, and only those devices
    assert 60 <= len(run.locals_) <= 90
    assert all(v["user_emb"].shape == (trainer.manifest.local_params[0].shape) for v in run.locals_.values())
    vecs = np.stack([v["user_emb"] for v in run.locals_.values()])
    assert np.unique(vecs.round(6), axis=0).shape[0] == len(run.locals_)
    moved = float(np.abs(run.params[0] - trainer.initial_params()[0]).max())
    assert moved > 1e-3

    rep = work.report(run.params)
    assert rep["users"] == len(work.held) > 100  # every held-out user, not a sample
    lo, hi = rep["hr@10_ci"]
    assert lo <= rep["hr@10"] <= hi and hi - lo > 0
    pop = work.baseline()["popularity"]
    assert pop["users"] == rep["users"] and 0 < pop["hr@10"] < 1
