"""Every size limit holds on every route, over real HTTP (issue 18, points 6, 7 and 12).

Each case here was an accepted request or a 500 before the limits were made
route-independent: a chunked upload past the cap kept its prefix, a 50 MB JSON
body was parsed before its 401, JSON nested 100k deep raised RecursionError,
http.server's own 414/431 pages were HTML, and a gzip bomb with an unlisted
member was expanded into memory.
"""
from __future__ import annotations

import http.client
import io
import json
import socket
import tarfile
import uuid
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from fedmark.contract import encode_update

N = 15


def _raw(live, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
         chunked: bool = False) -> tuple[int, dict, bytes]:
    u = urlparse(live.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        if chunked:
            def gen():
                for i in range(0, len(body or b""), 65536):
                    yield body[i:i + 65536]
            conn.request(method, path, body=gen(), headers=headers or {}, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def _code(status_headers_body) -> tuple[int, str]:
    status, headers, body = status_headers_body
    ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    assert ctype.startswith("application/json"), (status, ctype, body[:200])
    return status, json.loads(body)["error"]["code"]


@pytest.fixture
def round_ready(live):
    live.publish("toy")
    live.train("toy", goal=3, min_clients=1, over_select=1.0, deadline_s=100, clip={"norm": 1.0}, encoding="f32")
    tok = live.enroll("a")
    task = live.task(tok).json()
    return live, tok, task


def _upload_headers(tok: str, task: dict) -> dict:
    return {"Authorization": f"Bearer {tok}", "Content-Type": "application/vnd.fedmark.update",
            "X-Fedmark-Model-Version": str(task["version"]), "X-Fedmark-Num-Examples": "10",
            "X-Fedmark-Within-Clip": "1", "Idempotency-Key": uuid.uuid4().hex}


def test_chunked_upload_past_the_cap_is_refused_and_not_counted(round_ready):
    live, tok, task = round_ready
    body = encode_update(np.full(N, 0.01, np.float32)) + b"\0" * 775_000
    assert _code(_raw(live, "POST", task["upload_url"], body, _upload_headers(tok, task), chunked=True)) == \
        (413, "body_too_large")
    assert live.admin("GET", f"/v1/rounds/{task['round_id']}").json()["accepted"] == 0
    # the exact body, chunked, is still accepted
    ok = _raw(live, "POST", task["upload_url"], encode_update(np.full(N, 0.01, np.float32)),
              _upload_headers(tok, task), chunked=True)
    assert ok[0] == 202, ok


@pytest.mark.parametrize("chunked", [False, True])
def test_json_bodies_are_capped_before_parsing(live, chunked):
    cap = live.app.config["MAX_JSON_BYTES"]
    big = json.dumps({"app_key": "x" * (cap + 10), "device_id": "d"}).encode()
    assert _code(_raw(live, "POST", "/v1/devices/enroll", big, {"Content-Type": "application/json"},
                      chunked=chunked)) == (413, "body_too_large")


@pytest.mark.parametrize("route", ["/v1/devices/enroll", "/v1/tasks", "/v1/activation/model",
                                   "/v1/models/toy/policy"])
def test_deeply_nested_json_is_a_400_not_a_500(live, route):
    live.publish("toy")
    deep = b"[" * 100_000 + b"]" * 100_000
    bearer = {"/v1/tasks": lambda: live.enroll("nest"),
              "/v1/activation/model": lambda: live.admin("POST", "/v1/admin/tokens",
                                                         json={"role": "marketer", "name": "m"}).json()["token"]}
    token = bearer.get(route, lambda: live.admin_token)()
    method = "PUT" if route.endswith("/policy") else "POST"
    status, headers, body = _raw(live, method, route, deep, {"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {token}"})
    assert _code((status, headers, body)) == (400, "bad_request"), (route, status, body[:300])
    assert "nested" in json.loads(body)["error"]["message"]


def _send_raw(live, request: bytes) -> bytes:
    u = urlparse(live.base_url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while True:  # the server closes the connection after a protocol-level refusal
            part = s.recv(65536)
            if not part:
                return b"".join(chunks)
            chunks.append(part)


def test_protocol_level_errors_use_the_json_shape(live):
    """http.server's own refusals (request line or headers too long) come back as JSON, not HTML."""
    data = _send_raw(live, b"GET /v1/health?" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"414", head
    assert b"application/json" in head.lower(), head
    assert json.loads(body)["error"]["code"] == "uri_too_long"
    data = _send_raw(live, b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"431", head
    assert json.loads(body)["error"]["code"] == "headers_too_large"


def _archive(files: dict[str, bytes], sizes: dict[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, size in (sizes or {}).items():
            info = tarfile.TarInfo(name)
            info.size = size

            class Zeros(io.RawIOBase):
                def __init__(self, n: int) -> None:
                    self.left = n

                def readable(self) -> bool:
                    return True

                def readinto(self, b) -> int:  # type: ignore[override]
                    k = min(len(b), self.left)
                    b[:k] = b"\0" * k
                    self.left -= k
                    return k
            tar.addfile(info, io.BufferedReader(Zeros(size)))
    return buf.getvalue()


def _artifact_files(live, tmp: Path) -> dict[str, bytes]:
    from server.testing import make_artifact

    d = make_artifact(tmp / f"art-{uuid.uuid4().hex[:6]}", "toy", ((4, 3), (3,)), 0)
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}


def test_gzip_bomb_with_an_unlisted_member_is_refused_without_expanding(live, tmp_path):
    import resource

    files = _artifact_files(live, tmp_path)
    bomb = _archive(files, {"padding.bin": 256 * 1024 * 1024})
    assert len(bomb) < 400_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = live.admin("POST", "/v1/models/bomb/versions", data=bomb, headers={"Content-Type": "application/gzip"})
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_artifact", r.text
    assert "padding.bin" in r.json()["error"]["message"]
    assert grown_mb < 64, f"the server grew by {grown_mb:.0f} MB reading the archive"


def test_a_graph_that_is_not_onnx_is_refused(live, tmp_path):
    from fedmark.contract import Manifest, sha256_bytes

    files = _artifact_files(live, tmp_path)
    m = Manifest.loads(files["manifest.json"])
    graph = next(iter(m.graphs.values()))
    files[graph] = b"this is not an ONNX model" * 10
    new = dict(m.files)
    new[graph] = sha256_bytes(files[graph])
    import dataclasses
    files["manifest.json"] = dataclasses.replace(m, files=new).dumps().encode()
    r = live.admin("POST", "/v1/models/notonnx/versions", data=_archive(files), headers={"Content-Type": "application/gzip"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_artifact", r.text
    assert graph in r.json()["error"]["message"] and "ONNX" in r.json()["error"]["message"]


def test_the_real_archive_still_publishes(live, tmp_path):
    files = _artifact_files(live, tmp_path)
    r = live.admin("POST", "/v1/models/fine/versions", data=_archive(files), headers={"Content-Type": "application/gzip"})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("name", [".", "..", ".hidden", "-x"])
def test_model_names_that_read_as_paths_are_refused(live, tmp_path, name):
    files = _artifact_files(live, tmp_path)
    # sent byte for byte: an HTTP library would normalise "/./" and "/../" away before sending
    status, headers, body = _raw(live, "POST", f"/v1/models/{name}/versions", _archive(files),
                                 {"Content-Type": "application/gzip", "Authorization": f"Bearer {live.admin_token}"})
    assert _code((status, headers, body)) == (400, "bad_request"), (name, status, body)
    assert "letter or digit" in json.loads(body)["error"]["message"]
    assert all(m["name"] != name for m in live.admin("GET", "/v1/models").json()["models"])


def test_training_hyperparams_have_a_size_limit(live):
    live.publish("toy")
    r = live.admin("PUT", "/v1/models/toy/training", json={"goal": 2, "hyperparams": {"pad": "x" * 20_000}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_training_config", r.text
    assert "hyperparams" in r.json()["error"]["message"]
    assert live.admin("PUT", "/v1/models/toy/training", json={"goal": 2, "hyperparams": {"epochs": 2}}).status_code == 200
