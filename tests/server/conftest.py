"""Fixtures for the server tests: a database per test (SQLite or PostgreSQL) and a live server.

``live`` runs the real app in a werkzeug server thread on a loopback port with a
ManualClock (fast; deadlines move without sleeping).  Tests that need a real
process (SIGKILL, two processes) use ``server.testing.start_server``.
Every database-backed test runs on both SQLite and the PostgreSQL at
127.0.0.1:5432 (a fresh database per test, dropped afterwards).
"""
from __future__ import annotations

import secrets
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import requests

from fedmark.contract import UPDATE_CONTENT_TYPE, encode_update

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database; yields its SQLAlchemy URL and drops it afterwards."""
    import psycopg

    name = "fedmark_t_" + secrets.token_hex(6)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fedmark.db'}"
    else:
        with pg_database() as url:
            yield url


class Live:
    """A running app plus small helpers that speak the HTTP API with ``requests``."""

    def __init__(self, base_url: str, admin_token: str, app: Any, clock: Any, tmp: Path) -> None:
        self.base_url = base_url
        self.admin_token = admin_token
        self.app = app
        self.clock = clock
        self.tmp = tmp
        self.http = requests.Session()
        self.app_keys: dict[str, str] = {}   # region -> app key of partner acme (keys are issued per region)
        self.device_secrets: dict[str, str] = {}  # device id -> the secret it enrols with (its proof on re-enrolment)

    def url(self, path: str) -> str:
        return self.base_url + path

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, self.url(path), headers=headers, timeout=30, **kw)

    def admin(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.call(method, path, self.admin_token, **kw)

    @property
    def metrics_token(self) -> str:
        return str(self.app.config["METRICS_TOKEN"])

    # --- registry
    def publish_dir(self, directory: Path, name: str | None = None, parent: int | None = None) -> requests.Response:
        from server.registry.artifacts import write_archive

        name = name or "toy"
        q = f"?parent={parent}" if parent is not None else ""
        return self.admin("POST", f"/v1/models/{name}/versions{q}", data=write_archive(str(directory)),
                          headers={"Content-Type": "application/gzip"})

    def publish(self, name: str = "toy", shapes: Any = ((4, 3), (3,)), seed: int = 0) -> dict[str, Any]:
        from server.testing import make_artifact

        d = make_artifact(self.tmp / f"art-{name}-{seed}-{uuid.uuid4().hex[:6]}", name, shapes, seed)
        r = self.publish_dir(d, name)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def train(self, name: str = "toy", **cfg: Any) -> dict[str, Any]:
        r = self.admin("PUT", f"/v1/models/{name}/training", json=cfg)
        assert r.status_code == 200, r.text
        return r.json()

    # --- devices
    def app_key(self, region: str = "eu") -> str:
        """The app key of partner acme's build for ``region`` (issued on first use)."""
        if region not in self.app_keys:
            r = self.admin("POST", "/v1/admin/app-keys", json={"partner": "acme", "region": region})
            assert r.status_code == 201, r.text
            self.app_keys[region] = r.json()["app_key"]
        return self.app_keys[region]

    def enroll(self, device_id: str, region: str = "eu") -> str:
        secret = self.device_secrets.setdefault(device_id, secrets.token_urlsafe(32))
        r = self.call("POST", "/v1/devices/enroll", json={"app_key": self.app_key(region), "device_id": device_id,
                                                          "region": region, "device_secret": secret})
        assert r.status_code == 201, r.text
        return r.json()["device_token"]

    def task(self, token: str, model: str = "toy") -> requests.Response:
        return self.call("POST", "/v1/tasks", token, json={"model": model})

    def upload(self, token: str, task: dict[str, Any], vec: np.ndarray | None = None, *, body: bytes | None = None,
               key: str | None = None, num_examples: int = 10, within: str | None = "1", version: int | None = None,
               content_type: str = UPDATE_CONTENT_TYPE, encoding: str = "f32",
               extra_headers: dict[str, str] | None = None) -> requests.Response:
        if body is None:
            assert vec is not None
            body = encode_update(vec, encoding, rng=np.random.default_rng(0))
        headers = {"Content-Type": content_type, "X-Fedmark-Model-Version": str(task["version"] if version is None else version),
                   "X-Fedmark-Num-Examples": str(num_examples), "Idempotency-Key": key or uuid.uuid4().hex}
        if within is not None:
            headers["X-Fedmark-Within-Clip"] = within
        headers.update(extra_headers or {})
        return self.call("POST", task["upload_url"], token, data=body, headers=headers)

    def model(self, name: str = "toy") -> dict[str, Any]:
        r = self.admin("GET", f"/v1/models/{name}")
        assert r.status_code == 200, r.text
        return r.json()

    def params(self, name: str, version: int) -> np.ndarray:
        m = self.admin("GET", f"/v1/models/{name}/versions/{version}/manifest").json()
        r = self.admin("GET", f"/v1/models/{name}/versions/{version}/files/params.bin")
        assert r.status_code == 200
        return np.frombuffer(r.content, dtype="<f4")

    def tick(self) -> None:
        assert self.admin("POST", "/v1/admin/tick").status_code == 200


@contextmanager
def live_app(db_url: str, tmp: Path, **overrides: Any) -> Iterator[Live]:
    from server.app import create_app
    from server.clock import ManualClock
    from server.config import TestingConfig
    from server.serving import make_dev_server

    clock = ManualClock(1_800_000_000.0)
    token = "adm_" + secrets.token_hex(8)
    overrides.setdefault("METRICS_TOKEN", "mtk_" + secrets.token_hex(8))  # /metrics has its own credential
    cfg = TestingConfig(DATA_DIR=str(tmp / "data"), DATABASE_URL=db_url, ADMIN_TOKEN=token, CLOCK=clock, **overrides)
    app = create_app(cfg)
    srv = make_dev_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield Live(f"http://127.0.0.1:{srv.server_port}", token, app, clock, tmp)
    finally:
        srv.shutdown()
        thread.join(10)
        app.extensions["fedmark_rounds"].stop()
        app.extensions["fedmark_store"].dispose()


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[Live]:
    with live_app(db_url, tmp_path) as lv:
        yield lv


def ones(n: int, scale: float = 0.1) -> np.ndarray:
    return np.full(n, scale, dtype=np.float32)


@pytest.fixture
def make_live(tmp_path: Path) -> Any:
    """``with make_live(RATE_LIMIT_BURST=3) as lv:`` - a live SQLite app with config overrides."""
    return lambda **overrides: live_app(f"sqlite:///{tmp_path / 'custom.db'}", tmp_path, **overrides)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (dropped afterwards)."""
    with pg_database() as url:
        yield url
