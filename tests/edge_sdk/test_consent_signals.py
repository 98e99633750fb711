"""Standard consent signals decide which records train (Python SDK, real server), and withdrawal drops queued work.

A model's policy says what its purpose needs (docs/CONSENT.md): here a personalised-ads propensity model needs
TCF purposes 1, 3 and 4 with vendor consent, Consent Mode ``ad_user_data`` and ``ad_personalization`` granted,
and no GPC opt-out.  A cross-silo table carries each customer's TC string (made by the IAB's own encoder,
tests/contract/tcf_vectors.json); the device decides per record, trains on exactly the allowed ones and
reports only counts per reason, which the audit trail and the Governed Training Coverage KPI show.

Withdrawal: a customer withdraws while two updates wait in the outbox (the network is down), one computed with
their records and one without; the device process is SIGKILLed right after the withdrawal, a fresh process
flushes, and only the update without them reaches the server.
"""
from __future__ import annotations

import json
import signal
import subprocess
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests

from edge_sdk import Client, ConsentError, DeviceConditions, RetryPolicy
from edge_sdk.outbox import Outbox
from fedmark.contract import ERR_BAD_CONSENT_SIGNAL, ProtocolError
from fedmark.contract import consent as c

from tests.edge_sdk.conftest import lean_env

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "contract" / "tcf_vectors.json").read_text())
ADS = VECTORS["requirements"]["personalised_ads"]
OK = DeviceConditions(charging=True, unmetered=True, idle=True, battery=0.9)
GRANTED = {"ad_user_data": "granted", "ad_personalization": "granted"}
TC = {k: v["tc_string"] for k, v in VECTORS["strings"].items()}


def _policy(base: str, token: str, model: str) -> None:
    r = requests.put(f"{base}/v1/models/{model}/policy", headers={"Authorization": f"Bearer {token}"}, timeout=30,
                     json={"purpose": ADS["purposes"][0], "consent_signals": ADS["consent_signals"]})
    assert r.status_code < 300, r.text


def _table(rows: list[dict]) -> tuple[list[dict], Counter]:
    """Customers with their own CMP answers; returns the records and the reasons the documented rule gives."""
    kinds = ([("accept_all", GRANTED, None)] * 50 + [("reject_all", GRANTED, None)] * 10
             + [("purposes_without_our_vendor", GRANTED, None)] * 8 + [("accept_all", GRANTED, True)] * 7
             + [("accept_all", {**GRANTED, "ad_personalization": "denied"}, None)] * 6
             + [("restricted_purpose3_not_allowed", GRANTED, None)] * 5 + [(None, GRANTED, None)] * 4)
    out = []
    for i, (r, (tc, cm, gpc) ) in enumerate(zip(rows, kinds)):
        rec = {**r, "customer": f"c{i}", "consent_mode": json.dumps(cm)}
        rec["tc_string"] = TC[tc] if tc else (VECTORS["malformed"]["truncated"] if i % 2 else "")
        if gpc is not None:
            rec["gpc"] = gpc
        out.append(rec)
    req = c.parse_requirement(ADS["consent_signals"], ADS["purposes"])
    return out, Counter(c.decide(rec, req).reason for rec in out)


def test_records_train_by_their_standard_signals_and_only_counts_are_reported(fedmark_server, admin, artifacts,
                                                                             bank_rows, tmp_path):
    base, token = fedmark_server
    model = "p-ads-signals"
    admin.publish(model, artifacts.propensity)
    _policy(base, token, model)
    admin.training(model, goal=5)
    rows, expected = _table(bank_rows[:90])
    assert expected == {"allowed": 50, "tcf_purpose_denied": 10, "tcf_vendor_denied": 8, "gpc_opt_out": 7,
                        "consent_mode_denied": 6, "tcf_restricted": 5, "tcf_missing": 2, "tcf_unreadable": 2}
    dev = Client(base, app_key=admin.app_key(), device_id="ads-1", region="eu", storage_dir=tmp_path / "d",
                 subject_field="customer", retry=RetryPolicy(max_retries=1, base_backoff=0.01))
    task = dev.get_task(model)
    assert task.consent_requirement("any") == c.parse_requirement(ADS["consent_signals"], ADS["purposes"])
    rep = dev.train(model, rows, conditions=OK, seed=0)
    assert rep.status == "accepted" and rep.consent_reported
    assert rep.num_examples == 50 and rep.data.excluded_no_consent == 40
    assert rep.consent == dict(expected)

    # Activation on the device applies the same mapping: only the allowed customers are scored into segments.
    scores = dev.score(model, rows)
    assert [bool(np.isfinite(sc)) for sc in scores] == [r == "allowed" for r in
                                                       (c.decide(rec, c.parse_requirement(ADS["consent_signals"],
                                                                                          ADS["purposes"])).reason
                                                        for rec in rows)]
    assert sum(dev.report_segments(model, rows).values()) == 50

    h = {"Authorization": f"Bearer {token}"}
    trail = requests.get(f"{base}/v1/audit", params={"kind": "consent.report", "model": model}, headers=h,
                         timeout=30).json()
    [entry] = trail["entries"]
    assert entry["actor"] == "device" and entry["detail"]["counts"] == dict(expected)
    assert set(entry["detail"]) == {"region", "partner", "counts", "withdrawn"} and "ads-1" not in json.dumps(entry)
    kpi = requests.get(f"{base}/v1/kpis", params={"model": model}, headers=h, timeout=30).json()["governed_training_coverage"]
    assert kpi["consent"]["records_by_reason"] == dict(sorted(expected.items()))
    assert kpi["consent"]["records_allowed"] == 50 and kpi["consent"]["records_excluded"] == 40

    # The same records with a device-level GPC opt-out (the Sec-GPC header of the app's web view): nothing trains.
    other = Client(base, app_key=admin.app_key(), device_id="ads-2", region="eu", storage_dir=tmp_path / "d2",
                   subject_field="customer", retry=RetryPolicy(max_retries=1, base_backoff=0.01))
    with pytest.raises(ConsentError, match="gpc_opt_out 90"):
        other.train(model, [{k: v for k, v in r.items() if k != "gpc"} for r in rows], conditions=OK, seed=0,
                  signals=c.gpc_from_headers({"Sec-GPC": "1"}))


def test_a_policy_with_a_bad_signal_requirement_is_refused(fedmark_server, admin, artifacts):
    base, token = fedmark_server
    admin.publish("p-bad-signals", artifacts.propensity)
    r = requests.put(f"{base}/v1/models/p-bad-signals/policy", headers={"Authorization": f"Bearer {token}"},
                     timeout=30, json={"purpose": "ads", "consent_signals": {"tcf": {"vendor_id": 1234,
                                                                                     "legitimate_interest": [4]}}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_policy"
    assert "legitimate_interest" in r.json()["error"]["message"]


WITHDRAW = textwrap.dedent("""
    import os, signal, sys
    from edge_sdk import Client
    url, key, storage, subject, how, device = sys.argv[1:7]
    c = Client(url, app_key=key, device_id=device, region="eu", storage_dir=storage, subject_field="customer")
    if how == "recorded-only":  # killed after the withdrawal is durable, before the queue was touched
        c.withdrawals.add(subject)
    else:
        report = c.withdraw(subject)
        print(report.dropped_updates, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("how", ["after-withdraw", "recorded-only"])
def test_withdrawal_drops_queued_updates_across_a_kill_and_restart(how, fedmark_server, admin, artifacts, proxy,
                                                                   lean_python, bank_rows, tmp_path):
    base, token = fedmark_server
    model = f"p-withdraw-{how}"
    admin.publish(model, artifacts.propensity)
    requests.put(f"{base}/v1/models/{model}/policy", headers={"Authorization": f"Bearer {token}"}, timeout=30,
                 json={"purpose": "propensity_scoring"}).raise_for_status()
    admin.training(model, goal=5, mode="async")  # async: the device may contribute again after its update lands
    key, storage, device = admin.app_key(), tmp_path / "device", f"withdraw-{how}"
    records = [{**r, "consent": "propensity_scoring", "customer": f"c{i % 30}"} for i, r in enumerate(bank_rows[:120])]
    with_c7 = [r for r in records if r["customer"] in {f"c{i}" for i in range(0, 15)}]    # c0..c14
    without_c7 = [r for r in records if r["customer"] in {f"c{i}" for i in range(15, 30)}]  # c15..c29

    proxy.uploads = "refuse"  # the network drops every upload: both updates stay queued
    dev = Client(proxy.url, app_key=key, device_id=device, region="eu", storage_dir=storage,
                 subject_field="customer", retry=RetryPolicy(max_retries=0))
    first = dev.train(model, with_c7, conditions=OK, seed=1)
    second = dev.train(model, without_c7, conditions=OK, seed=2)
    assert first.status == second.status == "queued" and dev.pending() == 2

    proc = subprocess.run([str(lean_python), "-c", WITHDRAW, proxy.url, key, str(storage), "c7", how, device],
                          cwd=ROOT,
                          env=lean_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = {e.key for e in Outbox(storage / "outbox").entries()}
    assert left == ({first.idempotency_key, second.idempotency_key} if how == "recorded-only"
                    else {second.idempotency_key})

    proxy.uploads = "pass"
    restarted = Client(proxy.url, app_key=key, device_id=device, region="eu", storage_dir=storage,
                       subject_field="customer", retry=RetryPolicy(max_retries=1, base_backoff=0.01))
    flushed = restarted.flush()
    assert [o.key for o in flushed.outcomes] == [second.idempotency_key] and flushed.pending == 0
    assert admin.round(second.round_id)["accepted"] == 1, "only the update without the withdrawn customer arrives"

    # The device trains no more with the withdrawn customer's records, and reports the withdrawal as a count.
    again = restarted.train(model, with_c7, conditions=OK, seed=3)
    assert again.consent == {"allowed": len(with_c7) - 4, "withdrawn": 4} and again.num_examples == len(with_c7) - 4
    trail = requests.get(f"{base}/v1/audit", params={"kind": "consent.report", "model": model},
                         headers={"Authorization": f"Bearer {token}"}, timeout=30).json()["entries"]
    assert [e["detail"]["withdrawn"] for e in trail][-1] == 1
    assert all(set(e["detail"]) == {"region", "partner", "counts", "withdrawn"} and e["actor"] == "device"
               for e in trail)  # counts only: no device id, no customer


def test_consent_withdrawn_in_the_cmp_during_the_run_discards_the_update(fedmark_server, admin, artifacts, bank_rows,
                                                                        tmp_path):
    """The device's signals are read before training and again before the update is queued (an app passes a
    function that asks its CMP); a "reject" in between means the update is never queued or sent."""
    base, token = fedmark_server
    model = "p-ads-flip"
    admin.publish(model, artifacts.propensity)
    _policy(base, token, model)
    admin.training(model, goal=5)
    answers = iter([TC["accept_all"], TC["reject_all"]])
    asked = []

    def signals() -> dict:
        asked.append(1)
        return {"tc_string": next(answers), "consent_mode": GRANTED}

    dev = Client(base, app_key=admin.app_key(), device_id="ads-flip", region="eu", storage_dir=tmp_path / "d",
                 retry=RetryPolicy(max_retries=1, base_backoff=0.01))
    with pytest.raises(ConsentError, match="consent changed while training .*tcf_purpose_denied 60"):
        dev.train(model, bank_rows[:60], conditions=OK, seed=0, signals=signals)
    assert len(asked) == 2 and dev.pending() == 0
    rounds = requests.get(f"{base}/v1/models/{model}/rounds", headers={"Authorization": f"Bearer {token}"},
                          timeout=30).json()["rounds"]
    assert all(admin.round(r["round_id"])["accepted"] == 0 for r in rounds)


def test_in_app_iabtcf_keys_train_and_a_contradiction_trains_nothing(fedmark_server, admin, artifacts, bank_rows,
                                                                     tmp_path):
    """An app passes its IABTCF_* SharedPreferences through ``signals_from_iabtcf`` (read before training and again
    before queueing): keys that agree with the string train; a CMP that stored a renewed string beside the old
    pre-parsed keys mid-run is refused with a clear error naming the key, and nothing is queued or sent."""
    base, token = fedmark_server
    model = "p-ads-inapp"
    admin.publish(model, artifacts.propensity)
    _policy(base, token, model)
    admin.training(model, goal=5)
    stored = VECTORS["in_app"]["stored"]
    prefs = dict(stored["accept_all"])

    def signals() -> dict:
        return {**c.signals_from_iabtcf(prefs), "consent_mode": GRANTED}

    dev = Client(base, app_key=admin.app_key(), device_id="ads-inapp", region="eu", storage_dir=tmp_path / "d",
                 retry=RetryPolicy(max_retries=1, base_backoff=0.01))
    report = dev.train(model, bank_rows[:40], conditions=OK, seed=0, signals=signals)
    assert report.consent == {"allowed": 40} and report.status == "accepted" and dev.pending() == 0

    calls = []

    def renewed_string_old_keys() -> dict:
        calls.append(1)
        if len(calls) == 2:  # while the epochs ran, the CMP rewrote IABTCF_TCString but not the pre-parsed keys
            prefs["IABTCF_TCString"] = stored["reject_all"]["IABTCF_TCString"]
        return signals()

    other = Client(base, app_key=admin.app_key(), device_id="ads-inapp-2", region="eu", storage_dir=tmp_path / "d2",
                   retry=RetryPolicy(max_retries=1, base_backoff=0.01))
    with pytest.raises(ProtocolError, match="IABTCF_PurposeConsents") as err:
        other.train(model, bank_rows[40:80], conditions=OK, seed=1, signals=renewed_string_old_keys)
    assert err.value.code == ERR_BAD_CONSENT_SIGNAL and len(calls) == 2 and other.pending() == 0
    rounds = requests.get(f"{base}/v1/models/{model}/rounds", headers={"Authorization": f"Bearer {token}"},
                          timeout=30).json()["rounds"]
    assert sum(admin.round(r["round_id"])["accepted"] for r in rounds) == 1  # only the first run's update
