"""Reading a data file into what a simulated fleet holds.

Why the recommender reads through ``models.data``: the held-out split (each
customer's last basket) and the product filter are the model family's
definition of the task; re-deriving them here would be a second rule that
could drift.  Tabular files are read generically (CSV or ';'-separated, plain
or gzip), numbers as floats, so any file that matches the artifact's feature
schema works.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["DataError", "read_records", "stratified_split", "with_consent", "retail_for"]

Record = dict[str, Any]


class DataError(ValueError):
    """The data file cannot be used; the message names the file and the fix."""


def _open(path: str) -> io.TextIOBase:
    if not os.path.exists(path):
        raise DataError(f"--data {path}: no such file")
    raw = open(path, "rb")
    head = raw.read(2)
    raw.seek(0)
    stream = gzip.open(raw) if head == b"\x1f\x8b" else raw
    return io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")  # type: ignore[arg-type]


def _value(v: str) -> Any:
    try:
        return float(v)
    except ValueError:
        return v


def read_records(path: str | os.PathLike[str]) -> list[Record]:
    """Rows of a CSV file (delimiter sniffed: ',' ';' or tab) as dicts; numeric text becomes float."""
    path = os.fspath(path)
    with _open(path) as f:
        sample = f.read(8192)
        f.seek(0)
        try:
            dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(f, dialect=dialect)
        if not reader.fieldnames:
            raise DataError(f"--data {path}: the file has no header row")
        out = [{k: _value(v) for k, v in row.items() if k is not None} for row in reader]
    if not out:
        raise DataError(f"--data {path}: no data rows")
    return out


def stratified_split(records: Sequence[Record], label: str, test_fraction: float,
                     seed: int) -> tuple[list[Record], list[Record]]:
    """(train, test) with each label value's share kept in both (positives are rare in marketing data)."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    if label not in records[0]:
        raise DataError(f"the data has no label column {label!r} (the artifact's schema label); "
                        f"columns are {sorted(records[0])}")
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(str(r[label]), []).append(i)
    train, test = [], []
    for key in sorted(groups):
        members = np.array(groups[key])
        rng.shuffle(members)
        n_test = int(round(members.size * test_fraction))
        test.extend(members[:n_test].tolist())
        train.extend(members[n_test:].tolist())
    return [records[i] for i in sorted(train)], [records[i] for i in sorted(test)]


def with_consent(records: Sequence[Mapping[str, Any]], purpose: str, field: str, refuse: float,
                 rng: np.random.Generator) -> list[Record]:
    """Copies of ``records`` with a consent column when the data has none: a ``refuse`` share of customers
    consents to analytics only (their rows never train), the rest also to the model's purpose."""
    if not 0.0 <= refuse < 1.0:
        raise DataError(f"--no-consent must be in [0, 1), got {refuse}")
    if records and field in records[0]:
        return [dict(r) for r in records]
    return [dict(r, **{field: "analytics" if rng.random() < refuse else f"{purpose},analytics"}) for r in records]


def retail_for(path: str | os.PathLike[str] | None, items: Sequence[str]) -> tuple[list[np.ndarray], list[np.ndarray], Any]:
    """Per-customer (train, held-out) item indices in the artifact's item order; items it lacks are dropped."""
    from models import data as data_mod

    data = data_mod.load_retail(path)
    pos = {str(code): i for i, code in enumerate(items)}
    remap = np.array([pos.get(code, -1) for code in data.items], np.int64)
    if (remap >= 0).sum() == 0:
        raise DataError("none of the data's stock codes is in the artifact's item list: is --artifact a model "
                        "exported from this data?")

    def conv(a: np.ndarray) -> np.ndarray:
        m = remap[a]
        return m[m >= 0]
    train = [conv(t) for t in data.train]
    test = [conv(t) for t in data.test]
    return train, test, data
