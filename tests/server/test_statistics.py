"""Federated feature statistics end to end (issue #15): real server over loopback HTTP, real SDK clients.

Parity (noise off, k = 1: the federated fit equals the central fit), the k rule on rare categories,
epsilon in the ledger and the audit chain, consent (non-consented records are never measured, a
withdrawn device is refused), bad bodies (4xx with codes, nothing folded), idempotent retries, the
readiness assessment's verdicts.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from edge_sdk import Client
from edge_sdk import statistics as edge_stats
from examples.demo.statistics import BANK_DECLARATION, central_schema
from fedmark.contract.statistics import StatisticsPlan, local_statistics
from server.aggregation import PrivacyLedger

PURPOSE = "propensity_scoring"


@pytest.fixture(scope="module")
def bank_rows() -> list[dict[str, Any]]:
    from models import data

    rows = data.load_bank()[:1200]
    return [dict(r, consent=(f"{PURPOSE},analytics" if i % 10 else "analytics")) for i, r in enumerate(rows)]


def _wide(decl: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The declaration with ranges that hold every value (no clipping bites): the exact-parity case."""
    d = copy.deepcopy(decl)
    for name, spec in d["columns"].items():
        if spec["kind"] == "numeric":
            vals = [float(r[name]) for r in rows]
            spec["range"] = [min(vals) - 1, max(vals) + 1]
    return d


def _open(lv: Any, decl: dict[str, Any], model: str = "bank", **cfg: Any) -> dict[str, Any]:
    r = lv.admin("POST", f"/v1/models/{model}/statistics", json={"declaration": decl, "config": cfg,
                                                                  "purpose": PURPOSE})
    assert r.status_code == 201, r.text
    return r.json()


def _client(lv: Any, tmp: Path, device: str, region: str = "eu") -> Client:
    return Client(lv.base_url, app_key=lv.app_key(region), device_id=device, region=region,
                  storage_dir=tmp / device, allow_insecure_http=True)


def _release(lv: Any, task: dict[str, Any], model: str = "bank") -> dict[str, Any]:
    r = lv.admin("POST", f"/v1/models/{model}/statistics/{task['task_id']}/release")
    assert r.status_code == 200, r.text
    return r.json()


def test_noise_off_k1_equals_the_central_fit(live, tmp_path, bank_rows):
    decl = _wide(BANK_DECLARATION, bank_rows)
    task = _open(live, decl, noise_multiplier=0, k=1, clip=1e12)
    for d in range(12):
        out = _client(live, tmp_path, f"dev{d}", ("eu", "us")[d % 2]).report_statistics("bank",
                                                                                         bank_rows[d * 100:(d + 1) * 100])
        assert out["accepted"] and out["used"] == 90 and out["excluded_no_consent"] == 10
    rel = _release(live, task)
    consented = [r for r in bank_rows if PURPOSE in r["consent"]]
    central = central_schema(consented).to_json()
    fed = rel["fitted_schema"]
    # counts exact: every released category count equals the pooled count
    for name, spec in decl["columns"].items():
        if spec["kind"] == "categorical":
            pooled: dict[str, int] = {}
            for r in consented:
                pooled[str(r[name])] = pooled.get(str(r[name]), 0) + 1
            assert rel["totals"]["columns"][name]["values"] == pooled, name
    assert rel["totals"]["records"] == len(consented) == 1080
    assert rel["epsilon"] is None and rel["noise_stddev"] == 0
    # moments to float tolerance, vocabularies and the label rule exactly
    assert [c["name"] for c in fed["columns"]] == [c["name"] for c in central["columns"]]
    for f, c in zip(fed["columns"], central["columns"]):
        if c["kind"] == "numeric":
            assert f["mean"] == pytest.approx(c["mean"], rel=1e-9, abs=1e-9), c["name"]
            assert f["std"] == pytest.approx(c["std"], rel=1e-7), c["name"]
        else:
            assert f == c
    assert (fed["label"], fed["positive"], fed["width"]) == (central["label"], central["positive"], central["width"])


def test_rare_categories_need_k_devices(make_live, tmp_path):
    decl = {"label": "y", "positive": "yes", "columns": {"x": {"kind": "numeric", "range": [0, 10]},
                                                         "city": {"kind": "categorical"},
                                                         "street": {"kind": "categorical"}}}
    with make_live() as lv:
        task = _open(lv, decl, noise_multiplier=0, k=3, clip=1e9)
        for d in range(4):
            city = ["lisbon"] * 5 + (["faro"] if d < 2 else []) + (["braga"] if d < 3 else [])
            rows = [{"x": i, "city": c, "street": f"street-of-{d}", "y": "yes" if i % 2 else "no",
                     "consent": PURPOSE} for i, c in enumerate(city)]
            _client(lv, tmp_path, f"k{d}").report_statistics("bank", rows)
        rel = _release(lv, task)
        values = rel["totals"]["columns"]["city"]["values"]
        assert values == {"lisbon": 20, "braga": 3}  # faro: 2 devices < k = 3, withheld with its count
        assert rel["suppressed_values"] == {"city": 1, "street": 4}
        assert "faro" not in json.dumps(rel) and "street-of" not in json.dumps(rel)
        assert rel["fitted_schema"]["columns"][1]["vocabulary"] == ["braga", "lisbon"]
        # every street is one device's: nothing released, so the column is hashed (no vocabulary to leak)
        assert rel["hashed_columns"] == ["street"]
        assert rel["fitted_schema"]["columns"][2] == {"name": "street", "kind": "hash", "buckets": 8}


def test_epsilon_is_in_the_ledger_and_the_audit(make_live, tmp_path):
    decl = {"label": "y", "positive": "yes", "columns": {"x": {"kind": "numeric", "range": [0, 10]}}}
    rows = [{"x": i % 10, "y": "yes" if i % 3 else "no", "consent": PURPOSE} for i in range(30)]
    with make_live() as lv:
        eps = []
        for n in range(2):
            task = _open(lv, decl, noise_multiplier=1.5, k=1, clip=20.0, delta=1e-5)
            for d in range(3):
                _client(lv, tmp_path, f"e{n}-{d}").report_statistics("bank", rows)
            rel = _release(lv, task)
            assert rel["schema_version"] == n + 1
            eps.append(rel["epsilon"])
        one = PrivacyLedger().record(1.5, 1.0)
        assert eps[0] == pytest.approx(one.epsilon(1e-5))
        assert eps[1] == pytest.approx(one.record(1.5, 1.0).epsilon(1e-5))  # releases compose in the ledger
        assert eps[1] > eps[0] > 0
        entries = lv.admin("GET", "/v1/audit?kind=statistics.released").json()
        entries = entries.get("entries", entries) if isinstance(entries, dict) else entries
        released = [e for e in entries if e["kind"] == "statistics.released"]
        assert [e["detail"]["epsilon"] for e in released] == pytest.approx(eps)
        assert lv.admin("GET", "/v1/audit/verify").json()["ok"] is True


def test_non_consented_records_are_never_measured_and_withdrawn_devices_refused(make_live, tmp_path):
    decl = {"label": "y", "positive": "yes", "columns": {"x": {"kind": "numeric", "range": [0, 100]}}}
    rows = ([{"x": 1, "y": "yes", "consent": PURPOSE}] * 3 + [{"x": 99, "y": "no", "consent": "analytics"}] * 5)
    task_doc = {"declaration": decl, "purpose": PURPOSE, "consent_purposes": None, "consent_signals": None}
    m = edge_stats.measure(rows, task_doc)
    # only the 3 consented x = 1 are summed (as offsets from the range's center, 50): never the 99s
    assert m.body["records"] == 3 and m.body["columns"]["x"]["sum"] == 3 * (1 - 50) and m.excluded_no_consent == 5
    assert m.body["excluded"] == {"consent": 5, "rules": 0}
    with make_live() as lv:
        task = _open(lv, decl, noise_multiplier=0, k=1, clip=1e9)
        c = _client(lv, tmp_path, "w1")
        c.enroll()
        assert lv.admin("POST", "/v1/admin/devices/w1/consent-withdrawn", json={}).status_code == 200
        token = c.credentials.token()
        body = json.dumps(m.body).encode()
        r = lv.call("POST", task["report_url"], token, data=body,
                    headers={"Content-Type": "application/json", "Idempotency-Key": "k1"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "consent_withdrawn"
        assert lv.admin("POST", f"/v1/models/bank/statistics/{task['task_id']}/release").json()["error"]["code"] \
            == "no_contributions"


def _body(decl: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    b = local_statistics(rows, StatisticsPlan.from_declaration(decl))
    b.update(violations={}, excluded={"consent": 0, "rules": 0})
    return b


def test_bad_bodies_are_refused_with_codes_and_nothing_is_folded(live, tmp_path):
    decl = {"label": "y", "positive": "yes", "columns": {"x": {"kind": "numeric", "range": [0, 10]},
                                                         "c": {"kind": "categorical", "max_values": 4}}}
    rows = [{"x": 2, "c": "a", "y": "yes"}, {"x": 5, "c": "b", "y": "no"}]
    good = _body(decl, rows)
    task = _open(live, decl, noise_multiplier=0, k=1, clip=1e9)
    token = live.enroll("bad1")

    def send(body: Any, key: str = "k", raw: bytes | None = None) -> Any:
        data = raw if raw is not None else json.dumps(body).encode()
        return live.call("POST", task["report_url"], token, data=data,
                         headers={"Content-Type": "application/json", "Idempotency-Key": key})

    def variant(**changes: Any) -> dict[str, Any]:
        b = copy.deepcopy(good)
        for path, value in changes.items():
            *head, last = path.split("__")
            target = b
            for h in head:
                target = target[h]
            target[last] = value
        return b

    cases = [
        (None, b"not json", "bad_statistics"),
        ([1, 2], None, "bad_statistics"),
        (variant(records=-1), None, "bad_statistics"),
        (variant(records=10 ** 12), None, "bad_statistics"),
        (variant(columns__x__sum=float("inf")), None, "bad_statistics"),   # JSON Infinity: not a finite number
        (variant(columns__x__sum=10 ** 400), None, "bad_statistics"),      # an integer past any float
        (variant(columns__x__sum=1e6), None, "out_of_range"),              # impossible inside [0, 10]
        (variant(columns__x__sumsq=-4.0), None, "out_of_range"),
        (variant(columns__x__count=3), None, "bad_statistics"),            # more values than records
        (variant(columns__zz={"missing": 0}), None, "bad_columns"),
        (variant(columns__c__values={str(i): 0 for i in range(9)}), None, "bad_statistics"),
        (variant(columns__c__values={"a": 5}), None, "bad_statistics"),    # counts beyond the records
        (variant(violations={"nope:rule": 1}), None, "bad_rules"),
        (variant(records=True), None, "bad_statistics"),
    ]
    for body, raw, code in cases:
        r = send(body, raw=raw)
        assert r.status_code == 400, (body, r.text)
        got = r.json()["error"]["code"]
        assert got == code or (code == "bad_statistics" and got in ("non_finite", "bad_statistics")), (body, got)
    r = send(good, key="")
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_header"
    assert live.call("POST", "/v1/statistics/st-nope/reports", token, data=b"{}",
                     headers={"Idempotency-Key": "x"}).status_code == 404
    # nothing was stored by any refusal: the release has nothing to fold
    r = live.admin("POST", f"/v1/models/bank/statistics/{task['task_id']}/release")
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_contributions"
    # exactly once: the good body is stored, its retry replays, a changed body under the key conflicts
    assert send(good, key="g1").status_code == 202
    again = send(good, key="g1")
    assert again.status_code == 200 and again.json()["report_id"] == 1
    assert send(variant(columns__x__sum=3.0), key="g1").json()["error"]["code"] == "idempotency_conflict"
    assert send(good, key="g2").json()["error"]["code"] == "duplicate_contribution"
    rel = _release(live, task)
    assert rel["contributors"] == 1 and rel["totals"]["records"] == 2
    assert send(good, key="g1").status_code == 200  # a retry after the release still gets its answer
    assert send(good, key="g3").json()["error"]["code"] == "task_closed"


def test_device_only_roles_and_admin_only_opening(make_live):
    with make_live() as lv:
        token = lv.enroll("role1")
        r = lv.call("POST", "/v1/models/bank/statistics", token, json={"declaration": BANK_DECLARATION})
        assert r.status_code == 403
        r = lv.admin("POST", "/v1/models/bank/statistics", json={"declaration": {"columns": {"x": "numeric"}}})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_plan" and "range" in r.json()["error"]["message"]
        r = lv.admin("POST", "/v1/models/bank/statistics", json={"declaration": BANK_DECLARATION,
                                                                  "config": {"k": 0}})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_config"
        for bad in ({"clip": 10 ** 400}, {"k": float("inf")}):  # past any float / no integer: a 400, not a 500
            r = lv.admin("POST", "/v1/models/bank/statistics", data=json.dumps({"declaration": BANK_DECLARATION,
                                                                                "config": bad}),
                         headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "bad_config", (bad, r.text)
        r = lv.call("POST", "/v1/statistics/tasks", token, json={"model": "bank"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "no_task"
        # releases are read by admins and marketers only, through the one access decision
        assert lv.call("GET", "/v1/models/bank/statistics", token).status_code == 403
        mt = lv.admin("POST", "/v1/admin/tokens", json={"role": "marketer", "name": "ana"}).json()["token"]
        r = lv.call("GET", "/v1/models/bank/readiness", mt)
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_model"  # not published: hidden
        for bad in ("abc", "0", "9" * 5000):
            r = lv.admin("GET", f"/v1/models/bank/statistics?version={bad}")
            assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request", bad
        assert lv.admin("GET", "/v1/models/bank/statistics").json()["error"]["code"] == "no_statistics"


def test_readiness_names_the_cell_that_is_not_ready(make_live, tmp_path, capsys):
    decl = {"label": "y", "positive": "yes", "columns": {"x": {"kind": "numeric", "range": [0, 10]},
                                                         "c": {"kind": "categorical"}}}
    with make_live() as lv:
        for n, poor in enumerate((False, True)):
            task = _open(lv, decl, noise_multiplier=0, k=2, clip=1e9)
            for d in range(4):
                region = "us" if d >= 2 else "eu"
                weak = region == "us" and poor
                rows = [{"x": i % 10 if not (weak and i % 2) else None, "c": ("a", "b")[i % 2] if not weak else "a",
                         "y": ("yes", "no")[i % 2], "consent": PURPOSE if not (weak and i % 3) else "analytics"}
                        for i in range(30)]
                _client(lv, tmp_path, f"r{n}-{d}", region).report_statistics("bank", rows)
            _release(lv, task)
        a = lv.admin("GET", "/v1/models/bank/readiness").json()
        assert a["schema_version"] == 2 and a["previous_version"] == 1 and a["ready"] is False
        cells = {c["region"]: c for c in a["cells"].values()}
        assert cells["eu"]["ready"] is True and cells["us"]["ready"] is False
        text = " ".join(a["summary"])
        assert "us / acme is not ready" in text and "consent covers" in text and "'x' is missing" in text
        assert "drifted" in text  # column c went from a/b to all a in us
        assert cells["us"]["checks"]["psi"]["c"] > 0.25 and math.isclose(cells["eu"]["checks"]["psi"]["c"], 0.0,
                                                                          abs_tol=1e-9)
        # the same assessment from the command line; exit status 1 while a cell is not ready
        from fedmark_cli import main

        assert main(["assess", "bank", "--server", lv.base_url, "--token", lv.admin_token]) == 1
        printed = capsys.readouterr().out
        assert "us / acme is not ready" in printed and "NOT READY" in printed and "readiness from statistics release v2" in printed


def test_export_takes_the_released_schema(make_live, tmp_path, capsys):
    """`fedmark statistics MODEL --out FILE` then `fedmark export tabular --fitted-schema FILE`: no pooled data."""
    from edge_sdk.trainer import Trainer
    from fedmark_cli import main

    decl = {"label": "y", "positive": "yes", "columns": {"x": {"kind": "numeric", "range": [0, 10], "range_rule": True},
                                                         "c": {"kind": "categorical", "required": True}}}
    with make_live() as lv:
        task = _open(lv, decl, noise_multiplier=0, k=1, clip=1e9)
        for d in range(3):
            rows = [{"x": (i + d) % 10, "c": ("a", "b")[i % 2], "y": ("yes", "no")[i % 3 == 0], "consent": PURPOSE}
                    for i in range(20)]
            _client(lv, tmp_path, f"x{d}").report_statistics("bank", rows)
        rel = _release(lv, task)
        saved = tmp_path / "release.json"
        assert main(["statistics", "bank", "--server", lv.base_url, "--token", lv.admin_token,
                     "--out", str(saved)]) == 0
    out = tmp_path / "art"
    rc = main(["export", "tabular", "--fitted-schema", str(saved), "--hidden", "4", "--name", "bank", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    m = Trainer(out).manifest
    assert m.schema().to_json() == rel["fitted_schema"]
    assert m.features["rules"] == {"columns": {"x": {"kind": "numeric", "range_rule": True, "range": [0, 10]},
                                               "c": {"kind": "categorical", "required": True}}}
    assert m.extra["data"]["schema"] == "federated statistics release v1"


def test_readiness_does_not_judge_cells_drowned_in_noise():
    from server.governance import readiness

    view = {"records": 150.0, "devices": 6, "excluded": {"consent": 0.0, "rules": 0.0}, "violations": {},
            "columns": {"x": {"missing": 80.0, "count": 70.0, "sum": 0.0, "sumsq": 0.0}}}
    rel = {"model": "m", "schema_version": 1, "k": 5, "epsilon": 4.7, "declaration": {"label": None},
           "cells": {"eu|acme": view}, "noise_stddev": 50.0}
    a = readiness.assess(rel, None)
    cell = a["cells"]["eu|acme"]
    assert cell["ready"] is False and cell["reasons"][0].startswith("too few records (150")
    assert "missing" not in " ".join(cell["reasons"])  # the 53 % missing is not claimed: it is mostly noise
    quiet = readiness.assess(dict(rel, noise_stddev=0.0), None)["cells"]["eu|acme"]
    assert quiet["ready"] is False and "column 'x' is missing in 53% of records" in quiet["reasons"][0]
