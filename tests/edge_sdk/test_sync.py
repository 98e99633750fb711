"""Model sync against a loopback HTTP server serving real exported artifacts.

The server here only serves bytes the way docs/API.md describes (ETag,
If-None-Match → 304), so the tests can also serve *tampered* bytes — the
situation an integrity check exists for.  The same flows run against the real
fedmark server in test_end_to_end.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.config import RetryPolicy
from edge_sdk.errors import ArtifactIntegrityError
from edge_sdk.sync import ModelCache
from edge_sdk.transport import Transport
from fedmark.contract import MANIFEST_FILE, Manifest, manifest_digest, sha256_bytes


def _versions(artifact_dir: str, n: int) -> dict[int, dict[str, bytes]]:
    """n versions of one artifact: same graphs, different params.bin (as a server publishes them)."""
    base = Path(artifact_dir)
    m = Manifest.loads((base / MANIFEST_FILE).read_bytes())
    files = {f: (base / f).read_bytes() for f in m.files}
    out = {}
    for v in range(1, n + 1):
        params = np.frombuffer(files["params.bin"], "<f4") + np.float32(v)
        fs = {**files, "params.bin": params.astype("<f4").tobytes()}
        mj = m.to_json()
        mj["version"] = v
        mj["model"] = "propensity"
        mj["files"] = {f: sha256_bytes(b) for f, b in fs.items()}
        fs[MANIFEST_FILE] = json.dumps(mj).encode()
        out[v] = fs
    return out


def _serve(server, versions, tamper: set[tuple[int, str]] = frozenset()):
    R = server.Reply

    def handler(req):
        parts = req.path.split("/")  # '', v1, models, m, versions, v, manifest|files, [name]
        v = int(parts[5])
        if parts[6] == "manifest":
            body = versions[v][MANIFEST_FILE]
            etag = '"' + manifest_digest(Manifest.loads(body)) + '"'
            if req.headers.get("if-none-match") == etag:
                return R(304, b"", {"ETag": etag})
            return R(200, body, {"ETag": etag, "Content-Type": "application/json"})
        name = parts[7]
        body = versions[v][name]
        if (v, name) in tamper:
            body = body[:-1] + bytes([body[-1] ^ 1])
        return R(200, body, {"ETag": '"' + sha256_bytes(versions[v][name]) + '"',
                             "Content-Type": "application/octet-stream"})

    server.handler = handler


def _paths(server):
    return [r.path.split("/", 6)[-1] for r in server.requests]


@pytest.fixture
def transport(scripted_server):
    return Transport(scripted_server.url, timeout=5, retry=RetryPolicy(max_retries=0))


def test_first_sync_downloads_and_a_resync_is_a_304(scripted_server, transport, artifacts, tmp_path):
    versions = _versions(artifacts.propensity, 1)
    _serve(scripted_server, versions)
    cache = ModelCache(tmp_path)
    first = cache.sync(transport, {}, "propensity", 1)
    n_files = len(versions[1]) - 1
    assert (first.downloaded, first.reused, first.manifest_not_modified) == (n_files, 0, False)
    assert (first.path / "params.bin").read_bytes() == versions[1]["params.bin"]
    scripted_server.requests.clear()
    again = ModelCache(tmp_path).sync(transport, {}, "propensity", 1)
    assert again.manifest_not_modified and again.downloaded == 0
    assert _paths(scripted_server) == ["manifest"], "a cached version must cost one conditional request"
    assert scripted_server.requests[0].headers["if-none-match"].startswith('"sha256:')


def test_new_version_downloads_only_changed_files_and_keeps_the_previous(scripted_server, transport, artifacts,
                                                                         tmp_path):
    versions = _versions(artifacts.propensity, 3)
    _serve(scripted_server, versions)
    cache = ModelCache(tmp_path)
    cache.sync(transport, {}, "propensity", 1)
    scripted_server.requests.clear()
    second = cache.sync(transport, {}, "propensity", 2)
    assert second.downloaded == 1 and second.reused == len(versions[2]) - 2
    assert _paths(scripted_server) == ["manifest", "files/params.bin"]
    assert cache.state("propensity") == {"current": 2, "previous": 1}
    assert cache.load("propensity", 1)[1].version == 1  # previous still usable
    cache.sync(transport, {}, "propensity", 3)
    assert cache.state("propensity") == {"current": 3, "previous": 2}
    assert not cache.version_dir("propensity", 1).exists(), "versions older than the previous one are pruned"


def test_a_file_tampered_in_transit_is_refused_and_nothing_is_installed(scripted_server, transport, artifacts,
                                                                       tmp_path):
    versions = _versions(artifacts.propensity, 2)
    _serve(scripted_server, versions, tamper={(2, "params.bin")})
    cache = ModelCache(tmp_path)
    cache.sync(transport, {}, "propensity", 1)
    with pytest.raises(ArtifactIntegrityError, match="params.bin.*tampered"):
        cache.sync(transport, {}, "propensity", 2)
    assert not cache.version_dir("propensity", 2).exists()
    assert cache.state("propensity")["current"] == 1
    assert cache.load("propensity")[1].version == 1
    assert not [p for p in cache.model_dir("propensity").iterdir() if p.name.startswith(".staging")]


def test_a_file_changed_on_disk_is_caught_on_load_and_healed_by_sync(scripted_server, transport, artifacts,
                                                                     tmp_path):
    versions = _versions(artifacts.propensity, 1)
    _serve(scripted_server, versions)
    cache = ModelCache(tmp_path)
    path = cache.sync(transport, {}, "propensity", 1).path
    graph = path / "train_epoch.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(ArtifactIntegrityError, match="train_epoch.onnx"):
        cache.load("propensity")
    healed = cache.sync(transport, {}, "propensity", 1)
    assert not healed.manifest_not_modified and healed.downloaded == len(versions[1]) - 1
    assert cache.load("propensity")[1].version == 1


def test_a_manifest_that_is_not_one_is_refused(scripted_server, transport, tmp_path):
    R = scripted_server.Reply
    scripted_server.handler = lambda req: R(200, b'{"format": "something-else"}')
    with pytest.raises(ArtifactIntegrityError, match="manifest"):
        ModelCache(tmp_path).sync(transport, {}, "propensity", 1)


def test_a_manifest_of_another_version_is_refused(scripted_server, transport, artifacts, tmp_path):
    versions = _versions(artifacts.propensity, 2)
    _serve(scripted_server, {1: versions[2]})  # asked for v1, served v2's manifest
    with pytest.raises(ArtifactIntegrityError, match="asked for 'propensity' v1"):
        ModelCache(tmp_path).sync(transport, {}, "propensity", 1)
