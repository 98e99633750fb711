"""Alembic environment: run migrations on the connection handed in by ``server.storage.run_migrations``
(or, from the ``alembic`` command line, on ``sqlalchemy.url``)."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from server.storage.schema import metadata

config = context.config


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # pragma: no cover - command-line use
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        _run(conn)
