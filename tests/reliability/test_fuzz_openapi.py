"""Schemathesis against ``/v1/openapi.json`` of a running server: no request it generates may get a 5xx.

schemathesis needs typing-extensions >= 4.12 while TensorFlow 2.14 (in .venv)
needs < 4.6, so it runs from its own environment ``.venv-fuzz`` (created on
first use by bench/venvs.py) as a separate process against the server on
127.0.0.1.  Two passes: as the admin (every endpoint, deep validation paths)
and as an enrolled device (tasks, device-only paths).  The binary endpoints
(update upload, artifact publish) are excluded here — schemathesis cannot
generate their bodies — and fuzzed by tests/reliability/test_fuzz_server.py.
The run is bounded by examples per operation and by time, with a fixed seed.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import venvs


@pytest.mark.parametrize("role", ["admin", "device"])
def test_no_generated_request_gets_a_server_error(servers: Any, role: str, tmp_path: Path) -> None:
    st = venvs.ensure("fuzz").parent / "schemathesis"
    srv = servers.start("fuzz")
    f = servers.fleet(srv)
    f.publish_synthetic("toy", 20, tmp_path)
    f.train("toy", goal=3, min_clients=1)
    token = srv.admin_token if role == "admin" else f.enroll("fuzz-device")
    out = subprocess.run(
        [str(st), "run", srv.base_url + "/v1/openapi.json", "--checks", "not_a_server_error",
         "-H", f"Authorization: Bearer {token}", "--max-examples", "8", "--seed", "7", "--max-time", "25",
         "--phases", "examples,coverage,fuzzing", "--workers", "1", "--no-color", "--generation-database", "none",
         "--exclude-path-regex", r"^/v1/rounds/\{round_id\}/updates$|^/v1/models/\{name\}/versions$",
         "--request-timeout", "30", "--report", "junit", "--report-dir", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=240)
    assert "ST101" not in out.stdout and "Server error" not in out.stdout, out.stdout[-8000:]
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]
    assert "API Operations" in out.stdout and srv.alive()
