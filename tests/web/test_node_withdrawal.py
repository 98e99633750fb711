"""Withdrawal in the JavaScript SDK (Node): queued updates computed from a withdrawn customer never reach the server.

Three Node processes on one storage directory, against the real server behind a loopback proxy
(tests/edge_sdk/conftest.py's Proxy) that drops uploads: the first queues two updates (one computed with
customer c7's records, one without); the second withdraws c7 and is SIGKILLed at once; the third flushes
with the network back and trains again.  Only the update without c7 may arrive, and c7's records never
train again.  The Python SDK's twin is tests/edge_sdk/test_consent_signals.py.
"""
from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import requests

from tests.edge_sdk.conftest import Proxy
from tests.web.conftest import _artifact_tgz

ROOT = Path(__file__).resolve().parents[2]


def test_node_withdrawal_survives_a_kill_between_withdrawal_and_flush(tmp_path, live_model, bank_records, node,
                                                                      js_tests, node_modules):
    base, h = live_model.base_url, {"Authorization": f"Bearer {live_model.admin_token}"}
    model = "p-withdraw-js"
    assert requests.post(f"{base}/v1/models/{model}/versions", data=_artifact_tgz(live_model.artifact),
                         headers={**h, "Content-Type": "application/gzip"}, timeout=60).status_code in (200, 201)
    requests.put(f"{base}/v1/models/{model}/policy", headers=h, timeout=30,
                 json={"purpose": "propensity_scoring"}).raise_for_status()
    requests.put(f"{base}/v1/models/{model}/training", headers=h, timeout=30,
                 json={"goal": 5, "min_clients": 1, "mode": "async",
                       "clip": {"norm": 0.5, "adaptive": False}}).raise_for_status()
    records = [{**r, "consent": "propensity_scoring", "customer": f"c{i % 30}"} for i, r in enumerate(bank_records(120))]
    proxy = Proxy(base)
    try:
        spec = {"server": proxy.url, "app_key": live_model.app_key, "device_id": "withdraw-js", "model": model,
                "storage": str(tmp_path / "device"), "subject": "c7",
                "with_subject": [r for r in records if int(r["customer"][1:]) < 15],
                "without_subject": [r for r in records if int(r["customer"][1:]) >= 15],
                **{f"out_{s}": str(tmp_path / f"{s}.json") for s in ("train", "withdraw", "flush")}}
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        step = lambda name: subprocess.run([node, str(js_tests / "consent_withdraw.mjs"), str(tmp_path / "spec.json"),
                                            name], cwd=ROOT, capture_output=True, text=True, timeout=120)
        proxy.uploads = "refuse"
        done = step("train")
        assert done.returncode == 0, done.stderr
        queued = json.loads((tmp_path / "train.json").read_text())
        assert queued["statuses"] == ["queued", "queued"] and queued["pending"] == 2

        killed = step("withdraw")
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert json.loads((tmp_path / "withdraw.json").read_text())["droppedUpdates"] == 1

        proxy.uploads = "pass"
        done = step("flush")
        assert done.returncode == 0, done.stderr
        flushed = json.loads((tmp_path / "flush.json").read_text())
        assert flushed["sent"] == [queued["second"]] and flushed["pending"] == 0
        assert flushed["again"] == {"allowed": len(spec["with_subject"]) - 4, "withdrawn": 4}
        assert live_model.round(queued["round_id"])["accepted"] >= 1
        trail = requests.get(f"{base}/v1/audit", params={"kind": "consent.report", "model": model}, headers=h,
                             timeout=30).json()["entries"]
        assert trail[-1]["detail"]["withdrawn"] == 1 and trail[-1]["actor"] == "device"
    finally:
        proxy.close()
