"""Start a real ``fedmark server`` process for tests of any package.

Why a real process: the edge SDK, the demo and the server's own durability
tests must talk to the server over loopback HTTP exactly as devices do, and a
crash test needs a process it can SIGKILL.  Imports only the standard library
and ``requests``.

    from server.testing import running_server

    with running_server(tmp_path) as srv:          # free port, temp data dir, SQLite
        requests.get(srv.base_url + "/v1/health")
        srv.admin_token                              # the admin bearer token

    # pytest fixture in a conftest.py:
    @pytest.fixture
    def fedmark_server(tmp_path):
        with running_server(tmp_path / "server") as srv:
            yield srv.base_url, srv.admin_token
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the server retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A running ``fedmark server``; stop it with :meth:`stop` (SIGTERM) or :meth:`kill` (SIGKILL)."""

    base_url: str
    admin_token: str
    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[str]:
        """Unpack as ``base_url, admin_token = srv``."""
        return iter((self.base_url, self.admin_token))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a crash."""
        _signal_group(self.proc.pid, signal.SIGKILL)  # also worker processes left by a master that already died
        self.proc.wait(10)

    def restart(self, timeout: float = 30.0) -> "ServerProcess":
        """Start a new process with the same data dir, database, token and port."""
        if self.alive():
            self.stop()
        new = _launch(self.args, self.env, self.data_dir, self.port, self.admin_token, self.log_path, timeout)
        self.proc = new.proc
        return self


def _signal_group(pid: int, sig: int) -> None:
    """Signal the server and its worker processes: it was started as the leader of its own session."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _launch(args: list[str], env: dict[str, str], data_dir: Path, port: int, token: str, log_path: Path,
            timeout: float) -> ServerProcess:
    log_f = open(log_path, "ab")
    try:
        proc = subprocess.Popen(args, env=env, cwd=str(REPO_ROOT), stdout=log_f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        log_f.close()
    srv = ServerProcess(f"http://127.0.0.1:{port}", token, data_dir, port, proc, log_path, args, env)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"fedmark server exited with code {proc.returncode} during start-up:\n{srv.log()[-3000:]}")
        try:
            if requests.get(srv.base_url + "/v1/health", timeout=2).status_code == 200:
                return srv
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            srv.kill()
            raise RuntimeError(f"fedmark server did not answer /v1/health within {timeout:.0f} s:\n{srv.log()[-3000:]}")
        time.sleep(0.05)


def start_server(data_dir: str | os.PathLike[str] | None = None, *, database_url: str | None = None,
                 admin_token: str | None = None, port: int | None = None, extra_env: dict[str, str] | None = None,
                 extra_args: Sequence[str] = (), timeout: float = 30.0) -> ServerProcess:
    """Start ``fedmark server`` on a free loopback port and wait until ``/v1/health`` answers."""
    d = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="fedmark-server-"))
    d.mkdir(parents=True, exist_ok=True)
    token = admin_token or "adm_" + secrets.token_hex(16)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("FEDMARK_TICK_SECONDS", "1")
    # Test fleets enrol hundreds of devices from one loopback address; the tests of those limits set them.
    for var, value in (("FEDMARK_ENROL_ADDRESS_LIMIT_PER_S", "1000"), ("FEDMARK_ENROL_ADDRESS_LIMIT_BURST", "100000"),
                       ("FEDMARK_AUTH_FAILURE_LIMIT_PER_S", "1000"), ("FEDMARK_AUTH_FAILURE_LIMIT_BURST", "100000")):
        env.setdefault(var, value)
    env.update(extra_env or {})
    last: Exception | None = None
    for _ in range(3):  # the free port may be taken between free_port() and the bind
        p = port or free_port()
        args = [sys.executable, "-m", "fedmark_cli", "server", "--host", "127.0.0.1", "--port", str(p),
                "--data-dir", str(d), "--admin-token", token, *extra_args]
        if database_url:
            args += ["--database-url", database_url]
        try:
            return _launch(args, env, d, p, token, d / f"server-{p}.log", timeout)
        except RuntimeError as exc:
            last = exc
            if port is not None or "Address already in use" not in str(exc):
                raise
    raise RuntimeError(f"could not start the server: {last}")


@contextmanager
def running_server(data_dir: str | os.PathLike[str] | None = None, **kwargs: object) -> Iterator[ServerProcess]:
    """Context manager around :func:`start_server`; the process is ended (by pid) on exit."""
    srv = start_server(data_dir, **kwargs)  # type: ignore[arg-type]
    try:
        yield srv
    finally:
        srv.stop()


def placeholder_onnx(name: str, opset: int = 17) -> bytes:
    """A minimal well-formed ONNX model (an empty graph called ``name``), encoded by hand (no ``onnx`` here).

    The server checks every published graph parses as ONNX with allowed opsets;
    tests that never run the graphs publish these.
    """
    def field(num: int, payload: bytes) -> bytes:
        return _varint(num << 3 | 2) + _varint(len(payload)) + payload

    graph = field(2, name.encode())
    opset_id = _varint(2 << 3) + _varint(opset)
    return _varint(1 << 3) + _varint(8) + field(7, graph) + field(8, opset_id)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def make_artifact(directory: str | os.PathLike[str], model: str = "toy", shapes: Sequence[Sequence[int]] = ((4, 3), (3,)),
                  seed: int = 0, graph_bytes: bytes | None = None) -> Path:
    """Write a small valid trainer artifact (manifest + params.bin + placeholder graphs) for server tests.

    The server treats graphs as opaque files, so placeholder bytes suffice
    unless a test runs the graphs; the manifest and every hash are real.
    """
    import numpy as np

    from fedmark.contract import MANIFEST_FILE, Manifest, ParamSpec, sha256_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    specs = tuple(ParamSpec(f"p{i}", tuple(int(s) for s in shape)) for i, shape in enumerate(shapes))
    n = sum(s.size for s in specs)
    np.random.default_rng(seed).normal(0, 0.1, n).astype("<f4").tofile(d / "params.bin")
    for role in ("train", "infer"):
        body = graph_bytes if graph_bytes is not None else placeholder_onnx(f"placeholder {role} graph of {model}")
        (d / f"{role}.onnx").write_bytes(body)
    files = {f: sha256_file(d / f) for f in ("train.onnx", "infer.onnx", "params.bin")}
    m = Manifest(model=model, family="propensity", version=1, params=specs, batch_size=8,
                 graphs={"train": "train.onnx", "infer": "infer.onnx"}, files=files,
                 hyperparams={"epochs": 1, "learning_rate": 0.1}, clip_norm=1.0)
    (d / MANIFEST_FILE).write_text(m.dumps())
    return d
