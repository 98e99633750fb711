"""Where an upload's server CPU goes: thread CPU time spent in each step of the upload path.

    .venv/bin/python bench/ingest_profile.py --params 100000 --updates 1000

The server runs in this process (werkzeug, threaded, SQLite ``synchronous=FULL``) so
its functions can be wrapped: each wrapped step adds the ``time.thread_time()`` it
took on its own thread, which counts CPU in C code (SQLite, hashing, numpy) that a
sampling profiler holding to the GIL misses.  ``--workers`` device processes post
pre-encoded updates (as ``bench/ingest.py`` does) while the counters run.  Steps
nest (``commit (batch)`` contains ``sums.add``; ``ingest (request part)`` excludes
the commit it waits for), so the rows do not add up to the total.
"""
from __future__ import annotations

import argparse
import collections
import functools
import logging
import multiprocessing as mp
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fleet import Fleet  # noqa: E402
from bench.ingest import _worker  # noqa: E402

CPU: "collections.Counter[str]" = collections.Counter()
CALLS: "collections.Counter[str]" = collections.Counter()
ON = threading.Event()


def wrap(owner: Any, name: str, label: str) -> None:
    """Replace ``owner.name`` with a version that adds its thread CPU time to ``label``."""
    fn: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(fn)
    def timed(*a: Any, **k: Any) -> Any:
        t0 = time.thread_time()
        try:
            return fn(*a, **k)
        finally:
            if ON.is_set():
                CPU[label] += time.thread_time() - t0
                CALLS[label] += 1

    setattr(owner, name, timed)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", type=int, default=100_000)
    ap.add_argument("--updates", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=16, help="device processes")
    a = ap.parse_args()

    import server.auth.tokens as tokens
    import server.rounds.ingest as ingest
    import server.rounds.sums as sums
    import server.storage.group as group
    from server.app import create_app
    from server.config import Config
    from server.serving import make_dev_server

    wrap(tokens, "_authenticate", "authentication")
    wrap(tokens, "_row", "  token lookup")
    wrap(ingest, "ingest", "ingest (request part)")
    wrap(ingest, "sha256_bytes", "  body SHA-256")
    wrap(ingest, "decode_update", "  decode and checks")
    wrap(group.GroupCommitter, "_commit", "commit (batch)")
    wrap(sums.RoundSums, "add", "  running-sum add")
    wrap(sums.RoundSums, "before_commit", "  running-sum write")

    td = Path(tempfile.mkdtemp(prefix="fedmark-ingest-profile-"))
    cfg = Config(DATA_DIR=str(td / "srv"), ADMIN_TOKEN="adm_" + "x" * 24, RATE_LIMIT_PER_S=1000.0,
                 RATE_LIMIT_BURST=1000, TICK_SECONDS=0.0, ENROL_ADDRESS_LIMIT_PER_S=1000.0,
                 ENROL_ADDRESS_LIMIT_BURST=100_000)
    app = create_app(cfg)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    srv = make_dev_server("127.0.0.1", 0, app)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_port}"
    try:
        fleet = Fleet(base, str(cfg.ADMIN_TOKEN))
        fleet.publish_synthetic("m", a.params, td)
        fleet.train("m", goal=a.updates + 1, min_clients=1, over_select=1.0, deadline_s=3600, clip={"norm": 1.0})
        devs = fleet.devices(a.updates, "m")
        jobs = [(d.token, d.task["upload_url"], d.task["version"], i, a.params) for i, d in enumerate(devs)]
        ctx = mp.get_context("spawn")
        go, done, out = ctx.Event(), ctx.Value("i", 0), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(base, jobs[w::a.workers], go, done, out, w))
                 for w in range(a.workers)]
        for p in procs:
            p.start()
        time.sleep(2.0 + a.params * a.updates / a.workers * 2e-8)  # let the workers encode their bodies
        r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
        ON.set()
        go.set()
        results = [r for _ in procs for r in out.get(timeout=900)[1]]
        ON.clear()
        r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.time()
        for p in procs:
            p.join(30)
    finally:
        srv.shutdown()
    n = len(results)
    print(f"{n} uploads ({sum(1 for r in results if r[0] == 202)} accepted), {n / (w1 - w0):.0f}/s in-process; "
          f"server CPU per update: user {(r1.ru_utime - r0.ru_utime) / n * 1e3:.2f} ms, "
          f"system {(r1.ru_stime - r0.ru_stime) / n * 1e3:.2f} ms\n")
    print("| step | thread CPU ms per update | calls per update |\n|---|---|---|")
    for label in CPU:
        print(f"| {label} | {CPU[label] / n * 1e3:.3f} | {CALLS[label] / n:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
