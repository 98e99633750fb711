"""Quality rules at the device (issue #15): a record breaking a rule of ``features.rules`` never trains;
only counts per rule are reported."""
from __future__ import annotations

import numpy as np
import pytest

from edge_sdk.data import prepare_tabular
from edge_sdk.errors import SchemaError
from fedmark.contract import Column, FeatureSchema, Manifest, ParamSpec
from fedmark.contract.statistics import StatisticsPlan, check_records, rules_of

H = "sha256:" + "0" * 64
DECL = {"label": "y", "positive": "yes", "columns": {
    "age": {"kind": "numeric", "range": [18, 100], "range_rule": True, "required": True},
    "job": {"kind": "categorical", "allowed": ["admin", "technician"]},
    "spend": {"kind": "numeric", "range": [0, 1e6]}}}


def _manifest() -> Manifest:
    features = FeatureSchema((Column("age", "numeric", mean=40.0, std=10.0),
                              Column("job", "onehot", vocabulary=("admin", "technician")),
                              Column("spend", "numeric", mean=10.0, std=5.0)), label="y", positive="yes").to_json()
    features["rules"] = rules_of(DECL)
    return Manifest(model="m", family="propensity", version=1, params=(ParamSpec("w", (4,)),), batch_size=8,
                    graphs={}, files={"params.bin": H}, features=features, purpose="marketing")


def test_rules_of_keeps_only_the_rules():
    assert rules_of(DECL) == {"columns": {"age": {"kind": "numeric", "required": True, "range_rule": True,
                                                  "range": [18, 100]},
                                          "job": {"kind": "categorical", "allowed": ["admin", "technician"]}}}
    assert rules_of({"columns": {"x": {"kind": "numeric", "range": [0, 1]}}}) is None


def test_failing_records_never_train_and_only_counts_are_reported():
    recs = [{"age": 30, "job": "admin", "spend": 3, "y": "yes", "consent": "marketing"},
            {"age": 12, "job": "admin", "spend": 3, "y": "no", "consent": "marketing"},      # age out of range
            {"age": None, "job": "cook", "spend": 3, "y": "no", "consent": "marketing"},     # required + allowed
            {"age": 50, "job": "technician", "spend": None, "y": "no", "consent": "marketing"},
            {"age": 5, "job": "cook", "spend": 1, "y": "no", "consent": "analytics"}]       # not consented: unchecked
    x, y, kept, report = prepare_tabular(recs, _manifest(), with_label=True)
    assert kept == [0, 3] and x.shape[0] == 2
    np.testing.assert_array_equal(y, [1.0, 0.0])
    assert report.rejected == 2 and report.excluded_no_consent == 1
    assert report.rule_violations == {"age:range": 1, "age:required": 1, "job:allowed": 1}
    assert {(e.row, e.column) for e in report.row_errors} == {(1, "age"), (2, "age"), (2, "job")}
    with pytest.raises(SchemaError):
        prepare_tabular(recs, _manifest(), with_label=True, strict=True)


def test_type_rule_and_label_required_in_the_statistics_plan():
    plan = StatisticsPlan.from_declaration(DECL)
    v = check_records([{"age": "x", "job": "admin", "spend": 1, "y": "no"},
                       {"age": 40, "job": "admin", "spend": 1, "y": None},
                       {"age": 40, "job": "admin", "spend": 1, "y": "no"}], plan)
    assert v.passed == [False, False, True]
    assert v.violations["age:type"] == 1 and v.violations["y:required"] == 1
