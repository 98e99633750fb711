"""Fixtures for the edge SDK tests.

``scripted_server``: a real ``http.server`` on a free loopback port whose
answers a test scripts as a function of the request.  It exercises the SDK's
transport over real sockets (timeouts, retries, Retry-After) in situations the
real fedmark server cannot be made to produce on demand (a 503 storm, a hung
socket).  Every request is recorded with its arrival time.
"""
from __future__ import annotations

import http.client
import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy
import onnxruntime
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
LEAN = ROOT / ".venv-lean-sdk"
UV = Path(sys.executable).parent / "uv"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay: float = 0.0


class ScriptedServer:
    Reply = Reply  # tests build answers as scripted_server.Reply(status, body, headers, delay)

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.handler: Callable[[Seen], Reply] = lambda req: Reply()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                req = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                           time.monotonic())
                outer.requests.append(req)
                reply = outer.handler(req)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    if reply.status != 304:
                        self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    try:
        yield srv
    finally:
        srv.close()


@dataclass(frozen=True)
class Artifacts:
    propensity: str
    recommender: str
    retail: object  # models.data.RetailData restricted to the recommender's items


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """Real exported trainer artifacts (TensorFlow → ONNX via models.export), built once per session.

    The recommender is exported over the Online Retail items bought by at least
    200 customers, to keep the catalogue small and the tests fast.
    """
    from models.data import load_retail
    from models.export import export

    root = tmp_path_factory.mktemp("artifacts")
    retail = load_retail(min_item_count=200)
    export("propensity", root / "propensity", seed=0)
    export("recommender", root / "recommender", seed=0, items=retail.items)
    return Artifacts(str(root / "propensity"), str(root / "recommender"), retail)


@pytest.fixture(scope="session")
def lean_python() -> Path:
    """A venv under the checkout with only numpy + onnxruntime (pinned to this env's versions, warm uv cache)."""
    py = LEAN / "bin" / "python"
    stamp = LEAN / ".ready"
    if not stamp.exists():
        subprocess.run([str(UV), "venv", "--quiet", "--python", sys.executable, str(LEAN)], check=True, timeout=120)
        subprocess.run([str(UV), "pip", "install", "--quiet", "--python", str(py),
                        f"numpy=={numpy.__version__}", f"onnxruntime=={onnxruntime.__version__}"],
                       check=True, timeout=300)
        stamp.write_text("ok\n")
    return py


def lean_env() -> dict[str, str]:
    """Environment for SDK subprocesses: the checkout on PYTHONPATH, nothing else inherited that could leak in."""
    return {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}


# --------------------------------------------------------------------------- the real server
def artifact_tgz(directory: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in sorted(os.listdir(directory)):
            tar.add(os.path.join(directory, name), arcname=name)
    return buf.getvalue()


class Admin:
    """The few admin calls the SDK tests need, straight from docs/API.md."""

    def __init__(self, base_url: str, token: str) -> None:
        self.url = base_url
        self.h = {"Authorization": f"Bearer {token}"}

    def _ok(self, r: requests.Response) -> Any:
        assert r.status_code < 300, f"{r.request.method} {r.url}: {r.status_code} {r.text}"
        return r.json()

    def publish(self, model: str, artifact_dir: str) -> int:
        r = requests.post(f"{self.url}/v1/models/{model}/versions", data=artifact_tgz(artifact_dir),
                          headers={**self.h, "Content-Type": "application/gzip"}, timeout=60)
        return int(self._ok(r)["version"])

    def training(self, model: str, **cfg: Any) -> dict:
        body = {"goal": 3, "min_clients": 1, "clip": {"norm": 1.0, "adaptive": False}, **cfg}
        return self._ok(requests.put(f"{self.url}/v1/models/{model}/training", json=body, headers=self.h, timeout=30))

    def app_key(self, region: str = "eu") -> str:
        """A new app key for devices of ``region`` (keys are issued per region: the key decides it)."""
        return self._ok(requests.post(f"{self.url}/v1/admin/app-keys", json={"partner": "default", "region": region},
                                      headers=self.h, timeout=30))["app_key"]

    def round(self, round_id: str) -> dict:
        return self._ok(requests.get(f"{self.url}/v1/rounds/{round_id}", headers=self.h, timeout=30))

    def model(self, model: str) -> dict:
        return self._ok(requests.get(f"{self.url}/v1/models/{model}", headers=self.h, timeout=30))


@pytest.fixture(scope="module")
def fedmark_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real ``fedmark server`` process (SQLite, free loopback port), one per test module, ended by pid."""
    from server.testing import running_server

    with running_server(tmp_path_factory.mktemp("server")) as srv:
        yield srv.base_url, srv.admin_token


@pytest.fixture(scope="module")
def admin(fedmark_server: tuple[str, str]) -> Admin:
    return Admin(*fedmark_server)


# --------------------------------------------------------------------------- a loopback proxy
class Proxy:
    """A man-in-the-middle between a device and the real server, on loopback.

    Pass-through by default.  Switches let a test reproduce what the field does
    to devices: ``tamper_files`` flips a byte of every artifact file
    (corruption/tampering in transit); ``uploads`` = "refuse" drops upload
    connections without an answer (network loss), "hold" or "forward-hold"
    stall the upload (the latter after delivering it to the server) until
    ``release`` is set — the moment a test kills the device process.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.tamper_files = False
        self.uploads = "pass"
        self.upload_seen = threading.Event()
        self.release = threading.Event()
        self.forwarded: list[int] = []
        self.log: list[tuple[float, str, int, str | None]] = []  # (time, "METHOD path", status, Retry-After)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(outer.upstream.hostname, outer.upstream.port, timeout=60)
                try:
                    hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body or None, headers=hdrs)
                    r = conn.getresponse()
                    return r.status, r.getheaders(), r.read()
                finally:
                    conn.close()

            def _serve(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                is_upload = self.command == "POST" and self.path.endswith("/updates")
                if is_upload and outer.uploads == "refuse":
                    self.close_connection = True
                    return
                if is_upload and outer.uploads in ("hold", "forward-hold"):
                    answer = self._forward(body) if outer.uploads == "forward-hold" else None
                    if answer:
                        outer.forwarded.append(answer[0])
                    outer.upload_seen.set()
                    outer.release.wait(60)
                    self.close_connection = True
                    return
                status, headers, data = self._forward(body)
                outer.log.append((time.monotonic(), f"{self.command} {self.path}", status,
                                  next((v for k, v in headers if k.lower() == "retry-after"), None)))
                if outer.tamper_files and "/files/" in self.path and status == 200 and data:
                    data = data[:-1] + bytes([data[-1] ^ 0x01])
                try:
                    self.send_response(status)
                    for k, v in headers:
                        if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if status != 304:
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def proxy(fedmark_server: tuple[str, str]) -> Iterator[Proxy]:
    p = Proxy(fedmark_server[0])
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(scope="session")
def bank_rows() -> list[dict]:
    """Real Bank Marketing records (examples/data, CC BY 4.0), read through the SDK's own CSV reader."""
    from edge_sdk.data import load_records

    return [dict(r) for r in load_records(ROOT / "examples" / "data" / "bank-full.csv.gz")[:3000]]

