"""``fedmark server`` is gunicorn with one worker per core; its limits hold across the workers (Redis).

Real processes on loopback: the server under test is started exactly as an
operator starts it, and every process it made is checked to be gone at the end.
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from server.serving import default_workers
from server.testing import running_server


def _children(pid: int) -> list[int]:
    """The server's worker processes: its children running the same executable.

    Other children are short-lived helpers of libraries (numpy runs ``lscpu``
    while the deadline timer warms up the privacy accountant), not workers.
    """
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                same_program = os.readlink(f"/proc/{entry}/exe") == exe
            except OSError:
                continue
            if int(fields[1]) == pid and same_program:
                out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_default_is_gunicorn_sized_to_the_database_and_it_stops_cleanly(tmp_path: Path, request, database: str):
    """One worker per core on PostgreSQL; one (multi-threaded) worker on SQLite, whose single writer a second
    process would only queue behind."""
    url = request.getfixturevalue("pg_url") if database == "postgres" else None
    want = default_workers() if database == "postgres" else 1
    with running_server(tmp_path / "srv", database_url=url) as srv:
        deadline = time.monotonic() + 20
        while len(_children(srv.pid)) < want and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        workers = _children(srv.pid)
        assert len(workers) == want >= 1
        assert "gunicorn" in srv.log().lower()
        # a protocol-level refusal made by gunicorn itself still has the JSON error shape
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"GET /v1/health?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"414" and b"application/json" in head.lower()
        assert b'"uri_too_long"' in body
    assert not any(_alive(p) for p in [srv.pid, *workers]), "a server or worker process outlived stop()"


def test_dev_flag_runs_the_single_process_server(tmp_path: Path):
    with running_server(tmp_path / "srv", extra_args=["--dev"]) as srv:
        assert requests.get(srv.base_url + "/v1/health", timeout=10).status_code == 200
        assert _children(srv.pid) == []
        assert "development server" in srv.log()


def test_device_rate_limit_holds_across_worker_processes_with_redis(tmp_path: Path):
    burst = 6
    env = {"FEDMARK_RATE_LIMIT_STORAGE": "redis://127.0.0.1:6379/0",
           "FEDMARK_RATE_LIMIT_KEY_PREFIX": f"fedmark-test-{uuid.uuid4().hex}",
           "FEDMARK_RATE_LIMIT_PER_S": "0.1", "FEDMARK_RATE_LIMIT_BURST": str(burst)}
    with running_server(tmp_path / "srv", extra_env=env, extra_args=["--workers", "2"]) as srv:
        h = {"Authorization": f"Bearer {srv.admin_token}"}
        ak = requests.post(srv.base_url + "/v1/admin/app-keys", json={"region": "eu"}, headers=h, timeout=30).json()["app_key"]
        tok = requests.post(srv.base_url + "/v1/devices/enroll", timeout=30,
                            json={"app_key": ak, "device_id": "rl", "region": "eu"}).json()["device_token"]

        def call(_: int) -> int:
            # a new connection per request, so both workers take a share of them
            with requests.Session() as s:
                return s.get(srv.base_url + "/v1/models", headers={"Authorization": f"Bearer {tok}",
                                                                   "Connection": "close"}, timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(call, range(4 * burst)))
        assert codes.count(200) == burst, codes
        assert codes.count(429) == 3 * burst


def test_enrolment_is_rate_limited_per_client_address(tmp_path: Path):
    env = {"FEDMARK_ENROL_ADDRESS_LIMIT_PER_S": "0.01", "FEDMARK_ENROL_ADDRESS_LIMIT_BURST": "5"}
    with running_server(tmp_path / "srv", extra_env=env, extra_args=["--workers", "1"]) as srv:
        h = {"Authorization": f"Bearer {srv.admin_token}"}
        ak = requests.post(srv.base_url + "/v1/admin/app-keys", json={"region": "eu"}, headers=h, timeout=30).json()["app_key"]
        codes = [requests.post(srv.base_url + "/v1/devices/enroll", timeout=30,
                               json={"app_key": ak, "device_id": f"sybil-{i}", "region": "eu"}).status_code
                 for i in range(20)]
        assert codes == [201] * 5 + [429] * 15


def test_failed_authentication_is_rate_limited_per_client_address(tmp_path: Path):
    env = {"FEDMARK_AUTH_FAILURE_LIMIT_PER_S": "0.01", "FEDMARK_AUTH_FAILURE_LIMIT_BURST": "10"}
    with running_server(tmp_path / "srv", extra_env=env, extra_args=["--workers", "1"]) as srv:
        codes = [requests.get(srv.base_url + "/v1/models", headers={"Authorization": f"Bearer mt_guess{i}"},
                              timeout=30).status_code for i in range(15)]
        assert codes == [401] * 10 + [429] * 5
        # the right token from that address now waits too: guessing cannot be interleaved with real use
        r = requests.get(srv.base_url + "/v1/models", headers={"Authorization": f"Bearer {srv.admin_token}"},
                         timeout=30)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("dev", [False, True])
def test_request_logs_never_hold_a_token_and_answers_send_no_referrer(tmp_path: Path, dev: bool):
    """A token in a dashboard URL does not reach the log, and no page passes its URL on as a Referer."""
    secret = "mt_" + uuid.uuid4().hex
    args = ["--dev"] if dev else []
    with running_server(tmp_path / "srv", extra_args=args,
                        extra_env={"FEDMARK_ACCESS_LOG": "-"} if not dev else None) as srv:
        for path in (f"/dashboard?token={secret}&model=toy", f"/v1/models?token={secret}"):
            r = requests.get(srv.base_url + path, headers={"Authorization": f"Bearer {secret}"}, timeout=30)
            assert r.headers["Referrer-Policy"] == "no-referrer"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        requests.get(srv.base_url + "/v1/models", headers={"Authorization": f"Bearer {srv.admin_token}"}, timeout=30)
        time.sleep(0.5)
        log = srv.log()
        assert "/dashboard" in log, "the request was not logged at all: the check below would be vacuous"
        assert secret not in log and srv.admin_token not in log
