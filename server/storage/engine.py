"""The database handle: engine set-up, transactions, migrations at start-up.

Why explicit write transactions: SQLite's default *deferred* transaction takes
the write lock only at the first write, and a reader that later writes can fail
at once with "database is locked" instead of waiting.  Every write transaction
here starts with ``BEGIN IMMEDIATE`` on SQLite (writers queue on the busy
timeout) and a plain ``BEGIN`` on PostgreSQL, where the conditional ``UPDATE``
statements in ``server.rounds`` take row locks.  WAL mode lets readers run
beside the single writer; ``synchronous=FULL`` makes a committed transaction
survive power loss, which the update acknowledgement relies on.
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

from flask import Flask, current_app
from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.exc import IntegrityError

from server.storage import schema

log = logging.getLogger("fedmark.server.storage")

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
_PG_MIGRATION_LOCK = 0x66_65_64_6D  # "fedm": serialises migrations of concurrent server processes


def make_engine(url: str, *, busy_timeout_s: float = 30.0) -> Engine:
    """Create an engine with the pragmas and transaction style described in the module docstring."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("fedmark_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def run_migrations(engine: Engine, lock_dir: str | None = None) -> None:
    """Apply Alembic migrations up to head, serialised across processes.

    PostgreSQL: a session advisory lock; SQLite: an ``flock`` on a file next to
    the data (two servers starting together must not both create the tables).
    """
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    lock_file = None
    if engine.dialect.name == "sqlite" and lock_dir:
        Path(lock_dir).mkdir(parents=True, exist_ok=True)
        lock_file = open(os.path.join(lock_dir, "migrate.lock"), "w")
        fcntl.flock(lock_file, fcntl.LOCK_EX)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({_PG_MIGRATION_LOCK})")
                conn.commit()
            try:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
            finally:
                if engine.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_PG_MIGRATION_LOCK})")
                    conn.commit()
    finally:
        if lock_file is not None:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            lock_file.close()


class Store:
    """The app's database; attached with :meth:`init_app` (Flask extension pattern)."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._sqlite_writer = threading.RLock()

    def init_app(self, app: Flask) -> None:
        url = app.config["DATABASE_URL_RESOLVED"]
        self.engine = make_engine(url, busy_timeout_s=float(app.config.get("SQLITE_BUSY_TIMEOUT_S", 30.0)))
        if app.config.get("MIGRATE_ON_START", True):
            run_migrations(self.engine, lock_dir=app.config.get("DATA_DIR"))
        app.extensions["fedmark_store"] = self

    @property
    def dialect(self) -> str:
        assert self.engine is not None
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on normal exit, rolled back on exception.

        On SQLite the process's writers also queue on one in-process lock first: SQLite has a single
        writer, and a writer that finds it busy sleeps in SQLite's busy handler (1, 2, 5 … 100 ms
        between retries) even when the lock frees a microsecond later.  Queued here, the next writer
        starts the moment the previous one commits; other processes still meet the busy handler."""
        assert self.engine is not None, "Store.init_app was not called"
        queue = self._sqlite_writer if self.engine.dialect.name == "sqlite" else nullcontext()
        with queue, self.engine.connect() as conn:
            conn.execution_options(fedmark_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (rolled back at the end)."""
        assert self.engine is not None, "Store.init_app was not called"
        with self.engine.connect() as conn:
            yield conn

    def setting(self, key: str, default_factory: Any) -> str:
        """Read a server-wide setting, creating it once (race-safe) with ``default_factory()``."""
        with self.read() as conn:
            row = conn.execute(select(schema.settings.c.value).where(schema.settings.c.key == key)).first()
        if row is not None:
            return str(row[0])
        try:
            with self.write() as conn:
                conn.execute(schema.settings.insert().values(key=key, value=str(default_factory())))
        except IntegrityError:
            pass  # another process created it first
        with self.read() as conn:
            return str(conn.execute(select(schema.settings.c.value).where(schema.settings.c.key == key)).scalar_one())

    def dispose(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def get_store() -> Store:
    return current_app.extensions["fedmark_store"]
