"""Standard consent signals in, one fedmark decision out: the rule every device applies to every record.

Why one home: an app team's consent management platform (CMP) already speaks
standard signals — an IAB TCF v2.2 TC string, Google Consent Mode v2 states,
Global Privacy Control.  Translating them by hand into fedmark's purpose names
on every page and in every app is where a legal basis gets lost.  So the
translation is written once, here; the JavaScript port
(``edge_sdk/web/src/consent_signals.js``) is held to the same decisions by
vectors the IAB's own encoder makes (``tests/contract/make_tcf_vectors.mjs``).

A *requirement* (a policy's ``consent_signals``, carried in every task) names
the signals one model purpose needs; the *signals* of one record are what its
CMP said.  :func:`decide` checks, in this order, and answers with the first
reason that fails (or an ``allowed*`` reason):

1. ``gpc``: a Global Privacy Control opt-out (``navigator.globalPrivacyControl``
   true, or the ``Sec-GPC: 1`` header) excludes.  GPC is an opt-out signal:
   absent means "no opt-out expressed"; a value that is neither true nor false
   is unreadable and excludes.
2. ``tcf``: the TC string must be present and decodable (TCF v2 core segment),
   every ``consent`` purpose must have purpose consent *and* vendor consent for
   the deployment's vendor id, every ``legitimate_interest`` purpose consent or
   legitimate interest (purpose + vendor bit of the same basis), every
   ``special_features`` an opt-in; a publisher restriction for the vendor and
   purpose may forbid the purpose (type 0) or force one legal basis (type 1:
   consent, type 2: legitimate interest).
3. ``consent_mode``: every named Consent Mode v2 state must be ``"granted"``.
4. ``purposes``: the simple form — the record's ``consent`` field must name
   every purpose (``fedmark.contract.protocol.consent_covers``).

Missing or unreadable signals exclude: when in doubt, nothing trains.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Collection, Iterable, Mapping

from fedmark.contract.codes import ERR_BAD_CONSENT_SIGNAL
from fedmark.contract.errors import ProtocolError

__all__ = [
    "normalize_purpose", "consent_covers", "TcfConsent", "TcfRequirement", "SignalRequirement", "Decision", "decode_tc_string", "parse_requirement",
    "parse_consent_mode", "parse_gpc", "parse_simple_purposes", "decide", "edge_signals", "shortfall",
    "signals_from_iabtcf", "iabtcf_mismatches", "gpc_from_headers", "IABTCF_BIT_KEYS", "IABTCF_SCALAR_KEYS",
    "IABTCF_RESTRICTIONS_PREFIX",
    "CONSENT_MODE_STATES", "LI_FORBIDDEN_PURPOSES", "TCF_PURPOSES", "TCF_SPECIAL_FEATURES",
    "RESTRICT_NOT_ALLOWED", "RESTRICT_REQUIRE_CONSENT", "RESTRICT_REQUIRE_LI", "SIGNAL_KEYS",
    "ALLOWED", "ALLOWED_LEGITIMATE_INTEREST", "GPC_OPT_OUT", "GPC_UNREADABLE", "TCF_MISSING", "TCF_UNREADABLE",
    "TCF_PURPOSE_DENIED", "TCF_VENDOR_DENIED", "TCF_RESTRICTED", "TCF_SPECIAL_FEATURE_DENIED",
    "CONSENT_MODE_MISSING", "CONSENT_MODE_UNREADABLE", "CONSENT_MODE_DENIED", "PURPOSE_NOT_CONSENTED",
    "DECISION_REASONS", "ALLOW_REASONS",
]

# --------------------------------------------------------------------------- decision reasons (counted, reported)
ALLOWED = "allowed"
ALLOWED_LEGITIMATE_INTEREST = "allowed_legitimate_interest"  # at least one TCF purpose rested on legitimate interest
GPC_OPT_OUT = "gpc_opt_out"
GPC_UNREADABLE = "gpc_unreadable"
TCF_MISSING = "tcf_missing"
TCF_UNREADABLE = "tcf_unreadable"
TCF_PURPOSE_DENIED = "tcf_purpose_denied"
TCF_VENDOR_DENIED = "tcf_vendor_denied"
TCF_RESTRICTED = "tcf_restricted"
TCF_SPECIAL_FEATURE_DENIED = "tcf_special_feature_denied"
CONSENT_MODE_MISSING = "consent_mode_missing"
CONSENT_MODE_UNREADABLE = "consent_mode_unreadable"
CONSENT_MODE_DENIED = "consent_mode_denied"
PURPOSE_NOT_CONSENTED = "purpose_not_consented"
ALLOW_REASONS = (ALLOWED, ALLOWED_LEGITIMATE_INTEREST)
DECISION_REASONS = (ALLOWED, ALLOWED_LEGITIMATE_INTEREST, GPC_OPT_OUT, GPC_UNREADABLE, TCF_MISSING, TCF_UNREADABLE,
                    TCF_PURPOSE_DENIED, TCF_VENDOR_DENIED, TCF_RESTRICTED, TCF_SPECIAL_FEATURE_DENIED,
                    CONSENT_MODE_MISSING, CONSENT_MODE_UNREADABLE, CONSENT_MODE_DENIED, PURPOSE_NOT_CONSENTED)

#: Where a record (or the device) carries each signal.  ``consent`` is the simple form (purpose names).
SIGNAL_KEYS = ("consent", "tc_string", "gdpr_applies", "consent_mode", "gpc")

TCF_PURPOSES = range(1, 12)         # TCF v2.2 defines purposes 1-11
TCF_SPECIAL_FEATURES = range(1, 3)  # and special features 1-2
#: TCF v2.2 allows no legitimate interest for purposes 1, 3, 4, 5 and 6.
LI_FORBIDDEN_PURPOSES = frozenset({1, 3, 4, 5, 6})
RESTRICT_NOT_ALLOWED, RESTRICT_REQUIRE_CONSENT, RESTRICT_REQUIRE_LI = 0, 1, 2
#: Google Consent Mode states (v2 added ad_user_data and ad_personalization).
CONSENT_MODE_STATES = ("ad_storage", "analytics_storage", "ad_user_data", "ad_personalization",
                       "functionality_storage", "personalization_storage", "security_storage")


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ERR_BAD_CONSENT_SIGNAL, message)


def normalize_purpose(purpose: str) -> str:
    """Purposes compare case-insensitively and without surrounding spaces."""
    return purpose.strip().lower()


def consent_covers(consented: Collection[str], required: Iterable[str]) -> bool:
    """The simple form's rule: a record's consented purposes (normalised) include every required purpose."""
    return all(normalize_purpose(p) in consented for p in required)


# --------------------------------------------------------------------------- TC string
@dataclass(frozen=True)
class TcfConsent:
    """The parts of a TC string a training decision reads (core segment; other segments are skipped)."""

    version: int
    created: int  # deciseconds since the epoch, as encoded
    last_updated: int
    cmp_id: int
    cmp_version: int
    consent_screen: int
    consent_language: str
    vendor_list_version: int
    policy_version: int
    is_service_specific: bool
    use_non_standard_texts: bool
    special_feature_optins: frozenset[int]
    purpose_consents: frozenset[int]
    purpose_legitimate_interests: frozenset[int]
    purpose_one_treatment: bool
    publisher_country_code: str
    vendor_consents: frozenset[int]
    vendor_legitimate_interests: frozenset[int]
    #: (purpose id, vendor id) -> restriction type (0 not allowed, 1 require consent, 2 require LI)
    restrictions: Mapping[tuple[int, int], int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A plain form for test vectors (sets as sorted lists, restrictions as "purpose:vendor" keys)."""
        return {
            "version": self.version, "created": self.created, "last_updated": self.last_updated,
            "cmp_id": self.cmp_id, "cmp_version": self.cmp_version, "consent_screen": self.consent_screen,
            "consent_language": self.consent_language, "vendor_list_version": self.vendor_list_version,
            "policy_version": self.policy_version, "is_service_specific": self.is_service_specific,
            "use_non_standard_texts": self.use_non_standard_texts,
            "special_feature_optins": sorted(self.special_feature_optins),
            "purpose_consents": sorted(self.purpose_consents),
            "purpose_legitimate_interests": sorted(self.purpose_legitimate_interests),
            "purpose_one_treatment": self.purpose_one_treatment, "publisher_country_code": self.publisher_country_code,
            "vendor_consents": sorted(self.vendor_consents),
            "vendor_legitimate_interests": sorted(self.vendor_legitimate_interests),
            "restrictions": {f"{p}:{v}": t for (p, v), t in sorted(self.restrictions.items())},
        }


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64_INDEX = {c: i for i, c in enumerate(_B64)}


class _Bits:
    """Reads big-endian bit fields from one base64url segment (6 bits a character, as the TCF specifies)."""

    def __init__(self, segment: str) -> None:
        try:
            self.bits = "".join(format(_B64_INDEX[c], "06b") for c in segment)
        except KeyError as exc:
            raise _bad(f"TC string: character {exc.args[0]!r} is not base64url") from None
        self.pos = 0

    def int(self, n: int, what: str) -> int:
        if self.pos + n > len(self.bits):
            raise _bad(f"TC string is truncated: it ends inside {what} (bit {self.pos} of {len(self.bits)})")
        v = int(self.bits[self.pos:self.pos + n], 2) if n else 0
        self.pos += n
        return v

    def flag(self, what: str) -> bool:
        return self.int(1, what) == 1

    def set_of(self, n: int, what: str) -> frozenset[int]:
        """A bit field of ``n`` bits: the 1-based ids whose bit is set."""
        if self.pos + n > len(self.bits):
            raise _bad(f"TC string is truncated: it ends inside {what} (bit {self.pos} of {len(self.bits)})")
        field_bits = self.bits[self.pos:self.pos + n]
        self.pos += n
        return frozenset(i + 1 for i, bit in enumerate(field_bits) if bit == "1")

    def letters(self, what: str) -> str:
        return "".join(chr(ord("A") + self.int(6, what)) for _ in range(2))

    def ranges(self, what: str) -> frozenset[int]:
        """NumEntries (12 bits), then entries: IsARange, StartOrOnlyVendorId (16), EndVendorId (16) if a range."""
        out: set[int] = set()
        for _ in range(self.int(12, f"{what} NumEntries")):
            is_range = self.flag(f"{what} IsARange")
            start = self.int(16, f"{what} vendor id")
            end = self.int(16, f"{what} end vendor id") if is_range else start
            if start < 1 or end < start:
                raise _bad(f"TC string: {what} has an invalid vendor range {start}-{end}")
            out.update(range(start, end + 1))
        return frozenset(out)

    def vendors(self, what: str) -> frozenset[int]:
        max_id = self.int(16, f"{what} MaxVendorId")
        if self.flag(f"{what} IsRangeEncoding"):
            ids = self.ranges(what)
            if ids and max(ids) > max_id:
                raise _bad(f"TC string: {what} names vendor {max(ids)} above its MaxVendorId {max_id}")
            return ids
        return self.set_of(max_id, f"{what} bit field")


@lru_cache(maxsize=256)
def decode_tc_string(tc_string: str) -> TcfConsent:
    """Decode a TCF v2 TC string (core segment; publisher restrictions included).

    Raises :class:`ProtocolError` (``bad_consent_signal``) saying what is wrong:
    not a string, not base64url, not version 2, truncated, impossible values.
    Cached: every record of one device usually carries the same string.
    """
    if not isinstance(tc_string, str) or not tc_string.strip():
        raise _bad(f"TC string must be a non-empty string, got {tc_string!r}")
    core = tc_string.strip().split(".")[0]
    for seg in tc_string.strip().split(".")[1:]:
        if not seg or any(c not in _B64_INDEX for c in seg):
            raise _bad("TC string: a segment after the core segment is empty or not base64url")
    b = _Bits(core)
    version = b.int(6, "Version")
    if version != 2:
        raise _bad(f"TC string has version {version}; only TCF v2 strings (v2.2 policy) are read")
    created, updated = b.int(36, "Created"), b.int(36, "LastUpdated")
    cmp_id, cmp_version, screen = b.int(12, "CmpId"), b.int(12, "CmpVersion"), b.int(6, "ConsentScreen")
    language, vlv, policy = b.letters("ConsentLanguage"), b.int(12, "VendorListVersion"), b.int(6, "TcfPolicyVersion")
    service_specific, non_standard = b.flag("IsServiceSpecific"), b.flag("UseNonStandardTexts")
    special = b.set_of(12, "SpecialFeatureOptIns")
    consents, lis = b.set_of(24, "PurposesConsent"), b.set_of(24, "PurposesLITransparency")
    p1_treatment, country = b.flag("PurposeOneTreatment"), b.letters("PublisherCC")
    vendor_consents = b.vendors("vendor consents")
    vendor_lis = b.vendors("vendor legitimate interests")
    restrictions: dict[tuple[int, int], int] = {}
    for _ in range(b.int(12, "NumPubRestrictions")):
        purpose, kind = b.int(6, "restriction PurposeId"), b.int(2, "RestrictionType")
        if kind > RESTRICT_REQUIRE_LI:
            raise _bad(f"TC string: publisher restriction type {kind} for purpose {purpose} is undefined")
        for vendor in b.ranges("publisher restriction"):
            restrictions[(purpose, vendor)] = kind
    return TcfConsent(version, created, updated, cmp_id, cmp_version, screen, language, vlv, policy,
                      service_specific, non_standard, special, consents, lis, p1_treatment, country,
                      vendor_consents, vendor_lis, restrictions)


# --------------------------------------------------------------------------- requirement
@dataclass(frozen=True)
class TcfRequirement:
    """What a model purpose needs from a TC string, for the deployment's vendor id."""

    vendor_id: int
    consent: tuple[int, ...] = ()              # purposes that need consent
    legitimate_interest: tuple[int, ...] = ()  # purposes for which consent or legitimate interest suffices
    special_features: tuple[int, ...] = ()     # special features that need an opt-in
    outside_gdpr: str = "deny"                 # "allow": gdpr_applies explicitly false skips the TCF check

    def to_json(self) -> dict[str, Any]:
        return {"vendor_id": self.vendor_id, "consent": list(self.consent),
                "legitimate_interest": list(self.legitimate_interest),
                "special_features": list(self.special_features), "outside_gdpr": self.outside_gdpr}


@dataclass(frozen=True)
class SignalRequirement:
    """Every signal one model purpose needs; a part that is None / empty / False is not checked."""

    purposes: tuple[str, ...] = ()        # simple form: purpose names the record's consent field must name
    tcf: TcfRequirement | None = None
    consent_mode: tuple[str, ...] = ()    # Consent Mode states that must be "granted"
    gpc: bool = False                     # True: a GPC opt-out excludes

    def to_json(self) -> dict[str, Any]:
        """The task's ``consent_signals`` (the simple purposes travel in ``consent_purposes``)."""
        out: dict[str, Any] = {"simple_purposes": bool(self.purposes)}
        if self.tcf is not None:
            out["tcf"] = self.tcf.to_json()
        if self.consent_mode:
            out["consent_mode"] = list(self.consent_mode)
        if self.gpc:
            out["gpc"] = True
        return out


def _ids(v: Any, where: str, allowed: range) -> tuple[int, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise _bad(f"{where} must be a list of integers, got {v!r}")
    out = tuple(dict.fromkeys(v))
    stray = [x for x in out if x not in allowed]
    if stray:
        raise _bad(f"{where}: {stray} are not TCF v2.2 ids (use {allowed.start}-{allowed.stop - 1})")
    return out


def parse_requirement(d: Any, purposes: Iterable[str] = ()) -> SignalRequirement:
    """Validate a ``consent_signals`` object (policy or task); ``purposes`` is the simple form.

    ``None`` means the simple form alone: the record's consent field must name
    every purpose.  An object names the standard signals; the simple purposes are
    checked too only with ``"simple_purposes": true``.  Raises
    :class:`ProtocolError` (``bad_consent_signal``) naming the bad key.
    """
    simple = tuple(dict.fromkeys(normalize_purpose(p) for p in purposes if normalize_purpose(p)))
    if d is None:
        return SignalRequirement(purposes=simple)
    if not isinstance(d, Mapping):
        raise _bad(f"consent_signals must be an object with keys tcf, consent_mode, gpc, simple_purposes; got {d!r}")
    unknown = sorted(set(d) - {"tcf", "consent_mode", "gpc", "simple_purposes"})
    if unknown:
        raise _bad(f"consent_signals: unknown key(s) {unknown}; known: tcf, consent_mode, gpc, simple_purposes")
    use_simple = d.get("simple_purposes", False)
    gpc = d.get("gpc", False)
    if not isinstance(use_simple, bool) or not isinstance(gpc, bool):
        raise _bad("consent_signals.simple_purposes and consent_signals.gpc must be true or false")
    tcf = None
    t = d.get("tcf")
    if t is not None:
        if not isinstance(t, Mapping):
            raise _bad(f"consent_signals.tcf must be an object such as {{\"vendor_id\": 1234, \"consent\": [1, 3, 4]}}, "
                       f"got {t!r}")
        t_unknown = sorted(set(t) - {"vendor_id", "consent", "legitimate_interest", "special_features",
                                     "outside_gdpr"})
        if t_unknown:
            raise _bad(f"consent_signals.tcf: unknown key(s) {t_unknown}")
        vendor = t.get("vendor_id")
        if isinstance(vendor, bool) or not isinstance(vendor, int) or not 1 <= vendor <= 65535:
            raise _bad(f"consent_signals.tcf.vendor_id must be the deployment's IAB vendor id (1-65535), got {vendor!r}")
        consent = _ids(t.get("consent"), "consent_signals.tcf.consent", TCF_PURPOSES)
        li = _ids(t.get("legitimate_interest"), "consent_signals.tcf.legitimate_interest", TCF_PURPOSES)
        forbidden = sorted(set(li) & LI_FORBIDDEN_PURPOSES)
        if forbidden:
            raise _bad(f"consent_signals.tcf.legitimate_interest: TCF v2.2 allows no legitimate interest for "
                       f"purpose(s) {forbidden}; move them to consent")
        both = sorted(set(li) & set(consent))
        if both:
            raise _bad(f"consent_signals.tcf: purpose(s) {both} are listed under both consent and legitimate_interest")
        features = _ids(t.get("special_features"), "consent_signals.tcf.special_features", TCF_SPECIAL_FEATURES)
        if not (consent or li or features):
            raise _bad("consent_signals.tcf names no purpose or special feature; list what the model needs")
        outside = t.get("outside_gdpr", "deny")
        if outside not in ("deny", "allow"):
            raise _bad(f"consent_signals.tcf.outside_gdpr must be \"deny\" or \"allow\", got {outside!r}")
        tcf = TcfRequirement(vendor, consent, li, features, outside)
    cm = d.get("consent_mode")
    if cm is None:
        modes: tuple[str, ...] = ()
    elif isinstance(cm, list) and cm and all(isinstance(x, str) and x in CONSENT_MODE_STATES for x in cm):
        modes = tuple(dict.fromkeys(cm))
    else:
        raise _bad(f"consent_signals.consent_mode must be a non-empty list of Consent Mode states "
                   f"({', '.join(CONSENT_MODE_STATES)}), got {cm!r}")
    req = SignalRequirement(purposes=simple if use_simple else (), tcf=tcf, consent_mode=modes, gpc=gpc)
    if not (req.purposes or req.tcf or req.consent_mode or req.gpc):
        raise _bad("consent_signals requires nothing: name tcf, consent_mode or gpc (or set simple_purposes)")
    if use_simple and not simple:
        raise _bad("consent_signals.simple_purposes is true but the policy names no consent purpose")
    return req


# --------------------------------------------------------------------------- signal values
def parse_gpc(value: Any) -> bool | None:
    """GPC as a bool (True: opt-out), None when absent; raises on a value that is neither."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, str)) and str(value).strip() in ("0", "1"):
        return str(value).strip() == "1"
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _bad(f"gpc must be true/false (navigator.globalPrivacyControl) or \"1\" (the Sec-GPC header), got {value!r}")


def parse_consent_mode(value: Any) -> dict[str, str] | None:
    """Consent Mode states as {state: "granted"|"denied"} (an object, or its JSON text); None when absent."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _bad(f"consent_mode text is not JSON: {value[:60]!r}") from None
    if not isinstance(value, Mapping):
        raise _bad(f"consent_mode must be an object such as {{\"ad_user_data\": \"granted\"}}, got {value!r}")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or v not in ("granted", "denied"):
            raise _bad(f"consent_mode.{k} must be \"granted\" or \"denied\", got {v!r}")
        out[k] = v
    return out


def parse_simple_purposes(value: Any) -> frozenset[str]:
    """The simple form: purpose names (a list or a comma-separated string), lower-cased; empty when unreadable."""
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    else:
        return frozenset()
    return frozenset(normalize_purpose(p) for p in items if isinstance(p, str) and p.strip())


def _gdpr_applies(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, str)) and str(value).strip() in ("0", "1"):
        return str(value).strip() == "1"
    return None  # unreadable: treated as "applies"


# --------------------------------------------------------------------------- the decision
@dataclass(frozen=True)
class Decision:
    """May this record train (or be evaluated, scored) for the purpose, and the one reason why."""

    allowed: bool
    reason: str


def _tcf_decision(tcf: TcfConsent, req: TcfRequirement) -> str:
    """The TCF part of :func:`decide`: an ``allowed*`` reason or the first failing ``tcf_*`` reason."""
    used_li = False
    v = req.vendor_id
    bases = {"consent": (tcf.purpose_consents, tcf.vendor_consents),
             "li": (tcf.purpose_legitimate_interests, tcf.vendor_legitimate_interests)}
    for purpose in (*req.consent, *req.legitimate_interest):
        restriction = tcf.restrictions.get((purpose, v))
        if restriction == RESTRICT_NOT_ALLOWED:
            return TCF_RESTRICTED
        wanted = {"consent"} if purpose in req.consent else {"consent", "li"}  # what the policy accepts
        allowed = set(wanted)
        if restriction == RESTRICT_REQUIRE_CONSENT:
            allowed &= {"consent"}
        elif restriction == RESTRICT_REQUIRE_LI:
            allowed &= set() if purpose in LI_FORBIDDEN_PURPOSES else {"li"}
        ok = [b for b in ("consent", "li") if b in allowed and purpose in bases[b][0] and v in bases[b][1]]
        if not ok:
            # a basis the user gave but the publisher's restriction takes away: the restriction excluded the record
            if any(purpose in bases[b][0] and v in bases[b][1] for b in wanted - allowed):
                return TCF_RESTRICTED
            if not allowed:
                return TCF_RESTRICTED
            return TCF_VENDOR_DENIED if any(purpose in bases[b][0] for b in allowed) else TCF_PURPOSE_DENIED
        used_li = used_li or "consent" not in ok
    if any(f not in tcf.special_feature_optins for f in req.special_features):
        return TCF_SPECIAL_FEATURE_DENIED
    return ALLOWED_LEGITIMATE_INTEREST if used_li else ALLOWED


def decide(signals: Mapping[str, Any], req: SignalRequirement) -> Decision:
    """The one consent decision for one record: its signals (``SIGNAL_KEYS``) against the requirement.

    ``signals["tc_string"]`` may also be an already-decoded :class:`TcfConsent`.
    Never raises on bad signals: an unreadable one is a reason to exclude.
    """
    allow = ALLOWED
    if req.gpc:
        try:
            if parse_gpc(signals.get("gpc")):
                return Decision(False, GPC_OPT_OUT)
        except ProtocolError:
            return Decision(False, GPC_UNREADABLE)
    if req.tcf is not None:
        skip = req.tcf.outside_gdpr == "allow" and _gdpr_applies(signals.get("gdpr_applies")) is False
        if not skip:
            raw = signals.get("tc_string")
            if raw is None or raw == "" or (isinstance(raw, float) and math.isnan(raw)):
                return Decision(False, TCF_MISSING)
            try:
                tcf = raw if isinstance(raw, TcfConsent) else decode_tc_string(raw)
            except ProtocolError:
                return Decision(False, TCF_UNREADABLE)
            allow = _tcf_decision(tcf, req.tcf)
            if allow not in ALLOW_REASONS:
                return Decision(False, allow)
    if req.consent_mode:
        try:
            states = parse_consent_mode(signals.get("consent_mode"))
        except ProtocolError:
            return Decision(False, CONSENT_MODE_UNREADABLE)
        if states is None or any(s not in states for s in req.consent_mode):
            return Decision(False, CONSENT_MODE_MISSING)
        if any(states[s] != "granted" for s in req.consent_mode):
            return Decision(False, CONSENT_MODE_DENIED)
    if req.purposes and not consent_covers(parse_simple_purposes(signals.get("consent")), req.purposes):
        return Decision(False, PURPOSE_NOT_CONSENTED)
    return Decision(True, allow)


# --------------------------------------------------------------------------- one requirement against another
def edge_signals(req: SignalRequirement) -> list[dict[str, Any]]:
    """The least any record must carry to pass ``req``: the records at the edge of what it admits.

    Why: activation asks whether *every* record a model trained on may be used
    for another purpose.  Instead of a second rule comparing requirements key by
    key, the signals of the weakest admitted records are built here and the one
    rule (:func:`decide`) is asked about them.  Each edge record has exactly what
    ``req`` asks for and nothing more: purpose consent and vendor consent for the
    ``consent`` purposes, legitimate interest only (the weaker basis) for the
    ``legitimate_interest`` purposes, the listed special features, the listed
    Consent Mode states granted (no other state set), a GPC opt-out unless ``req``
    respects GPC, the simple purposes named; and, where ``outside_gdpr`` is
    ``"allow"``, a record with no TC string outside the GDPR.  Adding any signal
    to a record only lets it pass more requirements (publisher restrictions
    apply alike to both sides), so what an edge record passes, every admitted
    record passes (``tests/contract/test_consent.py`` checks this on random
    requirements and signals).
    """
    base: dict[str, Any] = {"consent": list(req.purposes), "gpc": None if req.gpc else True,
                            "consent_mode": {s: "granted" for s in req.consent_mode} or None,
                            "tc_string": None, "gdpr_applies": None}
    t = req.tcf
    if t is None:
        return [base]
    tcf = TcfConsent(version=2, created=0, last_updated=0, cmp_id=0, cmp_version=0, consent_screen=0,
                     consent_language="EN", vendor_list_version=0, policy_version=4, is_service_specific=True,
                     use_non_standard_texts=False, special_feature_optins=frozenset(t.special_features),
                     purpose_consents=frozenset(t.consent), purpose_legitimate_interests=frozenset(t.legitimate_interest),
                     purpose_one_treatment=False, publisher_country_code="AA",
                     vendor_consents=frozenset({t.vendor_id} if t.consent else ()),
                     vendor_legitimate_interests=frozenset({t.vendor_id} if t.legitimate_interest else ()))
    edges = [{**base, "tc_string": tcf, "gdpr_applies": True}]
    if t.outside_gdpr == "allow":
        edges.append({**base, "gdpr_applies": False})
    return edges


def shortfall(trained: SignalRequirement, needed: SignalRequirement) -> str | None:
    """None when every record ``trained`` admits also meets ``needed``; else the reason (one of
    ``DECISION_REASONS``) :func:`decide` excludes the weakest such record for — which signal falls short."""
    for signals in edge_signals(trained):
        d = decide(signals, needed)
        if not d.allowed:
            return d.reason
    return None


# --------------------------------------------------------------------------- where apps keep the signals
#: The pre-parsed ``IABTCF_*`` binary-string keys (position n is id n+1) and the decoded field each must match.
IABTCF_BIT_KEYS = {"IABTCF_PurposeConsents": "purpose_consents",
                   "IABTCF_PurposeLegitimateInterests": "purpose_legitimate_interests",
                   "IABTCF_VendorConsents": "vendor_consents",
                   "IABTCF_VendorLegitimateInterests": "vendor_legitimate_interests",
                   "IABTCF_SpecialFeaturesOptIns": "special_feature_optins"}
#: Scalar keys cross-checked against the TC string's core segment.
IABTCF_SCALAR_KEYS = {"IABTCF_PolicyVersion": "policy_version", "IABTCF_PublisherCC": "publisher_country_code",
                      "IABTCF_PurposeOneTreatment": "purpose_one_treatment"}
IABTCF_RESTRICTIONS_PREFIX = "IABTCF_PublisherRestrictions"


def _iabtcf_bits(key: str, value: Any) -> frozenset[int]:
    if not isinstance(value, str) or any(ch not in "01" for ch in value):
        raise _bad(f"{key} must be a binary string of '0'/'1' (position n is id n+1), got {value!r}")
    return frozenset(i + 1 for i, ch in enumerate(value) if ch == "1")


def _iabtcf_restrictions(key: str, value: Any) -> dict[int, int]:
    if not isinstance(value, str) or any(ch not in "012_" for ch in value):
        raise _bad(f"{key} must be a string of restriction types '0'/'1'/'2' per vendor ('_': none), got {value!r}")
    return {i + 1: int(ch) for i, ch in enumerate(value) if ch != "_"}


def _iabtcf_scalar(key: str, value: Any) -> Any:
    if key == "IABTCF_PublisherCC":
        if not isinstance(value, str) or len(value) != 2 or not value.isalpha():
            raise _bad(f"{key} must be a two-letter country code, got {value!r}")
        return value.upper()
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())):
        raise _bad(f"{key} must be an unsigned integer, got {value!r}")
    n = int(value)
    return bool(n) if key == "IABTCF_PurposeOneTreatment" else n


def iabtcf_mismatches(prefs: Mapping[str, Any], tcf: TcfConsent) -> list[str]:
    """Where the pre-parsed ``IABTCF_*`` keys disagree with the TC string they were parsed from (empty: they agree).

    Only keys that are present are compared; an unreadable key raises :class:`ProtocolError`.
    """
    out: list[str] = []
    for key, attr in IABTCF_BIT_KEYS.items():
        if prefs.get(key) is not None:
            keys, string = _iabtcf_bits(key, prefs[key]), getattr(tcf, attr)
            if keys != string:
                out.append(f"{key} sets {sorted(keys - string)} and clears {sorted(string - keys)} "
                           f"relative to IABTCF_TCString")
    for key, attr in IABTCF_SCALAR_KEYS.items():
        if prefs.get(key) is not None:
            value, string = _iabtcf_scalar(key, prefs[key]), getattr(tcf, attr)
            if value != string:
                out.append(f"{key} is {value!r}, IABTCF_TCString says {string!r}")
    for key in sorted(k for k in prefs if isinstance(k, str) and k.startswith(IABTCF_RESTRICTIONS_PREFIX)):
        purpose_text = key[len(IABTCF_RESTRICTIONS_PREFIX):]
        if prefs[key] is None:
            continue
        if not purpose_text.isdigit():
            raise _bad(f"{key}: the key must end in a purpose id, e.g. IABTCF_PublisherRestrictions3")
        purpose = int(purpose_text)
        keys = _iabtcf_restrictions(key, prefs[key])
        string = {v: t for (p, v), t in tcf.restrictions.items() if p == purpose}
        if keys != string:
            out.append(f"{key} restricts vendors {keys}, IABTCF_TCString restricts {string} for purpose {purpose}")
    return out


def signals_from_iabtcf(prefs: Mapping[str, Any]) -> dict[str, Any]:
    """Device signals from the ``IABTCF_*`` key/values CMPs store for in-app use (Android
    SharedPreferences, iOS NSUserDefaults; IAB Tech Lab, *CMP API v2*, "In-App Details").

    The TC string (``IABTCF_TCString``) is the signal; the pre-parsed keys beside it
    (``IABTCF_PurposeConsents``, ``IABTCF_VendorConsents``, ``IABTCF_PublisherRestrictions{ID}`` ...)
    are cross-checked against it, and any disagreement raises :class:`ProtocolError`
    (``bad_consent_signal``) naming the key: stored values that contradict each other
    are no legal basis, so nothing trains until the CMP stores them again.  The keys
    alone, without a TC string, are not accepted: the spec has the CMP store the
    pre-parsed data "as well as the TC string", and keys without a string are also
    what a removed CMP SDK leaves behind (its vestigial values); the signals then
    carry no TC string (``tcf_missing``).  A TC string that does not decode passes
    through as it is (the decision answers ``tcf_unreadable``).
    """
    tc_string = prefs.get("IABTCF_TCString")
    signals = {"tc_string": tc_string, "gdpr_applies": prefs.get("IABTCF_gdprApplies")}
    if not isinstance(tc_string, str) or not tc_string.strip():
        signals["tc_string"] = None
        return signals
    try:
        tcf = decode_tc_string(tc_string)
    except ProtocolError:
        return signals
    wrong = iabtcf_mismatches(prefs, tcf)
    if wrong:
        raise _bad("the CMP's stored IABTCF_* values disagree with its TC string (nothing trains until the CMP "
                   "stores them again): " + "; ".join(wrong))
    return signals


def gpc_from_headers(headers: Mapping[str, str]) -> dict[str, Any]:
    """Device signals from an HTTP request's ``Sec-GPC`` header (absent: no opt-out expressed)."""
    value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == "sec-gpc"), None)
    return {"gpc": value}
