"""The JavaScript quality rules (edge_sdk/web/src/statistics.js) decide exactly as fedmark.contract.statistics.

make_vectors.py records, from the Python implementation, which records pass each rule set, the violation
counts per rule, the rules each record broke, the refusal messages of unreadable declarations, and what
``edge_sdk.data.prepare_tabular`` keeps and reports for a manifest carrying ``features.rules``; node
(tests/web/js/rules.test.mjs) demands the same from the JS SDK.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.web.parity import assert_native_identical

HERE = Path(__file__).resolve().parent


def test_javascript_rules_decide_like_python(tmp_path, run_node, js_tests):
    out = tmp_path / "vectors.json"
    subprocess.run([sys.executable, str(HERE / "make_vectors.py"), str(out)], check=True, timeout=60)
    v = json.loads(out.read_text())["rules"]
    assert any(not all(p["passed"]) and any(p["passed"]) for p in v["plans"])
    assert sum(1 for p in v["prepare"] if "message" in p) == 2
    output = run_node([js_tests / "rules.test.mjs"], {"FEDMARK_VECTORS": str(out)})
    passed = re.search(r"# pass (\d+)", output) or re.search(r"ℹ pass (\d+)", output)
    assert passed and int(passed.group(1)) == 5, output


# --------------------------------------------------------------------------- a Node device, a real server
#: Rules for the bank propensity artifact: customers 25-60, a known job, balance present.  On the real records
#: a share of the consented customers break one; they must not train on any device.
BANK_RULES = {"columns": {"age": {"kind": "numeric", "required": True, "range_rule": True, "range": [25, 60]},
                          "job": {"kind": "categorical", "allowed": ["admin.", "technician", "management",
                                                                     "blue-collar", "services", "retired"]},
                          "balance": {"kind": "numeric", "required": True}}}


def _with_rules(src: Path, dst: Path, rules: object) -> Path:
    """A copy of an exported artifact whose manifest carries ``features.rules`` (the other files unchanged)."""
    shutil.copytree(src, dst)
    doc = json.loads((dst / "manifest.json").read_text())
    doc["features"]["rules"] = rules
    (dst / "manifest.json").write_text(json.dumps(doc))
    return dst


@pytest.fixture(scope="module")
def rules_server(tmp_path_factory, propensity_artifact):
    """A real server with two propensity models: one with readable rules, one whose rules no SDK can read."""
    from server.testing import running_server
    from tests.web.conftest import _artifact_tgz

    tmp = tmp_path_factory.mktemp("rules")
    arts = {"ruled": _with_rules(propensity_artifact, tmp / "ruled", BANK_RULES),
            "unreadable": _with_rules(propensity_artifact, tmp / "unreadable",
                                      {"columns": {"age": {"kind": "numeric", "range_rule": True, "range": [60]}}})}
    with running_server(tmp / "server") as srv:
        h = {"Authorization": f"Bearer {srv.admin_token}"}
        cfg = {"goal": 10, "min_clients": 1, "clip": {"norm": 0.5, "adaptive": False},
               "hyperparams": {"epochs": 2, "learning_rate": 0.1}}
        for name, art in arts.items():
            r = requests.post(f"{srv.base_url}/v1/models/{name}/versions", data=_artifact_tgz(art),
                              headers={**h, "Content-Type": "application/gzip"}, timeout=60)
            assert r.status_code in (200, 201), r.text
            r = requests.put(f"{srv.base_url}/v1/models/{name}/training", json=cfg, headers=h, timeout=30)
            assert r.status_code == 200, r.text
        r = requests.post(f"{srv.base_url}/v1/admin/app-keys", json={"partner": "default", "region": "eu"},
                          headers=h, timeout=30)
        assert r.status_code == 201, r.text
        yield srv, h, r.json()["app_key"], arts


def test_node_device_trains_a_rules_bearing_model_like_python(tmp_path, rules_server, bank_records, run_node,
                                                              js_tests, node_modules):
    from edge_sdk.data import prepare_tabular
    from edge_sdk.trainer import Trainer
    from edge_sdk.update import build_update

    srv, h, app_key, arts = rules_server
    records = bank_records(400)
    trainer = Trainer(arts["ruled"])
    x, y, kept, report = prepare_tabular(records, trainer.manifest, with_label=True)
    consented = sum("propensity_scoring" in r["consent"] for r in records)
    assert 0 < len(kept) < consented - 20, "the rules must exclude a real share of the consented records"
    rng = np.random.default_rng(11)
    orders = [rng.permutation(len(kept)).tolist() for _ in range(2)]  # the task says epochs=2
    spec = {"server": srv.base_url, "app_key": app_key, "model": "ruled", "unreadable_model": "unreadable",
            "records": records, "orders": orders, "storage": str(tmp_path / "devices"), "out": str(tmp_path / "o.json")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_node([js_tests / "rules_round.test.mjs"], {"FEDMARK_RULES_ROUND": str(tmp_path / "spec.json")})
    out = json.loads((tmp_path / "o.json").read_text())

    # the Python SDK on the same records: the same records kept, the same counts, the same update bytes
    assert out["num_examples"] == out["used"] == len(kept)
    assert out["rule_violations"] == dict(report.rule_violations) and set(report.rule_violations) >= {
        "age:range", "job:allowed"}
    assert out["rejected"] == report.rejected
    assert out["row_errors"] == [[e.row, e.column, e.reason] for e in report.row_errors]
    old = trainer.initial_params()
    params = old
    for order in orders:
        o = np.asarray(order)
        params = trainer.train(params, (x[o], y[o]), epochs=1, lr=out["lr"], shuffle=False).params
    ref = build_update(params, old, trainer.manifest.params, clip_norm=out["clip_norm"], num_examples=len(kept))
    js = np.frombuffer(bytes.fromhex(out["delta"]), "<f4")
    assert_native_identical(js, ref.vector, "Node update of a rules-bearing model")
    r = requests.get(f"{srv.base_url}/v1/rounds/{out['round_id']}", headers=h, timeout=30)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    # nothing reached the model whose rules cannot be read
    r = requests.get(f"{srv.base_url}/v1/models/unreadable/rounds", headers=h, timeout=30)
    assert r.status_code == 200 and r.json()["rounds"], r.text
    for rnd in r.json()["rounds"]:
        got = requests.get(f"{srv.base_url}/v1/rounds/{rnd['round_id']}", headers=h, timeout=30)
        assert got.status_code == 200 and got.json()["accepted"] == 0, got.text


STATS_DECLARATION = {"label": "y", "positive": "yes", "columns": {
    "age": {"kind": "numeric", "range": [25, 60], "range_rule": True},
    "balance": {"kind": "numeric", "range": [-10000, 110000], "transform": "log1p"},
    "job": {"kind": "categorical", "allowed": BANK_RULES["columns"]["job"]["allowed"]},
    "marital": {"kind": "categorical", "required": True},
    "housing": {"kind": "boolean"}}}


def test_node_device_reports_statistics_like_python(tmp_path, rules_server, bank_records, run_node, js_tests,
                                                    node_modules):
    from edge_sdk import statistics as edge_stats

    srv, h, app_key, _ = rules_server
    r = requests.post(f"{srv.base_url}/v1/models/bankstats/statistics", headers=h, timeout=30,
                      json={"declaration": STATS_DECLARATION, "purpose": "propensity_scoring",
                            "config": {"noise_multiplier": 0, "k": 1, "clip": 1e12}})
    assert r.status_code == 201, r.text
    task = r.json()
    records = bank_records(300)
    spec = {"server": srv.base_url, "app_key": app_key, "model": "bankstats", "records": records,
            "storage": str(tmp_path / "devices"), "out": str(tmp_path / "o.json")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_node([js_tests / "stats_report.test.mjs"], {"FEDMARK_STATS_REPORT": str(tmp_path / "spec.json")})
    out = json.loads((tmp_path / "o.json").read_text())

    device_task = {"task_id": task["task_id"], "declaration": STATS_DECLARATION, "purpose": "propensity_scoring"}
    m = edge_stats.measure(records, device_task, consent_field="consent")
    body = json.dumps(m.body, sort_keys=True).encode()
    # the same bytes: the key is a hash of the task and the body
    assert out["idempotencyKey"] == edge_stats.idempotency_key(task["task_id"], body)
    assert (out["used"], out["excludedNoConsent"], out["failedRules"]) == (m.used, m.excluded_no_consent,
                                                                             m.failed_rules)
    assert m.failed_rules > 20 and m.excluded_no_consent == 30
    r = requests.post(f"{srv.base_url}/v1/models/bankstats/statistics/{task['task_id']}/release", headers=h,
                      timeout=30)
    assert r.status_code == 200, r.text
    totals = r.json()["totals"]
    assert totals["records"] == m.used
    for name, col in m.body["columns"].items():
        got = totals["columns"][name]
        if "sum" in col:
            # the server's fold (clip scale, noise of 0) may move the last bit; the body itself was byte-identical
            assert got["count"] == col["count"], name
            assert (got["sum"], got["sumsq"]) == pytest.approx((col["sum"], col["sumsq"]), rel=1e-12, abs=1e-12), name
        else:
            assert got["values"] == col["values"], name
