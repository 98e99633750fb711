"""Regression and multiclass families: TF step = exported ONNX step, one TFF round = weighted trainer updates,
and the device trainer learns (customer value: MAE below the mean predictor's; next offer: top-1 above the
majority class).  Data: the two Online Retail customer tables of models.tables."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edge_sdk.trainer import Trainer, TrainerError
from edge_sdk.families.supervised import multiclass_metrics, regression_metrics

TOL = 1e-5


def max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64)))) for u, v in zip(a, b))


def family_of(artifact):
    """The Family the artifact was exported from, rebuilt from its manifest (same builder, same schema)."""
    from models.export import tabular_family

    m = Trainer(artifact).manifest
    return tabular_family(m.schema(), hidden=int(m.hyperparams["hidden"]), batch_size=m.batch_size)


@pytest.fixture(scope="module", autouse=True)
def stop_tff_workers():
    yield
    from models import tff_runtime

    tff_runtime.stop_workers()
    assert tff_runtime.worker_pids() == []


@pytest.fixture(params=["regression", "multiclass", "embedding"])
def case(request, regression_artifact, multiclass_artifact, embedding_artifact, value_split, offer_split):
    if request.param == "regression":
        return regression_artifact, value_split
    if request.param == "embedding":  # regression with the country through an Embedding (ONNX Gather/ScatterND)
        return embedding_artifact, value_split
    return multiclass_artifact, offer_split


def test_embedding_is_fed_an_index_and_learns(embedding_artifact, value_split):
    import onnx

    tr = Trainer(embedding_artifact)
    schema = tr.manifest.schema()
    country = next(c for c in schema.columns if c.name == "country")
    assert country.kind == "index" and country.embed == 4 and country.width == 1
    table = tr.manifest.params[0]
    assert table.name == "country_embed_embeddings" and table.shape == (country.cardinality, 4)
    ops = {n.op_type for n in onnx.load(str(embedding_artifact / "train_step.onnx")).graph.node}
    assert {"Gather", "ScatterND"} <= ops  # the lookup and its gradient, plain ONNX ops
    train, _ = value_split
    x, y, _ = schema.encode(train[:400])
    p0 = tr.initial_params()
    res = tr.train(p0, (x, y), epochs=1, lr=0.1, shuffle=False)
    # only the rows of countries present in the batch move
    seen = np.unique(x[:, [c.name for c in schema.columns].index("country")].astype(int))
    moved = np.flatnonzero(np.abs(res.params[0] - p0[0]).max(axis=1) > 0)
    assert set(moved.tolist()) == set(seen.tolist())
    # an index outside the table is refused before onnxruntime sees it
    slot, card, _ = tr.protocol.index_slots[0]
    bad = x.copy()
    bad[5, slot] = card
    with pytest.raises(TrainerError, match=rf"x slot {slot} \(column 'country'\) feeds an Embedding and must hold "
                                           rf"category indices 0..{card - 1}"):
        tr.train(p0, (bad, y), epochs=1)


def test_step_matches_tf(case):
    artifact, (train, _) = case
    tr = Trainer(artifact)
    fam = family_of(artifact)
    schema = tr.manifest.schema()
    b = tr.manifest.batch_size
    x, y, _ = schema.encode(train[:b])
    gy = schema.graph_labels(y)
    mask = np.ones(b, np.float32)
    mask[-7:] = 0.0
    params = [p + np.float32(0.01) for p in tr.initial_params()]
    lr = np.array(0.2, np.float32)
    tf_out = fam.make_train_step()(*params, x, gy, mask, lr)
    names = [p.name for p in tr.manifest.params]
    sess = ort.InferenceSession(str(artifact / "train_step.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, dict(zip(names, params), x=x, y=gy, mask=mask, lr=lr))
    assert max_diff(tf_out, onnx_out) <= TOL
    assert max_diff(params, onnx_out[:len(names)]) > 1e-4
    x2 = x.copy()
    x2[-7:] = 50.0  # padded rows must not count
    for slot, _, _ in tr.protocol.index_slots:
        x2[-7:, slot] = (x[-7:, slot] + 1) % 3  # an Embedding's index slot holds another category instead
    again = sess.run(None, dict(zip(names, params), x=x2, y=gy, mask=mask, lr=lr))
    assert max_diff(onnx_out, again) <= 1e-7
    # the inference graph equals the TF predict function (regression outputs are in label units: relative)
    tf_pred = fam.make_predict()(*params, x)[0]
    assert np.allclose(tf_pred, tr.predict(params, x), rtol=1e-5, atol=TOL)


def test_trainer_epoch_matches_tf_steps(case):
    artifact, (train, _) = case
    tr = Trainer(artifact)
    schema = tr.manifest.schema()
    x, y, _ = schema.encode(train[:300])
    step = family_of(artifact).make_train_step()
    xs, ys, ms = tr.batches(x, schema.graph_labels(y), np.arange(len(x)))
    p = tr.initial_params()
    for i in range(xs.shape[0]):
        p = step(*p, xs[i], ys[i], ms[i], np.array(0.1, np.float32))[:len(p)]
    res = tr.train(tr.initial_params(), (x, y), epochs=1, lr=0.1, shuffle=False)
    assert max_diff(p, res.params) <= TOL


@pytest.mark.tff
def test_tff_round_equals_weighted_trainer_updates(case):
    from models import federated

    artifact, (train, _) = case
    tr = Trainer(artifact)
    schema = tr.manifest.schema()
    sizes = (70, 211, 130)
    starts = np.cumsum((0,) + sizes)
    clients = [schema.encode(train[a:a + n])[:2] for a, n in zip(starts, sizes)]
    p0 = tr.initial_params()
    lr = 0.2
    results = [tr.train(p0, c, epochs=1, lr=lr, shuffle=False) for c in clients]
    w = np.array([r.num_examples for r in results], np.float64)
    expected = [p + sum(wi * (r.params[k] - p) for wi, r in zip(w, results)) / w.sum() for k, p in enumerate(p0)]
    fam = family_of(artifact)
    proc = federated.build_process(fam, client_lr=lr, initial_params=p0)
    out = proc.next(proc.initialize(), [federated.client_data(fam, x, y) for x, y in clients])
    got = federated.model_weights(proc, out.state)
    assert max_diff(expected, got) <= 1e-4
    assert max_diff(p0, got) > 1e-3
    uniform = [p + sum(r.params[k] - p for r in results) / len(results) for k, p in enumerate(p0)]
    assert max_diff(uniform, got) > 1e-3  # the example weighting is what made it match
    assert out.metrics["client_work"]["train"]["num_examples"] == sum(sizes)


def test_regression_learns_customer_value(regression_artifact, value_split):
    train, test = value_split
    tr = Trainer(regression_artifact)
    schema = tr.manifest.schema()
    x, y, _ = schema.encode(train)
    xt, yt, _ = schema.encode(test)
    before = regression_metrics(yt, tr.predict(tr.initial_params(), xt))
    assert schema.label_transform == "log1p"  # inferred: spend is heavy-tailed
    res = tr.train(tr.initial_params(), (x, y), epochs=20, lr=0.1, seed=1)
    after = regression_metrics(yt, tr.predict(res.params, xt))
    mean_only = regression_metrics(yt, np.full(len(yt), y.mean()))      # the best constant for RMSE
    median_only = regression_metrics(yt, np.full(len(yt), np.median(y)))  # the best constant for MAE
    assert after["rmse"] < before["rmse"] and after["rmse"] < 0.8 * mean_only["rmse"]
    assert after["mae"] < 0.9 * median_only["mae"]
    assert after["n"] == len(test)


def test_multiclass_learns_next_offer(multiclass_artifact, offer_split):
    train, test = offer_split
    tr = Trainer(multiclass_artifact)
    schema = tr.manifest.schema()
    assert schema.classes == ("bags", "christmas", "kitchen", "lighting", "paper")
    x, y, _ = schema.encode(train)
    xt, yt, _ = schema.encode(test)
    res = tr.train(tr.initial_params(), (x, y), epochs=20, lr=0.1, seed=1)
    probs = tr.predict(res.params, xt)
    assert probs.shape == (len(xt), 5) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    m = multiclass_metrics(yt, probs, k=2)
    majority = float(np.mean(yt == np.bincount(y.astype(int)).argmax()))
    assert m["accuracy"] > majority + 0.02
    assert m["top2_accuracy"] > m["accuracy"]


def test_bad_labels_are_explained(regression_artifact, multiclass_artifact, offer_split):
    tr = Trainer(multiclass_artifact)
    x, y, _ = tr.manifest.schema().encode(offer_split[0][:20])
    with pytest.raises(TrainerError, match="class indices 0..4"):
        tr.train(tr.initial_params(), (x, y + 0.5))
    with pytest.raises(TrainerError, match="class indices"):
        tr.train(tr.initial_params(), (x, y + 5))
    reg = Trainer(regression_artifact)
    xr = np.zeros((3, reg.manifest.schema().width), np.float32)
    with pytest.raises(TrainerError, match="NaN"):
        reg.train(reg.initial_params(), (xr, np.array([1.0, np.nan, 2.0])))
