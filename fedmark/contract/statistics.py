"""Federated feature statistics and device quality rules: what a device measures, and how it is fitted.

Why in the contract: the device computes its local sufficient statistics,
the server checks and sums them, and the export turns the released totals
into a fitted :class:`~fedmark.contract.features.FeatureSchema`; all three
must agree on one layout and one fitting rule, so both live here, in pure
Python + numpy.

* :class:`StatisticsPlan` is a schema *declaration* (the ``models.tabular``
  format: ``{"label", "task", "positive", "columns": {name: spec}}``) read
  for measuring: each numeric column needs a declared ``range: [lo, hi]``
  (values are clipped to it, which bounds what one record can add; it is a
  declared fact about the column, never learnt from the data), categorical
  columns may cap how many distinct values a device reports
  (``max_values``), and any column may carry quality rules.
* Quality rules (:func:`check_records`): ``required`` (the value must be
  present), ``range`` (numeric: inside [lo, hi]), ``allowed`` (categorical:
  one of a list), and the type rule every numeric/boolean column has
  (the value must parse).  A record failing any rule is neither measured nor
  trained on; only counts per rule leave the device.
* :func:`local_statistics` is the device's contribution: per numeric column
  count, sum and sum of squares of the (clipped, transformed) values, as
  offsets from the middle of the declared range, plus the missing count; per categorical/boolean column counts per value and the
  missing count; the label likewise.  :func:`parse_contribution` is the
  server's strict reading of that body.
* :func:`fit_from_totals` turns (released) totals into the fitted schema with
  the same rules as ``models.tabular.fit_schema``: the parity test checks
  that, without noise and with k = 1, both give the same schema.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from fedmark.contract.errors import ContractError
from fedmark.contract.features import Column, FeatureSchema, parse_bool, signed_log1p

__all__ = ["StatisticsError", "StatColumn", "StatisticsPlan", "Validation", "check_records", "local_statistics",
           "parse_contribution", "fit_from_totals", "DEFAULT_MAX_VALUES", "MAX_COLUMNS", "MAX_VALUE_CHARS",
           "rule_names", "rules_of", "load_fitted", "HASH_FALLBACK"]

DEFAULT_MAX_VALUES = 64
MAX_COLUMNS = 256
MAX_VALUE_CHARS = 64
_DEFAULT_MAX_VOCAB = 20  # as models.tabular.DEFAULT_MAX_VOCAB: a declaration without max_vocab fits the same
_YES = ("yes", "1", "true", "y", "t")
#: Buckets of the hash column that replaces a categorical column without any released value.
HASH_FALLBACK = 8


class StatisticsError(ContractError):
    """A plan or a contribution that does not fit; ``code`` is the machine-readable reason."""

    def __init__(self, message: str, code: str = "bad_statistics") -> None:
        super().__init__(message)
        self.code = code


def _missing(v: Any) -> bool:
    return v is None or v == "" or (isinstance(v, float) and math.isnan(v))


@dataclass(frozen=True)
class StatColumn:
    """One measured column: its kind (numeric | categorical | boolean | hash), clip range and rules."""

    name: str
    kind: str
    lo: float = 0.0
    hi: float = 0.0
    transform: str = ""
    required: bool = False
    allowed: tuple[str, ...] | None = None
    check_range: bool = False      # the range is also a quality rule (``"range_rule": true``)
    max_values: int = DEFAULT_MAX_VALUES
    spec: Mapping[str, Any] = field(default_factory=dict)  # the declaration's spec, for fitting

    def _t(self, x: float) -> float:
        return signed_log1p(x) if self.transform else x

    @property
    def center(self) -> float:
        """The middle of the declared range (transformed units): values travel as offsets from it."""
        return (self._t(self.lo) + self._t(self.hi)) / 2

    @property
    def bound(self) -> float:
        """The largest |offset from the center| a record can add to the column's sum (transformed units)."""
        return max((self._t(self.hi) - self._t(self.lo)) / 2, 1e-12)

    def value(self, v: Any) -> float | None:
        """The measured value: clipped to the range, transformed, as an offset from the range's center
        (None if it does not parse).  Why offsets: a sum of squares of raw values is dominated by the
        mean², so after noise ``E[x²] - mean²`` could come out negative; around the center it cannot
        be far off."""
        try:
            x = float(v)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(x):
            return None
        return self._t(min(max(x, self.lo), self.hi)) - self.center


def _column(name: str, raw: Any, *, label: bool = False, task: str = "binary", measuring: bool = True) -> StatColumn:
    spec = {"kind": raw} if isinstance(raw, str) else dict(raw) if isinstance(raw, Mapping) else None
    if spec is None:
        raise StatisticsError(f"column {name!r}: spec must be a kind or an object, got {raw!r}", "bad_plan")
    kind = spec.get("kind")
    if label:
        kind = "numeric" if task == "regression" else "categorical"
    if kind not in ("numeric", "categorical", "boolean", "hash"):
        raise StatisticsError(f"column {name!r}: kind must be numeric, categorical, boolean or hash", "bad_plan")
    allowed = spec.get("allowed")
    if allowed is not None and (not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed)):
        raise StatisticsError(f"column {name!r}: allowed must be a list of strings", "bad_plan")
    lo = hi = 0.0
    if kind == "numeric" and (measuring or spec.get("range") is not None):
        rng = spec.get("range")
        if (not isinstance(rng, list) or len(rng) != 2 or not all(isinstance(x, (int, float)) for x in rng)
                or not rng[0] < rng[1] or not all(math.isfinite(x) for x in rng)):
            raise StatisticsError(f"column {name!r}: a numeric column measured federatedly needs a declared "
                                  f"'range': [lo, hi] with lo < hi (values are clipped to it), got {rng!r}",
                                  "bad_plan")
        lo, hi = float(rng[0]), float(rng[1])
    mv = spec.get("max_values", DEFAULT_MAX_VALUES)
    if not isinstance(mv, int) or isinstance(mv, bool) or not 1 <= mv <= 1024:
        raise StatisticsError(f"column {name!r}: max_values must be an integer from 1 to 1024", "bad_plan")
    return StatColumn(name, kind, lo, hi, str(spec.get("transform", "") or ""), bool(spec.get("required", label)),
                      tuple(allowed) if allowed is not None else None, bool(spec.get("range_rule", False)), mv,
                      spec)


@dataclass(frozen=True)
class StatisticsPlan:
    """What a statistics task measures: the declared columns (hash columns need nothing), the label."""

    columns: tuple[StatColumn, ...]
    label: StatColumn | None
    task: str = "binary"
    positive: str | None = None
    declaration: Mapping[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> tuple[StatColumn, ...]:
        """The columns whose statistics travel (hash columns need none), label last."""
        cols = tuple(c for c in self.columns if c.kind != "hash")
        return cols + ((self.label,) if self.label is not None else ())

    @staticmethod
    def from_declaration(decl: Mapping[str, Any], *, measuring: bool = True) -> "StatisticsPlan":
        """Read a declaration; ``measuring=False`` (quality rules only, e.g. a manifest's ``features.rules``)
        does not require numeric ranges."""
        if not isinstance(decl, Mapping):
            raise StatisticsError("the declaration must be a JSON object with 'columns'", "bad_plan")
        cols = decl.get("columns")
        if not isinstance(cols, Mapping) or not cols or len(cols) > MAX_COLUMNS:
            raise StatisticsError(f"the declaration needs 'columns': {{name: spec}} (1 to {MAX_COLUMNS})", "bad_plan")
        task = decl.get("task", "binary")
        label_name = decl.get("label")
        label = None
        if label_name is not None:
            if not isinstance(label_name, str) or label_name in cols:
                raise StatisticsError("'label' must name a column that is not a feature", "bad_plan")
            label_spec = dict(decl.get("label_spec", {}))
            label = _column(label_name, label_spec or {"kind": "categorical"}, label=True, task=task,
                            measuring=measuring)
        positive = decl.get("positive")
        return StatisticsPlan(tuple(_column(str(n), s, measuring=measuring) for n, s in cols.items()), label, str(task),
                              None if positive is None else str(positive), dict(decl))

    def to_json(self) -> dict[str, Any]:
        return dict(self.declaration)


def rule_names(plan: StatisticsPlan) -> list[str]:
    """Every rule a record is checked against, ``column:rule``, in plan order."""
    out = []
    for c in (*plan.columns, *((plan.label,) if plan.label else ())):
        if c.required:
            out.append(f"{c.name}:required")
        if c.kind in ("numeric", "boolean"):
            out.append(f"{c.name}:type")
        if c.kind == "numeric" and c.check_range:
            out.append(f"{c.name}:range")
        if c.allowed is not None:
            out.append(f"{c.name}:allowed")
    return out


@dataclass(frozen=True)
class Validation:
    """Per record: did it pass every rule; and how many records broke each rule (a record may break several)."""

    passed: list[bool]
    violations: dict[str, int]
    broken: list[tuple[str, ...]] = field(default_factory=list)  # per record: the rules it broke

    @property
    def failed(self) -> int:
        return sum(1 for p in self.passed if not p)


def check_records(records: Sequence[Mapping[str, Any]], plan: StatisticsPlan) -> Validation:
    """The device's quality rules, applied before measuring or training (see the module docstring)."""
    names = rule_names(plan)
    violations = dict.fromkeys(names, 0)
    passed: list[bool] = []
    broken_all: list[tuple[str, ...]] = []
    cols = (*plan.columns, *((plan.label,) if plan.label else ()))
    for rec in records:
        ok = isinstance(rec, Mapping)
        if not ok:
            passed.append(False)
            broken_all.append(("*:mapping",))
            continue
        mine: list[str] = []
        for c in cols:
            v = rec.get(c.name)
            broke: list[str] = []
            if _missing(v):
                if c.required:
                    broke.append("required")
            elif c.kind == "numeric":
                try:
                    x = float(v)
                except (TypeError, ValueError):
                    x = math.nan
                if not math.isfinite(x):
                    broke.append("type")
                elif c.check_range and not c.lo <= x <= c.hi:
                    broke.append("range")
            elif c.kind == "boolean" and parse_bool(v) is None:
                broke.append("type")
            if not _missing(v) and c.allowed is not None and str(v) not in c.allowed:
                broke.append("allowed")
            for b in broke:
                violations[f"{c.name}:{b}"] += 1
                mine.append(f"{c.name}:{b}")
        passed.append(not mine)
        broken_all.append(tuple(mine))
    return Validation(passed, violations, broken_all)


def local_statistics(records: Sequence[Mapping[str, Any]], plan: StatisticsPlan) -> dict[str, Any]:
    """The sufficient statistics of ``records`` (already consent-filtered and rule-checked): the body's core.

    ``{"records": n, "columns": {name: {"count", "sum", "sumsq", "missing"} | {"values": {v: n}, "missing"}}}``.
    A device with more than ``max_values`` distinct values in a column sends its most frequent ones and
    counts the rest as ``"other"``: the body stays bounded.
    """
    out: dict[str, Any] = {}
    for c in plan.measured:
        vals = [r.get(c.name) for r in records]
        if c.kind == "numeric":
            xs = [c.value(v) for v in vals if not _missing(v)]
            nums = [x for x in xs if x is not None]
            out[c.name] = {"count": len(nums), "sum": math.fsum(nums), "sumsq": math.fsum(x * x for x in nums),
                           "missing": len(vals) - len(xs)}
        else:
            counts: dict[str, int] = {}
            for v in vals:
                if not _missing(v):
                    s = str(v)[:MAX_VALUE_CHARS]
                    counts[s] = counts.get(s, 0) + 1
            top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            entry = {"values": dict(top[:c.max_values]), "missing": sum(1 for v in vals if _missing(v))}
            if len(top) > c.max_values:
                entry["other"] = sum(n for _, n in top[c.max_values:])
            out[c.name] = entry
    return {"records": len(records), "columns": out}


def _count(v: Any, what: str, cap: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= cap:
        raise StatisticsError(f"{what} must be a whole number from 0 to {cap}, got {v!r}")
    return v


def _real(v: Any, what: str) -> float:
    try:  # a JSON integer past 1e308 has no float: OverflowError, refused like infinity
        finite = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
    except OverflowError:
        finite = False
    if not finite:
        raise StatisticsError(f"{what} must be a finite number, got {str(v)[:40]!r}", "non_finite")
    return float(v)


def parse_contribution(body: Any, plan: StatisticsPlan, max_records: int) -> dict[str, Any]:
    """The server's strict reading of a device's statistics body; raises :class:`StatisticsError` with a code.

    Checks every count is whole and within the device's record count (at most ``max_records``), every
    moment finite and consistent with the declared range (offsets from its center: |sum| <= count *
    bound, 0 <= sumsq <= count * bound², so a device cannot claim values outside it), every column of the plan
    present and no other, and the rule-violation counts named by the plan.
    """
    if not isinstance(body, Mapping):
        raise StatisticsError("the body must be a JSON object {records, columns, violations, excluded}")
    n = _count(body.get("records"), "records", max_records)
    cols = body.get("columns")
    if not isinstance(cols, Mapping):
        raise StatisticsError("columns must be an object {column: statistics}")
    want = {c.name: c for c in plan.measured}
    extra, absent = sorted(set(cols) - set(want)), sorted(set(want) - set(cols))
    if extra or absent:
        raise StatisticsError(f"columns must be exactly the task's {sorted(want)}; unknown {extra}, absent {absent}",
                              "bad_columns")
    out: dict[str, Any] = {}
    for name, c in want.items():
        s = cols[name]
        if not isinstance(s, Mapping):
            raise StatisticsError(f"columns.{name} must be an object")
        missing = _count(s.get("missing"), f"columns.{name}.missing", n)
        if c.kind == "numeric":
            cnt = _count(s.get("count"), f"columns.{name}.count", n - missing)
            total, sq = _real(s.get("sum"), f"columns.{name}.sum"), _real(s.get("sumsq"), f"columns.{name}.sumsq")
            b = c.bound
            slack = 1e-9 * max(1.0, cnt * b * b)
            if abs(total) > cnt * b + slack or not -slack <= sq <= cnt * b * b + slack:
                raise StatisticsError(f"columns.{name}: sum {total} / sumsq {sq} of {cnt} values are impossible "
                                      f"inside the declared range [{c.lo}, {c.hi}]", "out_of_range")
            out[name] = {"count": cnt, "sum": total, "sumsq": sq, "missing": missing}
        else:
            vals = s.get("values")
            if not isinstance(vals, Mapping) or len(vals) > c.max_values:
                raise StatisticsError(f"columns.{name}.values must be an object of at most {c.max_values} "
                                      "value -> count")
            parsed = {}
            for k, v in vals.items():
                if not isinstance(k, str) or not 0 < len(k) <= MAX_VALUE_CHARS:
                    raise StatisticsError(f"columns.{name}.values: a value must be 1 to {MAX_VALUE_CHARS} characters")
                parsed[k] = _count(v, f"columns.{name}.values[{k!r}]", n)
            other = _count(s.get("other", 0), f"columns.{name}.other", n)
            if sum(parsed.values()) + other + missing > n:
                raise StatisticsError(f"columns.{name}: the value counts add up to more than records={n}")
            out[name] = {"values": parsed, "missing": missing, "other": other}
    viol = body.get("violations", {})
    names = set(rule_names(plan))
    if not isinstance(viol, Mapping) or not set(viol) <= names:
        raise StatisticsError(f"violations must be an object over the task's rules {sorted(names)}", "bad_rules")
    excluded = body.get("excluded", {})
    if not isinstance(excluded, Mapping) or not set(excluded) <= {"consent", "rules"}:
        raise StatisticsError("excluded must be an object {consent: n, rules: n}")
    return {"records": n, "columns": out,
            "violations": {k: _count(v, f"violations[{k!r}]", 10 ** 9) for k, v in viol.items()},
            "excluded": {k: _count(v, f"excluded.{k}", 10 ** 9) for k, v in excluded.items()}}


def _label_rule(plan: StatisticsPlan, totals: Mapping[str, Any]) -> dict[str, Any]:
    lab = plan.label
    assert lab is not None
    t = totals[lab.name]
    if plan.task == "regression":
        mean, std = _moments(t, lab)
        return {"label_mean": mean, "label_std": std, "label_transform": lab.transform}
    values = sorted(t["values"])
    if plan.task == "multiclass":
        return {"classes": tuple(values)}
    positive = plan.positive
    if positive is None:
        yes = [v for v in values if v.strip().lower() in _YES]
        if len(values) != 2 or len(yes) != 1:
            raise StatisticsError(f"say which label value is positive ('positive' in the declaration); released "
                                  f"label values: {values}", "bad_plan")
        positive = yes[0]
    return {"positive": positive}


def _moments(t: Mapping[str, Any], c: StatColumn, std_floor: float = 0.0) -> tuple[float, float]:
    """Mean and population std from the sums of offsets (see :meth:`StatColumn.value`).

    ``std_floor`` (a fraction of the half-range) replaces a std the noise pushed to or below it; 0, the
    parity case, keeps the central rule (a zero std becomes 1)."""
    n = float(t["count"])
    if not n > 0:
        return c.center, 1.0
    off = float(t["sum"]) / n
    var = float(t["sumsq"]) / n - off * off
    floor = std_floor * c.bound
    std = math.sqrt(var) if var > 0 else 0.0
    if floor > 0 and std < floor:
        std = floor
    return c.center + off, std if std > 0 else 1.0


def fit_from_totals(plan: StatisticsPlan, totals: Mapping[str, Any], *, std_floor: float = 0.0) -> FeatureSchema:
    """The fitted schema from released totals (``{column: {count,sum,sumsq} | {values}}``, or a release's
    ``totals`` with them under ``columns``).

    The rules of ``models.tabular.fit_schema``: numeric mean / population std over present values
    (``missing: indicator`` adds the indicator slot); categorical vocabulary = the ``max_vocab`` most
    frequent released values (ties by value), sorted — a column none of whose values was released
    becomes a ``hash`` column of ``max(tail_buckets, HASH_FALLBACK)`` buckets (no vocabulary to leak,
    and the model still sees the column); boolean fill 0; hash unchanged; the label rule.
    ``std_floor``: see :func:`_moments` (the server passes a small one for noised releases).
    """
    if "columns" in totals and isinstance(totals["columns"], Mapping):
        totals = totals["columns"]  # a whole release's totals
    cols: list[Column] = []
    for c in plan.columns:
        spec = c.spec
        indicator = spec.get("missing") == "indicator"
        if c.kind == "numeric":
            mean, std = _moments(totals[c.name], c, std_floor)
            cols.append(Column(c.name, "numeric", mean=mean, std=std, indicator=indicator, transform=c.transform))
        elif c.kind == "boolean":
            cols.append(Column(c.name, "boolean", fill=0.0, indicator=indicator))
        elif c.kind == "categorical":
            counts = totals[c.name]["values"]
            cap = int(spec.get("max_vocab", _DEFAULT_MAX_VOCAB))
            vocab = tuple(sorted(v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:cap]))
            if not vocab:  # no value passed the k rule / the threshold: a hashed column needs no vocabulary
                cols.append(Column(c.name, "hash", buckets=max(int(spec.get("tail_buckets", 0)), HASH_FALLBACK)))
                continue
            cols.append(Column(c.name, "onehot", vocabulary=vocab, tail_buckets=int(spec.get("tail_buckets", 0))))
        else:
            cols.append(Column(c.name, "hash", buckets=int(spec["buckets"])))
    if plan.label is None:
        return FeatureSchema(tuple(cols))
    return FeatureSchema(tuple(cols), label=plan.label.name, task=plan.task, **_label_rule(plan, totals))


_RULE_KEYS = ("required", "allowed", "range_rule")


def rules_of(decl: Mapping[str, Any]) -> dict[str, Any] | None:
    """The quality rules of a declaration, as a manifest carries them in ``features.rules`` (None: no rules).

    Only columns with a rule are kept, each with its kind and rule fields (``range`` only where
    ``range_rule`` makes it a rule); the device reads them with ``StatisticsPlan.from_declaration(rules,
    measuring=False)`` and refuses to train on records that break one.
    """
    cols: dict[str, Any] = {}
    for name, raw in (decl.get("columns") or {}).items():
        spec = {"kind": raw} if isinstance(raw, str) else dict(raw)
        kept = {k: spec[k] for k in _RULE_KEYS if spec.get(k) not in (None, False)}
        if kept:
            kept["kind"] = spec.get("kind")
            if kept.get("range_rule"):
                kept["range"] = spec.get("range")
            cols[str(name)] = kept
    return {"columns": cols} if cols else None


def load_fitted(doc: Mapping[str, Any]) -> tuple[FeatureSchema, dict[str, Any] | None]:
    """A fitted schema and its quality rules from a statistics release (``fitted_schema`` + ``declaration``)
    or from a fitted schema itself (a manifest's ``features``)."""
    if "fitted_schema" in doc:
        if not doc["fitted_schema"]:
            raise StatisticsError(f"this statistics release has no fitted schema: {doc.get('fit_error')}",
                                  "empty_release")
        return FeatureSchema.from_json(doc["fitted_schema"]), rules_of(doc.get("declaration") or {})
    return FeatureSchema.from_json(doc), dict(doc["rules"]) if isinstance(doc.get("rules"), Mapping) else None
