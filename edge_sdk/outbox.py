"""The offline queue ("outbox") of updates waiting to be uploaded.

Why: phones lose the network and get killed mid-upload.  An update is written
here *before* the first send attempt — the encoded body and its headers, never
the training data or the token — and removed only once the server has
acknowledged it or refused it for good.  Each entry keeps the idempotency key
it was created with, so a resend after a crash (even one where the server had
already stored the first attempt) is counted once.

Durability: one file per entry, written to a temporary name, fsync'd, renamed
into place and the directory fsync'd, so an entry is either complete or absent
after a power cut.  A lock file serialises flushes between processes.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

try:  # POSIX (Linux, Android, macOS, iOS); elsewhere flushes are not serialised across processes.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("edge_sdk.outbox")

_MAGIC = b"FMQ1"
_LEN = struct.Struct(">I")
_SUFFIX = ".fmq"


@dataclass(frozen=True)
class QueuedUpload:
    """An encoded update and everything needed to (re)send it, minus credentials."""

    key: str
    upload_path: str
    round_id: str
    model: str
    version: int
    headers: Mapping[str, str]
    body: bytes = field(repr=False)
    created_at: float = 0.0
    #: Salted hashes of the subjects (customers) whose records the update was computed from
    #: (edge_sdk.consent.WithdrawalLog); a withdrawal drops every queued update that names one.
    subjects: tuple[str, ...] = ()

    def _meta(self) -> dict[str, Any]:
        return {"key": self.key, "upload_path": self.upload_path, "round_id": self.round_id, "model": self.model,
                "version": self.version, "headers": dict(self.headers), "created_at": self.created_at,
                "body_sha256": hashlib.sha256(self.body).hexdigest(), "subjects": sorted(self.subjects)}


class Outbox:
    """A directory of queued uploads, oldest first; bounded to ``max_entries`` (oldest dropped beyond it)."""

    def __init__(self, directory: str | os.PathLike[str], *, max_entries: int = 100) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_entries = max_entries

    # ------------------------------------------------------------------ writing
    def put(self, item: QueuedUpload) -> Path:
        """Persist ``item`` durably (temp file + fsync + rename + directory fsync)."""
        if not item.key or "/" in item.key or "\\" in item.key or item.key.startswith("."):
            raise ValueError(f"bad idempotency key {item.key!r}")
        existing = self._path_for(item.key)
        if existing is not None:
            return existing  # the same update is already queued
        meta = json.dumps(item._meta(), sort_keys=True).encode()
        data = _MAGIC + _LEN.pack(len(meta)) + meta + item.body
        final = self.dir / f"{time.time_ns():020d}-{item.key}{_SUFFIX}"
        tmp = self.dir / f".tmp-{item.key}-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        self._fsync_dir()
        self._enforce_bound()
        return final

    def remove(self, key: str) -> bool:
        """Delete the entry with ``key``; True if there was one."""
        path = self._path_for(key)
        if path is None:
            return False
        path.unlink(missing_ok=True)
        self._fsync_dir()
        return True

    def drop_where(self, predicate: Callable[[QueuedUpload], bool]) -> list[QueuedUpload]:
        """Delete every entry ``predicate`` selects (under the flush lock, so a flush in another process
        cannot send one of them meanwhile); returns what was dropped.  Used on consent withdrawal."""
        dropped = []
        with self.lock():
            for item in self.entries():
                if predicate(item):
                    self.remove(item.key)
                    dropped.append(item)
        return dropped

    # ------------------------------------------------------------------ reading
    def entries(self) -> list[QueuedUpload]:
        """Every readable entry, oldest first; unreadable (corrupted) files are removed and logged."""
        out = []
        for path in sorted(self.dir.glob(f"*{_SUFFIX}")):
            item = self._read(path)
            if item is None:
                log.warning("dropping unreadable queued update %s", path.name)
                path.unlink(missing_ok=True)
            else:
                out.append(item)
        return out

    def __len__(self) -> int:
        return sum(1 for _ in self.dir.glob(f"*{_SUFFIX}"))

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock across processes while flushing, so two app processes never send the queue together."""
        with open(self.dir / ".lock", "a+b") as f:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    # ------------------------------------------------------------------ internals
    def _path_for(self, key: str) -> Path | None:
        for path in self.dir.glob(f"*-{key}{_SUFFIX}"):
            return path
        return None

    @staticmethod
    def _read(path: Path) -> QueuedUpload | None:
        try:
            data = path.read_bytes()
            if data[:4] != _MAGIC or len(data) < 8:
                return None
            (n,) = _LEN.unpack_from(data, 4)
            meta = json.loads(data[8:8 + n])
            body = data[8 + n:]
            if hashlib.sha256(body).hexdigest() != meta["body_sha256"]:
                return None
            return QueuedUpload(str(meta["key"]), str(meta["upload_path"]), str(meta["round_id"]),
                                str(meta["model"]), int(meta["version"]), dict(meta["headers"]), body,
                                float(meta.get("created_at", 0.0)), tuple(str(x) for x in meta.get("subjects", ())))
        except (OSError, ValueError, KeyError, TypeError, struct.error):
            return None

    def _enforce_bound(self) -> None:
        paths = sorted(self.dir.glob(f"*{_SUFFIX}"))
        for path in paths[: max(0, len(paths) - self.max_entries)]:
            log.warning("outbox holds more than %d updates; dropping the oldest, %s", self.max_entries, path.name)
            path.unlink(missing_ok=True)

    def _fsync_dir(self) -> None:
        try:
            fd = os.open(self.dir, os.O_RDONLY)
        except OSError:  # pragma: no cover - platforms without directory fds
            return
        try:
            os.fsync(fd)
        except OSError:  # pragma: no cover
            pass
        finally:
            os.close(fd)
