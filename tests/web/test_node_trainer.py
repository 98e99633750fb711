"""The JavaScript trainer (onnxruntime-node) gives the Python SDK's update on the same data and order.

Python computes the reference with ``edge_sdk.trainer.Trainer`` and
``edge_sdk.update.build_update``; node (tests/web/js/trainer_parity.test.mjs)
encodes the same raw records with the JS schema encoder, trains the same
exported artifact in the same order, clips and encodes.  Both use
onnxruntime's CPU kernels, so the updates agree to float32 rounding.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.trainer import Trainer
from edge_sdk.update import build_update
from fedmark.contract import decode_update
from models.data import load_bank, stratified_split

TOL = 1e-5


def _f32(h: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(h), dtype="<f4")


def _blocks(b) -> dict:
    return {"idx": b.idx.tolist(), "labels": b.labels.tolist(), "mask": b.mask.tolist()}


@pytest.fixture(scope="module")
def parity(tmp_path_factory, propensity_artifact, recommender_artifact, run_node, js_tests, node_modules):
    """Run both sides once; returns (python reference, node results)."""
    tmp = tmp_path_factory.mktemp("parity")
    # Propensity: 1500 real bank records, two epochs with different explicit orders.
    records, _ = stratified_split(load_bank(), seed=3)
    records = records[:1500]
    prop = Trainer(propensity_artifact)
    x, y, _ = prop.manifest.schema().encode(records)
    rng = np.random.default_rng(42)
    orders = [rng.permutation(len(records)) for _ in range(2)]
    lr, clip = 0.1, 0.5
    old = prop.initial_params()
    params = old
    for order in orders:  # shuffle=False on rows taken in the explicit order == the JS `order` option
        params = prop.train(params, (x[order], y[order]), epochs=1, lr=lr, shuffle=False).params
    ref_p = build_update(params, old, prop.manifest.params, clip_norm=clip, num_examples=len(records))

    # Recommender: one customer's items, the Python plan and user vector replayed in JS.
    rec = Trainer(recommender_artifact)
    positives = np.array([3, 17, 250, 1200, 17, 3000, 42, 999], dtype=np.int64)
    seed = 9
    plan = rec.recommender_plan(positives, seed=seed)
    user0 = rec.initial_local(seed)["user_emb"]
    rec_old = rec.initial_params()
    rres = rec.train(rec_old, positives, local={"user_emb": user0}, seed=seed, lr=0.5)
    ref_r = build_update(rres.params, rec_old, rec.manifest.params, clip_norm=0.05, num_examples=rres.num_examples)

    spec = {
        "out": str(tmp / "node_out.json"),
        "propensity": {"artifact": str(propensity_artifact), "records": records,
                       "orders": [o.tolist() for o in orders], "lr": lr, "clip_norm": clip},
        "recommender": {"artifact": str(recommender_artifact), "positives": positives.tolist(), "lr": 0.5,
                        "clip_norm": 0.05, "user_emb": user0.astype("<f4").tobytes().hex(),
                        "plan": {"positives": plan.positives.tolist(), "recon": _blocks(plan.recon),
                                 "epochs": [_blocks(b) for b in plan.epochs]}},
    }
    (tmp / "spec.json").write_text(json.dumps(spec))
    run_node([js_tests / "trainer_parity.test.mjs"], {"FEDMARK_PARITY": str(tmp / "spec.json")})
    node = json.loads(Path(spec["out"]).read_text())
    ref = {"x": x, "y": y, "update": ref_p, "rec_update": ref_r, "rec_user": rres.local["user_emb"],
           "rec_scores": rec.predict(rres.params, local=rres.local), "num_params": prop.manifest.num_params}
    return ref, node


def test_features_encoded_identically(parity):
    ref, node = parity
    assert np.array_equal(_f32(node["propensity"]["x"]), ref["x"].ravel())
    assert np.array_equal(_f32(node["propensity"]["y"]), ref["y"])


def test_propensity_update_matches_python(parity):
    ref, node = parity
    n = node["propensity"]
    js = _f32(n["delta"])
    py = ref["update"].vector
    diff = float(np.max(np.abs(js - py)))
    print(f"propensity update parity: max |JS - Python| = {diff:.3g} over {py.size} values; "
          f"norm JS {n['norm']:.6f} vs Python {ref['update'].norm:.6f}; node training took {n['train_ms']:.1f} ms")
    assert js.shape == py.shape and diff <= TOL
    assert n["within"] == ref["update"].within_clip is False  # clip 0.5 binds: the clipped branch is compared
    assert abs(n["norm"] - ref["update"].norm) <= 1e-4 * ref["update"].norm
    assert n["num_examples"] == 1500
    body, enc = decode_update(bytes.fromhex(n["body"]), expected_count=ref["num_params"])
    assert enc == "f32" and np.array_equal(body, js)


def test_recommender_update_matches_python(parity):
    ref, node = parity
    n = node["recommender"]
    js, py = _f32(n["delta"]), ref["rec_update"].vector
    diff = float(np.max(np.abs(js - py)))
    touched = int(np.count_nonzero(py))
    print(f"recommender update parity: max |JS - Python| = {diff:.3g}; {touched} non-zero of {py.size}")
    assert touched > 0 and diff <= TOL
    assert np.array_equal(np.flatnonzero(js), np.flatnonzero(py)), "the same item rows must be updated"
    assert float(np.max(np.abs(_f32(n["user_emb"]) - ref["rec_user"]))) <= TOL
    assert float(np.max(np.abs(_f32(n["scores"]) - ref["rec_scores"]))) <= 1e-4
    assert n["within"] == ref["rec_update"].within_clip and n["num_examples"] == 7
