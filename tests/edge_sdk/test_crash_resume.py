"""An upload interrupted by SIGKILL is resumed from the offline queue and counted once.

The device is a separate process running the SDK in the *lean* environment
(numpy + onnxruntime only), talking to the real server through a loopback
proxy that stalls the upload.  Once the upload is on the wire, the process is
SIGKILLed.  Two cases: the server never received it, or the server stored it
but the device died before reading the answer.  A fresh process then runs
``fedmark device flush`` on the same storage directory; the server's round
must count the update exactly once.
"""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_sdk.outbox import Outbox

ROOT = Path(__file__).resolve().parents[2]

DEVICE = textwrap.dedent("""
    import json, sys
    from edge_sdk import Client, DeviceConditions, RetryPolicy
    url, app_key, storage, data, model = sys.argv[1:6]
    c = Client(url, app_key=app_key, device_id=model, region="eu", storage_dir=storage, timeout=120,
               retry=RetryPolicy(max_retries=0))
    r = c.train(model, data, conditions=DeviceConditions(charging=True, unmetered=True, idle=True, battery=1), seed=5)
    print(json.dumps({"status": r.status}), flush=True)
""")


def _env() -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


@pytest.mark.parametrize("server_got_it", [False, True], ids=["lost-before-server", "stored-but-unanswered"])
def test_sigkilled_upload_is_resumed_and_counted_once(server_got_it, admin, artifacts, proxy, lean_python, tmp_path,
                                                      bank_rows):
    model = f"p-crash-{int(server_got_it)}"
    admin.publish(model, artifacts.propensity)
    admin.training(model, goal=3)
    app_key = admin.app_key()
    storage = tmp_path / "device"
    data = tmp_path / "records.csv"
    with open(data, "w", newline="") as f:
        w = csv.DictWriter(f, [*bank_rows[0], "consent"])
        w.writeheader()
        w.writerows({**r, "consent": "propensity_scoring"} for r in bank_rows[:150])

    proxy.uploads = "forward-hold" if server_got_it else "hold"
    dev = subprocess.Popen([str(lean_python), "-c", DEVICE, proxy.url, app_key, str(storage), str(data), model],
                           cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           start_new_session=True)
    try:
        for _ in range(900):  # wait for the upload to be on the wire (or the device to fail)
            if proxy.upload_seen.wait(0.1) or dev.poll() is not None:
                break
        assert proxy.upload_seen.is_set(), f"the device never started its upload: {dev.stderr.read().decode()}"
        [queued] = Outbox(storage / "outbox").entries()  # durable before the first byte went out
        dev.send_signal(signal.SIGKILL)
        assert dev.wait(30) == -signal.SIGKILL
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait(10)
        dev.stdout.close()
        dev.stderr.close()
    proxy.release.set()
    round_id = queued.round_id
    assert admin.round(round_id)["accepted"] == (1 if server_got_it else 0)
    assert proxy.forwarded == ([202] if server_got_it else [])

    proxy.uploads = "pass"
    flush = [sys.executable, "-m", "fedmark_cli", "device", "flush", "--server", proxy.url, "--app-key", app_key,
             "--device-id", model, "--region", "eu", "--storage", str(storage)]
    out = subprocess.run(flush, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["sent"] == 1 and res["pending"] == 0
    assert res["outcomes"][0]["status"] == ("duplicate" if server_got_it else "accepted")
    assert admin.round(round_id)["accepted"] == 1, "the resumed update must be counted exactly once"
    again = json.loads(subprocess.run(flush, cwd=ROOT, capture_output=True, text=True, timeout=120).stdout)
    assert again["sent"] == 0 and admin.round(round_id)["accepted"] == 1
