"""Real ``fedmark`` processes: two servers on one PostgreSQL closing each round exactly once, and the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from fedmark.contract import encode_update
from server.registry.artifacts import write_archive
from server.testing import REPO_ROOT, make_artifact, running_server, start_server

N = 15


def _h(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def _upload(url: str, tok: str, task: dict, vec: np.ndarray) -> requests.Response:
    return requests.post(url + task["upload_url"], data=encode_update(vec), timeout=60, headers={
        **_h(tok), "Content-Type": "application/vnd.fedmark.update", "X-Fedmark-Model-Version": str(task["version"]),
        "X-Fedmark-Num-Examples": "10", "X-Fedmark-Within-Clip": "1", "Idempotency-Key": uuid.uuid4().hex})


@pytest.mark.postgres
def test_two_processes_on_one_postgres_close_each_round_exactly_once(tmp_path: Path, pg_url: str):
    token = "adm_" + uuid.uuid4().hex
    data = tmp_path / "shared"  # artifact files are shared; the database is the only coordination
    a = start_server(data, database_url=pg_url, admin_token=token, extra_env={"FEDMARK_TICK_SECONDS": "0.2"})
    try:
        b = start_server(data, database_url=pg_url, admin_token=token, extra_env={"FEDMARK_TICK_SECONDS": "0.2"})
        try:
            urls = [a.base_url, b.base_url]
            H = _h(token)
            art = make_artifact(tmp_path / "art")
            assert requests.post(urls[0] + "/v1/models/toy/versions", data=write_archive(str(art)), timeout=30,
                                 headers={**H, "Content-Type": "application/gzip"}).status_code == 201
            goal = 8
            assert requests.put(urls[1] + "/v1/models/toy/training", headers=H, timeout=30, json={
                "goal": goal, "min_clients": goal, "over_select": 1.0, "deadline_s": 600,
                "clip": {"norm": 100.0}}).status_code == 200
            ak = requests.post(urls[0] + "/v1/admin/app-keys", json={"region": "eu"}, headers=H, timeout=30).json()["app_key"]
            toks = [requests.post(urls[i % 2] + "/v1/devices/enroll", timeout=30,
                                  json={"app_key": ak, "device_id": f"d{i}", "region": "eu"}).json()["device_token"]
                    for i in range(goal)]
            base = np.frombuffer(requests.get(urls[0] + "/v1/models/toy/versions/1/files/params.bin", headers=H,
                                              timeout=30).content, "<f4")
            for rnd in range(3):
                # tasks are requested concurrently from both processes: exactly `goal` handed out, one round
                with ThreadPoolExecutor(goal) as pool:
                    tasks = list(pool.map(lambda i: requests.post(urls[i % 2] + "/v1/tasks", json={"model": "toy"},
                                                                  headers=_h(toks[i]), timeout=60), range(goal)))
                assert [t.status_code for t in tasks] == [200] * goal, [t.text for t in tasks]
                tasks_j = [t.json() for t in tasks]
                assert len({t["round_id"] for t in tasks_j}) == 1 and tasks_j[0]["version"] == rnd + 1
                vecs = [np.full(N, 0.01 * (i + 1), np.float32) for i in range(goal)]
                with ThreadPoolExecutor(goal) as pool:
                    ups = list(pool.map(lambda i: _upload(urls[(i + 1) % 2], toks[i], tasks_j[i], vecs[i]), range(goal)))
                assert [u.status_code for u in ups] == [202] * goal, [u.text for u in ups]
                rid = tasks_j[0]["round_id"]
                for url in urls:
                    info = requests.get(f"{url}/v1/rounds/{rid}", headers=H, timeout=30).json()
                    assert info["state"] == "closed" and info["accepted"] == goal and info["result_version"] == rnd + 2
            model = requests.get(urls[1] + "/v1/models/toy", headers=H, timeout=30).json()
            assert [v["version"] for v in model["versions"]] == [1, 2, 3, 4]  # one version per round, no duplicates
            assert all(v["contributors"] == goal for v in model["versions"][1:])
            assert [h["kind"] for h in model["history"]].count("round") == 3
            final = np.frombuffer(requests.get(urls[1] + "/v1/models/toy/versions/4/files/params.bin", headers=H,
                                               timeout=30).content, "<f4")
            np.testing.assert_allclose(final - base, 3 * np.mean([0.01 * (i + 1) for i in range(goal)]), rtol=1e-4)
        finally:
            b.stop()
    finally:
        a.stop()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "fedmark_cli", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=str(REPO_ROOT))


def test_cli_publish_training_app_key_and_rollback(tmp_path: Path):
    art = make_artifact(tmp_path / "art", "propensity")
    with running_server(tmp_path / "srv") as srv:
        common = ["--server", srv.base_url, "--token", srv.admin_token]
        out = _cli("publish", str(art), *common)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["version"] == 1
        out = _cli("publish", str(art), "--model", "other", *common)
        assert out.returncode == 0 and json.loads(out.stdout)["model"] == "other"
        make_artifact(art, "propensity", seed=5)
        assert json.loads(_cli("publish", str(art), *common).stdout)["version"] == 2
        out = _cli("training", "propensity", "--set", '{"goal": 2, "min_clients": 1}', *common)
        assert out.returncode == 0 and json.loads(out.stdout)["goal"] == 2, out.stderr
        out = _cli("app-key", "--partner", "acme", "--region", "eu", *common)
        assert json.loads(out.stdout)["app_key"].startswith("ak_")
        assert json.loads(out.stdout)["region"] == "eu"
        out = _cli("rollback", "propensity", "1", *common)
        assert out.returncode == 0 and json.loads(out.stdout)["current_version"] == 1
        bad = _cli("rollback", "propensity", "9", *common)
        assert bad.returncode != 0 and "unknown_version" in bad.stderr
        wrong = _cli("publish", str(art), "--server", srv.base_url, "--token", "nope")
        assert wrong.returncode != 0 and "bad_token" in wrong.stderr
        (art / "params.bin").write_bytes(b"\0" * 4)
        broken = _cli("publish", str(art), *common)
        assert broken.returncode != 0 and "params.bin" in broken.stderr
        info = requests.get(srv.base_url + "/v1/models/propensity", headers=_h(srv.admin_token), timeout=30).json()
        assert info["current_version"] == 1 and len(info["versions"]) == 2
    assert not srv.alive()
