"""Task parsing: privacy-relevant fields fail loudly when malformed."""
from __future__ import annotations

import pytest

from edge_sdk.errors import ServerError
from edge_sdk.task import Task

BASE = {"task_id": "t_1", "round_id": "r_1", "model": "m", "version": 3, "upload_url": "/v1/rounds/r_1/updates",
        "clip_norm": 1.2, "local_noise": 0.0, "encoding": "f16", "hyperparams": {"epochs": 2},
        "eligibility": {"require_charging": True}}


def test_a_documented_task_parses():
    t = Task.from_json(BASE)
    assert (t.round_id, t.version, t.clip_norm, t.encoding) == ("r_1", 3, 1.2, "f16")
    assert t.manifest_url == "/v1/models/m/versions/3/manifest" and t.hyperparams == {"epochs": 2}
    assert Task.from_json({**BASE, "clip_norm": None}).clip_norm is None


@pytest.mark.parametrize("change,message", [
    ({"round_id": None}, "missing field"),
    ({"clip_norm": -1}, "clip_norm"),
    ({"clip_norm": "big"}, "could not convert"),
    ({"local_noise": -0.1}, "local_noise"),
    ({"clip_norm": None, "local_noise": 0.5}, "no clip_norm"),
    ({"encoding": "f8"}, "encoding"),
    ({"eligibility": []}, "JSON objects"),
])
def test_malformed_tasks_are_refused(change, message):
    with pytest.raises(ServerError, match=message) as ei:
        Task.from_json({**BASE, **change})
    assert ei.value.code == "bad_task"


# --------------------------------------------------------------------------- the shared protocol vectors
def _vectors() -> dict:
    """The Python↔JS protocol vectors (tests/web/make_vectors.py), so this SDK is held to the same cases."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "web" / "make_vectors.py"
    spec = importlib.util.spec_from_file_location("fedmark_make_vectors", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return {"tasks": mod.task_vectors(), "headers": mod.header_vectors()}


def test_the_sdk_parses_every_task_vector_as_the_contract_does():
    cases = _vectors()["tasks"]
    assert sum("message" in e for e in cases) >= 20
    for e in cases:
        if "message" in e:
            with pytest.raises(ServerError) as ei:
                Task.from_json(e["task"])
            assert (ei.value.code, ei.value.server_message) == (e["code"], f"the server's task is malformed: {e['message']}")
        else:
            t = Task.from_json(e["task"])
            assert isinstance(t, Task) and t.to_json() == e["parsed"], e["name"]
            manifest_purpose = "marketing" if e["name"] == "build_task" else "Marketing"
            assert list(t.required_purposes(manifest_purpose)) == e["required_purposes"], e["name"]


def test_queued_updates_carry_the_contracts_headers(tmp_path):
    """The SDK's upload headers equal the vectors; the within-clip bit only travels with a clip norm."""
    from types import SimpleNamespace

    from edge_sdk.outbox import Outbox
    from edge_sdk.upload import Uploader
    from fedmark.contract import HDR_IDEMPOTENCY, HDR_WITHIN_CLIP, upload_headers

    up = Uploader(Outbox(tmp_path / "outbox"), request=lambda *a, **k: None)
    for clip, within in [(1.2, True), (1.2, False), (None, True)]:
        task = Task.from_json({**BASE, "clip_norm": clip})
        prepared = SimpleNamespace(num_examples=17, within_clip=within, clip_norm=clip, body=b"FMU1")
        key = up.queue(task, "m", prepared)
        item = next(i for i in up.outbox.entries() if i.key == key)
        assert item.headers == upload_headers(version=3, num_examples=17, key=key, round_id="r_1",
                                              within_clip=None if clip is None else within)
        assert (HDR_WITHIN_CLIP in item.headers) == (clip is not None) and item.headers[HDR_IDEMPOTENCY] == key
    for e in _vectors()["headers"]["built"]:
        assert upload_headers(**e["args"]) == e["headers"], e["name"]
