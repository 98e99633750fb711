"""End-to-end round latency for 100 devices: enrol → task → train → upload → round closed → version published.

    .venv/bin/python bench/e2e_round.py                                  # pre-computed updates, 10k/100k/1M params
    .venv/bin/python bench/e2e_round.py --sdk out/bench/propensity     # + the real SDK training on bank records

Every device is a thread in one of ``--procs`` device processes, all started
by one signal.  With pre-computed updates a device enrols, asks for a task,
encodes its (pre-generated) update and uploads it.  With ``--sdk`` each device
is an ``edge_sdk.Client`` with its own storage directory that enrols, takes the
task, downloads and verifies the artifact, trains on its share of the bank data
with ONNX Runtime, clips and uploads.  The round's goal is the device count, so
the last upload closes it; the clock stops when ``GET /v1/models/{name}`` shows
the new version.  Phases are reported as medians (per device) and the whole
round as the median over interleaved repetitions.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import exit_on_sigterm  # noqa: E402
from bench.fleet import Fleet, synthetic_update, upload_headers  # noqa: E402
from bench.stats import interleave, median, percentile, table  # noqa: E402
from fedmark.contract import encode_update  # noqa: E402
from server.testing import start_server  # noqa: E402

SERVER_ENV = {"FEDMARK_RATE_LIMIT_PER_S": "1000", "FEDMARK_RATE_LIMIT_BURST": "1000"}


def _raw_device(base: str, app_key: str, i: int, n: int, model: str, out: list[dict[str, float]]) -> None:
    http = requests.Session()
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    r = http.post(base + "/v1/devices/enroll", json={"app_key": app_key, "device_id": f"d{i}", "region": "eu"}, timeout=120)
    token = r.json()["device_token"]
    t["enrol"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    task = http.post(base + "/v1/tasks", json={"model": model}, headers={"Authorization": f"Bearer {token}"},
                     timeout=120).json()
    t["task"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    body = encode_update(synthetic_update(n, i))  # the "training": a pre-computed update, encoded now
    t["encode"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    r = http.post(base + task["upload_url"], data=body, headers=upload_headers(token, task["version"], f"k{i}"),
                  timeout=300)
    t["upload"] = time.perf_counter() - t3
    t["status"] = r.status_code
    t["end"] = time.time()
    out.append(t)


def _sdk_device(base: str, app_key: str, i: int, records: list[dict[str, Any]], model: str, storage: str,
                out: list[dict[str, float]]) -> None:
    from edge_sdk import Client, DeviceConditions

    c = Client(base, app_key=app_key, device_id=f"d{i}", region="eu", storage_dir=f"{storage}/d{i}",
               allow_insecure_http=True, timeout=300)
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    c.enroll()
    t["enrol"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    rep = c.train(model, records, conditions=DeviceConditions(charging=True, unmetered=True, idle=True, battery=1.0),
                  seed=i)
    t["task+sync+train+upload"] = time.perf_counter() - t1
    t["status"] = 202 if rep.status == "accepted" else 0
    t["end"] = time.time()
    out.append(t)


def _proc(base: str, app_key: str, ids: list[int], n: int, model: str, go: Any, q: Any, sdk: dict[str, Any] | None) -> None:
    out: list[dict[str, float]] = []
    if sdk is not None:
        import edge_sdk  # noqa: F401  (import cost outside the measured window)
        import onnxruntime  # noqa: F401
    go.wait()
    if sdk is None:
        ths = [threading.Thread(target=_raw_device, args=(base, app_key, i, n, model, out)) for i in ids]
    else:
        ths = [threading.Thread(target=_sdk_device, args=(base, app_key, i, sdk["parts"][i], model, sdk["storage"], out))
               for i in ids]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    q.put(out)


def one_round(kind: str, devices: int, procs: int, tmp: Path, sdk_dir: str | None) -> dict[str, Any]:
    srv = start_server(tmp / f"srv-{kind}-{time.time_ns()}", extra_env=SERVER_ENV)
    try:
        fleet = Fleet(srv.base_url, srv.admin_token)
        sdk = None
        if kind == "sdk":
            fleet.publish_dir(sdk_dir, "m")  # type: ignore[arg-type]
            n = 0
            sdk = {"parts": _bank_parts(devices), "storage": str(tmp / f"devs-{time.time_ns()}")}
        else:
            n = int(kind)
            fleet.publish_synthetic("m", n, tmp)
        fleet.train("m", goal=devices, min_clients=devices, over_select=1.0, deadline_s=600, clip={"norm": 1.0},
                    hyperparams={"epochs": 1})
        app_key = fleet.app_key()
        ctx = mp.get_context("fork")
        go, q = ctx.Event(), ctx.Queue()
        ps = [ctx.Process(target=_proc, args=(srv.base_url, app_key, list(range(devices))[w::procs], n, "m", go, q, sdk))
              for w in range(procs)]
        for p in ps:
            p.start()
        time.sleep(2.0 if sdk else 0.5)
        t0 = time.time()
        go.set()
        res: list[dict[str, float]] = []
        for _ in ps:
            res.extend(q.get(timeout=600))
        m = fleet.wait_version("m", 2, timeout=600)
        t_pub = time.time()
        for p in ps:
            p.join(30)
        ok = sum(1 for r in res if r["status"] == 202)
        last = max(r["end"] for r in res)
        phases = {k: median(r[k] for r in res) for k in res[0] if k not in ("status", "end")}
        up = "upload" if "upload" in res[0] else "task+sync+train+upload"
        return {"total": t_pub - t0, "accepted": ok, "contributors": m["versions"][-1]["contributors"],
                "last_ack": last - t0, "phases": phases, "upload_p99": percentile([r[up] for r in res], 99)}
    finally:
        srv.stop()


_BANK: list[list[dict[str, Any]]] | None = None


def _bank_parts(devices: int) -> list[list[dict[str, Any]]]:
    """The bank data split IID over the devices, every record consenting to propensity scoring."""
    global _BANK
    if _BANK is None or len(_BANK) != devices:
        from models.data import load_bank, partition_iid

        recs = [dict(r, consent="propensity_scoring") for r in load_bank()]
        _BANK = partition_iid(recs, devices, seed=0)
    return _BANK


def main() -> int:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--procs", type=int, default=4, help="device processes (devices are threads in them)")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--sdk", default=None, metavar="ARTIFACT_DIR", help="also run real SDK training on this propensity artifact (exported there if missing)")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    kinds = a.sizes.split(",") if a.sizes else []
    if a.sdk:
        kinds.append("sdk")
        if not (Path(a.sdk) / "manifest.json").exists():  # export the real propensity trainer there first
            from models.export import export

            export("propensity", a.sdk, seed=0)
    with tempfile.TemporaryDirectory(prefix="fedmark-bench-e2e-") as td:
        runs = interleave(kinds, a.repeats, lambda k, r: one_round(k, a.devices, a.procs, Path(td), a.sdk))
    rows = []
    bad = 0
    for k in kinds:
        rs = runs[k]
        bad += sum(1 for r in rs if r["accepted"] != a.devices or r["contributors"] != a.devices)
        ph = rs[len(rs) // 2]["phases"]
        label = "propensity artifact, SDK training" if k == "sdk" else f"{int(k):,} params, pre-computed update"
        rows.append([label, a.devices, median(r["total"] for r in rs), median(r["last_ack"] for r in rs),
                     median(r["total"] - r["last_ack"] for r in rs) * 1e3,
                     "; ".join(f"{p} {v * 1e3:.0f}" for p, v in ph.items()), median(r["upload_p99"] for r in rs) * 1e3])
    print(f"\nEnd-to-end round, {a.devices} devices, {a.repeats} interleaved repetitions (medians); "
          f"every round closed with all {a.devices} contributions: {'yes' if bad == 0 else 'NO'}\n")
    print(table(["workload", "devices", "round s (start → new version visible)", "last ack s",
                 "ack → visible ms", "per-device phase medians ms", "upload p99 ms"], rows))
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
