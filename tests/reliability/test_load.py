"""Load: 500 and 1,000 concurrent simulated devices on loopback for a bounded period — no 5xx, no lost update.

Ten (twenty) device processes run 50 device threads each against one real
``fedmark server`` (gunicorn, one worker per core; SQLite, durable acks) in
FedBuff mode (a fold every 50 updates).
Every device enrols, then (at least once, and until the period ends or after 6
uploads) asks for a task and uploads an update.  Required: no 5xx and no connection failure; the async
round's ``accepted`` equals the number of 202s; the published versions hold
exactly ``folds x buffer_size`` contributions and fewer than ``buffer_size``
wait in the buffer.  Latencies (p50 / p99 per call) and throughput are printed
and recorded in BENCHMARKS.md.
"""
from __future__ import annotations

import multiprocessing as mp
import threading
import time
from typing import Any

import pytest
import requests

from bench.fleet import synthetic_update, upload_headers
from bench.stats import percentile
from fedmark.contract import encode_update

PROCS, THREADS = 10, 50
PERIOD_S = 45.0
MAX_UPLOADS = 6
N = 10_000
BUFFER = 50


def _device(base: str, app_key: str, name: str, stop_at: float, out: list[tuple[str, int, float]]) -> None:
    http = requests.Session()

    def call(op: str, method: str, path: str, **kw: Any) -> requests.Response | None:
        t0 = time.perf_counter()
        try:
            r = http.request(method, base + path, timeout=120, **kw)
        except requests.RequestException:
            out.append((op, -1, time.perf_counter() - t0))
            return None
        out.append((op, r.status_code, time.perf_counter() - t0))
        return r

    r = call("enrol", "POST", "/v1/devices/enroll", json={"app_key": app_key, "device_id": name, "region": "eu"})
    if r is None or r.status_code != 201:
        return
    token = r.json()["device_token"]
    body = encode_update(synthetic_update(N, hash(name) % 100_000))
    for k in range(MAX_UPLOADS):
        if k > 0 and time.time() > stop_at:  # the first contribution is always attempted
            return
        t = call("task", "POST", "/v1/tasks", json={"model": "m"}, headers={"Authorization": f"Bearer {token}"})
        if t is None or t.status_code != 200:
            time.sleep(0.5)
            continue
        task = t.json()
        call("upload", "POST", task["upload_url"], data=body,
             headers=upload_headers(token, task["version"], f"{name}-{k}"))


def _proc(base: str, app_key: str, w: int, go: Any, stop_at: Any, q: Any) -> None:
    out: list[tuple[str, int, float]] = []
    go.wait()
    ths = [threading.Thread(target=_device, args=(base, app_key, f"p{w}-d{i}", stop_at.value, out))
           for i in range(THREADS)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    q.put(out)


@pytest.mark.slow
@pytest.mark.parametrize("procs", [PROCS, 2 * PROCS], ids=["500-devices", "1000-devices"])
def test_concurrent_devices_no_5xx_no_lost_update(servers: Any, procs: int) -> None:
    srv = servers.start(f"load-{procs}")
    f = servers.fleet(srv)
    f.publish_synthetic("m", N, servers.tmp)
    f.train("m", mode="async", buffer_size=BUFFER, max_staleness=1000, clip={"norm": 1.0})
    app_key = f.app_key()
    ctx = mp.get_context("fork")
    go, q, stop_at = ctx.Event(), ctx.Queue(), ctx.Value("d", 0.0)
    ps = [ctx.Process(target=_proc, args=(srv.base_url, app_key, w, go, stop_at, q)) for w in range(procs)]
    for p in ps:
        p.start()
    try:
        t0 = time.time()
        stop_at.value = t0 + PERIOD_S
        go.set()
        calls: list[tuple[str, int, float]] = []
        for _ in ps:
            calls.extend(q.get(timeout=PERIOD_S + 300))
        elapsed = time.time() - t0
    finally:
        for p in ps:
            p.join(30)
            if p.is_alive():
                p.kill()
    bad = [(op, s) for op, s, _ in calls if s >= 500 or s < 0]
    assert not bad, f"{len(bad)} failed calls (5xx or connection errors): {sorted(set(bad))}"
    enrolled = sum(1 for op, s, _ in calls if op == "enrol" and s == 201)
    assert enrolled == procs * THREADS
    ok = sum(1 for op, s, _ in calls if op == "upload" and s == 202)
    other = sorted({(op, s) for op, s, _ in calls} - {("enrol", 201), ("task", 200), ("upload", 202)})
    f.tick()
    m = f.model("m")
    rounds = {v["round_id"] for v in m["versions"] if v["round_id"]}
    assert len(rounds) == 1
    rnd = f.round(rounds.pop())
    folded = sum(v["contributors"] for v in m["versions"] if v["kind"] == "round")
    assert rnd["accepted"] == ok, f"server counted {rnd['accepted']} updates, devices got {ok} acknowledgements"
    assert folded == rnd["folds"] * BUFFER and 0 <= ok - folded < BUFFER
    lines = [f"load: {procs * THREADS} devices, {elapsed:.0f} s, {ok} updates accepted ({ok / elapsed:.1f}/s), "
             f"{rnd['folds']} versions published; other answers: {other or 'none'}"]
    for op in ("enrol", "task", "upload"):
        lat = [lt for o, s, lt in calls if o == op and s < 400]
        lines.append(f"  {op:7s} n={len(lat):5d} p50 {percentile(lat, 50) * 1e3:7.0f} ms  p99 {percentile(lat, 99) * 1e3:7.0f} ms")
    print("\n" + "\n".join(lines))
    assert ok >= procs * THREADS, "every device should have contributed at least once within the period"
