"""The artifact on disk: layout, hashes, graph I/O names, params file, CLI."""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest

from fedmark.contract import ManifestError, load_artifact_manifest, sha256_file


def _io(path):
    m = onnx.load(str(path))
    return [i.name for i in m.graph.input], [o.name for o in m.graph.output], m


def test_propensity_layout_and_io(propensity_artifact):
    m = load_artifact_manifest(propensity_artifact)
    assert m.family == "propensity" and m.purpose == "propensity_scoring"
    assert set(os.listdir(propensity_artifact)) == {"manifest.json", "params.bin", "train_step.onnx",
                                                    "train_epoch.onnx", "infer.onnx"}
    assert set(m.files) == {"params.bin", "train_step.onnx", "train_epoch.onnx", "infer.onnx"}
    for name, digest in m.files.items():
        assert sha256_file(propensity_artifact / name) == digest
    width = m.schema().width
    assert [p.name for p in m.params] == ["w1", "b1", "w2", "b2"]
    assert m.params[0].shape == (width, 32)
    assert all(c.name != "duration" for c in m.schema().columns)
    ins, outs, step = _io(propensity_artifact / "train_step.onnx")
    assert ins == ["w1", "b1", "w2", "b2", "x", "y", "mask", "lr"]
    assert outs == ["w1_new", "b1_new", "w2_new", "b2_new", "loss"]
    dims = [d.dim_value for d in step.graph.input[4].type.tensor_type.shape.dim]
    assert dims == [m.batch_size, width]  # static shapes
    ins, outs, epoch = _io(propensity_artifact / "train_epoch.onnx")
    assert ins == ["w1", "b1", "w2", "b2", "x", "y", "mask", "lr"] and outs[-1] == "loss"
    assert [n.op_type for n in epoch.graph.node].count("Loop") == 1
    assert epoch.graph.input[4].type.tensor_type.shape.dim[0].dim_param == "num_batches"
    ins, outs, _ = _io(propensity_artifact / "infer.onnx")
    assert ins == ["w1", "b1", "w2", "b2", "x"] and outs == ["prob"]
    assert m.extra["graph_io"]["train_step"]["inputs"] == ["w1", "b1", "w2", "b2", "x", "y", "mask", "lr"]
    # every op is a standard ONNX op (no custom domains): any ONNX Runtime build can train
    for path in m.graphs.values():
        model = onnx.load(str(propensity_artifact / path))
        assert {op.domain for op in model.opset_import} <= {"", "ai.onnx"}
        assert {n.domain for n in model.graph.node} <= {""}
        assert not {"ReluGrad", "Log1p"} & {n.op_type for n in model.graph.node}


def test_params_file_is_raw_le_float32_in_manifest_order(propensity_artifact):
    from edge_sdk.trainer import Trainer
    from models import propensity

    t = Trainer(propensity_artifact)
    raw = (propensity_artifact / "params.bin").read_bytes()
    assert len(raw) == 4 * t.manifest.num_params
    expected = propensity.init_params(t.manifest.schema().width, 32, seed=0)
    got = t.initial_params()
    assert all(np.array_equal(a, b) for a, b in zip(expected, got))
    assert np.frombuffer(raw[:4], "<f4")[0] == expected[0].ravel()[0]


def test_recommender_layout_and_io(recommender_artifact, retail):
    m = load_artifact_manifest(recommender_artifact)
    assert m.family == "recommender"
    assert m.features["kind"] == "interactions" and m.features["items"] == retail.items
    assert m.features["user_column"] == "CustomerID" and m.features["item_column"] == "StockCode"
    assert [(p.name, p.shape) for p in m.params] == [("item_emb", (retail.n_items, 32)), ("item_bias", (retail.n_items,))]
    assert [(p.name, p.shape) for p in m.local_params] == [("user_emb", (32,))]
    for key in ("learning_rate", "epochs", "negatives", "recon_steps", "recon_lr"):
        assert key in m.hyperparams
    block = ["user_emb", "rows", "row_bias", "labels", "mask", "lr"]
    assert _io(recommender_artifact / "recon_step.onnx")[:2] == (block, ["user_emb_new", "loss"])
    assert _io(recommender_artifact / "train_step.onnx")[:2] == (block, ["rows_new", "row_bias_new", "loss"])
    ins, outs, _ = _io(recommender_artifact / "recon_epoch.onnx")
    assert ins == ["user_emb", "rows", "row_bias", "labels", "mask", "lr"] and outs == ["user_emb_new", "loss"]
    ins, outs, _ = _io(recommender_artifact / "train_epoch.onnx")
    assert ins == ["rows", "row_bias", "labels", "mask", "user_emb", "lr"]
    assert outs == ["rows_new", "row_bias_new", "loss"]
    assert _io(recommender_artifact / "infer.onnx")[:2] == (["user_emb", "item_emb", "item_bias"], ["scores"])
    # the item step graph never sees the whole table: its largest input is one block of rows
    step = onnx.load(str(recommender_artifact / "train_step.onnx"))
    assert [d.dim_value for d in step.graph.input[1].type.tensor_type.shape.dim] == [m.batch_size, 32]


def test_tampered_artifact_is_refused(propensity_artifact, tmp_path):
    import shutil

    from edge_sdk.trainer import Trainer

    copy = tmp_path / "a"
    shutil.copytree(propensity_artifact, copy)
    with open(copy / "params.bin", "r+b") as f:
        f.write(b"\x00\x00\x80\x7f")
    with pytest.raises(ManifestError, match="params.bin"):
        Trainer(copy)
    Trainer(copy, verify=False)  # the caller may opt out (e.g. it verified the download itself)


def test_cli_exports_logistic_variant(tmp_path, bank_split, monkeypatch):
    from fedmark_cli import main

    out = tmp_path / "lr"
    rc = main(["export", "propensity", "--out", str(out), "--hidden", "0", "--lr", "0.05", "--epochs", "2",
               "--batch-size", "32", "--model", "prop-lr", "--version", "3"])
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "prop-lr" and manifest["version"] == 3 and manifest["batch_size"] == 32
    assert [p["name"] for p in manifest["params"]] == ["w", "b"]
    assert manifest["hyperparams"]["learning_rate"] == 0.05 and manifest["hyperparams"]["epochs"] == 2
    load_artifact_manifest(out)


def test_cli_rejects_options_of_the_other_family(tmp_path, capsys):
    from fedmark_cli import main

    with pytest.raises(SystemExit):
        main(["export", "propensity", "--out", str(tmp_path / "x"), "--dim", "8"])
    assert "unrecognized arguments: --dim" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "ranking", "--out", str(tmp_path / "x")])
    assert "invalid choice" in capsys.readouterr().err


def test_cli_family_list_comes_from_the_registry(capsys):
    from fedmark_cli import main
    from models import registry

    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = capsys.readouterr().out
    for e in registry.families():
        assert e.name in out and e.protocol in out
    assert [e.name for e in registry.families()][:4] == ["propensity", "recommender", "tabular", "keras"]


def test_export_rejects_bad_options(tmp_path):
    from models.export import ExportError, export

    with pytest.raises(ExportError, match="unknown model family"):
        export("ranking", tmp_path)
    with pytest.raises(ExportError, match="dim"):
        export("recommender", tmp_path, items=["a", "b"], dim=0)
    with pytest.raises(ExportError, match="shapes"):
        export("recommender", tmp_path, items=["a", "b"], dim=4, params=[np.zeros((3, 4), np.float32),
                                                                         np.zeros(3, np.float32)])


def test_export_is_reproducible(tmp_path, bank_split):
    """Same inputs -> byte-identical artifact, so the registry's content addressing dedupes re-exports."""
    from models.export import export

    a = export("propensity", tmp_path / "a", train_records=bank_split[0][:3000], seed=4)
    b = export("propensity", tmp_path / "b", train_records=bank_split[0][:3000], seed=4)
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    assert a.files == b.files
    c = export("propensity", tmp_path / "c", train_records=bank_split[0][:3000], seed=5)
    assert c.files["params.bin"] != a.files["params.bin"] and c.files["train_step.onnx"] == a.files["train_step.onnx"]


def test_shipped_families_are_recipes_on_the_family_api(tmp_path, bank_split, retail, propensity_artifact,
                                                         recommender_artifact):
    """export('propensity'|'recommender') is export_family of the recipe: the same bytes, graph for graph."""
    from models import propensity, recommender
    from models.export import export_family
    from models.family import Family

    fam = propensity.family(propensity.build_schema(bank_split[0]))
    assert isinstance(fam, Family) and fam.protocol == "supervised-tabular/1"
    m = export_family(fam, tmp_path / "p", purpose="propensity_scoring", seed=0)
    shipped = load_artifact_manifest(propensity_artifact)
    assert {k: v for k, v in m.files.items()} == dict(shipped.files)
    rfam = recommender.family(retail.items)
    m = export_family(rfam, tmp_path / "r", purpose="recommendations", seed=0)
    shipped = load_artifact_manifest(recommender_artifact)
    assert dict(m.files) == dict(shipped.files) and m.protocol == "mf-reconstruction/1"
    assert [p.name for p in m.local_params] == ["user_emb"]
