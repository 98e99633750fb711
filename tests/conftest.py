"""Suite-wide fixtures.

The process guard: TFF's C++ runtime starts a ``worker_binary`` that outlives
Python and can hold CI's output open until its time limit.  The code that starts
TFF must stop it (models.tff_runtime); this guard (which also watches the servers tests start)
fails the session if one is left at the end (after ending it,
by pid, so CI never hangs).  Only processes carrying this session's marker in
their environment count: every process the suite starts inherits it (even one
orphaned to init), while other sessions' processes on the same machine do not.
"""
from __future__ import annotations

import os
import signal
import uuid

import pytest
from hypothesis import settings

# CI replays the same generated examples every run (a red CI then means a real regression, not
# an unlucky draw); local runs stay random and keep exploring new inputs.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

GUARDED = ("worker_binary", "fedmark server", "gunicorn")
MARKER = "FEDMARK_TEST_SESSION"


def _guarded_pids(marker: str) -> set[int]:
    tag = f"{MARKER}={marker}".encode()
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if not any(g in cmd for g in GUARDED):
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if tag in f.read().split(b"\0"):
                    pids.add(int(entry))
        except OSError:
            continue
    return pids


def pytest_sessionstart(session: pytest.Session) -> None:
    os.environ.setdefault(MARKER, uuid.uuid4().hex)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = _guarded_pids(os.environ[MARKER])
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        session.exitstatus = 1
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr:
            tr.write_line(f"FAIL: the suite left {len(left)} worker process(es) running: {sorted(left)} (ended now)", red=True)
