"""Recommender (one customer per device): server lr, reconstruction steps, rounds and an lr schedule -
toward "federated HR@10 >= centralized MF of the same model at equal data passes, and >= 1.6x popularity".

    .venv/bin/python sweeps/recommender.py            # writes sweeps/results/recommender.json

The demo's model (dim 32, 16 negatives, item lr 0.1) exported with 20
reconstruction steps (FedAvg server lr 10 / 60 / 120) and with 60 (server lr
120, and 120 dropped to 30 after round 25); 60 devices a round, 10 %
dropout, adaptive clipping at the median.  Curves on a fixed 1,000-user sample; final
figures on every held-out user with a bootstrap interval, next to
centralized MF at the same number of user steps and popularity.
"""
from __future__ import annotations

import argparse
from typing import Any

from common import RETAIL, artifact, data_file, log, save  # type: ignore[import-not-found]

from simulate.engines import ProcessEngine
from simulate.federation import FederationSettings, load_config, run_federated
from simulate.run import Options, prepare

PER_ROUND = 60


def config(server_lr: float) -> dict[str, Any]:
    return {"mode": "sync", "goal": PER_ROUND, "min_clients": PER_ROUND // 2, "over_select": 1.3,
            "clip": {"norm": 1.0, "adaptive": True, "target_quantile": 0.5, "lr": 0.2},
            "server_optimizer": {"name": "fedavg", "lr": server_lr}, "hyperparams": {"epochs": 1}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--lrs", type=float, nargs="+", default=[10.0, 60.0, 120.0])
    args = ap.parse_args()
    doc: dict[str, Any] = {"per_round": PER_ROUND, "rounds": args.rounds, "points": [], "centralized": {}}
    marks = sorted({m for m in (25, 100) if m < args.rounds} | {args.rounds})
    for recon in (20, 60):
        art = artifact("recommender", f"neg16-recon{recon}", negatives=16, learning_rate=0.1, recon_steps=recon)
        prep = prepare(Options(artifact=art, data=data_file(RETAIL), curve_users=1000, seed=0))
        work, trainer = prep.workload, prep.trainer
        init = trainer.initial_params()
        if "popularity" not in doc:
            doc["fleet"] = prep.info
            doc["popularity"] = work.baseline(0)["popularity"]
            log("popularity", doc["popularity"])
        # centralized MF at the user steps of 25 / 100 / rounds federated rounds of PER_ROUND updates
        for r in marks:
            _, params = work.centralized(init, r * PER_ROUND, 0, r * PER_ROUND)
            doc["centralized"][f"recon{recon}-round{r}"] = dict(work.report(params, seed=0), user_steps=r * PER_ROUND)
            log("centralized", recon, r, doc["centralized"][f"recon{recon}-round{r}"]["hr@10"])
            save("recommender", doc)
        engine = ProcessEngine(art, work.data, args.workers)
        try:
            lrs = args.lrs if recon == 20 else [max(args.lrs)]  # 60 steps: only around the best step size
            schedules: list[tuple[str, list[tuple[int, float]]]] = [(f"lr {lr:g}", [(args.rounds, lr)]) for lr in lrs]
            if args.rounds > 25 and recon == 60:
                schedules.append(("lr 120 then 30 after round 25", [(25, 120.0), (args.rounds - 25, 30.0)]))
            for name, phases in schedules:
                params, state, locals_, done, curve, finals = init, None, None, 0, [], {}
                for n_rounds, lr in phases:
                    run = run_federated(engine, trainer.manifest, params, load_config(config(lr)),
                                        FederationSettings(n_rounds, 0.1, 0, args.every), work.sizes, work.evaluate,
                                        state=None if state is None else state.without_optimizer(), first_round=done,
                                        locals_=locals_)
                    curve += [(r, m["hr@10"]) for r, m in run.curve[(1 if done else 0):]]
                    params, state, locals_, done = run.params, run.state, run.locals_, done + n_rounds
                rep = work.report(params, seed=0)
                point = {"name": name, "recon_steps": recon, "phases": phases, "curve": curve, "hr@10": rep["hr@10"],
                         "hr@10_ci": rep["hr@10_ci"], "ndcg@10": rep["ndcg@10"], "users": rep["users"],
                         "vs_popularity": rep["hr@10"] / doc["popularity"]["hr@10"],
                         "vs_centralized_equal_steps": rep["hr@10"] - doc["centralized"][f"recon{recon}-round{args.rounds}"]["hr@10"]}
                doc["points"].append(point)
                log(name, recon, f"hr {rep['hr@10']:.4f} {rep['hr@10_ci']} x{point['vs_popularity']:.2f} pop")
                save("recommender", doc)
        finally:
            engine.close()


if __name__ == "__main__":
    main()
