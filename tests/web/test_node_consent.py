"""Consent follows the task in the JavaScript SDK (Node, real server).

A governed model whose policy's consent_purposes differ from the manifest's
purpose: the records that train are the ones whose consent covers the task's
purposes (docs/GOVERNANCE.md), never the ones consented only for the
manifest's purpose.  The Python SDK's twin is tests/edge_sdk/test_task_consent.py.
"""
from __future__ import annotations

import json

import requests

from tests.web.conftest import _artifact_tgz


def test_node_client_trains_only_records_the_task_consents(tmp_path, live_model, bank_records, run_node, js_tests,
                                                           node_modules):
    h = {"Authorization": f"Bearer {live_model.admin_token}"}
    base, model = live_model.base_url, "p-consent-js"
    r = requests.post(f"{base}/v1/models/{model}/versions", data=_artifact_tgz(live_model.artifact),
                      headers={**h, "Content-Type": "application/gzip"}, timeout=60)
    assert r.status_code in (200, 201), r.text
    r = requests.put(f"{base}/v1/models/{model}/policy", headers=h, timeout=30,
                     json={"purpose": "retention", "consent_purposes": ["retention", "analytics"]})
    assert r.status_code < 300, r.text
    r = requests.put(f"{base}/v1/models/{model}/training", headers=h, timeout=30,
                     json={"goal": 5, "min_clients": 1, "clip": {"norm": 0.5, "adaptive": False}})
    assert r.status_code == 200, r.text
    manifest = json.loads((live_model.artifact / "manifest.json").read_text())
    assert manifest["purpose"] != "retention"
    consent = [manifest["purpose"]] * 40 + ["retention, Analytics"] * 30 + ["retention"] * 20
    records = [{**rec, "consent": c} for rec, c in zip(bank_records(90), consent)]
    spec = {"server": base, "app_key": live_model.app_key, "model": model, "records": records,
            "artifact": str(live_model.artifact), "task_rows": list(range(40, 70)), "manifest_rows": list(range(40)),
            "storage": str(tmp_path / "devices"), "out": str(tmp_path / "out.json")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_node([js_tests / "consent_task.test.mjs"], {"FEDMARK_CONSENT": str(tmp_path / "spec.json")})
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["trained"]["num_examples"] == 30
    assert live_model.round(out["trained"]["round_id"])["accepted"] == 1
