"""The federation protocol in-process (SQLite, a manual clock): roles, credentials both ways, exactly-once
pushes, deadlines, resync, and a region that exports nothing.  Fast; the multi-process PostgreSQL proof is
test_regions.py."""
from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.federation.roles import check_region_config
from server.federation.upstream import Refused, Upstream, UpstreamError
from server.storage import schema
from tests.server.conftest import Live, live_app

N = 15  # make_artifact's default shapes (4, 3) + (3,)


def _coordinator(stack: ExitStack, tmp: Path, **kw: Any) -> Live:
    lv = stack.enter_context(live_app(f"sqlite:///{tmp / 'g.db'}", tmp / "g", ROLE="global", FEDERATION_SYNC_S=0, **kw))
    lv.publish("toy")
    return lv


def _credential(coord: Live, region: str) -> str:
    r = coord.admin("POST", "/v1/federation/regions", json={"region": region})
    assert r.status_code == 201, r.text
    return r.json()["credential"]


def _federate(coord: Live, **cfg: Any) -> None:
    r = coord.admin("PUT", "/v1/federation/models/toy", json={"deadline_s": 10, "min_regions": 1, **cfg})
    assert r.status_code == 200, r.text


def _push(up: Upstream, version: int, key: str, body: bytes | None = None, contributors: int = 5) -> tuple[int, Any]:
    meta = {"version": version, "contributors": contributors, "epsilon": 1.5, "delta": 1e-5, "clip_bits": 2.0}
    status, data = up.call("POST", "/v1/federation/models/toy/aggregates",
                           body=body if body is not None else np.full(N, 0.1, "<f4").tobytes(),
                           headers={"Idempotency-Key": key, "X-Fedmark-Aggregate": json.dumps(meta),
                                    "Content-Type": "application/octet-stream"})
    return status, json.loads(data)


def test_each_side_checks_the_others_role_and_credential(tmp_path: Path):
    with ExitStack() as stack:
        coord = _coordinator(stack, tmp_path)
        single = stack.enter_context(live_app(f"sqlite:///{tmp_path / 's.db'}", tmp_path / "s", FEDERATION_SYNC_S=0))
        # the coordinator serves no device, and a single server issues no region credential
        r = coord.call("POST", "/v1/devices/enroll", json={"app_key": "ak_x", "device_id": "d1"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "wrong_role"
        r = single.admin("POST", "/v1/federation/regions", json={"region": "eu"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "wrong_role"
        cred = _credential(coord, "eu")
        _federate(coord)
        path = "/v1/federation/models/toy"
        # no other credential is a region's: the admin token is refused, and so is a wrong declared role/region
        assert coord.admin("GET", path).status_code == 401
        r = coord.call("GET", path, cred)
        assert r.status_code == 403 and r.json()["error"]["code"] == "wrong_role"
        r = coord.call("GET", path, cred, headers={"X-Fedmark-Role": "region", "X-Fedmark-Region": "us"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "region_mismatch"
        # the real client: the coordinator proves itself; anything else does not
        info = Upstream(coord.base_url, cred, "eu").json("GET", path)
        assert info["version"] == 1 and info["num_params"] == N
        with pytest.raises(UpstreamError, match="did not prove"):
            Upstream(single.base_url, cred, "eu").json("GET", path)
        with pytest.raises(UpstreamError):
            Upstream(coord.base_url, cred + "x", "eu").json("GET", path)
        # a credential re-issued replaces the old one
        _credential(coord, "eu")
        with pytest.raises(UpstreamError):
            Upstream(coord.base_url, cred, "eu").json("GET", path)


def test_pushes_are_exactly_once_and_a_late_region_is_left_out(tmp_path: Path):
    with ExitStack() as stack:
        coord = _coordinator(stack, tmp_path)
        eu, us = (Upstream(coord.base_url, _credential(coord, r), r) for r in ("eu", "us"))
        r = coord.admin("PUT", "/v1/federation/models/toy", json={"deadline_s": 10 ** 400})  # past any float: a 400
        assert r.status_code == 400 and r.json()["error"]["field"] == "deadline_s", r.text
        _federate(coord, min_regions=1)
        with pytest.raises(Refused) as exc:  # no global round opened yet: retryable
            _push(eu, 1, "eu:r1")
        assert exc.value.code == "no_open_round"
        coord.admin("POST", "/v1/federation/tick")
        assert _push(eu, 1, "eu:r1") == (201, {"global_round": _push(eu, 1, "eu:r1")[1]["global_round"],
                                               "region": "eu", "accepted": True, "duplicate": False})
        status, again = _push(eu, 1, "eu:r1")  # the region did not see the answer (SIGKILL): same key, stored once
        assert status == 200 and again["duplicate"] is True
        with pytest.raises(Refused) as exc:
            _push(eu, 1, "eu:r2")
        assert exc.value.code == "already_contributed"
        with pytest.raises(Refused) as exc:
            _push(us, 7, "us:r1")
        assert exc.value.code == "stale_version"
        with pytest.raises(Refused) as exc:
            _push(us, 1, "us:r1", body=b"\x00" * 8)
        assert exc.value.code == "bad_aggregate" and exc.value.status == 400
        with pytest.raises(Refused) as exc:  # a count past any float: refused by name, not a 500
            _push(us, 1, "us:r1", contributors=10**400)
        assert exc.value.code == "bad_aggregate" and exc.value.status == 400
        coord.clock.advance(11)  # past the deadline: us missed it
        with pytest.raises(Refused) as exc:
            _push(us, 1, "us:r1")
        assert exc.value.code == "deadline_passed"
        coord.admin("POST", "/v1/federation/tick")
        v2 = coord.model("toy")["versions"][-1]
        assert v2["version"] == 2 and sorted(v2["metrics"]["regions"]) == ["eu"]
        assert v2["metrics"]["left_out"] == ["us"] and v2["epsilon"] == pytest.approx(1.5)
        np.testing.assert_allclose(coord.params("toy", 2) - coord.params("toy", 1), 0.1, atol=1e-6)
        st = coord.admin("GET", "/v1/federation/status").json()
        assert [a["region"] for a in st["rounds"][-1]["aggregates"]] == ["eu"]
        assert {r["region"]: r["contributors_total"] for r in st["regions"]} == {"eu": 5, "us": 0}


def test_a_region_trains_holds_pushes_and_resyncs(tmp_path: Path):
    """A regional app in-process: its fold is held (never served), pushed once, and the global version installed."""
    with ExitStack() as stack:
        coord = _coordinator(stack, tmp_path)
        cred = _credential(coord, "eu")
        _federate(coord, min_regions=1)
        region = stack.enter_context(live_app(f"sqlite:///{tmp_path / 'eu.db'}", tmp_path / "eu", ROLE="region",
                                              REGION="eu", UPSTREAM_URL=coord.base_url, UPSTREAM_TOKEN=cred,
                                              FEDERATION_SYNC_S=0, FEDERATION_K_MIN=3))
        # a regional server issues app keys of its own region only
        r = region.admin("POST", "/v1/admin/app-keys", json={"partner": "p", "region": "us"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "wrong_region"
        assert region.admin("POST", "/v1/admin/app-keys", json={"partner": "p"}).json()["region"] == "eu"
        region.publish("toy")
        r = region.admin("PUT", "/v1/models/toy/training", json={"mode": "async", "goal": 3})
        assert r.status_code == 400 and r.json()["error"]["field"] == "mode"  # a FedBuff fold has no sub-round to push
        region.train("toy", goal=3, min_clients=3, noise_multiplier=0.5, clip={"norm": 1.0, "adaptive": False})
        coord.admin("POST", "/v1/federation/tick")
        region.admin("POST", "/v1/federation/tick")
        assert region.model("toy")["current_version"] == 2  # global v1 installed
        for i in range(3):
            tok = region.enroll(f"eu-dev-{i}", "eu")
            task = region.task(tok, "toy").json()
            assert region.upload(tok, task, np.full(N, 0.01, np.float32)).status_code in (200, 201, 202)
        m = region.model("toy")
        assert m["current_version"] == 2 and m["candidate"] == 3  # held: v3 is never current here
        tok = region.enroll("eu-dev-0", "eu")
        r = region.task(tok, "toy")
        assert r.status_code == 409 and "global coordinator" in r.json()["error"]["message"]
        region.admin("POST", "/v1/federation/tick")  # push -> every region in -> the coordinator publishes v2
        assert coord.model("toy")["current_version"] == 2
        # the dashboard's status asks the one access decision: a partner-bound marketer sees nothing of a model
        # not shared with its partner (an ungoverned model is shared with no partner), nor totals over all models
        def marketer(**body: Any) -> dict[str, Any]:
            tok = coord.admin("POST", "/v1/admin/tokens", json={"role": "marketer", "name": "m", **body}).json()["token"]
            r = coord.call("GET", "/v1/federation/status", tok)
            assert r.status_code == 200, r.text
            return r.json()
        assert {r["model"] for r in marketer()["rounds"]} == {"toy"}  # an unbound marketer sees every model
        partner_view = marketer(partner="acme")
        assert partner_view["rounds"] == [] and [g["contributors_total"] for g in partner_view["regions"]] == [None]
        # the region dies after the coordinator stored its push but before it recorded the answer: its outbox
        # lost the row, so it pushes again with the same key - stored once, answered as a duplicate
        with region.app.extensions["fedmark_store"].write() as conn:
            conn.execute(schema.federation_pushes.delete())
        region.admin("POST", "/v1/federation/tick")  # pull v2
        m = region.model("toy")
        assert m["current_version"] == 4 and m["candidate"] is None
        assert m["versions"][3]["kind"] == "federated" and m["versions"][3]["metrics"]["global_version"] == 2
        st = region.admin("GET", "/v1/federation/status").json()
        assert [(p["state"], p["detail"]["duplicate"]) for p in st["pushes"]] == [("acked", True)]
        with coord.app.extensions["fedmark_store"].read() as conn:
            assert len(conn.execute(schema.federation_aggregates.select()).all()) == 1
        aggregate = coord.params("toy", 2) - coord.params("toy", 1)
        # the region's own DP noise (std z C / D = 0.17 a coordinate) was added before the aggregate left
        assert np.linalg.norm(aggregate - 0.01) > 0.1
        assert region.task(tok, "toy").status_code == 200  # training resumed on the global version


def test_a_region_that_exports_nothing_keeps_its_line_and_sends_nothing(tmp_path: Path):
    with ExitStack() as stack:
        coord = _coordinator(stack, tmp_path)
        cred = _credential(coord, "eu")
        _federate(coord)
        region = stack.enter_context(live_app(f"sqlite:///{tmp_path / 'eu.db'}", tmp_path / "eu", ROLE="region",
                                              REGION="eu", UPSTREAM_URL=coord.base_url, UPSTREAM_TOKEN=cred,
                                              FEDERATION_SYNC_S=0))
        region.publish("toy")
        region.train("toy", goal=3, min_clients=3)
        assert region.admin("PUT", "/v1/models/toy/policy", json={"purpose": "propensity_scoring",
                                                                   "residency": {"eu": "none"}, "k_min": 1}
                            ).status_code == 200
        coord.admin("POST", "/v1/federation/tick")
        region.admin("POST", "/v1/federation/tick")
        for i in range(3):
            tok = region.enroll(f"eu-dev-{i}", "eu")
            task = region.task(tok, "toy").json()
            assert task["model"] == "toy@eu"
            assert region.upload(tok, task, np.full(N, 0.01, np.float32)).status_code in (200, 201, 202)
        assert region.model("toy@eu")["current_version"] == 2  # the line publishes locally, not held
        region.admin("POST", "/v1/federation/tick")
        assert region.admin("GET", "/v1/federation/status").json()["pushes"] == []
        assert coord.admin("GET", "/v1/federation/status").json()["rounds"][0]["aggregates"] == []


def test_a_regional_server_refuses_to_start_without_its_coordinator():
    with pytest.raises(ValueError, match="--upstream.*FEDMARK_UPSTREAM_TOKEN"):
        check_region_config({"ROLE": "region", "REGION": "eu"})
    with pytest.raises(ValueError, match="http"):
        check_region_config({"ROLE": "region", "REGION": "eu", "UPSTREAM_URL": "ftp://x", "UPSTREAM_TOKEN": "t"})
    check_region_config({"ROLE": "single"})
