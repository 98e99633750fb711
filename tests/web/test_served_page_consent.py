"""The server's /train page reads consent from a CMP stub that behaves like a real one (TCF v2.2 ``__tcfapi``).

The model's policy needs TCF purposes 1, 3 and 4 with consent for vendor 1234 and no GPC opt-out.  In
headless Chromium: before the visitor decides, nothing trains (no TCF signal); after "Reject all", nothing
trains (``tcf_purpose_denied``); after "Accept all" the page trains and the server accepts the update; with
Global Privacy Control on, nothing trains again although the CMP still says "accept".
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.web.conftest import _artifact_tgz

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.mark.browser
def test_served_page_trains_on_accept_and_not_on_reject(tmp_path, live_model, node_modules, run_node, js_tests):
    base, h = live_model.base_url, {"Authorization": f"Bearer {live_model.admin_token}"}
    model = "p-cmp-page"
    assert requests.post(f"{base}/v1/models/{model}/versions", data=_artifact_tgz(live_model.artifact),
                         headers={**h, "Content-Type": "application/gzip"}, timeout=60).status_code in (200, 201)
    requests.put(f"{base}/v1/models/{model}/policy", headers=h, timeout=30, json={
        "purpose": "personalised_ads",
        "consent_signals": {"tcf": {"vendor_id": 1234, "consent": [1, 3, 4]}, "gpc": True}}).raise_for_status()
    requests.put(f"{base}/v1/models/{model}/training", headers=h, timeout=30, json={
        "goal": 10, "min_clients": 1, "mode": "async", "clip": {"norm": 0.5, "adaptive": False},
        "hyperparams": {"epochs": 1, "learning_rate": 0.1}}).raise_for_status()
    spec = {"origin": base, "appKey": live_model.app_key, "model": model, "device": "web-cmp-1",
            "out": str(tmp_path / "out.json"), "screenshot": str(ARTIFACTS / "served_page_consent.png")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_node([js_tests / "served_page_consent.test.mjs"], {"FEDMARK_SERVED_CONSENT": str(tmp_path / "spec.json")},
             timeout=140.0)
    out = json.loads((tmp_path / "out.json").read_text())

    assert out["undecided"]["state"] == "error" and "tcf_missing 200" in out["undecided"]["message"]
    assert out["rejected"]["state"] == "error" and "tcf_purpose_denied 200" in out["rejected"]["message"]
    assert "purposes consented: none" in out["rejected"]["signals"]
    assert out["accepted"]["state"] == "done", out["accepted"]["message"]
    assert out["accepted"]["consent"] == {"allowed": 200}
    assert out["ping"]["ok"] and out["ping"]["apiVersion"] == "2.2" and out["ping"]["cmpLoaded"]
    assert out["gpc"]["state"] == "error" and "gpc_opt_out 200" in out["gpc"]["message"]
    assert live_model.round(out["accepted"]["round_id"])["accepted"] == 1
    assert out["errors"] == []
