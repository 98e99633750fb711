"""Recommendations with federated EASE: each customer a device, over the real server and SDK.

Each consented customer's device sends, once, its Gram contribution (the 0/1 upper triangle of
x x' over at most ``cap`` of its items in the 1,000-item catalogue, a sparse body of <= 40 kB);
the server sums the bodies across rounds, zeroes pairs seen on fewer than k devices, solves EASE
and publishes the rank-256 factors; devices score their own history with the artifact's ONNX
graph.  Compared on the same held-out last baskets, all held-out customers:

* **federated** - the published factors, scored as devices score;
* **centralized** - the same model (same catalogue, cap, k, lambda, rank) from the same
  devices' histories pooled: equal by construction, and the run reports the largest difference;
* **centralized EASE, no cap or k** - the model's ceiling, every item, every purchase;
* **popularity** - the ten best-sellers among the consented customers.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.fleet import Fleet
from examples.demo.fleet import AppKeys, SimDevice, published_params, run_sync_round
from examples.demo.recommender import PARTNER, RecommenderConfig, _records, customers, popularity, region_of
from fedmark.contract import load_artifact_manifest
from fedmark.contract.gram import gram_space
from fedmark.metrics import top_k
from simulate.ease import central_gram, recommendations, summary, training_config

__all__ = ["run_ease"]


def _metrics(recs: list[list[int]], truth: list[list[int]], cfg: RecommenderConfig, resamples: int) -> dict[str, Any]:
    return summary(recs, truth, cfg.k, resamples, cfg.seed)


def run_ease(out: Path, artifact: Path, cfg: RecommenderConfig, progress: Callable[..., Any]) -> dict[str, Any]:
    from edge_sdk.trainer import Trainer
    from models import data as data_mod
    from models.ease import catalogue, export_ease
    from server.aggregation.ease import ease_weights, low_rank_factors
    from server.testing import running_server

    data = data_mod.load_retail()
    users, consent = customers(data, cfg)
    consented = [u for u in users if consent[u]]
    # The catalogue: the most bought items (a retailer reads them from its sales ledger).
    cat_codes = catalogue([data.train[u] for u in consented], data.items, cfg.ease_items)
    manifest = export_ease(artifact, items=cat_codes, cap=cfg.ease_cap, lam=cfg.ease_lambda, k_min=cfg.ease_k_min,
                           rank=cfg.ease_rank, model="recommender", seed=cfg.seed)
    manifest = load_artifact_manifest(artifact)
    space_rank = manifest.params[0].shape[1]
    index = {code: i for i, code in enumerate(data.items)}
    cat = np.array(sorted(index[c] for c in cat_codes))
    pos = -np.ones(data.n_items, np.int64)
    pos[cat] = np.arange(cat.size)
    local = [np.unique(pos[t][pos[t] >= 0]) if len(t) else np.zeros(0, np.int64) for t in data.train]
    trainer = Trainer(artifact)
    held = [u for u in users if len(data.test[u]) > 0]
    eval_users = [int(u) for u in np.random.default_rng(cfg.seed + 7).choice(held, min(cfg.eval_users, len(held)),
                                                                              replace=False)]

    def device_scores(params: list[np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        return lambda items: np.asarray(trainer.predict(params, items, local=None), np.float64)

    shutil.rmtree(out / "rec-devices", ignore_errors=True)
    eligible = [u for u in consented if local[u].size]  # a device with no catalogue item has nothing to count
    devices = [SimDevice(f"cust-{data.customers[u]}", region_of(data.countries[u]), PARTNER,
                         _records(data, u, manifest.purpose, True), out / "rec-devices" / str(u)) for u in eligible]
    by_id = dict(zip((d.device_id for d in devices), eligible))
    training = training_config(gram_space(manifest.hyperparams), len(devices), cfg.ease_rounds, cfg.dropout)
    goal = training["goal"]
    results: dict[str, Any] = {"runs": {}, "curve": []}
    server_dir = out / "server-rec"
    shutil.rmtree(server_dir, ignore_errors=True)
    stats = {"accepted": 0, "dropped": 0, "late": 0, "excluded_records": 0, "upload_bytes": 0}
    with running_server(server_dir) as srv:
        admin = Fleet(srv.base_url, srv.admin_token)
        keys = AppKeys(admin)
        admin.publish_dir(artifact, manifest.model)
        admin.train(manifest.model, **training)
        params = trainer.initial_params()
        point = _metrics(*recommendations(device_scores(params), local, cat, data.test, eval_users, cfg.k), cfg,
                         cfg.curve_bootstrap)
        results["curve"].append((0, point[f"hr@{cfg.k}"], *point[f"hr@{cfg.k}_ci"]))
        round_rng = np.random.default_rng(cfg.seed + 1)
        for r in progress(range(1, cfg.ease_rounds + 1), desc="recommender federated (EASE)", unit="round"):
            fresh = [d for d in devices if d.contributed == 0]  # a device counts its history once
            o = run_sync_round(admin, manifest.model, fresh, keys, round_rng, dropout=cfg.dropout, goal=goal)
            for key in stats:
                stats[key] += getattr(o, key)
            info = admin.model(manifest.model)
            params = published_params(admin, manifest.model, info["current_version"], manifest)
            point = _metrics(*recommendations(device_scores(params), local, cat, data.test, eval_users, cfg.k), cfg,
                             cfg.curve_bootstrap)
            results["curve"].append((r, point[f"hr@{cfg.k}"], *point[f"hr@{cfg.k}_ci"]))
        info = admin.model(manifest.model)
        # Devices whose upload landed in a round that closed are in the published sum; a straggler that
        # moved on to the next (still open) round is not.
        rounds = {rid for d in devices for rid in d.rounds}
        closed = {rid for rid in rounds if admin.round(rid)["state"] == "closed"}
    shutil.rmtree(out / "rec-devices", ignore_errors=True)
    fed = _metrics(*recommendations(device_scores(params), local, cat, data.test, held, cfg.k), cfg, cfg.bootstrap)
    contributed = [by_id[d.device_id] for d in devices if set(d.rounds) & closed]
    fed.update(stats, version=info["current_version"], devices=len(devices), participating=len(contributed),
               raw_bytes_on_devices=sum(d.raw_bytes for d in devices if d.contributed))
    results["runs"]["federated"] = fed

    # The same model from the same devices' histories pooled: the Gram, k-threshold, solve and factors.
    b = ease_weights(central_gram([local[u] for u in contributed], cat.size, cfg.ease_cap), cfg.ease_lambda,
                     cfg.ease_k_min)
    left, right = low_rank_factors(b, space_rank)
    fed_b = params[0].astype(np.float64) @ params[1]
    central = _metrics(*recommendations(lambda x: left[x].astype(np.float64).sum(axis=0) @ right, local, cat,
                                        data.test, held, cfg.k), cfg, cfg.bootstrap)
    central["max_abs_weight_difference"] = float(np.abs(fed_b - left.astype(np.float64) @ right).max())
    central["devices"] = len(contributed)
    results["runs"]["centralized"] = central
    # The ceiling: EASE on every item and purchase of every consented customer, no cap, no k.
    all_items = [np.unique(t) for t in data.train]
    g_all = central_gram([all_items[u] for u in consented], data.n_items, None)
    b_all = ease_weights(g_all, cfg.ease_lambda, 1)
    recs = [top_k(b_all[all_items[u]].sum(axis=0), cfg.k, all_items[u].tolist()) for u in held]
    results["runs"]["centralized EASE, every item, no cap or k"] = summary(
        recs, [data.test[u].tolist() for u in held], cfg.k, cfg.bootstrap, cfg.seed)
    results["runs"]["popularity"] = popularity(data, held, consented, cfg.k, cfg.bootstrap, cfg.seed)
    results["items"] = data.n_items
    results["catalogue"] = int(cat.size)
    results["customers"] = len(users)
    results["model"] = {"family": "ease", "items": int(cat.size), "cap": cfg.ease_cap, "lambda": cfg.ease_lambda,
                        "k_min": cfg.ease_k_min, "rank": space_rank, "sweep": "sweeps/recommender_ease.py"}
    return results
