"""The one door to TensorFlow Federated: import it here, and stop its worker.

Why: TFF 0.87's C++ execution context starts a ``worker_binary`` subprocess
(a gRPC executor service) on the first computation call and never stops it.
It outlives Python, keeps the parent's stdout/stderr open, and so can hold a
CI job's output pipe open until the job's time limit.  Every use of TFF in
this project goes through ``import_tff()`` / ``tff_session()``, which register
an exit hook that ends the workers this process started (by pid, never by
name), and ``stop_workers()`` does it on demand.

Implementation notes: workers are found as children of this process in
``/proc``.  They are stopped with SIGINT (what TFF itself sends), then SIGKILL
after a grace period, and are *not* reaped: TFF's own ``Popen`` object may
still wait on the pid, and reaping it first would make that call fail.  After
stopping, the default execution context is replaced so the next computation
starts a fresh worker instead of talking to a dead one.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import signal
import time
from typing import Any, Iterator

WORKER_NAME = "worker_binary"
_hook_registered = False


def _children(pid: int) -> list[int]:
    # TFF may spawn the worker from any thread, and /proc/<pid>/task/<tid>/children
    # lists only the children of that one thread: read every thread's list.
    out: set[int] = set()
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tids = []
    found_file = False
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                out.update(int(p) for p in f.read().split())
            found_file = True
        except OSError:
            continue
    if not found_file:
        # Kernels without the children files: scan every process's parent pid.
        out.update(int(e) for e in os.listdir("/proc") if e.isdigit() and _ppid(int(e)) == pid)
    return sorted(out)


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def worker_pids(parent: int | None = None) -> list[int]:
    """Live ``worker_binary`` processes that are children of ``parent`` (default: this process)."""
    parent = os.getpid() if parent is None else parent
    return [p for p in _children(parent) if WORKER_NAME in _cmdline(p) and _state(p) not in (None, "Z", "X")]


def _gone(pid: int) -> bool:
    return _state(pid) in (None, "Z", "X")


def stop_workers(grace: float = 5.0) -> list[int]:
    """End the TFF workers this process started; returns their pids."""
    pids = worker_pids()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if not _gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.05)
    if pids:
        _reset_context()
    return pids


def _reset_context() -> None:
    import sys

    tff = sys.modules.get("tensorflow_federated")
    if tff is not None:
        with contextlib.suppress(Exception):
            tff.backends.native.set_sync_local_cpp_execution_context()


def import_tff() -> Any:
    """Import ``tensorflow_federated`` with the worker clean-up hook registered."""
    global _hook_registered
    if not _hook_registered:
        atexit.register(stop_workers)
        _hook_registered = True
    import tensorflow_federated as tff

    return tff


@contextlib.contextmanager
def tff_session() -> Iterator[Any]:
    """``with tff_session() as tff: ...`` — the workers are stopped when the block ends."""
    tff = import_tff()
    try:
        yield tff
    finally:
        stop_workers()
