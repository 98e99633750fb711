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
