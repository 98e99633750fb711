"""Two customer tables built from the real Online Retail transactions (regression and multi-class).

Why build them: the project may not download data at run time, and its two
shipped sets are a call-outcome table (Bank Marketing) and raw transactions.
The marketing tasks beyond propensity — customer value and next-best offer —
are per-customer tables, which is what a CRM export looks like, so they are
derived here, deterministically, from Online Retail (Chen et al. 2012,
CC BY 4.0, doi:10.24432/C5BW33):

* Features use only transactions before ``CUTOFF`` (2011-09-01); labels use
  the three months after it — no label information leaks into a feature.
* ``customer_value``: regression, label ``next_3m_spend`` (GBP spent in
  Sep–Nov 2011, 0 for customers who did not come back).
* ``next_offer``: multi-class, label ``next_offer`` — of the five offer
  categories (from the item descriptions, ``OFFER_GROUPS``; the catch-all
  "home" is not an offer), the one the customer spent most on after the
  cutoff; only customers who bought from one of them again.

Columns (both tables): ``customer_id`` (an identifier: drop it), ``country``
(37 values: categorical with a long tail), ``invoices``, ``spend``,
``distinct_items``, ``avg_basket``, ``days_since_last``, ``days_between``
(mean gap between invoices; empty for one-invoice customers: missing),
``returned`` (had a cancelled invoice: boolean, ``yes``/``no``) and the past
spend share per offer group (``share_<group>``).
"""
from __future__ import annotations

import csv
import gzip
import os
from datetime import datetime
from typing import Any, Sequence

from models import data as data_mod

__all__ = ["CUTOFF", "HORIZON_END", "OFFER_GROUPS", "offer_group", "build_customer_tables", "write_table",
           "TABLES"]

CUTOFF = "2011-09-01"
HORIZON_END = "2011-12-01"
#: Offer categories by description keyword, first match wins; everything else is "home".
OFFER_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("christmas", ("CHRISTMAS", "XMAS", "ADVENT")),
    ("bags", ("BAG",)),
    ("lighting", ("LIGHT", "CANDLE", "LANTERN", "HOLDER")),
    ("kitchen", ("MUG", "CUP", "PLATE", "BOWL", "TEA", "CAKE", "LUNCH", "BOTTLE", "JAR", "TIN")),
    ("paper", ("CARD", "WRAP", "PAPER", "NOTEBOOK", "STICKER", "BOOK")),
)
HOME = "home"
GROUPS = tuple(g for g, _ in OFFER_GROUPS) + (HOME,)
TABLES = ("customer_value", "next_offer")


def offer_group(description: str) -> str:
    """The offer category of an item description (keyword rules, ``OFFER_GROUPS``)."""
    text = description.upper()
    for group, words in OFFER_GROUPS:
        if any(w in text for w in words):
            return group
    return HOME


def _days(a: str, b: str) -> float:
    fmt = "%Y-%m-%d %H:%M:%S" if len(a) > 16 else "%Y-%m-%d %H:%M"
    return (datetime.strptime(b[:19], fmt) - datetime.strptime(a[:19], fmt)).total_seconds() / 86400.0


def build_customer_tables(path: str | os.PathLike[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """{"customer_value": rows, "next_offer": rows}: one dict per customer, values as CSV text."""
    path = os.fspath(path or data_mod.RETAIL_FILE)
    past: dict[str, dict[str, Any]] = {}
    future: dict[str, dict[str, float]] = {}
    with data_mod._open_text(path) as f:
        reader = csv.DictReader(f)
        for row in reader:
            cust = (row.get("CustomerID") or "").split(".")[0]
            date = row.get("InvoiceDate") or ""
            if not cust or not date or not data_mod._is_product(row.get("StockCode") or ""):
                continue
            try:
                amount = float(row["Quantity"]) * float(row["UnitPrice"])
            except (KeyError, ValueError):
                continue
            inv = row.get("InvoiceNo") or ""
            if date < CUTOFF:
                p = past.setdefault(cust, {"country": row.get("Country") or "", "invoices": {}, "items": set(),
                                           "returned": False, "groups": dict.fromkeys(GROUPS, 0.0), "spend": 0.0})
                if inv.startswith("C"):
                    p["returned"] = True
                    continue
                if amount <= 0:
                    continue
                p["invoices"].setdefault(inv, date)
                p["items"].add(row["StockCode"])
                p["spend"] += amount
                p["groups"][offer_group(row.get("Description") or "")] += amount
            elif date < HORIZON_END and not inv.startswith("C") and amount > 0:
                g = future.setdefault(cust, dict.fromkeys(GROUPS, 0.0))
                g[offer_group(row.get("Description") or "")] += amount
    value, offer = [], []
    for cust in sorted(past, key=int):
        p = past[cust]
        dates = sorted(p["invoices"].values())
        if not dates:
            continue
        n = len(dates)
        gaps = _days(dates[0], dates[-1]) / (n - 1) if n > 1 else None
        row = {
            "customer_id": cust, "country": p["country"], "invoices": str(n), "spend": f"{p['spend']:.2f}",
            "distinct_items": str(len(p["items"])), "avg_basket": f"{p['spend'] / n:.2f}",
            "days_since_last": f"{_days(dates[-1], CUTOFF + ' 00:00:00'):.1f}",
            "days_between": "" if gaps is None else f"{gaps:.1f}",
            "returned": "yes" if p["returned"] else "no",
        }
        row.update({f"share_{g}": f"{p['groups'][g] / p['spend']:.4f}" if p["spend"] > 0 else "0" for g in GROUPS})
        nxt = future.get(cust)
        value.append({**row, "next_3m_spend": f"{sum(nxt.values()) if nxt else 0.0:.2f}"})
        offers = [g for g, _ in OFFER_GROUPS if nxt and nxt[g] > 0]
        if offers:
            offer.append({**row, "next_offer": max(offers, key=lambda g: (nxt[g], g))})  # type: ignore[index]
    return {"customer_value": value, "next_offer": offer}


def write_table(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str], *, sep: str = ",") -> str:
    """Write rows as CSV (gzip when the name ends in .gz); returns the path."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="") as f:  # type: ignore[operator]
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=sep)
        w.writeheader()
        w.writerows(rows)
    return path
