"""Federated vs centralized on the two new tasks; writes sweeps/results/task_figures.json and, from it,
docs/TASKS.md (``python bench/task_figures.py``; ``--render-only`` re-renders from the results file).

Why a script: figures in the docs are generated, never typed.  For each task
(customer value: regression; next offer: multiclass) this

1. splits the Online Retail customer table 75/25 (seeded) and exports the
   generic tabular family from the training rows (``models.export``);
2. trains *federated*: the training customers are spread over devices by
   country (the UK's customers over six devices, every other country's over
   two: non-IID), and for each round every device runs the exported ONNX
   trainer (``edge_sdk.trainer.Trainer``) for one local epoch from the global
   parameters; the server step is FedAvg (example-weighted mean of the
   devices' parameters), without clipping or noise;
3. trains *centralized*: the same Keras model (``Family.train_centralized``),
   the same learning rate and batch size, as many epochs on the pooled rows
   as there were rounds;
4. scores both, and constant baselines, on the held-out customers.

The regression is run twice: with the country one-hot (20 countries plus 8
hashed tail buckets, as inferred) and with the country fed to a 4-wide
Embedding (``embed``, an "index" column), so the docs show what the
Embedding path costs or gains on the same split.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Sequence

import numpy as np

__all__ = ["run", "main"]

ROUNDS = 30
LR = 0.1
HIDDEN = 16
SEED = 0


def _split(rows: Sequence[dict[str, Any]], seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    order = np.random.default_rng(seed).permutation(len(rows))
    cut = int(0.75 * len(rows))
    return [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]


def _devices(rows: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    uk = [r for r in rows if r["country"] == "United Kingdom"]
    rest = [r for r in rows if r["country"] != "United Kingdom"]
    return [uk[i::6] for i in range(6)] + [rest[i::2] for i in range(2)]


def _metrics(task: str, y: np.ndarray, out: np.ndarray) -> dict[str, float]:
    from edge_sdk.families.supervised import multiclass_metrics, regression_metrics

    return regression_metrics(y, out) if task == "regression" else multiclass_metrics(y, out, 2)


def run_task(task: str, table: str, label: str, workdir: str, *, embed: dict[str, int] | None = None) -> dict[str, Any]:
    from edge_sdk.trainer import Trainer
    from models import tables
    from models.export import export, tabular_family

    rows = tables.build_customer_tables()[table]
    train, test = _split(rows, SEED)
    art = os.path.join(workdir, task + ("-embed" if embed else ""))
    manifest = export("tabular", art, rows=train, label=label, task=task, drop=["customer_id"], hidden=HIDDEN,
                      learning_rate=LR, seed=SEED, embed=embed)
    schema = manifest.schema()
    tr = Trainer(art)
    xt, yt, _ = schema.encode(test)
    clients = [schema.encode(part)[:2] for part in _devices(train)]
    p0 = tr.initial_params()

    t0 = time.perf_counter()
    params, curve = p0, []
    for r in range(ROUNDS):
        results = [tr.train(params, c, epochs=1, lr=LR, seed=1000 * r + k) for k, c in enumerate(clients)]
        w = np.array([res.num_examples for res in results], np.float64)
        params = [sum(wi * res.params[j] for wi, res in zip(w, results)) / w.sum() for j in range(len(params))]
        if r in (0, 4, 9, ROUNDS - 1):
            curve.append((r + 1, _metrics(task, yt, tr.predict(params, xt))))
    fed_s = time.perf_counter() - t0

    x, y, _ = schema.encode(train)
    fam = tabular_family(schema, hidden=HIDDEN, learning_rate=LR)
    t0 = time.perf_counter()
    central = fam.train_centralized(x, y, epochs=ROUNDS, lr=LR, seed=SEED, params=p0)
    cen_s = time.perf_counter() - t0

    out: dict[str, Any] = {
        "task": task, "table": table, "label": label, "embed": embed or {}, "train_rows": len(train),
        "test_rows": len(test),
        "devices": [len(c[0]) for c in clients], "width": schema.width, "params": manifest.num_params,
        "federated": _metrics(task, yt, tr.predict(params, xt)), "centralized": _metrics(task, yt, tr.predict(central, xt)),
        "curve": curve, "seconds": {"federated": fed_s, "centralized": cen_s},
    }
    if task == "regression":
        out["baselines"] = {"mean of training labels": _metrics(task, yt, np.full(len(yt), y.mean())),
                            "median of training labels": _metrics(task, yt, np.full(len(yt), np.median(y)))}
    else:
        prior = np.bincount(y.astype(int), minlength=len(schema.classes)) / len(y)
        out["baselines"] = {"class frequencies (majority first)": _metrics(task, yt, np.tile(prior, (len(yt), 1)))}
        out["classes"] = list(schema.classes)
    return out


def _fmt(v: float) -> str:
    return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3f}"


def render(results: Sequence[dict[str, Any]], command: str) -> str:
    lines = ["# New tasks: federated vs centralized", "",
             f"Generated by `{command}` (bench/task_figures.py); do not edit by hand.", "",
             "Data: two customer tables built from the real Online Retail transactions (models/tables.py): features "
             "from purchases before 2011-09-01, labels from the three months after.  Model: the generic tabular "
             f"family (`fedmark export tabular`, schema inferred, `customer_id` dropped), an MLP with {HIDDEN} "
             f"hidden units.  Federated: {ROUNDS} rounds of FedAvg over 8 non-IID devices (the UK's customers on "
             "six, every other country's on two), one local epoch per round on the exported ONNX trainer, "
             "example-weighted mean, no clipping or noise.  Centralized: the same Keras model, learning rate "
             f"{LR} and batch size, {ROUNDS} epochs on the pooled training rows.  Scores: held-out 25 % of the "
             "customers.", ""]
    for res in results:
        metrics = list(res["federated"])
        metrics.remove("n")
        embedded = ", ".join(f"`{c}` through an Embedding({d})" for c, d in res.get("embed", {}).items())
        lines += [f"## {res['task']}: `{res['label']}` ({res['table']})" + (f", {embedded}" if embedded else ""), "",
                  f"{res['train_rows']} training and {res['test_rows']} held-out customers; devices hold "
                  f"{', '.join(map(str, res['devices']))} rows; input width {res['width']}, "
                  f"{res['params']} parameters." + (f"  Classes: {', '.join(res['classes'])}." if "classes" in res
                                                    else "  Amounts in GBP; the label is trained in log space "
                                                         "(inferred `label_transform: log1p`)."), "",
                  "| model | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        rows = [("federated (FedAvg, ONNX trainer)", res["federated"]), ("centralized (Keras fit)", res["centralized"])]
        rows += list(res["baselines"].items())
        for name, m in rows:
            lines.append(f"| {name} | " + " | ".join(_fmt(m[k]) for k in metrics) + " |")
        lines += ["", "Federated, by round: " + "; ".join(
            f"round {r}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in m.items() if k != "n") for r, m in res["curve"]),
                  "", f"Wall time on this machine: federated {res['seconds']['federated']:.1f} s, centralized "
                      f"{res['seconds']['centralized']:.1f} s.", ""]
    return "\n".join(lines)


RESULTS = os.path.join("sweeps", "results", "task_figures.json")


def write_doc(results: Sequence[dict[str, Any]], out_path: str) -> None:
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(render(results, "python bench/task_figures.py --out " + os.path.relpath(out_path)))


def run(out_path: str, workdir: str, results_path: str = RESULTS) -> list[dict[str, Any]]:
    results = [run_task("regression", "customer_value", "next_3m_spend", workdir),
               run_task("regression", "customer_value", "next_3m_spend", workdir, embed={"country": 4}),
               run_task("multiclass", "next_offer", "next_offer", workdir)]
    with open(results_path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, sort_keys=True)
        f.write("\n")
    write_doc(results, out_path)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join("docs", "TASKS.md"))
    p.add_argument("--workdir", default=os.path.join("out", "task_figures"))
    p.add_argument("--results", default=RESULTS, help=f"the results file (default {RESULTS})")
    p.add_argument("--render-only", action="store_true", help="rewrite --out from --results without training")
    args = p.parse_args(argv)
    if args.render_only:
        with open(args.results, encoding="utf-8") as f:
            write_doc(json.load(f), args.out)
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        run(args.out, args.workdir, args.results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
