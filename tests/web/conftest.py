"""Shared fixtures for the JavaScript SDK's tests (tests/web).

The JavaScript tests are node's built-in test runner files under tests/web/js;
pytest drives them so `make test` covers both languages with one command.  The
node modules they need come from ``scripts/install_browser_deps.sh`` (the
Makefile's test target runs it); a missing install is a setup error with the
fix in its message, never a skip.
"""
from __future__ import annotations

import http.client
import http.server
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "edge_sdk" / "web"
JS_TESTS = Path(__file__).resolve().parent / "js"


@pytest.fixture(scope="session")
def node() -> str:
    exe = shutil.which("node")
    assert exe, "node (>= 20) is not on PATH; install Node.js 20 to run the JavaScript SDK tests"
    return exe


@pytest.fixture(scope="session")
def node_modules() -> Path:
    path = WEB / "node_modules"
    assert (path / "onnxruntime-node").is_dir() and (path / "onnxruntime-web").is_dir(), (
        f"{path} is missing or incomplete; run scripts/install_browser_deps.sh (make test does)")
    return path


@pytest.fixture(scope="session")
def js_tests() -> Path:
    return JS_TESTS


@pytest.fixture(scope="session")
def run_node(node: str) -> Callable[..., str]:
    """``run_node(files, env)`` runs ``node --test`` and returns its output; any failing test fails the caller."""
    return lambda files, env, timeout=110.0: _run_node_tests(node, files, env, timeout)


def _run_node_tests(node: str, files: list[Path], env: Mapping[str, str], timeout: float) -> str:
    full_env = {**os.environ, **env}
    cmd = [node, "--test", "--test-reporter=spec", *[str(f) for f in files]]
    proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        sys.stdout.write(output)
    assert proc.returncode == 0, f"node --test failed (exit {proc.returncode}):\n{output}"
    return output


def _export(family: str, out: Path) -> Path:
    """Export a trainer artifact in a child process (TensorFlow stays out of the test process)."""
    code = "import sys; from models.export import export; export(sys.argv[1], sys.argv[2], seed=0)"
    proc = subprocess.run([sys.executable, "-c", code, family, str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"exporting the {family} artifact failed:\n{proc.stderr[-4000:]}"
    assert (out / "manifest.json").is_file()
    return out


@pytest.fixture(scope="session")
def propensity_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export("propensity", tmp_path_factory.mktemp("artifact") / "propensity")


@pytest.fixture(scope="session")
def recommender_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export("recommender", tmp_path_factory.mktemp("artifact") / "recommender")


# --------------------------------------------------------------------------- the real server
@dataclass
class LiveModel:
    """A real fedmark server with ``model`` published from an exported artifact and a training round open."""

    base_url: str
    admin_token: str
    model: str
    version: int
    app_key: str
    artifact: Path

    def _h(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def round(self, round_id: str) -> dict[str, Any]:
        r = requests.get(f"{self.base_url}/v1/rounds/{round_id}", headers=self._h(), timeout=30)
        assert r.status_code == 200, r.text
        return r.json()


def _artifact_tgz(directory: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in sorted(os.listdir(directory)):
            tar.add(directory / name, arcname=name)
    return buf.getvalue()


@pytest.fixture(scope="module")
def live_model(tmp_path_factory: pytest.TempPathFactory, propensity_artifact: Path) -> Iterator[LiveModel]:
    """Start ``fedmark server`` (loopback, SQLite), publish the propensity artifact, open training (ended by pid)."""
    from server.testing import running_server

    with running_server(tmp_path_factory.mktemp("server")) as srv:
        h = {"Authorization": f"Bearer {srv.admin_token}"}
        r = requests.post(f"{srv.base_url}/v1/models/propensity/versions", data=_artifact_tgz(propensity_artifact),
                          headers={**h, "Content-Type": "application/gzip"}, timeout=60)
        assert r.status_code in (200, 201), r.text
        version = int(r.json()["version"])
        cfg = {"goal": 10, "min_clients": 1, "clip": {"norm": 0.5, "adaptive": False},
               "hyperparams": {"epochs": 2, "learning_rate": 0.1}}
        r = requests.put(f"{srv.base_url}/v1/models/propensity/training", json=cfg, headers=h, timeout=30)
        assert r.status_code == 200, r.text
        # the key of the "eu" build: every web test's device enrols in region eu (the key decides the region)
        r = requests.post(f"{srv.base_url}/v1/admin/app-keys", json={"partner": "default", "region": "eu"}, headers=h,
                          timeout=30)
        assert r.status_code == 201, r.text
        yield LiveModel(srv.base_url, srv.admin_token, "propensity", version, r.json()["app_key"], propensity_artifact)


def consented_bank_records(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """Real Bank Marketing records with a consent field: every 10th customer did not consent."""
    from models.data import load_bank, stratified_split

    records, _ = stratified_split(load_bank(), seed=seed)
    out = []
    for i, r in enumerate(records[:n]):
        out.append({**r, "consent": "analytics" if i % 10 == 9 else "propensity_scoring, analytics"})
    return out


@pytest.fixture(scope="session")
def bank_records() -> Callable[[int], list[dict[str, Any]]]:
    return consented_bank_records


def python_reference(artifact: Path, records: list[dict[str, Any]], orders: list[list[int]], lr: float,
                     clip_norm: float) -> Any:
    """The Python SDK's update for consented ``records`` trained in the explicit per-epoch ``orders``."""
    from edge_sdk.consent import has_consent
    from edge_sdk.trainer import Trainer
    from edge_sdk.update import build_update

    trainer = Trainer(artifact)
    used = [r for r in records if has_consent(r, trainer.manifest.purpose)]
    x, y, _ = trainer.manifest.schema().encode(used)
    old = trainer.initial_params()
    params = old
    for order in orders:
        o = np.asarray(order)
        params = trainer.train(params, (x[o], y[o]), epochs=1, lr=lr, shuffle=False).params
    return build_update(params, old, trainer.manifest.params, clip_norm=clip_norm, num_examples=len(used))


@pytest.fixture(scope="session")
def reference() -> Callable[..., Any]:
    return python_reference


# --------------------------------------------------------------------------- a same-origin page server
class PageServer:
    """Serves the test page, the SDK sources and onnxruntime-web's files, and forwards /v1/ to the real server.

    Why a forwarder: the fedmark server sends no CORS headers (devices are not
    web pages by default), so the page must reach it from its own origin; this
    loopback server passes /v1/ requests and answers through byte for byte.
    """

    ROUTES = {"/page/": Path(__file__).resolve().parent / "page", "/sdk/": WEB / "src",
              "/ort/": WEB / "node_modules" / "onnxruntime-web" / "dist",
              # the IAB's TC string library, for pages that decode strings themselves (cross-silo records)
              "/tcf/": WEB / "node_modules" / "@iabtechlabtcf" / "core" / "lib" / "mjs",
              # shared test steps, run by Node and by the page alike (sdk_parity_steps.mjs)
              "/js/": Path(__file__).resolve().parent / "js"}
    TYPES = {".html": "text/html; charset=utf-8", ".mjs": "text/javascript", ".js": "text/javascript",
             ".wasm": "application/wasm", ".map": "application/json", ".json": "application/json"}

    def __init__(self, upstream: str) -> None:
        up = urllib.parse.urlsplit(upstream)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 304 and self.command != "HEAD":
                    self.wfile.write(body)

            def _static(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                for prefix, root in outer.ROUTES.items():
                    if path.startswith(prefix):
                        target = (root / path[len(prefix):]).resolve()
                        if root.resolve() in target.parents and target.is_file():
                            ctype = outer.TYPES.get(target.suffix, "application/octet-stream")
                            self._reply(200, [("Content-Type", ctype), ("Cache-Control", "no-store")],
                                        target.read_bytes())
                            return
                self._reply(404, [("Content-Type", "text/plain")], b"not found")

            def _forward(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                try:
                    hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body, headers=hdrs)
                    r = conn.getresponse()
                    self._reply(r.status, r.getheaders(), r.read())
                finally:
                    conn.close()

            def _serve(self) -> None:
                try:
                    if self.path.startswith("/v1/"):
                        self._forward()
                    elif self.command in ("GET", "HEAD"):
                        self._static()
                    else:
                        self._reply(405, [("Content-Type", "text/plain")], b"method not allowed")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_HEAD = _serve

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def page_server(live_model: LiveModel, node_modules: Path) -> Iterator[PageServer]:
    srv = PageServer(live_model.base_url)
    try:
        yield srv
    finally:
        srv.close()
