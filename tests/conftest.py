"""Suite-wide fixtures.

The process guard: TFF's C++ runtime starts a ``worker_binary`` that outlives
Python and can hold CI's output open until its time limit.  The code that starts
TFF must stop it (models.tff_runtime); this guard records such processes at the
start and fails the session if any new one is left at the end (after ending it,
by pid, so CI never hangs).
"""
from __future__ import annotations

import os
import signal

import pytest

GUARDED = ("worker_binary",)


def _guarded_pids() -> set[int]:
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(g in cmd for g in GUARDED):
            pids.add(int(entry))
    return pids


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config._fedmark_pids_before = _guarded_pids()  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = getattr(session.config, "_fedmark_pids_before", set())
    left = _guarded_pids() - before
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
