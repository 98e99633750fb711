"""Issue 18: the one access decision of every model-reading route, bounded numbers, /metrics and the k rule.

Each test replays an attack of the issue over real HTTP against a live server and checks what it meets now.
"""
from __future__ import annotations

import secrets
from typing import Any

import numpy as np
import pytest

from fedmark.contract import UPDATE_CONTENT_TYPE, encode_update

from tests.server.governance.conftest import Fleet

POLICY = {"purpose": "propensity_scoring", "allowed_regions": ["eu", "us"]}


def _hidden(r: Any) -> bool:
    """Answered exactly like a model that does not exist."""
    return r.status_code == 404 and r.json()["error"]["code"] == "unknown_model"


def _trained(fleet: Fleet, tmp_path: Any, name: str = "toy", **policy: Any) -> None:
    fleet.publish(name, tmp=tmp_path)
    fleet.policy(name, **dict(POLICY, **policy))
    fleet.train(name, goal=1, min_clients=1, clip={"norm": 5.0, "adaptive": False})


def test_a_region_that_exports_nothing_keeps_its_line_from_other_regions(fleet, tmp_path):
    """Point 3: an eu device reads nothing of shared@us (files, manifest, metadata, listing, rounds)."""
    _trained(fleet, tmp_path, "shared", residency={"us": "none"})
    us = fleet.enroll("us-1", "us")
    task = us.task("shared").json()
    assert task["model"] == "shared@us"
    assert us.upload(task, np.full(7, 0.1, np.float32)).status_code == 202
    assert fleet.model("shared@us")["current_version"] == 2
    eu = fleet.enroll("eu-1", "eu")
    assert eu.task("shared").json()["model"] == "shared"  # it trains the global model: it holds a task
    for path in ("/v1/models/shared@us/versions/2/files/params.bin", "/v1/models/shared@us/versions/2/manifest",
                 "/v1/models/shared@us", "/v1/models/shared@us/versions/1/files/params.bin"):
        assert _hidden(eu.call("GET", path)), path
    assert "shared@us" not in {m["name"] for m in eu.call("GET", "/v1/models").json()["models"]}
    r = eu.call("GET", f"/v1/rounds/{task['round_id']}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_round"
    # the line's own device reads it; marketers do not see it and cannot activate it
    assert us.call("GET", "/v1/models/shared@us/versions/2/files/params.bin").status_code == 200
    mt = fleet.marketer("ana")
    assert _hidden(fleet.call("GET", "/v1/models/shared@us", mt))
    r = fleet.call("POST", "/v1/activation/model", mt, json={"model": "shared@us", "purpose": "propensity_scoring"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"  # a line is never activated


def test_activation_grants_bind_to_the_token_not_its_name(fleet, tmp_path):
    """Point 4: two marketer tokens both named "analyst"; acme's activation grants nothing to globex's."""
    _trained(fleet, tmp_path, "gov", allowed_partners=["acme", "globex"])
    acme, globex = fleet.marketer("analyst", partner="acme"), fleet.marketer("analyst", partner="globex")
    acme2 = fleet.marketer("analyst", partner="acme")  # same name, same partner, another token
    r = fleet.call("POST", "/v1/activation/model", acme, json={"model": "gov", "purpose": "propensity_scoring"})
    assert r.status_code == 200, r.text
    url = r.json()["files"]["params"]
    assert fleet.call("GET", url, acme).status_code == 200
    assert fleet.call("GET", "/v1/models/gov/versions/1/manifest", acme).status_code == 200
    for other in (globex, acme2):
        for path in (url, "/v1/models/gov/versions/1/manifest"):
            r = fleet.call("GET", path, other)
            assert r.status_code == 403 and r.json()["error"]["code"] == "activation_required", r.text
    # a model not shared with globex at all is hidden from it, whatever acme activated
    _trained(fleet, tmp_path, "acme_only", allowed_partners=["acme"])
    assert fleet.call("POST", "/v1/activation/model", acme, json={"model": "acme_only",
                                                                  "purpose": "propensity_scoring"}).status_code == 200
    assert _hidden(fleet.call("GET", "/v1/models/acme_only/versions/1/files/params.bin", globex))


def test_device_downloads_are_scoped_to_what_it_trains_or_evaluates_and_audited(fleet, tmp_path):
    """Point 11: a marketer holding the app key enrols a 'device' and pulls files: refused until it holds a
    task, and every download is on the audit trail with the device and what scoped it."""
    _trained(fleet, tmp_path)
    fake = fleet.enroll("marketer-laptop", "eu")
    for path in ("/v1/models/toy/versions/1/files/params.bin", "/v1/models/toy/versions/1/manifest"):
        r = fake.call("GET", path)
        assert r.status_code == 403 and r.json()["error"]["reason"] == "not_training_or_evaluating", r.text
    assert not [e for e in fleet.audit() if e["kind"] == "file.downloaded"]
    assert fake.task().status_code == 200
    assert fake.call("GET", "/v1/models/toy/versions/1/files/params.bin").status_code == 200
    ev = fleet.enroll("evaluator", "eu")
    assert ev.call("POST", "/v1/evaluations/tasks", json={"model": "toy"}).status_code == 200
    assert ev.call("GET", "/v1/models/toy/versions/1/files/params.bin").status_code == 200
    got = [(e["actor"], e["code"], e["subject"]) for e in fleet.audit() if e["kind"] == "file.downloaded"]
    assert got == [("marketer-laptop", "task", "1/params.bin"), ("evaluator", "evaluation", "1/params.bin")]
    assert fleet.ok("GET", "/v1/audit/verify")["ok"] is True


def test_partners_read_nothing_of_models_not_shared_with_them(fleet, tmp_path):
    """Point 13: manifest, training config, rounds, evaluations, policy, KPIs of another partner's model."""
    _trained(fleet, tmp_path, allowed_partners=["acme"])
    dev = fleet.enroll("a1", "eu")
    task = dev.task().json()
    gx = fleet.marketer("gina", partner="globex")
    for path in ("/v1/models/toy", "/v1/models/toy/versions/1/manifest", "/v1/models/toy/versions/1/files/params.bin",
                 "/v1/models/toy/training", "/v1/models/toy/rounds", "/v1/models/toy/evaluations",
                 "/v1/models/toy/policy", "/v1/kpis?model=toy"):
        assert _hidden(fleet.call("GET", path, gx)), path
    r = fleet.call("GET", f"/v1/rounds/{task['round_id']}", gx)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_round"
    assert fleet.call("GET", "/v1/models", gx).json()["models"] == []
    assert fleet.call("GET", "/v1/kpis", gx).json()["models"] == []
    # a globex device reads nothing of the acme-only model either (and does not list it)
    gdev = fleet.enroll("g1", "eu", partner="globex")
    assert _hidden(gdev.call("GET", "/v1/models/toy"))
    assert gdev.call("GET", "/v1/models").json()["models"] == []
    # the partner it is shared with still reads it
    am = fleet.marketer("amy", partner="acme")
    for path in ("/v1/models/toy", "/v1/models/toy/training", "/v1/models/toy/rounds", "/v1/models/toy/policy"):
        assert fleet.call("GET", path, am).status_code == 200, path
    assert dev.call("GET", "/v1/models/toy").status_code == 200


def test_numbers_from_requests_are_bounded_to_what_storage_holds(fleet, tmp_path):
    """Point 5: the upload of 2^63-1 examples is refused and the KPIs keep answering; every other request
    number is refused by name (400), never a 500."""
    _trained(fleet, tmp_path)
    dev = fleet.enroll("d1", "eu")
    task = dev.task().json()
    r = dev.call("POST", task["upload_url"], data=encode_update(np.full(7, 0.1, np.float32), "f32"), headers={
        "Content-Type": UPDATE_CONTENT_TYPE, "X-Fedmark-Model-Version": str(task["version"]),
        "X-Fedmark-Num-Examples": "9223372036854775807", "Idempotency-Key": "k1"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_header", r.text
    assert fleet.admin("GET", "/v1/kpis").status_code == 200
    assert fleet.admin("GET", "/v1/kpis", params={"model": "toy"}).status_code == 200
    huge = 2**63 - 1
    from server.registry.artifacts import write_archive
    from server.testing import make_artifact

    art = write_archive(str(make_artifact(tmp_path / "art-big", "toy", ((6,), (1,)), 5)))
    cases = [
        (fleet.admin("POST", f"/v1/models/toy/versions?parent={huge}", data=art,
                     headers={"Content-Type": "application/gzip"}), "bad_request", "parent"),
        (fleet.admin("GET", f"/v1/models/toy/evaluations?target={huge}"), "bad_request", "target"),
        (fleet.admin("PUT", "/v1/models/toy/policy", json=dict(POLICY, k_min=huge)), "bad_policy", "k_min"),
        (fleet.admin("PUT", "/v1/models/toy/policy", json=dict(POLICY, gate={"min_evaluators": huge})),
         "bad_policy", "gate.min_evaluators"),
        (fleet.admin("PUT", "/v1/models/toy/training", json={"goal": huge, "min_clients": 1}),
         "bad_training_config", "goal"),
        (fleet.admin("PUT", "/v1/models/toy/training", json={"goal": 2**30, "over_select": 4.0, "min_clients": 1}),
         "bad_training_config", "over_select"),
        (fleet.admin("PUT", "/v1/models/toy/training", json={"goal": 1, "min_clients": 1, "deadline_s": 1e300}),
         "bad_training_config", "deadline_s"),
        (fleet.admin("POST", "/v1/models/toy/rollback", json={"version": huge}), "bad_request", "version"),
        (dev.call("POST", "/v1/segments/reports", json={"model": "toy", "version": 1, "purpose": "propensity_scoring",
                                                        "counts": {"high": huge}}), "bad_report", str(2**31 - 1)),
        (dev.call("POST", "/v1/segments/reports", json={"model": "toy", "version": huge,
                                                        "purpose": "propensity_scoring", "counts": {"high": 1}}),
         "bad_report", "version"),
    ]
    for r, code, field in cases:
        assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text
        assert field in r.json()["error"]["message"], r.text
    ev = dev.call("POST", "/v1/evaluations/tasks", json={"model": "toy"}).json()
    r = dev.call("POST", ev["report_url"], json={"reports": [{"version": 1, "segment": "all", "kind": "ranking",
                                                              "count": huge}]})
    assert r.status_code == 400 and "count" in r.json()["error"]["message"], r.text
    for path in (f"/v1/models/toy/versions/{huge}/manifest", f"/v1/models/toy/versions/{huge}/files/params.bin"):
        r = fleet.admin("GET", path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_version", r.text
    assert fleet.admin("GET", "/v1/kpis").status_code == 200


def _metric_lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x and not x.startswith("#")]


def test_metrics_need_their_own_credential_and_keep_the_k_rule(fleet, tmp_path, make_live):
    """Point 8: /metrics is behind METRICS_TOKEN, hides counts under k_min, and has one series per label set."""
    _trained(fleet, tmp_path, "gov", k_min=3, residency={"us": "none"})
    assert fleet.call("GET", "/metrics").status_code == 401
    assert fleet.call("GET", "/metrics", fleet.admin_token).status_code == 401  # only its own credential
    assert fleet.call("GET", "/metrics", "mtk_wrong").status_code == 401
    devs = [fleet.enroll(f"eu{i}", "eu") for i in range(3)]
    fleet.train("gov", goal=3, min_clients=3, clip={"norm": 5.0, "adaptive": False})
    for d in devs[:2]:
        assert d.upload(d.task("gov").json(), np.full(7, 0.1, np.float32)).status_code == 202
    us = fleet.enroll("us0", "us")
    assert us.task("gov").json()["model"] == "gov@us"  # creates the line (first version: status NULL)
    text = fleet.call("GET", "/metrics", fleet.metrics_token).text
    assert 'fedmark_updates_accepted_total{model="gov"}' not in text  # 2 devices < k_min 3
    assert fleet.ok("GET", "/v1/models/gov/rounds")["rounds"][-1]["accepted"] is None  # the API agrees
    d = devs[2]
    assert d.upload(d.task("gov").json(), np.full(7, 0.1, np.float32)).status_code == 202
    text = fleet.call("GET", "/metrics", fleet.metrics_token).text
    assert 'fedmark_updates_accepted_total{model="gov"} 3.0' in text
    keys = [x.rsplit(" ", 1)[0] for x in _metric_lines(text)]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    assert 'fedmark_versions_total{model="gov@us",status="published"} 1.0' in text
    with make_live(METRICS_TOKEN=None) as off:  # no credential configured: the route is off
        r = off.call("GET", "/metrics")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


class _Genuine:
    """A platform verifier stand-in: attests the devices that send the evidence "genuine"."""

    def verify(self, device_id: str, evidence: Any) -> Any:
        from server.auth.attestation import AttestationResult

        return AttestationResult(evidence == "genuine", None if evidence == "genuine" else "not genuine")


@pytest.mark.parametrize("k_counts, shown", [("devices", True), ("attested", False)])
def test_self_enrolled_devices_do_not_lift_a_segment_over_k_when_k_counts_attested(make_live, tmp_path, k_counts,
                                                                                   shown):
    """Point 9 (k part): one real device's segment (7) plus two fakes reporting {"high": 0}: over k_min 3 when
    k counts devices (the attack), still suppressed when it counts attested devices."""
    with make_live(ATTESTATION_VERIFIER=_Genuine()) as lv:
        fleet = Fleet(lv.base_url, lv.admin_token)
        fleet.publish(tmp=tmp_path)
        fleet.policy(**dict(POLICY, k_min=3, k_counts=k_counts))
        key = fleet.app_key("acme", "eu")

        def enrol(device_id: str, evidence: str | None) -> str:
            body = {"app_key": key, "device_id": device_id, "region": "eu", "device_secret": secrets.token_urlsafe(32)}
            if evidence is not None:
                body["attestation"] = evidence
            r = fleet.call("POST", "/v1/devices/enroll", json=body)
            assert r.status_code == 201, r.text
            return r.json()["device_token"]

        reports = [(enrol("real", "genuine"), 7), (enrol("fake-1", None), 0), (enrol("fake-2", "forged"), 0)]
        for token, n in reports:
            r = fleet.call("POST", "/v1/segments/reports", token, json={"model": "toy", "version": 1,
                                                                        "purpose": "propensity_scoring",
                                                                        "counts": {"high": n}})
            assert r.status_code == 202, r.text
        mt = fleet.marketer("ana")
        segs = fleet.call("POST", "/v1/activation/segments", mt, json={"model": "toy", "purpose": "propensity_scoring"})
        assert segs.status_code == 200, segs.text
        (high,) = segs.json()["segments"]
        if shown:
            assert high == {"segment": "high", "count": 7, "devices": 3, "suppressed": False}
        else:
            assert high["suppressed"] is True and "count" not in high and "devices" not in high
            assert "attested" in high["reason"]
        assert fleet.ok("GET", "/v1/models/toy/policy")["policy"]["k_counts"] == k_counts
