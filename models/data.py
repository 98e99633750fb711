"""Loaders for the two real marketing data sets shipped in ``examples/data/``.

Why stdlib only: the loaders run in the demo, in the benchmarks and in tests,
and pandas is not a dependency of this project.  ``csv`` + ``gzip`` read the
541,909-row retail file in about two seconds, which is fast enough.

* Bank Marketing (Moro et al. 2014) -> propensity records (one dict per call
  outcome; ``duration`` dropped because it is only known after the call).
* Online Retail (Chen et al. 2012) -> implicit-feedback interactions: for each
  customer the distinct items bought, ordered by first purchase, with the last
  basket held out for evaluation.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

DATA_DIR = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "examples", "data"))
BANK_FILE = os.path.join(DATA_DIR, "bank-full.csv.gz")
RETAIL_FILE = os.path.join(DATA_DIR, "online_retail.csv.gz")

BANK_NUMERIC = ("age", "balance", "day", "campaign", "pdays", "previous")
BANK_CATEGORICAL = ("job", "marital", "education", "default", "housing", "loan", "contact", "month", "poutcome")
BANK_LABEL = "y"
BANK_POSITIVE = "yes"
BANK_DROPPED = ("duration",)

Record = dict[str, Any]


class DataError(ValueError):
    """A data file is missing or does not have the expected layout."""


def _open_text(path: str) -> io.TextIOBase:
    if not os.path.exists(path):
        raise DataError(f"data file {path} not found; point at the right file (--data PATH, or path=... in Python) "
                        "or restore examples/data/ from the repository")
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


# --------------------------------------------------------------------------- bank marketing
def load_bank(path: str | os.PathLike[str] | None = None) -> list[Record]:
    """Read ``bank-full.csv(.gz)``: one dict per row, numerics as float, ``y`` as 'yes'/'no'.

    ``duration`` is dropped: the call length is only known after the call, so a
    model that sees it cannot be used to decide whom to call (UCI's own note).
    """
    path = os.fspath(path or BANK_FILE)
    with _open_text(path) as f:
        reader = csv.reader(f, delimiter=";")
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path} is empty")
        need = set(BANK_NUMERIC) | set(BANK_CATEGORICAL) | {BANK_LABEL}
        missing = need - set(header)
        if missing:
            raise DataError(f"{path} lacks column(s) {sorted(missing)}: is this bank-full.csv (';'-separated)?")
        idx = {name: i for i, name in enumerate(header)}
        out: list[Record] = []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{path}:{line_no}: {len(row)} fields, the header has {len(header)}")
            rec: Record = {}
            for name in BANK_NUMERIC:
                try:
                    rec[name] = float(row[idx[name]])
                except ValueError as exc:
                    raise DataError(f"{path}:{line_no}: column {name!r} is not a number: {row[idx[name]]!r}") from exc
            for name in BANK_CATEGORICAL:
                rec[name] = row[idx[name]]
            rec[BANK_LABEL] = row[idx[BANK_LABEL]]
            out.append(rec)
    return out


def bank_labels(records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """0/1 float32 labels (1 = subscribed)."""
    return np.array([1.0 if r[BANK_LABEL] == BANK_POSITIVE else 0.0 for r in records], dtype=np.float32)


def stratified_split(records: Sequence[Record], *, label: str = BANK_LABEL, test_fraction: float = 0.25,
                     seed: int = 0) -> tuple[list[Record], list[Record]]:
    """Split into (train, test) keeping each label's share equal in both parts.

    Stratified because positives are rare (11.7 %): a plain random split would
    let the test AUC wobble with how many positives happened to land in it.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    by_label: dict[Any, list[int]] = {}
    for i, r in enumerate(records):
        by_label.setdefault(r[label], []).append(i)
    train_idx: list[int] = []
    test_idx: list[int] = []
    for key in sorted(by_label, key=str):
        members = np.array(by_label[key])
        rng.shuffle(members)
        n_test = int(round(len(members) * test_fraction))
        test_idx.extend(members[:n_test].tolist())
        train_idx.extend(members[n_test:].tolist())
    train_idx.sort()
    test_idx.sort()
    return [records[i] for i in train_idx], [records[i] for i in test_idx]


def partition_by(records: Iterable[Record], column: str) -> dict[str, list[Record]]:
    """Group records by one column's value: a natural, non-IID federation.

    Each value (a job, a month …) plays one client; label rates and feature
    distributions differ strongly between them, which is the point.
    """
    parts: dict[str, list[Record]] = {}
    for r in records:
        if column not in r:
            raise KeyError(f"record has no column {column!r}; columns are {sorted(r)}")
        parts.setdefault(str(r[column]), []).append(r)
    return dict(sorted(parts.items()))


def partition_by_job(records: Iterable[Record]) -> dict[str, list[Record]]:
    """12 clients, one per job category."""
    return partition_by(records, "job")


def partition_by_month(records: Iterable[Record]) -> dict[str, list[Record]]:
    """12 clients, one per campaign month (strong label shift: March/Sept/Oct convert far more)."""
    return partition_by(records, "month")


def partition_iid(records: Sequence[Record], num_clients: int, *, seed: int = 0) -> list[list[Record]]:
    """Random equal-sized shards: the IID control for the non-IID partitions."""
    if num_clients <= 0:
        raise ValueError("num_clients must be positive")
    order = np.random.default_rng(seed).permutation(len(records))
    return [[records[i] for i in shard] for shard in np.array_split(order, num_clients)]


# --------------------------------------------------------------------------- online retail
@dataclass
class RetailData:
    """Implicit feedback from Online Retail.

    ``train[c]`` holds customer c's distinct item indices in order of first
    purchase, excluding items seen only in the held-out last basket;
    ``test[c]`` holds the distinct items of that last basket (empty when the
    customer has a single basket, so nothing can be held out).
    """

    items: list[str]
    customers: list[str]
    countries: list[str]
    train: list[np.ndarray]
    test: list[np.ndarray]
    descriptions: dict[str, str] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def item_index(self) -> dict[str, int]:
        return {code: i for i, code in enumerate(self.items)}

    def by_country(self) -> dict[str, list[int]]:
        """Customer indices per country: the region partition (data residency)."""
        out: dict[str, list[int]] = {}
        for c, country in enumerate(self.countries):
            out.setdefault(country, []).append(c)
        return dict(sorted(out.items()))


def _is_product(code: str) -> bool:
    # Product codes start with five digits (85123A, 22423); the rest are
    # postage (POST, DOT, C2), fees (BANK CHARGES, AMAZONFEE), manual
    # adjustments (M, D, S) and gift vouchers, which are not preferences.
    return bool(code) and code[0].isdigit()


def load_retail(path: str | os.PathLike[str] | None = None, *, min_item_count: int = 1) -> RetailData:
    """Read ``online_retail.csv(.gz)`` into per-customer item sequences.

    Rows without a CustomerID, cancellations (InvoiceNo starting with 'C'),
    non-positive quantities and non-product codes are dropped.  Items bought by
    fewer than ``min_item_count`` distinct customers are dropped too (1 keeps all).
    """
    path = os.fspath(path or RETAIL_FILE)
    with _open_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        need = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "CustomerID", "Country")
        if header is None or any(c not in header for c in need):
            raise DataError(f"{path} must have columns {need}; got {header}")
        ix = [header.index(c) for c in need]
        # customer -> list of (date, invoice, code); country = the customer's first row
        events: dict[str, list[tuple[str, str, str]]] = {}
        country: dict[str, str] = {}
        desc: dict[str, str] = {}
        for row in reader:
            if len(row) < len(header):
                continue
            inv, code, d, qty, date, cust, ctry = (row[i] for i in ix)
            if not cust or inv.startswith("C") or not _is_product(code):
                continue
            try:
                if float(qty) <= 0:
                    continue
            except ValueError:
                continue
            cust = cust.split(".")[0]
            events.setdefault(cust, []).append((date, inv, code))
            country.setdefault(cust, ctry)
            if code not in desc and d:
                desc[code] = d.strip()
    if not events:
        raise DataError(f"{path}: no usable rows (all lacked a CustomerID or were cancellations)")
    if min_item_count > 1:
        buyers: dict[str, int] = {}
        for ev in events.values():
            for code in {e[2] for e in ev}:
                buyers[code] = buyers.get(code, 0) + 1
        events = {c: [e for e in ev if buyers[e[2]] >= min_item_count] for c, ev in events.items()}
        events = {c: ev for c, ev in events.items() if ev}
    codes = sorted({e[2] for ev in events.values() for e in ev})
    index = {code: i for i, code in enumerate(codes)}
    customers = sorted(events, key=lambda c: int(c) if c.isdigit() else c)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for cust in customers:
        ev = sorted(events[cust])  # ISO dates sort as text; invoice breaks ties
        last_invoice = ev[-1][1]
        baskets = {e[1] for e in ev}
        hold_out = len(baskets) > 1
        seq: dict[int, None] = {}
        held: dict[int, None] = {}
        for _date, inv, code in ev:
            if hold_out and inv == last_invoice:
                held.setdefault(index[code])
            else:
                seq.setdefault(index[code])
        train.append(np.fromiter(seq, dtype=np.int64, count=len(seq)))
        test.append(np.fromiter(held, dtype=np.int64, count=len(held)))
    return RetailData(items=codes, customers=customers, countries=[country[c] for c in customers],
                      train=train, test=test, descriptions={c: desc.get(c, "") for c in codes})


def customers_with_history(data: RetailData, min_train: int = 1, min_test: int = 1) -> list[int]:
    """Customers usable for train-then-evaluate: enough training items and a held-out basket."""
    return [c for c in range(len(data.customers)) if len(data.train[c]) >= min_train and len(data.test[c]) >= min_test]


def apply_each(parts: Mapping[str, Sequence[Record]], fn: Callable[[Sequence[Record]], Any]) -> dict[str, Any]:
    """Apply ``fn`` (e.g. a schema's encode) to every client's records."""
    return {k: fn(v) for k, v in parts.items()}
