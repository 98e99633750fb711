"""Group commit: many writers, few transactions; a failing job alone is rolled back; ack means committed."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from server.storage import schema
from server.storage.engine import Store, make_engine, run_migrations
from server.storage.group import GroupCommitter


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path: Path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'g.db'}"
        yield _store(url, tmp_path)
    else:
        yield _store(request.getfixturevalue("pg_url"), tmp_path)


def _store(url: str, tmp: Path) -> Store:
    st = Store()
    st.engine = make_engine(url)
    run_migrations(st.engine, lock_dir=str(tmp))
    return st


def _insert(key: str):
    def job(conn):
        conn.execute(schema.settings.insert().values(key=key, value="v"))
        return key
    return job


def _count(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.settings)).scalar_one())


def test_concurrent_jobs_share_transactions_and_all_commit(store):
    gc = GroupCommitter(store, max_batch=32, max_wait_s=0.005)
    base = _count(store)
    with ThreadPoolExecutor(16) as pool:
        keys = list(pool.map(lambda i: gc.run(_insert(f"k{i}")), range(200)))
    assert keys == [f"k{i}" for i in range(200)]
    assert _count(store) == base + 200
    assert gc.stats.jobs == 200 and gc.stats.batches < 200 and gc.stats.largest > 1
    gc.close()


def test_a_failing_job_is_rolled_back_alone(store):
    gc = GroupCommitter(store, max_batch=8, max_wait_s=0.05)
    base = _count(store)
    gc.run(_insert("dup"))
    barrier = threading.Barrier(3)

    def submit(job):
        barrier.wait()
        return gc.run(job)

    with ThreadPoolExecutor(3) as pool:
        futs = [pool.submit(submit, _insert("a")), pool.submit(submit, _insert("dup")), pool.submit(submit, _insert("b"))]
        assert futs[0].result() == "a" and futs[2].result() == "b"
        with pytest.raises(Exception) as ei:
            futs[1].result()
    assert "unique" in str(ei.value).lower() or "duplicate" in str(ei.value).lower() or "integrity" in type(ei.value).__name__.lower()
    assert _count(store) == base + 3  # dup (first), a, b
    gc.close()


def test_result_is_returned_only_after_commit(store):
    gc = GroupCommitter(store, max_batch=4, max_wait_s=0.0)
    seen = []

    def job(conn):
        conn.execute(schema.settings.insert().values(key="late", value="v"))
        return "done"

    assert gc.run(job) == "done"
    with store.read() as conn:  # another connection sees it at once: it was committed before the answer
        seen.append(conn.execute(select(schema.settings.c.value).where(schema.settings.c.key == "late")).scalar_one())
    assert seen == ["v"]
    gc.close()
    with pytest.raises(RuntimeError):
        gc.run(job)


def test_submitted_jobs_do_not_wait_and_flush_sees_them_committed(store):
    gc = GroupCommitter(store, max_batch=8, max_wait_s=0.0)
    base = _count(store)
    started = threading.Event()
    release = threading.Event()

    def slow(conn):  # holds the committer: a submit behind it must return at once all the same
        started.set()
        release.wait(10)
        conn.execute(schema.settings.insert().values(key="slow", value="v"))

    gc.submit(slow)
    assert started.wait(10)
    fut = gc.submit(_insert("queued"))
    bad = gc.submit(_insert("slow"))  # duplicate key: fails alone, logged, nobody waits on it
    assert not fut.done()
    release.set()
    gc.flush()
    assert fut.result(0) == "queued" and bad.exception(0) is not None
    assert _count(store) == base + 2
    gc.close()
