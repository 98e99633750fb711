"""The device SDK killed at fault points tests/edge_sdk/test_crash_resume.py does not reach.

That test kills the device while its upload is on the wire (the server never
got it / stored it but the answer never arrived).  Two other points remain:

* **acknowledged but not recorded**: the device read the server's 202 and was
  SIGKILLed before it removed the entry from its outbox.  The next run resends
  it with the same idempotency key: the server must answer 200 with the
  original update id and count it once.
* **killed while queueing**: SIGKILL after the outbox's temporary file was
  written and fsync'd but before the rename that makes it an entry.  Nothing
  was sent; the half-written file must not be sent or break the queue, and the
  device, asking again, gets its still-pending task and contributes once.

Each device run is a separate process (the real SDK, real ONNX Runtime, the
exported propensity trainer) against a real server process on 127.0.0.1.
"""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from edge_sdk.outbox import Outbox

ROOT = Path(__file__).resolve().parents[2]

DEVICE = textwrap.dedent("""
    import json, os, signal, sys
    import edge_sdk.outbox as outbox
    from edge_sdk import Client, DeviceConditions, RetryPolicy
    url, app_key, storage, data, fault = sys.argv[1:6]
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    if fault == "after-ack":
        outbox.Outbox.remove = die                      # the 202 was read; the ack is never recorded
    elif fault == "while-queueing":
        real_replace = os.replace
        def replace(src, dst, *a, **k):
            if os.path.basename(str(src)).startswith(".tmp-") and str(dst).endswith(".fmq"):
                die()                                   # temp file written + fsync'd, not yet renamed
            return real_replace(src, dst, *a, **k)
        outbox.os.replace = replace
    c = Client(url, app_key=app_key, device_id="dev-1", region="eu", storage_dir=storage, timeout=60,
               retry=RetryPolicy(max_retries=0))
    r = c.train("p", data, conditions=DeviceConditions(charging=True, unmetered=True, idle=True, battery=1), seed=5)
    print(json.dumps({"status": r.status, "round": r.round_id, "update_id": r.update_id, "pending": c.pending()}))
""")


@pytest.fixture
def setup(servers: Any, propensity_artifact: Path, tmp_path: Path) -> dict[str, Any]:
    from models.data import load_bank

    srv = servers.start("faults")
    f = servers.fleet(srv)
    f.publish_dir(propensity_artifact, "p")
    f.train("p", goal=3, min_clients=1, deadline_s=3600)
    data = tmp_path / "records.csv"
    rows = load_bank()[:150]
    with open(data, "w", newline="") as fh:
        w = csv.DictWriter(fh, [*rows[0], "consent"])
        w.writeheader()
        w.writerows({**r, "consent": "propensity_scoring"} for r in rows)
    return {"srv": srv, "fleet": f, "app_key": f.app_key(), "data": data, "storage": tmp_path / "device"}


def _device(s: dict[str, Any], fault: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", DEVICE, s["srv"].base_url, s["app_key"], str(s["storage"]),
                           str(s["data"]), fault], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": "/tmp"})


def _flush(s: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "fedmark_cli", "device", "flush", "--server", s["srv"].base_url,
                          "--app-key", s["app_key"], "--device-id", "dev-1", "--region", "eu",
                          "--storage", str(s["storage"])], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_killed_after_the_ack_before_recording_it_is_resent_and_counted_once(setup: dict[str, Any]) -> None:
    s, f = setup, setup["fleet"]
    out = _device(s, "after-ack")
    assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
    [queued] = Outbox(s["storage"] / "outbox").entries()  # the acknowledged update is still queued
    rnd = f.round(queued.round_id)
    assert rnd["accepted"] == 1, "the server stored and acknowledged it before the kill"
    res = _flush(s)
    assert res["sent"] == 1 and res["pending"] == 0
    assert res["outcomes"][0]["status"] == "duplicate", res
    assert f.round(queued.round_id)["accepted"] == 1, "the resent update must be counted once"
    assert _flush(s)["sent"] == 0 and f.round(queued.round_id)["accepted"] == 1


def test_killed_while_queueing_sends_nothing_then_contributes_once(setup: dict[str, Any]) -> None:
    s, f = setup, setup["fleet"]
    out = _device(s, "while-queueing")
    assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
    box = s["storage"] / "outbox"
    assert Outbox(box).entries() == [] and list(box.glob(".tmp-*")), "a half-queued temp file, no entry"
    again = _device(s, "none")  # the app runs again: same pending task, a fresh update
    assert again.returncode == 0, again.stderr[-3000:]
    rep = json.loads(again.stdout.strip().splitlines()[-1])
    assert rep["status"] == "accepted" and rep["pending"] == 0, rep
    assert f.round(rep["round"])["accepted"] == 1, "exactly one update from this device"
    assert _flush(s)["sent"] == 0 and f.round(rep["round"])["accepted"] == 1
