"""The edge SDK against the real fedmark server over loopback HTTP, with real exported ONNX artifacts.

One server process per module (SQLite, free port, ended by pid); each test
publishes its own model name so tests do not share rounds.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edge_sdk import (ArtifactIntegrityError, Client, DeviceConditions, NoTaskError, NotEligibleError, RetryPolicy,
                      SchemaError)
from fedmark.contract import Manifest, decode_update, encoded_size, load_artifact_manifest

PURPOSE = "propensity_scoring"
OK = DeviceConditions(charging=True, unmetered=True, idle=True, battery=0.9)


def with_consent(rows: list[dict], purpose: str = PURPOSE, every: int = 0) -> list[dict]:
    """Copies of rows consenting to ``purpose``; with ``every`` = k, rows 0, k, 2k … consent to analytics only."""
    return [{**r, "consent": "analytics" if every and i % every == 0 else f"{purpose},analytics"}
            for i, r in enumerate(rows)]


@pytest.fixture
def device(fedmark_server, admin, tmp_path):
    app_key = admin.app_key()

    def make(name: str, url: str | None = None, **kw) -> Client:
        kw.setdefault("retry", RetryPolicy(max_retries=2, base_backoff=0.01))
        return Client(url or fedmark_server[0], app_key=app_key, device_id=name, region="eu",
                      storage_dir=tmp_path / name, **kw)

    make.app_key = app_key  # type: ignore[attr-defined]
    return make


def test_train_upload_and_sync_the_next_version(admin, artifacts, device, bank_rows):
    admin.publish("p-flow", artifacts.propensity)
    admin.training("p-flow", goal=2, min_clients=2)
    a, b = device("flow-a"), device("flow-b")
    ra = a.train("p-flow", with_consent(bank_rows[:300]), conditions=OK, seed=1)
    assert ra.status == "accepted" and ra.version == 1 and ra.num_examples == 300
    assert admin.round(ra.round_id)["accepted"] == 1
    assert ra.upload_bytes == encoded_size(load_artifact_manifest(artifacts.propensity).num_params, "f32")
    rb = b.train("p-flow", with_consent(bank_rows[300:600]), conditions=OK, seed=2)
    rnd = admin.round(rb.round_id)
    assert rb.round_id == ra.round_id and rnd["accepted"] == 2 and rnd["state"] == "closed"
    assert rnd["result_version"] == 2

    old = a.score("p-flow", with_consent(bank_rows[:20]), refresh=False)  # told not to refresh: the cached v1
    assert a.last_version["p-flow"] == 1
    synced = a.sync("p-flow")
    assert synced.manifest.version == 2 and synced.downloaded == 1 and synced.reused == 3
    assert a.models.state("p-flow") == {"current": 2, "previous": 1}
    again = a.sync("p-flow")
    assert again.manifest_not_modified and again.downloaded == 0
    new = a.score("p-flow", with_consent(bank_rows[:20]))
    assert np.all((new > 0) & (new < 1)) and not np.allclose(old, new)
    assert b.models.state("p-flow")["current"] == 1  # b trained on v1 and has not synced since
    assert np.allclose(b.score("p-flow", with_consent(bank_rows[:20])), new) and b.last_version["p-flow"] == 2


def test_a_record_without_consent_never_reaches_training(admin, artifacts, device, bank_rows):
    admin.publish("p-consent", artifacts.propensity)
    admin.training("p-consent", goal=3, min_clients=3)
    mixed = with_consent(bank_rows[:400], every=4)
    for r in mixed[::4]:  # the non-consenting customers would pull the model hard if they were used
        r.update(balance="900000", age="95", campaign="60", y="yes" if r["y"] == "no" else "no")
    consented = [r for r in mixed if PURPOSE in r["consent"]]
    r_mixed = device("consent-a").train("p-consent", mixed, conditions=OK, seed=7)
    r_sub = device("consent-b").train("p-consent", consented, conditions=OK, seed=7)
    assert r_mixed.data.excluded_no_consent == 100 and r_mixed.data.used == r_sub.data.used == 300
    assert r_sub.data.excluded_no_consent == 0
    np.testing.assert_array_equal(r_mixed.update.vector, r_sub.update.vector)
    assert r_mixed.update.body == r_sub.update.body
    # control: the same rows with everyone consenting give a different update, so equality above is meaningful
    r_all = device("consent-c").train("p-consent", with_consent(mixed), conditions=OK, seed=7)
    assert r_all.num_examples == 400 and not np.array_equal(r_all.update.vector, r_mixed.update.vector)
    assert admin.round(r_mixed.round_id)["accepted"] == 3


def test_a_tampered_artifact_is_refused_and_nothing_is_uploaded(admin, artifacts, device, proxy, bank_rows):
    admin.publish("p-tamper", artifacts.propensity)
    admin.training("p-tamper", goal=3)
    c = device("tamper-a", proxy.url)
    proxy.tamper_files = True
    with pytest.raises(ArtifactIntegrityError, match="tampered"):
        c.train("p-tamper", with_consent(bank_rows[:100]), conditions=OK, seed=1)
    assert not c.models.version_dir("p-tamper", 1).exists() and c.pending() == 0
    round_id = c.get_task("p-tamper").round_id  # the same pending task
    assert admin.round(round_id)["accepted"] == 0
    proxy.tamper_files = False
    rep = c.train("p-tamper", with_consent(bank_rows[:100]), conditions=OK, seed=1)
    assert rep.status == "accepted" and admin.round(round_id)["accepted"] == 1
    # bytes changed on the device's disk are caught before use, and a sync repairs them
    params = c.models.version_dir("p-tamper", 1) / "params.bin"
    raw = bytearray(params.read_bytes())
    raw[0] ^= 0x40
    params.write_bytes(bytes(raw))
    with pytest.raises(ArtifactIntegrityError, match="params.bin"):
        c.score("p-tamper", with_consent(bank_rows[:5]))
    healed = c.sync("p-tamper", 1)
    assert healed.downloaded >= 1
    assert np.isfinite(c.score("p-tamper", with_consent(bank_rows[:5]))).all()


def test_eligibility_policy_refuses_with_reasons(admin, artifacts, device, bank_rows):
    admin.publish("p-elig", artifacts.propensity)
    admin.training("p-elig", goal=3, eligibility={"require_charging": True, "require_unmetered": True,
                                                   "min_battery": 0.5})
    c = device("elig-a")
    with pytest.raises(NotEligibleError) as ei:
        c.train("p-elig", with_consent(bank_rows[:50]), conditions=DeviceConditions(unmetered=True, battery=0.3))
    assert len(ei.value.reasons) == 2
    assert "charging" in ei.value.reasons[0] and "30%" in ei.value.reasons[1]
    task = c.get_task("p-elig")
    assert task.eligibility["require_charging"] is True
    assert admin.round(task.round_id)["accepted"] == 0 and c.pending() == 0
    rep = c.train("p-elig", with_consent(bank_rows[:50]), conditions=DeviceConditions(charging=True, unmetered=True,
                                                                                         battery=0.5))
    assert rep.status == "accepted"
    with pytest.raises(NoTaskError) as nt:  # one contribution per device per synchronous round
        c.train("p-elig", with_consent(bank_rows[:50]), conditions=OK)
    assert nt.value.code == "no_task" and nt.value.retry_after and nt.value.retry_after > 0
    assert nt.value.reason == "already_contributed"


def test_bad_rows_are_reported_and_skipped(admin, artifacts, device, bank_rows):
    admin.publish("p-rows", artifacts.propensity)
    admin.training("p-rows", goal=3)
    rows = with_consent(bank_rows[:60])
    rows[5]["age"] = "forty"
    rows[9]["y"] = ""
    rows[12]["job"] = "astronaut"  # unknown category: the manifest's unknown slot, not an error
    rows[20]["balance"] = ""  # missing numeric: the manifest's fill value
    rep = device("rows-a").train("p-rows", rows, conditions=OK, seed=0)
    assert {(e.row, e.column) for e in rep.data.row_errors} == {(5, "age"), (9, "y")}
    assert rep.data.rejected == 2 and rep.num_examples == 58 and rep.status == "accepted"
    with pytest.raises(SchemaError, match="row 5, column 'age'"):
        device("rows-b").train("p-rows", rows, conditions=OK, strict=True)


def test_queued_update_is_dropped_when_its_round_expired(admin, artifacts, device, proxy, bank_rows):
    admin.publish("p-expire", artifacts.propensity)
    admin.training("p-expire", goal=3)
    c = device("expire-a", proxy.url, retry=RetryPolicy(max_retries=1, base_backoff=0.01))
    proxy.uploads = "refuse"
    rep = c.train("p-expire", with_consent(bank_rows[:80]), conditions=OK, seed=3)
    assert rep.status == "queued" and c.pending() == 1
    [queued] = c.outbox.entries()
    assert queued.key == rep.idempotency_key and queued.body == rep.update.body
    assert "Authorization" not in queued.headers
    # the round ends while the device is offline (an admin rollback abandons open rounds)
    import requests
    r = requests.post(f"{admin.url}/v1/models/p-expire/rollback", json={"version": 1}, headers=admin.h, timeout=30)
    assert r.status_code == 200, r.text
    proxy.uploads = "pass"
    flushed = c.flush()
    assert [(o.status, o.code) for o in flushed.outcomes] == [("expired", "round_closed")]
    assert c.pending() == 0 and admin.round(rep.round_id)["accepted"] == 0


def test_q8_encoding_with_local_noise_is_accepted(admin, artifacts, device, bank_rows):
    admin.publish("p-q8", artifacts.propensity)
    admin.training("p-q8", goal=3, encoding="q8", local_noise=0.05, clip={"norm": 0.2, "adaptive": False})
    rep = device("q8-a").train("p-q8", with_consent(bank_rows[:200]), conditions=OK, seed=0)
    n = load_artifact_manifest(artifacts.propensity).num_params
    assert rep.status == "accepted" and rep.encoding == "q8" and rep.upload_bytes == encoded_size(n, "q8")
    assert rep.clip_norm == 0.2 and rep.update_norm > 0.2 and not rep.within_clip
    decoded, enc = decode_update(rep.update.body, n)
    assert enc == "q8"
    # clipped to 0.2, then noise of std 0.05·0.2 per coordinate: the norm shows both
    expected = np.sqrt(0.2 ** 2 + n * (0.05 * 0.2) ** 2)
    assert float(np.linalg.norm(decoded)) == pytest.approx(expected, rel=0.1)


def test_a_refused_token_is_replaced_by_enrolling_again(admin, artifacts, fedmark_server, tmp_path, device,
                                                        bank_rows):
    admin.publish("p-auth", artifacts.propensity)
    admin.training("p-auth", goal=3)
    c = Client(fedmark_server[0], app_key=device.app_key, device_token="dt_not-a-real-token", device_id="auth-a",
               region="eu", storage_dir=tmp_path / "auth")
    assert c.train("p-auth", with_consent(bank_rows[:40]), conditions=OK).status == "accepted"
    stored = json.loads((tmp_path / "auth" / "device.json").read_text())
    assert stored["device_id"] == "auth-a" and stored["device_token"] != "dt_not-a-real-token"
    assert oct((tmp_path / "auth" / "device.json").stat().st_mode & 0o777) == "0o600"


def test_recommender_personalisation_stays_on_the_device(admin, artifacts, device):
    admin.publish("rec", artifacts.recommender)
    admin.training("rec", goal=2, min_clients=2, clip={"norm": 5.0, "adaptive": False})
    retail = artifacts.retail
    m: Manifest = load_artifact_manifest(artifacts.recommender)
    eligible = [c for c in range(len(retail.customers)) if len(retail.train[c]) >= 8 and len(retail.test[c]) >= 3]
    cust_a, cust_b = eligible[0], eligible[1]

    def records(c: int, idx) -> list[dict]:
        return [{"CustomerID": retail.customers[c], "StockCode": retail.items[i], "consent": "recommendations"}
                for i in idx]

    a = device("rec-a")
    hidden = [{"CustomerID": retail.customers[cust_a], "StockCode": retail.items[i], "consent": "analytics"}
              for i in retail.test[cust_a][:2]]
    rep = a.train("rec", records(cust_a, retail.train[cust_a]) + hidden, conditions=OK, seed=0)
    assert rep.status == "accepted" and rep.num_examples == len(set(retail.train[cust_a].tolist()))
    assert rep.data.excluded_no_consent == 2
    assert rep.update.vector.size == m.num_params  # item table + biases only: the user vector is not uploaded
    local, history = a.personal.load("rec", m.local_params)
    assert set(local) == {"user_emb"} and local["user_emb"].shape == m.local_params[0].shape
    bought = {retail.items[i] for i in retail.train[cust_a]}
    assert set(history) == bought
    top = a.recommend("rec", 10)
    assert len(top) == 10 and not set(top) & bought
    ev = a.evaluate("rec", records(cust_a, retail.test[cust_a]), k=10)
    assert set(ev.metrics) == {"hr@10", "ndcg@10", "recall@10", "n"} and ev.metrics["hr@10"] in (0.0, 1.0)
    assert ev.metrics["n"] == len(retail.test[cust_a]) and ev.data.used == len(retail.test[cust_a])
    assert ev.histogram is None

    device("rec-b").train("rec", records(cust_b, retail.train[cust_b]), conditions=OK, seed=1)
    assert admin.round(rep.round_id)["result_version"] == 2
    assert a.sync("rec").manifest.version == 2
    local2, _ = a.personal.load("rec", m.local_params)
    np.testing.assert_array_equal(local["user_emb"], local2["user_emb"])  # survives the model update
    top2 = a.recommend("rec", 10)
    assert len(top2) == 10 and not set(top2) & bought
    assert a.forget("rec") and a.personal.load("rec")[0] == {}


def test_cli_train_from_a_csv(admin, artifacts, fedmark_server, device, tmp_path, bank_rows):
    admin.publish("p-cli", artifacts.propensity)
    admin.training("p-cli", goal=3)
    csv_path = tmp_path / "records.csv"
    rows = with_consent(bank_rows[:120], every=3)
    cols = list(rows[0])
    with open(csv_path, "w") as f:
        import csv
        w = csv.DictWriter(f, cols, delimiter=";")
        w.writeheader()
        w.writerows(rows)
    out = subprocess.run([sys.executable, "-m", "fedmark_cli", "device", "train", "--server", fedmark_server[0],
                          "--app-key", device.app_key, "--device-id", "cli-a", "--region", "eu", "--data",
                          str(csv_path), "--model", "p-cli", "--storage", str(tmp_path / "cli"), "--seed", "3"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["status"] == "accepted" and res["data"]["excluded_no_consent"] == 40 and res["num_examples"] == 80
    assert admin.round(res["round_id"])["accepted"] == 1


def test_local_evaluation_and_scoring_report_aggregates_only(admin, artifacts, device, bank_rows):
    from sklearn.metrics import log_loss as sk_log_loss
    from sklearn.metrics import roc_auc_score

    admin.publish("p-eval", artifacts.propensity)
    c = device("eval-a")
    holdout = with_consent(bank_rows[1000:1600], every=5)
    ev = c.evaluate("p-eval", holdout)
    assert set(ev.metrics) == {"loss", "auc", "lift_top_decile", "ece", "brier", "n", "positive_rate"}
    assert ev.metrics["n"] == 480 and ev.data.excluded_no_consent == 120
    assert ev.histogram is not None and ev.histogram.count == 480
    scores = c.score("p-eval", holdout)
    assert np.isnan(scores[::5]).all() and np.isfinite(np.delete(scores, np.s_[::5])).all()
    used = [i for i in range(600) if i % 5]
    y = np.array([holdout[i]["y"] == "yes" for i in used], dtype=float)
    assert ev.metrics["auc"] == pytest.approx(roc_auc_score(y, scores[used]), abs=1e-9)
    assert ev.metrics["loss"] == pytest.approx(sk_log_loss(y, scores[used]), rel=1e-5)
    assert ev.histogram.auc() == pytest.approx(ev.metrics["auc"], abs=0.01)  # the additive form agrees


def test_personalize_without_a_training_task(admin, artifacts, device):
    admin.publish("rec-p", artifacts.recommender)
    retail = artifacts.retail
    cust = next(c for c in range(len(retail.customers)) if len(retail.train[c]) >= 10)
    recs = [{"CustomerID": retail.customers[cust], "StockCode": retail.items[i], "consent": ["recommendations"]}
            for i in retail.train[cust]]
    c = device("perso-a")
    report = c.personalize("rec-p", recs, seed=0)
    assert report.used == len(recs)
    top = c.recommend("rec-p", 5, exclude=[retail.items[0]])
    bought = {retail.items[i] for i in retail.train[cust]}
    assert len(top) == 5 and not set(top) & (bought | {retail.items[0]})
    assert c.pending() == 0  # nothing was uploaded or queued


def test_cli_score_and_errors(admin, artifacts, fedmark_server, device, tmp_path, bank_rows):
    import csv

    admin.publish("p-cli2", artifacts.propensity)
    csv_path = tmp_path / "records.csv"
    rows = with_consent(bank_rows[:10], every=2)
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    base = [sys.executable, "-m", "fedmark_cli", "device", "score", "--server", fedmark_server[0], "--app-key",
            device.app_key, "--device-id", "cli-b", "--region", "eu", "--storage", str(tmp_path / "cli")]
    out = subprocess.run(base + ["--data", str(csv_path), "--model", "p-cli2"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    scores = json.loads(out.stdout)["scores"]
    assert len(scores) == 10 and scores[0::2] == [None] * 5 and all(0 < s < 1 for s in scores[1::2])
    bad = subprocess.run(base + ["--data", str(tmp_path / "missing.csv"), "--model", "p-cli2"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr


def test_a_configuration_without_clipping_sends_the_raw_update(admin, artifacts, device, bank_rows):
    admin.publish("p-noclip", artifacts.propensity)
    admin.training("p-noclip", goal=3, clip=None)
    c = device("noclip-a")
    assert c.get_task("p-noclip").clip_norm is None
    rep = c.train("p-noclip", with_consent(bank_rows[:100]), conditions=OK, seed=0)
    assert rep.status == "accepted" and rep.clip_norm is None
    assert float(np.linalg.norm(rep.update.vector)) == pytest.approx(rep.update_norm, rel=1e-6)
