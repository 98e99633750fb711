"""Federated validation and audience segments from the device, against the real server.

The device sends aggregates only: a score histogram, a count and a loss sum for
validation; per-segment counts for audiences.  The publish gate and the
k-suppression are the server's; these tests check the SDK's side of both.
"""
from __future__ import annotations

import requests

from edge_sdk import Client, DeviceConditions
from models.data import load_bank, stratified_split

OK = DeviceConditions(charging=True, unmetered=True, idle=True, battery=1.0)
PURPOSE = "propensity_scoring"


def _rows(records, consent=True):
    return [{**r, "consent": PURPOSE if consent else "analytics"} for r in records]


def test_validate_feeds_the_publish_gate_and_segments_are_k_suppressed(artifacts, admin, fedmark_server, tmp_path):
    base, token = fedmark_server
    h = {"Authorization": f"Bearer {token}"}
    admin.publish("prop", artifacts.propensity)
    gate = {"metric": "auc", "max_regression": 1.0, "min_contributors": 1, "min_evaluators": 2}
    r = requests.put(f"{base}/v1/models/prop/policy", headers=h, timeout=30,
                     json={"purpose": PURPOSE, "allowed_regions": ["eu"], "k_min": 2, "gate": gate})
    assert r.status_code < 300, r.text
    admin.training("prop", goal=2, min_clients=2)
    key = admin.app_key()
    train, test = stratified_split(load_bank(), seed=0)
    dev = lambda name: Client(base, app_key=key, device_id=name, region="eu", storage_dir=tmp_path / name,
                              allow_insecure_http=True)
    for i in range(2):
        dev(f"t{i}").train("prop", _rows(train[i * 300:(i + 1) * 300]), conditions=OK, seed=i)
    assert admin.model("prop")["current_version"] == 1  # the round's result waits for its gate

    first = dev("e0").validate("prop", _rows(test[:400]))
    assert first["accepted"] >= 1 and not (first.get("decision") or {}).get("passed")
    second = dev("e1").validate("prop", _rows(test[400:800]) + _rows(test[800:900], consent=False))
    assert second["decision"]["passed"] is True
    assert admin.model("prop")["current_version"] == 2
    ev = requests.get(f"{base}/v1/models/prop/evaluations", headers=h, timeout=30).json()
    assert ev["evaluators"] == 2
    # 800 consented rows were evaluated; the 100 without consent never were
    assert ev["versions"]["2"]["overall"]["count"] == 800

    counts = dev("e0").report_segments("prop", _rows(test[:400]))
    assert sum(counts.values()) == 400
    made = requests.post(f"{base}/v1/admin/tokens", headers=h, json={"role": "marketer", "name": "crm"}, timeout=30)
    assert made.status_code == 201, made.text
    marketer = made.json()["token"]
    seg = requests.post(f"{base}/v1/activation/segments", json={"model": "prop", "purpose": PURPOSE}, timeout=30,
                        headers={"Authorization": f"Bearer {marketer}"})
    assert seg.status_code == 200, seg.text
    # one device reported: every segment is below k_min=2 devices and must be suppressed
    assert seg.json()["segments"] and all(s["suppressed"] for s in seg.json()["segments"])
    dev("e1").report_segments("prop", _rows(test[400:800]))
    seg = requests.post(f"{base}/v1/activation/segments", json={"model": "prop", "purpose": PURPOSE}, timeout=30,
                        headers={"Authorization": f"Bearer {marketer}"}).json()
    visible = {s["segment"]: s["count"] for s in seg["segments"] if not s["suppressed"]}
    assert sum(visible.values()) == 800
