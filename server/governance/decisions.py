"""The governance decisions, in one place: eligible? exported? suppressed?

Why one module: the same rule asked in two places drifts (a task allowed that
the fold then withholds, a count shown by one endpoint and suppressed by
another).  Every other module *asks* these functions and never re-states a
rule; each answer is a machine-readable ``code`` (tests, SDKs and the audit
trail rely on the codes) plus, where a person reads it, a message.

* **eligible** - may this device (region, partner) train this model line, may
  a cell's release join it, may a device report segment counts, may a marketer
  activate it for a purpose and region?
* **exported** - may this region's aggregate leave its partition, and if not,
  which regional line do its devices train?
* **suppressed** - the k rule: a count of fewer than ``k_min`` distinct
  devices never leaves the server (shown as None / ``suppressed``).

Pure functions of a :class:`~server.governance.policy.Policy` and plain values:
no database, no state changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from server.governance.policy import Policy
from server.governance.residency import DEFAULT_PLACE, Cell, is_line, line_name, place

__all__ = ["DEFAULT_PLACE", "Denial", "place", "eligible", "cell_withheld", "exported",
           "training_line", "shared_with", "activation_denial", "activation_region_denial", "report_denial", "k_min", "counts_toward_k",
           "k_devices", "suppressed",
           "shown"]

@dataclass(frozen=True)
class Denial:
    """Why a request is refused: ``code`` for machines (``reason`` in the API error), ``message`` for people."""

    code: str
    message: str


# ---------------------------------------------------------------------------- eligible
def eligible(policy: Policy, model: str, region: str | None, partner: str | None,
             line_region: str | None = None) -> Denial | None:
    """May a device of ``region`` / ``partner`` train (or evaluate) ``model``?

    ``line_region``: the region of ``model`` when it is a regional line (its
    devices must be of that region).  None = allowed.
    """
    if not policy.region_allowed(region):
        return Denial("region_not_allowed", f"the policy of {model!r} does not allow region {region!r} "
                                            f"(allowed: {', '.join(policy.allowed_regions or ())})")
    if not policy.partner_allowed(partner):
        return Denial("partner_not_allowed", f"the policy of {model!r} does not allow partner {partner!r}")
    if line_region is not None and line_region != region:
        return Denial("wrong_region_line", f"{model!r} is the line of region {line_region!r}; this device is in "
                                           f"region {region!r}")
    return None


def shared_with(policy: Policy | None, partner: str) -> bool:
    """Is a governed model shared with ``partner`` (its marketers may see it)?  Ungoverned models are shared with none."""
    return policy is not None and policy.partner_allowed(partner)


def cell_withheld(policy: Policy, cell: Cell, contributors: int, line_region: str | None) -> str | None:
    """Why a cell's release may not join the model line (``line_region`` None: the global model); None = it may."""
    if not policy.region_allowed(cell.region):
        return "region_not_allowed"
    if not policy.partner_allowed(cell.partner):
        return "partner_not_allowed"
    if line_region is None and not exported(policy, cell.region):
        return "region_exports_nothing"
    if line_region is not None and cell.region != line_region:
        return "wrong_region_line"
    if contributors < policy.min_region_contributors:
        return "below_min_region_contributors"
    return None


# ---------------------------------------------------------------------------- exported
def exported(policy: Policy, region: str) -> bool:
    """May this region's aggregate leave its partition (join the global model, be activated)?"""
    return policy.exports(region)


def training_line(policy: Policy, model: str, region: str | None) -> str | None:
    """The regional line a device of ``region`` trains instead of ``model`` (None: ``model`` itself)."""
    where = region or DEFAULT_PLACE
    if is_line(model) or exported(policy, where):
        return None
    return line_name(model, where)


# ---------------------------------------------------------------------------- activation and reports
def activation_region_denial(policy: Policy, model: str, region: str) -> Denial | None:
    """May anything of ``region`` be activated for ``model``?"""
    if policy.activation_regions is not None and region not in policy.activation_regions:
        return Denial("region_not_allowed", f"region {region!r} may not be activated for {model!r}; allowed: "
                                            f"{', '.join(policy.activation_regions)}")
    if not exported(policy, region):
        return Denial("region_exports_nothing", f"region {region!r} exports nothing (residency policy)")
    return None


def activation_denial(policy: Policy, model: str, purpose: str, region: str | None,
                      partner: str | None) -> Denial | None:
    """May a marketer (bound to ``partner``, or None) activate ``model`` for ``purpose`` (in ``region``)?"""
    if partner is not None and not policy.partner_allowed(partner):
        return Denial("partner_not_allowed", f"{model!r} is not shared with partner {partner!r}")
    if purpose not in policy.activation_purposes:
        return Denial("purpose_not_allowed", f"purpose {purpose!r} is not allowed for {model!r}; "
                                             f"allowed: {', '.join(policy.activation_purposes)}")
    if region is not None:
        return activation_region_denial(policy, model, region)
    return None


def report_denial(policy: Policy, region: str | None, partner: str | None, purpose: str) -> str | None:
    """May a device of this region / partner report segment counts for ``purpose``?  (A code, or None.)"""
    if not policy.region_allowed(region):
        return "region_not_allowed"
    if not policy.partner_allowed(partner):
        return "partner_not_allowed"
    if purpose not in policy.activation_purposes:
        return "purpose_not_allowed"
    if not exported(policy, region or DEFAULT_PLACE):
        return "region_exports_nothing"
    return None


# ---------------------------------------------------------------------------- suppressed
def k_min(policy: Policy | None) -> int:
    """The k of the k rule (an ungoverned model: 1, i.e. nothing suppressed but empty sets)."""
    return policy.k_min if policy is not None else 1


def counts_toward_k(policy: Policy | None, attested: bool) -> bool:
    """Does a device count toward the k rule?  Policy ``k_counts: "attested"``: only attested devices (a
    self-enrolled device proves no person behind it); ``"devices"`` (default) and ungoverned models: every device."""
    return policy is None or policy.k_counts != "attested" or bool(attested)


def k_devices(policy: Policy | None, devices: Mapping[str, bool]) -> int:
    """How many of ``devices`` (device id -> attested) count toward the k rule."""
    return sum(1 for attested in devices.values() if counts_toward_k(policy, attested))


def suppressed(devices: int, k: int) -> bool:
    """The k rule: anything computed from fewer than ``k`` distinct devices stays on the server."""
    return devices < k


def shown(count: int, k: int) -> int | None:
    """``count`` as it may leave the server: itself from ``k`` devices on, else None (suppressed)."""
    return None if suppressed(count, k) else count
