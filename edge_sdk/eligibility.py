"""Eligibility: may this device train right now?

Why the server's policy decides: the host app knows the device's conditions
(charging, network, idle, battery) but the *task* says which ones matter, so a
fleet operator can loosen or tighten the rules without shipping a new app.  The
SDK refuses to train when any rule fails and says which ones, so the app can
simply try again later.  A rule this SDK does not know is treated as failed:
refusing is the safe side when a newer server asks for something unheard of.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from edge_sdk.errors import ConfigurationError, NotEligibleError

_KNOWN = {"require_charging", "require_unmetered", "require_idle", "min_battery"}


@dataclass(frozen=True)
class DeviceConditions:
    """What the host app reports about the device; ``battery`` is the charge level in [0, 1]."""

    charging: bool = False
    unmetered: bool = False
    idle: bool = False
    battery: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.battery) <= 1.0:
            raise ConfigurationError(f"battery must be a charge level in [0, 1], got {self.battery}")


def check(policy: Mapping[str, Any] | None, conditions: DeviceConditions) -> list[str]:
    """Reasons the device fails ``policy`` (empty list = eligible)."""
    policy = policy or {}
    reasons: list[str] = []
    if policy.get("require_charging") and not conditions.charging:
        reasons.append("the task requires the device to be charging")
    if policy.get("require_unmetered") and not conditions.unmetered:
        reasons.append("the task requires an unmetered network (e.g. Wi-Fi)")
    if policy.get("require_idle") and not conditions.idle:
        reasons.append("the task requires the device to be idle")
    try:
        min_battery = float(policy.get("min_battery") or 0.0)
    except (TypeError, ValueError):
        reasons.append(f"the task's min_battery {policy.get('min_battery')!r} is not a number")
        min_battery = 0.0
    if conditions.battery < min_battery:
        reasons.append(f"battery at {conditions.battery:.0%} is below the task's minimum of {min_battery:.0%}")
    for key in sorted(set(policy) - _KNOWN):
        if policy[key]:
            reasons.append(f"the task sets an eligibility rule {key!r} this SDK does not know; update the SDK")
    return reasons


def ensure_eligible(policy: Mapping[str, Any] | None, conditions: DeviceConditions | None) -> None:
    """Raise :class:`NotEligibleError` unless ``conditions`` satisfy ``policy``."""
    if conditions is None:
        raise ConfigurationError("pass conditions=DeviceConditions(charging=…, unmetered=…, idle=…, battery=…): "
                                 "the SDK trains only when the host app reports the device's state")
    reasons = check(policy, conditions)
    if reasons:
        raise NotEligibleError(reasons)
