"""Federated EASE through ``fedmark simulate``: the same published factors as a real server fed by real SDK devices.

A 300-customer subset of Online Retail with a 300-item catalogue, a cap of 20 items (so devices sample),
k = 2 (so the threshold and the PSD repair run) and rank 64 (so the truncated SVD runs).  The simulator
runs two rounds in its process pool; the same devices, round by round, then train with
``edge_sdk.Client`` against a server over loopback.  Every published version must match.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simulate.ease import consenting, customers, training_config
from simulate.engines import ProcessEngine
from simulate.federation import FederationSettings, load_config
from simulate.run import Options, prepare

ROOT = Path(__file__).resolve().parents[2]
CUSTOMERS, ITEMS, ROUNDS, DROPOUT = 300, 300, 2, 0.1


@pytest.fixture(scope="module")
def ease_artifact(tmp_path_factory):
    from models.data import load_retail
    from models.ease import catalogue, export_ease

    d = load_retail()
    users, consent = customers(d, CUSTOMERS, 0), consenting(len(d.customers), 0.05, 0)
    out = tmp_path_factory.mktemp("sim-ease") / "ease"
    export_ease(out, items=catalogue([d.train[u] for u in users if consent[u]], d.items, ITEMS), cap=20, lam=50.0,
                k_min=2, rank=64, model="recommender")
    return str(out)


@pytest.mark.timeout(240)
def test_simulate_publishes_what_a_real_server_publishes(ease_artifact, tmp_path):
    from bench.fleet import Fleet
    from examples.demo.fleet import AppKeys, SimDevice, published_params, run_sync_round
    from examples.demo.recommender import PARTNER, _records
    from server.testing import running_server
    from simulate.ease import run_gram

    opts = Options(artifact=ease_artifact, customers=CUSTOMERS, no_consent=0.05, rounds=ROUNDS, dropout=DROPOUT)
    prep = prepare(opts)
    work, manifest = prep.workload, prep.trainer.manifest
    doc = training_config(work.space, len(work.devices), ROUNDS, DROPOUT)
    per_round: list[list[np.ndarray]] = []
    engine = ProcessEngine(prep.artifact, work.data, workers=2)
    try:
        fed = run_gram(engine, manifest, load_config(doc), FederationSettings(ROUNDS, DROPOUT, seed=0, eval_every=1),
                       len(work.devices), evaluate=lambda p: per_round.append(p) or {})
    finally:
        engine.close()
    assert [len(r) for r in fed.contributors] == [doc["goal"]] * ROUNDS  # each round filled its goal
    assert len({d for r in fed.contributors for d in r}) == fed.updates  # a device counts once
    per_round = per_round[1:]  # drop the round-0 point (the artifact's zeros)

    retail = work.retail
    with running_server(tmp_path / "srv") as srv:
        admin = Fleet(srv.base_url, srv.admin_token)
        admin.publish_dir(ease_artifact, manifest.model)
        keys = AppKeys(admin)
        upload = 0
        for r, chosen in enumerate(fed.contributors):
            admin.train(manifest.model, **dict(doc, goal=len(chosen), min_clients=len(chosen)))
            users = [work.devices[d] for d in chosen]
            devices = [SimDevice(f"cust-{retail.customers[u]}", "eu", PARTNER,
                                 _records(retail, u, manifest.purpose, True), tmp_path / "dev" / str(u)) for u in users]
            out = run_sync_round(admin, manifest.model, devices, keys, np.random.default_rng(r), goal=len(chosen))
            assert out.state == "closed" and out.accepted == len(chosen) and out.version == r + 2
            upload += out.upload_bytes
            served = published_params(admin, manifest.model, out.version, manifest)
            for mine, theirs in zip(per_round[r], served):
                np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)
    assert upload == fed.upload_bytes  # the same sparse bodies
    sim_report, server_report = work.report(fed.params), work.report(served)
    assert sim_report == server_report and 0.1 < sim_report["hr@10"] < 0.6
    assert sim_report["users"] == len(work.held) and sim_report["hr@10_ci"][0] < sim_report["hr@10"]
    # the same model from the contributors' pooled histories is the same weights (k-threshold, repair, rank)
    _, b = work.centralized([work.devices[d] for r in fed.contributors for d in r])
    np.testing.assert_allclose(served[0].astype(np.float64) @ served[1], b, atol=1e-5)


@pytest.mark.timeout(240)
def test_cli_runs_ease_and_writes_the_documented_json(ease_artifact, tmp_path, capsys):
    from fedmark_cli import main

    out = tmp_path / "res" / "ease.json"
    p = subprocess.run([sys.executable, "-m", "fedmark_cli", "simulate", "--artifact", ease_artifact,
                        "--customers", str(CUSTOMERS), "--no-consent", "0.05", "--rounds", str(ROUNDS),
                        "--dropout", str(DROPOUT), "--eval-every", "1", "--workers", "2", "--no-progress",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=200)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["family"] == "ease" and doc["metric"] == "hr@10"
    assert set(doc["runs"]) == {"federated", "centralized"} and set(doc["baseline"]) == {"popularity"}
    fed, central = doc["runs"]["federated"], doc["runs"]["centralized"]
    assert fed["users"] == central["users"] == doc["baseline"]["popularity"]["users"] == doc["setup"]["held_out_users"]
    assert fed["hr@10_ci"][0] <= fed["hr@10"] <= fed["hr@10_ci"][1]
    assert central["max_abs_weight_difference"] < 1e-5 and abs(central["hr@10"] - fed["hr@10"]) < 1e-12
    assert fed["updates"] == sum(r["contributors"] for r in doc["rounds"]) == fed["participating"] > 0
    assert fed["upload_bytes"] > 0 and fed["seconds"] > 0 and doc["seconds"] >= fed["seconds"]
    assert [c["round"] for c in doc["curve"]] == list(range(ROUNDS + 1))
    assert doc["setup"]["model"] == {"items": ITEMS, "cap": 20, "lambda": 50.0, "k_min": 2, "rank": 64}
    assert doc["config"]["clip"]["adaptive"] is False and doc["epsilon"] is None
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "hr@10: federated" in p.stdout

    code = main(["simulate", "--artifact", ease_artifact, "--partition-by", "Country",
                 "--out", str(tmp_path / "r.json"), "--no-progress"])
    assert code == 2 and "the EASE device is one customer" in capsys.readouterr().err
