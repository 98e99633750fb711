"""Recommendations on Online Retail: each customer is a device, each country a region.

Two models: ``RecommenderConfig.model = "ease"`` (the default, federated EASE from a k-thresholded
Gram sum; ``examples/demo/recommender_ease.py``) and ``"mf"``, the Federated-Reconstruction matrix
factorisation below, which tops out near 1.47x popularity even centrally.  For ``"mf"``:

Compared on the same held-out last baskets: the federated model (item table
trained from devices' clipped updates; user vectors never leave the device),
centralized matrix factorisation of the same model (the same per-user steps
applied one user at a time to one shared table — what a server holding all
the data would do), and the popularity baseline.  Evaluation reconstructs
each held-out user's vector from their training items, as a device does.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bench.fleet import Fleet
from examples.demo.fleet import AppKeys, SimDevice, published_params, run_sync_round
from fedmark.contract import load_artifact_manifest
from fedmark.metrics import ranking_at_k, top_k
from simulate.ease import consenting, customers as ease_customers, summary

PARTNER = "retailer"


@dataclass
class RecommenderConfig:
    customers: int | None = None   # use a random subset of customers (fast variant)
    rounds: int = 50
    goal: int = 60
    local_epochs: int = 1
    dropout: float = 0.1
    no_consent: float = 0.05
    central_epochs: int = 3
    eval_users: int = 1000         # the learning curve's sample; the final figures use every held-out user
    eval_every: int = 10
    k: int = 10
    seed: int = 0
    # From a sweep (centralized HR@10 after 6 epochs): 16 negatives at lr 0.1 beat 4 negatives at lr 0.1/0.5/0.2.
    negatives: int = 16
    learning_rate: float = 0.1
    # From sweeps/recommender.py (fedmark simulate, all held-out users): plain FedAvg divides a sparse item
    # row's update by every device in the round, so a large server step compensates; 60 reconstruction
    # steps and server lr 120, dropped to 30 after round 25, beat lr 10 / 60 / 120 and 20 steps.
    recon_steps: int = 60
    server_lr: float = 120.0
    server_lr_later: float = 30.0
    lr_drop_round: int = 25
    # Which recommender the demo trains: "ease" (federated EASE from a k-thresholded Gram sum, the
    # headline: sweeps/recommender_ease.py chose its settings) or "mf" (Federated Reconstruction MF).
    model: str = "ease"
    ease_rounds: int = 4           # rounds of fresh devices; the server's Gram sum runs across them
    ease_items: int = 1000
    ease_cap: int = 100
    ease_lambda: float = 400.0
    ease_k_min: int = 5
    ease_rank: int = 256
    bootstrap: int = 1000          # resamples of the held-out users for the intervals
    curve_bootstrap: int = 200     # resamples of the curve's evaluation users per point (its band)


def _records(data: Any, c: int, purpose: str, consent: bool) -> list[dict[str, Any]]:
    tag = f"{purpose},analytics" if consent else "analytics"
    return [{"CustomerID": data.customers[c], "StockCode": data.items[i], "consent": tag} for i in data.train[c]]


def region_of(country: str) -> str:
    """A country as a region id the SDK accepts ('United Kingdom' -> 'united-kingdom')."""
    return re.sub(r"[^a-z0-9]+", "-", country.lower()).strip("-") or "unspecified"


def _hits(trainer: Any, params: Sequence[np.ndarray], data: Any, users: Sequence[int], k: int,
          seed: int) -> tuple[list[list[int]], list[list[int]]]:
    recs, truth = [], []
    for u in users:
        local = trainer.initial_local(seed=seed + int(u))
        res = trainer.train(list(params), data.train[u], local=local, seed=seed + int(u))
        scores = np.asarray(trainer.predict(list(params), local=res.local)).ravel()
        recs.append(top_k(scores, k, data.train[u].tolist()))
        truth.append(data.test[u].tolist())
    return recs, truth


def evaluate(trainer: Any, params: Sequence[np.ndarray], data: Any, users: Sequence[int], k: int, seed: int,
             resamples: int = 0) -> dict[str, Any]:
    """HR@k / NDCG@k with the user vector reconstructed on 'the device' from training items
    (``resamples`` > 0: with a bootstrap interval of HR@k over ``users``)."""
    recs, truth = _hits(trainer, params, data, users, k, seed)
    return summary(recs, truth, k, resamples, seed) if resamples else dict(ranking_at_k(recs, truth, k))


def _point(r: int, metrics: dict[str, Any], k: int) -> tuple[int, float, float, float]:
    """A learning-curve point ``(round, HR@k, low, high)``, the band a bootstrap over the curve's users."""
    lo, hi = metrics[f"hr@{k}_ci"]
    return r, metrics[f"hr@{k}"], lo, hi


def popularity(data: Any, users: Sequence[int], train_users: Sequence[int], k: int, resamples: int = 0,
               seed: int = 0) -> dict[str, Any]:
    counts = np.zeros(data.n_items)
    for u in train_users:
        counts[data.train[u]] += 1
    recs = [top_k(counts, k, data.train[u].tolist()) for u in users]
    truth = [data.test[u].tolist() for u in users]
    return summary(recs, truth, k, resamples, seed) if resamples else dict(ranking_at_k(recs, truth, k))


def run(out: Path, artifact: Path, cfg: RecommenderConfig, progress: Callable[..., Any]) -> dict[str, Any]:
    """The configured recommender's runs (``cfg.model``)."""
    if cfg.model == "ease":
        from examples.demo.recommender_ease import run_ease

        return run_ease(out, artifact, cfg, progress)
    return run_mf(out, artifact, cfg, progress)


def customers(data: Any, cfg: RecommenderConfig) -> tuple[list[int], np.ndarray]:
    """The demo's customers (all, or a seeded subset) with a training history, and who consented
    (``simulate.ease`` holds both draws, so ``fedmark simulate`` picks the same fleet)."""
    return ease_customers(data, cfg.customers, cfg.seed), consenting(len(data.customers), cfg.no_consent, cfg.seed)


def run_mf(out: Path, artifact: Path, cfg: RecommenderConfig, progress: Callable[..., Any]) -> dict[str, Any]:
    from edge_sdk.trainer import Trainer
    from models import data as data_mod
    from models.export import export
    from server.testing import running_server

    data = data_mod.load_retail()
    users, consent = customers(data, cfg)
    export("recommender", artifact, items=data.items, seed=cfg.seed, epochs=cfg.local_epochs,
           negatives=cfg.negatives, learning_rate=cfg.learning_rate, recon_steps=cfg.recon_steps)
    manifest = load_artifact_manifest(artifact)
    trainer = Trainer(artifact)
    init = trainer.initial_params()
    held = [u for u in users if len(data.test[u]) > 0]
    eval_users = [int(u) for u in np.random.default_rng(cfg.seed + 7).choice(held, min(cfg.eval_users, len(held)), replace=False)]

    shutil.rmtree(out / "rec-devices", ignore_errors=True)
    devices = [SimDevice(f"cust-{data.customers[u]}", region_of(data.countries[u]), PARTNER,
                         _records(data, u, manifest.purpose, bool(consent[u])), out / "rec-devices" / str(u))
               for u in users]
    results: dict[str, Any] = {"runs": {}, "curve": []}
    server_dir = out / "server-rec"
    shutil.rmtree(server_dir, ignore_errors=True)
    with running_server(server_dir) as srv:
        admin = Fleet(srv.base_url, srv.admin_token)
        keys = AppKeys(admin)  # one key per region (each country is a region), issued as devices need them
        admin.publish_dir(artifact, manifest.model)
        def training(server_lr: float) -> dict[str, Any]:
            return {"mode": "sync", "goal": cfg.goal, "min_clients": max(1, cfg.goal // 2), "over_select": 1.3,
                    "deadline_s": 60.0, "clip": {"norm": 1.0, "adaptive": True, "target_quantile": 0.5, "lr": 0.2},
                    "noise_multiplier": 0.0, "server_optimizer": {"name": "fedavg", "lr": server_lr},
                    "hyperparams": {"epochs": cfg.local_epochs}, "encoding": "q8"}

        admin.train(manifest.model, **training(cfg.server_lr))
        results["curve"].append(_point(0, evaluate(trainer, init, data, eval_users, cfg.k, cfg.seed, cfg.curve_bootstrap), cfg.k))
        stats = {"accepted": 0, "dropped": 0, "late": 0, "excluded_records": 0, "upload_bytes": 0}
        bar = progress(total=cfg.rounds, desc="recommender federated", unit="round")
        round_rng = np.random.default_rng(cfg.seed + 1)
        consented = [d for d, u in zip(devices, users) if consent[u]]
        for r in range(1, cfg.rounds + 1):
            o = run_sync_round(admin, manifest.model, consented, keys, round_rng, dropout=cfg.dropout, goal=cfg.goal)
            for key in stats:
                stats[key] += getattr(o, key)
            if r == cfg.lr_drop_round and r < cfg.rounds:  # the schedule's second phase: a smaller server step
                admin.train(manifest.model, **training(cfg.server_lr_later))
            if r % cfg.eval_every == 0 or r == cfg.rounds:
                info = admin.model(manifest.model)
                params = published_params(admin, manifest.model, info["current_version"], manifest)
                results["curve"].append(_point(r, evaluate(trainer, params, data, eval_users, cfg.k, cfg.seed,
                                                           cfg.curve_bootstrap), cfg.k))
                bar.set_postfix(hr=f"{results['curve'][-1][1]:.3f}")
            bar.update(1)
        bar.close()
        info = admin.model(manifest.model)
        fed_params = published_params(admin, manifest.model, info["current_version"], manifest)
    shutil.rmtree(out / "rec-devices", ignore_errors=True)  # the simulated phones' storage: nothing reads it now
    fed = evaluate(trainer, fed_params, data, held, cfg.k, cfg.seed, cfg.bootstrap)
    fed.update(stats, version=info["current_version"], devices=len(devices),
               participating=sum(d.contributed > 0 for d in devices),
               raw_bytes_on_devices=sum(d.raw_bytes for d in devices if d.contributed))
    results["runs"]["federated"] = fed

    # Centralized MF: one shared table, every consented user's step applied in turn.  Scored twice: after as
    # many user steps as the federated run took (equal data passes), and after ``central_epochs`` epochs.
    params = list(init)
    local = {u: trainer.initial_local(seed=cfg.seed + u) for u in users if consent[u]}
    order_rng = np.random.default_rng(cfg.seed + 11)
    equal_steps, steps = int(stats["accepted"]), 0
    for epoch in range(cfg.central_epochs):
        for u in progress(order_rng.permutation(list(local)), desc=f"recommender centralized epoch {epoch + 1}", unit="user"):
            res = trainer.train(params, data.train[int(u)], local=local[int(u)], seed=cfg.seed + epoch * 100003 + int(u))
            params, local[int(u)] = res.params, res.local
            steps += 1
            if steps == equal_steps:
                equal = evaluate(trainer, params, data, held, cfg.k, cfg.seed, cfg.bootstrap)
                results["runs"]["centralized, equal user steps"] = {**equal, "user_steps": steps}
    results["runs"]["centralized"] = {**evaluate(trainer, params, data, held, cfg.k, cfg.seed, cfg.bootstrap),
                                      "user_steps": steps}
    results["runs"]["popularity"] = popularity(data, held, [u for u in users if consent[u]], cfg.k, cfg.bootstrap,
                                               cfg.seed)
    results["items"] = data.n_items
    results["customers"] = len(users)
    return results
