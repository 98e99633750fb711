"""Where simulated devices run: this process, a pool of local processes, or a Ray cluster.

Why an engine is only "run these batches": the round loop (selection, the
server's fold, evaluation) stays in one place, :mod:`simulate.federation`,
and an engine only decides where :func:`simulate.client.run_batch` executes.
Each worker loads the artifact once and receives the fleet's data once (fork
inheritance locally, the object store on Ray); per round it receives the
global parameters and a list of (device, seed) jobs and returns one partial
tally, so the traffic per round is O(workers x parameters), not O(devices).

Ray (``--engine ray``) is an optional extra (``pip install fedmark[sim]``):
imported only when that engine is chosen.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any, Protocol, Sequence

from edge_sdk.trainer import Trainer
from simulate.client import BatchResult, Job, RoundSpec, run_batch

__all__ = ["EngineError", "Engine", "InlineEngine", "ProcessEngine", "RayEngine", "make_engine", "split"]


class EngineError(RuntimeError):
    """The engine cannot start (e.g. Ray is not installed); the message says how to fix it."""


class Engine(Protocol):
    workers: int

    def run(self, spec: RoundSpec, batches: Sequence[Sequence[Job]]) -> list[BatchResult]: ...

    def close(self) -> None: ...


def split(jobs: Sequence[Job], parts: int) -> list[list[Job]]:
    """Contiguous, nearly equal batches (order kept, so the merge order is deterministic)."""
    parts = max(1, min(parts, len(jobs)))
    size, extra = divmod(len(jobs), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        out.append(list(jobs[start:end]))
        start = end
    return [b for b in out if b]


class InlineEngine:
    """Everything in this process (debugging, tiny fleets, and the reference the others must equal)."""

    workers = 1

    def __init__(self, artifact: str, data: Sequence[Any]) -> None:
        self.trainer = Trainer(artifact)
        self.data = data

    def run(self, spec: RoundSpec, batches: Sequence[Sequence[Job]]) -> list[BatchResult]:
        return [run_batch(self.trainer, self.data, spec, b) for b in batches]

    def close(self) -> None:
        pass


_WORKER: dict[str, Any] = {}


def _init_worker(artifact: str, data: Sequence[Any] | None) -> None:
    _WORKER["trainer"] = Trainer(artifact)
    if data is not None:
        _WORKER["data"] = data


def _work(args: tuple[RoundSpec, list[Job]]) -> BatchResult:
    spec, jobs = args
    return run_batch(_WORKER["trainer"], _WORKER["data"], spec, jobs)


class ProcessEngine:
    """A pool of local worker processes, one ONNX Runtime session set each (the default engine).

    On Linux the pool forks, so the fleet's data is inherited, not pickled.
    """

    def __init__(self, artifact: str, data: Sequence[Any], workers: int | None = None) -> None:
        self.workers = max(1, workers or (os.cpu_count() or 1))
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        if method == "fork":
            _WORKER["data"] = data   # inherited by the forked workers
            self.pool = ctx.Pool(self.workers, initializer=_init_worker, initargs=(artifact, None))
        else:
            self.pool = ctx.Pool(self.workers, initializer=_init_worker, initargs=(artifact, data))

    def run(self, spec: RoundSpec, batches: Sequence[Sequence[Job]]) -> list[BatchResult]:
        return self.pool.map(_work, [(spec, list(b)) for b in batches], chunksize=1)

    def close(self) -> None:
        self.pool.close()
        self.pool.join()
        _WORKER.pop("data", None)


class RayEngine:
    """Ray actors, one per worker, each holding the artifact; the fleet's data goes to the object store once.

    ``address``: an existing cluster (``ray://…`` or ``auto``); None starts a local Ray instance
    with ``workers`` CPUs, which :meth:`close` shuts down.
    """

    def __init__(self, artifact: str, data: Sequence[Any], workers: int | None = None,
                 address: str | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise EngineError("--engine ray needs Ray: pip install 'fedmark[sim]' (or pip install ray)") from exc
        self.ray = ray
        self.workers = max(1, workers or (os.cpu_count() or 1))
        self._owns = not ray.is_initialized()
        if self._owns:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address is None:
                kwargs["num_cpus"] = self.workers
            ray.init(address=address, **kwargs)
        actor = ray.remote(num_cpus=1)(_RayWorker)
        data_ref = ray.put(list(data))
        self.actors = [actor.remote(artifact, data_ref) for _ in range(self.workers)]

    def run(self, spec: RoundSpec, batches: Sequence[Sequence[Job]]) -> list[BatchResult]:
        spec_ref = self.ray.put(spec)
        futures = [self.actors[i % len(self.actors)].run.remote(spec_ref, list(b)) for i, b in enumerate(batches)]
        return list(self.ray.get(futures))

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
        if self._owns:
            self.ray.shutdown()


class _RayWorker:
    """The body of a Ray actor (made remote in :class:`RayEngine`, so importing this module needs no Ray)."""

    def __init__(self, artifact: str, data: Sequence[Any]) -> None:
        self.trainer = Trainer(artifact)
        self.data = data

    def run(self, spec: RoundSpec, jobs: list[Job]) -> BatchResult:
        return run_batch(self.trainer, self.data, spec, jobs)


def make_engine(name: str, artifact: str, data: Sequence[Any], *, workers: int | None = None,
                address: str | None = None) -> Engine:
    if name == "inline":
        return InlineEngine(artifact, data)
    if name == "processes":
        return ProcessEngine(artifact, data, workers)
    if name == "ray":
        return RayEngine(artifact, data, workers, address)
    raise EngineError(f"--engine must be 'processes', 'ray' or 'inline', got {name!r}")
