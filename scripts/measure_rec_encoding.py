"""Measure what the recommender's upload encoding costs in accuracy: HR@10 and bytes per update.

Runs the demo's recommender experiment (``examples/demo/recommender.run``: real server, real SDK
devices) once per encoding and seed, with every other setting as the demo has it; only the
``encoding`` key of the training configuration differs.  Prints one JSON line per run and a summary,
and writes them to ``--out``/encoding.json.

    .venv/bin/python scripts/measure_rec_encoding.py --customers 1000 --rounds 10 --seeds 0 1
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_one(encoding: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from bench.fleet import Fleet
    from examples.demo import recommender as rec_exp

    original = Fleet.train

    def train(self: Fleet, name: str, **cfg: Any) -> dict[str, Any]:
        return original(self, name, **{**cfg, "encoding": encoding})  # the one setting under test

    Fleet.train = train  # type: ignore[method-assign]
    try:
        cfg = rec_exp.RecommenderConfig(customers=args.customers, rounds=args.rounds, goal=args.goal,
                                        eval_users=args.eval_users, eval_every=args.rounds, central_epochs=1, seed=seed)
        quiet = lambda iterable=None, **kw: _Quiet(iterable)  # noqa: E731
        out = Path(args.out) / f"{encoding}-{seed}"
        res = rec_exp.run(out, out / "artifact", cfg, quiet)
    finally:
        Fleet.train = original  # type: ignore[method-assign]
    from fedmark.contract import load_artifact_manifest
    from fedmark.contract.wire import encoded_size

    fed = res["runs"]["federated"]
    n = load_artifact_manifest(out / "artifact").num_params
    return {"encoding": encoding, "seed": seed, "hr@10": fed["hr@10"], "ndcg@10": fed["ndcg@10"],
            "accepted": fed["accepted"], "bytes_per_update": encoded_size(n, encoding),
            "popularity_hr@10": res["runs"]["popularity"]["hr@10"], "items": res["items"]}


class _Quiet:
    """A progress bar that shows nothing (the measurement prints its own lines)."""

    def __init__(self, iterable: Any = None) -> None:
        self.iterable = iterable

    def __iter__(self) -> Any:
        return iter(() if self.iterable is None else self.iterable)

    def update(self, *_: Any) -> None: ...
    def set_postfix(self, *_: Any, **__: Any) -> None: ...
    def close(self) -> None: ...


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encodings", nargs="+", default=["f32", "q8"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--goal", type=int, default=40)
    p.add_argument("--eval-users", type=int, default=300)
    p.add_argument("--out", default="out/encoding")
    args = p.parse_args()
    import logging

    logging.getLogger("edge_sdk").setLevel(logging.ERROR)
    rows = []
    for seed in args.seeds:
        for enc in args.encodings:
            rows.append(run_one(enc, seed, args))
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for enc in args.encodings:
        mine = [r for r in rows if r["encoding"] == enc]
        summary[enc] = {"hr@10_mean": statistics.mean(r["hr@10"] for r in mine),
                        "bytes_per_update": statistics.mean(r["bytes_per_update"] for r in mine), "runs": len(mine)}
    base = summary[args.encodings[0]]["bytes_per_update"]
    for enc in args.encodings:
        summary[enc]["smaller_than_first"] = base / summary[enc]["bytes_per_update"]
    print(json.dumps({"settings": vars(args), "summary": summary}, indent=2))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "encoding.json").write_text(json.dumps({"settings": vars(args), "runs": rows,
                                                              "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
