"""Consent: which records may be used for the purpose a model serves.

Why here and first: governance decides before any processing.  Every record
(or the customer it belongs to) carries the purposes its owner consented to,
in a ``consent`` field — a list of purposes or a comma-separated string such as
``"marketing,analytics"``.  A training task names the purposes a record must
have consented to (``consent_purposes``); scoring and evaluation outside a
task use the manifest's ``purpose`` (the rule is the contract's:
:func:`fedmark.contract.required_purposes`).  Records whose consent does not
cover every required purpose are dropped *before* validation, training,
scoring or evaluation look at them, so their values can never influence an
update; only their count is reported.

Standard signals (docs/CONSENT.md): when a task carries ``consent_signals``,
each record's TCF / Consent Mode / GPC signals — its own fields, else the
device's — decide by the contract's one rule
(:func:`fedmark.contract.consent.decide`); :func:`decide_records` applies it
and counts the records per reason.  A subject who withdrew consent
(:class:`WithdrawalLog`) is excluded whatever the signals say.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edge_sdk.errors import ConfigurationError, ConsentError
from fedmark.contract import consent_covers
from fedmark.contract.consent import PURPOSE_NOT_CONSENTED, SignalRequirement, decide, parse_requirement
from fedmark.contract.errors import ProtocolError

__all__ = ["CONSENT_FIELD", "parse_purposes", "has_consent", "has_consents", "ConsentSplit", "split_by_consent",
           "DEVICE_SIGNAL_KEYS", "WITHDRAWN", "check_device_signals", "record_signals", "ConsentDecisions",
           "decide_records", "WithdrawalLog", "DECIDED_FIELD", "DECIDED_PURPOSE", "mark_decided", "ensure_unchanged", "nothing_allowed",
           "subject_hashes", "DEVICE_SUBJECT", "subject_key", "WithdrawalReport", "withdraw", "TaskConsent"]

CONSENT_FIELD = "consent"


def parse_purposes(value: Any) -> frozenset[str]:
    """The consented purposes in a record's consent value (lower-cased); empty when absent or unreadable.

    Accepts a list/tuple/set of strings or one comma-separated string.  Anything
    else (a number, NaN from a DataFrame, None) means no consent: when in
    doubt, the record is not used.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return frozenset()
    if isinstance(value, str):
        items: Sequence[Any] = value.split(",")
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    else:
        return frozenset()
    return frozenset(p.strip().lower() for p in items if isinstance(p, str) and p.strip())


def has_consent(record: Mapping[str, Any], purpose: str, field: str = CONSENT_FIELD) -> bool:
    """True iff the record's consent field names ``purpose`` (case-insensitive)."""
    if not isinstance(record, Mapping):
        return False
    return purpose.strip().lower() in parse_purposes(record.get(field))


@dataclass(frozen=True)
class ConsentSplit:
    """Indices (into the caller's records) that may be used, and how many were excluded."""

    used: list[int]
    excluded: int


def has_consents(record: Mapping[str, Any], purposes: Sequence[str], field: str = CONSENT_FIELD) -> bool:
    """True iff the record's consent field names every purpose in ``purposes`` (case-insensitive)."""
    if not isinstance(record, Mapping):
        return False
    return consent_covers(parse_purposes(record.get(field)), purposes)


def split_by_consent(records: Sequence[Mapping[str, Any]], purpose: str | Sequence[str],
                     field: str = CONSENT_FIELD) -> ConsentSplit:
    """Partition records by consent for ``purpose`` (one purpose, or several that must all be covered);
    the excluded ones are only counted, never kept."""
    purposes = [purpose] if isinstance(purpose, str) else list(purpose)
    used = [i for i, r in enumerate(records) if has_consents(r, purposes, field)]
    return ConsentSplit(used, len(records) - len(used))


# --------------------------------------------------------------------------- standard signals (docs/CONSENT.md)
#: Signals the device (page, app) may hold for its user; a record's own fields of the same names override them.
DEVICE_SIGNAL_KEYS = ("tc_string", "gdpr_applies", "consent_mode", "gpc")
#: A record of a withdrawn subject: the device trains no more with it (counted, never identified).
WITHDRAWN = "withdrawn"


def _present(v: Any) -> bool:
    return v is not None and v != "" and not (isinstance(v, float) and math.isnan(v))


def check_device_signals(signals: Mapping[str, Any] | None) -> dict[str, Any]:
    """The device-level signals an app passes (``signals=``); unknown keys are refused, not ignored."""
    if signals is None:
        return {}
    if not isinstance(signals, Mapping):
        raise ConfigurationError("signals must be a dict with keys " + ", ".join(DEVICE_SIGNAL_KEYS) +
                                 " (e.g. fedmark.contract.consent.signals_from_iabtcf(prefs))")
    unknown = sorted(set(signals) - set(DEVICE_SIGNAL_KEYS))
    if unknown:
        raise ConfigurationError(f"signals: unknown key(s) {unknown}; known: {', '.join(DEVICE_SIGNAL_KEYS)}")
    return {k: v for k, v in signals.items() if _present(v)}


def record_signals(record: Mapping[str, Any], device: Mapping[str, Any], field: str = CONSENT_FIELD) -> dict[str, Any]:
    """One record's signals: the device's, overridden by the record's own (a cross-silo table carries the TC
    string per customer), plus the simple-form consent field."""
    out = dict(device)
    for key in DEVICE_SIGNAL_KEYS:
        if key in record and _present(record[key]):
            out[key] = record[key]
    out["consent"] = record.get(field)
    return out


@dataclass(frozen=True)
class ConsentDecisions:
    """Per record: may it be used; and how many records each reason allowed or excluded."""

    allowed: list[bool]
    counts: dict[str, int]

    @property
    def used(self) -> list[int]:
        return [i for i, ok in enumerate(self.allowed) if ok]


def decide_records(records: Sequence[Mapping[str, Any]], requirement: SignalRequirement,
                   device: Mapping[str, Any] | None = None, field: str = CONSENT_FIELD,
                   withdrawn: Callable[[Mapping[str, Any]], bool] | None = None) -> ConsentDecisions:
    """The contract's decision (:func:`fedmark.contract.consent.decide`) for every record; a record of a
    withdrawn subject is excluded first, whatever its signals say."""
    dev = check_device_signals(device)
    allowed: list[bool] = []
    counts: dict[str, int] = {}
    for r in records:
        if withdrawn is not None and withdrawn(r):
            ok, reason = False, WITHDRAWN
        else:
            d = decide(record_signals(r, dev, field), requirement) if isinstance(r, Mapping) else None
            ok, reason = (d.allowed, d.reason) if d else (False, PURPOSE_NOT_CONSENTED)
        allowed.append(ok)
        counts[reason] = counts.get(reason, 0) + 1
    return ConsentDecisions(allowed, counts)


# --------------------------------------------------------------------------- withdrawal
class WithdrawalLog:
    """Subjects (customers) who withdrew consent on this device, kept as salted hashes, never as ids.

    Why durable and hashed: the device must keep refusing a withdrawn customer's
    records after a restart, and must find the queued updates computed from
    them; the log itself should not become a list of who withdrew.  The salt is
    random per device.  ``pending`` counts withdrawals not yet reported to the
    server (which records the count, not the identity).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "withdrawn.json"

    def _load(self) -> dict[str, Any]:
        try:
            d = json.loads(self.path.read_text())
            if isinstance(d, dict) and isinstance(d.get("salt"), str) and isinstance(d.get("subjects"), list):
                return d
        except (OSError, ValueError):
            pass
        return {"salt": secrets.token_hex(16), "subjects": [], "pending": 0}

    def _save(self, d: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".tmp-{self.path.name}-{os.getpid()}")
        with open(tmp, "w") as f:
            json.dump(d, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def subject_hash(self, subject: Any) -> str:
        d = self._load()
        if not self.path.exists():
            self._save(d)  # the salt must outlive this process, or later hashes would not match
        return self._hash(d["salt"], subject)

    @staticmethod
    def _hash(salt: str, subject: Any) -> str:
        return hashlib.sha256(f"{salt}:{subject}".encode()).hexdigest()[:32]

    def hasher(self) -> Callable[[Any], str]:
        """A hash function for many subjects at once (one read of the salt)."""
        d = self._load()
        if not self.path.exists():
            self._save(d)
        salt = d["salt"]
        return lambda subject: self._hash(salt, subject)

    def add(self, subject: Any) -> str:
        """Record a withdrawal durably (before anything else happens); returns the subject's hash."""
        d = self._load()
        h = self._hash(d["salt"], subject)
        if h not in d["subjects"]:
            d["subjects"].append(h)
        d["pending"] = int(d.get("pending", 0)) + 1
        self._save(d)
        return h

    def withdrawn(self) -> frozenset[str]:
        return frozenset(self._load()["subjects"]) if self.path.exists() else frozenset()

    def restore(self, subject: Any) -> bool:
        """Renewed consent: the subject's records may train again; True if it was withdrawn."""
        d = self._load()
        h = self._hash(d["salt"], subject)
        if h not in d["subjects"]:
            return False
        d["subjects"].remove(h)
        self._save(d)
        return True

    def excluder(self, subject_field: str | None) -> Callable[[Mapping[str, Any]], bool] | None:
        """A test "is this record's subject withdrawn?" (None when nobody withdrew)."""
        gone = self.withdrawn()
        if not gone:
            return None
        h = self.hasher()
        if subject_field is None:
            everything = h(DEVICE_SUBJECT) in gone
            return lambda r: everything
        return lambda r: h(str(r.get(subject_field))) in gone

    def take_pending(self) -> int:
        """How many withdrawals to report now (and reset the count)."""
        if not self.path.exists():
            return 0
        d = self._load()
        n = int(d.get("pending", 0))
        if n:
            d["pending"] = 0
            self._save(d)
        return n

    def give_back(self, n: int) -> None:
        """A report that could not be sent: count its withdrawals again for the next one."""
        if n:
            d = self._load()
            d["pending"] = int(d.get("pending", 0)) + n
            self._save(d)


# --------------------------------------------------------------------------- handing decisions to data preparation
#: Data preparation filters on a consent field; decided records carry this one, so the schema step sees
#: exactly the records the decision allowed, at their original positions (row numbers stay the caller's).
DECIDED_FIELD = "__fedmark_consent_decision__"
DECIDED_PURPOSE = "decided"


def mark_decided(records: Sequence[Mapping[str, Any]], decisions: ConsentDecisions) -> list[dict[str, Any]]:
    """Copies of the records, each marked allowed or not for the data-preparation step."""
    return [{**r, DECIDED_FIELD: DECIDED_PURPOSE if ok else ""} for r, ok in zip(records, decisions.allowed)]


def ensure_unchanged(records: Sequence[Mapping[str, Any]], requirement: SignalRequirement, before: ConsentDecisions,
                     device: Mapping[str, Any] | None, field: str = CONSENT_FIELD,
                     withdrawn: Callable[[Mapping[str, Any]], bool] | None = None) -> None:
    """Raise :class:`ConsentError` if a record allowed at the start of a run is no longer allowed now
    (the person changed their mind in the CMP while the run trained): its update must not be queued."""
    now = decide_records(records, requirement, device, field, withdrawn)
    if any(ok and not still for ok, still in zip(before.allowed, now.allowed)):
        why = ", ".join(f"{k} {v}" for k, v in sorted(now.counts.items()))
        raise ConsentError(f"consent changed while training (the signals now give {why}); the update was "
                           "discarded, nothing was queued")


def nothing_allowed(records: Sequence[Any], requirement: SignalRequirement, decisions: ConsentDecisions,
                    field: str = CONSENT_FIELD) -> str:
    """Why nothing may be used, naming the purposes (simple form) or the reasons with their counts."""
    if not (requirement.tcf or requirement.consent_mode or requirement.gpc) and WITHDRAWN not in decisions.counts:
        needed = requirement.purposes
        shown = f"purpose {needed[0]!r}" if len(needed) == 1 else "purposes " + ", ".join(repr(p) for p in needed)
        return (f"none of the {len(records)} record(s) carries consent for {shown} in field {field!r} "
                "(a list or comma-separated string of purposes); nothing may be used")
    why = ", ".join(f"{k} {v}" for k, v in sorted(decisions.counts.items()))
    return (f"none of the {len(records)} record(s) may be used for this task's purpose ({why}); the signals each "
            "reason names are in docs/CONSENT.md")


def subject_hashes(records: Sequence[Mapping[str, Any]], decisions: ConsentDecisions, subject_field: str | None,
                   log: WithdrawalLog) -> tuple[str, ...]:
    """The hashed subjects of the allowed records (what an update is computed from); the device itself
    when records name no subject."""
    h = log.hasher()
    if subject_field is None:
        return (h(DEVICE_SUBJECT),)
    return tuple(sorted({h(str(r.get(subject_field))) for r, ok in zip(records, decisions.allowed) if ok}))


# --------------------------------------------------------------------------- withdrawing
#: The subject a device with one person stands for (no ``subject_field``).
DEVICE_SUBJECT = "__device__"


def subject_key(subject: str | None) -> str:
    return DEVICE_SUBJECT if subject is None else str(subject)


@dataclass(frozen=True)
class WithdrawalReport:
    """What a withdrawal did on the device (counts and round ids, never whose records)."""

    dropped_updates: int
    dropped_rounds: tuple[str, ...] = ()
    erased_personal_state: tuple[str, ...] = ()


def withdraw(log: WithdrawalLog, outbox: Any, personal: Any, subject: str | None,
             subject_field: str | None) -> WithdrawalReport:
    """Consent withdrawn by ``subject`` (a customer of a table) or by the device's person (None).

    Order matters for a crash: the withdrawal is made durable first, then every
    queued, unsent update computed from the subject's records is dropped (a
    flush drops any the device did not get to), then — for the device's person —
    the personal state of every model is erased.  The subject's records never
    train again; the server learns the count at the next consent report.
    """
    if subject is None and subject_field is not None:
        raise ConfigurationError("this client identifies customers by the record field "
                                 f"{subject_field!r}: pass withdraw(subject=<that field's value>)")
    h = log.add(subject_key(subject))
    dropped = outbox.drop_where(lambda item: h in item.subjects)
    erased = [m for m in personal.models() if personal.forget(m)] if subject is None else []
    return WithdrawalReport(len(dropped), tuple(sorted({d.round_id for d in dropped})), tuple(erased))


# --------------------------------------------------------------------------- the mapping outside a task
class TaskConsent:
    """The consent requirement the last task for each model carried, kept so that scoring and segment
    reports (activation) apply the same mapping as training, also offline.

    Why remembered and not asked for: a device scores its customers between rounds, without a task; the
    policy's mapping reached it with the last task (training or evaluation) for the model.  A model no task
    has named yet on this device falls back to the manifest's purpose (the simple form).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)

    def _path(self, model: str) -> Path:
        if not model or "/" in model or "\\" in model or model.startswith("."):
            raise ConfigurationError(f"model name {model!r} is not a plain name")
        return self.dir / f"{model}.requirement.json"

    def remember(self, model: str, consent_signals: Mapping[str, Any] | None, purposes: Sequence[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self._path(model)
        tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
        tmp.write_text(json.dumps({"consent_signals": None if consent_signals is None else dict(consent_signals),
                                   "purposes": list(purposes)}))
        os.replace(tmp, path)

    def recall(self, model: str) -> SignalRequirement | None:
        try:
            d = json.loads(self._path(model).read_text())
            return parse_requirement(d.get("consent_signals"), d.get("purposes") or ())
        except (OSError, ValueError, ProtocolError, AttributeError):
            return None
