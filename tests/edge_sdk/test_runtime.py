"""onnxruntime failures become ModelError at the boundary; a broken artifact never crashes the app with a foreign type."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge_sdk.errors import ArtifactIntegrityError, ModelError
from edge_sdk.runtime import converted, load_trainer
from fedmark.contract import MANIFEST_FILE, sha256_file


def test_a_broken_graph_with_a_valid_hash_raises_model_error(artifacts, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(artifacts.propensity, art)
    (art / "train_epoch.onnx").write_bytes(b"this is not an onnx model")
    m = json.loads((art / MANIFEST_FILE).read_text())
    m["files"]["train_epoch.onnx"] = sha256_file(art / "train_epoch.onnx")
    (art / MANIFEST_FILE).write_text(json.dumps(m))
    trainer = load_trainer(art)
    params = trainer.initial_params()
    x = np.zeros((3, trainer.manifest.schema().width), np.float32)
    with pytest.raises(ModelError, match="local training failed in the ONNX runtime"):
        with converted("local training"):
            trainer.train(params, (x, np.zeros(3, np.float32)))


def test_a_hash_mismatch_on_load_is_an_integrity_error(artifacts, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(artifacts.propensity, art)
    with open(art / "infer.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactIntegrityError, match="infer.onnx"):
        load_trainer(art)


def test_wrong_shapes_become_model_error(artifacts):
    trainer = load_trainer(artifacts.propensity)
    with pytest.raises(ModelError, match="x has shape"):
        with converted("scoring"):
            trainer.predict(trainer.initial_params(), np.zeros((2, 3), np.float32))
