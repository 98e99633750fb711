"""Small statistics and table helpers shared by the benchmark scripts.

Why medians of interleaved repetitions: the machine is shared and noisy; running
system A's repetitions all first and B's after would fold a load change into
the ratio, while alternating A, B, A, B and taking medians does not.
"""
from __future__ import annotations

import statistics
from typing import Callable, Iterable, Sequence, TypeVar

T = TypeVar("T")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) — no interpolation, so p99 is an observed value."""
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return float(s[k])


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def interleave(systems: Sequence[str], repeats: int, run: Callable[[str, int], T]) -> dict[str, list[T]]:
    """Run ``run(system, repetition)`` as A B C, B C A, C A B … (rotated so no system is always first)."""
    out: dict[str, list[T]] = {s: [] for s in systems}
    for r in range(repeats):
        k = r % len(systems)
        for s in list(systems[k:]) + list(systems[:k]):
            out[s].append(run(s, r))
    return out


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table (what BENCHMARKS.md holds)."""
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
