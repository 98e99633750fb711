"""Activation: marketers use a model (pull it, or ask for audience segments) only through policy checks.

Why checked here and not only at training: the same purpose / region /
consent rules that decided which records could train the model decide what
it may be used for.  Every request - allowed or denied - is recorded (table
``activations``, the Compliant Activation Rate's source) and audited; a denied
one answers ``403 activation_denied`` with a machine-readable ``reason``:

* ``ungoverned_model`` - the model has no policy: nothing to check against, so nothing is allowed;
* ``partner_not_allowed`` - a partner-bound token asks for a model not shared with its partner;
* ``purpose_not_allowed`` - the requested purpose is not among the policy's activation purposes;
* ``region_not_allowed`` - the requested region is not among the policy's activation regions;
* ``region_exports_nothing`` - that region's policy is residency ``none``: nothing of it leaves;
* ``consent_mapping_missing`` - the policy governs training with standard signals (``consent_signals``) but
  declares no mapping (``activation.consent_signals``) for the requested purpose: what that use needs is unknown;
* ``consent_not_covered`` - the mapping the purpose needs is not met by every record the model trained on:
  the policy in force, or one a contribution to the current version (or its ancestors) was accepted under,
  admits records that the purpose's mapping excludes (the audit detail names the signal, e.g.
  ``consent_mode_missing``), or a contribution was accepted without any policy;
* ``no_published_version`` - nothing has passed publication yet.

The consent check asks the contract's one rule (``fedmark.contract.consent.shortfall``, which is
``decide`` applied to the weakest records a training requirement admits): the same mapping devices
apply to every record decides what the trained model may be used for.

Segments are built from device-reported counts: a device scores its own
records with the published model, keeps only records whose consent covers the
requested purpose, and reports how many fall in each segment
(``POST /v1/segments/reports``).  The server adds them up; a segment backed
by fewer than ``k_min`` distinct devices is suppressed (neither its count nor
its device count is returned).  Partner-bound marketers see only their own
partner's devices' counts.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy import Connection, delete, select

from server.auth.tokens import Principal
from server.errors import ApiError
from fedmark.contract.consent import shortfall
from server.governance import audit, decisions, partners
from server.governance.policy import Policy, current_policy, policy_version
from server.storage import schema

_SEG_RE = re.compile(r"^[A-Za-z0-9._:=-]{1,64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class Outcome:
    """One activation decision: ``reason`` None means allowed; ``signal`` names the consent signal that fell short."""

    policy: Policy | None
    model: Any
    reason: str | None
    message: str
    signal: str | None = None


@dataclass(frozen=True)
class Request:
    model: str
    purpose: str
    region: str | None
    kind: str  # "model" | "segments"


def parse_request(body: Mapping[str, Any], kind: str) -> Request:
    model, purpose, region = body.get("model"), body.get("purpose"), body.get("region")
    if not isinstance(model, str) or not _NAME_RE.match(model):
        raise ApiError(400, "bad_request", "body needs \"model\": the model name")
    if not isinstance(purpose, str) or not _NAME_RE.match(purpose):
        raise ApiError(400, "bad_request", "body needs \"purpose\": what the activation is for (e.g. \"propensity_scoring\"); "
                                           "it is checked against the model's policy")
    if region is not None and (not isinstance(region, str) or not _NAME_RE.match(region)):
        raise ApiError(400, "bad_request", "\"region\" must be a region name or omitted (all activatable regions)")
    return Request(model, purpose.lower(), region, kind)


def _trained_under(conn: Connection, model: str, version: int | None) -> tuple[set[int], bool]:
    """The policy versions under which contributions to ``version`` and its ancestors were accepted, and whether
    any was accepted without a policy.  (Rounds write versions whose ``parent`` is the version they trained.)"""
    v = schema.versions
    rows = {r.version: r for r in conn.execute(select(v.c.version, v.c.parent, v.c.round_id).where(v.c.model == model))}
    rounds: set[str] = set()
    seen: set[int] = set()
    while version is not None and version in rows and version not in seen:
        seen.add(version)
        if rows[version].round_id:
            rounds.add(rows[version].round_id)
        version = rows[version].parent
    if not rounds:
        return set(), False
    c = schema.contributions
    found = conn.execute(select(c.c.round_id, c.c.policy_version).distinct().where(c.c.model == model)).all()
    under = {pv for rid, pv in found if rid in rounds}
    return {pv for pv in under if pv is not None}, None in under


def consent_denial(conn: Connection, policy: Policy, model: Any, purpose: str) -> tuple[str, str, str | None] | None:
    """(reason, message, the signal that falls short) when the consent mapping forbids this activation, else None."""
    needed = policy.activation_requirement(purpose)
    if needed is None:
        if policy.consent_signals is None:
            return None  # the simple form governs: the purpose lists above decide
        return ("consent_mapping_missing",
                f"{model.name!r} trains under standard consent signals, but its policy declares no mapping for "
                f"purpose {purpose!r}; add activation.consent_signals.{purpose} (docs/CONSENT.md)", None)
    versions, ungoverned = _trained_under(conn, model.name, model.current_version)
    if ungoverned:
        return ("consent_not_covered", f"version {model.current_version} of {model.name!r} holds contributions "
                                       f"accepted without a policy: no consent decision to check {purpose!r} against",
                None)
    trained = {policy.version: policy}
    for pv in sorted(versions - {policy.version}):
        old = policy_version(conn, model.name, pv)
        if old is not None:
            trained[pv] = old
    for pv, p in sorted(trained.items()):
        short = shortfall(p.training_requirement(), needed)
        if short is not None:
            where = "in force" if pv == policy.version else "the current version trained under"
            return ("consent_not_covered", f"purpose {purpose!r} needs consent signals that policy version {pv} "
                                           f"({where}) does not require of every training record: such a record "
                                           f"would be excluded as {short}", short)
    return None


def check(conn: Connection, who: Principal, req: Request) -> Outcome:
    """The decision on one activation request (404 for an unknown model)."""
    model = conn.execute(select(schema.models).where(schema.models.c.name == req.model)).first()
    if model is None:
        raise ApiError(404, "unknown_model", f"no model named {req.model!r}")
    policy = current_policy(conn, req.model)
    if policy is None:
        return Outcome(None, model, "ungoverned_model", f"{req.model!r} has no governance policy; activation needs one")
    denial = decisions.activation_denial(policy, req.model, req.purpose, req.region,
                                         who.partner if who.role == "marketer" else None)
    if denial is None and model.line_of:  # a regional line holds only its region's data
        denial = decisions.activation_region_denial(policy, req.model, model.region)
    if denial is not None:
        return Outcome(policy, model, denial.code, denial.message)
    consent = consent_denial(conn, policy, model, req.purpose)
    if consent is not None:
        return Outcome(policy, model, *consent)
    if model.current_version is None:
        return Outcome(policy, model, "no_published_version", f"{req.model!r} has no published version")
    return Outcome(policy, model, None, "allowed")


def record(conn: Connection, who: Principal, req: Request, outcome: Outcome, now: float) -> None:
    """Store and audit the decision (append last: see server.governance.audit)."""
    reason = outcome.reason
    version = outcome.model.current_version if reason is None else None
    detail: dict[str, Any] = {"purpose": req.purpose, "region": req.region, "partner": who.partner, "version": version}
    if outcome.signal is not None:
        detail["consent_signal"] = outcome.signal
    conn.execute(schema.activations.insert().values(model=req.model, actor=who.name, partner=who.partner, kind=req.kind,
                                                    version=version, purpose=req.purpose, region=req.region,
                                                    allowed=reason is None, reason=reason, at=now,
                                                    token_id=who.token_id))
    audit.append_one(conn, now, "activation.allowed" if reason is None else "activation.denied", model=req.model,
                     actor=who.name, code=reason or "allowed", subject=req.kind,
                     detail=detail)


def deny(reason: str, message: str, signal: str | None = None) -> ApiError:
    """The 403 ``activation_denied`` answer, with the machine-readable reason (and the consent signal short)."""
    return ApiError(403, "activation_denied", message,
                    extra={"reason": reason, **({"consent_signal": signal} if signal is not None else {})})


def segments(conn: Connection, who: Principal, req: Request, policy: Policy, version: int) -> list[dict[str, Any]]:
    """Audience segments of ``version`` for the purpose (and region), with k-suppression."""
    s = schema.segment_reports
    q = select(s).where(s.c.model == req.model, s.c.version == version, s.c.purpose == req.purpose)
    if req.region is not None:
        q = q.where(s.c.region == req.region)
    if who.role == "marketer" and who.partner is not None:
        q = q.where(s.c.partner == who.partner)
    counts: dict[str, int] = defaultdict(int)
    devices: dict[str, set[str]] = defaultdict(set)
    for row in conn.execute(q):
        if decisions.activation_region_denial(policy, req.model, row.region) is not None:
            continue
        counts[row.segment] += int(row.count)
        devices[row.segment].add(row.device_id)
    out = []
    known = partners.attested(conn, set().union(*devices.values())) if policy.k_counts == "attested" else {}
    for seg in sorted(counts):
        n = decisions.k_devices(policy, {d: known.get(d, False) for d in devices[seg]})
        if decisions.suppressed(n, policy.k_min):
            what = "attested devices" if policy.k_counts == "attested" else "devices"
            out.append({"segment": seg, "suppressed": True, "reason": f"fewer than k_min={policy.k_min} {what}"})
        else:
            out.append({"segment": seg, "count": counts[seg], "devices": n, "suppressed": False})
    return out


def store_segment_report(conn: Connection, who: Principal, body: Mapping[str, Any], now: float,
                         body_bytes: int) -> int:
    """Store a device's segment counts (replacing its earlier report for the same model/version/purpose)."""
    model, version, purpose, counts = body.get("model"), body.get("version"), body.get("purpose"), body.get("counts")
    if not isinstance(model, str) or isinstance(version, bool) or not isinstance(version, int) \
            or not isinstance(purpose, str) or not isinstance(counts, Mapping) or not counts or len(counts) > 64:
        raise ApiError(400, "bad_report", "body must be {\"model\", \"version\", \"purpose\", \"counts\": "
                                          "{segment: records, ...}} with 1-64 segments")
    if not 0 <= version <= schema.MAX_INT:
        raise ApiError(400, "bad_report", f"version must be a version number (0..{schema.MAX_INT}), got {version!r}")
    for seg, n in counts.items():
        if not _SEG_RE.match(str(seg)) or isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= schema.MAX_INT:
            raise ApiError(400, "bad_report", f"segment {seg!r}: names are 1-64 characters from A-Z a-z 0-9 . _ : = - "
                                              f"and counts are integers from 0 to {schema.MAX_INT}, got {n!r}")
    policy = current_policy(conn, model)
    if policy is None:
        raise ApiError(403, "policy_denied", f"{model!r} has no policy; segments are only collected for governed "
                                             "models", extra={"reason": "ungoverned_model"})
    reason = decisions.report_denial(policy, who.region, who.partner, purpose.lower())
    if reason is not None:
        raise ApiError(403, "policy_denied", f"segment counts for {model!r} and purpose {purpose!r} are not "
                                             f"accepted from this device ({reason})", extra={"reason": reason})
    s = schema.segment_reports
    cell = decisions.place(who.region, who.partner)
    share = max(1, body_bytes // len(counts))
    for seg, n in counts.items():
        conn.execute(delete(s).where(s.c.model == model, s.c.version == version, s.c.purpose == purpose.lower(),
                                     s.c.device_id == who.device_id, s.c.segment == seg))
        conn.execute(s.insert().values(model=model, version=version, purpose=purpose.lower(), device_id=who.device_id,
                                       region=cell.region, partner=cell.partner, segment=seg,
                                       count=int(n), body_bytes=share, at=now))
    return len(counts)
