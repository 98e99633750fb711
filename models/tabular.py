"""Any table to a trainer: read the file, declare or infer the schema, check the label, fit the encoding.

Why here (build time) and not in the contract: reading CSVs, guessing column
types and fitting means, vocabularies and label statistics happen once, at
export; what a device needs afterwards is only the fitted
``fedmark.contract.FeatureSchema`` in the manifest.

A *schema declaration* (JSON or YAML file, or a dict) says what each column is; fitting
turns it into the encoder's rules on the training rows::

    {"label": "next_3m_spend", "task": "regression",
     "drop": ["customer_id"],
     "columns": {"country": {"kind": "categorical", "max_vocab": 10, "tail_buckets": 4},
                 "invoices": "numeric",
                 "days_between": {"kind": "numeric", "missing": "indicator"},
                 "returned": "boolean"}}

Column kinds: ``numeric`` (standardised; ``missing``: ``"impute"`` fills with
the training mean, ``"indicator"`` also adds a was-missing slot;
``"transform": "log1p"`` for heavy-tailed amounts and counts), ``boolean``
(true/false, yes/no, 1/0), ``categorical`` (one-hot over the ``max_vocab``
most frequent training values; the rest and missing values go to
``tail_buckets`` hashed slots, or one unknown slot when 0; with ``"embed": D``
the column instead feeds the category's index to a D-wide Embedding layer of the
model, see ``fedmark.contract.Column`` kind "index"), ``hash``
(``buckets`` hashed slots, no vocabulary).  Columns in the file but in neither
``columns`` nor ``drop`` are refused, so a new column never slips in unseen.
A regression label may take ``"label_transform": "log1p"`` (amounts such as
spend: trained in log space, predicted back in label units).
``infer_declaration`` writes such a declaration from a sample for review.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
from collections import Counter
from typing import Any, Mapping, Sequence

from fedmark.contract import Column, FeatureSchema, parse_bool
from fedmark.contract.features import LABEL_TASKS, signed_log1p

__all__ = ["TableError", "NA_TOKENS", "read_table", "infer_declaration", "load_declaration", "check_declaration",
           "with_embeddings", "fit_schema", "DEFAULT_MAX_VOCAB", "DEFAULT_TAIL_BUCKETS", "MAX_CLASSES"]

NA_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
DEFAULT_MAX_VOCAB = 20
DEFAULT_TAIL_BUCKETS = 8
MAX_CLASSES = 100
KINDS = ("numeric", "boolean", "categorical", "hash")


class TableError(ValueError):
    """The data file, the schema declaration or the label does not fit; the message names what and where."""


# --------------------------------------------------------------------------- reading
def read_table(path: str | os.PathLike[str], *, sep: str | None = None) -> list[dict[str, Any]]:
    """Rows of a CSV (any delimiter, sniffed unless ``sep``; gzip or not) or Parquet file.

    Values stay text (None for NA tokens such as "" or "NA"); the encoder parses them.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise TableError(f"data file {path} not found (--data)")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        return _read_parquet(path)
    raw = gzip.open(path, "rb") if magic[:2] == b"\x1f\x8b" else open(path, "rb")
    with io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="") as text:
        try:
            head = text.read(65536)
        except UnicodeDecodeError as exc:
            raise TableError(f"{path} is not UTF-8 text (CSV) or Parquet: {exc}") from None
        if sep is None:
            try:
                sep = csv.Sniffer().sniff(head.split("\n", 20)[0] + "\n", delimiters=",;\t|").delimiter
            except csv.Error:
                raise TableError(f"cannot tell the delimiter of {path}; pass --sep (e.g. --sep ';')") from None
        text.seek(0)
        reader = csv.reader(text, delimiter=sep)
        header = next(reader, None)
        if not header or len(header) < 2:
            raise TableError(f"{path}: the header {header} has fewer than two columns; is --sep {sep!r} right?")
        _no_duplicates(path, header)
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise TableError(f"{path} line {line}: {len(row)} fields, the header has {len(header)} "
                                 f"(delimiter {sep!r}; pass --sep if that is wrong)")
            rows.append({k: (None if v.strip().lower() in NA_TOKENS else v) for k, v in zip(header, row)})
    if not rows:
        raise TableError(f"{path} has a header but no rows")
    return rows


def _no_duplicates(path: str, header: Sequence[str]) -> None:
    dupes = sorted(c for c, n in Counter(header).items() if n > 1)
    if dupes:
        raise TableError(f"{path}: column(s) {dupes} appear twice in the header")


def _parquet_text(v: Any) -> str | None:
    """A Parquet value as its CSV export would read: text, None for nulls, NaN and NA tokens."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    text = v.isoformat() if hasattr(v, "isoformat") else v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return None if text.strip().lower() in NA_TOKENS else text


def _read_parquet(path: str) -> list[dict[str, Any]]:
    """Rows of a Parquet file, as text like a CSV's (so one table reads the same in either format, and the
    fitted vocabularies match what devices send)."""
    try:
        import pyarrow.parquet as pq  # optional (the ``parquet`` extra): only Parquet input needs it
    except ImportError:
        raise TableError(f"{path} is a Parquet file; reading Parquet needs pyarrow: pip install 'fedmark[parquet]' "
                         "(or export the table as CSV)") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, … for a damaged file
        raise TableError(f"{path} is not a readable Parquet file: {exc}") from None
    header = table.column_names
    if len(header) < 2:
        raise TableError(f"{path}: the table has {len(header)} column(s) {header}; a label and a feature are needed")
    _no_duplicates(path, header)
    rows = [{k: _parquet_text(v) for k, v in r.items()} for r in table.to_pylist()]
    if not rows:
        raise TableError(f"{path} has columns but no rows")
    return rows


# --------------------------------------------------------------------------- declarations
#: file endings read as YAML; anything else is JSON
YAML_SUFFIXES = (".yaml", ".yml")


def load_declaration(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A schema declaration (or a fitted schema) from a JSON file, or a YAML one (``.yaml``/``.yml``).

    YAML is the same document in another notation (comments are handy when reviewing an inferred
    schema); both then go through the same checks (:func:`check_declaration`).
    """
    path = os.fspath(path)
    yaml_file = path.lower().endswith(YAML_SUFFIXES)
    notation = "YAML" if yaml_file else "JSON"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise TableError(f"cannot read schema file {path} (--schema): {exc}") from None
    if yaml_file:
        try:
            import yaml  # the build extra's PyYAML
        except ImportError:
            raise TableError(f"schema file {path} is YAML, which needs PyYAML: pip install 'fedmark[build]' "
                             "(or write the schema as JSON)") from None
        try:
            decl = yaml.safe_load(text)  # safe_load: plain mappings, lists and scalars only, never objects
        except yaml.YAMLError as exc:
            raise TableError(f"schema file {path} (--schema) is not valid YAML: {exc}") from None
        if isinstance(decl, dict) and isinstance(decl.get("positive"), bool):
            raise TableError(f"schema file {path}: YAML reads an unquoted positive: {decl['positive']} as a boolean; "
                             "quote the label value (positive: 'yes')")
    else:
        try:
            decl = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TableError(f"schema file {path} (--schema) is not valid JSON: {exc}") from None
    if not isinstance(decl, dict):
        raise TableError(f"schema file {path} must hold a {notation} object (mapping) with 'columns'")
    return decl


def with_embeddings(decl: Mapping[str, Any], embed: Mapping[str, int]) -> dict[str, Any]:
    """The declaration with categorical columns fed to Embeddings: ``{column: width}`` (``--embed COL:DIM``)."""
    out = {**decl, "columns": dict(decl.get("columns", {}))}
    for name, dim in embed.items():
        spec = out["columns"].get(name)
        kind = spec if isinstance(spec, str) else spec.get("kind") if isinstance(spec, Mapping) else None
        if kind != "categorical":
            raise TableError(f"--embed {name}:{dim}: {name!r} is not a categorical column of the schema "
                             f"(it is {kind or 'not declared'}); only categories feed an Embedding")
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise TableError(f"--embed {name}:{dim}: the Embedding width must be an integer >= 1")
        out["columns"][name] = {**({"kind": spec} if isinstance(spec, str) else spec), "embed": dim}
    return out


def _spec(name: str, raw: Any) -> dict[str, Any]:
    spec = {"kind": raw} if isinstance(raw, str) else dict(raw) if isinstance(raw, Mapping) else None
    if spec is None or spec.get("kind") not in KINDS:
        raise TableError(f"schema column {name!r}: kind must be one of {', '.join(KINDS)}, got {raw!r}")
    if spec.get("transform", "") not in ("", "log1p"):
        raise TableError(f"schema column {name!r}: transform must be 'log1p' or absent, got {spec['transform']!r}")
    missing = spec.get("missing", "impute")
    if missing not in ("impute", "indicator"):
        raise TableError(f"schema column {name!r}: missing must be 'impute' or 'indicator', got {missing!r}")
    for key in ("max_vocab", "tail_buckets", "buckets", "embed"):
        if key in spec and (not isinstance(spec[key], int) or isinstance(spec[key], bool) or spec[key] < 0):
            raise TableError(f"schema column {name!r}: {key} must be a non-negative integer, got {spec[key]!r}")
    if spec["kind"] == "hash" and spec.get("buckets", 0) < 2:
        raise TableError(f"schema column {name!r}: a hash column needs buckets >= 2")
    if spec.get("embed") and spec["kind"] != "categorical":
        raise TableError(f"schema column {name!r}: embed (an Embedding of the category) needs kind categorical, "
                         f"not {spec['kind']}")
    if spec.get("tail_buckets") == 1:
        raise TableError(f"schema column {name!r}: tail_buckets must be 0 (one unknown slot) or >= 2")
    return spec


def check_declaration(decl: Mapping[str, Any], header: Sequence[str]) -> dict[str, Any]:
    """Validate a declaration against the file's columns; returns it normalised."""
    label = decl.get("label")
    if not isinstance(label, str) or not label:
        raise TableError("the schema declaration needs 'label': the column to predict (or --label)")
    task = decl.get("task", "binary")
    if task not in LABEL_TASKS:
        raise TableError(f"schema task {task!r} is not one of {', '.join(LABEL_TASKS)} (--task)")
    cols = decl.get("columns")
    if not isinstance(cols, Mapping) or not cols:
        raise TableError("the schema declaration needs 'columns': {name: kind or {kind: …}}")
    drop = list(decl.get("drop", []))
    present = set(header)
    absent = sorted(c for c in [label, *cols, *drop] if c not in present)
    if absent:
        raise TableError(f"column(s) {absent} named by the schema are not in the data file (columns: "
                         f"{list(header)})")
    if label in cols or label in drop:
        raise TableError(f"the label {label!r} cannot also be a feature or dropped")
    both = sorted(set(cols) & set(drop))
    if both:
        raise TableError(f"column(s) {both} are both features and dropped; choose one")
    unknown = [c for c in header if c not in cols and c not in drop and c != label]
    if unknown:
        raise TableError(f"column(s) {unknown} are in the file but not in the schema: declare them under 'columns' "
                         "or list them under 'drop' (--drop COL)")
    label_transform = decl.get("label_transform", "")
    if label_transform not in ("", "log1p") or (label_transform and task != "regression"):
        raise TableError(f"label_transform must be 'log1p' (regression only) or absent, got {label_transform!r}")
    return {"label": label, "task": task, "positive": decl.get("positive"), "label_transform": label_transform,
            "columns": {n: _spec(n, s) for n, s in cols.items()}, "drop": drop}


def _missing(v: Any) -> bool:
    """The encoder's notion of missing (None, "", NaN); read_table already maps NA tokens to None."""
    return v is None or v == "" or (isinstance(v, float) and math.isnan(v))


def _is_number(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _heavy_tailed(values: Sequence[float]) -> bool:
    """Non-negative with a maximum over ten times the 75th percentile: amounts and counts (log1p them)."""
    if not values or min(values) < 0:
        return False
    ordered = sorted(values)
    return ordered[-1] > 10 * max(ordered[(3 * len(ordered)) // 4], 1e-12)


def infer_declaration(rows: Sequence[Mapping[str, Any]], *, label: str, task: str = "binary",
                      positive: str | None = None, drop: Sequence[str] = ()) -> dict[str, Any]:
    """Guess a declaration from a sample: boolean, numeric, else categorical; identifiers are dropped.

    The result is meant to be written out and reviewed (``fedmark export
    tabular`` writes it next to the artifact as ``schema.inferred.json``).
    """
    if not rows:
        raise TableError("cannot infer a schema from zero rows")
    header = list(rows[0])
    if label not in header:
        raise TableError(f"label column {label!r} is not in the data file (columns: {header}); fix --label")
    cols: dict[str, Any] = {}
    dropped = list(drop)
    notes: dict[str, str] = {}
    for name in header:
        if name == label or name in dropped:
            continue
        vals = [r.get(name) for r in rows]
        present = [v for v in vals if not _missing(v)]
        has_missing = len(present) < len(vals)
        distinct = set(map(str, present))
        if not present:
            dropped.append(name)
            notes[name] = "dropped: empty in every row"
        elif len(distinct) <= 2 and all(parse_bool(v) is not None for v in distinct):
            cols[name] = {"kind": "boolean", "missing": "indicator" if has_missing else "impute"}
        elif len(present) > 20 and len(distinct) == len(present) and all(str(v).strip().isdigit() for v in present):
            dropped.append(name)
            notes[name] = "dropped: a distinct whole number in every row looks like an identifier"
        elif all(_is_number(v) for v in present):
            cols[name] = {"kind": "numeric", "missing": "indicator" if has_missing else "impute"}
            if _heavy_tailed([float(v) for v in present]):
                cols[name]["transform"] = "log1p"  # a few huge values would dominate the scale
        elif len(distinct) > 0.9 * len(present) and len(present) > 20:
            dropped.append(name)
            notes[name] = f"dropped: {len(distinct)} distinct values in {len(present)} rows looks like an identifier"
        else:
            spec: dict[str, Any] = {"kind": "categorical", "max_vocab": min(len(distinct), DEFAULT_MAX_VOCAB)}
            spec["tail_buckets"] = DEFAULT_TAIL_BUCKETS if len(distinct) > DEFAULT_MAX_VOCAB else 0
            cols[name] = spec
    decl: dict[str, Any] = {"label": label, "task": task, "columns": cols, "drop": dropped}
    if task == "regression":
        if _heavy_tailed([float(r[label]) for r in rows if _is_number(r.get(label))]):
            decl["label_transform"] = "log1p"  # amounts: a few big spenders would dominate a squared error
    if positive is not None:
        decl["positive"] = positive
    if notes:
        decl["notes"] = notes
    return decl


# --------------------------------------------------------------------------- fitting
def _label_rule(rows: Sequence[Mapping[str, Any]], label: str, task: str,
                positive: str | None, label_transform: str = "") -> dict[str, Any]:
    vals = [r.get(label) for r in rows]
    missing = [i for i, v in enumerate(vals) if _missing(v)]
    if missing:
        raise TableError(f"row {missing[0]}, column {label!r}: the label is missing ({len(missing)} row(s)); "
                         "drop those rows or choose another --label")
    counts = Counter(str(v) for v in vals)
    found = ", ".join(f"{v!r} ({n})" for v, n in counts.most_common(10)) + (" …" if len(counts) > 10 else "")
    if len(counts) < 2:
        raise TableError(f"label column {label!r} has one value only ({found}); a model cannot learn from it")
    if task == "binary":
        if positive is None:
            yes = [v for v in counts if v.strip().lower() in ("yes", "1", "true", "y", "t")]
            if len(counts) != 2 or len(yes) != 1:
                raise TableError(f"say which label value is the positive outcome with --positive; "
                                 f"{label!r} has values {found}")
            positive = yes[0]
        if positive not in counts:
            raise TableError(f"--positive {positive!r} is not a value of label {label!r}; values found: {found}")
        return {"positive": positive}
    if task == "regression":
        bad = [i for i, v in enumerate(vals) if not _is_number(v)]
        if bad:
            raise TableError(f"row {bad[0]}, column {label!r}: a regression label must be a number, got "
                             f"{vals[bad[0]]!r} ({len(bad)} row(s))")
        ys = [float(v) for v in vals]
        if label_transform:
            ys = [signed_log1p(y) for y in ys]
        mean = sum(ys) / len(ys)
        std = math.sqrt(sum((y - mean) ** 2 for y in ys) / len(ys))
        return {"label_mean": mean, "label_std": std if std > 0 else 1.0, "label_transform": label_transform}
    if len(counts) > MAX_CLASSES:
        raise TableError(f"label {label!r} has {len(counts)} classes, more than {MAX_CLASSES}; is it an identifier "
                         f"or a number (--task regression)?")
    return {"classes": tuple(sorted(counts))}


def fit_schema(rows: Sequence[Mapping[str, Any]], decl: Mapping[str, Any]) -> FeatureSchema:
    """Fit a checked declaration on training rows: means/stds, capped vocabularies, label rule."""
    if not rows:
        raise TableError("cannot fit a schema on zero training rows")
    decl = check_declaration(decl, list(rows[0]))
    columns: list[Column] = []
    for name, spec in decl["columns"].items():
        vals = [r.get(name) for r in rows]
        indicator = spec.get("missing") == "indicator"
        kind = spec["kind"]
        if kind == "numeric":
            nums = []
            for i, v in enumerate(vals):
                if _missing(v):
                    continue
                if not _is_number(v):
                    raise TableError(f"row {i}, column {name!r}: declared numeric, got {v!r}")
                nums.append(signed_log1p(float(v)) if spec.get("transform") else float(v))
            if not nums:
                raise TableError(f"column {name!r} is empty in every training row; drop it")
            mean = sum(nums) / len(nums)
            std = math.sqrt(sum((x - mean) ** 2 for x in nums) / len(nums))
            columns.append(Column(name, "numeric", mean=mean, std=std if std > 0 else 1.0, indicator=indicator,
                                  transform=spec.get("transform", "")))
        elif kind == "boolean":
            for i, v in enumerate(vals):
                if not _missing(v) and parse_bool(v) is None:
                    raise TableError(f"row {i}, column {name!r}: declared boolean (true/false, yes/no, 1/0), got {v!r}")
            columns.append(Column(name, "boolean", fill=0.0, indicator=indicator))
        elif kind == "categorical":
            counts = Counter(str(v) for v in vals if not _missing(v))
            cap = spec.get("max_vocab", DEFAULT_MAX_VOCAB)
            vocab = tuple(sorted(v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:cap]))
            if not vocab:
                raise TableError(f"column {name!r} is empty in every training row; drop it")
            embed = spec.get("embed", 0)
            columns.append(Column(name, "index" if embed else "onehot", vocabulary=vocab,
                                  tail_buckets=spec.get("tail_buckets", 0), embed=embed))
        else:
            columns.append(Column(name, "hash", buckets=spec["buckets"]))
    rule = _label_rule(rows, decl["label"], decl["task"], decl.get("positive"), decl.get("label_transform", ""))
    return FeatureSchema(tuple(columns), label=decl["label"], task=decl["task"], **rule)
