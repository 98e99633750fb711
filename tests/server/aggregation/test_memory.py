"""Streaming keeps server memory O(parameters), independent of the number of clients.

tracemalloc sees numpy's data buffers.  The update vectors themselves come from
a small pre-allocated pool (as if each were decoded from a request body and
freed again), so what is measured is the aggregation's own extra memory: the
float64 running sum (2 x the float32 vector), float64 slices of 16k entries
while folding, and at finish the float32 result (1x) plus one noise slice.
The bound of 4 x the vector size is that budget plus the slices (0.66x at
100k parameters); what matters most is that 2,000 clients cost the same as 200.
"""
from __future__ import annotations

import tracemalloc

import numpy as np

from server.aggregation import dp_fedavg

N = 100_000
VEC_BYTES = N * 4


def _peak(clients: int, pool: list[np.ndarray]) -> tuple[int, np.ndarray]:
    pipe = dp_fedavg(1.0, clients, clip=0.5, adaptive=True)
    state = pipe.initialize(np.zeros(1, np.float32))   # optimizer slots are not what we measure
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        acc = pipe.start(state, N)
        for i in range(clients):
            acc.add(pool[i % len(pool)], weight=float(1 + i % 50), within_clip=bool(i % 2))
        res = pipe.aggregator.finish(state.aggregator, acc, np.random.default_rng(0))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, res.delta


def test_peak_memory_is_a_few_vectors_and_flat_in_the_number_of_clients():
    rng = np.random.default_rng(0)
    pool = [rng.normal(size=N).astype(np.float32) * 0.01 for _ in range(4)]
    peak_200, d200 = _peak(200, pool)
    peak_2000, d2000 = _peak(2000, pool)
    print(f"peak extra memory: 200 clients {peak_200 / VEC_BYTES:.2f} x vector, "
          f"2000 clients {peak_2000 / VEC_BYTES:.2f} x vector ({VEC_BYTES / 1e6:.1f} MB vector)")
    assert peak_2000 < 4 * VEC_BYTES
    assert abs(peak_2000 - peak_200) < 0.05 * VEC_BYTES
    # 2000 clients really were summed (mean of clipped updates + noise/2000 has a sensible size)
    assert np.isfinite(d2000).all() and np.linalg.norm(d2000) < np.linalg.norm(d200)
