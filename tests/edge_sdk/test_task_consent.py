"""Consent follows the task: records train only if their consent covers the task's consent_purposes.

docs/GOVERNANCE.md promises that the policy's ``consent_purposes`` decide which
records may train; the manifest's ``purpose`` is only the fallback for a task
that names no purpose (and for scoring outside a task).  Here the two differ
on purpose, and the set of records that trains must follow the task.
"""
from __future__ import annotations

import pytest
import requests

from edge_sdk import Client, ConsentError, DeviceConditions, RetryPolicy, Task
from edge_sdk.data import prepare_tabular
from fedmark.contract import Manifest

OK = DeviceConditions(charging=True, unmetered=True, idle=True, battery=0.9)
TASK = {"task_id": "t_1", "round_id": "r_1", "model": "m", "version": 1, "upload_url": "/v1/rounds/r_1/updates",
        "clip_norm": 1.0}


def _groups(rows: list[dict], manifest_purpose: str) -> list[dict]:
    """0-39: the manifest's purpose only; 40-69: the task's purposes; 70-89: only one of the task's purposes."""
    consent = [manifest_purpose] * 40 + ["retention, Analytics"] * 30 + ["retention"] * 20
    return [{**r, "consent": c} for r, c in zip(rows, consent)]


def test_the_task_decides_which_records_are_consented(artifacts, bank_rows):
    manifest = Manifest.loads(open(f"{artifacts.propensity}/manifest.json").read())
    rows = _groups(bank_rows[:90], manifest.purpose)
    task = Task.from_json({**TASK, "purpose": "retention", "consent_purposes": ["retention", "analytics"]})
    assert task.consent_purposes == ("retention", "analytics") and manifest.purpose not in task.consent_purposes
    _, _, kept, report = prepare_tabular(rows, manifest, with_label=True,
                                         purposes=task.required_purposes(manifest.purpose))
    assert kept == list(range(40, 70)) and report.excluded_no_consent == 60
    # Without a task the manifest's purpose decides (scoring, local evaluation) ...
    _, _, kept, _ = prepare_tabular(rows, manifest, with_label=True)
    assert kept == list(range(40))
    # ... and so does a task that names no purpose at all.
    bare = Task.from_json(TASK)
    assert bare.required_purposes(manifest.purpose) == (manifest.purpose,)


def test_training_follows_the_policys_consent_purposes_not_the_manifest_purpose(fedmark_server, admin, artifacts,
                                                                                bank_rows, tmp_path):
    base, token = fedmark_server
    admin.publish("p-consent", artifacts.propensity)
    r = requests.put(f"{base}/v1/models/p-consent/policy", headers={"Authorization": f"Bearer {token}"}, timeout=30,
                     json={"purpose": "retention", "consent_purposes": ["retention", "analytics"]})
    assert r.status_code < 300, r.text
    admin.training("p-consent", goal=5)
    key = admin.app_key()
    device = lambda name: Client(base, app_key=key, device_id=name, region="eu", storage_dir=tmp_path / name,
                                 retry=RetryPolicy(max_retries=2, base_backoff=0.01))
    manifest = Manifest.loads(open(f"{artifacts.propensity}/manifest.json").read())
    assert manifest.purpose != "retention"
    rows = _groups(bank_rows[:90], manifest.purpose)

    c = device("consent-a")
    task = c.get_task("p-consent")
    assert task.required_purposes(manifest.purpose) == ("retention", "analytics")
    rep = c.train("p-consent", rows, conditions=OK, seed=0)
    assert rep.status == "accepted"
    assert rep.num_examples == 30 and rep.data.used == 30 and rep.data.excluded_no_consent == 60

    # Records consented only for the manifest's purpose never train on this model's tasks.
    with pytest.raises(ConsentError, match="purposes 'retention', 'analytics'"):
        device("consent-b").train("p-consent", rows[:40], conditions=OK, seed=0)
