"""Fixtures for the reliability and security suite.

Every test here talks to a real fedmark server over 127.0.0.1: either a
separate process (``servers`` — for SIGKILL and for comparing two servers that
start from the same copied state) or the app in a werkzeug thread with a
ManualClock (``clocked`` — deadlines move without sleeping).  Servers are ended
by pid at teardown.  The HTTP helpers are ``bench.fleet.Fleet``, shared with the
benchmarks.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from bench.fleet import Fleet, copy_server_dir
from server.testing import ServerProcess, start_server

#: Same admin token and noise secret on every server a test starts, so two servers
#: started from one copied data directory seed their DP noise identically.
ADMIN = "adm_" + "r" * 32
NOISE_SECRET = "reliability-noise-secret"
ENV = {"FEDMARK_NOISE_SECRET": NOISE_SECRET, "FEDMARK_RATE_LIMIT_PER_S": "10000",
       "FEDMARK_RATE_LIMIT_BURST": "10000", "FEDMARK_TICK_SECONDS": "0"}


class Servers:
    """Starts server processes for one test and ends every one of them (by pid) afterwards."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[ServerProcess] = []

    def start(self, name: str, data_dir: Path | None = None, **env: str) -> ServerProcess:
        srv = start_server(data_dir or self.tmp / name, admin_token=ADMIN, extra_env={**ENV, **env})
        self.started.append(srv)
        return srv

    def clone(self, srv: ServerProcess, name: str) -> ServerProcess:
        """Stop ``srv``, copy its data directory, restart it; start a second server on the copy."""
        srv.stop()
        dst = copy_server_dir(srv.data_dir, self.tmp / name)
        srv.restart()
        return self.start(name, dst)

    @staticmethod
    def fleet(srv: ServerProcess) -> Fleet:
        return Fleet(srv.base_url, srv.admin_token)

    def close(self) -> None:
        for s in self.started:
            try:
                s.stop()
            except Exception:  # noqa: BLE001 - keep ending the others
                s.kill()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    s = Servers(tmp_path)
    try:
        yield s
    finally:
        s.close()


@contextmanager
def clocked_app(tmp: Path, **overrides: Any) -> Iterator[tuple[Fleet, Any]]:
    """The app in a loopback werkzeug thread with a ManualClock; yields (fleet, clock)."""
    from werkzeug.serving import make_server

    from server.app import create_app
    from server.clock import ManualClock
    from server.config import TestingConfig

    clock = ManualClock(1_800_000_000.0)
    cfg = TestingConfig(DATA_DIR=str(tmp / "data"), DATABASE_URL=f"sqlite:///{tmp / 'clocked.db'}", ADMIN_TOKEN=ADMIN,
                        CLOCK=clock, NOISE_SECRET=NOISE_SECRET, **overrides)
    app = create_app(cfg)
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield Fleet(f"http://127.0.0.1:{srv.server_port}", ADMIN), clock
    finally:
        srv.shutdown()
        th.join(10)
        app.extensions["fedmark_rounds"].stop()
        app.extensions["fedmark_store"].dispose()


@pytest.fixture
def clocked(tmp_path: Path) -> Callable[..., Any]:
    return lambda **overrides: clocked_app(tmp_path, **overrides)


@pytest.fixture(scope="session")
def propensity_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real exported propensity trainer (TensorFlow -> ONNX via models.export), built once per session."""
    from models.export import export

    art = tmp_path_factory.mktemp("reliability-artifacts") / "propensity"
    export("propensity", art, seed=0)
    return art
