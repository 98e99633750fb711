"""CPU time and resident memory of a process, read from ``/proc`` (Linux).

Why ``/proc`` and not psutil: the numbers must be those of the *server*
process measured from outside it, cheaply enough to sample while it is under
load, and psutil would only wrap the same files.
"""
from __future__ import annotations

import os

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
