"""The ``fedmark`` command as a new user meets it: help that lists what it reads, views of the loop,
and errors that name the flag or setting to change (never a Python argument or an HTTP route).

Every command runs as a subprocess (``python -m fedmark_cli``) against a real ``fedmark server`` on
loopback; the TLS check talks https to that plain-HTTP server.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.config import Config
from server.testing import running_server

ROOT = Path(__file__).resolve().parents[2]


def fedmark(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fedmark_cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**base, **(env or {})}, cwd=cwd or ROOT)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    with running_server(tmp_path_factory.mktemp("cli-server")) as s:
        yield s


def admin(srv, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    return fedmark(*args, "--server", srv.base_url, "--token", token or srv.admin_token)


def test_version():
    out = fedmark("--version")
    assert out.returncode == 0
    from importlib import metadata

    assert out.stdout.strip().startswith(f"fedmark {metadata.version('fedmark')} (Python ")


def test_server_help_lists_every_variable_the_code_reads():
    text = fedmark("server", "--help").stdout
    listed = set(re.findall(r"^  (FEDMARK_[A-Z_]+)", text, re.M))
    read = set()
    for pkg in ("server", "edge_sdk", "fedmark_cli"):
        for path in (ROOT / pkg).rglob("*.py"):
            read |= set(re.findall(r"[\"'](FEDMARK_[A-Z][A-Z_]*)[\"']", path.read_text()))
    device_side = {"FEDMARK_APP_KEY", "FEDMARK_DEVICE_TOKEN"}  # flags of `fedmark device`, listed in its help
    assert read - device_side <= listed, f"read but not in `fedmark server --help`: {sorted(read - device_side - listed)}"
    assert set(Config._ENV) <= listed
    # defaults come from the Config class itself
    assert re.search(r"FEDMARK_RATE_LIMIT_PER_S\s+\(default: 5\.0\)", text)
    assert "production:" in text and "postgresql+psycopg://" in text


def test_device_help_shows_the_servers_port():
    text = fedmark("device", "train", "--help").stdout
    assert "http://127.0.0.1:8080" in text and ":8000" not in text
    assert "--wait-round" in text
    for var in ("FEDMARK_SERVER", "FEDMARK_APP_KEY", "FEDMARK_DEVICE_TOKEN"):  # the device side's variables
        assert var in text, var


def test_init_writes_a_private_env_file_and_refuses_to_overwrite_it(tmp_path: Path):
    out = fedmark("init", "--dir", str(tmp_path), env={"FEDMARK_PORT": "18123"})
    assert out.returncode == 0, out.stderr
    env_file = tmp_path / "fedmark.env"
    values = dict(l.split("=", 1) for l in env_file.read_text().splitlines() if l and not l.startswith("#"))
    assert re.fullmatch(r"adm_[\w-]{32}", values["FEDMARK_ADMIN_TOKEN"])
    assert values["FEDMARK_SERVER"] == "http://127.0.0.1:18123" and values["FEDMARK_PORT"] == "18123"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert "fedmark server" in out.stdout and "fedmark app-key" in out.stdout and "fedmark training" in out.stdout
    again = fedmark("init", "--dir", str(tmp_path))
    assert again.returncode != 0 and "--force" in again.stderr
    assert env_file.read_text().count(values["FEDMARK_ADMIN_TOKEN"]) == 1


def test_views_and_a_marketer_token(srv):
    status = admin(srv, "status")
    assert status.returncode == 0, status.stderr
    assert f"server {srv.base_url}: ok; 0 model(s)" in status.stdout and "fedmark publish" in status.stdout
    made = admin(srv, "token", "create", "--role", "marketer", "--name", "analyst")
    assert made.returncode == 0, made.stderr
    tok = json.loads(made.stdout)
    assert tok["role"] == "marketer" and tok["token"].startswith("mt_") and f"token revoke {tok['id']}" in made.stderr
    # a marketer token reads the views and the KPIs, and `kpis` says it may
    assert admin(srv, "status", token=tok["token"]).returncode == 0
    kp = admin(srv, "kpis", "--json", token=tok["token"])
    assert kp.returncode == 0 and json.loads(kp.stdout) == {"models": []}, kp.stderr
    assert "or a marketer token works" in " ".join(fedmark("kpis", "--help").stdout.split())
    unknown = admin(srv, "versions", "nosuch")
    assert unknown.returncode != 0 and "/v1/" not in unknown.stderr, unknown.stderr
    # a marketer may not issue tokens: the error names the role needed and the flag
    denied = admin(srv, "token", "create", token=tok["token"])
    assert denied.returncode != 0 and "admin token (--token)" in denied.stderr, denied.stderr


def test_a_wrong_token_names_the_flag_not_device_enrolment(srv):
    out = admin(srv, "kpis", token="mt_wrong")
    assert out.returncode != 0
    assert "--token" in out.stderr and "marketer" in out.stderr, out.stderr
    assert "enrol" not in out.stderr and "/v1/" not in out.stderr and "POST" not in out.stderr, out.stderr
    missing = fedmark("kpis", "--server", srv.base_url)
    assert "an admin or marketer token is needed" in missing.stderr and "fedmark init" in missing.stderr


def test_https_against_plain_http_fails_fast_and_names_the_url(srv):
    https = srv.base_url.replace("http://", "https://")
    t = time.perf_counter()
    dev = fedmark("device", "train", "--server", https, "--app-key", "ak_x", "--device-id", "d1", "--region", "eu",
                  "--data", "none.csv", "--model", "propensity")
    dt = time.perf_counter() - t
    assert dev.returncode == 1 and f"use the server URL {srv.base_url}" in dev.stderr, dev.stderr
    assert dt < 5.0, f"took {dt:.1f} s: the TLS failure was retried"
    adm = admin(srv, "status").args  # the admin commands say the same
    out = fedmark("status", "--server", https, "--token", srv.admin_token)
    assert out.returncode != 0 and f"--server {srv.base_url}" in out.stderr, (adm, out.stderr)


def test_plain_http_to_a_remote_host_names_the_flag(tmp_path: Path):
    out = fedmark("device", "score", "--server", "http://192.0.2.1:8080", "--app-key", "ak_x", "--device-id", "d1",
                  "--region", "eu", "--data", "x.csv", "--model", "propensity", "--storage", str(tmp_path))
    assert out.returncode == 1 and "--insecure-http" in out.stderr, out.stderr
    assert "allow_insecure_http" not in out.stderr and "server_url" not in out.stderr, out.stderr


def test_postgresql_url_without_driver_is_explained(tmp_path: Path):
    import importlib.util

    assert importlib.util.find_spec("psycopg2") is None, "this check is about the driver fedmark does not install"
    out = fedmark("server", "--data-dir", str(tmp_path), "--database-url", "postgresql://u:secret@127.0.0.1:5432/db",
                  timeout=60)
    assert out.returncode != 0
    assert "--database-url postgresql+psycopg://u:***@127.0.0.1:5432/db" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "secret" not in out.stderr
    env = fedmark("audit", "verify", "--database-url", "postgres://127.0.0.1/db")
    assert "postgresql+psycopg://127.0.0.1/db" in env.stderr and "Traceback" not in env.stderr, env.stderr


def test_server_messages_name_commands_not_routes():
    from server.cli import cli_message

    assert cli_message("unknown app key; ask an admin for one (POST /v1/admin/app-keys)") == \
        "unknown app key; ask an admin for one (fedmark app-key)"
    assert cli_message("revoke it with POST /v1/admin/tokens/7/revoke") == "revoke it with fedmark token revoke 7"
    assert cli_message("an admin reset (POST /v1/admin/devices/d-1/reset) lets it enrol") == \
        "an admin reset (fedmark device-admin reset d-1) lets it enrol"
    assert "/v1/" not in cli_message("see GET /v1/audit?after=3 and (POST /v1/admin/tick)")
