"""Feature encoding: the rules that turn a customer record into a model input.

Why in the contract: the device encodes, the export fitted the rules, and the
JavaScript port must produce the same floats; one implementation is the
specification the JS test vectors are generated from.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from fedmark.contract.errors import ManifestError, SchemaError

__all__ = ["Column", "RowError", "FeatureSchema", "hash_bucket"]


@dataclass(frozen=True)
class Column:
    """An input column and the rule that encodes it.

    kind "numeric": value -> (value - mean) / std; missing -> fill (raw units).
    kind "onehot": one slot per vocabulary entry plus a last 'unknown' slot that
      catches missing values and categories never seen at export time.
    kind "hash": zlib.crc32(utf-8 value) % buckets, one-hot over the buckets;
      needs no vocabulary, so new categories never break a device.
    """

    name: str
    kind: str
    mean: float = 0.0
    std: float = 1.0
    fill: float | None = None
    vocabulary: tuple[str, ...] = ()
    buckets: int = 0

    @property
    def width(self) -> int:
        if self.kind == "numeric":
            return 1
        if self.kind == "onehot":
            return len(self.vocabulary) + 1
        return self.buckets

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "numeric":
            d.update(mean=self.mean, std=self.std, fill=self.mean if self.fill is None else self.fill)
        elif self.kind == "onehot":
            d["vocabulary"] = list(self.vocabulary)
        else:
            d["buckets"] = self.buckets
        return d

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> "Column":
        kind = d.get("kind")
        name = d.get("name")
        if not isinstance(name, str) or kind not in ("numeric", "onehot", "hash"):
            raise ManifestError(f"bad column {d!r}: needs a name and kind numeric|onehot|hash")
        if kind == "numeric":
            std = float(d.get("std", 1.0))
            if not std > 0:
                raise ManifestError(f"column {name!r}: std must be > 0, got {std}")
            return Column(name, kind, mean=float(d.get("mean", 0.0)), std=std,
                          fill=float(d["fill"]) if d.get("fill") is not None else None)
        if kind == "onehot":
            vocab = d.get("vocabulary")
            if not isinstance(vocab, list) or not vocab:
                raise ManifestError(f"column {name!r}: onehot needs a non-empty vocabulary list")
            return Column(name, kind, vocabulary=tuple(str(v) for v in vocab))
        buckets = int(d.get("buckets", 0))
        if buckets < 2:
            raise ManifestError(f"column {name!r}: hash needs buckets >= 2")
        return Column(name, kind, buckets=buckets)


@dataclass(frozen=True)
class RowError:
    """Why one input row was refused: its 0-based row number, the column and the reason."""

    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column!r}: {self.reason}"


@dataclass(frozen=True)
class FeatureSchema:
    """Tabular features (propensity family): ordered columns and an optional binary label."""

    columns: tuple[Column, ...]
    label: str | None = None
    positive: str = "1"

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    def to_json(self) -> dict[str, Any]:
        return {"columns": [c.to_json() for c in self.columns], "label": self.label,
                "positive": self.positive, "width": self.width}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> "FeatureSchema":
        cols = d.get("columns")
        if not isinstance(cols, list) or not cols:
            raise ManifestError("features.columns must be a non-empty list")
        schema = FeatureSchema(tuple(Column.from_json(c) for c in cols), d.get("label"), str(d.get("positive", "1")))
        if "width" in d and int(d["width"]) != schema.width:
            raise ManifestError(f"features.width {d['width']} disagrees with the columns' width {schema.width}")
        return schema

    def encode(self, records: Sequence[Mapping[str, Any]], *, with_label: bool = True,
               strict: bool = True) -> tuple[np.ndarray, np.ndarray | None, list[RowError]]:
        """Encode records to a float32 matrix (and 0/1 labels).

        Missing numeric values take the column's fill; missing or unseen
        categories take the unknown slot (onehot) or their hash bucket.  A value
        that cannot be read (text in a numeric column, a missing label) is a
        RowError; with ``strict`` any error raises SchemaError, otherwise bad
        rows are dropped and returned so the caller can report them.
        """
        n = len(records)
        x = np.zeros((n, self.width), dtype=np.float32)
        y = np.zeros(n, dtype=np.float32) if (with_label and self.label) else None
        errors: list[RowError] = []
        bad = np.zeros(n, dtype=bool)
        lookup = {c.name: {v: i for i, v in enumerate(c.vocabulary)} for c in self.columns if c.kind == "onehot"}
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping):
                errors.append(RowError(i, "*", f"expected a mapping of column -> value, got {type(rec).__name__}"))
                bad[i] = True
                continue
            off = 0
            for c in self.columns:
                v = rec.get(c.name)
                missing = v is None or (isinstance(v, float) and math.isnan(v)) or v == ""
                if c.kind == "numeric":
                    if missing:
                        val = c.mean if c.fill is None else c.fill
                    else:
                        try:
                            val = float(v)
                        except (TypeError, ValueError):
                            errors.append(RowError(i, c.name, f"not a number: {v!r}"))
                            bad[i] = True
                            val = c.mean
                        if not math.isfinite(val):
                            errors.append(RowError(i, c.name, f"not a finite number: {v!r}"))
                            bad[i] = True
                            val = c.mean
                    x[i, off] = (val - c.mean) / c.std
                elif c.kind == "onehot":
                    idx = len(c.vocabulary) if missing else lookup[c.name].get(str(v), len(c.vocabulary))
                    x[i, off + idx] = 1.0
                else:
                    x[i, off + (hash_bucket("" if missing else str(v), c.buckets))] = 1.0
                off += c.width
            if y is not None:
                lv = rec.get(self.label)
                if lv is None or lv == "":
                    errors.append(RowError(i, self.label, "label is missing"))
                    bad[i] = True
                else:
                    y[i] = 1.0 if str(lv) == self.positive or lv is True or lv == 1 else 0.0
        if errors and strict:
            raise SchemaError(errors)
        if bad.any():
            keep = ~bad
            x = x[keep]
            y = y[keep] if y is not None else None
        return x, y, errors


def hash_bucket(value: str, buckets: int) -> int:
    """Stable across languages and processes (unlike Python's hash())."""
    return zlib.crc32(value.encode("utf-8")) % buckets
