"""Activate (policy-checked model pulls and segments, k-suppression) and partners (tenant isolation)."""
from __future__ import annotations

POLICY = {"purpose": "propensity_scoring", "allowed_regions": ["eu", "us", "cn"], "residency": {"cn": "none"},
          "allowed_partners": ["acme", "globex"], "k_min": 3,
          "activation": {"purposes": ["propensity_scoring", "retention"]}}


def _setup(fleet, tmp_path):
    fleet.publish(tmp=tmp_path)
    fleet.publish("other", tmp=tmp_path)  # ungoverned
    fleet.policy(**POLICY)
    devs = {"eu": [fleet.enroll(f"eu{i}", "eu") for i in range(4)], "us": [fleet.enroll(f"us{i}", "us") for i in range(2)],
            "cn": [fleet.enroll("cn0", "cn")], "gx": [fleet.enroll(f"gx{i}", "eu", "globex") for i in range(3)]}
    return devs


def _report(dev, counts, purpose="propensity_scoring"):
    return dev.call("POST", "/v1/segments/reports", json={"model": "toy", "version": 1, "purpose": purpose,
                                                          "counts": counts})


def test_segments_are_policy_checked_and_k_suppressed(fleet, tmp_path):
    devs = _setup(fleet, tmp_path)
    for d in devs["eu"] + devs["us"] + devs["gx"]:
        assert _report(d, {"high": 10, "low": 30}).status_code == 202
    for d in devs["eu"][:2]:
        assert _report(d, {"vip": 1}).status_code == 202  # only 2 devices < k_min = 3
    # devices cannot report for a purpose the policy does not activate, nor from a region that exports nothing
    r = _report(devs["eu"][0], {"high": 1}, purpose="ads")
    assert r.status_code == 403 and r.json()["error"]["reason"] == "purpose_not_allowed"
    r = _report(devs["cn"][0], {"high": 1})
    assert r.status_code == 403 and r.json()["error"]["reason"] == "region_exports_nothing"
    mt = fleet.marketer("ana")
    out = fleet.call("POST", "/v1/activation/segments", mt, json={"model": "toy", "purpose": "propensity_scoring"})
    assert out.status_code == 200, out.text
    segs = {s["segment"]: s for s in out.json()["segments"]}
    assert segs["high"] == {"segment": "high", "count": 90, "devices": 9, "suppressed": False}
    assert segs["vip"]["suppressed"] is True and "count" not in segs["vip"] and "devices" not in segs["vip"]
    us_only = fleet.call("POST", "/v1/activation/segments", mt, json={"model": "toy", "purpose": "propensity_scoring",
                                                                      "region": "us"}).json()["segments"]
    assert all(s["suppressed"] for s in us_only)  # 2 us devices < k_min
    # a partner-bound marketer sees its own partner's devices' counts only
    gx = fleet.marketer("gina", partner="globex")
    segs = fleet.call("POST", "/v1/activation/segments", gx, json={"model": "toy", "purpose": "retention"}).json()
    assert segs["segments"] == []  # nobody reported for retention yet
    segs = fleet.call("POST", "/v1/activation/segments", gx, json={"model": "toy", "purpose": "propensity_scoring"}).json()
    assert {s["segment"]: s.get("count") for s in segs["segments"]} == {"high": 30, "low": 90}
    # denied requests: 403 with the reason, recorded and audited
    denied = [({"model": "toy", "purpose": "credit_scoring"}, "purpose_not_allowed"),
              ({"model": "toy", "purpose": "propensity_scoring", "region": "cn"}, "region_exports_nothing"),
              ({"model": "toy", "purpose": "propensity_scoring", "region": "apac"}, "region_not_allowed"),
              ({"model": "other", "purpose": "propensity_scoring"}, "ungoverned_model")]
    for body, reason in denied:
        r = fleet.call("POST", "/v1/activation/segments", mt, json=body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "activation_denied", r.text
        assert r.json()["error"]["reason"] == reason and len(r.json()["error"]["message"]) > 10
    kinds = [(e["kind"], e["code"]) for e in fleet.audit() if e["kind"].startswith("activation.")]
    assert kinds.count(("activation.allowed", "allowed")) == 4
    assert {c for k, c in kinds if k == "activation.denied"} == {r for _, r in denied}
    car = fleet.ok("GET", "/v1/kpis", params={"model": "toy"})["compliant_activation_rate"]
    assert (car["requests"], car["allowed"]) == (7, 4) and abs(car["value"] - 4 / 7) < 1e-12  # "other" is not toy
    assert car["denied_by_reason"] == {"purpose_not_allowed": 1, "region_exports_nothing": 1, "region_not_allowed": 1}


def test_model_pull_needs_an_allowed_activation(fleet, tmp_path):
    _setup(fleet, tmp_path)
    mt = fleet.marketer("max")
    r = fleet.call("GET", "/v1/models/toy/versions/1/files/params.bin", mt)
    assert r.status_code == 403 and r.json()["error"]["code"] == "activation_required"
    r = fleet.call("POST", "/v1/activation/model", mt, json={"model": "toy", "purpose": "ads"})
    assert r.status_code == 403 and r.json()["error"]["reason"] == "purpose_not_allowed"
    r = fleet.call("POST", "/v1/activation/model", mt, json={"model": "toy", "purpose": "retention"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["version"] == 1 and out["manifest"]["model"] == "toy" and out["policy_version"] == 1
    for url in out["files"].values():
        assert fleet.call("GET", url, mt).status_code == 200
    assert fleet.call("POST", "/v1/activation/model", mt, json={"purpose": "retention"}).status_code == 400
    assert fleet.call("POST", "/v1/activation/model", fleet.enroll("d", "eu").token,
                      json={"model": "toy", "purpose": "retention"}).status_code == 403  # devices do not activate


def test_partners_see_their_own_devices_and_shared_models_only(fleet, tmp_path):
    _setup(fleet, tmp_path)
    gx = fleet.marketer("gina", partner="globex")
    mine = fleet.call("GET", "/v1/devices", gx).json()
    assert mine["partner"] == "globex" and {d["device_id"] for d in mine["devices"]} == {"gx0", "gx1", "gx2"}
    r = fleet.call("GET", "/v1/devices", gx, params={"partner": "acme"})
    assert r.status_code == 403
    assert {m["name"] for m in fleet.call("GET", "/v1/models", gx).json()["models"]} == {"toy"}  # "other" is not shared
    it = fleet.marketer("ian", partner="initech")  # a partner the policy does not allow
    assert fleet.call("GET", "/v1/models", it).json()["models"] == []
    r = fleet.call("GET", "/v1/models/toy", it)  # hidden: answered like a model that does not exist
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_model"
    r = fleet.call("POST", "/v1/activation/model", it, json={"model": "toy", "purpose": "retention"})
    assert r.status_code == 403 and r.json()["error"]["reason"] == "partner_not_allowed"
    parts = {p["partner"]: p for p in fleet.ok("GET", "/v1/partners")["partners"]}
    assert parts["acme"]["devices"] == 7 and parts["globex"]["devices"] == 3 and parts["globex"]["shared_models"] == ["toy"]
    assert len(fleet.ok("GET", "/v1/devices")["devices"]) == 10  # the admin sees every fleet
