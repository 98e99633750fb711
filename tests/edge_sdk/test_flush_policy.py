"""How a flush treats each server answer, over loopback against scripted answers.

The real server cannot be made to answer every code on demand (an unknown
round, a 500), so this drives the Client's outbox against a loopback HTTP
server that answers per round id; the common paths run against the real
server in test_end_to_end.py and test_crash_resume.py.
"""
from __future__ import annotations

import json
import time

from edge_sdk import Client, RetryPolicy
from edge_sdk.outbox import QueuedUpload


def _err(code: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": f"because {code}"}}).encode()


def test_each_answer_keeps_or_drops_the_update(scripted_server, tmp_path):
    R = scripted_server.Reply
    answers = {
        "r-ok": R(202, b'{"accepted": true, "update_id": 11, "round_id": "r-ok"}'),
        "r-dup": R(200, b'{"accepted": true, "update_id": 7, "round_id": "r-dup"}'),
        "r-gone": R(404, _err("unknown_round")),
        "r-closed": R(409, _err("round_closed")),
        "r-stale": R(409, _err("stale_version")),
        "r-bad": R(400, _err("bad_update")),
        "r-500": R(500, _err("internal")),
    }

    def handler(req):
        if req.path == "/v1/devices/enroll":
            return R(201, b'{"device_token": "dt_1", "device_id": "d", "region": "eu", "partner": "default"}')
        assert req.headers["authorization"] == "Bearer dt_1"
        return answers[req.path.split("/")[3]]

    scripted_server.handler = handler
    c = Client(scripted_server.url, app_key="ak", device_id="d", region="eu", storage_dir=tmp_path,
               retry=RetryPolicy(max_retries=0))
    for rid in answers:
        c.outbox.put(QueuedUpload(f"k-{rid}", f"/v1/rounds/{rid}/updates", rid, "m", 1,
                                  {"Idempotency-Key": f"k-{rid}"}, b"body", time.time()))
        time.sleep(0.001)
    rep = c.flush()
    got = {o.round_id: (o.status, o.code) for o in rep.outcomes}
    assert got == {"r-ok": ("accepted", None), "r-dup": ("duplicate", None), "r-gone": ("expired", "unknown_round"),
                   "r-closed": ("expired", "round_closed"), "r-stale": ("expired", "stale_version"),
                   "r-bad": ("rejected", "bad_update"), "r-500": ("pending", "internal")}
    assert rep.sent == 2 and rep.dropped == 4 and rep.pending == 1
    assert [e.round_id for e in c.outbox.entries()] == ["r-500"]
    uploads = [r for r in scripted_server.requests if r.path.endswith("/updates")]
    assert [r.headers["idempotency-key"] for r in uploads] == [f"k-{rid}" for rid in answers]


def test_a_network_failure_stops_the_flush_and_keeps_everything(scripted_server, tmp_path):
    R = scripted_server.Reply
    scripted_server.handler = lambda req: (
        R(201, b'{"device_token": "dt_1"}') if req.path.endswith("enroll") else R(200, b"{}", delay=1.0))
    c = Client(scripted_server.url, app_key="ak", device_id="d", region="eu", storage_dir=tmp_path, timeout=0.2,
               retry=RetryPolicy(max_retries=0))
    for k in ("a", "b"):
        c.outbox.put(QueuedUpload(k, "/v1/rounds/r/updates", "r", "m", 1, {}, b"x", time.time()))
    rep = c.flush()
    assert [o.status for o in rep.outcomes] == ["pending"] and rep.pending == 2


def test_a_refused_token_triggers_one_re_enrolment(scripted_server, tmp_path):
    R = scripted_server.Reply
    tokens = iter(["dt_old", "dt_new"])

    def handler(req):
        if req.path.endswith("enroll"):
            return R(201, json.dumps({"device_token": next(tokens)}).encode())
        if req.headers["authorization"] == "Bearer dt_old":
            return R(401, _err("bad_token"))
        return R(202, b'{"accepted": true, "update_id": 1, "round_id": "r"}')

    scripted_server.handler = handler
    c = Client(scripted_server.url, app_key="ak", device_id="d", region="eu", storage_dir=tmp_path,
               retry=RetryPolicy(max_retries=0))
    c.outbox.put(QueuedUpload("k", "/v1/rounds/r/updates", "r", "m", 1, {}, b"x", time.time()))
    assert c.flush().sent == 1
    assert [r.path.split("/")[-1] for r in scripted_server.requests] == ["enroll", "updates", "enroll", "updates"]
    assert json.loads((tmp_path / "device.json").read_text())["device_token"] == "dt_new"
