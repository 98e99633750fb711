"""The JavaScript SDK does what the Python SDK does, with the same results: in Node and in headless Chromium.

Against one real server: a governed propensity model is evaluated locally (loss, score histogram), validated
federatedly (aggregates only) and scored into audience segments; a recommender trains one round from a given
user vector with a fixed negative sample (the Python SDK's own plan, replayed) and recommends.  The Python SDK
runs the same steps as a third device.  Local metrics, histograms and segment counts must be equal, updates
and user vectors byte-identical in Node (the same native kernels as Python's onnxruntime) and within the
float32 bound of tests/web/parity.py in Chromium (WebAssembly kernels: tests/web/test_wasm_kernels.py),
recommendations identical.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import requests

from edge_sdk import Client, DeviceConditions, RetryPolicy
from edge_sdk.trainer import Trainer
from fedmark.contract import Manifest
from tests.web.conftest import _artifact_tgz
from tests.web.parity import assert_native_identical, assert_wasm_close

EPOCHS, LR, CLIP = 2, 0.5, 0.05


def _blocks(b) -> dict:
    return {"idx": b.idx.tolist(), "labels": b.labels.tolist(), "mask": b.mask.tolist()}


def _f32(h: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(h), dtype="<f4")


@pytest.mark.browser
def test_js_sdk_matches_python_sdk_in_node_and_browser(tmp_path, live_model, page_server, bank_records,
                                                       recommender_artifact, run_node, js_tests):
    base, h = live_model.base_url, {"Authorization": f"Bearer {live_model.admin_token}"}
    pmodel, rmodel = "p-parity", "r-parity"
    purpose = Manifest.loads((live_model.artifact / "manifest.json").read_text()).purpose
    for name, art in ((pmodel, live_model.artifact), (rmodel, recommender_artifact)):
        r = requests.post(f"{base}/v1/models/{name}/versions", data=_artifact_tgz(art),
                          headers={**h, "Content-Type": "application/gzip"}, timeout=60)
        assert r.status_code in (200, 201), r.text
    requests.put(f"{base}/v1/models/{pmodel}/policy", headers=h, timeout=30, json={"purpose": purpose}).raise_for_status()
    requests.put(f"{base}/v1/models/{rmodel}/training", headers=h, timeout=30, json={
        "goal": 10, "min_clients": 1, "clip": {"norm": CLIP, "adaptive": False},
        "hyperparams": {"epochs": EPOCHS, "learning_rate": LR}}).raise_for_status()

    holdout = bank_records(300)
    rec = Trainer(recommender_artifact)
    items = [str(c) for c in rec.manifest.features["items"]]
    picks = [3, 17, 250, 1200, 3000, 42, 999]
    rpurpose = rec.manifest.purpose
    interactions = [{"CustomerID": "17850", "StockCode": items[i], "consent": rpurpose} for i in picks] + \
                   [{"CustomerID": "17850", "StockCode": items[5], "consent": "analytics"}]  # not consented
    positives = np.array(sorted(picks), dtype=np.int64)
    plan = rec.recommender_plan(positives, epochs=EPOCHS, seed=7)
    user0 = rec.initial_local(4)["user_emb"]

    # The Python SDK: the same steps, as a third device.
    py = Client(base, app_key=live_model.app_key, device_id="parity-py", region="eu", storage_dir=tmp_path / "py",
                retry=RetryPolicy(max_retries=1, base_backoff=0.01))
    py_answer = py.validate(pmodel, holdout)  # a governed model's files are fetched under an (evaluation) task
    ev = py.evaluate(pmodel, holdout)
    py_segments = py.report_segments(pmodel, holdout)
    py.sync(rmodel)
    py.personal.save(rmodel, {"user_emb": user0}, [])
    py_rep = py.train(rmodel, interactions, seed=7,
                      conditions=DeviceConditions(charging=True, unmetered=True, idle=True, battery=1.0))
    py_recs = py.recommend(rmodel, 5)
    py_user = py.personal.load(rmodel)[0]["user_emb"]
    assert py_rep.status == "accepted" and py_rep.num_examples == len(picks)

    spec = {"server": base, "origin": page_server.origin, "app_key": live_model.app_key, "propensity_model": pmodel,
            "holdout": holdout, "conditions": {"charging": True, "unmetered": True, "idle": True, "battery": 1.0},
            "recommender": {"model": rmodel, "records": interactions, "user_emb": user0.astype("<f4").tobytes().hex(),
                            "plan": {"positives": plan.positives.tolist(), "recon": _blocks(plan.recon),
                                     "epochs": [_blocks(b) for b in plan.epochs]}},
            "storage": str(tmp_path / "devices"), "out": str(tmp_path / "out.json")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_node([js_tests / "sdk_parity.test.mjs"], {"FEDMARK_SDK_PARITY": str(tmp_path / "spec.json")}, timeout=160.0)
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["browser_errors"] == []

    for side in ("node", "browser"):
        js = out[side]
        # local evaluation: the same aggregates
        assert js["evaluation"]["n"] == ev.metrics["n"] == ev.histogram.count
        assert abs(js["evaluation"]["loss"] - ev.metrics["loss"]) <= 1e-6, (side, js["evaluation"]["loss"], ev.metrics["loss"])
        assert js["evaluation"]["histogram"]["pos"] == ev.histogram.pos.tolist()
        assert js["evaluation"]["histogram"]["neg"] == ev.histogram.neg.tolist()
        assert abs(js["evaluation"]["histogram"]["score_sum_pos"] - ev.histogram.score_sum_pos) <= 1e-4
        # federated validation accepted by the server; segment counts equal
        assert js["validate_accepted"] == py_answer["accepted"]
        assert js["segments"] == py_segments
        # recommender round and recommendations
        r = js["recommender"]
        assert r["num_examples"] == len(picks) and r["consent"] == {"allowed": len(picks), "purpose_not_consented": 1}
        d_update = float(np.max(np.abs(_f32(r["delta"]) - py_rep.update.vector)))
        d_user = float(np.max(np.abs(_f32(r["user_emb"]) - py_user)))
        if side == "node":  # the same native kernels as Python: the same bytes
            assert_native_identical(_f32(r["delta"]), py_rep.update.vector, "recommender update (Node)")
            assert_native_identical(_f32(r["user_emb"]), py_user, "user vector (Node)")
            figures = "bytes identical"
        else:  # WebAssembly kernels: the float32 bound (tests/web/parity.py, tests/web/test_wasm_kernels.py)
            figures = (f"{assert_wasm_close(_f32(r['delta']), py_rep.update.vector, 'recommender update'):.1f} and "
                       f"{assert_wasm_close(_f32(r['user_emb']), py_user, 'user vector'):.1f} float32 spacings")
        print(f"{side}: max |update - Python| {d_update:.3g}, max |user vector - Python| {d_user:.3g} ({figures}), "
              f"recommend {r['recommend']} vs {py_recs}")
        assert np.array_equal(np.flatnonzero(_f32(r["delta"])), np.flatnonzero(py_rep.update.vector))
        assert r["recommend"] == py_recs and not set(r["recommend"]) & {items[i] for i in picks}

    assert live_model.round(py_rep.round_id)["accepted"] == 3  # Python, Node and the browser in one round
    summary = requests.get(f"{base}/v1/models/{pmodel}/evaluations", headers=h, timeout=30).json()
    assert summary["evaluators"] == 3  # the federated evaluation counts the three devices' aggregates
