"""(a) Exported ONNX graphs compute what the TF steps compute; the fused epoch equals repeated steps."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from edge_sdk.trainer import Trainer

TOL = 1e-5


def max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64)))) for u, v in zip(a, b))


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_propensity_step_matches_tf(propensity_artifact, bank_xy):
    from models import propensity

    tr = Trainer(propensity_artifact)
    b, width = tr.manifest.batch_size, tr.manifest.schema().width
    x, y = bank_xy[0][:b], bank_xy[1][:b]
    mask = np.ones(b, np.float32)
    mask[-9:] = 0.0  # a padded tail must not count
    params = [p + np.float32(0.01) for p in tr.initial_params()]  # nonzero biases exercise every gradient path
    lr = np.array(0.3, np.float32)
    tf_out = propensity.make_train_step(width, 32, b)(*params, x, y, mask, lr)
    names = [p.name for p in tr.manifest.params]
    onnx_out = session(propensity_artifact / "train_step.onnx").run(
        None, dict(zip(names, params), x=x, y=y, mask=mask, lr=lr))
    assert max_diff(tf_out, onnx_out) <= TOL
    assert max_diff(params, onnx_out[:4]) > 1e-4  # the step moved the params
    # masked rows are ignored: changing them changes nothing
    x2 = x.copy()
    x2[-9:] = 99.0
    again = session(propensity_artifact / "train_step.onnx").run(
        None, dict(zip(names, params), x=x2, y=y, mask=mask, lr=lr))
    assert max_diff(onnx_out, again) <= 1e-7


def test_propensity_fused_epoch_equals_repeated_steps(propensity_artifact, bank_xy):
    tr = Trainer(propensity_artifact)
    names = [p.name for p in tr.manifest.params]
    x, y = bank_xy[0][:1000], bank_xy[1][:1000]
    xs, ys, ms = tr.batches(x, y, np.arange(1000))
    assert xs.shape[0] == 16 and ms[-1].sum() == 1000 - 15 * 64
    lr = np.array(0.1, np.float32)
    params = tr.initial_params()
    step = session(propensity_artifact / "train_step.onnx")
    p, losses = params, []
    for i in range(xs.shape[0]):
        out = step.run(None, dict(zip(names, p), x=xs[i], y=ys[i], mask=ms[i], lr=lr))
        p, losses = out[:4], losses + [out[4]]
    fused = session(propensity_artifact / "train_epoch.onnx").run(None, dict(zip(names, params), x=xs, y=ys, mask=ms, lr=lr))
    assert max_diff(p, fused[:4]) <= TOL
    assert np.allclose(losses, fused[4], atol=TOL)
    # and the Trainer's epoch (no shuffle) is that same fused call
    res = tr.train(params, (x, y), epochs=1, lr=0.1, shuffle=False)
    assert max_diff(p, res.params) <= TOL
    assert abs(res.loss - float(np.sum(np.array(losses) * ms.sum(1)) / 1000)) < 1e-5


def test_propensity_epoch_matches_tf_steps(propensity_artifact, bank_xy):
    """End to end: the Trainer's epoch equals the TF step applied batch after batch."""
    from models import propensity

    tr = Trainer(propensity_artifact)
    x, y = bank_xy[0][:700], bank_xy[1][:700]
    order = np.random.default_rng(5).permutation(700)
    xs, ys, ms = tr.batches(x, y, order)
    tf_step = propensity.make_train_step(x.shape[1], 32, tr.manifest.batch_size)
    p = tr.initial_params()
    for i in range(xs.shape[0]):
        p = tf_step(*p, xs[i], ys[i], ms[i], np.array(0.2, np.float32))[:4]
    res = tr.train(tr.initial_params(), (x[order], y[order]), epochs=1, lr=0.2, shuffle=False)
    assert max_diff(p, res.params) <= TOL


def _block(tr, rng, n_real):
    item_emb, item_bias = tr.initial_params()
    k = tr.manifest.batch_size
    idx = rng.choice(item_emb.shape[0], k, replace=False)
    labels = (rng.random(k) < 0.3).astype(np.float32)
    mask = (np.arange(k) < n_real).astype(np.float32)
    user = (rng.standard_normal(item_emb.shape[1]) * 0.3).astype(np.float32)
    bias = item_bias[idx] + rng.standard_normal(k).astype(np.float32) * 0.1
    return user, item_emb[idx], bias, labels, mask


def test_recommender_steps_match_tf(recommender_artifact):
    from models import recommender

    tr = Trainer(recommender_artifact)
    rng = np.random.default_rng(0)
    user, rows, bias, labels, mask = _block(tr, rng, 200)
    lr = np.array(0.5, np.float32)
    d, k = rows.shape[1], rows.shape[0]
    feeds = dict(user_emb=user, rows=rows, row_bias=bias, labels=labels, mask=mask, lr=lr)
    tf_recon = [o.numpy() for o in recommender.make_recon_step(d, k)(user, rows, bias, labels, mask, lr)]
    onnx_recon = session(recommender_artifact / "recon_step.onnx").run(None, feeds)
    assert max_diff(tf_recon, onnx_recon) <= TOL
    assert max_diff([user], onnx_recon[:1]) > 1e-4
    tf_train = [o.numpy() for o in recommender.make_train_step(d, k)(user, rows, bias, labels, mask, lr)]
    onnx_train = session(recommender_artifact / "train_step.onnx").run(None, feeds)
    assert max_diff(tf_train, onnx_train) <= TOL
    # padded rows (mask 0) come back unchanged, real rows move
    assert np.array_equal(onnx_train[0][200:], rows[200:])
    assert np.abs(onnx_train[0][:200] - rows[:200]).max() > 1e-4


def test_recommender_fused_epochs_equal_repeated_steps(recommender_artifact):
    tr = Trainer(recommender_artifact)
    rng = np.random.default_rng(1)
    blocks = [_block(tr, rng, n) for n in (256, 256, 40)]
    user0 = blocks[0][0]
    lr = np.array(0.7, np.float32)
    recon, train = session(recommender_artifact / "recon_step.onnx"), session(recommender_artifact / "train_step.onnx")
    u = user0
    for _, rows, bias, labels, mask in blocks:
        u = recon.run(None, dict(user_emb=u, rows=rows, row_bias=bias, labels=labels, mask=mask, lr=lr))[0]
    stacked = {name: np.stack([b[i] for b in blocks]) for i, name in enumerate(["user_emb", "rows", "row_bias", "labels", "mask"])}
    fused = session(recommender_artifact / "recon_epoch.onnx").run(
        None, dict(user_emb=user0, rows=stacked["rows"], row_bias=stacked["row_bias"], labels=stacked["labels"],
                   mask=stacked["mask"], lr=lr))
    assert max_diff([u], fused[:1]) <= TOL and fused[1].shape == (3,)
    steps = [train.run(None, dict(user_emb=u, rows=rows, row_bias=bias, labels=labels, mask=mask, lr=lr))
             for _, rows, bias, labels, mask in blocks]
    fused = session(recommender_artifact / "train_epoch.onnx").run(
        None, dict(user_emb=u, rows=stacked["rows"], row_bias=stacked["row_bias"], labels=stacked["labels"],
                   mask=stacked["mask"], lr=lr))
    assert max_diff([np.stack([s[0] for s in steps]), np.stack([s[1] for s in steps]), [s[2] for s in steps]],
                    fused) <= TOL
