"""Loaders: real files parse to the documented counts; the filtering rules hold on small crafted files."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from models import data


def test_bank_real_file_counts_and_no_duration(bank_split):
    records = data.load_bank()
    assert len(records) == 45211
    assert all("duration" not in r for r in records[:100])
    y = data.bank_labels(records)
    assert int(y.sum()) == 5289  # the documented number of subscriptions
    train, test = bank_split
    assert len(train) + len(test) == 45211
    assert abs(len(test) / 45211 - 0.25) < 0.001
    # stratified: both parts keep the 11.7 % positive share
    assert abs(data.bank_labels(train).mean() - data.bank_labels(test).mean()) < 0.001


def test_split_is_seeded_and_disjoint():
    records = [{"y": "yes" if i % 5 == 0 else "no", "i": i} for i in range(200)]
    a_train, a_test = data.stratified_split(records, seed=3)
    b_train, b_test = data.stratified_split(records, seed=3)
    c_train, _ = data.stratified_split(records, seed=4)
    assert [r["i"] for r in a_test] == [r["i"] for r in b_test]
    assert [r["i"] for r in a_train] != [r["i"] for r in c_train]
    assert not {r["i"] for r in a_train} & {r["i"] for r in a_test}
    assert sum(r["y"] == "yes" for r in a_test) == 10  # 25 % of the 40 positives
    with pytest.raises(ValueError, match="test_fraction"):
        data.stratified_split(records, test_fraction=1.5)


def test_partitions_cover_every_record_once(bank_split):
    train = bank_split[0]
    for parts in (data.partition_by_job(train), data.partition_by_month(train)):
        assert len(parts) == 12
        assert sum(len(v) for v in parts.values()) == len(train)
    months = data.partition_by_month(train)
    rates = {m: data.bank_labels(v).mean() for m, v in months.items()}
    assert rates["mar"] > 3 * rates["may"]  # the label shift that makes the federation non-IID
    shards = data.partition_iid(train, 7, seed=1)
    assert sorted(len(s) for s in shards)[-1] - sorted(len(s) for s in shards)[0] <= 1
    with pytest.raises(KeyError, match="no column"):
        data.partition_by(train, "nope")


def test_bank_bad_file_is_explained(tmp_path):
    bad = tmp_path / "b.csv"
    bad.write_text('"age";"job"\n1;"x"\n')
    with pytest.raises(data.DataError, match="lacks column"):
        data.load_bank(bad)
    with pytest.raises(data.DataError, match="not found"):
        data.load_bank(tmp_path / "missing.csv.gz")


RETAIL_ROWS = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
2,22222,"SECOND, ITEM",1,2011-01-02 10:00:00,1.0,100,France
1,11111,FIRST ITEM,2,2011-01-01 09:00:00,1.0,100,France
1,33333,THIRD ITEM,2,2011-01-01 09:00:00,1.0,100,France
C9,44444,CANCELLED,-1,2011-01-03 09:00:00,1.0,100,France
3,55555,LAST BASKET,1,2011-02-01 09:00:00,1.0,100,France
3,11111,FIRST ITEM,1,2011-02-01 09:00:00,1.0,100,France
4,66666,NO CUSTOMER,1,2011-01-01 09:00:00,1.0,,United Kingdom
5,POST,POSTAGE,1,2011-01-01 09:00:00,1.0,200,Germany
5,22222,"SECOND, ITEM",3,2011-01-01 09:00:00,1.0,200,Germany
6,77777,RETURN,-2,2011-01-05 09:00:00,1.0,200,Germany
"""


def test_retail_filters_orders_and_holds_out_last_basket(tmp_path):
    path = tmp_path / "r.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(RETAIL_ROWS)
    r = data.load_retail(path)
    # no CustomerID (66666), cancellation (44444), postage (POST), negative quantity (77777) are gone
    assert r.items == ["11111", "22222", "33333", "55555"]
    assert r.customers == ["100", "200"]
    assert r.countries == ["France", "Germany"]
    idx = r.item_index()
    # customer 100: invoices 1 (Jan 1) then 2 (Jan 2) in time order although the file lists 2 first
    assert r.train[0].tolist() == [idx["11111"], idx["33333"], idx["22222"]]
    assert sorted(r.test[0].tolist()) == sorted([idx["55555"], idx["11111"]])
    # customer 200 has one basket: nothing can be held out
    assert r.train[1].tolist() == [idx["22222"]] and r.test[1].size == 0
    assert data.customers_with_history(r) == [0]
    assert r.by_country() == {"France": [0], "Germany": [1]}
    assert r.descriptions["22222"] == "SECOND, ITEM"


def test_retail_real_file(retail):
    assert 3000 < retail.n_items < 4100
    assert 4000 < len(retail.customers) < 4372  # some customers only have non-product rows or cancellations
    assert all(t.dtype == np.int64 and t.size > 0 for t in retail.train)
    assert all(len(np.unique(t)) == len(t) for t in retail.train[:500])
    assert sum(t.size > 0 for t in retail.test) > 2500
    assert len(retail.by_country()) == 37
