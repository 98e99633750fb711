"""Policies (versioned, validated, enforced at task time) and the hash-chained audit trail, incl. tampering."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from sqlalchemy import create_engine, text

from server.testing import REPO_ROOT

POLICY = {"purpose": "propensity_scoring", "allowed_regions": ["eu", "us"], "allowed_partners": ["acme"], "k_min": 2}


def test_policy_validation_names_the_bad_key(fleet, tmp_path):
    fleet.publish(tmp=tmp_path)
    bad = [({"allowed_regions": ["eu"]}, "purpose"), ({"purpose": "p", "regions": ["eu"]}, "regions"),
           ({"purpose": "p", "allowed_regions": ["eu"], "residency": {"cn": "none"}}, "residency"),
           ({"purpose": "p", "residency": {"cn": "sometimes"}}, "residency"),
           ({"purpose": "p", "gate": {"metric": "accuracy"}}, "gate.metric"),
           ({"purpose": "p", "k_min": 0}, "k_min"), ({"purpose": "p", "gate": {"min_evaluators": 1.5}}, "min_evaluators")]
    for body, word in bad:
        r = fleet.admin("PUT", "/v1/models/toy/policy", json=body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_policy", (body, r.text)
        assert word in r.json()["error"]["message"], (body, r.json())
    assert fleet.admin("PUT", "/v1/models/absent/policy", json=POLICY).status_code == 404
    assert fleet.admin("GET", "/v1/models/toy/policy").json()["error"]["code"] == "no_policy"


def test_policies_are_versioned_audited_and_enforced_on_tasks(fleet, tmp_path):
    fleet.publish(tmp=tmp_path)
    fleet.train(goal=3, min_clients=1)
    first = fleet.policy(**POLICY)
    assert first["version"] == 1 and first["policy"]["consent_purposes"] == ["propensity_scoring"]
    assert first["warnings"] and "marketing" in first["warnings"][0]  # the toy manifest's purpose differs
    eu = fleet.enroll("eu-1", "eu")
    r = eu.task()
    assert r.status_code == 200, r.text
    task = r.json()
    assert task["purpose"] == "propensity_scoring" and task["policy_version"] == 1 and task["region"] == "eu"
    # region and partner not allowed: 403 with the reason, and a task.denied audit entry
    r = fleet.enroll("ap-1", "apac").task()
    assert r.status_code == 403 and r.json()["error"]["reason"] == "region_not_allowed"
    r = fleet.enroll("gx-1", "eu", partner="globex").task()
    assert r.status_code == 403 and r.json()["error"]["reason"] == "partner_not_allowed"
    # a new version of the policy: the open round is abandoned, history has both versions
    second = fleet.policy(**dict(POLICY, allowed_partners=["acme", "globex"]))
    assert second["version"] == 2 and second["digest"] != first["digest"]
    hist = fleet.ok("GET", "/v1/models/toy/policy/history")["versions"]
    assert [h["version"] for h in hist] == [1, 2]
    r = fleet.devices[2].task()
    assert r.status_code == 200 and r.json()["policy_version"] == 2
    mt = fleet.marketer()
    assert fleet.call("GET", "/v1/models/toy/policy", mt).json()["version"] == 2
    kinds = [(e["kind"], e["code"]) for e in fleet.audit(model="toy")]
    assert kinds.count(("policy.set", None)) == 2
    assert ("task.denied", "region_not_allowed") in kinds and ("task.denied", "partner_not_allowed") in kinds
    assert ("round.abandoned", "policy_changed") in kinds
    # a device's region is fixed at enrolment
    r = fleet.call("POST", "/v1/devices/enroll", json={"app_key": fleet.app_key("acme", "us"), "device_id": "eu-1",
                                                       "region": "us", "device_secret": fleet.device_secrets["eu-1"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "region_change"


def _round_with_rejections(fleet, tmp_path) -> None:
    fleet.publish(tmp=tmp_path)
    fleet.policy(**POLICY)
    fleet.train(goal=2, min_clients=1)
    a, b = fleet.enroll("a", "eu"), fleet.enroll("b", "us")
    ta = a.task().json()
    r = a.call("POST", ta["upload_url"], data=b"junk", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = a.upload(dict(ta, version=ta["version"] + 7), np.full(7, 0.1, np.float32))
    assert r.status_code == 409 and r.json()["error"]["code"] == "stale_version"
    assert a.upload(ta, np.full(7, 0.1, np.float32)).status_code == 202
    assert b.upload(b.task().json(), np.full(7, 0.3, np.float32)).status_code == 202


def test_audit_records_the_governance_events_without_update_content(fleet, tmp_path):
    _round_with_rejections(fleet, tmp_path)
    entries = fleet.audit()
    kinds = [(e["kind"], e["code"]) for e in entries]
    for want in [("policy.set", None), ("training.set", None), ("round.opened", None), ("update.accepted", "accepted"),
                 ("update.rejected", "bad_content_type"), ("update.rejected", "stale_version"),
                 ("round.closed", "released"), ("version.published", "round"), ("version.published", "artifact")]:
        assert want in kinds, (want, kinds)
    acc = [e for e in entries if e["kind"] == "update.accepted"]
    assert {e["detail"]["region"] for e in acc} == {"eu", "us"} and all(e["detail"]["policy_version"] == 1 for e in acc)
    assert all(set(e["detail"]) <= {"update_id", "region", "partner", "policy_version", "bytes", "examples"} for e in acc)
    closed = next(e for e in entries if e["kind"] == "round.closed")
    assert closed["detail"]["regions"] == {"eu": 1, "us": 1} and closed["detail"]["contributors"] == 2
    # the chain links every entry to the previous one
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert all(e["prev_hash"] == p["hash"] for p, e in zip(entries, entries[1:]))
    verdict = fleet.ok("GET", "/v1/audit/verify")
    assert verdict["ok"] and verdict["entries"] == len(entries) and verdict["head"]["hash"] == entries[-1]["hash"]


def _verify_subprocess(db_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedmark_cli", "audit", "verify", "--database-url", db_url],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_tampering_is_detected_and_names_the_first_bad_entry(fleet, tmp_path, db_url, capsys):
    from fedmark_cli import main

    def _verify_cli(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
        """``fedmark audit verify`` in this process (the first call above runs the real command)."""
        capsys.readouterr()
        code = main(["audit", "verify", "--database-url", url, *extra])
        out = capsys.readouterr()
        return subprocess.CompletedProcess([], code, out.out, out.err)

    _round_with_rejections(fleet, tmp_path)
    ok = _verify_subprocess(db_url)
    assert ok.returncode == 0 and "audit trail OK" in ok.stdout, ok.stderr
    n = int(ok.stdout.split(":")[1].split()[0])
    head = ok.stdout.strip().split("head ")[1]
    assert n >= 10
    eng = create_engine(db_url)
    try:
        with eng.begin() as c:  # 1. edit one entry's detail
            orig = c.execute(text("SELECT detail FROM audit_log WHERE seq = 5")).scalar_one()
            c.execute(text("UPDATE audit_log SET detail = :d WHERE seq = 5"), {"d": orig.replace("}", ',"x":1}', 1)})
        bad = _verify_cli(db_url)
        assert bad.returncode == 1 and "first bad entry 5" in bad.stderr and "edited" in bad.stderr, bad.stderr
        with eng.begin() as c:
            c.execute(text("UPDATE audit_log SET detail = :d WHERE seq = 5"), {"d": orig})
        assert _verify_cli(db_url).returncode == 0
        with eng.begin() as c:  # 2. swap two entries' contents (reorder)
            rows = {r.seq: r for r in c.execute(text("SELECT * FROM audit_log WHERE seq IN (3, 4)"))}
            for seq, other in ((3, rows[4]), (4, rows[3])):
                c.execute(text("UPDATE audit_log SET kind=:k, detail=:d, code=:c, subject=:s, actor=:a, model=:m, "
                               "at=:t, hash=:h WHERE seq=:q"),
                          {"k": other.kind, "d": other.detail, "c": other.code, "s": other.subject, "a": other.actor,
                           "m": other.model, "t": other.at, "h": other.hash, "q": seq})
        bad = _verify_cli(db_url)
        assert bad.returncode == 1 and "first bad entry 3" in bad.stderr, bad.stderr
        with eng.begin() as c:  # 3. delete an entry (after restoring the swap)
            for seq, r in rows.items():
                c.execute(text("UPDATE audit_log SET kind=:k, detail=:d, code=:c, subject=:s, actor=:a, model=:m, "
                               "at=:t, hash=:h WHERE seq=:q"),
                          {"k": r.kind, "d": r.detail, "c": r.code, "s": r.subject, "a": r.actor, "m": r.model,
                           "t": r.at, "h": r.hash, "q": seq})
        assert _verify_cli(db_url).returncode == 0
        with eng.begin() as c:
            c.execute(text("DELETE FROM audit_log WHERE seq = 7"))
        bad = _verify_cli(db_url)
        assert bad.returncode == 1 and "first bad entry 8" in bad.stderr and "7..7 are missing" in bad.stderr, bad.stderr
        with eng.begin() as c:  # 4. truncate the tail: only an anchor kept elsewhere can tell
            c.execute(text("DELETE FROM audit_log WHERE seq >= 7"))
        assert _verify_cli(db_url).returncode == 0
        bad = _verify_cli(db_url, "--anchor", head)
        assert bad.returncode == 1 and "truncated" in bad.stderr, bad.stderr
    finally:
        eng.dispose()
    # the server's own verify endpoint agrees
    assert fleet.ok("GET", "/v1/audit/verify")["ok"] is True  # truncation alone keeps the chain consistent


def test_policy_files_and_tasks_of_other_partners_are_refused(fleet, tmp_path):
    """A device whose partner the policy excludes cannot fetch the model's files either."""
    fleet.publish(tmp=tmp_path)
    fleet.policy(**POLICY)
    gx = fleet.enroll("gx", "eu", partner="globex")
    r = gx.call("GET", "/v1/models/toy/versions/1/files/params.bin")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_model"  # hidden, like an unknown model
    ok = fleet.enroll("ok", "eu")
    assert ok.call("POST", "/v1/evaluations/tasks", json={"model": "toy"}).status_code == 200  # downloads need a task
    assert ok.call("GET", "/v1/models/toy/versions/1/files/params.bin").status_code == 200
    assert json.loads(fleet.admin("GET", "/v1/models/toy").text)["versions"][0]["status"] == "published"
