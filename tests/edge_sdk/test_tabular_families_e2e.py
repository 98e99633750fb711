"""New families end to end: `fedmark export tabular` -> the real server -> Python SDK devices -> next version.

A regression (customer value) and a multiclass (next offer) model, exported by
the CLI from the Online Retail customer tables, are published to a real
server; three devices holding different countries' customers train one round
each through ``Client.train``; the round closes into version 2, which a device
syncs and evaluates on its own holdout (MAE/RMSE, top-k accuracy).
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_sdk import Client, ConfigurationError, DeviceConditions, RetryPolicy
from fedmark.contract import load_artifact_manifest

OK = DeviceConditions(charging=True, unmetered=True, idle=True, battery=0.9)
PURPOSE = "customer_insights"


@pytest.fixture(scope="module")
def tables_rows():
    from models import tables

    return tables.build_customer_tables()


def export_cli(tmp_path, rows, args):
    from fedmark_cli import main
    from models import tables

    data = tables.write_table(rows, tmp_path / "table.tsv.gz", sep="\t")
    out = tmp_path / "artifact"
    assert main(["export", "tabular", "--data", str(data), "--drop", "customer_id", "--hidden", "8",
                 "--purpose", PURPOSE, "--out", str(out), *args]) == 0
    return out


def devices_by_country(rows):
    """Three non-IID devices: UK customers split in two, and everyone else."""
    uk = [r for r in rows if r["country"] == "United Kingdom"]
    rest = [r for r in rows if r["country"] != "United Kingdom"]
    return [uk[: len(uk) // 2], uk[len(uk) // 2:], rest]


def consented(rows):
    return [{**r, "consent": PURPOSE} for r in rows]


@pytest.mark.parametrize("task,label,model,extra", [("regression", "next_3m_spend", "cv-e2e", []),
                                                    ("multiclass", "next_offer", "nbo-e2e", []),
                                                    ("regression", "next_3m_spend", "cv-embed-e2e",
                                                     ["--embed", "country:4"])])
def test_round_through_server_and_sdk(task, label, model, extra, tmp_path, admin, fedmark_server, tables_rows):
    rows = tables_rows["customer_value" if task == "regression" else "next_offer"]
    artifact = export_cli(tmp_path, rows, ["--label", label, "--task", task, "--name", model, *extra])
    manifest = load_artifact_manifest(artifact)
    assert manifest.protocol == "supervised-tabular/1" and manifest.schema().task == task
    if extra:  # the country reaches the model as an index into a 4-wide Embedding table
        assert [c.kind for c in manifest.schema().columns if c.name == "country"] == ["index"]
        assert manifest.params[0].name == "country_embed_embeddings" and manifest.params[0].shape[1] == 4
    admin.publish(model, str(artifact))
    admin.training(model, goal=3, min_clients=3, hyperparams={"epochs": 2, "learning_rate": 0.1})
    key = admin.app_key()
    parts = devices_by_country(rows)
    reports = []
    for i, part in enumerate(parts):
        holdout = len(part) // 5
        dev = Client(fedmark_server[0], app_key=key, device_id=f"{model}-{i}", region="eu",
                     storage_dir=tmp_path / f"dev{i}", retry=RetryPolicy(max_retries=2, base_backoff=0.01))
        reports.append((dev, part[:holdout], dev.train(model, consented(part[holdout:]), conditions=OK, seed=i)))
    assert [r.status for _, _, r in reports] == ["accepted"] * 3
    assert sum(r.num_examples for _, _, r in reports) == sum(len(p) - len(p) // 5 for p in parts)
    rnd = admin.round(reports[-1][2].round_id)
    assert rnd["state"] == "closed" and rnd["result_version"] == 2

    dev, holdout, _ = reports[0]
    assert dev.sync(model).manifest.version == 2
    after = dev.evaluate(model, consented(holdout), k=2).metrics
    before = dev.evaluate(model, consented(holdout), k=2, version=1).metrics
    if task == "regression":
        assert set(after) == {"mae", "rmse", "n"} and after["n"] == len(holdout)
        assert after["mae"] < before["mae"]
        preds = dev.score(model, consented(holdout[:5]))
        assert preds.shape == (5,) and np.all(np.isfinite(preds))
        with pytest.raises(ConfigurationError, match=r"validate\(\) needs a binary model"):
            dev.validate(model, consented(holdout))
    else:
        assert after["n"] == len(holdout) and 0.0 <= after["top2_accuracy"] <= 1.0
        assert after["loss"] < before["loss"]
        with pytest.raises(ConfigurationError, match="needs a model that scores each record"):
            dev.score(model, consented(holdout[:5]))
