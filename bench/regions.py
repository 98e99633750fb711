"""A global round over 3 regions x N devices, against one single server folding the same 3N updates.

    .venv/bin/python bench/regions.py                    # 3 x 100 devices, 10,000 params, z = 0 and z = 1
    .venv/bin/python bench/regions.py --report           # the BENCHMARKS.md table from the results file

Federated: a coordinator and one regional server per region (``examples.demo.regions.Topology``,
each on its own SQLite database, on loopback); every region's N devices enrol, take a task and
upload a pre-computed update at once; the clock runs from the first enrolment until the
coordinator shows version 2 (three sub-rounds folded, three pushes, the combine and the publish).
Single: one ``--role single`` server, the same 3N updates, goal 3N, same noise multiplier.

Reported (medians over ``--repeat`` interleaved runs): end-to-end seconds of each and their ratio;
the coordinator's CPU seconds per regional aggregate (its process CPU during the round, minus its
idle rate - the regions' polling - over a 3 s window measured just before, divided by the number of
aggregates); and quality at equal noise multiplier: the error of each published delta against the
mean of the 3N *clipped* updates (C = 1), and the distance between the two published deltas (the
same updates are sent to both: at z = 0 the two models must agree to float precision; at z > 0 the
federated error is larger by about sqrt(3), because each region adds its own noise,
docs/GOVERNANCE.md section 2a).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import exit_on_sigterm  # noqa: E402
from bench.fleet import Fleet  # noqa: E402
from bench.procstat import tree_cpu_seconds as _cpu  # noqa: E402
from bench.stats import median, table  # noqa: E402
from examples.demo.regions import MODEL, Topology, run_region_round  # noqa: E402
from fedmark.contract import l2_clip  # noqa: E402
from server.testing import make_artifact, running_server  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "sweeps" / "results" / "bench_regions.json"


def _delta(f: Fleet, v_from: int, v_to: int) -> np.ndarray:
    a = np.frombuffer(f.params_bytes(MODEL, v_from), "<f4").astype(np.float64)
    b = np.frombuffer(f.params_bytes(MODEL, v_to), "<f4").astype(np.float64)
    return b - a


def federated(work: Path, n: int, params: int, z: float) -> dict[str, Any]:
    with Topology(work, num_params=params, goal=n, noise_multiplier=z, deadline_s=300.0,
                  min_regions=3) as topo:
        assert topo.coordinator is not None
        pid = topo.coordinator.pid
        idle_c0, idle_t0 = _cpu(pid), time.perf_counter()
        time.sleep(3.0)
        idle_rate = (_cpu(pid) - idle_c0) / (time.perf_counter() - idle_t0)
        sent: dict[str, list[np.ndarray]] = {}
        c0, t0 = _cpu(pid), time.perf_counter()
        threads = [threading.Thread(target=lambda r=r: sent.__setitem__(r, run_region_round(topo, r, n, 1)))
                   for r in topo.regions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        topo.wait_global(2, timeout=600)
        seconds = time.perf_counter() - t0
        cpu = _cpu(pid) - c0
        delta = _delta(topo.coord, 1, 2)
        err = float(np.linalg.norm(delta - _clipped_mean([u for us in sent.values() for u in us])))
        aggs = len(topo.regions)
    return {"seconds": seconds, "coordinator_cpu_s": cpu, "idle_cpu_rate": idle_rate,
            "cpu_per_aggregate_s": max(0.0, cpu - idle_rate * seconds) / aggs, "error": err, "delta": delta}


def single(work: Path, region_n: int, params: int, z: float) -> dict[str, Any]:
    n_total = 3 * region_n
    art = make_artifact(work / "artifact", MODEL, ((params,),), seed=7)
    with running_server(work / "single", extra_args=["--workers", "1", "--threads", "8"]) as srv:
        f = Fleet(srv.base_url, srv.admin_token)
        f.publish_dir(art, MODEL)
        f.train(MODEL, goal=n_total, min_clients=n_total - 1, deadline_s=600.0, noise_multiplier=z,
                clip={"norm": 1.0, "adaptive": False})
        topo = _SingleAsRegions(f, params)
        t0 = time.perf_counter()
        sent: list[np.ndarray] = []
        lock = threading.Lock()

        def one(region: str) -> None:
            got = run_region_round(topo, region, region_n, 1)  # type: ignore[arg-type]
            with lock:
                sent.extend(got)

        threads = [threading.Thread(target=one, args=(r,)) for r in ("eu", "us", "apac")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        f.wait_version(MODEL, 2, timeout=600)
        seconds = time.perf_counter() - t0
        delta = _delta(f, 1, 2)
        err = float(np.linalg.norm(delta - _clipped_mean(sent)))
    return {"seconds": seconds, "error": err, "delta": delta}


def _clipped_mean(updates: list[np.ndarray]) -> np.ndarray:
    return np.mean([l2_clip(u, 1.0)[0] for u in updates], axis=0, dtype=np.float64)


class _SingleAsRegions:
    """What ``run_region_round`` needs of a topology, for one single server serving every region's devices."""

    def __init__(self, fleet: Fleet, params: int) -> None:
        self.num_params = params
        self.fleets = {r: fleet for r in ("eu", "us", "apac")}


def main() -> int:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=100, help="devices per region (default 100)")
    ap.add_argument("--params", type=int, default=10_000)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 1.0], help="noise multipliers z")
    ap.add_argument("--repeat", type=int, default=3, help="runs per noise multiplier (medians reported)")
    ap.add_argument("--report", action="store_true", help="print the Markdown table of the results file")
    args = ap.parse_args()
    if args.report:
        print(report(json.loads(RESULTS.read_text())))
        return 0
    runs = []
    for z in args.noise:
        reps: list[dict[str, Any]] = []
        for rep in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="bench-regions-") as d:
                order = [("fed", federated), ("one", single)] if rep % 2 == 0 else [("one", single), ("fed", federated)]
                got = {}
                for name, fn in order:  # interleaved: neither system always runs first
                    got[name] = fn(Path(d) / name, args.devices, args.params, z)  # type: ignore[operator]
            got["models_apart"] = float(np.linalg.norm(got["fed"].pop("delta") - got["one"].pop("delta")))
            reps.append(got)
        med = lambda side, key: median(r[side][key] for r in reps)  # noqa: E731
        runs.append({"noise_multiplier": z, "devices_per_region": args.devices, "regions": 3, "params": args.params,
                     "repeats": args.repeat, "runs": reps,
                     "federated": {k: med("fed", k) for k in reps[0]["fed"]},
                     "single": {k: med("one", k) for k in reps[0]["one"]},
                     "models_apart": median(r["models_apart"] for r in reps)})
        print(json.dumps(runs[-1]["federated"]), json.dumps(runs[-1]["single"]), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"command": "bench/regions.py " + " ".join(sys.argv[1:]), "runs": runs}, indent=2))
    print(report(json.loads(RESULTS.read_text())))
    return 0


def report(res: dict[str, Any]) -> str:
    rows = []
    for r in res["runs"]:
        f, s = r["federated"], r["single"]
        rows.append([f"{r['regions']} x {r['devices_per_region']}", r["params"], r["noise_multiplier"],
                     round(f["seconds"], 2), round(s["seconds"], 2), round(f["seconds"] / s["seconds"], 2),
                     round(1000 * f["cpu_per_aggregate_s"], 1), f"{f['error']:.3g}", f"{s['error']:.3g}",
                     "-" if s["error"] < 1e-4 else round(f["error"] / s["error"], 2), f"{r['models_apart']:.2g}"])
    return table(["devices", "params", "z", "federated round s", "single round s", "ratio",
                  "coordinator CPU ms / regional aggregate", "federated delta error", "single delta error",
                  "error ratio", "‖Δ federated − Δ single‖"], rows)


if __name__ == "__main__":
    raise SystemExit(main())
