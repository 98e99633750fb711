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

__all__ = ["COLUMN_KINDS", "LABEL_TASKS", "TRUE_WORDS", "FALSE_WORDS", "Column", "RowError", "FeatureSchema",
           "hash_bucket", "parse_bool", "signed_log1p", "NUMERIC_TRANSFORMS"]

COLUMN_KINDS = ("numeric", "onehot", "hash", "boolean", "index")
NUMERIC_TRANSFORMS = ("", "log1p")
#: What a label column means: a binary outcome (``positive``), a number (regression), one of ``classes``.
LABEL_TASKS = ("binary", "regression", "multiclass")
TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "f"})


@dataclass(frozen=True)
class Column:
    """An input column and the rule that encodes it.

    kind "numeric": value -> (value - mean) / std; missing -> fill (raw units).
    kind "onehot": one slot per vocabulary entry plus a last 'unknown' slot that
      catches missing values and categories never seen at export time.
    kind "hash": zlib.crc32(utf-8 value) % buckets, one-hot over the buckets;
      needs no vocabulary, so new categories never break a device.
    kind "boolean": one slot, 1.0 for true / 0.0 for false (true: true, 1, yes,
      y, t; false: false, 0, no, n, f; case-insensitive); missing -> fill (0).

    ``tail_buckets`` (onehot): instead of one unknown slot, values outside the
    vocabulary (a vocabulary capped to the most frequent values) and missing
    values go to one of ``tail_buckets`` hashed slots, as kind "hash" does.
    ``indicator`` (numeric, boolean): one more slot, 1.0 where the value was
    missing (imputed with the fill), so the model can tell imputed from real.
    ``transform`` (numeric): "log1p" maps v -> sign(v)·log1p(|v|) before
    standardising (spend, counts: heavy tails); mean, std and fill are then
    in transformed units.
    kind "index": one slot holding the category's *index* as a float — the
      slot "onehot" would set (vocabulary position; else the unknown slot or
      a tail bucket) — for an Embedding layer of ``cardinality`` rows and
      ``embed`` columns, which looks the index up inside the model.  Why a
      float slot of x and not a separate integer input: the protocol's one
      input stays one float matrix, so every device SDK trains it unchanged
      (indices below 2**24 are exact in float32).
    """

    name: str
    kind: str
    mean: float = 0.0
    std: float = 1.0
    fill: float | None = None
    vocabulary: tuple[str, ...] = ()
    buckets: int = 0
    tail_buckets: int = 0
    indicator: bool = False
    transform: str = ""
    embed: int = 0

    @property
    def width(self) -> int:
        if self.kind in ("numeric", "boolean"):
            return 1 + int(self.indicator)
        if self.kind == "onehot":
            return self.cardinality
        if self.kind == "index":
            return 1
        return self.buckets

    @property
    def cardinality(self) -> int:
        """How many distinct slots a category can take (onehot's width; an index column's Embedding rows)."""
        return len(self.vocabulary) + max(1, self.tail_buckets)

    def category_slot(self, v: Any, missing: bool, lookup: Mapping[str, int]) -> int:
        """The slot of a categorical value (onehot, index): its vocabulary position, else a tail bucket or the
        one unknown slot after the vocabulary."""
        known = None if missing else lookup.get(str(v))
        if known is not None:
            return known
        if self.tail_buckets:
            return len(self.vocabulary) + hash_bucket("" if missing else str(v), self.tail_buckets)
        return len(self.vocabulary)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "numeric":
            d.update(mean=self.mean, std=self.std, fill=self.mean if self.fill is None else self.fill)
            if self.transform:
                d["transform"] = self.transform
        elif self.kind == "boolean":
            d["fill"] = 0.0 if self.fill is None else self.fill
        elif self.kind in ("onehot", "index"):
            d["vocabulary"] = list(self.vocabulary)
            if self.tail_buckets:
                d["tail_buckets"] = self.tail_buckets
            if self.kind == "index":
                d["embed"] = self.embed
        else:
            d["buckets"] = self.buckets
        if self.indicator:
            d["indicator"] = True
        return d

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> "Column":
        kind = d.get("kind")
        name = d.get("name")
        if not isinstance(name, str) or kind not in COLUMN_KINDS:
            raise ManifestError(f"bad column {d!r}: needs a name and kind {'|'.join(COLUMN_KINDS)}")
        indicator = d.get("indicator", False)
        if not isinstance(indicator, bool) or (indicator and kind not in ("numeric", "boolean")):
            raise ManifestError(f"column {name!r}: indicator must be true/false, and only numeric or boolean "
                                "columns take one")
        if kind == "numeric":
            std = float(d.get("std", 1.0))
            if not std > 0:
                raise ManifestError(f"column {name!r}: std must be > 0, got {std}")
            transform = d.get("transform", "")
            if transform not in NUMERIC_TRANSFORMS:
                raise ManifestError(f"column {name!r}: transform must be one of {NUMERIC_TRANSFORMS}, got {transform!r}")
            return Column(name, kind, mean=float(d.get("mean", 0.0)), std=std,
                          fill=float(d["fill"]) if d.get("fill") is not None else None, indicator=indicator,
                          transform=transform)
        if kind == "boolean":
            fill = float(d.get("fill", 0.0))
            if fill not in (0.0, 1.0):
                raise ManifestError(f"column {name!r}: a boolean fill must be 0 or 1, got {fill}")
            return Column(name, kind, fill=fill, indicator=indicator)
        if kind in ("onehot", "index"):
            vocab = d.get("vocabulary")
            if not isinstance(vocab, list) or not vocab:
                raise ManifestError(f"column {name!r}: {kind} needs a non-empty vocabulary list")
            try:
                tail = int(d.get("tail_buckets", 0))
            except (TypeError, ValueError) as exc:
                raise ManifestError(f"column {name!r}: tail_buckets: {exc}") from None
            if tail < 0 or tail == 1:
                raise ManifestError(f"column {name!r}: tail_buckets must be 0 (one unknown slot) or >= 2, got {tail}")
            embed = d.get("embed", 0) if kind == "index" else 0
            if kind == "index" and (not isinstance(embed, int) or isinstance(embed, bool) or embed < 1):
                raise ManifestError(f"column {name!r}: an index column needs embed (the Embedding width) >= 1, "
                                    f"got {embed!r}")
            return Column(name, kind, vocabulary=tuple(str(v) for v in vocab), tail_buckets=tail, embed=embed)
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
    """Tabular features: ordered columns and an optional label with its task.

    task "binary": y = 1.0 where the label equals ``positive`` (or is True/1), else 0.0.
    task "regression": y = the label as a number, in label units; the train
      graph takes it standardised with ``label_mean``/``label_std`` (after
      ``label_transform`` "log1p", for amounts such as spend, if set — the
      mean and std are then of the transformed label, and the inference graph
      maps its output back to label units).
    task "multiclass": y = the index of the label in ``classes`` (float); the
      train graph takes it one-hot.  A label outside ``classes`` is a RowError.
    """

    columns: tuple[Column, ...]
    label: str | None = None
    positive: str = "1"
    task: str = "binary"
    classes: tuple[str, ...] = ()
    label_mean: float = 0.0
    label_std: float = 1.0
    label_transform: str = ""

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"columns": [c.to_json() for c in self.columns], "label": self.label,
                             "positive": self.positive, "width": self.width}
        if self.task != "binary":
            d["task"] = self.task
        if self.task == "multiclass":
            d["classes"] = list(self.classes)
        if self.task == "regression":
            d.update(label_mean=self.label_mean, label_std=self.label_std)
            if self.label_transform:
                d["label_transform"] = self.label_transform
        return d

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> "FeatureSchema":
        cols = d.get("columns")
        if not isinstance(cols, list) or not cols:
            raise ManifestError("features.columns must be a non-empty list")
        task = d.get("task", "binary")
        if task not in LABEL_TASKS:
            raise ManifestError(f"features.task {task!r} is not one of {', '.join(LABEL_TASKS)}")
        classes: tuple[str, ...] = ()
        if task == "multiclass":
            raw = d.get("classes")
            if not isinstance(raw, list) or len(raw) < 2:
                raise ManifestError("features.classes must list at least two classes for a multiclass label")
            classes = tuple(str(c) for c in raw)
            if len(set(classes)) != len(classes):
                raise ManifestError("features.classes must not repeat a class")
        mean, std = float(d.get("label_mean", 0.0)), float(d.get("label_std", 1.0))
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise ManifestError(f"features.label_mean must be finite and label_std > 0, got {mean}, {std}")
        label_transform = d.get("label_transform", "")
        if label_transform not in NUMERIC_TRANSFORMS:
            raise ManifestError(f"features.label_transform must be one of {NUMERIC_TRANSFORMS}, got {label_transform!r}")
        schema = FeatureSchema(tuple(Column.from_json(c) for c in cols), d.get("label"), str(d.get("positive", "1")),
                               task, classes, mean, std, label_transform)
        names = [c.name for c in schema.columns]
        if len(set(names)) != len(names):
            raise ManifestError("features.columns must not name a column twice")
        if "width" in d and int(d["width"]) != schema.width:
            raise ManifestError(f"features.width {d['width']} disagrees with the columns' width {schema.width}")
        return schema

    def encode(self, records: Sequence[Mapping[str, Any]], *, with_label: bool = True,
               strict: bool = True) -> tuple[np.ndarray, np.ndarray | None, list[RowError]]:
        """Encode records to a float32 matrix (and labels, see the class docstring).

        Missing numeric/boolean values take the column's fill (and set the
        missing indicator if the column has one); missing or unseen categories
        take the unknown slot (onehot), a tail bucket (onehot with
        ``tail_buckets``) or their hash bucket.  A value that cannot be read
        (text in a numeric column, a missing label) is a RowError naming the
        row, the column and the rule; with ``strict`` any error raises
        SchemaError, otherwise bad rows are dropped and returned so the caller
        can report them.
        """
        n = len(records)
        x = np.zeros((n, self.width), dtype=np.float32)
        y = np.zeros(n, dtype=np.float32) if (with_label and self.label) else None
        errors: list[RowError] = []
        bad = np.zeros(n, dtype=bool)
        lookup = {c.name: {v: i for i, v in enumerate(c.vocabulary)} for c in self.columns
                  if c.kind in ("onehot", "index")}
        class_index = {c: i for i, c in enumerate(self.classes)}
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
                        elif c.transform:
                            val = signed_log1p(val)
                    x[i, off] = (val - c.mean) / c.std
                    if c.indicator:
                        x[i, off + 1] = 1.0 if missing else 0.0
                elif c.kind == "boolean":
                    flag = parse_bool(v) if not missing else None
                    if not missing and flag is None:
                        errors.append(RowError(i, c.name, f"not a boolean (true/false, 1/0, yes/no): {v!r}"))
                        bad[i] = True
                    x[i, off] = (c.fill or 0.0) if flag is None else float(flag)
                    if c.indicator:
                        x[i, off + 1] = 1.0 if missing else 0.0
                elif c.kind == "onehot":
                    x[i, off + c.category_slot(v, missing, lookup[c.name])] = 1.0
                elif c.kind == "index":
                    x[i, off] = float(c.category_slot(v, missing, lookup[c.name]))
                else:
                    x[i, off + (hash_bucket("" if missing else str(v), c.buckets))] = 1.0
                off += c.width
            if y is not None:
                lv = rec.get(self.label)
                if lv is None or lv == "" or (isinstance(lv, float) and math.isnan(lv)):
                    errors.append(RowError(i, self.label, "label is missing"))
                    bad[i] = True
                elif self.task == "binary":
                    y[i] = 1.0 if str(lv) == self.positive or lv is True or lv == 1 else 0.0
                elif self.task == "regression":
                    try:
                        with np.errstate(over="ignore"):  # beyond float32: inf, refused just below
                            y[i] = float(lv)
                    except (TypeError, ValueError):
                        y[i] = np.nan
                    if not math.isfinite(float(y[i])):
                        errors.append(RowError(i, self.label, f"a regression label must be a finite number: {lv!r}"))
                        bad[i] = True
                        y[i] = 0.0
                else:
                    k = class_index.get(str(lv))
                    if k is None:
                        errors.append(RowError(i, self.label, f"label {str(lv)!r} is not one of the classes "
                                                              f"{list(self.classes)}"))
                        bad[i] = True
                    else:
                        y[i] = float(k)
        if errors and strict:
            raise SchemaError(errors)
        if bad.any():
            keep = ~bad
            x = x[keep]
            y = y[keep] if y is not None else None
        return x, y, errors

    def graph_labels(self, y: np.ndarray) -> np.ndarray:
        """Encoded labels -> what the train graph's ``y`` takes.

        binary: as is; regression: standardised, (y - label_mean) / label_std;
        multiclass: one-hot [N, len(classes)].
        """
        ya = np.asarray(y, dtype=np.float32).reshape(-1)
        if self.task == "regression":
            yd = ya.astype(np.float64)
            if self.label_transform:
                yd = np.sign(yd) * np.log1p(np.abs(yd))
            return ((yd - self.label_mean) / self.label_std).astype(np.float32)
        if self.task == "multiclass":
            idx = ya.astype(np.int64)
            if ya.size and (np.any(idx != ya) or idx.min() < 0 or idx.max() >= len(self.classes)):
                raise SchemaError([RowError(int(np.flatnonzero((idx != ya) | (idx < 0) | (idx >= len(self.classes)))[0]),
                                            self.label or "y", f"class index must be an integer in "
                                                               f"[0, {len(self.classes)})")])
            return np.eye(len(self.classes), dtype=np.float32)[idx]
        return ya


def signed_log1p(v: float) -> float:
    """sign(v)·log1p(|v|): the "log1p" numeric transform (defined for negatives too, e.g. refunds)."""
    return math.copysign(math.log1p(abs(v)), v)


def parse_bool(v: Any) -> bool | None:
    """True/False for a boolean-like value (bool, 0/1, yes/no, true/false, y/n, t/f); None otherwise."""
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    text = str(v).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    return None


def hash_bucket(value: str, buckets: int) -> int:
    """Stable across languages and processes (unlike Python's hash())."""
    return zlib.crc32(value.encode("utf-8")) % buckets
