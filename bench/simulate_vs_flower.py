"""``fedmark simulate`` vs Flower's Simulation Engine: client updates per second on the same workload.

    .venv/bin/python bench/simulate_vs_flower.py                       # the BENCHMARKS.md figures
    .venv/bin/python bench/simulate_vs_flower.py --per-round 10 --rounds 10 --repeats 1

The workload, identical on both sides: the propensity artifact (exported
ONNX train graph, 1,953 parameters) on the Bank Marketing training split cut
into job x month devices of at most 100 rows (the demo's fleet); each round
PER_ROUND devices train one local epoch at lr 0.1 with ``edge_sdk``'s
``Trainer`` (ONNX Runtime) and the server averages their updates.

* **fedmark**: :func:`simulate.federation.run_federated` with the default
  local-process engine (one worker per core), the server's aggregation
  pipeline (adaptive clipping, FedAvg) and the device's update path (delta,
  clip, f32 wire encoding, server-side decode and re-clip) - more work per
  update than the Flower side does.
* **Flower** 1.42 ``flwr.simulation.run_simulation`` (Ray backend, one CPU per
  ClientApp, so one actor per core), its Message-API ``FedAvg``
  (``fraction_train`` = PER_ROUND / devices, no evaluation); the ClientApp
  runs the same ``Trainer.train`` on the same device data.  Flower runs in
  its own environment ``.venv-flwrsim`` (created here with the project's uv;
  its numpy/protobuf pins clash with TensorFlow's).

Three rates: *total* (the whole call, start-up included: process pool,
Ray), *rounds* (from round 1's start: fedmark's run, Flower's ServerApp from
configuring round 1, which includes its lazy actor start) and *warm* (rounds
2..R only: the steady state once every worker is up).  The systems alternate within each
repetition; medians are reported, with ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FLWR_SIM = ("flwr[simulation]==1.42.0", "onnxruntime==1.32.0", "numpy<2.3")
ENV_DIR = ROOT / ".venv-flwrsim"

# ----------------------------------------------------------------------------------------------- Flower side
# Runs under .venv-flwrsim's interpreter as ``python -m bench.simulate_vs_flower --flower-side ...``; it imports
# only Flower, numpy, onnxruntime and edge_sdk.trainer (numpy + onnxruntime + fedmark.contract).
_CACHE: dict[str, Any] = {}


def _flower_device(context: Any) -> tuple[Any, Any]:
    import numpy as np
    from edge_sdk.trainer import Trainer

    if "trainer" not in _CACHE:
        _CACHE["trainer"] = Trainer(os.environ["SIMBENCH_ARTIFACT"])
        with np.load(os.environ["SIMBENCH_DATA"]) as z:
            _CACHE["data"] = [(z[f"x{i}"], z[f"y{i}"]) for i in range(int(z["n"]))]
    pid = int(context.node_config["partition-id"])
    return _CACHE["trainer"], _CACHE["data"][pid]


def _flower_apps() -> tuple[Any, Any]:
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    client = ClientApp()

    @client.train()
    def train(msg: Message, context: Context) -> Message:
        t_in = time.perf_counter()
        trainer, data = _flower_device(context)
        params = msg.content["arrays"].to_numpy_ndarrays()
        seed = int(msg.content["config"]["server-round"]) * 100003 + int(context.node_config["partition-id"])
        res = trainer.train(params, data, epochs=1, lr=0.1, seed=seed)
        content = RecordDict({"arrays": ArrayRecord(res.params),
                              "metrics": MetricRecord({"num-examples": res.num_examples, "loss": res.loss})})
        if os.environ.get("SIMBENCH_TRACE"):
            with open(os.environ["SIMBENCH_TRACE"], "a") as f:
                f.write(f"{os.getpid()} {time.time():.3f} {time.perf_counter() - t_in:.4f} {'trainer' in _CACHE}\n")
        return Message(content=content, reply_to=msg)

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        import numpy as np
        from edge_sdk.trainer import Trainer

        n, k, rounds = (int(os.environ[v]) for v in ("SIMBENCH_N", "SIMBENCH_K", "SIMBENCH_ROUNDS"))
        init = Trainer(os.environ["SIMBENCH_ARTIFACT"]).initial_params()
        first: list[float] = []

        class TimedFedAvg(FedAvg):
            """FedAvg that notes when round 1 is configured: the rounds are timed from there, after Ray's start."""

            def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Any:
                first.append(time.perf_counter())  # round r starts when round r-1 was aggregated
                return super().configure_train(server_round, arrays, config, grid)

        strategy = TimedFedAvg(fraction_train=k / n, fraction_evaluate=0.0, min_train_nodes=k,
                               min_available_nodes=n)
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord([np.asarray(p) for p in init]),
                                num_rounds=rounds, train_config=ConfigRecord({}))
        final = result.arrays.to_numpy_ndarrays()
        moved = max(float(np.abs(a - b).max()) for a, b in zip(final, init))  # proof the rounds trained
        end = time.perf_counter()
        Path(os.environ["SIMBENCH_OUT"]).write_text(json.dumps({"rounds_seconds": end - first[0],
                                                                "warm_seconds": end - first[1],
                                                                "max_param_change": moved}))

    return server, client


def _flower_side() -> None:
    from flwr.simulation import run_simulation

    import bench.simulate_vs_flower as me  # by module name, so Ray workers import (not unpickle) the apps

    server, client = me._flower_apps()
    n = int(os.environ["SIMBENCH_N"])
    t0 = time.perf_counter()
    run_simulation(server_app=server, client_app=client, num_supernodes=n,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": int(os.environ["SIMBENCH_CPUS"]),
                                                 "include_dashboard": False}})
    total = time.perf_counter() - t0
    out = Path(os.environ["SIMBENCH_OUT"])
    doc = json.loads(out.read_text())
    doc["total_seconds"] = total
    out.write_text(json.dumps(doc))


# ----------------------------------------------------------------------------------------------- driver side
def _ensure_env() -> Path:
    sys.path.insert(0, str(ROOT))
    from bench import venvs

    py = ENV_DIR / "bin" / "python"
    stamp = ENV_DIR / ".simbench-pins"
    if not (py.exists() and stamp.exists() and stamp.read_text() == "\n".join(FLWR_SIM)):
        venvs.create(ENV_DIR, FLWR_SIM)
        stamp.write_text("\n".join(FLWR_SIM))
    return py


def _run_flower(py: Path, artifact: str, npz: str, n: int, k: int, rounds: int, cpus: int,
                timeout: float) -> dict[str, Any]:
    out = tempfile.NamedTemporaryFile(prefix="simbench-flwr-", suffix=".json", delete=False).name
    env = dict(os.environ, PYTHONPATH=str(ROOT), SIMBENCH_ARTIFACT=artifact, SIMBENCH_DATA=npz, SIMBENCH_N=str(n),
               SIMBENCH_K=str(k), SIMBENCH_ROUNDS=str(rounds), SIMBENCH_OUT=out, SIMBENCH_CPUS=str(cpus),
               RAY_DEDUP_LOGS="0", FLWR_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([str(py), "-m", "bench.simulate_vs_flower", "--flower-side"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the process group this script started (Flower and its Ray workers)
        proc.wait()
        raise RuntimeError(f"Flower did not finish {rounds} rounds within {timeout:.0f} s")
    if proc.returncode != 0:
        raise RuntimeError(f"Flower side failed ({proc.returncode}):\n{log[-4000:]}")
    doc = json.loads(Path(out).read_text())
    os.unlink(out)
    updates = k * rounds
    if doc["max_param_change"] <= 0:
        raise RuntimeError("Flower's rounds did not change the model")
    return {"updates": updates, "total_seconds": doc["total_seconds"], "rounds_seconds": doc["rounds_seconds"],
            "updates_per_s": updates / doc["total_seconds"], "updates_per_s_rounds": updates / doc["rounds_seconds"],
            "updates_per_s_warm": (updates - k) / doc["warm_seconds"]}


def _run_fedmark(artifact: str, work: Any, k: int, rounds: int, workers: int) -> dict[str, Any]:
    import numpy as np
    from edge_sdk.trainer import Trainer
    from simulate.engines import ProcessEngine
    from simulate.federation import FederationSettings, load_config, run_federated

    cfg = load_config({"mode": "sync", "goal": k, "min_clients": k, "over_select": 1.0,
                       "clip": {"norm": 1.0, "adaptive": True, "target_quantile": 0.9, "lr": 0.2},
                       "server_optimizer": {"name": "fedavg", "lr": 1.0},
                       "hyperparams": {"epochs": 1, "learning_rate": 0.1}})
    trainer = Trainer(artifact)
    ends: list[float] = []

    class Ticks:  # the progress-bar hook of run_federated, used here as a per-round clock
        def __init__(self, **_: Any) -> None: ...
        def update(self, _n: int) -> None: ends.append(time.perf_counter())
        def set_postfix(self, *_: Any) -> None: ...
        def close(self) -> None: ...

    t0 = time.perf_counter()
    engine = ProcessEngine(artifact, work.data, workers)
    try:
        run = run_federated(engine, trainer.manifest, trainer.initial_params(), cfg,
                            FederationSettings(rounds, 0.0, seed=0, eval_every=rounds), work.sizes, progress=Ticks)
    finally:
        engine.close()
    total = time.perf_counter() - t0
    moved = max(float(np.abs(a - b).max()) for a, b in zip(run.params, trainer.initial_params()))
    if moved <= 0:
        raise RuntimeError("fedmark's rounds did not change the model")
    return {"updates": run.updates, "total_seconds": total, "rounds_seconds": run.seconds,
            "updates_per_s": run.updates / total, "updates_per_s_rounds": run.updates / run.seconds,
            "updates_per_s_warm": (run.updates - k) / (ends[-1] - ends[0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flower-side", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--artifact", default=None, help="propensity artifact (default: export one into a temp dir)")
    ap.add_argument("--data", default=str(ROOT / "examples" / "data" / "bank-full.csv.gz"))
    ap.add_argument("--per-round", type=int, nargs="+", default=[10, 50, 100])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per Flower run")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    if args.flower_side:
        _flower_side()
        return

    sys.path.insert(0, str(ROOT))
    from bench import exit_on_sigterm
    exit_on_sigterm()
    import numpy as np
    from bench.stats import median
    from simulate.run import Options, prepare

    data = args.data if Path(args.data).exists() else "/work/shared/data/bank-marketing/bank-full.csv.gz"
    tmp = Path(tempfile.mkdtemp(prefix="simbench-"))
    artifact = args.artifact
    if artifact is None:
        from models.export import export
        artifact = str(tmp / "propensity")
        export("propensity", artifact, seed=0, data_path=data)
    prep = prepare(Options(artifact=artifact, data=data, partition_by="job,month", max_device_rows=100))
    work = prep.workload
    npz = str(tmp / "devices.npz")
    arrays = {"n": np.array(len(work.data))}
    for i, (x, y) in enumerate(work.data):
        arrays[f"x{i}"], arrays[f"y{i}"] = x, y
    np.savez(npz, **arrays)
    py = _ensure_env()
    n = len(work.data)
    print(f"workload: {n} devices (job x month, <= 100 rows), {args.rounds} rounds, {args.workers} workers / "
          f"Ray CPUs, 1 local epoch, {prep.trainer.manifest.num_params} params")
    rows: list[dict[str, Any]] = []
    for k in args.per_round:
        runs: dict[str, list[dict[str, Any]]] = {"fedmark": [], "flower": []}
        for rep in range(args.repeats):
            order = ("fedmark", "flower") if rep % 2 == 0 else ("flower", "fedmark")
            for system in order:
                if system == "fedmark":
                    runs[system].append(_run_fedmark(artifact, work, k, args.rounds, args.workers))
                else:
                    runs[system].append(_run_flower(py, artifact, npz, n, k, args.rounds, args.workers, args.timeout))
        row: dict[str, Any] = {"per_round": k, "rounds": args.rounds, "devices": n}
        for system, rs in runs.items():
            row[system] = {key: median([r[key] for r in rs]) for key in rs[0]}
        row["ratio_total"] = row["fedmark"]["updates_per_s"] / row["flower"]["updates_per_s"]
        row["ratio_rounds"] = row["fedmark"]["updates_per_s_rounds"] / row["flower"]["updates_per_s_rounds"]
        row["ratio_warm"] = row["fedmark"]["updates_per_s_warm"] / row["flower"]["updates_per_s_warm"]
        rows.append(row)
        f, w = row["fedmark"], row["flower"]
        print(f"{k:>4}/round  updates/s total | rounds | warm:  fedmark {f['updates_per_s']:6.0f} | "
              f"{f['updates_per_s_rounds']:6.0f} | {f['updates_per_s_warm']:6.0f}   Flower {w['updates_per_s']:6.1f} | "
              f"{w['updates_per_s_rounds']:6.1f} | {w['updates_per_s_warm']:6.1f}   ratio {row['ratio_total']:.0f}x | "
              f"{row['ratio_rounds']:.0f}x | {row['ratio_warm']:.1f}x", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"workload": {"devices": n, "rounds": args.rounds,
                                                           "workers": args.workers}, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
