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
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from fedmark.contract import consent_covers

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
