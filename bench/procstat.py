"""CPU time and resident memory of a process, read from ``/proc`` (Linux).

Why ``/proc`` and not psutil: the numbers must be those of the *server*
process measured from outside it, cheaply enough to sample while it is under
load, and psutil would only wrap the same files.
"""
from __future__ import annotations

import os
from typing import Callable

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process (all its threads) has used so far."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read().decode()
    # the command name may hold spaces and parentheses: fields start after the last ')'
    fields = raw[raw.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _TICK


def descendants(pid: int) -> list[int]:
    """The pids of every live process below ``pid`` (a gunicorn master's workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read().decode()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _tree_sum(pid: int, measure: Callable[[int], float]) -> float:
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            total += measure(p)
        except OSError:  # a worker that exited between the listing and the read
            pass
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and every live process below it (the whole server, workers included)."""
    return _tree_sum(pid, cpu_seconds)


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and every live process below it."""
    return int(_tree_sum(pid, rss_bytes))


def rss_bytes(pid: int) -> int:
    """Resident set size now."""
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def peak_rss_bytes(pid: int) -> int:
    """High-water mark of the resident set (VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")
