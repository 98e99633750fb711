"""Registry: publish with hash verification, content addressing, lineage, rollback, ETag / 304."""
from __future__ import annotations

import json

import numpy as np

from fedmark.contract import Manifest, manifest_digest, sha256_bytes


def test_publish_verifies_hashes_and_is_content_addressed(live):
    from server.testing import make_artifact

    d = make_artifact(live.tmp / "a1", "toy")
    r = live.publish_dir(d, "toy")
    assert r.status_code == 201
    first = r.json()
    assert first["version"] == 1 and first["digest"].startswith("sha256:")
    # same content again: the existing version, 200
    again = live.publish_dir(d, "toy")
    assert again.status_code == 200 and again.json() == first
    # the served manifest is the version's content address
    man = live.admin("GET", "/v1/models/toy/versions/1/manifest")
    m = Manifest.loads(man.content)
    assert (m.model, m.version) == ("toy", 1) and manifest_digest(m) == first["digest"]
    # a tampered file is refused, naming the file
    (d / "params.bin").write_bytes(b"\0" * 60)
    bad = live.publish_dir(d, "toy")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_artifact"
    assert "params.bin" in bad.json()["error"]["message"]
    # a wrong-sized parameter file is refused even with a matching hash
    d2 = make_artifact(live.tmp / "a2", "toy", seed=1)
    (d2 / "params.bin").write_bytes(b"\0" * 8)
    mj = json.loads((d2 / "manifest.json").read_text())
    mj["files"]["params.bin"] = sha256_bytes(b"\0" * 8)
    (d2 / "manifest.json").write_text(json.dumps(mj))
    bad = live.publish_dir(d2, "toy")
    assert bad.status_code == 400 and "float32" in bad.json()["error"]["message"]
    r = live.admin("POST", "/v1/models/toy/versions", data=b"not a tarball", headers={"Content-Type": "application/gzip"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_artifact"


def test_manifest_and_files_honour_etag(live):
    live.publish("toy")
    man = live.admin("GET", "/v1/models/toy/versions/1/manifest")
    assert man.status_code == 200
    etag = man.headers["ETag"]
    digest = live.model("toy")["versions"][0]["digest"]
    assert etag == f'"{digest}"'
    r = live.admin("GET", "/v1/models/toy/versions/1/manifest", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    files = json.loads(man.content)["files"]
    f = live.admin("GET", "/v1/models/toy/versions/1/files/train.onnx")
    assert f.status_code == 200 and sha256_bytes(f.content) == files["train.onnx"]
    assert f.headers["ETag"] == f'"{files["train.onnx"]}"'
    r = live.admin("GET", "/v1/models/toy/versions/1/files/train.onnx", headers={"If-None-Match": f.headers["ETag"]})
    assert r.status_code == 304
    r = live.admin("GET", "/v1/models/toy/versions/1/files/train.onnx", headers={"If-None-Match": '"sha256:other"'})
    assert r.status_code == 200
    r = live.admin("GET", "/v1/models/toy/versions/1/files/secret.txt")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_file"
    r = live.admin("GET", "/v1/models/toy/versions/9/manifest")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_version"


def test_round_version_shares_graphs_and_rollback(live):
    live.publish("toy")
    live.train("toy", goal=1, min_clients=1, over_select=1.0, clip={"norm": 10.0})
    tok = live.enroll("d")
    task = live.task(tok).json()
    assert live.upload(tok, task, np.full(15, 0.5, np.float32)).status_code == 202
    m1 = live.admin("GET", "/v1/models/toy/versions/1/manifest").json()
    m2 = live.admin("GET", "/v1/models/toy/versions/2/manifest").json()
    assert m2["version"] == 2 and m2["files"]["train.onnx"] == m1["files"]["train.onnx"]
    assert m2["files"]["params.bin"] != m1["files"]["params.bin"]
    assert sha256_bytes(live.params("toy", 2).astype("<f4").tobytes()) == m2["files"]["params.bin"]
    # rollback to 1: current version 1, a history entry, next task trains version 1 again
    r = live.admin("POST", "/v1/models/toy/rollback", json={"version": 1})
    assert r.status_code == 200 and r.json()["current_version"] == 1 and r.json()["previous_version"] == 2
    model = live.model("toy")
    assert model["current_version"] == 1 and [v["version"] for v in model["versions"]] == [1, 2]
    assert [h["kind"] for h in model["history"]] == ["publish", "training", "round", "rollback"]
    assert live.task(live.enroll("e")).json()["version"] == 1
    r = live.admin("POST", "/v1/models/toy/rollback", json={"version": 5})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_version"
    # a marketer may read but not roll back
    mt = live.admin("POST", "/v1/admin/tokens", json={"role": "marketer", "name": "m"}).json()["token"]
    assert live.call("POST", "/v1/models/toy/rollback", mt, json={"version": 2}).status_code == 403
    listing = live.call("GET", "/v1/models", mt).json()["models"]
    assert listing[0]["name"] == "toy" and listing[0]["num_versions"] == 2


def test_training_config_validation(live):
    live.publish("toy")
    bad = [({"goal": 3, "min_clients": 4}, "min_clients"), ({"mode": "semi"}, "mode"), ({"gaol": 2}, "gaol"),
           ({"noise_multiplier": 1.0, "clip": None}, "clip"), ({"epsilon_budget": 3.0}, "noise_multiplier")]
    for body, word in bad:
        r = live.admin("PUT", "/v1/models/toy/training", json=body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_training_config", body
        assert word in r.json()["error"]["message"], (body, r.json())
    cfg = live.train("toy", goal=4, min_clients=2)
    got = live.admin("GET", "/v1/models/toy/training").json()
    assert got["goal"] == 4 and got["min_clients"] == 2 and got["stopped"] is None and cfg["goal"] == 4
