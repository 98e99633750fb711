"""Local data: reading (dicts, DataFrame-like, CSV), consent filtering, schema validation, row errors."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from edge_sdk.consent import has_consent, parse_purposes, split_by_consent
from edge_sdk.data import load_records, prepare_interactions, prepare_tabular
from edge_sdk.errors import ConfigurationError, ConsentError, SchemaError
from fedmark.contract import Column, FeatureSchema, Manifest, ParamSpec

H = "sha256:" + "0" * 64


def _manifest(family: str = "propensity", features: dict | None = None, purpose: str = "marketing") -> Manifest:
    if features is None:
        features = FeatureSchema((Column("age", "numeric", mean=40.0, std=10.0, fill=40.0),
                                  Column("job", "onehot", vocabulary=("admin", "technician"))),
                                 label="y", positive="yes").to_json()
    return Manifest(model="m", family=family, version=1, params=(ParamSpec("w", (4,)),), batch_size=8,
                    graphs={}, files={"params.bin": H}, features=features, purpose=purpose)


def _rec(age, job, y, consent="marketing"):
    return {"age": age, "job": job, "y": y, "consent": consent}


def test_parse_purposes_accepts_lists_and_comma_strings():
    assert parse_purposes("Marketing, analytics ,") == {"marketing", "analytics"}
    assert parse_purposes(["marketing", " ads "]) == {"marketing", "ads"}
    assert parse_purposes(None) == frozenset() and parse_purposes(float("nan")) == frozenset()
    assert parse_purposes(1) == frozenset()
    assert has_consent({"consent": "analytics,MARKETING"}, "marketing")
    assert not has_consent({"consent": "analytics"}, "marketing")
    assert not has_consent({"consent": "marketingx"}, "marketing")
    assert not has_consent({}, "marketing")
    assert split_by_consent([{"consent": "marketing"}, {}, {"consent": ["marketing"]}], "marketing").used == [0, 2]


def test_consent_filter_runs_before_validation_and_only_counts_the_excluded():
    recs = [_rec(30, "admin", "yes"),
            _rec("not-a-number", "admin", None, consent="analytics"),  # would be a row error if it were read
            _rec(50, "technician", "no"),
            {"age": 20, "job": "admin", "y": "yes"}]
    x, y, kept, report = prepare_tabular(recs, _manifest(), with_label=True)
    assert kept == [0, 2]
    assert (report.used, report.excluded_no_consent, report.rejected) == (2, 2, 0)
    assert report.row_errors == ()
    np.testing.assert_allclose(x[:, 0], [-1.0, 1.0])
    np.testing.assert_array_equal(y, [1.0, 0.0])


def test_bad_rows_are_reported_with_original_row_number_column_and_reason():
    recs = [_rec(30, "admin", "yes"), _rec(1, "admin", "no", consent=""), _rec("abc", "admin", "no"),
            _rec(25, "admin", None)]
    x, _, kept, report = prepare_tabular(recs, _manifest(), with_label=True)
    assert kept == [0]
    errs = {(e.row, e.column) for e in report.row_errors}
    assert errs == {(2, "age"), (3, "y")}
    assert "not a number" in next(e.reason for e in report.row_errors if e.row == 2)
    with pytest.raises(SchemaError) as ei:
        prepare_tabular(recs, _manifest(), with_label=True, strict=True)
    assert "row 2, column 'age'" in str(ei.value) and len(ei.value.errors) == 2


def test_missing_values_and_unknown_categories_follow_the_manifest_rules():
    recs = [_rec(None, "pilot", "yes"), _rec("", None, "no")]
    x, _, kept, report = prepare_tabular(recs, _manifest(), with_label=True)
    assert kept == [0, 1] and report.rejected == 0
    np.testing.assert_allclose(x[:, 0], [0.0, 0.0])  # fill 40 -> standardised 0
    np.testing.assert_array_equal(x[:, 1:], [[0, 0, 1], [0, 0, 1]])  # unknown slot


def test_a_column_absent_from_every_record_is_a_naming_error_not_missing_data():
    recs = [{"Age": 30, "job": "admin", "y": "yes", "consent": "marketing"}]
    with pytest.raises(SchemaError, match=r"\['age'\] are absent from every record"):
        prepare_tabular(recs, _manifest(), with_label=True)


def test_no_consented_record_raises_consent_error():
    with pytest.raises(ConsentError, match="purpose 'marketing'"):
        prepare_tabular([_rec(1, "admin", "yes", consent="analytics")], _manifest(), with_label=True)


def test_all_rows_bad_raises_even_when_not_strict():
    with pytest.raises(SchemaError, match="do not match"):
        prepare_tabular([_rec("x", "admin", "yes")], _manifest(), with_label=True)


def test_csv_semicolon_gzip_and_comma_forms(tmp_path):
    p1 = tmp_path / "a.csv"
    p1.write_text('age,job,y,consent\n30,admin,yes,"marketing,analytics"\n50,technician,no,analytics\n')
    p2 = tmp_path / "b.csv.gz"
    with gzip.open(p2, "wt") as f:
        f.write('"age";"job";"y";"consent"\n30;"admin";"yes";"marketing,analytics"\n50;"technician";"no";"analytics"\n')
    r1, r2 = load_records(p1), load_records(str(p2))
    assert r1 == r2 == [{"age": "30", "job": "admin", "y": "yes", "consent": "marketing,analytics"},
                        {"age": "50", "job": "technician", "y": "no", "consent": "analytics"}]
    x, y, kept, report = prepare_tabular(r1, _manifest(), with_label=True)
    assert kept == [0] and report.excluded_no_consent == 1


def test_dataframe_like_objects_are_read_through_to_dict():
    class Frame:  # the two members of pandas.DataFrame the SDK relies on
        columns = ["age"]

        def to_dict(self, orient):
            assert orient == "records"
            return [{"age": 1.0, "consent": "marketing"}]

    assert load_records(Frame()) == [{"age": 1.0, "consent": "marketing"}]


def test_bad_inputs_are_refused_clearly(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_records(tmp_path / "nope.csv")
    with pytest.raises(ConfigurationError, match="wrap a single record"):
        load_records({"age": 1})
    with pytest.raises(SchemaError, match="row 1"):
        load_records([{"a": 1}, 5])
    with pytest.raises(ConfigurationError, match="not supported"):
        load_records(42)


def _rec_manifest() -> Manifest:
    return _manifest("recommender", {"kind": "interactions", "user_column": "CustomerID", "item_column": "StockCode",
                                     "items": ["A", "B", "85123", "D"]})


def test_interactions_map_codes_skip_unknown_and_respect_consent():
    recs = [{"CustomerID": 17850.0, "StockCode": "B", "consent": "marketing"},
            {"CustomerID": 17850.0, "StockCode": 85123.0, "consent": "marketing"},
            {"CustomerID": 17850.0, "StockCode": "ZZZ", "consent": "marketing"},
            {"CustomerID": 17850.0, "StockCode": "D", "consent": "analytics"},
            {"CustomerID": 17850.0, "StockCode": None, "consent": "marketing"},
            {"CustomerID": 17850.0, "StockCode": "B", "consent": "marketing"}]
    items, report = prepare_interactions(recs, _rec_manifest())
    np.testing.assert_array_equal(items, [1, 2])  # 'D' is not consented, 'ZZZ' unknown
    assert (report.excluded_no_consent, report.skipped_unknown_items, report.rejected, report.used) == (1, 1, 1, 3)
    assert report.row_errors[0].row == 4 and report.row_errors[0].column == "StockCode"


def test_interactions_of_two_customers_are_refused():
    recs = [{"CustomerID": "1", "StockCode": "A", "consent": "marketing"},
            {"CustomerID": "2", "StockCode": "B", "consent": "marketing"}]
    with pytest.raises(SchemaError, match="2 different customers"):
        prepare_interactions(recs, _rec_manifest())
