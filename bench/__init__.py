"""Benchmarks against peers (``python bench/<name>.py``) and the helpers the reliability suite shares.

Every script starts the systems it compares itself, on 127.0.0.1, bounded in
count and time, ends every process it started by pid, and prints ratios from
interleaved repetitions (medians).  ``BENCHMARKS.md`` records the figures with
the command that reproduces each.
"""

import signal as _signal
import sys as _sys


def exit_on_sigterm() -> None:
    """Turn SIGTERM (e.g. from ``timeout``) into SystemExit so ``finally`` blocks end the servers a script started."""
    _signal.signal(_signal.SIGTERM, lambda *_: _sys.exit(143))
