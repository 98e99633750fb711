"""Consent: which records may be used for the purpose a model serves.

Why here and first: governance decides before any processing.  Every record
(or the customer it belongs to) carries the purposes its owner consented to,
in a ``consent`` field — a list of purposes or a comma-separated string such as
``"marketing,analytics"``.  A model's manifest names its purpose
(``manifest.purpose``).  Records without that purpose are dropped *before*
validation, training, scoring or evaluation look at them, so their values can
never influence an update; only their count is reported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

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


def split_by_consent(records: Sequence[Mapping[str, Any]], purpose: str,
                     field: str = CONSENT_FIELD) -> ConsentSplit:
    """Partition records by consent for ``purpose``; the excluded ones are only counted, never kept."""
    used = [i for i, r in enumerate(records) if has_consent(r, purpose, field)]
    return ConsentSplit(used, len(records) - len(used))
