"""Server ingestion: accepted updates/s, latency, server CPU per update and memory, at 10k / 100k / 1M parameters.

    .venv/bin/python bench/ingest.py                       # the BENCHMARKS.md figures
    .venv/bin/python bench/ingest.py --sizes 10000 --updates 200 --repeats 1   # a quick look

Each run starts a fresh real ``fedmark server`` (SQLite, ``synchronous=FULL``),
publishes a synthetic model of the given size, opens a sync round that will not
close during the run (goal = updates + 1), enrols one device per update and
takes its task.  ``--workers`` device *processes* then wait on one start signal
and post their pre-encoded bodies (distinct idempotency keys) back to back.
The same upload phase also runs against ``bench/floor_app.py`` (a minimal Flask
endpoint that reads the body and adds it to a numpy sum, under the same gunicorn
settings): the floor any Flask server pays.  Measured from outside the server:
accepted/s over the upload phase, per-request
latency (p50 / p99), server CPU seconds per update from ``/proc/<pid>/stat``
against the floor of one ``np.add`` of the same vector (what any server must do
to fold an update), and the server's RSS sampled as contributions grow.  The
round's ``accepted`` counter must equal the number of 202 answers.
Sizes are interleaved across repetitions; medians are reported.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path
from typing import Any

import numpy as np
import requests

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import exit_on_sigterm  # noqa: E402
from bench.fleet import Fleet, synthetic_update, upload_headers  # noqa: E402
from bench.procstat import tree_cpu_seconds as cpu_seconds  # noqa: E402
from bench.procstat import tree_rss_bytes as rss_bytes  # noqa: E402
from bench.stats import interleave, median, percentile, table  # noqa: E402
from fedmark.contract import encode_update  # noqa: E402
from server.testing import start_server  # noqa: E402

SERVER_ENV = {"FEDMARK_RATE_LIMIT_PER_S": "1000", "FEDMARK_RATE_LIMIT_BURST": "1000", "FEDMARK_TICK_SECONDS": "0"}


def _worker(base_url: str, jobs: list[tuple[str, str, int, int, int]], go: Any, done: Any,
            out: Any, wid: int) -> None:
    """One device process: encode its bodies, wait for the start signal, post them back to back."""
    bodies = [encode_update(synthetic_update(n, seed)) for (_t, _u, _v, seed, n) in jobs]
    http = requests.Session()
    go.wait()
    res = []
    for (token, url, version, seed, _n), body in zip(jobs, bodies):
        t0 = time.perf_counter()
        r = http.post(base_url + url, data=body, headers=upload_headers(token, version, f"k-{seed}"), timeout=120)
        t1 = time.perf_counter()
        res.append((r.status_code, t1 - t0, time.time()))
        if r.status_code == 202:
            with done.get_lock():
                done.value += 1
    out.put((wid, res))


def one_run(n_params: int, updates: int, workers: int, tmp: Path, database_url: str | None,
            server_args: tuple[str, ...] = ()) -> dict[str, Any]:
    srv = start_server(tmp / f"srv-{n_params}-{time.time_ns()}", database_url=database_url, extra_env=SERVER_ENV,
                       extra_args=server_args)
    try:
        fleet = Fleet(srv.base_url, srv.admin_token)
        fleet.publish_synthetic("m", n_params, tmp)
        fleet.train("m", goal=updates + 1, min_clients=1, over_select=1.0, deadline_s=3600, clip={"norm": 1.0})
        devs = fleet.devices(updates, "m")
        round_id = devs[0].task["round_id"]
        jobs = [(d.token, d.task["upload_url"], d.task["version"], i, n_params) for i, d in enumerate(devs)]
        ctx = mp.get_context("fork")
        go, done, out = ctx.Event(), ctx.Value("i", 0), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(srv.base_url, jobs[w::workers], go, done, out, w)) for w in range(workers)]
        for p in procs:
            p.start()
        time.sleep(1.0 + n_params * updates / workers * 2e-8)  # let every worker finish encoding before the start
        samples: list[tuple[int, int]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((done.value, rss_bytes(srv.pid)))
                stop.wait(0.05)

        rss0 = rss_bytes(srv.pid)
        cpu0 = cpu_seconds(srv.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.time()
        go.set()
        results: list[tuple[int, float, float]] = []
        for _ in procs:
            _wid, res = out.get(timeout=900)
            results.extend(res)
        for p in procs:
            p.join(30)
        cpu1 = cpu_seconds(srv.pid)
        stop.set()
        sampler.join()
        accepted = sum(1 for s, _l, _e in results if s == 202)
        statuses = sorted({s for s, _l, _e in results})
        rnd = fleet.round(round_id)
        t_end = max(e for _s, _l, e in results)
        lat = [lt for s, lt, _e in results if s == 202]
        prog = {}
        for frac in (0.25, 0.5, 0.75, 1.0):
            hit = [r for d, r in samples if d >= frac * updates]
            prog[frac] = hit[0] if hit else samples[-1][1]
        return {"n": n_params, "updates": updates, "accepted": accepted, "statuses": statuses,
                "server_accepted": rnd["accepted"], "rate": accepted / (t_end - t0), "p50": percentile(lat, 50),
                "p99": percentile(lat, 99), "cpu_per_update": (cpu1 - cpu0) / max(accepted, 1),
                "rss0": rss0, "rss": prog, "rss_peak": max(r for _d, r in samples)}
    finally:
        srv.stop()


def floor_run(n_params: int, updates: int, workers: int, tmp: Path, server_workers: int) -> dict[str, Any]:
    """The same upload phase against ``bench/floor_app.py`` under the same gunicorn settings."""
    import socket
    import subprocess

    from server.testing import REPO_ROOT, free_port

    port = free_port()
    log = open(tmp / f"floor-{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "bench.floor_app:app", "-b", f"127.0.0.1:{port}",
                             "-w", str(server_workers), "-k", "gthread", "--threads", "8"], cwd=str(REPO_ROOT),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        while requests.get(base + "/v1/health", timeout=5).status_code != 200:
            time.sleep(0.05)
        jobs = [("-", "/v1/rounds/floor/updates", 1, i, n_params) for i in range(updates)]
        ctx = mp.get_context("fork")
        go, done, out = ctx.Event(), ctx.Value("i", 0), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(base, jobs[w::workers], go, done, out, w)) for w in range(workers)]
        for p in procs:
            p.start()
        time.sleep(1.0 + n_params * updates / workers * 2e-8)
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.time()
        go.set()
        results: list[tuple[int, float, float]] = []
        for _ in procs:
            results.extend(out.get(timeout=900)[1])
        for p in procs:
            p.join(30)
        cpu1 = cpu_seconds(proc.pid)
        accepted = sum(1 for s, _l, _e in results if s == 202)
        lat = [lt for s, lt, _e in results if s == 202]
        return {"rate": accepted / (max(e for _s, _l, e in results) - t0), "p50": percentile(lat, 50),
                "p99": percentile(lat, 99), "cpu_per_update": (cpu1 - cpu0) / max(accepted, 1)}
    finally:
        import os
        import signal
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        log.close()


def add_floor(n: int) -> float:
    """Seconds for ``acc += update`` on float32 vectors of n values (median of repeats)."""
    acc = np.zeros(n, np.float32)
    vec = synthetic_update(n, 0)
    t = timeit.repeat(lambda: np.add(acc, vec, out=acc), number=max(1, 2_000_000 // n), repeat=7)
    return min(t) / max(1, 2_000_000 // n)


def main() -> int:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--updates", default="600,300,100", help="updates per run, one per size")
    ap.add_argument("--workers", type=int, default=16, help="concurrent device processes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--database-url", default=None, help="e.g. postgresql+psycopg://postgres@127.0.0.1:5432/DB")
    ap.add_argument("--fedmark-workers", type=int, default=None,
                    help="worker processes of the fedmark server (default: its own default)")
    ap.add_argument("--fedmark-threads", type=int, default=None,
                    help="request threads per fedmark worker process (default: fedmark's own default)")
    ap.add_argument("--server-workers", type=int, default=2, help="gunicorn workers of the floor app (fedmark's default: "
                                                                  "one per core)")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    counts = dict(zip(sizes, [int(c) for c in a.updates.split(",")]))
    with tempfile.TemporaryDirectory(prefix="fedmark-bench-ingest-") as td:
        def run(key: str, _r: int) -> dict[str, Any]:
            kind, s = key.split(":")
            if kind == "floor":
                return floor_run(int(s), counts[int(s)], a.workers, Path(td), a.server_workers)
            extra = (("--workers", str(a.fedmark_workers)) if a.fedmark_workers else ()) + \
                (("--threads", str(a.fedmark_threads)) if a.fedmark_threads else ())
            return one_run(int(s), counts[int(s)], a.workers, Path(td), a.database_url, extra)

        keys = [f"{k}:{s}" for s in sizes for k in ("fedmark", "floor")]
        both = interleave(keys, a.repeats, run)
        runs = {s: both[f"fedmark:{s}"] for s in map(str, sizes)}
        floors = {s: both[f"floor:{s}"] for s in map(str, sizes)}
    rows, mem_rows, lost = [], [], 0
    for s in sizes:
        rs = runs[str(s)]
        for r in rs:
            lost += r["accepted"] - r["server_accepted"]
            if r["statuses"] != [202]:
                print(f"WARNING: size {s}: answers other than 202: {r['statuses']}")
        floor = add_floor(s)
        cpu = median(r["cpu_per_update"] for r in rs)
        fl = floors[str(s)]
        fl_cpu = median(r["cpu_per_update"] for r in fl)
        rows.append([f"{s:,}", rs[0]["updates"], a.workers, median(r["rate"] for r in rs),
                     median(r["p50"] for r in rs) * 1e3, median(r["p99"] for r in rs) * 1e3,
                     cpu * 1e3, median(r["rate"] for r in fl), fl_cpu * 1e3, cpu / fl_cpu, floor * 1e3])
        mid = rs[len(rs) // 2]
        mem_rows.append([f"{s:,}", mid["rss0"] / 2**20, *(mid["rss"][f] / 2**20 for f in (0.25, 0.5, 0.75, 1.0)),
                         mid["rss_peak"] / 2**20])
    print(f"\nServer ingestion, {a.repeats} interleaved repetitions (medians); every run: accepted == round counter: "
          f"{'yes' if lost == 0 else f'NO ({lost} lost)'}\n")
    print(table(["params", "updates", "device procs", "accepted/s", "p50 ms", "p99 ms", "server CPU ms/update",
                 "floor app /s", "floor CPU ms/update", "CPU / floor", "np.add ms"], rows))
    print("\nServer RSS (MiB) as contributions grow (the middle repetition):\n")
    print(table(["params", "before", "25 %", "50 %", "75 %", "100 %", "peak"], mem_rows))
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
