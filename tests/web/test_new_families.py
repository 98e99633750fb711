"""New families in JavaScript: Node trains the regression and multiclass artifacts like the Python SDK,
the Node Client completes a round of the multiclass model and a headless Chromium one of the regression
model against the real server.  The
regression model embeds the country (an Embedding fed by an "index" column), so both runtimes train
an Embedding too.

The artifacts are exported by ``models.export`` from the Online Retail customer tables
(models.tables) in a child process (TensorFlow stays out of the test process).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from edge_sdk.families import protocol_for
from edge_sdk.trainer import Trainer
from tests.web.parity import assert_native_identical, assert_wasm_close

ROOT = Path(__file__).resolve().parents[2]
PURPOSE = "customer_insights"
EXPORT = """
import sys
from models import tables
from models.export import export
rows = tables.build_customer_tables()[sys.argv[2]]
embed = {"country": int(sys.argv[5])} if len(sys.argv) > 5 else None
export("tabular", sys.argv[1], rows=rows[:1200], label=sys.argv[3], task=sys.argv[4], drop=["customer_id"],
       hidden=8, purpose="customer_insights", model=sys.argv[2], seed=0, embed=embed)
"""


def _f32(h: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(h), dtype="<f4")


@pytest.fixture(scope="module")
def tabular_artifacts(tmp_path_factory) -> dict[str, Path]:
    out = {}
    # the regression model feeds the country to a 4-wide Embedding (an "index" column: ONNX Gather/ScatterND),
    # so Node and Chromium run an Embedding's lookup and gradient too
    for task, table, label, embed in (("regression", "customer_value", "next_3m_spend", ["4"]),
                                      ("multiclass", "next_offer", "next_offer", [])):
        d = tmp_path_factory.mktemp(task) / "artifact"
        proc = subprocess.run([sys.executable, "-c", EXPORT, str(d), table, label, task, *embed], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[task] = d
    kinds = {c.name: c.kind for c in Trainer(out["regression"]).manifest.schema().columns}
    assert kinds["country"] == "index"
    return out


@pytest.fixture(scope="module")
def table_rows():
    from models import tables

    return tables.build_customer_tables()


def test_node_trains_new_families_like_python(tmp_path, tabular_artifacts, table_rows, run_node, js_tests,
                                              node_modules):
    rng = np.random.default_rng(4)
    spec = {"out": str(tmp_path / "out.json"), "cases": {}}
    refs = {}
    for task, table in (("regression", "customer_value"), ("multiclass", "next_offer")):
        records = table_rows[table][1200:1700]
        tr = Trainer(tabular_artifacts[task])
        x, y, _ = tr.manifest.schema().encode(records)
        orders = [rng.permutation(len(x)).tolist() for _ in range(2)]
        params = tr.initial_params()
        for o in orders:
            params = tr.train(params, (x[o], y[o]), epochs=1, lr=0.1, shuffle=False).params
        ev = protocol_for(tr.manifest, tr).evaluate(None, "m", [{**r, "consent": tr.manifest.purpose} for r in records],
                                                     k=3, consent_field="consent", purposes=None)
        refs[task] = (x, y, params, tr.predict(params, x[:10]), ev.metrics)
        spec["cases"][task] = {"artifact": str(tabular_artifacts[task]), "records": records, "orders": orders,
                               "lr": 0.1}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_node([js_tests / "tabular_parity.test.mjs"], {"FEDMARK_TABULAR": str(tmp_path / "spec.json")})
    node = json.loads((tmp_path / "out.json").read_text())
    for task, (x, y, params, pred, metrics) in refs.items():
        n = node[task]
        assert np.array_equal(_f32(n["x"]), x.ravel()) and np.array_equal(_f32(n["y"]), y), task
        for h, p in zip(n["params"], params):  # Node runs the native kernels: the same bytes as Python
            assert_native_identical(_f32(h), p.ravel(), f"{task} parameters after 2 epochs")
        assert_native_identical(_f32(n["pred"]), pred.ravel(), f"{task} predictions")
        # evaluate() through the JS plug-in reports the Python SDK's metrics (MAE/RMSE, top-k accuracy)
        assert set(n["metrics"]) == set(metrics), task
        for name, value in metrics.items():
            assert n["metrics"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), (task, name)


@pytest.fixture(scope="module")
def live_model(tmp_path_factory, tabular_artifacts):
    """The real server with the regression model published and a round open (overrides the propensity one)."""
    from server.testing import running_server
    from tests.web.conftest import LiveModel, _artifact_tgz

    art = tabular_artifacts["regression"]
    with running_server(tmp_path_factory.mktemp("server")) as srv:
        h = {"Authorization": f"Bearer {srv.admin_token}"}
        r = requests.post(f"{srv.base_url}/v1/models/customer-value/versions", data=_artifact_tgz(art),
                          headers={**h, "Content-Type": "application/gzip"}, timeout=60)
        assert r.status_code in (200, 201), r.text
        cfg = {"goal": 10, "min_clients": 1, "clip": {"norm": 5.0, "adaptive": False},
               "hyperparams": {"epochs": 2, "learning_rate": 0.1}}
        assert requests.put(f"{srv.base_url}/v1/models/customer-value/training", json=cfg, headers=h,
                            timeout=30).status_code == 200
        # the multiclass model on the same server, for the Node Client's round
        r = requests.post(f"{srv.base_url}/v1/models/next-offer/versions", data=_artifact_tgz(tabular_artifacts["multiclass"]),
                          headers={**h, "Content-Type": "application/gzip"}, timeout=60)
        assert r.status_code in (200, 201), r.text
        assert requests.put(f"{srv.base_url}/v1/models/next-offer/training", json=cfg, headers=h,
                            timeout=30).status_code == 200
        r = requests.post(f"{srv.base_url}/v1/admin/app-keys", json={"partner": "default", "region": "eu"}, headers=h,
                          timeout=30)
        yield LiveModel(srv.base_url, srv.admin_token, "customer-value", 1, r.json()["app_key"], art)


def test_node_client_round_of_a_multiclass_model(tmp_path, live_model, tabular_artifacts, table_rows, reference,
                                                 run_node, js_tests, node_modules):
    art = tabular_artifacts["multiclass"]
    records = [{**r, "consent": PURPOSE} for r in table_rows["next_offer"][1200:1500]]
    holdout = [{**r, "consent": PURPOSE} for r in table_rows["next_offer"][1500:1700]]
    rng = np.random.default_rng(5)
    orders = [rng.permutation(len(records)).tolist() for _ in range(2)]
    spec = {"server": live_model.base_url, "app_key": live_model.app_key, "model": "next-offer", "records": records,
            "holdout": holdout, "orders": orders, "storage": str(tmp_path / "devices"), "out": str(tmp_path / "out.json"),
            "conditions": {"charging": True, "unmetered": True, "idle": True, "battery": 1.0}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_node([js_tests / "tabular_client.test.mjs"], {"FEDMARK_TABULAR_CLIENT": str(tmp_path / "spec.json")})
    out = json.loads((tmp_path / "out.json").read_text())
    assert live_model.round(out["round_id"])["accepted"] == 1 and out["num_examples"] == len(records)
    ref = reference(art, records, orders, out["lr"], out["clip_norm"])
    js = np.frombuffer(bytes.fromhex(out["delta"]), "<f4")
    assert js.size == ref.vector.size
    assert_native_identical(js, ref.vector, "Node Client multiclass update")
    tr = Trainer(art)
    ev = protocol_for(tr.manifest, tr).evaluate(None, "m", holdout, k=2, consent_field="consent", purposes=None)
    assert set(out["metrics"]) == set(ev.metrics) == {"accuracy", "top2_accuracy", "loss", "n"}
    for name, value in ev.metrics.items():
        assert out["metrics"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


@pytest.mark.browser
def test_browser_round_of_a_regression_model(tmp_path, live_model, page_server, table_rows, reference, run_node,
                                             js_tests):
    records = [{**r, "consent": PURPOSE} for r in table_rows["customer_value"][1200:1500]]
    rng = np.random.default_rng(12)
    orders = [rng.permutation(len(records)).tolist() for _ in range(2)]
    spec = {"origin": page_server.origin, "out": str(tmp_path / "out.json"),
            "screenshot": str(ROOT / "test-artifacts" / "browser_round_regression.png"),
            "page": {"appKey": live_model.app_key, "deviceId": "browser-cv", "model": live_model.model,
                     "records": records, "orders": orders,
                     "conditions": {"charging": True, "unmetered": True, "idle": True, "battery": 1.0}}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_node([js_tests / "browser_round.test.mjs"], {"FEDMARK_BROWSER": str(tmp_path / "spec.json")}, timeout=110.0)
    out = json.loads((tmp_path / "out.json").read_text())
    assert live_model.round(out["round_id"])["accepted"] == 1
    assert out["num_examples"] == len(records)
    ref = reference(live_model.artifact, records, orders, out["lr"], out["clip_norm"])
    js = np.frombuffer(bytes.fromhex(out["delta"]), "<f4")
    assert js.size == ref.vector.size
    s = assert_wasm_close(js, ref.vector, "browser regression round update")
    print(f"browser regression round: {s:.1f} float32 spacings from the Python SDK's update")
