"""Group commit: write jobs that arrive together share one transaction and one fsync.

Why: every durable acknowledgement (an update's 202, a task, an enrolment)
needs a committed transaction, and on SQLite each commit is an fsync under
the one write lock.  Committed one by one, concurrent uploads queue on that
lock and the disk flush.  Here a request thread hands its job to the
process's committer and waits; the committer takes whatever jobs are waiting
(up to ``max_batch``, waiting at most ``max_wait_s`` for stragglers after the
first) and runs them in **one** write transaction, each inside its own
SAVEPOINT, then commits once.  Every job's caller is answered only after that
commit, so "acknowledged" still means "durable", and a job that fails (a
duplicate, a closed round) is rolled back to its savepoint alone while the
others commit.

Jobs run in submission order on the committer's connection, so a job sees
the writes of the jobs before it in the same batch (the audit hash chain and
the round counters rely on that).  A job must not block on anything but the
database: it runs while the others in its batch wait.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from sqlalchemy import Connection

from server.storage.engine import Store

__all__ = ["GroupCommitter", "GroupStats"]

T = TypeVar("T")
log = logging.getLogger("fedmark.server.storage")


@dataclass
class GroupStats:
    """Counters for benchmarks and /metrics: how many jobs shared how many commits."""

    jobs: int = 0
    batches: int = 0
    failed_jobs: int = 0
    failed_batches: int = 0
    largest: int = 0

    @property
    def mean_batch(self) -> float:
        return self.jobs / self.batches if self.batches else 0.0


@dataclass
class _Job:
    fn: Callable[[Connection], Any]
    future: Future = field(default_factory=Future)


def _log_failure(future: "Future[Any]") -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("a queued group-commit job failed: %s", exc)


class GroupCommitter:
    """One committer thread per process and store; :meth:`run` is called from request threads."""

    def __init__(self, store: Store, *, max_batch: int = 64, max_wait_s: float = 0.002) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_s >= 0")
        self.store = store
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = GroupStats()
        self._queue: "queue.Queue[_Job | None]" = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._hooks: list[tuple[Callable[[Connection], None], Callable[[bool], None]]] = []

    def add_batch_hooks(self, before_commit: Callable[[Connection], None],
                        after_commit: Callable[[bool], None]) -> None:
        """Callbacks around every batch: ``before_commit(conn)`` after its jobs, inside the transaction
        (an exception there fails the whole batch); ``after_commit(committed)`` once the outcome is known.

        Used by state that jobs build up in memory during a batch (the running sums of open
        rounds): it is written once per batch, and kept only if the batch committed.
        """
        self._hooks.append((before_commit, after_commit))

    def run(self, fn: Callable[[Connection], T], timeout: float | None = 120.0) -> T:
        """Run ``fn(conn)`` in the next group transaction; returns its result after the commit.

        Raises what ``fn`` raised (its writes were rolled back, the others' were not), or the
        commit's error (then no job of that batch was committed).
        """
        job = _Job(fn)
        self._enqueue(job)
        return job.future.result(timeout)

    def submit(self, fn: Callable[[Connection], Any]) -> "Future[Any]":
        """Queue ``fn(conn)`` for the next group transaction without waiting for it.

        For records whose caller's answer does not depend on their durability (a device's
        download on the audit trail): the request is answered at once, the record commits
        with the next batch, a few milliseconds later.  :meth:`close` (a graceful stop)
        still writes it; a crash in between loses it.  A failure is logged.
        """
        job = _Job(fn)
        job.future.add_done_callback(_log_failure)
        self._enqueue(job)
        return job.future

    def flush(self, timeout: float | None = 120.0) -> None:
        """Wait until every job queued before this call has committed (jobs run in order)."""
        self.run(lambda _conn: None, timeout)

    def _enqueue(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the group committer is closed")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="fedmark-group-commit", daemon=True)
                self._thread.start()
            self._queue.put(job)

    def close(self) -> None:
        """Finish the queued jobs and stop the thread."""
        with self._lock:
            self._closed = True
            self._queue.put(None)
            thread = self._thread
        if thread is not None:
            thread.join(30)

    def _after(self, committed: bool) -> None:
        for _before, after in self._hooks:
            try:
                after(committed)
            except Exception:  # a hook must not keep the callers waiting
                log.exception("group commit after-hook failed")

    # ------------------------------------------------------------------ committer thread
    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._commit(batch)

    def _commit(self, batch: list[_Job]) -> None:
        results: list[tuple[_Job, bool, Any]] = []
        try:
            with self.store.write() as conn:
                for job in batch:
                    sp = conn.begin_nested()
                    try:
                        value = job.fn(conn)
                    except BaseException as exc:  # noqa: BLE001 - handed to the job's caller
                        sp.rollback()
                        results.append((job, False, exc))
                    else:
                        sp.commit()
                        results.append((job, True, value))
                for before, _after in self._hooks:
                    before(conn)
        except BaseException as exc:  # noqa: BLE001 - the commit failed: nobody's writes are durable
            log.warning("group commit of %d job(s) failed: %s", len(batch), exc)
            self.stats.failed_batches += 1
            self._after(False)
            for job in batch:
                job.future.set_exception(exc)
            return
        self._after(True)
        self.stats.batches += 1
        self.stats.jobs += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        for job, ok, value in results:
            if ok:
                job.future.set_result(value)
            else:
                self.stats.failed_jobs += 1
                job.future.set_exception(value)
