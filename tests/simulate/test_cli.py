"""``fedmark simulate`` end to end as a command: the results document, the plot, and clear errors."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulate.partition import PartitionError, dirichlet_labels, one_per_record, partition

ROOT = Path(__file__).resolve().parents[2]
DP_CONFIG = {"mode": "sync", "goal": 20, "min_clients": 10, "over_select": 1.3,
             "clip": {"norm": 0.5, "adaptive": True, "target_quantile": 0.8, "lr": 0.2, "count_stddev": 2.0},
             "noise_multiplier": 0.5, "sampling_rate": 0.2, "delta": 1e-5,
             "server_optimizer": {"name": "fedadam", "lr": 0.02}, "hyperparams": {"epochs": 1}}


@pytest.fixture(scope="module")
def bank_csv(bank, tmp_path_factory):
    path = tmp_path_factory.mktemp("sim-data") / "bank.csv"
    rows = bank.train[:3000] + bank.test[:1000]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=";")
        w.writeheader()
        w.writerows(rows)
    return path


def _simulate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedmark_cli", "simulate", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)


@pytest.mark.timeout(300)
def test_simulate_writes_results_and_plot(bank, bank_csv, tmp_path):
    cfg = tmp_path / "training.json"
    cfg.write_text(json.dumps(DP_CONFIG))
    out = tmp_path / "res" / "propensity.json"
    p = _simulate("--artifact", bank.artifact, "--data", str(bank_csv), "--partition-by", "job,month",
                  "--max-device-rows", "40", "--config", str(cfg), "--rounds", "6", "--dropout", "0.1",
                  "--eval-every", "3", "--central-epochs", "3", "--local-only-devices", "5",
                  "--local-only-epochs", "3", "--workers", "2", "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert set(doc["runs"]) == {"federated", "centralized", "local_only"}
    fed = doc["runs"]["federated"]
    assert 0.5 < fed["auc"] < 1 and fed["auc_ci"][0] < fed["auc"] < fed["auc_ci"][1]
    assert fed["updates"] == sum(r["contributors"] for r in doc["rounds"]) > 0
    assert fed["upload_bytes"] > 0 and fed["download_bytes"] > fed["upload_bytes"] * 0.5
    assert doc["epsilon"] is not None and 0 < doc["epsilon"] < 100 and fed["epsilon"] == doc["epsilon"]
    assert [c["round"] for c in doc["curve"]] == [0, 3, 6]
    assert doc["runs"]["centralized"]["at_equal_passes"]["epochs"] >= 1
    assert doc["setup"]["devices"] > 20
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "auc: federated" in p.stdout


@pytest.mark.parametrize("extra, message", [
    (["--partition-by", "shoe_size"], "--partition-by 'shoe_size': the data has no such column"),
    (["--partition-by", "job", "--rounds", "0"], "--rounds must be >= 1"),
    (["--partition-by", "job", "--dropout", "1.5"], "--dropout must be in [0, 1)"),
    ([], "choose exactly one partition"),
    (["--partition-by", "job", "--devices-per-round", "500"], "fewer than min_clients"),
])
def test_bad_flags_are_named(bank, bank_csv, tmp_path, extra, message):
    p = _simulate("--artifact", bank.artifact, "--data", str(bank_csv), "--out", str(tmp_path / "r.json"),
                  "--no-progress", *extra)
    assert p.returncode == 2, p.stdout + p.stderr
    assert message in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_config_is_refused_with_the_servers_message(bank, bank_csv, tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"goal": 10, "clip": {"norm": 1.0}, "noise_multiplier": 1.0, "typo_key": 1}))
    p = _simulate("--artifact", bank.artifact, "--data", str(bank_csv), "--partition-by", "job",
                  "--config", str(cfg), "--out", str(tmp_path / "r.json"), "--no-progress")
    assert p.returncode == 2
    assert "--config: training config: typo_key unknown key(s)" in p.stderr
    cfg.write_text("{not json")
    p = _simulate("--artifact", bank.artifact, "--data", str(bank_csv), "--partition-by", "job",
                  "--config", str(cfg), "--out", str(tmp_path / "r.json"), "--no-progress")
    assert p.returncode == 2 and "is not valid JSON" in p.stderr


def test_missing_artifact_and_data_are_named(tmp_path):
    p = _simulate("--artifact", str(tmp_path), "--data", "nope.csv", "--partition-by", "job",
                  "--out", str(tmp_path / "r.json"), "--no-progress")
    assert p.returncode == 2 and "no manifest.json there" in p.stderr


def test_partitions():
    rows = [{"id": i, "y": "yes" if i % 5 == 0 else "no", "g": "ab"[i % 2]} for i in range(200)]
    assert [len(p) for p in partition(rows, by="g")] == [100, 100]
    assert [len(p) for p in partition(rows, by="g", max_rows=30)] == [30, 30, 30, 10] * 2
    assert len(one_per_record(rows)) == 200
    import numpy as np
    skewed = dirichlet_labels(rows, "y", 10, 0.1, np.random.default_rng(0))
    iid = dirichlet_labels(rows, "y", 10, 1000.0, np.random.default_rng(0))
    assert sum(len(p) for p in skewed) == sum(len(p) for p in iid) == 200

    def spread(parts):  # mean |share of positives - 0.2| over devices
        return float(np.mean([abs(sum(r["y"] == "yes" for r in p) / len(p) - 0.2) for p in parts]))
    assert spread(skewed) > 0.1 > 0.03 > spread(iid)
    with pytest.raises(PartitionError, match="exactly one partition"):
        partition(rows, by="g", per_record=True)
    with pytest.raises(PartitionError, match="--dirichlet alpha must be a positive"):
        dirichlet_labels(rows, "y", 10, 0.0, np.random.default_rng(0))
