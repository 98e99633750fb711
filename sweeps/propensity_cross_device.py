"""Propensity cross-device with DP: one customer per device, 1,000 a round, 300 rounds, z = 1 -
toward "epsilon <= 4 at delta = 1e-5 from the accountant, within 0.015 AUC of centralized".

    .venv/bin/python sweeps/propensity_cross_device.py   # writes sweeps/results/propensity_cross_device.json

Every record of the training split is its own device (33,909), sampled 1,000
a round (sampling rate q = 1000/33909 for the accountant), no dropout (the
accountant's sampling assumption).  The clipping bias is attacked through
what the training configuration offers: the adaptive clip's target quantile
(0.5 / 0.9 / 0.99), a fixed clip, local steps and lr, and the server step.
Each point reports AUC with its bootstrap interval and epsilon read from the
aggregation state's privacy ledger (the server's accountant).
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from common import BANK, RESULTS, artifact, data_file, log, save  # type: ignore[import-not-found]

from simulate.engines import ProcessEngine
from simulate.federation import FederationSettings, load_config, run_federated
from simulate.run import Options, prepare

PER_ROUND = 1000


def config(p: dict[str, Any], devices: int) -> dict[str, Any]:
    clip: Any = None
    if p["clip"] == "adaptive":
        clip = {"norm": 0.3, "adaptive": True, "target_quantile": p["quantile"], "lr": 0.2}
    elif p["clip"] is not None:
        clip = {"norm": float(p["clip"]), "adaptive": False}
    n = p.get("per_round", PER_ROUND)
    c = {"mode": "sync", "goal": n, "min_clients": n // 2, "over_select": 1.0,
         "clip": clip, "noise_multiplier": p["z"], "delta": 1e-5,
         "server_optimizer": {"name": "fedadam", "lr": p.get("server_lr", 0.01)},
         "hyperparams": {"epochs": p.get("epochs", 1), "learning_rate": p.get("lr", 0.1)}}
    if p["z"]:
        c["sampling_rate"] = n / devices
    return c


POINTS: list[dict[str, Any]] = [
    {"name": "no DP, no clip", "z": 0.0, "clip": None},
    {"name": "DP, adaptive q0.5", "z": 1.0, "clip": "adaptive", "quantile": 0.5},
    {"name": "DP, adaptive q0.9", "z": 1.0, "clip": "adaptive", "quantile": 0.9},
    {"name": "DP, adaptive q0.99", "z": 1.0, "clip": "adaptive", "quantile": 0.99},
    {"name": "DP, fixed 1.0", "z": 1.0, "clip": 1.0},
    {"name": "DP, adaptive q0.9, server lr 0.03", "z": 1.0, "clip": "adaptive", "quantile": 0.9, "server_lr": 0.03},
    {"name": "DP, adaptive q0.99, server lr 0.03", "z": 1.0, "clip": "adaptive", "quantile": 0.99, "server_lr": 0.03},
    {"name": "DP z1.5, adaptive q0.99, 2000 a round", "z": 1.5, "clip": "adaptive", "quantile": 0.99,
     "per_round": 2000},
    {"name": "DP z1.5, adaptive q0.99, 2000 a round, server lr 0.03", "z": 1.5, "clip": "adaptive",
     "quantile": 0.99, "per_round": 2000, "server_lr": 0.03},
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, help="names of points to run")
    args = ap.parse_args()
    art = artifact("propensity")
    prep = prepare(Options(artifact=art, data=data_file(BANK), one_per_record=True, seed=0))
    work, trainer = prep.workload, prep.trainer
    devices = len(work.data)
    log("fleet", prep.info)
    doc: dict[str, Any] = {"fleet": prep.info, "per_round": PER_ROUND, "rounds": args.rounds, "points": []}
    if args.only and (RESULTS / "propensity_cross_device.json").exists():  # add to / replace in the last results
        doc = json.loads((RESULTS / "propensity_cross_device.json").read_text())
        doc["points"] = [q for q in doc["points"] if q["name"] not in args.only]
    else:
        curve, _ = work.centralized(trainer.initial_params(), 30, 0.1, 0)
        doc["centralized"] = {"auc_30": curve[-1][1]["auc"], "best": max(m["auc"] for _, m in curve)}
    log("centralized", doc["centralized"])
    engine = ProcessEngine(art, work.data, args.workers)
    try:
        for p in POINTS:
            if args.only and p["name"] not in args.only:
                continue
            cfg = load_config(config(p, devices))
            run = run_federated(engine, trainer.manifest, trainer.initial_params(), cfg,
                                FederationSettings(args.rounds, 0.0, 0, args.every), work.sizes, work.evaluate)
            rep = work.report(run.params, seed=0)
            point = {**p, "config": config(p, devices), "auc": rep["auc"], "auc_ci": rep["auc_ci"],
                     "epsilon": run.epsilon, "final_clip_norm": run.rounds[-1].clip_norm,
                     "curve": [(r, m["auc"]) for r, m in run.curve], "seconds": run.seconds,
                     "gap_to_centralized": doc["centralized"]["auc_30"] - rep["auc"]}
            point["meets_target"] = bool(p["z"] > 0 and run.epsilon is not None and run.epsilon <= 4.0
                                         and point["gap_to_centralized"] <= 0.015)
            doc["points"].append(point)
            log(p["name"], f"auc {rep['auc']:.4f} {rep['auc_ci']} eps {run.epsilon} clip {point['final_clip_norm']}")
            save("propensity_cross_device", doc)
    finally:
        engine.close()


if __name__ == "__main__":
    main()
