"""Storage: database schema, engine/transactions/migrations, content-addressed blob files."""
from server.storage.blobs import BlobStore
from server.storage.engine import Store, get_store, make_engine, run_migrations

__all__ = ["BlobStore", "Store", "get_store", "make_engine", "run_migrations"]
