"""Model-replacement poisoning on the propensity model: AUC with and without the server's defences.

    .venv/bin/python bench/poisoning.py        # prints the table recorded in BENCHMARKS.md

A real server process, the exported propensity trainer (ONNX Runtime) and the
bank data: the training split is divided IID over ``devices`` devices, the
test split scores every published version (AUC).  Honest devices train one
local epoch and clip to the task's clip norm, as the SDK does.  Attackers (10 %)
train the same way and then send the *scaled, reversed* update −boost·Δ without
clipping, claiming the largest example count — the model-replacement attack
(Bagdasaryan et al. 2020) aimed at the main task.  Runs: clean (no attacker)
and attacked, each under "no defence" (no clipping, plain weighted FedAvg)
and "defence" (server-side clipping + coordinate-wise trimmed mean).
tests/reliability/test_poisoning.py asserts on the same simulation.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fleet import Fleet  # noqa: E402
from fedmark.contract import encode_update, unflatten  # noqa: E402

NO_DEFENCE: dict[str, Any] = {"clip": None, "robust": None}
DEFENCE: dict[str, Any] = {"clip": {"norm": 0.5}, "robust": {"method": "trimmed_mean", "trim_fraction": 0.15}}


def simulate(base_url: str, admin: str, art: str, shards: Sequence[Sequence[dict[str, Any]]],
             test: Sequence[dict[str, Any]], config: dict[str, Any], attackers: set[int], rounds: int,
             boost: float, model: str = "p") -> list[float]:
    """Train ``rounds`` sync rounds with every device; returns the test AUC of each published version."""
    from edge_sdk.trainer import Trainer
    from edge_sdk.update import build_update, compute_delta
    from fedmark.metrics import roc_auc

    f = Fleet(base_url, admin)
    f.publish_dir(art, model)
    n = len(shards)
    f.train(model, goal=n, min_clients=n, over_select=1.0, deadline_s=3600, **config)
    tr = Trainer(art, threads=1)
    schema, specs = tr.manifest.schema(), tr.manifest.params
    data = [schema.encode(list(s))[:2] for s in shards]
    x_test, y_test, _ = schema.encode(list(test))
    devs = f.devices(n, prefix=model)
    aucs = []
    for r in range(rounds):
        version = f.model(model)["current_version"]
        params = unflatten(np.frombuffer(f.params_bytes(model, version), "<f4"), specs)
        for i, d in enumerate(devs):
            task = f.ok(f.task(d.token, model))
            res = tr.train(params, data[i], epochs=1, seed=1000 * r + i)
            if i in attackers:
                body = encode_update(-boost * compute_delta(res.params, params, specs))
                weight = 10**6
            else:
                prep = build_update(res.params, params, specs, clip_norm=task["clip_norm"],
                                    num_examples=res.num_examples, rng=np.random.default_rng(i))
                body, weight = prep.body, prep.num_examples
            f.ok(f.upload(d.token, task, body, num_examples=weight), 202)
        m = f.wait_version(model, version + 1)
        new = unflatten(np.frombuffer(f.params_bytes(model, m["current_version"]), "<f4"), specs)
        scores = tr.predict(new, x_test)
        aucs.append(float(roc_auc(y_test, scores)) if np.all(np.isfinite(scores)) else float("nan"))
    return aucs


def run_all(tmp: Path, devices: int = 20, rounds: int = 6, boost: float = 20.0,
            art: Path | None = None) -> dict[str, list[float]]:
    """The four runs (clean / attacked x no defence / defence), each on a fresh server process."""
    from models import data
    from server.testing import running_server

    if art is None:
        from models.export import export

        art = tmp / "propensity"
        export("propensity", art, seed=0)
    train, test = data.stratified_split(data.load_bank(), seed=0)
    shards = data.partition_iid(train, devices, seed=0)
    bad = set(range(0, devices, 10))  # 10 % of the devices
    out = {}
    for name, cfg, attackers in (("clean, no defence", NO_DEFENCE, set()), ("attacked, no defence", NO_DEFENCE, bad),
                                 ("clean, defence", DEFENCE, set()), ("attacked, defence", DEFENCE, bad)):
        with running_server(tmp / name.replace(", ", "-").replace(" ", "_"), extra_env={
                "FEDMARK_RATE_LIMIT_PER_S": "10000", "FEDMARK_RATE_LIMIT_BURST": "10000"}) as srv:
            out[name] = simulate(srv.base_url, srv.admin_token, str(art), shards, test, cfg, attackers, rounds, boost)
    return out


def main() -> int:
    from bench import exit_on_sigterm
    from bench.stats import table

    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="fedmark-bench-poison-") as td:
        res = run_all(Path(td))
    print("\nPropensity test AUC after each round (20 devices, 2 attackers sending -20x their update, "
          f"defence = {DEFENCE})\n")
    print(table(["run", *[f"round {i + 1}" for i in range(len(next(iter(res.values()))))]],
                [[k, *[f"{a:.4f}" for a in v]] for k, v in res.items()]))
    gap = res["clean, defence"][-1] - res["attacked, defence"][-1]
    print(f"\nwith the defence the attack moves the final AUC by {gap:+.4f}; without it by "
          f"{res['clean, no defence'][-1] - res['attacked, no defence'][-1]:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
