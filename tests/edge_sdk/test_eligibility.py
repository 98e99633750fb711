"""Eligibility: the task's policy decides, the SDK says why it refuses."""
from __future__ import annotations

import pytest

from edge_sdk.eligibility import DeviceConditions, check, ensure_eligible
from edge_sdk.errors import ConfigurationError, NotEligibleError

STRICT = {"require_charging": True, "require_unmetered": True, "require_idle": True, "min_battery": 0.5}


def test_every_failed_rule_is_named():
    reasons = check(STRICT, DeviceConditions(charging=False, unmetered=False, idle=False, battery=0.2))
    assert len(reasons) == 4
    text = " ".join(reasons)
    for word in ("charging", "unmetered", "idle", "20%", "50%"):
        assert word in text


def test_satisfied_policy_and_empty_policy_pass():
    assert check(STRICT, DeviceConditions(charging=True, unmetered=True, idle=True, battery=0.5)) == []
    assert check({}, DeviceConditions()) == []
    assert check(None, DeviceConditions()) == []


def test_relaxed_rules_do_not_apply():
    policy = {"require_charging": False, "require_unmetered": True, "require_idle": False, "min_battery": 0.0}
    assert check(policy, DeviceConditions(unmetered=True)) == []
    assert check(policy, DeviceConditions(charging=True, idle=True, battery=1.0)) == [
        "the task requires an unmetered network (e.g. Wi-Fi)"]


def test_unknown_rules_refuse_and_say_update_the_sdk():
    reasons = check({"require_screen_off": True, "future_flag": False}, DeviceConditions())
    assert len(reasons) == 1 and "require_screen_off" in reasons[0] and "update the SDK" in reasons[0]


def test_ensure_eligible_raises_with_reasons_and_needs_conditions():
    with pytest.raises(NotEligibleError) as ei:
        ensure_eligible({"require_charging": True}, DeviceConditions(battery=0.9))
    assert ei.value.reasons == ["the task requires the device to be charging"]
    assert "not eligible" in str(ei.value)
    with pytest.raises(ConfigurationError, match="DeviceConditions"):
        ensure_eligible({}, None)
    with pytest.raises(ConfigurationError, match=r"\[0, 1\]"):
        DeviceConditions(battery=80)
