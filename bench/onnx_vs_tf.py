"""Local training: the exported ONNX trainer vs the same model trained by TF/Keras.

Why: the design bets that a device is better served by a plain-ONNX train
graph (run by any ONNX Runtime) than by TensorFlow.  This measures, single
threaded on both sides and on the same data and batch size:

* per-epoch local training time: ``edge_sdk.trainer.Trainer.train`` (fused
  epoch, one Loop call) vs Keras ``model.fit`` for one epoch, plus the unfused
  per-batch ONNX step loop to show what fusing saves;
* artifact sizes (bytes per file) and session-creation (cold start) time;
* the recommender's sparse block step (gather K rows, step, scatter) vs the
  dense step that carries the whole item table through the graph.

Run:  .venv/bin/python bench/onnx_vs_tf.py [--reps 9] [--write]
``--write`` replaces the "## Local training: ONNX trainer vs TF/Keras" section
of BENCHMARKS.md with the results (other sections are left alone).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

SECTION = "## Local training: ONNX trainer vs TF/Keras"
COMMAND = ".venv/bin/python bench/onnx_vs_tf.py --reps 9 --write"


def timed(fn: Callable[[], Any], reps: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def timed_interleaved(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, list[float]]:
    """Time several variants round-robin (A B C A B C …) so background load hits them alike."""
    for fn in fns.values():
        fn()  # warm-up
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[k].append(time.perf_counter() - t0)
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def fmt_ms(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def single_thread_tf() -> Any:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


# --------------------------------------------------------------------------- propensity
def bench_propensity(art: str, reps: int) -> dict[str, Any]:
    import onnxruntime as ort

    from edge_sdk.trainer import Trainer
    from models import data, propensity

    tf = single_thread_tf()
    train, _ = data.stratified_split(data.load_bank(), seed=0)
    tr = Trainer(art, threads=1)
    x, y, _ = tr.manifest.schema().encode(train)
    b, lr = tr.manifest.batch_size, float(tr.manifest.hyperparams["learning_rate"])
    p0 = tr.initial_params()
    seeds = iter(range(10**6))
    names = [p.name for p in tr.manifest.params]
    step = tr.session("train_step")
    order = np.random.default_rng(0).permutation(len(x))
    hidden = int(tr.manifest.hyperparams["hidden"])

    def step_loop() -> None:
        xs, ys, ms = tr.batches(x, y, order)
        p = p0
        lr_a = np.array(lr, np.float32)
        for i in range(xs.shape[0]):
            p = step.run(None, dict(zip(names, p), x=xs[i], y=ys[i], mask=ms[i], lr=lr_a))[:len(names)]

    model = propensity.build_keras_model(x.shape[1], hidden, p0)
    model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=lr),
                  loss=tf.keras.losses.BinaryCrossentropy(from_logits=True))
    tf_step = propensity.make_train_step(x.shape[1], hidden, b)

    def tf_step_loop() -> None:
        xs, ys, ms = tr.batches(x, y, order)
        p = [tf.constant(v) for v in p0]
        lr_t = tf.constant(lr, tf.float32)
        for i in range(xs.shape[0]):
            p = tf_step(*p, xs[i], ys[i], ms[i], lr_t)[:len(names)]

    t = timed_interleaved({
        "onnx_epoch": lambda: tr.train(p0, (x, y), epochs=1, seed=next(seeds)),
        "onnx_steps": step_loop,
        "keras_epoch": lambda: model.fit(x, y, batch_size=b, epochs=1, shuffle=True, verbose=0),
        "tf_steps": tf_step_loop,
    }, reps)
    onnx_epoch, onnx_steps, keras_epoch, tf_steps = t["onnx_epoch"], t["onnx_steps"], t["keras_epoch"], t["tf_steps"]
    return {"rows": len(x), "batches": -(-len(x) // b), "batch": b, "onnx_epoch": onnx_epoch,
            "onnx_steps": onnx_steps, "keras_epoch": keras_epoch, "tf_steps": tf_steps, "ort": ort.__version__}


# --------------------------------------------------------------------------- recommender
def bench_recommender(art: str, reps: int) -> dict[str, Any]:
    from edge_sdk.trainer import Trainer
    from models import data

    tf = single_thread_tf()
    retail = data.load_retail()
    tr = Trainer(art, threads=1)
    hp = tr.manifest.hyperparams
    k, d = tr.manifest.batch_size, int(hp["dim"])
    lengths = np.array([len(t) for t in retail.train])
    users = {"median user": int(np.argsort(lengths)[len(lengths) // 2]),
             "heavy user (p99)": int(np.argsort(lengths)[int(len(lengths) * 0.99)])}
    p0 = tr.initial_params()
    out: dict[str, Any] = {"block": k, "dim": d, "n_items": retail.n_items, "users": {}}
    for label, c in users.items():
        pos = retail.train[c]
        seeds = iter(range(10**6))
        t = timed_interleaved({"onnx": lambda: tr.train(p0, pos, epochs=1, seed=next(seeds)),
                               "keras": keras_recommender_epoch(tf, tr, p0, pos)}, reps)
        onnx_t, keras_t = t["onnx"], t["keras"]
        plan = tr.recommender_plan(pos, epochs=1, seed=0)
        out["users"][label] = {"positives": len(pos), "rows": int(plan.epochs[0].mask.sum()),
                               "blocks": int(plan.epochs[0].idx.shape[0]), "recon_steps": int(hp["recon_steps"]),
                               "onnx": onnx_t, "keras": keras_t}
    return out


def keras_recommender_epoch(tf: Any, tr: Any, p0: list[np.ndarray], pos: np.ndarray) -> Callable[[], None]:
    """The same device epoch with Keras: reconstruction fit (items frozen) + item fit (user frozen).

    Reconstruction is logistic regression of the labels on the gathered item
    rows (the user vector is the Dense kernel, the item bias an offset input),
    for ``recon_steps`` batches of K.  The item phase uses Embedding layers
    (sparse IndexedSlices gradients, the idiomatic TF path) with a summed
    loss, one epoch over the same rows in batches of K.
    """
    hp = tr.manifest.hyperparams
    k, d, n = tr.manifest.batch_size, int(hp["dim"]), p0[0].shape[0]
    plan = tr.recommender_plan(pos, epochs=1, seed=0)
    real = plan.epochs[0].mask > 0
    idx, labels = plan.epochs[0].idx[real], plan.epochs[0].labels[real]
    rows_in = tf.keras.Input((d,))
    bias_in = tf.keras.Input((1,))
    logit = tf.keras.layers.Add()([tf.keras.layers.Dense(1, use_bias=False)(rows_in), bias_in])
    recon = tf.keras.Model([rows_in, bias_in], logit)
    recon.compile(optimizer=tf.keras.optimizers.SGD(float(hp["recon_lr"])),
                  loss=tf.keras.losses.BinaryCrossentropy(from_logits=True))
    steps = int(hp["recon_steps"])

    idx_in = tf.keras.Input((), dtype=tf.int64)
    emb = tf.keras.layers.Embedding(n, d)
    bias = tf.keras.layers.Embedding(n, 1)
    user = tf.Variable(np.zeros(d, np.float32), trainable=False)
    item_logit = tf.reduce_sum(emb(idx_in) * user, axis=-1, keepdims=True) + bias(idx_in)
    items = tf.keras.Model(idx_in, item_logit)
    items.compile(optimizer=tf.keras.optimizers.SGD(float(hp["learning_rate"])),
                  loss=tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction="sum"))
    emb.set_weights([p0[0]])
    bias.set_weights([p0[1][:, None]])

    def epoch() -> None:
        table, b = emb.get_weights()[0], bias.get_weights()[0][:, 0]
        rows = np.tile(table[idx], (-(-steps * k // len(idx)), 1))[:steps * k]
        offs = np.tile(b[idx], -(-steps * k // len(idx)))[:steps * k, None]
        labs = np.tile(labels, -(-steps * k // len(idx)))[:steps * k]
        recon.fit([rows, offs], labs, batch_size=k, epochs=1, shuffle=False, verbose=0)
        user.assign(recon.get_weights()[0][:, 0])
        items.fit(idx, labels, batch_size=k, epochs=1, shuffle=True, verbose=0)

    return epoch


def bench_sparse_vs_dense(reps: int, item_counts: tuple[int, ...], dim: int, block: int) -> list[dict[str, Any]]:
    import onnxruntime as ort

    from models import onnx_export as oe
    from models import recommender as rec

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sparse = ort.InferenceSession(oe.convert(rec.make_train_step(dim, block), rec.BLOCK_INPUTS,
                                             rec.TRAIN_OUTPUTS).SerializeToString(), opts,
                                  providers=["CPUExecutionProvider"])
    out = []
    rng = np.random.default_rng(0)
    for n in item_counts:
        dense_model = oe.convert(rec.make_dense_train_step(n, dim, block),
                                 ["item_emb", "item_bias", "user_emb", "idx", "labels", "mask", "lr"],
                                 ["item_emb_new", "item_bias_new", "loss"])
        dense = ort.InferenceSession(dense_model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        table, tbias = rec.init_params(n, dim)
        idx = rng.choice(n, block, replace=False).astype(np.int64)
        labels = (rng.random(block) < 0.2).astype(np.float32)
        mask = np.ones(block, np.float32)
        user = rng.standard_normal(dim).astype(np.float32)
        lr = np.array(0.5, np.float32)

        def sparse_step() -> None:
            r = sparse.run(None, dict(user_emb=user, rows=table[idx], row_bias=tbias[idx], labels=labels,
                                      mask=mask, lr=lr))
            table[idx] = r[0]
            tbias[idx] = r[1]

        def dense_step() -> None:
            nonlocal table, tbias
            table, tbias, _ = dense.run(None, dict(item_emb=table, item_bias=tbias, user_emb=user, idx=idx,
                                                   labels=labels, mask=mask, lr=lr))

        # equality first: both paths compute the same new rows
        t0, b0 = table.copy(), tbias.copy()
        sparse_step()
        ts, bs = table.copy(), tbias.copy()
        table, tbias = t0.copy(), b0.copy()
        dense_step()
        diff = float(max(np.abs(ts - table).max(), np.abs(bs - tbias).max()))
        s = timed(sparse_step, reps * 20)
        dn = timed(dense_step, reps * 20)
        out.append({"n_items": n, "sparse": s, "dense": dn, "diff": diff,
                    "dense_nodes": sorted({nd.op_type for nd in dense_model.graph.node} & {"ScatterND", "Unique",
                                                                                           "ScatterElements"})})
    return out


def artifact_table(art: str, reps: int) -> list[tuple[str, int, float | None]]:
    import onnxruntime as ort

    rows = []
    for name in sorted(os.listdir(art)):
        path = os.path.join(art, name)
        cold = None
        if name.endswith(".onnx"):
            def make() -> None:
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = 1
                ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            cold = med(timed(make, reps, warmup=0))
        rows.append((name, os.path.getsize(path), cold))
    return rows


# --------------------------------------------------------------------------- report
def report(res: dict[str, Any]) -> str:
    p, r = res["propensity"], res["recommender"]
    lines = [SECTION, "",
             f"Measured {time.strftime('%Y-%m-%d')} on the shared 2-core build machine ({platform.processor() or platform.machine()}, "
             f"other jobs running, so absolute times wobble); Python {platform.python_version()}, TensorFlow "
             f"{res['tf']}, onnxruntime {p['ort']}. **Single thread on both sides** (TF intra/inter-op = 1, ORT "
             f"intra_op_num_threads = 1). Medians of {res['reps']} repetitions after one warm-up; the propensity "
             "and recommender variants are timed round-robin so background load hits them alike.",
             "", "Reproduce:", "", "```", COMMAND, "```", "",
             f"### Propensity (Bank Marketing train split: {p['rows']:,} rows, width→32→1 MLP, batch {p['batch']}, "
             f"{p['batches']} batches per epoch)", "",
             "| local epoch | median | Keras `fit` time ÷ this |", "|---|---|---|"]
    k = med(p["keras_epoch"])
    for label, key in (("ONNX trainer, fused epoch (`Trainer.train`, one Loop call)", "onnx_epoch"),
                       ("ONNX step graph called per batch from Python", "onnx_steps"),
                       ("TF `tf.function` step called per batch (the exported function)", "tf_steps"),
                       ("Keras `model.fit`, one epoch", "keras_epoch")):
        lines.append(f"| {label} | {fmt_ms(med(p[key]))} | {k / med(p[key]):.1f}× |")
    lines += ["", f"### Recommender (Online Retail, {r['n_items']:,} items, d = {r['dim']}, block K = {r['block']}; "
                  "one device epoch = reconstruction + item epoch)", "",
              "| user | positives | rows (pos + neg) | ONNX trainer | Keras (`fit` recon + `fit` items) | Keras ÷ ONNX |",
              "|---|---|---|---|---|---|"]
    for label, u in r["users"].items():
        o, kk = med(u["onnx"]), med(u["keras"])
        lines.append(f"| {label} | {u['positives']} | {u['rows']} in {u['blocks']} block(s), "
                     f"{u['recon_steps']} recon steps | {fmt_ms(o)} | {fmt_ms(kk)} | {kk / o:.0f}× |")
    lines += ["", "### Sparse block step vs dense full-table step (ONNX Runtime, one item step, K = "
                  f"{r['block']}, d = {r['dim']})", "",
              "| items in table | sparse: gather K rows → step → scatter | dense: whole table in and out | "
              "dense / sparse | max |Δ| between the two |", "|---|---|---|---|---|"]
    for s in res["sparse_dense"]:
        lines.append(f"| {s['n_items']:,} | {med(s['sparse']) * 1e6:.0f} µs | {med(s['dense']) * 1e6:.0f} µs | "
                     f"{med(s['dense']) / med(s['sparse']):.1f}× | {s['diff']:.1e} |")
    lines += ["", "### Artifact files and cold start", "",
              "| artifact | file | bytes | session creation |", "|---|---|---|---|"]
    for fam, rows in res["artifacts"].items():
        for name, size, cold in rows:
            lines.append(f"| {fam} | `{name}` | {size:,} | {fmt_ms(cold) if cold is not None else '–'} |")
    lines += ["", f"Export time (TF trace + tf2onnx + Loop wrapping): propensity {res['export']['propensity']:.1f} s, "
                  f"recommender {res['export']['recommender']:.1f} s.", "",
              "Reading the figures: most of the gap to Keras is per-batch framework overhead, not arithmetic "
              "(the MLP step is tiny): Keras `fit` and a Python loop over a TF `tf.function` pay ~1 ms per "
              "batch, an ONNX Runtime call ~15 µs. Fusing the epoch into one `Loop` call removes that last "
              "per-batch call too, but from in-process Python it saves only 5–20 % (fused vs per-batch ONNX "
              "rows; numpy shuffling and batching are inside both), because the ORT call is already cheap; "
              "the fused graph is still what the trainers use, since it makes one call per epoch on every runtime. "
              "For the recommender, `fit`'s fixed per-call cost dominates the tiny per-device epochs. The "
              "dense recommender step carries the whole table in and out of the graph every step, so its "
              "cost grows with the catalogue, while the sparse block step stays O(K·d); both give identical "
              "rows (last column).", ""]
    return "\n".join(lines)


def write_section(text: str, path: str) -> None:
    """Replace (or append) our section of BENCHMARKS.md; other sections are untouched."""
    old = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmarks\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + ("\n" + old[nxt + 1:] if nxt >= 0 else "")
    with open(path, "w", encoding="utf-8") as f:
        f.write(new.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=9, help="timed repetitions per measurement (median reported)")
    ap.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    args = ap.parse_args(argv)

    tf = single_thread_tf()
    from models.export import export

    res: dict[str, Any] = {"reps": args.reps, "tf": tf.__version__, "export": {}, "artifacts": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for fam in ("propensity", "recommender"):
            t0 = time.perf_counter()
            export(fam, os.path.join(tmp, fam))
            res["export"][fam] = time.perf_counter() - t0
            res["artifacts"][fam] = artifact_table(os.path.join(tmp, fam), args.reps)
        print("propensity …", flush=True)
        res["propensity"] = bench_propensity(os.path.join(tmp, "propensity"), args.reps)
        print("recommender …", flush=True)
        res["recommender"] = bench_recommender(os.path.join(tmp, "recommender"), args.reps)
        print("sparse vs dense …", flush=True)
        res["sparse_dense"] = bench_sparse_vs_dense(args.reps, (res["recommender"]["n_items"], 50_000),
                                                    res["recommender"]["dim"], res["recommender"]["block"])
    text = report(res)
    print(text)
    if args.write:
        write_section(text, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "BENCHMARKS.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
