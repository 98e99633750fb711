"""Any table -> artifact: reading (delimiters, gzip), schema inference and declarations, label checks,
errors that name the row, column and rule, and the `fedmark export tabular|keras` commands."""
from __future__ import annotations

import gzip
import json
import sys

import numpy as np
import pytest

from models import tables
from models.tabular import TableError, fit_schema, infer_declaration, read_table


def test_reader_sniffs_delimiter_and_gzip(tmp_path, customer_tables):
    rows = customer_tables["next_offer"][:50]
    for name, sep in (("a.csv", ","), ("b.tsv.gz", "\t"), ("c.txt", ";"), ("d.psv", "|")):
        path = tables.write_table(rows, tmp_path / name, sep=sep)
        got = read_table(path)
        assert len(got) == 50 and list(got[0]) == list(rows[0])
        assert got[3]["spend"] == rows[3]["spend"]
        assert all(r["days_between"] is None for r, src in zip(got, rows) if src["days_between"] == "")
    assert read_table(tables.write_table(rows, tmp_path / "e.csv", sep=";"), sep=";")[0]["country"] == rows[0]["country"]


def test_reader_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(TableError, match="line 3: 2 fields, the header has 3"):
        read_table(bad)
    with pytest.raises(TableError, match="not found"):
        read_table(tmp_path / "missing.csv")
    parquet = tmp_path / "t.parquet"
    parquet.write_bytes(b"PAR1" + b"\0" * 20)
    with pytest.raises(TableError, match="is not a readable Parquet file"):
        read_table(parquet)
    dup = tmp_path / "dup.csv"
    dup.write_text("a;a;b\n1;2;3\n")
    with pytest.raises(TableError, match=r"\['a'\] appear twice"):
        read_table(dup)


def _typed_parquet(rows, path):
    """The customer table as a typed Parquet file (ints, floats with nulls, booleans, text), written by pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fedmark.contract import parse_bool

    def typed(name, v):
        if v in ("", None):
            return None
        if name == "returned":
            return parse_bool(v)
        if name in ("country", "customer_id", "next_offer"):
            return v
        return float(v) if "." in v else int(v)

    cols = {k: [typed(k, r[k]) for r in rows] for k in rows[0]}
    pq.write_table(pa.table(cols), path)
    types = {f.name: str(f.type) for f in pq.read_schema(path)}
    assert types["returned"] == "bool" and types["country"] == "string"  # typed, not text, on disk
    return path


def test_parquet_reads_like_the_csv_of_the_same_table(tmp_path, customer_tables):
    rows = customer_tables["customer_value"][:300]
    from_csv = read_table(tables.write_table(rows, tmp_path / "v.csv"))
    parquet = _typed_parquet(rows, tmp_path / "v.parquet")
    from_parquet = read_table(parquet)
    assert len(from_parquet) == 300 and list(from_parquet[0]) == list(rows[0])
    assert all(r["days_between"] is None for r, src in zip(from_parquet, rows) if src["days_between"] == "")
    decl = infer_declaration(from_csv, label="next_3m_spend", task="regression")
    assert infer_declaration(from_parquet, label="next_3m_spend", task="regression") == decl
    a, b = fit_schema(from_csv, decl), fit_schema(from_parquet, decl)
    xa, ya, _ = a.encode(from_csv)
    xb, yb, _ = b.encode(from_parquet)
    assert a.to_json() == b.to_json() and np.array_equal(xa, xb) and np.array_equal(ya, yb)


def test_parquet_without_pyarrow_names_the_extra(tmp_path, customer_tables, monkeypatch):
    parquet = _typed_parquet(customer_tables["customer_value"][:20], tmp_path / "v.parquet")
    # pyarrow is installed here (the parquet extra); a None entry makes `import pyarrow.parquet` fail as without it
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(TableError, match=r"needs pyarrow: pip install 'fedmark\[parquet\]'"):
        read_table(parquet)


def test_inference_on_the_customer_table(customer_tables):
    rows = customer_tables["customer_value"]
    decl = infer_declaration(rows, label="next_3m_spend", task="regression")
    cols = decl["columns"]
    assert "customer_id" in decl["drop"] and "identifier" in decl["notes"]["customer_id"]
    assert cols["returned"]["kind"] == "boolean"
    assert cols["days_between"] == {"kind": "numeric", "missing": "indicator"}  # one-invoice customers
    assert cols["spend"]["transform"] == "log1p"
    assert cols["country"] == {"kind": "categorical", "max_vocab": 20, "tail_buckets": 8}  # 36 countries
    assert decl["label_transform"] == "log1p"
    schema = fit_schema(rows, decl)
    country = next(c for c in schema.columns if c.name == "country")
    assert len(country.vocabulary) == 20 and "United Kingdom" in country.vocabulary and country.width == 28
    x, y, _ = schema.encode(rows)
    assert x.shape == (len(rows), schema.width) and np.isfinite(x).all()
    # the days_between indicator is set exactly where the value was missing
    off = sum(c.width for c in schema.columns[:[c.name for c in schema.columns].index("days_between")])
    assert np.array_equal(x[:, off + 1] == 1.0, np.array([r["days_between"] == "" for r in rows]))
    assert float(y.max()) == np.float32(max(float(r["next_3m_spend"]) for r in rows))  # labels stay in label units


def test_declarations_and_labels_are_checked(customer_tables):
    rows = [dict(r) for r in customer_tables["next_offer"][:200]]
    decl = {"label": "next_offer", "task": "multiclass", "drop": ["customer_id"],
            "columns": {"country": {"kind": "categorical", "max_vocab": 3, "tail_buckets": 2}, "spend": "numeric"}}
    with pytest.raises(TableError, match="not in the schema: declare them under 'columns' or list them under 'drop'"):
        fit_schema(rows, decl)
    decl["drop"] += [c for c in rows[0] if c not in ("customer_id", "country", "spend", "next_offer")]
    schema = fit_schema(rows, decl)
    assert schema.task == "multiclass" and len(schema.classes) >= 4 and schema.width == 3 + 2 + 1
    with pytest.raises(TableError, match="kind must be one of"):
        fit_schema(rows, {**decl, "columns": {**decl["columns"], "spend": "float"}})
    with pytest.raises(TableError, match=r"\['nope'\] named by the schema are not in the data file"):
        fit_schema(rows, {**decl, "drop": decl["drop"] + ["nope"]})
    rows[7]["spend"] = "lots"
    with pytest.raises(TableError, match="row 7, column 'spend': declared numeric, got 'lots'"):
        fit_schema(rows, decl)
    rows[7]["spend"] = "1.0"
    # binary label checks name the values found
    binary = {**decl, "task": "binary", "positive": "toys"}
    with pytest.raises(TableError, match="--positive 'toys' is not a value of label 'next_offer'; values found: 'kitchen'"):
        fit_schema(rows, binary)
    with pytest.raises(TableError, match="say which label value is the positive outcome with --positive"):
        fit_schema(rows, {**decl, "task": "binary"})
    one = [{**r, "next_offer": "bags"} for r in rows]
    with pytest.raises(TableError, match=r"has one value only \('bags' \(200\)\)"):
        fit_schema(one, decl)
    with pytest.raises(TableError, match="row 0, column 'next_offer': a regression label must be a number"):
        fit_schema(rows, {**decl, "task": "regression"})


YAML_DECL = """
# the next-offer table, reviewed: comments are why YAML is accepted
label: next_offer
task: multiclass
drop: [customer_id]
columns:
  country: {kind: categorical, max_vocab: 3, tail_buckets: 2}
  spend: numeric
"""


def test_yaml_declarations_read_and_fail_like_json(tmp_path, customer_tables):
    import yaml

    from models.tabular import load_declaration

    rows = customer_tables["next_offer"][:200]
    extra = [c for c in rows[0] if c not in ("customer_id", "country", "spend", "next_offer")]
    for suffix in (".yaml", ".yml"):
        (tmp_path / f"d{suffix}").write_text(YAML_DECL.replace("[customer_id]", f"[customer_id, {', '.join(extra)}]"))
    decl = load_declaration(tmp_path / "d.yaml")
    assert decl == load_declaration(tmp_path / "d.yml")
    (tmp_path / "d.json").write_text(json.dumps(decl))
    assert fit_schema(rows, decl).to_json() == fit_schema(rows, load_declaration(tmp_path / "d.json")).to_json()
    # the same mistakes give the same errors in either notation
    for bad in ({**decl, "columns": {**decl["columns"], "spend": "float"}}, {**decl, "drop": decl["drop"][:1]},
                {**decl, "task": "ranking"}):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
        errors = []
        for name in ("bad.json", "bad.yaml"):
            with pytest.raises(TableError) as err:
                fit_schema(rows, load_declaration(tmp_path / name))
            errors.append(str(err.value))
        assert errors[0] == errors[1], errors
    (tmp_path / "broken.yaml").write_text("label: next_offer\ncolumns: {country: [categorical\n")
    with pytest.raises(TableError, match=r"broken.yaml \(--schema\) is not valid YAML"):
        load_declaration(tmp_path / "broken.yaml")
    (tmp_path / "list.yml").write_text("- country\n- spend\n")
    with pytest.raises(TableError, match="must hold a YAML object \\(mapping\\) with 'columns'"):
        load_declaration(tmp_path / "list.yml")
    (tmp_path / "yes.yaml").write_text("label: returned\npositive: yes\ncolumns: {spend: numeric}\n")
    with pytest.raises(TableError, match="quote the label value"):
        load_declaration(tmp_path / "yes.yaml")


def test_embedded_categories_are_index_columns(customer_tables):
    from models.tabular import with_embeddings

    rows = customer_tables["customer_value"][:300]
    decl = with_embeddings(infer_declaration(rows, label="next_3m_spend", task="regression"), {"country": 6})
    assert decl["columns"]["country"] == {"kind": "categorical", "max_vocab": 20, "tail_buckets": 8, "embed": 6}
    schema = fit_schema(rows, decl)
    country = next(c for c in schema.columns if c.name == "country")
    assert (country.kind, country.width, country.cardinality, country.embed) == ("index", 1, len(country.vocabulary) + 8, 6)
    assert schema.to_json()["columns"][0]["embed"] == 6
    x, _, _ = schema.encode(rows)
    slot = [c.name for c in schema.columns].index("country")  # every column before it is one slot wide here
    assert all(x[i, slot] == country.vocabulary.index(r["country"]) for i, r in enumerate(rows)
               if r["country"] in country.vocabulary)
    with pytest.raises(TableError, match="'spend' is not a categorical column of the schema"):
        with_embeddings(decl, {"spend": 4})
    with pytest.raises(TableError, match="embed .* needs kind categorical, not numeric"):
        fit_schema(rows, {**decl, "columns": {**decl["columns"], "spend": {"kind": "numeric", "embed": 3}}})


def test_encoding_errors_name_row_column_rule(multiclass_artifact, offer_split):
    from fedmark.contract import SchemaError, load_artifact_manifest

    schema = load_artifact_manifest(multiclass_artifact).schema()
    rows = [dict(r) for r in offer_split[1][:5]]
    rows[1]["invoices"] = "many"
    rows[2]["returned"] = "perhaps"
    rows[3]["next_offer"] = "garden"
    with pytest.raises(SchemaError) as err:
        schema.encode(rows)
    text = str(err.value)
    assert "row 1, column 'invoices': not a number: 'many'" in text
    assert "row 2, column 'returned': not a boolean" in text
    assert "row 3, column 'next_offer': label 'garden' is not one of the classes" in text
    x, y, errors = schema.encode(rows, strict=False)
    assert x.shape[0] == 2 and len(errors) == 3 and y.tolist() == [float(schema.classes.index(r["next_offer"]))
                                                                   for r in (rows[0], rows[4])]


def test_cli_tabular_regression_from_gzip_csv_then_parquet_and_yaml(tmp_path, customer_tables, capsys):
    from edge_sdk.trainer import Trainer
    from fedmark_cli import main

    data = tables.write_table(customer_tables["customer_value"], tmp_path / "value.csv.gz", sep=";")
    out = tmp_path / "value"
    rc = main(["export", "tabular", "--data", str(data), "--label", "next_3m_spend", "--task", "regression",
               "--drop", "customer_id", "--hidden", "8", "--name", "customer-value", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "supervised-tabular/1" in printed and "schema.inferred.json" in printed
    decl = json.loads((out / "schema.inferred.json").read_text())
    assert decl["task"] == "regression" and "customer_id" in decl["drop"]
    tr = Trainer(out)
    assert tr.manifest.model == "customer-value" and tr.manifest.protocol == "supervised-tabular/1"
    assert tr.manifest.params[0].shape == (tr.manifest.schema().width, 8)
    # the reviewed declaration goes back in with --schema (as YAML, the table as Parquet): same features but the
    # narrower country vocabulary, no new inferred file
    import yaml

    decl["columns"]["country"]["max_vocab"] = 5
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(decl))
    parquet = _typed_parquet(customer_tables["customer_value"], tmp_path / "value.parquet")
    rc = main(["export", "tabular", "--data", str(parquet), "--schema", str(tmp_path / "schema.yaml"), "--hidden", "8",
               "--out", str(out)])
    assert rc == 0 and not (out / "schema.inferred.json").exists()
    assert Trainer(out).manifest.schema().width == tr.manifest.schema().width - 15
    # bad input: a clear message naming the flag, exit status 2
    rc = main(["export", "tabular", "--data", str(data), "--label", "country", "--positive", "Atlantis",
               "--drop", "customer_id", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert rc == 2 and "--positive 'Atlantis' is not a value of label 'country'" in err and "United Kingdom" in err
    rc = main(["export", "tabular", "--data", str(data), "--label", "next_3m_spend", "--task", "regression",
               "--drop", "customer_id", "--embed", "spend:4", "--out", str(tmp_path / "bad")])
    assert rc == 2 and "--embed spend:4: 'spend' is not a categorical column" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "tabular", "--data", str(data), "--label", "x", "--embed", "country", "--out", str(tmp_path)])
    assert "--embed takes COL:DIM" in capsys.readouterr().err


KERAS_MODEL = '''
import tensorflow as tf


def build(width, units):
    x = tf.keras.Input(shape=(width,), name="x")
    wide = tf.keras.layers.Dense(units, name="wide")(x)
    deep = tf.keras.layers.Dense(12, activation="tanh", name="deep1")(x)
    deep = tf.keras.layers.Dense(units, name="deep2")(deep)
    both = tf.keras.layers.Concatenate(name="join")([wide, deep])
    return tf.keras.Model(x, tf.keras.layers.Dense(units, name="head")(both))


def embedded(width, units, schema):
    from models.family import column_slots, take_slots

    slots = column_slots(schema)
    x = tf.keras.Input(shape=(width,), name="x")
    dense = take_slots([i for c in schema.columns if c.kind != "index" for i in slots[c.name]], name="dense")(x)
    country = next(c for c in schema.columns if c.kind == "index")
    vec = tf.keras.layers.Embedding(country.cardinality, 3, name="country_vec")(take_slots(slots[country.name])(x))
    both = tf.keras.layers.Concatenate()([dense, tf.keras.layers.Flatten()(vec)])
    return tf.keras.Model(x, tf.keras.layers.Dense(units, name="head")(both))


def with_dropout(width, units):
    x = tf.keras.Input(shape=(width,))
    return tf.keras.Model(x, tf.keras.layers.Dense(units)(tf.keras.layers.Dropout(0.5)(x)))
'''


def test_cli_keras_builder_on_a_fitted_schema(tmp_path, multiclass_artifact, offer_split, embedding_artifact,
                                              value_split, capsys):
    import onnxruntime as ort

    from edge_sdk.trainer import Trainer
    from fedmark_cli import main
    from models.export import ExportError, export
    from models.family import FamilyError

    (tmp_path / "my_model.py").write_text(KERAS_MODEL)
    features = json.loads((multiclass_artifact / "manifest.json").read_text())["features"]
    (tmp_path / "fitted.json").write_text(json.dumps(features))
    out = tmp_path / "mine"
    rc = main(["export", "keras", "--model", f"{tmp_path / 'my_model.py'}:build", "--schema",
               str(tmp_path / "fitted.json"), "--name", "wide-deep", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    tr = Trainer(out)
    assert [p.name for p in tr.manifest.params] == ["wide_kernel", "wide_bias", "deep1_kernel", "deep1_bias",
                                                    "deep2_kernel", "deep2_bias", "head_kernel", "head_bias"]
    x, y, _ = tr.manifest.schema().encode(offer_split[0][:400])
    res = tr.train(tr.initial_params(), (x, y), epochs=2)
    assert res.num_examples == 400 and np.isfinite(res.loss)
    assert tr.predict(res.params, x[:3]).shape == (3, 5)
    ops = {n.op_type for n in __import__("onnx").load(str(out / "train_step.onnx")).graph.node}
    assert not {"TanhGrad", "BiasAddGrad"} & ops
    ort.InferenceSession(str(out / "train_epoch.onnx"), providers=["CPUExecutionProvider"])
    # a builder that takes the schema embeds an index column itself (the embedding artifact's fitted schema)
    (tmp_path / "embedded.json").write_text(json.dumps(
        json.loads((embedding_artifact / "manifest.json").read_text())["features"]))
    export("keras", tmp_path / "emb", model_fn=f"{tmp_path / 'my_model.py'}:embedded",
           schema_path=str(tmp_path / "embedded.json"))
    emb = Trainer(tmp_path / "emb")
    card = next(c.cardinality for c in emb.manifest.schema().columns if c.kind == "index")
    assert [(p.name, p.shape) for p in emb.manifest.params][0] == ("country_vec_embeddings", (card, 3))
    xe, ye, _ = emb.manifest.schema().encode(value_split[0][:200])
    assert np.isfinite(emb.train(emb.initial_params(), (xe, ye), epochs=1).loss)
    with pytest.raises(FamilyError, match="is a Dropout; supported layers"):
        export("keras", tmp_path / "drop", model_fn=f"{tmp_path / 'my_model.py'}:with_dropout",
               schema_path=str(tmp_path / "fitted.json"))
    with pytest.raises(ExportError, match="has no function 'nope'"):
        export("keras", tmp_path / "nope", model_fn=f"{tmp_path / 'my_model.py'}:nope",
               schema_path=str(tmp_path / "fitted.json"))


def test_unknown_protocol_is_refused(tmp_path, regression_artifact):
    import shutil

    from edge_sdk.trainer import Trainer
    from fedmark.contract import ManifestError, sha256_file

    art = tmp_path / "art"
    shutil.copytree(regression_artifact, art)
    m = json.loads((art / "manifest.json").read_text())
    m["protocol"] = "graph-neural/3"
    (art / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="protocol 'graph-neural/3', which this SDK does not know"):
        Trainer(art)
    m.pop("protocol")
    m["family"] = "custom"
    (art / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="names no training protocol"):
        Trainer(art)
    assert sha256_file(art / "params.bin") == m["files"]["params.bin"]
