"""Local data: read the app's records, apply consent, validate against the manifest.

Why one place: training, scoring and evaluation must see *exactly* the same
filtering (consent first, then the schema's rules), or a record excluded from
training could still leak into an evaluation figure.  Records may come as a
list of dicts, a pandas DataFrame (duck-typed: pandas is never imported or
required) or a CSV path (``.csv`` or ``.csv.gz``; the delimiter is sniffed).

Row numbers in every report are 0-based positions in the caller's input (for a
CSV: the data row, header not counted), so an app can point at the bad row.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from edge_sdk.consent import CONSENT_FIELD, split_by_consent
from edge_sdk.errors import ConfigurationError, ConsentError, SchemaError
from edge_sdk.statistics import rule_check
from fedmark.contract import ContractError, Manifest, RowError, required_purposes

Records = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class DataReport:
    """What happened to the input records — counts only, never record contents.

    ``used``: records that passed consent and validation; ``excluded_no_consent``:
    records whose consent does not cover the required purposes; ``rejected``: consented records refused
    by the schema (their reasons in ``row_errors``); ``skipped_unknown_items``:
    recommender interactions with an item the model does not know.
    """

    total: int
    used: int
    excluded_no_consent: int
    rejected: int
    skipped_unknown_items: int = 0
    row_errors: tuple[RowError, ...] = field(default=(), repr=False)
    #: records breaking each quality rule of the manifest's ``features.rules`` (counted in ``rejected``)
    rule_violations: Mapping[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {"total": self.total, "used": self.used, "excluded_no_consent": self.excluded_no_consent,
                "rejected": self.rejected, "skipped_unknown_items": self.skipped_unknown_items}


# --------------------------------------------------------------------------- reading
def load_records(source: Any) -> list[Mapping[str, Any]]:
    """Turn the app's input into a list of mappings.

    ``source`` is a sequence of mappings, a DataFrame (anything with
    ``to_dict(orient="records")`` and ``columns``) or a path to a CSV file.
    """
    if isinstance(source, (str, os.PathLike)):
        return _read_csv(Path(source))
    if hasattr(source, "to_dict") and hasattr(source, "columns"):
        rows = source.to_dict(orient="records")
        return [dict(r) for r in rows]
    if isinstance(source, Mapping):
        raise ConfigurationError("records must be a list of dicts, a DataFrame or a CSV path, not one dict; "
                                 "wrap a single record in a list")
    if isinstance(source, Iterable):
        rows = list(source)
        for i, r in enumerate(rows):
            if not isinstance(r, Mapping):
                raise SchemaError("records must be mappings of column -> value",
                                  [RowError(i, "*", f"expected a dict, got {type(r).__name__}")])
        return rows
    raise ConfigurationError(f"records of type {type(source).__name__} are not supported; "
                             "pass a list of dicts, a pandas DataFrame or a CSV file path")


def _read_csv(path: Path) -> list[Mapping[str, Any]]:
    if not path.is_file():
        raise ConfigurationError(f"CSV file {str(path)!r} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:  # type: ignore[operator]
            text = f.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"CSV file {str(path)!r} is not UTF-8 text ({exc}); re-save it as UTF-8") from exc
    except OSError as exc:
        raise ConfigurationError(f"CSV file {str(path)!r} cannot be read: {exc}") from exc
    try:
        dialect: Any = csv.Sniffer().sniff(text[:65536], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    if not reader.fieldnames:
        raise SchemaError(f"CSV file {str(path)!r} has no header row naming its columns")
    return [dict(row) for row in reader]


# --------------------------------------------------------------------------- preparing
def _consented(records: Records, manifest: Manifest, consent_field: str,
               purposes: Sequence[str] | None) -> tuple[list[int], int]:
    """Records whose consent covers ``purposes`` (a task's; default: the manifest's purpose)."""
    needed = list(purposes) if purposes else list(required_purposes((), None, manifest.purpose))
    split = split_by_consent(records, needed, consent_field)
    if not split.used:
        shown = (f"purpose {needed[0]!r}" if len(needed) == 1
                 else "purposes " + ", ".join(repr(p) for p in needed))
        raise ConsentError(
            f"none of the {len(records)} record(s) carries consent for {shown} in field "
            f"{consent_field!r} (a list or comma-separated string of purposes); nothing may be used")
    return split.used, split.excluded


def _check_columns_present(records: Records, used: list[int], names: Sequence[str]) -> None:
    """A column absent from *every* record is a naming mistake, not missing data: refuse instead of filling."""
    seen: set[str] = set()
    for i in used:
        seen.update(records[i].keys())
    absent = [n for n in names if n not in seen]
    if absent:
        raise SchemaError(f"column(s) {absent} are absent from every record; the model expects columns "
                          f"{list(names)} — rename your fields to match")


def prepare_tabular(records: Records, manifest: Manifest, *, with_label: bool, strict: bool = False,
                    consent_field: str = CONSENT_FIELD, purposes: Sequence[str] | None = None,
                    ) -> tuple[np.ndarray, np.ndarray | None, list[int], DataReport]:
    """Consent-filter and encode records for the propensity family.

    ``purposes``: what a record's consent must cover — a task's
    :meth:`~fedmark.contract.TaskDocument.required_purposes`; None outside a
    task (scoring, local evaluation): the manifest's purpose.

    Returns ``(x, y, kept, report)``: ``kept`` holds the caller's row index of
    each row of ``x``.  Bad rows are dropped and reported; with ``strict`` (or
    when no row survives) they raise :class:`SchemaError`.
    """
    try:
        schema = manifest.schema()
    except ContractError as exc:
        raise SchemaError(f"the model's manifest has no usable feature schema: {exc}") from exc
    used, excluded = _consented(records, manifest, consent_field, purposes)
    names = [c.name for c in schema.columns] + ([schema.label] if with_label and schema.label else [])
    _check_columns_present(records, used, names)
    # quality rules first (features.rules, issue #15): a record that breaks one never trains
    passing, rule_errors, violations = rule_check(records, manifest.features.get("rules"), used)
    subset = [records[i] for i in passing]
    x, y, errors = schema.encode(subset, with_label=with_label, strict=False)
    row_errors = rule_errors + tuple(RowError(passing[e.row], e.column, e.reason) for e in errors)
    bad = {passing[e.row] for e in errors} | (set(used) - set(passing))
    kept = [i for i in passing if i not in bad]
    report = DataReport(len(records), len(kept), excluded, len(bad), 0, row_errors, violations)
    if row_errors and (strict or not kept):
        raise SchemaError(f"{len(bad)} of {len(used)} consented record(s) do not match the model's schema",
                          row_errors)
    return x, y, kept, report


def prepare_interactions(records: Records, manifest: Manifest, *, strict: bool = False,
                         consent_field: str = CONSENT_FIELD,
                         purposes: Sequence[str] | None = None) -> tuple[np.ndarray, DataReport]:
    """Consent-filter interaction records and map item codes to the model's item indices.

    ``purposes`` as in :func:`prepare_tabular`.

    Returns the sorted unique item indices the user interacted with.  Items the
    model does not know are skipped and counted; a missing item code is a row
    error.  A device trains for one customer, so records naming two customers
    are refused.
    """
    feats = manifest.features
    try:
        user_col, item_col = str(feats["user_column"]), str(feats["item_column"])
        catalogue = {str(code): i for i, code in enumerate(feats["items"])}
    except (KeyError, TypeError) as exc:
        raise SchemaError(f"the model's manifest has no interaction schema (user_column, item_column, items): "
                          f"{exc}") from exc
    used, excluded = _consented(records, manifest, consent_field, purposes)
    _check_columns_present(records, used, [item_col])
    errors: list[RowError] = []
    users: set[str] = set()
    items: set[int] = set()
    unknown = 0
    for i in used:
        rec = records[i]
        code = rec.get(item_col)
        if code is None or code == "" or (isinstance(code, float) and code != code):
            errors.append(RowError(i, item_col, "item code is missing"))
            continue
        user = rec.get(user_col)
        if user is not None and user != "" and not (isinstance(user, float) and user != user):
            users.add(_code(user))
        idx = catalogue.get(_code(code))
        if idx is None:
            unknown += 1
        else:
            items.add(idx)
    if len(users) > 1:
        raise SchemaError(f"records name {len(users)} different customers in {user_col!r}; a device trains and "
                          "personalises for one customer — pass one customer's records")
    report = DataReport(len(records), len(used) - len(errors) - unknown, excluded, len(errors), unknown,
                        tuple(errors))
    if errors and strict:
        raise SchemaError(f"{len(errors)} consented record(s) are unusable", errors)
    return np.array(sorted(items), dtype=np.int64), report


def _code(value: Any) -> str:
    """Item/customer codes as text; a float that is a whole number (a DataFrame artefact: 17850.0) loses its '.0'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
