"""Content-addressed file store for artifact files and aggregates.

Why content addressing: versions are immutable and many share files (every
round's version reuses the same ONNX graphs, only ``params.bin`` changes), so a
file is stored once under its SHA-256.  Writes go to a temp file that is
fsynced and renamed into place (then the directory is fsynced): a crash leaves
either the whole file or nothing, and re-writing the same content is harmless,
which a crash-recovered round close relies on.

Reads are cached in memory (least recently used, bounded in bytes): content
addressing makes the cache trivially correct, since a digest names one content
forever, and each round open and close reads the current parameters again.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from fedmark.contract import sha256_bytes


class BlobStore:
    def __init__(self, root: str | os.PathLike[str], cache_bytes: int = 128 * 1024 * 1024) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.cache_bytes = cache_bytes
        self._cache: "OrderedDict[str, bytes]" = OrderedDict()
        self._cached = 0
        self._lock = threading.Lock()

    def path(self, digest: str) -> Path:
        """Where the blob with hash ``sha256:<hex>`` lives."""
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise ValueError(f"not a sha256 digest: {digest!r}")
        hexd = digest[7:]
        return self.root / hexd[:2] / hexd

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; returns its digest."""
        digest = sha256_bytes(data)
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return digest

    def get(self, digest: str) -> bytes:
        """The blob's bytes, verified against its digest when read from disk."""
        with self._lock:
            data = self._cache.get(digest)
            if data is not None:
                self._cache.move_to_end(digest)
                return data
        data = self.path(digest).read_bytes()
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise OSError(f"stored blob {digest[:19]}… is corrupt on disk")
        if len(data) <= self.cache_bytes // 4:
            with self._lock:
                if digest not in self._cache:
                    self._cache[digest] = data
                    self._cached += len(data)
                while self._cached > self.cache_bytes:
                    _, old = self._cache.popitem(last=False)
                    self._cached -= len(old)
        return data
