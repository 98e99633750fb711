"""Update ingestion: every rejection path with its code, exactly-once retries, durability across SIGKILL."""
from __future__ import annotations

import struct
import uuid

import numpy as np
import pytest
import requests

from fedmark.contract import encode_update

N = 15


@pytest.fixture
def round_ready(live):
    """A sync round (goal 3) with tasks for devices a and b; device c is enrolled without a task."""
    live.publish("toy")
    live.train("toy", goal=3, min_clients=1, over_select=1.0, deadline_s=100, clip={"norm": 1.0}, encoding="f32")
    toks = {d: live.enroll(d) for d in ("a", "b", "c")}
    tasks = {d: live.task(toks[d]).json() for d in ("a", "b")}
    return live, toks, tasks


def _err(r: requests.Response) -> tuple[int, str]:
    assert r.headers["Content-Type"].startswith("application/json"), r.text
    return r.status_code, r.json()["error"]["code"]


def test_each_rejection_has_its_code(round_ready):
    live, toks, tasks = round_ready
    a, ta = toks["a"], tasks["a"]
    good = np.full(N, 0.01, np.float32)
    body = encode_update(good)
    cases = {
        "no token": (lambda: live.call("POST", ta["upload_url"], None, data=body), (401, "bad_token")),
        "bad token": (lambda: live.upload("dt_nope", ta, good), (401, "bad_token")),
        "marketer": (lambda: live.upload(live.admin("POST", "/v1/admin/tokens", json={"role": "marketer", "name": "m"})
                                         .json()["token"], ta, good), (403, "forbidden")),
        "other device's task": (lambda: live.upload(toks["c"], ta, good), (403, "forbidden")),
        "unknown round": (lambda: live.upload(a, dict(ta, upload_url="/v1/rounds/r_nope/updates"), good),
                          (404, "unknown_round")),
        "content type": (lambda: live.upload(a, ta, good, content_type="application/json"), (415, "bad_content_type")),
        "json list body": (lambda: live.upload(a, ta, body=b"[0.1, 0.2]"), (400, "bad_update")),
        "too large": (lambda: live.upload(a, ta, body=body + b"\0" * 200), (413, "body_too_large")),
        "truncated": (lambda: live.upload(a, ta, body=body[:-4]), (400, "bad_update")),
        "bad magic": (lambda: live.upload(a, ta, body=b"XXXX" + body[4:]), (400, "bad_update")),
        "checksum": (lambda: live.upload(a, ta, body=body[:-1] + bytes([body[-1] ^ 1])), (400, "bad_update")),
        "wrong count": (lambda: live.upload(a, ta, np.zeros(N - 1, np.float32)), (400, "bad_update")),
        "non finite": (lambda: live.upload(a, ta, body=_nan_body()), (400, "non_finite")),
        "encoding": (lambda: live.upload(a, ta, good, encoding="q8"), (400, "bad_encoding")),
        "unknown encoding": (lambda: live.upload(a, ta, body=body[:4] + b"\x09" + body[5:]), (400, "bad_encoding")),
        "missing key": (lambda: live.upload(a, ta, good, extra_headers={"Idempotency-Key": ""}), (400, "bad_header")),
        "bad examples": (lambda: live.upload(a, ta, good, num_examples=0), (400, "bad_header")),
        "bad bit": (lambda: live.upload(a, ta, good, within="yes"), (400, "bad_header")),
        "bad version header": (lambda: live.upload(a, ta, good, extra_headers={"X-Fedmark-Model-Version": "v1"}),
                               (400, "bad_header")),
        "stale version": (lambda: live.upload(a, ta, good, version=7), (409, "stale_version")),
    }
    for name, (send, expected) in cases.items():
        assert _err(send()) == expected, name
    # none of them counted
    assert live.admin("GET", f"/v1/rounds/{ta['round_id']}").json()["accepted"] == 0
    # the same device cannot contribute twice to one round
    assert live.upload(a, ta, good).status_code == 202
    assert _err(live.upload(a, ta, good * 2)) == (409, "duplicate_update")


def _nan_body() -> bytes:
    good = encode_update(np.zeros(N, np.float32))
    payload = bytearray(np.full(N, np.nan, "<f4").tobytes())
    import zlib
    header = struct.pack("<4sBBHII", b"FMU1", 0, 0, 0, N, zlib.crc32(bytes(payload)))
    assert len(header) + len(payload) == len(good)
    return header + bytes(payload)


def test_retry_with_same_key_counts_once_and_conflicting_body_is_refused(round_ready):
    live, toks, tasks = round_ready
    key = str(uuid.uuid4())
    vec = np.full(N, 0.02, np.float32)
    first = live.upload(toks["a"], tasks["a"], vec, key=key)
    assert first.status_code == 202
    for _ in range(3):
        again = live.upload(toks["a"], tasks["a"], vec, key=key)
        assert again.status_code == 200 and again.json() == first.json()
    rnd = live.admin("GET", f"/v1/rounds/{tasks['a']['round_id']}").json()
    assert rnd["accepted"] == 1
    conflict = live.upload(toks["a"], tasks["a"], vec * 2, key=key)
    assert _err(conflict) == (409, "idempotency_conflict")
    # a retry after the round closed still gets the original answer
    assert live.upload(toks["b"], tasks["b"], vec).status_code == 202
    live.clock.advance(101)
    live.tick()
    assert live.admin("GET", f"/v1/rounds/{tasks['a']['round_id']}").json()["state"] == "closed"
    late = live.upload(toks["a"], tasks["a"], vec, key=key)
    assert late.status_code == 200 and late.json() == first.json()
    assert live.model("toy")["versions"][-1]["contributors"] == 2


def test_concurrent_retries_of_one_update_count_once(round_ready):
    from concurrent.futures import ThreadPoolExecutor

    live, toks, tasks = round_ready
    key = "k-" + uuid.uuid4().hex
    vec = np.full(N, 0.03, np.float32)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: live.upload(toks["a"], tasks["a"], vec, key=key), range(6)))
    assert [r.status_code for r in answers].count(202) == 1, [r.text for r in answers]
    assert all(r.status_code in (200, 202) for r in answers)
    assert len({r.json()["update_id"] for r in answers}) == 1
    assert live.admin("GET", f"/v1/rounds/{tasks['a']['round_id']}").json()["accepted"] == 1


def test_server_reclips_updates_whatever_the_device_claims(round_ready):
    live, toks, tasks = round_ready
    base = live.params("toy", 1)
    huge = np.full(N, 50.0, np.float32)  # norm ~194, C = 1; claims to be within the clip norm
    small = np.zeros(N, np.float32)
    assert live.upload(toks["a"], tasks["a"], huge, within="1", num_examples=1).status_code == 202
    assert live.upload(toks["b"], tasks["b"], small, within="1", num_examples=1).status_code == 202
    live.clock.advance(101)
    live.tick()
    step = live.params("toy", 2) - base
    assert np.linalg.norm(step.astype(np.float64)) <= 0.5 + 1e-5  # mean of a clipped (norm 1) and a zero update


def test_example_count_weight_is_capped(live):
    live.publish("toy")
    live.train("toy", goal=2, min_clients=2, over_select=1.0, max_examples_weight=100, clip={"norm": 100.0})
    toks = [live.enroll("x"), live.enroll("y")]
    tasks = [live.task(t).json() for t in toks]
    base = live.params("toy", 1)
    assert live.upload(toks[0], tasks[0], np.full(N, 1.0, np.float32), num_examples=10**9).status_code == 202
    assert live.upload(toks[1], tasks[1], np.full(N, 3.0, np.float32), num_examples=100).status_code == 202
    np.testing.assert_allclose(live.params("toy", 2) - base, np.full(N, 2.0), rtol=1e-5)  # 1e9 counted as 100


def test_acknowledged_update_survives_sigkill(tmp_path, db_url):
    """202 means durable: SIGKILL the process right after the answer, restart, the update is counted."""
    from server.testing import make_artifact, start_server
    from server.registry.artifacts import write_archive

    srv = start_server(tmp_path / "srv", database_url=db_url)
    try:
        H = {"Authorization": f"Bearer {srv.admin_token}"}
        u = srv.base_url
        art = make_artifact(tmp_path / "art")
        assert requests.post(f"{u}/v1/models/toy/versions", data=write_archive(str(art)),
                             headers={**H, "Content-Type": "application/gzip"}, timeout=30).status_code == 201
        assert requests.put(f"{u}/v1/models/toy/training", json={"goal": 2, "min_clients": 2, "deadline_s": 600},
                            headers=H, timeout=30).status_code == 200
        ak = requests.post(f"{u}/v1/admin/app-keys", json={"region": "eu"}, headers=H, timeout=30).json()["app_key"]
        toks = [requests.post(f"{u}/v1/devices/enroll", json={"app_key": ak, "device_id": d, "region": "eu"},
                              timeout=30).json()["device_token"] for d in ("d1", "d2")]
        tasks = [requests.post(f"{u}/v1/tasks", json={"model": "toy"}, headers={"Authorization": f"Bearer {t}"},
                               timeout=30).json() for t in toks]
        body = encode_update(np.full(N, 0.01, np.float32))
        hdr = {"Authorization": f"Bearer {toks[0]}", "Content-Type": "application/vnd.fedmark.update",
               "X-Fedmark-Model-Version": "1", "X-Fedmark-Num-Examples": "5", "Idempotency-Key": "key-1"}
        first = requests.post(u + tasks[0]["upload_url"], data=body, headers=hdr, timeout=30)
        assert first.status_code == 202
        srv.kill()  # no clean shutdown
        assert not srv.alive()
        srv.restart()
        rnd = requests.get(f"{u}/v1/rounds/{tasks[0]['round_id']}", headers=H, timeout=30).json()
        assert rnd["state"] == "open" and rnd["accepted"] == 1
        again = requests.post(u + tasks[0]["upload_url"], data=body, headers=hdr, timeout=30)
        assert again.status_code == 200 and again.json() == first.json()
        hdr2 = dict(hdr, Authorization=f"Bearer {toks[1]}", **{"Idempotency-Key": "key-2"})
        assert requests.post(u + tasks[1]["upload_url"], data=body, headers=hdr2, timeout=30).status_code == 202
        model = requests.get(f"{u}/v1/models/toy", headers=H, timeout=30).json()
        assert model["current_version"] == 2 and model["versions"][1]["contributors"] == 2
    finally:
        srv.stop()


def test_header_parsing_follows_the_shared_protocol_vectors():
    """The server refuses and accepts upload headers exactly as the contract vectors (and the JS SDK) say."""
    import importlib.util
    from pathlib import Path

    from server.errors import ApiError
    from server.rounds.ingest import parse_headers

    spec = importlib.util.spec_from_file_location("fedmark_make_vectors",
                                                  Path(__file__).resolve().parents[1] / "web" / "make_vectors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cases = mod.header_vectors()["parsed"]
    assert sum("message" in e for e in cases) >= 10
    for e in cases:
        if "message" in e:
            with pytest.raises(ApiError) as ei:
                parse_headers(e["headers"])
            assert (ei.value.status, ei.value.code, ei.value.message) == (400, e["code"], e["message"]), e["name"]
        else:
            h = parse_headers(e["headers"])
            p = e["parsed"]
            assert (h.version, h.num_examples, h.within_clip, h.key) == (
                p["version"], p["num_examples"], p["within_clip"], p["key"]), e["name"]
