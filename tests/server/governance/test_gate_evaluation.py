"""Validate: federated evaluation, metrics per region/segment, drift, partner contribution, the publish gate."""
from __future__ import annotations

import numpy as np
import pytest


def _evaluators(fleet):
    return [d for d in fleet.devices if d.partner == "acme"]


def test_candidate_is_evaluated_by_devices_and_published_through_the_gate(two_partners):
    fl = two_partners
    for d in fl.devices:
        d.train_round()
    m = fl.model()
    # the round's result is a candidate, with one leave-one-partner-out variant per partner; v1 stays current
    assert m["current_version"] == 1 and m["candidate"] == 2
    status = {v["version"]: (v["status"], v["metrics"].get("without_partner")) for v in m["versions"]}
    assert status == {1: ("published", None), 2: ("candidate", None), 3: ("variant", "acme"), 4: ("variant", "globex")}
    r = fl.devices[0].task()  # training pauses until the gate decides
    assert r.status_code == 409 and "publish gate" in r.json()["error"]["message"]
    task = fl.devices[0].call("POST", "/v1/evaluations/tasks", json={"model": "toy"}).json()
    assert task["target"] == 2 and task["purpose"] == "propensity_scoring"
    assert {(v["version"], v["role"]) for v in task["versions"]} == {(1, "baseline"), (2, "target"), (3, "variant"),
                                                                      (4, "variant")}
    decisions = [d.evaluate(segments=True)["decision"] for d in _evaluators(fl)]
    assert decisions[:4] == [None] * 4 and decisions[4]["passed"] is True  # decided at min_evaluators = 5
    m = fl.model()
    assert m["current_version"] == 2 and m["candidate"] is None
    assert m["versions"][1]["status"] == "published" and m["versions"][1]["gate"]["passed"] is True
    assert [h["kind"] for h in m["history"]][-2:] == ["round", "gate"]
    s = fl.ok("GET", "/v1/models/toy/evaluations", params={"target": 2})
    tgt, base = s["versions"]["2"], s["versions"]["1"]
    assert s["evaluators"] == 5 and s["metric"] == "loss"
    assert tgt["overall"]["loss"] < base["overall"]["loss"] and tgt["overall"]["auc"] > base["overall"]["auc"]
    # per region: eu and us have 2 evaluators each; apac has 1 < k_min = 2 and is suppressed
    assert set(tgt["by_region"]) == {"eu", "us", "apac"} and tgt["by_region"]["apac"]["suppressed"] is True
    assert tgt["by_region"]["eu"]["devices"] == 2 and 0.5 < tgt["by_region"]["us"]["auc"] <= 1.0
    assert set(tgt["by_segment"]) == {"x0_pos", "x0_neg"}
    assert s["spread"]["regions"] == 2 and s["spread"]["value"] == abs(tgt["by_region"]["eu"]["loss"]
                                                                       - tgt["by_region"]["us"]["loss"])
    assert s["drift"]["reference"] == "baseline v1" and s["drift"]["psi"] > 0.0 and set(s["drift"]["by_region"]) == {"eu", "us"}
    # partner contribution (loss without the partner minus loss with it): clean acme helps, flipped globex hurts
    pc = s["partner_contribution"]
    assert pc["acme"]["value"] > 0 > pc["globex"]["value"], pc
    # download entries are written in the group commit after the download (docs/GOVERNANCE.md §9), so an
    # evaluator's downloads may follow the gate's entry in the chain; every other entry is in order
    audit = [e for e in fl.audit(model="toy") if e["kind"] != "file.downloaded"]
    assert ("version.candidate", "round") in [(e["kind"], e["code"]) for e in audit]
    assert audit[-1]["kind"] == "version.published" and audit[-1]["code"] == "gate_passed"


def test_gate_refuses_regressions_and_thin_candidates_with_reasons(two_partners, live):
    fl = two_partners
    for d in fl.devices:
        d.train_round()
    for d in _evaluators(fl):
        d.evaluate()
    assert fl.model()["current_version"] == 2
    # a harmful round: every device uploads the opposite of its locally trained step
    for d in fl.devices:
        d.train_round(sign=-1.0)
    assert fl.model()["candidate"] == 5
    for d in _evaluators(fl):
        d.evaluate()
    m = fl.model()
    v5 = next(v for v in m["versions"] if v["version"] == 5)
    assert m["current_version"] == 2 and m["candidate"] is None and v5["status"] == "refused"
    assert [r["code"] for r in v5["gate"]["reasons"]] == ["metric_regression"]
    assert v5["gate"]["candidate"] > v5["gate"]["baseline"]  # loss went up
    refused = [e for e in fl.audit(kind="version.refused")]
    assert refused[-1]["code"] == "metric_regression" and refused[-1]["subject"] == "v5"
    assert fl.admin("POST", "/v1/models/toy/rollback", json={"version": 5}).json()["error"]["code"] == "not_publishable"
    # a thin candidate: one update, closed at the deadline; the admin forces the decision before evaluation
    task = fl.devices[0].task().json()
    assert task["version"] == 2  # training resumed from the current version
    fl.devices[0].upload(task, np.full(7, 0.01, np.float32))
    live.clock.advance(400)
    fl.tick()
    cand = fl.model()["candidate"]
    assert cand is not None
    r = fl.admin("POST", f"/v1/models/toy/candidates/{cand}/decide", json={})
    assert r.status_code == 409 and r.json()["error"]["code"] == "gate_pending"
    out = fl.ok("POST", f"/v1/models/toy/candidates/{cand}/decide", json={"force": True})["decision"]
    assert out["passed"] is False
    assert {r["code"] for r in out["reasons"]} == {"too_few_contributors", "too_few_evaluators"}
    assert fl.model()["current_version"] == 2


def test_gate_refuses_a_candidate_over_the_privacy_limit(fleet, tmp_path):
    fleet.publish(tmp=tmp_path)
    fleet.policy(purpose="propensity_scoring", gate={"metric": "auc", "max_regression": 1.0, "min_evaluators": 1,
                                                         "max_epsilon": 0.5})
    fleet.train(goal=2, min_clients=1, clip={"norm": 1.0, "adaptive": False}, noise_multiplier=1.0)
    devs = [fleet.enroll(f"d{i}", "eu") for i in range(2)]
    for d in devs:
        assert d.upload(d.task().json(), np.full(7, 0.05, np.float32)).status_code == 202
    cand = fleet.model()["versions"][1]
    assert cand["status"] == "candidate" and cand["epsilon"] > 0.5
    rng = np.random.default_rng(0)
    for d in devs:
        d.hx = rng.normal(size=(50, 6)).astype(np.float32)
        d.hy = (rng.random(50) < 0.5).astype(np.float32)
    decision = devs[0].evaluate()["decision"]
    assert decision["passed"] is False and [r["code"] for r in decision["reasons"]] == ["privacy_budget_exceeded"]
    assert fleet.model()["current_version"] == 1


def test_bad_evaluation_reports_are_refused_with_the_reason(two_partners):
    dev = two_partners.devices[0]
    url = "/v1/evaluations/toy/1/reports"
    cases = [({"reports": []}, "reports"), ({"reports": [{"version": 9, "count": 1}]}, "not being evaluated"),
             ({"reports": [{"version": 1, "count": 3, "histogram": {"pos": [1], "neg": [2]}}]}, "bins"),
             ({"reports": [{"version": 1, "count": 2, "kind": "ranking", "hits": 5}]}, "cannot exceed"),
             ({"reports": [{"version": 1, "count": -1}]}, "count")]
    for body, word in cases:
        r = dev.call("POST", url, json=body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_report" and word in r.json()["error"]["message"], (body, r.text)


def test_recommender_reports_give_hr_ndcg_and_lift_over_popularity(fleet, tmp_path):
    """Ranking aggregates (hit / NDCG sums, popularity-baseline hits, users) pooled per region; the lift KPI."""
    fleet.publish(tmp=tmp_path)
    fleet.policy(purpose="recommendations", k_min=2)
    sent = {"eu": [(40, 12, 7.5, 6), (60, 18, 10.0, 9)], "us": [(50, 10, 6.0, 8), (50, 14, 8.0, 7)]}
    for region, rows in sent.items():
        for i, (users, hits, ndcg, base) in enumerate(rows):
            dev = fleet.enroll(f"{region}{i}", region)
            task = dev.call("POST", "/v1/evaluations/tasks", json={"model": "toy"}).json()
            assert task["target"] == 1 and [v["role"] for v in task["versions"]] == ["target"]  # monitoring
            r = dev.call("POST", task["report_url"], json={"reports": [
                {"version": 1, "segment": "all", "kind": "ranking", "count": users, "hits": hits, "ndcg": ndcg,
                 "baseline_hits": base}]})
            assert r.status_code == 202, r.text
    s = fleet.ok("GET", "/v1/models/toy/evaluations")
    overall, eu = s["versions"]["1"]["overall"], s["versions"]["1"]["by_region"]["eu"]
    assert overall["users"] == 200 and abs(overall["hr"] - 54 / 200) < 1e-12 and abs(overall["ndcg"] - 31.5 / 200) < 1e-12
    assert abs(overall["baseline_hr"] - 30 / 200) < 1e-12 and abs(overall["lift"] - 54 / 30) < 1e-12
    assert abs(eu["hr"] - 30 / 100) < 1e-12 and s["metric"] == "hr"
    assert abs(s["spread"]["value"] - (30 / 100 - 24 / 100)) < 1e-12
    pl = fleet.ok("GET", "/v1/kpis", params={"model": "toy"})["personalization_lift"]
    assert pl["baseline"] == "popularity" and abs(pl["value"] - 54 / 30) < 1e-12



@pytest.mark.parametrize("k_counts", ["devices", "attested"])
def test_evaluators_the_k_rule_and_the_gate_count_only_attested_devices_when_the_policy_says_so(fleet, tmp_path,
                                                                                            populate, k_counts):
    """Issue 18 point 9: under ``k_counts: "attested"`` self-enrolled (unattested) evaluators neither lift an
    evaluation over k_min nor make up the gate's min_evaluators; under the default they do."""
    fl = populate(fleet, tmp_path, k_counts=k_counts)
    for d in fl.devices:
        d.train_round()
    assert fl.model()["candidate"] == 2
    round_id = fl.model()["versions"][1]["round_id"]
    accepted = fl.ok("GET", f"/v1/rounds/{round_id}")["accepted"]
    decisions = [d.evaluate()["decision"] for d in _evaluators(fl)]
    s = fl.ok("GET", "/v1/models/toy/evaluations", params={"target": 2})
    if k_counts == "devices":
        assert decisions[4]["passed"] is True and s["evaluators"] == 5
        assert "loss" in s["versions"]["2"]["overall"] and accepted == 7
    else:
        assert accepted is None  # the round's count is suppressed: none of its 7 devices is attested  # no attestation verifier is configured: no device is attested, so nothing counts toward k or the gate
        assert decisions == [None] * 5 and fl.model()["candidate"] == 2
        assert s["evaluators"] == 0 and s["versions"]["2"]["overall"]["suppressed"] is True
