"""Fuzzing a running server's untrusted inputs: update uploads (stateful) and published artifacts.

Upload machine: each example publishes a fresh model, opens a round that
cannot close (goal above the number of task holders), and then runs random
steps — well-formed updates, random or mutated bodies, random header values,
tokens of devices with and without a task, replays with the same or another
body.  Invariants after every step: no 5xx, and the round's ``accepted``
counter equals the number of 202 answers (nothing lost, nothing counted twice,
nothing accepted that was answered with an error).

Publish fuzz: archives whose manifest has one field replaced by arbitrary
JSON, or random bytes, must be refused with a 4xx (``bad_artifact`` …), never 5xx.
"""
from __future__ import annotations

import io
import json
import secrets
import tarfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from bench.fleet import Fleet, synthetic_update, upload_headers
from fedmark.contract import encode_update, sha256_bytes
from server.testing import ServerProcess, make_artifact, start_server

N = 40
TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=24)
# What an HTTP client can send as a header value: requests refuses leading whitespace before
# anything reaches the server, which would fail the test without testing the server.
HEADER_TEXT = TEXT.map(str.lstrip)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = start_server(tmp_path_factory.mktemp("fuzz-server"), extra_env={
        "FEDMARK_RATE_LIMIT_PER_S": "10000", "FEDMARK_RATE_LIMIT_BURST": "10000"})
    try:
        yield s
    finally:
        s.stop()


def _body(kind: str, data: st.DataObject) -> bytes:
    good = encode_update(synthetic_update(N, data.draw(st.integers(0, 10**6))))
    if kind == "good":
        return good
    if kind == "random":
        return data.draw(st.binary(max_size=4 * N + 40))
    if kind == "flip":
        i = data.draw(st.integers(0, len(good) - 1))
        return good[:i] + bytes([good[i] ^ data.draw(st.integers(1, 255))]) + good[i + 1:]
    if kind == "cut":
        return good[:data.draw(st.integers(0, len(good) - 1))]
    if kind == "floats":  # any float32 values, NaN / Inf / huge included, with a valid header
        vals = data.draw(st.lists(st.floats(width=32), min_size=N, max_size=N))
        arr = np.array(vals, "<f4")
        import struct
        import zlib
        return struct.pack("<4sBBHII", b"FMU1", 0, 0, 0, N, zlib.crc32(arr.tobytes())) + arr.tobytes()
    enc = data.draw(st.sampled_from(["f16", "q8"]))
    return encode_update(synthetic_update(N, 1), enc, rng=np.random.default_rng(0))


def upload_machine(server: ServerProcess, tmp: Path) -> type[RuleBasedStateMachine]:
    class Uploads(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            self.f = Fleet(server.base_url, server.admin_token)
            self.model = "fz" + secrets.token_hex(4)
            self.f.publish_synthetic(self.model, N, tmp, seed=1)
            self.f.train(self.model, goal=10, min_clients=1, over_select=1.0, deadline_s=3600, clip={"norm": 1.0})
            self.devs = self.f.devices(3, self.model, prefix=self.model)
            self.outsider = self.f.enroll(self.model + "-out")
            self.round_id = self.devs[0].task["round_id"]  # type: ignore[index]
            self.accepted = 0
            self.acks: list[tuple[int, str, bytes, dict[str, Any]]] = []

        def _post(self, dev: int, body: bytes, headers: dict[str, str]) -> Any:
            r = self.f.http.post(self.f.base_url + f"/v1/rounds/{self.round_id}/updates", data=body, headers=headers,
                                 timeout=60)
            assert r.status_code < 500, f"{r.status_code}: {r.text}"
            if r.status_code >= 400:
                assert r.json()["error"]["code"], r.text
            return r

        def _headers(self, dev: int) -> dict[str, str]:
            tok = self.outsider if dev == 3 else self.devs[dev].token
            return upload_headers(tok, 1, secrets.token_hex(6))

        @rule(dev=st.integers(0, 3), kind=st.sampled_from(["good", "random", "flip", "cut", "floats", "lossy"]),
              data=st.data())
        def upload(self, dev: int, kind: str, data: st.DataObject) -> None:
            body = _body(kind, data)
            h = self._headers(dev)
            r = self._post(dev, body, h)
            if r.status_code == 202:
                self.accepted += 1
                self.acks.append((dev, h["Idempotency-Key"], body, r.json()))

        @rule(dev=st.integers(0, 3), header=st.sampled_from(["Authorization", "Content-Type", "X-Fedmark-Model-Version",
                                                             "X-Fedmark-Num-Examples", "X-Fedmark-Within-Clip",
                                                             "Idempotency-Key"]),
              value=st.none() | HEADER_TEXT | st.integers(-5, 10**12).map(str), data=st.data())
        def odd_header(self, dev: int, header: str, value: str | None, data: st.DataObject) -> None:
            h = self._headers(dev)
            if value is None:
                h.pop(header)
            else:
                h[header] = value
            body = _body("good", data)
            r = self._post(dev, body, h)
            if r.status_code == 202:
                self.accepted += 1
                self.acks.append((dev, h["Idempotency-Key"], body, r.json()))

        @rule(i=st.integers(0, 100), same=st.booleans())
        def replay(self, i: int, same: bool) -> None:
            if not self.acks:
                return
            dev, key, body, answer = self.acks[i % len(self.acks)]
            h = self._headers(dev)
            h["Idempotency-Key"] = key
            r = self._post(dev, body if same else body[:-1] + bytes([body[-1] ^ 1]), h)
            if same:
                assert r.status_code == 200 and r.json() == answer, r.text
            else:
                assert r.status_code in (400, 409), r.text

        @invariant()
        def counted_exactly_the_202s(self) -> None:
            if hasattr(self, "f"):
                rnd = self.f.round(self.round_id)
                assert rnd["state"] == "open" and rnd["accepted"] == self.accepted, (rnd, self.accepted)

    return Uploads


def test_upload_endpoint_stateful_fuzz(srv: ServerProcess, tmp_path: Path) -> None:
    machine = upload_machine(srv, tmp_path)
    machine.TestCase.settings = settings(max_examples=12, stateful_step_count=15, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    machine.TestCase().runTest()


def _archive(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 10**10) | st.floats(allow_nan=False) | TEXT,
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(TEXT, kids, max_size=3), max_leaves=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["format", "model", "family", "version", "params", "batch_size", "graphs", "files",
                              "features", "hyperparams", "clip_norm", "privacy", "opset", "local_params", "extra"]),
       value=JSON, raw=st.none() | st.binary(max_size=64))
def test_publish_endpoint_refuses_fuzzed_artifacts_with_4xx(srv: ServerProcess, tmp_path: Path, field: str, value: Any,
                                                            raw: bytes | None) -> None:
    f = Fleet(srv.base_url, srv.admin_token)
    if raw is not None:
        body = raw
    else:
        d = make_artifact(tmp_path / "base", "fz")
        man = json.loads((d / "manifest.json").read_text())
        man[field] = value
        files = {p.name: p.read_bytes() for p in d.iterdir() if p.name != "manifest.json"}
        files["manifest.json"] = json.dumps(man).encode()
        body = _archive(files)
    r = f.admin("POST", "/v1/models/fz-pub/versions", data=body, headers={"Content-Type": "application/gzip"})
    assert r.status_code < 500, f"{field}={value!r}: {r.status_code} {r.text}"
    if r.status_code >= 400:
        assert r.json()["error"]["code"] in ("bad_artifact", "body_too_large"), r.text
    else:  # accepted only if the mutated field still describes the same, hash-verified artifact
        assert sha256_bytes(f.params_bytes("fz-pub", r.json()["version"])) == man["files"]["params.bin"]
