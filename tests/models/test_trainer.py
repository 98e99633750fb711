"""edge_sdk.trainer.Trainer on real exported artifacts: behaviour, learning, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from edge_sdk.trainer import Trainer, TrainerError


def auc(y, s) -> float:
    order = np.argsort(s)
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    pos = y > 0.5
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


def test_propensity_learns_on_real_data(propensity_artifact, bank_xy):
    x, y, xt, yt = bank_xy
    tr = Trainer(propensity_artifact)
    p0 = tr.initial_params()
    before = auc(yt, tr.predict(p0, xt))
    res = tr.train(p0, (x, y), epochs=2, seed=1)
    after = auc(yt, tr.predict(res.params, xt))
    assert res.num_examples == len(x) and res.local == {}
    assert after > 0.74 and after > before + 0.05  # reference LR without duration: 0.769
    assert 0.2 < res.loss < 0.45
    probs = tr.predict(res.params, xt[:10])
    assert probs.shape == (10,) and np.all((probs > 0) & (probs < 1))


def test_propensity_seed_controls_shuffling(propensity_artifact, bank_xy):
    x, y = bank_xy[0][:500], bank_xy[1][:500]
    tr = Trainer(propensity_artifact)
    p0 = tr.initial_params()
    a = tr.train(p0, (x, y), seed=3).params
    b = tr.train(p0, (x, y), seed=3).params
    c = tr.train(p0, (x, y), seed=4).params
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert any(not np.allclose(u, v) for u, v in zip(a, c))
    assert all(np.array_equal(u, v) for u, v in zip(p0, tr.initial_params()))  # inputs are not mutated


def test_propensity_bad_input_is_explained(propensity_artifact, bank_xy):
    x, y = bank_xy[0][:50], bank_xy[1][:50]
    tr = Trainer(propensity_artifact)
    p0 = tr.initial_params()
    with pytest.raises(TrainerError, match="schema"):
        tr.train(p0, (x[:, :5], y))
    with pytest.raises(TrainerError, match="labels"):
        tr.train(p0, (x, y[:10]))
    with pytest.raises(TrainerError, match="0/1"):
        tr.train(p0, (x, y + 2.0))
    with pytest.raises(TrainerError, match="w1"):
        tr.train([p0[0][:3]] + p0[1:], (x, y))
    with pytest.raises(TrainerError, match="learning rate"):
        tr.train(p0, (x, y), lr=-1.0)
    with pytest.raises(TrainerError, match="at least one"):
        tr.train(p0, (x[:0], y[:0]))
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(TrainerError, match="NaN"):
        tr.train(p0, (bad, y))


def test_recommender_touches_only_sampled_rows(recommender_artifact, retail):
    tr = Trainer(recommender_artifact)
    p0 = tr.initial_params()
    positives = retail.train[5]
    local = tr.initial_local(seed=7)
    res = tr.train(p0, positives, local=local, seed=11)
    plan = tr.recommender_plan(positives, seed=11)
    touched = np.unique(plan.epochs[0].idx[plan.epochs[0].mask > 0])
    negatives = int(tr.manifest.hyperparams["negatives"])
    assert touched.size == positives.size * (1 + negatives)
    changed = np.flatnonzero(np.any(res.params[0] != p0[0], axis=1) | (res.params[1] != p0[1]))
    assert set(changed) <= set(touched) and changed.size > 0.9 * touched.size
    # negatives never include the user's own items
    labels = plan.epochs[0].labels[plan.epochs[0].mask > 0]
    idx = plan.epochs[0].idx[plan.epochs[0].mask > 0]
    assert not set(idx[labels == 0]) & set(positives.tolist())
    assert res.num_examples == positives.size
    assert set(res.local) == {"user_emb"} and not np.allclose(res.local["user_emb"], local["user_emb"])
    assert np.array_equal(p0[0], tr.initial_params()[0])


def test_recommender_reconstruction_ranks_own_items_higher(recommender_artifact, retail):
    """After some federated-style training, the reconstructed user vector prefers the user's items."""
    tr = Trainer(recommender_artifact)
    p = tr.initial_params()
    users = [c for c in range(len(retail.customers)) if 20 <= retail.train[c].size <= 60][:40]
    for rnd in range(3):
        results = [tr.train(p, retail.train[c], seed=rnd * 100 + c) for c in users]
        w = np.array([r.num_examples for r in results], float)
        p = [pk + sum(wi * (r.params[k] - pk) for wi, r in zip(w, results)) / w.sum() * 5.0 for k, pk in enumerate(p)]
    scores = tr.predict(p, retail.train[users[0]])  # reconstructs the user vector from its items
    assert scores.shape == (retail.n_items,)
    own = np.zeros(retail.n_items, bool)
    own[retail.train[users[0]]] = True
    assert scores[own].mean() > scores[~own].mean()
    res = tr.train(p, retail.train[users[0]], seed=1)
    assert np.allclose(tr.predict(res.params, local=res.local),
                       res.params[0] @ res.local["user_emb"] + res.params[1], atol=1e-5)


def test_recommender_bad_input_is_explained(recommender_artifact):
    tr = Trainer(recommender_artifact)
    p0 = tr.initial_params()
    with pytest.raises(TrainerError, match="range"):
        tr.train(p0, np.array([0, 10**6]))
    with pytest.raises(TrainerError, match="integers"):
        tr.train(p0, np.array([0.5, 1.5]))
    with pytest.raises(TrainerError, match="non-empty"):
        tr.train(p0, np.array([], np.int64))
    with pytest.raises(TrainerError, match="user_emb"):
        tr.train(p0, np.array([1, 2]), local={"user": np.zeros(32, np.float32)})
    with pytest.raises(TrainerError, match="local"):
        tr.predict(p0)
    assert tr.initial_local(1)["user_emb"].shape == (32,)
    assert not np.array_equal(tr.initial_local(1)["user_emb"], tr.initial_local(2)["user_emb"])
