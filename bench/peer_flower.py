"""fedmark vs Flower on the same federated-averaging workload: rounds per minute and updates per second.

    .venv/bin/python bench/peer_flower.py                    # the BENCHMARKS.md figures
    .venv/bin/python bench/peer_flower.py --sizes 100000 --repeats 1

Same machine, same loopback, same model size, clients and rounds, and the same
client work (return a pre-computed update; no local compute in the timed path):
* **Flower** 1.13.1 (its own ``.venv-flwr``, created by this script): the
  classic gRPC server (``start_server`` + FedAvg, no evaluation rounds) and
  CLIENTS ``start_client`` processes — see bench/flwr_peer.py.
* **fedmark**: a real ``fedmark server`` (SQLite, durable acks) in sync mode
  with goal = min_clients = CLIENTS, no clipping or noise, FedAvg server
  optimizer, and CLIENTS device processes that each round ask for a task
  (by default with the server's long-poll, ``"wait"``, so a device waiting for
  the next round sends one request; ``--poll S`` polls every S seconds instead), download the current
  ``params.bin`` like a device syncing its model, and upload the update.
Timed from the start of round 1 to the end of the last aggregation; server CPU
over that window from ``/proc``.  The systems alternate within each repetition
(medians reported).  Flower pushes work over a stream; fedmark devices pull over
HTTP, with a durable commit per update — the comparison includes those costs.
"""
from __future__ import annotations

import argparse
import bisect
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import requests

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import venvs  # noqa: E402
from bench import exit_on_sigterm  # noqa: E402
from bench.fleet import Fleet, synthetic_update, upload_headers  # noqa: E402
from bench.procstat import tree_cpu_seconds as cpu_seconds  # noqa: E402
from bench.stats import interleave, median, table  # noqa: E402
from fedmark.contract import encode_update  # noqa: E402
from server.testing import free_port, start_server  # noqa: E402

HERE = Path(__file__).resolve().parent
POLL_S = 0.0  # 0: long-poll (the server holds the task request until the next round opens)


class CpuTrace:
    """Samples a process's CPU seconds every 20 ms so the CPU used inside any time window can be read later."""

    def __init__(self, pid: int) -> None:
        self.pid, self.t, self.cpu = pid, [], []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)
        self._th.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                c = cpu_seconds(self.pid)
            except (OSError, ValueError):
                return
            self.t.append(time.time())
            self.cpu.append(c)
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._th.join(5)

    def at(self, when: float) -> float:
        i = min(max(bisect.bisect_left(self.t, when), 0), len(self.t) - 1)
        return self.cpu[i]


# ----------------------------------------------------------------------------- fedmark
def _fm_client(base: str, token: str, n: int, seed: int, rounds: int, go: Any, q: Any, poll: float) -> None:
    http = requests.Session()
    auth = {"Authorization": f"Bearer {token}"}
    body = encode_update(synthetic_update(n, seed))
    go.wait()
    ends, codes = [], []
    polls = 0
    for _r in range(rounds):
        while True:
            ask = {"model": "m"} if poll > 0 else {"model": "m", "wait": 30}  # poll 0: the server's long-poll
            r = http.post(base + "/v1/tasks", json=ask, headers=auth, timeout=120)
            if r.status_code == 200:
                break
            if r.status_code != 409:
                raise RuntimeError(f"task: {r.status_code} {r.text}")
            if poll > 0:
                time.sleep(poll)
            else:  # no waiting slot was free: the server says how long to wait
                time.sleep(float(r.json()["error"].get("retry_after_s", 0.0)))
            polls += 1
        task = r.json()
        p = http.get(f"{base}/v1/models/m/versions/{task['version']}/files/params.bin", headers=auth, timeout=120)
        assert p.status_code == 200 and len(p.content) == 4 * n
        u = http.post(base + task["upload_url"], data=body,
                      headers=upload_headers(token, task["version"], f"{seed}-{task['round_id']}"), timeout=300)
        codes.append(u.status_code)
        ends.append(time.time())
    q.put((codes, ends, polls))


def run_fedmark(n: int, clients: int, rounds: int, tmp: Path, poll: float = POLL_S) -> dict[str, Any]:
    srv = start_server(tmp / f"fm-{n}-{time.time_ns()}",
                       extra_env={"FEDMARK_RATE_LIMIT_PER_S": "10000", "FEDMARK_RATE_LIMIT_BURST": "10000"})
    try:
        fleet = Fleet(srv.base_url, srv.admin_token)
        fleet.publish_synthetic("m", n, tmp)
        fleet.train("m", goal=clients, min_clients=clients, over_select=1.0, deadline_s=600, clip=None,
                    server_optimizer={"name": "fedavg", "lr": 1.0})
        p0 = np.frombuffer(fleet.params_bytes("m", 1), "<f4").copy()
        devs = fleet.devices(clients)
        ctx = mp.get_context("fork")
        go, q = ctx.Event(), ctx.Queue()
        ps = [ctx.Process(target=_fm_client, args=(srv.base_url, d.token, n, i, rounds, go, q, poll)) for i, d in enumerate(devs)]
        for p in ps:
            p.start()
        time.sleep(1.0)
        trace = CpuTrace(srv.pid)
        t0 = time.time()
        go.set()
        out = [q.get(timeout=900) for _ in ps]
        for p in ps:
            p.join(30)
        t1 = max(e[-1] for _c, e, _p in out)
        trace.stop()
        codes = [c for cs, _e, _p in out for c in cs]
        m = fleet.model("m")
        # correctness: FedAvg of equal-weight updates, `rounds` times
        final = np.frombuffer(fleet.params_bytes("m", m["current_version"]), "<f4")
        want = p0 + rounds * np.mean([synthetic_update(n, i) for i in range(clients)], axis=0)
        exact = float(np.max(np.abs(final - want)))
        return {"elapsed": t1 - t0, "updates": sum(1 for c in codes if c == 202), "versions": m["current_version"] - 1,
                "cpu": trace.at(t1) - trace.at(t0), "max_err": exact,
                "polls": sum(p for _c, _e, p in out)}
    finally:
        srv.stop()


# ----------------------------------------------------------------------------- Flower
def _end(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the Flower server did not listen on {port}") from None
            time.sleep(0.1)


def run_flower(py: Path, n: int, clients: int, rounds: int, tmp: Path) -> dict[str, Any]:
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "GRPC_VERBOSITY": "ERROR"}
    log = open(tmp / f"flwr-{port}.log", "wb")
    srv = subprocess.Popen([str(py), str(HERE / "flwr_peer.py"), "server", str(port), str(rounds), str(clients), str(n)],
                           stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
    cl: list[subprocess.Popen[bytes]] = []
    try:
        trace = CpuTrace(srv.pid)
        _wait_listening(port, srv)  # the classic gRPC client gives up at once on a refused connection
        cl = [subprocess.Popen([str(py), str(HERE / "flwr_peer.py"), "client", str(port), str(n), str(i)],
                               stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True)
              for i in range(clients)]
        end = time.monotonic() + 600
        while srv.poll() is None:
            if time.monotonic() > end or all(c.poll() not in (None, 0) for c in cl):
                raise RuntimeError(f"Flower run failed or timed out; see {log.name}")
            time.sleep(0.1)
        out = srv.stdout.read()  # type: ignore[union-attr]
        trace.stop()
        marks = json.loads(out.decode().strip().splitlines()[-1])
        t0, t1 = marks["start"][0], marks["end"][-1]
        return {"elapsed": t1 - t0, "updates": sum(marks["results"]), "versions": len(marks["end"]),
                "cpu": trace.at(t1) - trace.at(t0), "failures": sum(marks["failures"])}
    finally:
        for p in [srv, *cl]:
            _end(p)
        log.close()


def main() -> int:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--poll", type=float, default=POLL_S, help="seconds between a fedmark device's task requests")
    a = ap.parse_args()
    py = venvs.ensure("flwr")
    sizes = [int(s) for s in a.sizes.split(",")]
    rows, ok = [], True
    with tempfile.TemporaryDirectory(prefix="fedmark-bench-flwr-") as td:
        for n in sizes:
            runners: dict[str, Callable[[], dict[str, Any]]] = {
                "fedmark": lambda: run_fedmark(n, a.clients, a.rounds, Path(td), a.poll),
                "flower": lambda: run_flower(py, n, a.clients, a.rounds, Path(td))}
            res = interleave(list(runners), a.repeats, lambda s, r: runners[s]())
            for s in runners:
                for r in res[s]:
                    if r["updates"] != a.clients * a.rounds or r["versions"] != a.rounds:
                        ok = False
                        print(f"WARNING {s} n={n}: {r}")
                    if s == "fedmark" and r["max_err"] > 1e-5:
                        ok = False
                        print(f"WARNING fedmark n={n}: final parameters off FedAvg by {r['max_err']}")
            rpm = {s: median(a.rounds / r["elapsed"] * 60 for r in res[s]) for s in runners}
            ups = {s: median(r["updates"] / r["elapsed"] for r in res[s]) for s in runners}
            cpu = {s: median(r["cpu"] / r["updates"] for r in res[s]) for s in runners}
            polls = median(r["polls"] for r in res["fedmark"]) / (a.clients * a.rounds)
            how = f"poll every {a.poll * 1e3:.0f} ms" if a.poll > 0 else "long-poll"
            print(f"n={n}: fedmark devices got {polls:.1f} refused task requests per update ({how})")
            for s in runners:
                rows.append([f"{n:,}", s, a.clients, a.rounds, rpm[s], ups[s], cpu[s] * 1e3,
                             f"{rpm[s] / rpm['flower']:.2f}x"])
    print(f"\nfedmark vs Flower 1.13.1, {a.repeats} interleaved repetitions (medians); all rounds complete: "
          f"{'yes' if ok else 'NO'}\n")
    print(table(["params", "system", "clients", "rounds", "rounds/min", "updates/s", "server CPU ms/update",
                 "rounds/min vs Flower"], rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
