"""Governance policies per model: versioned, validated, audited.

Why a policy separate from the training configuration: the training
configuration says *how* to aggregate (goal, clip, noise); the policy says
*what is allowed* (purpose, consent, regions, partners, cohort sizes, publish
gates, activation).  Different people own them (ML engineer vs. data
protection officer), they change at different times, and every change to the
policy must be visible in the audit trail.  Policies are immutable versions;
the newest is in force.  A task records the policy version it was issued
under, so every contribution can be traced to the decision that allowed it.

Policy JSON (``PUT /v1/models/{name}/policy``; unknown keys are refused)::

    {"purpose": "propensity_scoring",          # consent purpose every training/eval record must carry
     "description": "...",                      # what the model is for (free text)
     "consent_purposes": ["propensity_scoring"],# all of these must be consented (default [purpose])
     "consent_signals": null | {"tcf": {"vendor_id": 1234, "consent": [1, 3, 4]},   # the standard signals
                                "consent_mode": ["ad_user_data", "ad_personalization"], "gpc": true},
                                                # the purpose needs instead (docs/CONSENT.md)
     "allowed_regions": ["eu", "us"] | null,    # null: any region
     "allowed_partners": ["acme"] | null,       # null: any partner
     "residency": {"cn": "none"},               # per region: "aggregate" (default) or "none"
     "k_min": 5,                                # min distinct devices behind any aggregate that leaves the server
     "min_region_contributors": 1,              # a cell's release joins the global model only from this many
     "gate": null | {"metric": "auc", "max_regression": 0.02, "min_contributors": 3,
                     "min_evaluators": 3, "max_epsilon": null},
     "partner_contribution": false,             # build leave-one-partner-out variants for evaluation
     "activation": {"purposes": [...], "regions": [...] | null,
                    "consent_signals": {"personalised_ads": {...}}},  # what each use needs (docs/CONSENT.md)
     "record_bytes": null,                      # per-record byte estimate override (KPIs)
     "k_counts": "devices"}                     # what k_min counts: "devices" (any enrolled) or "attested"

A region that is ``"none"`` exports nothing, not even its aggregate: its
devices train a separate regional model line ``<model>@<region>``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from sqlalchemy import Connection, func, select

from fedmark.contract import ProtocolError, sha256_bytes
from fedmark.contract.consent import SignalRequirement, parse_requirement
from fedmark.contract.protocol import required_purposes
from server.errors import ApiError
from server.governance import audit
from server.storage import schema

_TOKEN_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: What the k rule counts: every distinct enrolled device, or only devices the attestation verifier vouched for
#: (self-enrolled fakes then lift nothing over k).
K_COUNTS = ("devices", "attested")
GATE_METRICS: dict[str, bool] = {"auc": True, "loss": False, "ece": False, "hr": True, "ndcg": True}
"""Gate metric -> higher is better."""
EXPORT_MODES = ("aggregate", "none")


def bad_policy(key: str, why: str) -> ApiError:
    """The 400 ``bad_policy`` error about one key of a policy body."""
    return ApiError(400, "bad_policy", f"policy: {key} {why}")


def _names(d: Mapping[str, Any], key: str, *, allow_null: bool) -> tuple[str, ...] | None:
    v = d.get(key)
    if v is None:
        if allow_null:
            return None
        raise bad_policy(key, "is required")
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and _TOKEN_RE.match(x) for x in v):
        raise bad_policy(key, f"must be {'null or ' if allow_null else ''}a non-empty list of names "
                        f"(A-Z a-z 0-9 . _ : -), got {v!r}")
    return tuple(dict.fromkeys(v))


def _number(d: Mapping[str, Any], key: str, default: float | None, lo: float, *, integer: bool = False,
            where: str = "", hi: float | None = None) -> Any:
    """A number of the policy; integers are bounded to what an Integer column / counter holds."""
    v = d.get(key, default)
    if v is None:
        return None
    top = hi if hi is not None else (schema.MAX_INT if integer else None)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < lo \
            or (top is not None and v > top):
        raise bad_policy(where + key, f"must be a number >= {lo}{f' and <= {top}' if top is not None else ''}, "
                                      f"got {v!r}")
    if integer:
        if int(v) != v:
            raise bad_policy(where + key, f"must be an integer, got {v!r}")
        return int(v)
    return float(v)


@dataclass(frozen=True)
class Gate:
    metric: str = "auc"
    max_regression: float = 0.0
    min_contributors: int = 1
    min_evaluators: int = 1
    max_epsilon: float | None = None

    @property
    def higher_is_better(self) -> bool:
        return GATE_METRICS[self.metric]


@dataclass(frozen=True)
class Policy:
    purpose: str
    description: str = ""
    consent_purposes: tuple[str, ...] = ()
    #: The standard signals (TCF, Consent Mode, GPC) the purpose needs; None: the simple purpose names decide.
    consent_signals: Mapping[str, Any] | None = None
    allowed_regions: tuple[str, ...] | None = None
    allowed_partners: tuple[str, ...] | None = None
    residency: Mapping[str, str] = field(default_factory=dict)
    k_min: int = 1
    min_region_contributors: int = 1
    gate: Gate | None = None
    partner_contribution: bool = False
    activation_purposes: tuple[str, ...] = ()
    activation_regions: tuple[str, ...] | None = None
    #: Per activation purpose, the standard signals that use needs (checked against what trained the model).
    activation_consent_signals: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    record_bytes: float | None = None
    k_counts: str = "devices"
    version: int = 0  # set when loaded from storage

    # ------------------------------------------------------------------ decisions
    def region_allowed(self, region: str | None) -> bool:
        return self.allowed_regions is None or region in self.allowed_regions

    def partner_allowed(self, partner: str | None) -> bool:
        return self.allowed_partners is None or partner in self.allowed_partners

    def training_requirement(self) -> SignalRequirement:
        """What every record must satisfy to train under this policy: the requirement its tasks carry."""
        return parse_requirement(self.consent_signals, required_purposes(self.consent_purposes, self.purpose, self.purpose))

    def activation_requirement(self, purpose: str) -> SignalRequirement | None:
        """What an activation for ``purpose`` needs from the records the model trained on, or None when the
        policy declares nothing for it (the training purpose's own mapping stands for itself)."""
        declared = self.activation_consent_signals.get(purpose)
        if declared is not None:
            return parse_requirement(declared, (purpose,))
        if purpose == self.purpose and self.consent_signals is not None:
            return self.training_requirement()
        return None

    def exports(self, region: str) -> bool:
        """Does this region's aggregate leave its partition (join the global model)?"""
        return self.residency.get(region, "aggregate") != "none"

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        return {
            "purpose": self.purpose, "description": self.description, "consent_purposes": list(self.consent_purposes),
            "consent_signals": None if self.consent_signals is None else dict(self.consent_signals),
            "allowed_regions": None if self.allowed_regions is None else list(self.allowed_regions),
            "allowed_partners": None if self.allowed_partners is None else list(self.allowed_partners),
            "residency": dict(self.residency), "k_min": self.k_min,
            "min_region_contributors": self.min_region_contributors,
            "gate": None if self.gate is None else dataclasses.asdict(self.gate),
            "partner_contribution": self.partner_contribution,
            "activation": {"purposes": list(self.activation_purposes),
                           "regions": None if self.activation_regions is None else list(self.activation_regions),
                           **({"consent_signals": {k: dict(v) for k, v in self.activation_consent_signals.items()}}
                              if self.activation_consent_signals else {})},
            "record_bytes": self.record_bytes, "k_counts": self.k_counts,
        }

    @staticmethod
    def from_json(d: Any) -> "Policy":
        if not isinstance(d, Mapping):
            raise bad_policy("body", "must be a JSON object")
        known = {"purpose", "description", "consent_purposes", "consent_signals", "allowed_regions", "allowed_partners", "residency",
                 "k_min", "min_region_contributors", "gate", "partner_contribution", "activation", "record_bytes",
                 "k_counts"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise bad_policy(", ".join(unknown), f"unknown key(s); known keys: {', '.join(sorted(known))}")
        purpose = d.get("purpose")
        if not isinstance(purpose, str) or not _TOKEN_RE.match(purpose):
            raise bad_policy("purpose", f"is required: the consent purpose records must carry, e.g. \"propensity_scoring\"; "
                                  f"got {purpose!r}")
        purpose = purpose.lower()
        desc = d.get("description", "")
        if not isinstance(desc, str) or len(desc) > 2000:
            raise bad_policy("description", "must be a string of at most 2000 characters")
        consents = _names(d, "consent_purposes", allow_null=True) or (purpose,)
        consents = tuple(dict.fromkeys(c.lower() for c in consents))
        if purpose not in consents:
            consents = (purpose,) + consents
        signals = d.get("consent_signals")
        if signals is not None:
            try:  # the contract's one rule validates it, the same parse every device applies to the task
                signals = parse_requirement(signals, consents).to_json()
            except ProtocolError as exc:
                raise ApiError(400, "bad_policy", f"policy: {exc}") from None
        regions = _names(d, "allowed_regions", allow_null=True)
        partners = _names(d, "allowed_partners", allow_null=True)
        res = d.get("residency", {})
        if not isinstance(res, Mapping) or not all(isinstance(k, str) and _TOKEN_RE.match(k) and v in EXPORT_MODES
                                                   for k, v in res.items()):
            raise bad_policy("residency", f"must map region names to one of {EXPORT_MODES}, e.g. {{\"cn\": \"none\"}}; "
                                    f"got {res!r}")
        if regions is not None:
            stray = sorted(set(res) - set(regions))
            if stray:
                raise bad_policy("residency", f"names region(s) {stray} that allowed_regions does not allow")
        gate = None
        g = d.get("gate")
        if g is not None:
            if not isinstance(g, Mapping):
                raise bad_policy("gate", "must be null or an object such as {\"metric\": \"auc\", \"max_regression\": 0.02}")
            gunknown = sorted(set(g) - {"metric", "max_regression", "min_contributors", "min_evaluators", "max_epsilon"})
            if gunknown:
                raise bad_policy("gate." + ", gate.".join(gunknown), "unknown key(s)")
            metric = g.get("metric", "auc")
            if metric not in GATE_METRICS:
                raise bad_policy("gate.metric", f"must be one of {', '.join(GATE_METRICS)}, got {metric!r}")
            gate = Gate(metric, _number(g, "max_regression", 0.0, 0.0, where="gate."),
                        _number(g, "min_contributors", 1, 1, integer=True, where="gate."),
                        _number(g, "min_evaluators", 1, 1, integer=True, where="gate."),
                        _number(g, "max_epsilon", None, 0.0, where="gate."))
        act = d.get("activation", {})
        if not isinstance(act, Mapping) or set(act) - {"purposes", "regions", "consent_signals"}:
            raise bad_policy("activation", "must be an object with optional keys purposes, regions and consent_signals")
        act_purposes = _names(act, "purposes", allow_null=True) or (purpose,)
        act_signals = _activation_signals(act.get("consent_signals"), tuple(p.lower() for p in act_purposes))
        act_regions = _names(act, "regions", allow_null=True)
        if act_regions is None:
            act_regions = regions
        k_counts = d.get("k_counts", "devices")
        if k_counts not in K_COUNTS:
            raise bad_policy("k_counts", f"must be one of {', '.join(K_COUNTS)}, got {k_counts!r}")
        pc = d.get("partner_contribution", False)
        if not isinstance(pc, bool):
            raise bad_policy("partner_contribution", f"must be true or false, got {pc!r}")
        return Policy(purpose=purpose, description=desc, consent_purposes=consents, consent_signals=signals,
                      allowed_regions=regions,
                      allowed_partners=partners, residency=dict(res),
                      k_min=_number(d, "k_min", 1, 1, integer=True),
                      min_region_contributors=_number(d, "min_region_contributors", 1, 1, integer=True),
                      gate=gate, partner_contribution=pc,
                      activation_purposes=tuple(p.lower() for p in act_purposes), activation_regions=act_regions,
                      activation_consent_signals=act_signals,
                      record_bytes=_number(d, "record_bytes", None, 1.0, hi=1e12), k_counts=k_counts)


def _activation_signals(d: Any, purposes: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``activation.consent_signals``: activation purpose -> a ``consent_signals`` object (the contract's parse)."""
    if d is None:
        return {}
    if not isinstance(d, Mapping):
        raise bad_policy("activation.consent_signals", "must map activation purposes to consent_signals objects, e.g. "
                         "{\"personalised_ads\": {\"tcf\": {\"vendor_id\": 1234, \"consent\": [1, 3, 4]}}}")
    out: dict[str, dict[str, Any]] = {}
    for name, signals in d.items():
        key = name.lower() if isinstance(name, str) else name
        if key not in purposes:
            raise bad_policy("activation.consent_signals", f"names {name!r}, which is not among the activation "
                                                           f"purposes {list(purposes)}")
        try:
            out[key] = parse_requirement(signals, (key,)).to_json()
        except ProtocolError as exc:
            raise bad_policy(f"activation.consent_signals.{key}", f"is not valid: {exc}") from None
    return out


# ---------------------------------------------------------------------------- storage
_CACHE: dict[tuple[str, int, str], Policy] = {}


def governing_model(conn: Connection, model: str) -> str:
    """The model whose policy governs ``model`` (a regional line is governed by its model's policy)."""
    if "@" not in model:
        return model
    row = conn.execute(select(schema.models.c.line_of).where(schema.models.c.name == model)).first()
    return row.line_of if row is not None and row.line_of else model


def _from_row(row: Any) -> Policy:
    key = (row.model, int(row.version), row.digest)
    p = _CACHE.get(key)
    if p is None:
        p = dataclasses.replace(Policy.from_json(json.loads(row.body)), version=int(row.version))
        if len(_CACHE) > 1024:
            _CACHE.clear()
        _CACHE[key] = p
    return p


def current_policy(conn: Connection, model: str) -> Policy | None:
    """The policy in force for ``model`` (or its base model for a regional line); None = ungoverned."""
    name = governing_model(conn, model)
    row = conn.execute(select(schema.policies).where(schema.policies.c.model == name)
                       .order_by(schema.policies.c.version.desc()).limit(1)).first()
    return None if row is None else _from_row(row)


def policy_version(conn: Connection, model: str, version: int) -> Policy | None:
    name = governing_model(conn, model)
    row = conn.execute(select(schema.policies).where(schema.policies.c.model == name,
                                                     schema.policies.c.version == version)).first()
    return None if row is None else _from_row(row)


def check_applicable(model: str, policy: Policy, training: Mapping[str, Any] | None) -> None:
    """Refuse a policy that cannot govern ``model`` as configured (400 ``bad_policy``)."""
    if "@" in model:
        raise ApiError(400, "bad_policy", f"{model!r} is a regional line; set the policy of its model instead")
    if policy.gate is not None and training is not None and training.get("mode") == "async":
        raise bad_policy("gate", "needs sync rounds (a candidate is evaluated before the next round); the training "
                                 "configuration uses mode 'async'")


def purpose_warnings(policy: Policy, manifest: Mapping[str, Any]) -> list[str]:
    """What an admin should know when the current version (its manifest JSON) was built for another purpose."""
    if str(manifest.get("purpose", "")).lower() != policy.purpose:
        return [f"the current version's manifest purpose is {manifest.get('purpose')!r}; tasks carry the "
                f"policy's purpose {policy.purpose!r}, which devices must filter records on"]
    return []


def store_policy(conn: Connection, model: str, policy: Policy, actor: str, now: float) -> tuple[int, str]:
    """Insert the next policy version of ``model`` (inside the caller's transaction; the caller audits it)."""
    body = policy.to_json()
    text = json.dumps(body, sort_keys=True)
    digest = sha256_bytes(audit.canonical(body))
    nxt = int(conn.execute(select(func.coalesce(func.max(schema.policies.c.version), 0))
                           .where(schema.policies.c.model == model)).scalar_one()) + 1
    conn.execute(schema.policies.insert().values(model=model, version=nxt, body=text, digest=digest, actor=actor,
                                                 created_at=now))
    return nxt, digest


def history(conn: Connection, model: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(schema.policies).where(schema.policies.c.model == model)
                        .order_by(schema.policies.c.version)).all()
    return [{"version": r.version, "digest": r.digest, "actor": r.actor, "created_at": r.created_at,
             "policy": json.loads(r.body)} for r in rows]
