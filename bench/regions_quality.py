"""Model quality of the federated topology vs one server, on the real Bank Marketing data, at equal noise.

    .venv/bin/python bench/regions_quality.py              # exports the propensity trainer (TensorFlow), then runs
    .venv/bin/python bench/regions_quality.py --report     # the BENCHMARKS.md table from the results file

Devices are the demo's (``examples.demo.propensity.make_devices``: one (job, month) cell of the
training split each, jobs mapped to three regions lisbon / porto / algarve), real ``edge_sdk``
clients training the exported ONNX step.  Federated: one regional server per region under a
coordinator (``examples.demo.regions.Topology``); each region runs a sub-round of ``--goal``
devices a global round.  Single: one server, goal 3 x ``--goal``.  Same split, seeds, rounds,
clipping (adaptive, as the demo), server optimizer and noise multiplier; the held-out AUC of each
published global version is scored with the artifact's inference graph (ONNX Runtime).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import exit_on_sigterm  # noqa: E402
from bench.fleet import Fleet  # noqa: E402
from bench.stats import table  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "sweeps" / "results" / "bench_regions_quality.json"
REGIONS = ("lisbon", "porto", "algarve")


def _training(goal: int, n_devices: int, z: float, opt: dict[str, Any]) -> dict[str, Any]:
    return {"mode": "sync", "goal": goal, "min_clients": max(1, goal // 2), "over_select": 1.3, "deadline_s": 30.0,
            "noise_multiplier": z, "delta": 1e-5, "sampling_rate": min(1.0, goal / n_devices),
            "clip": {"norm": 1.0, "adaptive": True, "target_quantile": 0.9, "lr": 0.2},
            "server_optimizer": opt, "hyperparams": {"epochs": 5, "learning_rate": 0.1}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": args.rows, "rounds": args.rounds, "goal_per_region": args.goal, "runs": []}
    for seed in args.seed:
        out["runs"] += run_seed(args, seed)
    return out


def run_seed(args: argparse.Namespace, seed: int) -> list[dict[str, Any]]:
    from edge_sdk.trainer import Trainer
    from examples.demo.fleet import AppKeys, published_params, run_sync_round
    from examples.demo.propensity import PropensityConfig, make_devices
    from examples.demo.regions import Topology
    from fedmark.contract import load_artifact_manifest
    from fedmark.metrics import roc_auc
    from models import data as data_mod
    from models.export import export
    from server.testing import running_server

    work = Path(tempfile.mkdtemp(prefix="bench-regions-quality-"))
    rng = np.random.default_rng(seed)
    train, test = data_mod.stratified_split(data_mod.load_bank(), seed=seed)
    keep = int(args.rows * 0.75)
    train = [train[i] for i in sorted(rng.choice(len(train), keep, replace=False))]
    test = [test[i] for i in sorted(rng.choice(len(test), args.rows - keep, replace=False))]
    artifact = work / "artifact"
    export("propensity", artifact, train_records=train, seed=seed, epochs=5, learning_rate=0.1)
    manifest = load_artifact_manifest(artifact)
    x_test, y_test, _ = manifest.schema().encode(test)
    trainer = Trainer(artifact)
    opt = {"name": "fedavg", "lr": 1.0}
    cfg = PropensityConfig(no_consent=0.0)

    def auc(admin: Fleet, version: int) -> float:
        params = published_params(admin, manifest.model, version, manifest)
        return float(roc_auc(y_test, np.asarray(trainer.predict(params, x_test)).ravel()))

    runs: list[dict[str, Any]] = []
    for z in args.noise:
        for system in ("federated", "single"):
            root = work / f"{system}-{z}"
            devices = make_devices(train, cfg, manifest.purpose, root / "devices", np.random.default_rng(seed))
            by_region = {r: [d for d in devices if d.region == r] for r in REGIONS}
            curve = []
            if system == "federated":
                configs = {r: _training(args.goal, len(v), z, opt) for r, v in by_region.items()}
                topo = Topology(root, regions=REGIONS, artifact=artifact, model=manifest.model, deadline_s=120.0,
                                min_regions=3, server_optimizer=opt, training=configs[REGIONS[0]])
                try:
                    topo.start()
                    for r in REGIONS:  # each region's DP sampling rate is that of its own devices
                        topo.fleets[r].train(manifest.model, **configs[r])
                    keys = {r: AppKeys(topo.fleets[r]) for r in REGIONS}
                    rngs = {r: np.random.default_rng(seed + i) for i, r in enumerate(REGIONS)}
                    for k in range(1, args.rounds + 1):
                        threads = [threading.Thread(target=run_sync_round, args=(
                            topo.fleets[r], manifest.model, by_region[r], keys[r], rngs[r]), kwargs={"goal": args.goal})
                            for r in REGIONS]
                        for t in threads:
                            t.start()
                        for t in threads:
                            t.join()
                        topo.wait_global(k + 1, timeout=300)
                        for r in REGIONS:
                            topo.wait_linked(r, k + 1)
                        curve.append(auc(topo.coord, k + 1))
                finally:
                    topo.close()
            else:
                with running_server(root / "server", extra_args=["--workers", "1", "--threads", "16"]) as srv:
                    admin = Fleet(srv.base_url, srv.admin_token)
                    admin.publish_dir(artifact, manifest.model)
                    admin.train(manifest.model, **_training(3 * args.goal, len(devices), z, opt))
                    keys_one = AppKeys(admin)
                    rr = np.random.default_rng(seed)
                    for k in range(1, args.rounds + 1):
                        run_sync_round(admin, manifest.model, devices, keys_one, rr, goal=3 * args.goal)
                        admin.wait_version(manifest.model, k + 1, timeout=300)
                        curve.append(auc(admin, k + 1))
            runs.append({"system": system, "noise_multiplier": z, "seed": seed, "auc": curve,
                         "devices": {r: len(v) for r, v in by_region.items()}})
            print(json.dumps(runs[-1]), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return runs


def report(res: dict[str, Any]) -> str:
    """Per noise multiplier: the last round's held-out AUC, mean over seeds, and the per-seed differences."""
    rows = []
    for z in sorted({r["noise_multiplier"] for r in res["runs"]}):
        seeds = sorted({r.get("seed", 0) for r in res["runs"] if r["noise_multiplier"] == z})
        last = {(r["system"], r.get("seed", 0)): r["auc"][-1] for r in res["runs"] if r["noise_multiplier"] == z}
        half = {(r["system"], r.get("seed", 0)): r["auc"][len(r["auc"]) // 2 - 1] for r in res["runs"]
                if r["noise_multiplier"] == z}
        diffs = [last["federated", s] - last["single", s] for s in seeds if ("federated", s) in last and ("single", s) in last]
        mids = [half["federated", s] - half["single", s] for s in seeds if ("federated", s) in half and ("single", s) in half]
        rows.append([z, res["rounds"], f"3 x {res['goal_per_region']}", len(seeds),
                     round(float(np.mean([last["federated", s] for s in seeds])), 4),
                     round(float(np.mean([last["single", s] for s in seeds])), 4),
                     " / ".join(f"{d:+.3f}" for d in diffs), " / ".join(f"{d:+.3f}" for d in mids)])
    return table(["z", "rounds", "devices / round", "seeds", "federated AUC (last, mean)", "single AUC (last, mean)",
                  "difference per seed (last round)", "difference per seed (half-way)"], rows)


def main() -> int:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=12000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--goal", type=int, default=10, help="devices per region per round")
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.7])
    ap.add_argument("--seed", type=int, nargs="+", default=[0, 1, 2], help="seeds (split, devices, sampling)")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.report:
        print(report(json.loads(RESULTS.read_text())))
        return 0
    res = run(args)
    res["command"] = "bench/regions_quality.py " + " ".join(sys.argv[1:])
    RESULTS.write_text(json.dumps(res, indent=2))
    print(report(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
