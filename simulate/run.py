"""One ``fedmark simulate`` assessment: federated, centralized and local-only runs of one artifact.

Why all three in one command: a team deciding whether to federate needs to
know what it gives up against pooling the data (centralized, at equal data
passes and trained to convergence) and what it gains against each silo
training alone (local-only), on the same split, with the privacy spent (ε
from the server's own accountant), the bytes that would move and the time.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edge_sdk.trainer import Trainer
from simulate import data as data_mod
from simulate.engines import make_engine
from simulate.federation import FederationSettings, load_config, run_federated
from simulate.partition import partition
from simulate.propensity import PropensityWorkload
from simulate.recommender import RecommenderWorkload

__all__ = ["Options", "prepare", "Prepared", "assess", "DEFAULT_CONFIG"]

#: The training configuration used when ``--config`` is not given (the server's defaults, adaptive clipping).
DEFAULT_CONFIG: dict[str, Any] = {"mode": "sync", "goal": 50, "min_clients": 25, "over_select": 1.3,
                                  "clip": {"norm": 1.0, "adaptive": True, "target_quantile": 0.5, "lr": 0.2},
                                  "server_optimizer": {"name": "fedavg", "lr": 1.0}}


@dataclass
class Options:
    artifact: str | None = None
    family: str | None = None
    data: str | None = None
    config: Mapping[str, Any] | None = None   # None: DEFAULT_CONFIG, or for EASE the demo's (simulate.ease.training_config)
    rounds: int = 50
    devices_per_round: int | None = None
    dropout: float = 0.0
    partition_by: str | None = None
    client_id: str | None = None
    one_per_record: bool = False
    dirichlet: float | None = None
    devices: int | None = None
    max_device_rows: int | None = None
    label: str | None = None
    test_fraction: float = 0.25
    no_consent: float = 0.0
    consent_field: str = "consent"
    engine: str = "processes"
    workers: int | None = None
    ray_address: str | None = None
    seed: int = 0
    eval_every: int = 5
    central_epochs: int | None = None   # None: 30 (propensity) or 3 (recommender) epochs
    local_only_devices: int = 50
    local_only_epochs: int = 20
    curve_users: int | None = None
    k: int = 10
    customers: int | None = None   # EASE: a seeded subset of customers (the demo's fast variant); None: all
    work_dir: str | None = None


@dataclass
class Prepared:
    """An artifact, a fleet and its held-out data, ready to run any number of configurations on."""

    artifact: str
    trainer: Trainer
    workload: Any
    info: dict[str, Any]


def _artifact(opts: Options) -> str:
    if opts.artifact:
        if not (Path(opts.artifact) / "manifest.json").exists():
            raise data_mod.DataError(f"--artifact {opts.artifact}: no manifest.json there; export one with "
                                     "`fedmark export FAMILY --out DIR` or pass --family")
        return opts.artifact
    if opts.family not in ("propensity", "recommender", "ease"):
        raise data_mod.DataError("give --artifact DIR or --family propensity|recommender|ease")
    from models.export import export  # build time only: TensorFlow

    out = Path(opts.work_dir or tempfile.mkdtemp(prefix="fedmark-sim-")) / f"artifact-{opts.family}"
    extra: dict[str, Any] = {"data_path": opts.data, "seed": opts.seed}
    export(opts.family, out, **extra)
    return str(out)


def _prepare_ease(opts: Options) -> Prepared:
    """The demo's EASE fleet: every consented customer with a catalogue item is a device (its whole history once).

    ``--family ease`` exports the artifact as the demo does: the catalogue is the items the most consented
    customers bought, the Gram settings are ``models.ease``'s (chosen by sweeps/recommender_ease.py)."""
    from models import data as models_data
    from simulate.ease import EaseWorkload, consenting, customers

    if opts.partition_by or opts.one_per_record or opts.dirichlet is not None:
        raise data_mod.DataError("the EASE device is one customer: drop --partition-by/--one-per-record/--dirichlet")
    try:
        retail = models_data.load_retail(opts.data)
    except (OSError, models_data.DataError) as exc:
        raise data_mod.DataError(f"--data {opts.data}: {exc}") from exc
    users = customers(retail, opts.customers, opts.seed)
    consent = consenting(len(retail.customers), opts.no_consent, opts.seed)
    if opts.artifact:
        artifact = _artifact(opts)
    else:
        from models.ease import DEFAULT_ITEMS, catalogue, export_ease  # build time only: ONNX

        out = Path(opts.work_dir or tempfile.mkdtemp(prefix="fedmark-sim-")) / "artifact-ease"
        cat = catalogue([retail.train[u] for u in users if consent[u]], retail.items, DEFAULT_ITEMS)
        export_ease(out, items=cat, model="recommender", seed=opts.seed)
        artifact = str(out)
    trainer = Trainer(artifact)
    try:
        work = EaseWorkload(trainer, retail, users, consent, k=opts.k, seed=opts.seed, curve_users=opts.curve_users)
    except ValueError as exc:
        raise data_mod.DataError(str(exc)) from exc
    s = work.space
    info = {"family": "ease", "devices": len(work.devices), "customers": len(users), "consented": len(work.consented),
            "held_out_users": len(work.held), "items": retail.n_items, "catalogue": s.items,
            "model": {"items": s.items, "cap": s.cap, "lambda": s.lam, "k_min": s.k_min, "rank": s.rank},
            "partition": "one customer per device (CustomerID), each contributing once"}
    return Prepared(artifact, trainer, work, info)


def prepare(opts: Options) -> Prepared:
    """Load the artifact and the data, split and partition it (no training yet)."""
    if opts.family == "ease" or (opts.artifact and _is_gram(opts.artifact)):
        return _prepare_ease(opts)
    artifact = _artifact(opts)
    trainer = Trainer(artifact)
    m = trainer.manifest
    rng = np.random.default_rng(opts.seed)
    if m.family == "recommender":
        if opts.partition_by or opts.one_per_record or opts.dirichlet is not None:
            raise data_mod.DataError("the recommender's device is one customer: use --client-id CustomerID "
                                     "(the default), not --partition-by/--one-per-record/--dirichlet")
        train, test, data = data_mod.retail_for(opts.data, m.features["items"])
        keep = [i for i, t in enumerate(train) if t.size > 0]
        work = RecommenderWorkload(trainer, [train[i] for i in keep], [test[i] for i in keep], k=opts.k,
                                   seed=opts.seed, curve_users=opts.curve_users)
        info = {"family": "recommender", "devices": len(keep), "items": int(m.params[0].shape[0]),
                "held_out_users": len(work.held), "partition": "one customer per device (CustomerID)"}
        return Prepared(artifact, trainer, work, info)
    if opts.data is None:
        raise data_mod.DataError("--data FILE is required for a tabular model (the records the fleet holds)")
    records = data_mod.read_records(opts.data)
    schema = m.schema()
    label = opts.label or schema.label
    if label is None:
        raise data_mod.DataError("the artifact's schema has no label: pass --label COL")
    train, test = data_mod.stratified_split(records, label, opts.test_fraction, opts.seed)
    train = data_mod.with_consent(train, m.purpose, opts.consent_field, opts.no_consent, rng)
    parts = partition(train, by=opts.partition_by, client_id=opts.client_id, per_record=opts.one_per_record,
                      dirichlet=opts.dirichlet, devices=opts.devices, label=label, max_rows=opts.max_device_rows,
                      seed=opts.seed)
    work = PropensityWorkload.build(trainer, parts, test)
    rule = (f"by column {opts.partition_by}" if opts.partition_by else f"client id {opts.client_id}" if opts.client_id
            else "one record per device" if opts.one_per_record else f"Dirichlet(alpha={opts.dirichlet}) over {label}")
    if opts.max_device_rows:
        rule += f", at most {opts.max_device_rows} rows a device"
    info = {"family": "propensity", "devices": len(work.data), "train_rows": len(train), "test_rows": len(test),
            "consented_train_rows": int(sum(work.sizes)), "partition": rule}
    return Prepared(artifact, trainer, work, info)


def _is_gram(artifact: str) -> bool:
    from fedmark.contract import load_artifact_manifest
    from fedmark.contract.gram import gram_space

    try:
        return gram_space(load_artifact_manifest(artifact).hyperparams) is not None
    except Exception:  # noqa: BLE001 - a broken artifact is reported by _artifact / Trainer with its own message
        return False


def _run_figures(fed: Any) -> dict[str, Any]:
    """What every federated run reports about itself: rounds, updates, epsilon, bytes moved and time."""
    return {"rounds": len(fed.rounds), "closed_rounds": sum(r.state == "closed" for r in fed.rounds),
            "updates": fed.updates, "epsilon": fed.epsilon, "upload_bytes": fed.upload_bytes,
            "download_bytes": fed.download_bytes, "seconds": round(fed.seconds, 3),
            "train_seconds": round(fed.train_seconds, 3),
            "updates_per_second": fed.updates / fed.train_seconds if fed.train_seconds else None,
            "stopped": fed.stopped}


def _document(family: str, metric: str, prep: Prepared, cfg: Any, opts: Options, workers: int,
              federated: dict[str, Any], fed: Any) -> dict[str, Any]:
    """The ``--out`` document every family shares (runs and baselines are added by the caller)."""
    return {
        "family": family, "metric": metric, "setup": prep.info, "config": cfg.to_json(),
        "settings": {"rounds": opts.rounds, "devices_per_round": cfg.goal, "dropout": opts.dropout,
                     "engine": opts.engine, "workers": workers, "seed": opts.seed},
        "runs": {"federated": federated},
        "curve": [{"round": r, **m} for r, m in fed.curve],
        "rounds": [vars(r) for r in fed.rounds],
        "epsilon": fed.epsilon,
    }


def assess_ease(prep: Prepared, opts: Options, *, progress: Callable[..., Any] | None = None,
                baselines: bool = True, noise_seed: Callable[[int], int] | None = None) -> dict[str, Any]:
    """Federated EASE (:func:`simulate.ease.run_gram`) against the same model pooled and popularity."""
    from simulate.ease import run_gram, training_config

    work = prep.workload
    doc_cfg = opts.config if opts.config is not None else training_config(work.space, len(work.devices), opts.rounds,
                                                                          opts.dropout)
    cfg = load_config(doc_cfg, devices_per_round=opts.devices_per_round)
    settings = FederationSettings(opts.rounds, opts.dropout, opts.seed, opts.eval_every, noise_seed)
    t0 = time.perf_counter()
    engine = make_engine(opts.engine, prep.artifact, work.data, workers=opts.workers, address=opts.ray_address)
    try:
        fed = run_gram(engine, prep.trainer.manifest, cfg, settings, len(work.devices), work.evaluate, progress)
    finally:
        engine.close()
    federated = work.report(fed.params)
    contributed = [work.devices[d] for r in fed.contributors for d in r]
    federated.update(_run_figures(fed), participating=len(contributed), devices=len(work.devices))
    doc = _document("ease", work.primary, prep, cfg, opts, engine.workers, federated, fed)
    if baselines:
        central, b = work.centralized(contributed)
        fed_b = fed.params[0].astype(np.float64) @ fed.params[1]
        central["max_abs_weight_difference"] = float(np.abs(fed_b - b).max())
        doc["runs"]["centralized"] = central
        doc["baseline"] = {"popularity": work.popularity()}
    doc["seconds"] = round(time.perf_counter() - t0, 3)
    return doc


def assess(prep: Prepared, opts: Options, *, progress: Callable[..., Any] | None = None,
           baselines: bool = True, noise_seed: Callable[[int], int] | None = None) -> dict[str, Any]:
    """Run the federated training (and, with ``baselines``, centralized and local-only); the results document."""
    if prep.info["family"] == "ease":
        return assess_ease(prep, opts, progress=progress, baselines=baselines, noise_seed=noise_seed)
    cfg = load_config(opts.config if opts.config is not None else DEFAULT_CONFIG,
                      devices_per_round=opts.devices_per_round)
    work, trainer = prep.workload, prep.trainer
    init = trainer.initial_params()
    settings = FederationSettings(opts.rounds, opts.dropout, opts.seed, opts.eval_every, noise_seed)
    t0 = time.perf_counter()
    engine = make_engine(opts.engine, prep.artifact, work.data, workers=opts.workers, address=opts.ray_address)
    try:
        fed = run_federated(engine, trainer.manifest, init, cfg, settings, work.sizes, work.evaluate, progress)
    finally:
        engine.close()
    federated = work.report(fed.params, seed=opts.seed)
    federated.update(_run_figures(fed), delta=cfg.delta if cfg.noise_multiplier else None,
                     final_clip_norm=fed.rounds[-1].clip_norm if fed.rounds else None)
    doc = _document(prep.info["family"], work.primary, prep, cfg, opts, engine.workers, federated, fed)
    if not baselines:
        doc["seconds"] = round(time.perf_counter() - t0, 3)
        return doc
    lr = cfg.hyperparams.get("learning_rate")
    if prep.info["family"] == "propensity":
        passes = fed.example_passes / max(1, sum(work.sizes))
        equal = max(1, int(round(passes)))
        conv_epochs = opts.central_epochs or 30
        curve, last = work.centralized(init, max(conv_epochs, equal), lr, opts.seed, progress)
        at_equal = dict(curve[equal - 1][1])
        if equal >= conv_epochs:  # the converged point is on the way to equal passes: retrain to it for the report
            _, conv = work.centralized(init, conv_epochs, lr, opts.seed)
        else:
            conv = last
        central = work.report(conv, seed=opts.seed)
        central.update(epochs=conv_epochs, at_equal_passes={"epochs": equal, "data_passes": round(passes, 3),
                                                            **at_equal})
        doc["centralized_curve"] = [{"epoch": e, **m} for e, m in curve]
        epochs = int(cfg.hyperparams.get("epochs", trainer.manifest.hyperparams.get("epochs", 1)))
        doc["runs"]["local_only"] = work.local_only(init, opts.local_only_devices, opts.local_only_epochs, lr, opts.seed)
        doc["baseline"] = work.baseline()
        doc["settings"]["local_epochs"] = epochs
    else:
        steps = max(1, fed.updates)
        conv_steps = max(steps, (opts.central_epochs or 3) * len(work.data))
        every = max(1, steps // 5)
        curve, params_eq = work.centralized(init, steps, opts.seed, every, progress)
        central = work.report(params_eq, seed=opts.seed)
        central.update(user_steps=steps, at_equal_passes=True)
        if conv_steps > steps:
            _, conv = work.centralized(init, conv_steps, opts.seed, conv_steps, progress)
            central["converged"] = dict(work.report(conv, seed=opts.seed), user_steps=conv_steps)
        doc["centralized_curve"] = [{"step": s, "round_equivalent": s / cfg.goal, **m} for s, m in curve]
        doc["runs"]["local_only"] = work.local_only(init, opts.local_only_devices, opts.local_only_epochs, lr, opts.seed)
        doc["baseline"] = work.baseline(opts.seed)
    doc["runs"]["centralized"] = central
    doc["seconds"] = round(time.perf_counter() - t0, 3)
    return doc


def write(doc: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=2, default=float) + "\n")
