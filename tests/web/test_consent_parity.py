"""Identical records and signals give identical consent decisions, and matching updates, in Python, Node and Chromium.

A personalised-ads propensity model's policy needs TCF purposes 1, 3 and 4 with vendor consent, Consent Mode
``ad_user_data`` + ``ad_personalization`` and no GPC opt-out.  90 real Bank Marketing records each carry their
customer's TC string (made by the IAB's own encoder, tests/contract/tcf_vectors.json), Consent Mode states and
sometimes a GPC opt-out.  Python decides with fedmark.contract.consent; Node (TC strings decoded by
@iabtechlabtcf/core) and headless Chromium (the same library served to the page, and the CMP's TCData) must give
the same decision for every record and every documented case, report the same counts per reason to the real
server, and train the allowed records in the same explicit order into the same update: Node's byte for byte
(the same native kernels as Python's onnxruntime), Chromium's within the float32 bound of tests/web/parity.py
(the WebAssembly kernels round differently: tests/web/test_wasm_kernels.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests

from edge_sdk.consent import decide_records
from edge_sdk.trainer import Trainer
from edge_sdk.update import build_update
from fedmark.contract import consent as c
from tests.web.conftest import _artifact_tgz
from tests.web.parity import assert_native_identical, assert_wasm_close

ROOT = Path(__file__).resolve().parents[2]
VECTORS_PATH = ROOT / "tests" / "contract" / "tcf_vectors.json"
VECTORS = json.loads(VECTORS_PATH.read_text())
ADS = VECTORS["requirements"]["personalised_ads"]
GRANTED = {"ad_user_data": "granted", "ad_personalization": "granted"}


def _records(rows: list[dict]) -> list[dict]:
    tc = {k: v["tc_string"] for k, v in VECTORS["strings"].items()}
    kinds = ([("accept_all", GRANTED, None)] * 45 + [("reject_all", GRANTED, None)] * 10
             + [("purposes_without_our_vendor", GRANTED, None)] * 8 + [("accept_all", GRANTED, True)] * 7
             + [("accept_all", {**GRANTED, "ad_personalization": "denied"}, "0")] * 6
             + [("restricted_purpose3_not_allowed", GRANTED, None)] * 5 + [(None, GRANTED, None)] * 4
             + [("accept_all", None, None)] * 5)
    out = []
    for i, (r, (name, cm, gpc)) in enumerate(zip(rows, kinds)):
        rec = {**r, "customer": f"c{i}",
               "tc_string": tc[name] if name else (VECTORS["malformed"]["truncated"] if i % 2 else None)}
        if cm is not None:
            rec["consent_mode"] = cm if i % 2 else json.dumps(cm)  # an object, or a table cell's JSON text
        if gpc is not None:
            rec["gpc"] = gpc
        out.append(rec)
    return out


@pytest.mark.browser
def test_consent_decisions_and_updates_match_across_python_node_and_browser(tmp_path, live_model, page_server,
                                                                          bank_records, run_node, js_tests):
    base, h = live_model.base_url, {"Authorization": f"Bearer {live_model.admin_token}"}
    model = "p-ads-parity"
    r = requests.post(f"{base}/v1/models/{model}/versions", data=_artifact_tgz(live_model.artifact),
                      headers={**h, "Content-Type": "application/gzip"}, timeout=60)
    assert r.status_code in (200, 201), r.text
    r = requests.put(f"{base}/v1/models/{model}/policy", headers=h, timeout=30,
                     json={"purpose": ADS["purposes"][0], "consent_signals": ADS["consent_signals"]})
    assert r.status_code < 300, r.text
    r = requests.put(f"{base}/v1/models/{model}/training", headers=h, timeout=30,
                     json={"goal": 5, "min_clients": 1, "clip": {"norm": 0.5, "adaptive": False},
                           "hyperparams": {"epochs": 2, "learning_rate": 0.1}})
    assert r.status_code == 200, r.text

    records = _records(bank_records(90))
    req = c.parse_requirement(ADS["consent_signals"], ADS["purposes"])
    py = decide_records(records, req)
    assert dict(py.counts) == {"allowed": 45, "tcf_purpose_denied": 10, "tcf_vendor_denied": 8, "gpc_opt_out": 7,
                               "consent_mode_denied": 6, "tcf_restricted": 5, "tcf_missing": 2, "tcf_unreadable": 2,
                               "consent_mode_missing": 5}
    used = py.used
    rng = np.random.default_rng(16)
    orders = [rng.permutation(len(used)).tolist() for _ in range(2)]
    spec = {"server": base, "origin": page_server.origin, "app_key": live_model.app_key, "model": model,
            "records": records, "orders": orders, "requirement": ADS, "vectors": str(VECTORS_PATH),
            "conditions": {"charging": True, "unmetered": True, "idle": True, "battery": 1.0},
            "storage": str(tmp_path / "devices"), "out": str(tmp_path / "out.json")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_node([js_tests / "consent_parity.test.mjs"], {"FEDMARK_CONSENT_PARITY": str(tmp_path / "spec.json")},
             timeout=150.0)
    out = json.loads((tmp_path / "out.json").read_text())

    # Decisions: identical, record by record and case by case.
    assert out["node_decisions"]["allowed"] == py.allowed and out["node_decisions"]["counts"] == dict(py.counts)
    assert [k["string"] for k in out["browser"]["cases"]] == [k["reason"] for k in VECTORS["cases"]]
    assert [k["cmp"] for k in out["browser"]["cases"]] == [k["reason"] for k in VECTORS["cases"]]
    for side in ("node", "browser"):
        assert out[side]["consent"] == dict(py.counts) and out[side]["consent_reported"] is True
        assert out[side]["num_examples"] == len(used)
    assert out["node_segment_total"] == len(used)  # segments (activation) use the same mapping
    assert live_model.round(out["node"]["round_id"])["accepted"] == 2  # node's and the browser's updates

    # The CMP answer flipped to "reject" between the run's start and its end: the update is discarded, not queued.
    assert out["flip"]["error"] == "ConsentError" and out["flip"]["asked"] == 2 and out["flip"]["pending"] == 0
    assert "tcf_purpose_denied 90" in out["flip"]["message"]

    # Updates: the Python SDK's trainer on the records Python allowed, in the same order.
    trainer = Trainer(live_model.artifact)
    x, y, _ = trainer.manifest.schema().encode([records[i] for i in used])
    old = params = trainer.initial_params()
    for order in orders:
        o = np.asarray(order)
        params = trainer.train(params, (x[o], y[o]), epochs=1, lr=0.1, shuffle=False).params
    ref = build_update(params, old, trainer.manifest.params, clip_norm=0.5, num_examples=len(used))
    node, browser = (np.frombuffer(bytes.fromhex(out[side]["delta"]), "<f4") for side in ("node", "browser"))
    assert_native_identical(node, ref.vector, "consent-parity update")
    s = assert_wasm_close(browser, ref.vector, "consent-parity update (Chromium)")
    print(f"update: node == python bytes; browser max |delta - python| {float(np.max(np.abs(browser - ref.vector))):.3g} "
          f"= {s:.1f} float32 spacings at max |delta| {float(np.max(np.abs(ref.vector))):.3g}")

    # The server holds the counts per reason (audit + KPI), never a record.
    kpi = requests.get(f"{base}/v1/kpis", params={"model": model}, headers=h, timeout=30).json()
    consent = kpi["governed_training_coverage"]["consent"]
    assert consent["reports"] == 2 and consent["records_by_reason"] == {k: 2 * v for k, v in sorted(py.counts.items())}
