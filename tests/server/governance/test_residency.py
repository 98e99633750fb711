"""Data residency: region partitions, hierarchical aggregation, regional model lines, per-cell DP accounting."""
from __future__ import annotations

import json
from collections import defaultdict

import numpy as np

from server.testing import running_server

POLICY = {"purpose": "propensity_scoring", "allowed_regions": ["eu", "us", "cn"], "residency": {"cn": "none"}}


def test_no_update_of_one_region_is_read_by_another_regions_fold(tmp_path, fleet_for):
    """A real server process with the residency trace on: every fold reads only its own region's rows."""
    trace = tmp_path / "trace.jsonl"
    with running_server(tmp_path / "srv", extra_env={"FEDMARK_RESIDENCY_TRACE": str(trace)}) as srv:
        fl = fleet_for(srv.base_url, srv.admin_token)
        fl.publish(tmp=tmp_path)
        fl.policy(**POLICY)
        fl.train(goal=4, min_clients=1, clip={"norm": 1.0, "adaptive": False})
        base = fl.params("toy", 1)
        plan = [("eu", "acme", 0.1, 10), ("eu", "globex", 0.1, 10), ("us", "acme", 0.2, 30), ("us", "acme", 0.2, 30),
                ("cn", "acme", 0.5, 20), ("cn", "acme", 0.5, 20), ("cn", "globex", 0.5, 20), ("cn", "acme", 0.5, 20)]
        ids: dict[str, set[tuple[str, int]]] = defaultdict(set)  # update ids are per round (SQLite reuses them)
        for i, (region, partner, value, n) in enumerate(plan):
            dev = fl.enroll(f"{region}-{i}", region, partner)
            task = dev.task().json()
            assert task["model"] == ("toy@cn" if region == "cn" else "toy"), task
            r = dev.upload(task, np.full(7, value, np.float32), num_examples=n)
            assert r.status_code == 202, r.text
            ids[region].add((r.json()["round_id"], r.json()["update_id"]))
        toy, line = fl.model("toy"), fl.model("toy@cn")
        assert toy["current_version"] == 2 and line["current_version"] == 2 and line["line_of"] == "toy"
        lines = [json.loads(x) for x in trace.read_text().splitlines()]
    # every read row belongs to the fold's region; the regions' id sets are disjoint and complete
    assert lines and all(x["row_region"] == x["fold_region"] for x in lines)
    read: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for x in lines:
        read[x["fold_region"]].add((x["round_id"], x["update_id"]))
    assert read == ids
    assert not (read["eu"] & read["us"]) and not (read["cn"] & (read["eu"] | read["us"]))
    folds = defaultdict(set)
    for x in lines:
        folds[x["round_id"]].add(x["fold_region"])
    assert sorted(map(sorted, folds.values())) == [["cn"], ["eu", "us"]]  # cn folds only in its own line's round
    # the global version is formed from eu and us only: weighted mean (10, 10, 30, 30 examples) of 0.1 / 0.2
    srv_params = {v: None for v in (1, 2)}
    with running_server(tmp_path / "srv") as srv2:  # same data dir, restarted: persisted state only
        fl2 = fleet_for(srv2.base_url, srv2.admin_token)
        for v in srv_params:
            srv_params[v] = fl2.params("toy", v)
        line_v1, line_v2 = fl2.params("toy@cn", 1), fl2.params("toy@cn", 2)
        forked = fl2.model("toy@cn")["versions"][0]["metrics"]["forked_from"]
        v2 = fl2.model("toy")["versions"][1]
        audit = fl2.audit()
    np.testing.assert_allclose(srv_params[1], base, rtol=0, atol=0)
    np.testing.assert_allclose(srv_params[2] - base, np.full(7, (2 * 10 * 0.1 + 2 * 30 * 0.2) / 80), atol=2e-6)
    # the line forked from the global model's current version when its first task was asked for (v2 here),
    # then took only cn's clipped mean (0.5 per coordinate clipped to norm 1.0)
    np.testing.assert_allclose(line_v1, srv_params[forked["version"]], rtol=0, atol=0)
    np.testing.assert_allclose(line_v2 - line_v1, np.full(7, 1 / np.sqrt(7)), atol=2e-6)
    cells = v2["metrics"]["cells"]
    assert {(c["region"], c["partner"]) for c in cells} == {("eu", "acme"), ("eu", "globex"), ("us", "acme")}
    closed = [e for e in audit if e["kind"] == "round.closed"]
    assert {e["model"]: e["detail"]["regions"] for e in closed} == {"toy": {"eu": 2, "us": 2}, "toy@cn": {"cn": 4}}
    assert any(e["kind"] == "line.created" and e["model"] == "toy@cn" for e in audit)
    from fedmark_cli import main

    assert main(["audit", "verify", "--data-dir", str(tmp_path / "srv")]) == 0  # the stopped server's SQLite file


def test_region_that_exports_nothing_contributes_nothing_and_dp_is_accounted_per_cell(fleet, tmp_path):
    """DP: every cell is its own release; epsilon of a version is the max over cells (parallel composition)."""
    from server.aggregation import PrivacyEvent, epsilon_for

    fleet.publish(tmp=tmp_path)
    fleet.policy(**POLICY)
    z, delta = 1.2, 1e-5
    fleet.train(goal=2, min_clients=1, clip={"norm": 0.5, "adaptive": False}, noise_multiplier=z, delta=delta)
    eu = [fleet.enroll(f"eu{i}", "eu") for i in range(2)]
    us = [fleet.enroll(f"us{i}", "us") for i in range(2)]
    cn = [fleet.enroll(f"cn{i}", "cn") for i in range(2)]
    # round 1: eu only; the cn devices train their own line meanwhile
    for d in eu:
        assert d.upload(d.task().json(), np.full(7, 0.1, np.float32)).status_code == 202
    for d in cn:
        t = d.task().json()
        assert t["model"] == "toy@cn"
        assert d.upload(t, np.full(7, -0.3, np.float32)).status_code == 202
    # round 2: us only
    for d in us:
        assert d.upload(d.task().json(), np.full(7, 0.1, np.float32)).status_code == 202
    toy = fleet.model("toy")
    assert toy["current_version"] == 3
    one, two = epsilon_for([PrivacyEvent(z, 1.0, 1)], delta), epsilon_for([PrivacyEvent(z, 1.0, 2)], delta)
    v2, v3 = toy["versions"][1], toy["versions"][2]
    # each cell released once: the guarantee is one release's epsilon (sequential accounting would say `two`)
    assert abs(v2["epsilon"] - one) < 1e-9 and abs(v3["epsilon"] - one) < 1e-9 and two > one * 1.2
    for v in (v2, v3):
        assert {c["region"] for c in v["metrics"]["cells"]} <= {"eu", "us"}
        assert v["metrics"]["dp"] is True and v["metrics"]["denominator"] == 2.0
    line = fleet.model("toy@cn")
    assert line["current_version"] == 2 and abs(line["versions"][1]["epsilon"] - one) < 1e-9
    # nothing of cn reached the global line: a cn round closed only on toy@cn
    closed = [e for e in fleet.audit(kind="round.closed")]
    assert [e["detail"]["regions"] for e in closed if e["model"] == "toy"] == [{"eu": 2}, {"us": 2}]
    assert [e["detail"]["regions"] for e in closed if e["model"] == "toy@cn"] == [{"cn": 2}]
    # a third round with eu again: eu's cell has two releases now -> epsilon is two releases' epsilon
    for d in eu:
        assert d.upload(d.task().json(), np.full(7, 0.1, np.float32)).status_code == 202
    v4 = fleet.model("toy")["versions"][3]
    assert abs(v4["epsilon"] - two) < 1e-9
    metrics = fleet.call("GET", "/metrics", fleet.metrics_token).text
    assert 'fedmark_cell_epsilon{model="toy",partner="acme",region="eu"}' in metrics
    # a cn device cannot be handed the global model, and a us device cannot train cn's line
    r = us[0].task("toy@cn")
    assert r.status_code == 403 and r.json()["error"]["reason"] == "wrong_region_line"
