"""Activation checks the same consent mapping devices train by (issue #16, item 2), over real HTTP.

A marketer's activation for a purpose is allowed only when every record the model trained on meets what
that purpose needs (``activation.consent_signals``, or the training mapping for the policy's own purpose);
the decision is the contract's one rule (``fedmark.contract.consent.shortfall``), denials are 403
``activation_denied`` with a reason, recorded, audited and counted in the Compliant Activation Rate.
"""
from __future__ import annotations

import numpy as np

from tests.server.governance.conftest import synthetic

VENDOR = 1234
ADS = {"tcf": {"vendor_id": VENDOR, "consent": [1, 3, 4]}, "consent_mode": ["ad_user_data", "ad_personalization"],
       "gpc": True}
POLICY = {"purpose": "personalised_ads", "allowed_regions": ["eu"], "consent_signals": ADS,
          "activation": {"purposes": ["personalised_ads", "audience_insights", "retargeting", "lookalike"],
                         "consent_signals": {
                             # needs less than training required of every record: covered
                             "audience_insights": {"tcf": {"vendor_id": VENDOR, "consent": [1, 3]}, "gpc": True},
                             # needs a Consent Mode state training never asked for
                             "retargeting": {**ADS, "consent_mode": ["ad_storage", "ad_user_data"]}}}}


def _activate(fleet, token, purpose, kind="model"):
    return fleet.call("POST", f"/v1/activation/{kind}", token, json={"model": "toy", "purpose": purpose})


def _denied(r, reason, signal=None):
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "activation_denied" and err["reason"] == reason, err
    assert err.get("consent_signal") == signal and len(err["message"]) > 20, err
    return err


def test_activation_applies_the_policys_consent_mapping_for_the_purpose(fleet, tmp_path):
    fleet.publish(tmp=tmp_path)
    fleet.policy(**POLICY)
    mt = fleet.marketer("ana")
    assert _activate(fleet, mt, "personalised_ads").status_code == 200     # the training mapping covers itself
    assert _activate(fleet, mt, "audience_insights", "segments").status_code == 200
    err = _denied(_activate(fleet, mt, "retargeting"), "consent_not_covered", "consent_mode_missing")
    assert "policy version 1" in err["message"]
    err = _denied(_activate(fleet, mt, "lookalike", "segments"), "consent_mapping_missing")
    assert "activation.consent_signals.lookalike" in err["message"]
    # every decision is recorded and audited, with the signal that fell short
    entries = [e for e in fleet.audit() if e["kind"].startswith("activation.")]
    assert [(e["kind"], e["code"]) for e in entries] == [
        ("activation.allowed", "allowed"), ("activation.allowed", "allowed"),
        ("activation.denied", "consent_not_covered"), ("activation.denied", "consent_mapping_missing")]
    assert entries[2]["detail"]["consent_signal"] == "consent_mode_missing"
    assert entries[2]["detail"]["purpose"] == "retargeting" and "consent_signal" not in entries[3]["detail"]
    car = fleet.ok("GET", "/v1/kpis", params={"model": "toy"})["compliant_activation_rate"]
    assert (car["requests"], car["allowed"]) == (4, 2)
    assert car["denied_by_reason"] == {"consent_not_covered": 1, "consent_mapping_missing": 1}
    # the policy reads back with its mappings, as the contract normalised them
    pol = fleet.ok("GET", "/v1/models/toy/policy")
    assert pol["policy"]["activation"]["consent_signals"]["audience_insights"]["tcf"]["consent"] == [1, 3]


def test_a_version_trained_under_a_weaker_mapping_is_not_activated_for_a_stronger_one(fleet, tmp_path):
    """Tightening the policy does not bless what already trained: the current version's rounds were accepted
    under policy version 1 (TCF purpose 1 only, GPC not respected), so personalised ads stays refused
    until the team rolls back to a version no such round touched."""
    fleet.publish(tmp=tmp_path)
    fleet.policy(purpose="personalised_ads", allowed_regions=["eu"],
                 consent_signals={"tcf": {"vendor_id": VENDOR, "consent": [1]}})
    fleet.train(goal=2, min_clients=1, clip={"norm": 5.0, "adaptive": False})
    rng = np.random.default_rng(16)
    for i in range(2):
        d = fleet.enroll(f"eu{i}", "eu")
        d.x, d.y = synthetic(rng, 50)
        d.train_round()
    assert fleet.model()["current_version"] == 2
    mt = fleet.marketer("ana")
    # under the policy it trained with, the model serves its own purpose
    assert _activate(fleet, mt, "personalised_ads").status_code == 200
    fleet.policy(**{**POLICY, "activation": {"purposes": ["personalised_ads"]}})  # policy version 2: stronger
    err = _denied(_activate(fleet, mt, "personalised_ads"), "consent_not_covered", "gpc_opt_out")
    assert "policy version 1" in err["message"] and "current version trained under" in err["message"]
    # rolled back to the published artifact (no round, so only the policy in force): allowed again
    fleet.ok("POST", "/v1/models/toy/rollback", json={"version": 1})
    assert _activate(fleet, mt, "personalised_ads").status_code == 200


def test_simple_form_policies_and_bad_mappings(fleet, tmp_path):
    fleet.publish(tmp=tmp_path)
    mt = fleet.marketer("ana")
    # the simple form (no consent_signals): undeclared purposes are decided by the purpose lists alone, as before;
    # a declared mapping is checked against what the simple form required: no TC string at all
    fleet.policy(purpose="propensity_scoring", activation={
        "purposes": ["propensity_scoring", "retention", "personalised_ads"],
        "consent_signals": {"personalised_ads": ADS, "retention": {"simple_purposes": True}}})
    assert _activate(fleet, mt, "propensity_scoring").status_code == 200
    _denied(_activate(fleet, mt, "personalised_ads"), "consent_not_covered", "gpc_opt_out")
    _denied(_activate(fleet, mt, "retention"), "consent_not_covered", "purpose_not_consented")
    for act, names in [({"purposes": ["a"], "consent_signals": {"b": ADS}}, "not among the activation purposes"),
                       ({"purposes": ["a"], "consent_signals": {"a": {"tcf": {"consent": [1]}}}}, "vendor_id"),
                       ({"purposes": ["a"], "consent_signals": ["a"]}, "must map activation purposes"),
                       ({"purposes": ["a"], "consent_signals": {"a": {}}}, "requires nothing")]:
        r = fleet.admin("PUT", "/v1/models/toy/policy", json={"purpose": "a", "activation": act})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_policy", r.text
        assert "activation.consent_signals" in r.json()["error"]["message"] and names in r.json()["error"]["message"]
