"""A server installed from the wheel (``pip install fedmark[server]``, no checkout) serves its own pages.

Why: a wheel without package data answered ``/train`` with 404 "trainer page file index.html is
missing from the installation".  Here the wheel is installed with its ``server`` extra into a clean
venv (uv, warm cache first, pinned by requirements.lock), ``fedmark server`` is started from that
venv in a neutral directory with nothing of the checkout importable, and the dashboard, the
``/train`` page and the JavaScript SDK modules it loads must all be served from site-packages.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from bench import venvs

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def installed_server(tmp_path_factory: pytest.TempPathFactory, built_wheel: dict):
    tmp = tmp_path_factory.mktemp("server-install")
    py = venvs.create(tmp / "venv", [f"{built_wheel['wheel']}[server]"], constraints=ROOT / "requirements.lock",
                      offline_first=True, timeout=300)
    work = tmp / "cwd"
    work.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": f"{py.parent}:/usr/bin:/bin", "HOME": str(tmp), "FEDMARK_ADMIN_TOKEN": "adm_install_test_0123456789"}
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen([str(py.parent / "fedmark"), "server", "--port", str(port), "--data-dir", str(tmp / "data")],
                            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if requests.get(base + "/v1/health", timeout=5).ok:
                    break
            except requests.RequestException:  # not listening yet, or busy migrating its new database
                pass
            assert proc.poll() is None, (tmp / "server.log").read_text()[-3000:]
            time.sleep(0.25)
        yield {"base": base, "py": py, "log": tmp / "server.log"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_the_installed_server_runs_from_site_packages(installed_server):
    out = subprocess.run([str(installed_server["py"]), "-c", "import server, edge_sdk; print(server.__file__)"],
                         capture_output=True, text=True, cwd="/", env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert "site-packages" in out.stdout and str(ROOT) not in out.stdout, out


@pytest.mark.parametrize("path,kind", [
    ("/dashboard", "text/html"), ("/dashboard/dashboard.js", "text/javascript"),
    ("/dashboard/vendor/chart.umd.min.js", "text/javascript"),
    ("/train", "text/html"), ("/train/app.js", "text/javascript"), ("/train/trainer.css", "text/css"),
    ("/train/sdk/index.js", "text/javascript"), ("/train/sdk/client.js", "text/javascript"),
])
def test_pages_and_sdk_modules_are_served_from_the_wheel(installed_server, path: str, kind: str):
    r = requests.get(installed_server["base"] + path, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    assert r.headers["Content-Type"].startswith(kind) and len(r.content) > 100


def test_onnxruntime_web_absent_from_the_wheel_is_a_503_naming_the_fix(installed_server):
    r = requests.get(installed_server["base"] + "/train/ort/ort.wasm.min.mjs", timeout=10)
    assert r.status_code == 503 and r.json()["error"]["code"] == "web_sdk_unavailable", r.text
