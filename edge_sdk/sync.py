"""Model sync: fetch a version's manifest and files, verify them, cache them on disk.

Why this shape:
- The manifest is fetched with ``If-None-Match`` (its ETag is the version
  digest), so a device that already holds the version gets a ``304`` and
  downloads nothing.
- Artifact files are content-addressed by the hashes in the manifest: a file
  whose hash matches a copy already on the device (typically the graphs, which
  do not change between versions — only ``params.bin`` does) is reused without
  a request; every staged file is hashed once (the downloaded bytes, or the
  reused copy) and a mismatch is refused with :class:`ArtifactIntegrityError`
  before anything is installed.
- A version is assembled in a staging directory and renamed into place, so a
  crash never leaves a half-installed version that looks complete.
- The current and the previous version are kept (the previous one stays usable
  if a new one is refused); older ones are pruned.
- Cached versions are re-verified whenever they are loaded, so bytes changed on
  the device's disk are caught too.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from edge_sdk.errors import ArtifactIntegrityError
from edge_sdk.transport import Transport
from fedmark.contract import MANIFEST_FILE, Manifest, ManifestError, load_artifact_manifest, sha256_bytes, sha256_file

_STATE = "state.json"
_ETAG = ".etag"


@dataclass(frozen=True)
class SyncResult:
    """Where a version lives on disk and what the sync had to transfer."""

    path: Path
    manifest: Manifest
    manifest_not_modified: bool
    downloaded: int
    reused: int


class ModelCache:
    """On-disk cache of artifact versions under ``<storage>/models/<model>/v<version>/``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ queries
    def model_dir(self, model: str) -> Path:
        if not model or "/" in model or model.startswith("."):
            raise ArtifactIntegrityError(f"model name {model!r} is not a plain name")
        return self.root / model

    def version_dir(self, model: str, version: int) -> Path:
        return self.model_dir(model) / f"v{int(version)}"

    def state(self, model: str) -> dict[str, int | None]:
        """``{"current": v, "previous": v}`` of the versions installed for ``model``."""
        try:
            data = json.loads((self.model_dir(model) / _STATE).read_text())
            return {"current": data.get("current"), "previous": data.get("previous")}
        except (OSError, ValueError):
            return {"current": None, "previous": None}

    def load(self, model: str, version: int | None = None) -> tuple[Path, Manifest]:
        """A cached version (default: the current one) after re-checking every file hash."""
        if version is None:
            version = self.state(model)["current"]
            if version is None:
                raise ArtifactIntegrityError(f"no version of model {model!r} is cached on this device; sync first")
        path = self.version_dir(model, version)
        if not (path / MANIFEST_FILE).is_file():
            raise ArtifactIntegrityError(f"version {version} of model {model!r} is not cached on this device")
        try:
            return path, load_artifact_manifest(path, verify=True)
        except ManifestError as exc:
            raise ArtifactIntegrityError(f"cached model {model!r} v{version} failed verification: {exc}") from exc

    # ------------------------------------------------------------------ sync
    def sync(self, transport: Transport, headers: Mapping[str, str], model: str, version: int, *,
             manifest_url: str | None = None, timeout: float | None = None) -> SyncResult:
        """Make ``model`` v``version`` present and verified on disk, downloading only what is missing."""
        final = self.version_dir(model, version)
        url = manifest_url or f"/v1/models/{model}/versions/{int(version)}/manifest"
        cached_etag = _read_text(final / _ETAG) if (final / MANIFEST_FILE).is_file() else None
        req_headers = dict(headers)
        if cached_etag:
            req_headers["If-None-Match"] = cached_etag
        resp = transport.request("GET", url, headers=req_headers)
        if resp.status == 304:
            try:
                _, manifest = self.load(model, version)
                self._set_current(model, version)
                return SyncResult(final, manifest, True, 0, len(manifest.files))
            except ArtifactIntegrityError:
                # The local copy was damaged: drop it and fetch everything again.
                shutil.rmtree(final, ignore_errors=True)
                resp = transport.request("GET", url, headers=dict(headers))
        raw_manifest = resp.body
        try:
            manifest = Manifest.loads(raw_manifest)
        except ManifestError as exc:
            raise ArtifactIntegrityError(f"the server's manifest for {model!r} v{version} is invalid: {exc}") from exc
        if manifest.model != model or manifest.version != int(version):
            raise ArtifactIntegrityError(f"asked for {model!r} v{version} but the manifest describes "
                                         f"{manifest.model!r} v{manifest.version}; refusing it")

        mdir = self.model_dir(model)
        mdir.mkdir(parents=True, exist_ok=True)
        staging = mdir / f".staging-v{int(version)}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        downloaded = reused = 0
        try:
            local = self._local_copies(model)
            for fname, digest in sorted(manifest.files.items()):
                dest = staging / fname
                if digest in local:
                    shutil.copyfile(local[digest], dest)
                    if sha256_file(dest) == digest:
                        reused += 1
                        continue
                fresp = transport.request("GET", f"/v1/models/{model}/versions/{int(version)}/files/{fname}",
                                          headers=dict(headers), timeout=timeout, accept=(200,))
                actual = sha256_bytes(fresp.body)
                if actual != digest:
                    raise ArtifactIntegrityError(
                        f"artifact file {fname!r} of {model!r} v{version} has hash {actual[:23]}…, its manifest "
                        f"says {digest[:23]}…: the file was tampered with or corrupted in transit; refusing it")
                _write_synced(dest, fresp.body)
                downloaded += 1
            _write_synced(staging / MANIFEST_FILE, raw_manifest)
            etag = resp.header("ETag")
            if etag:
                _write_synced(staging / _ETAG, etag.encode())
            # Every file was hashed exactly once above (downloaded bytes, or the staged copy of a reused
            # file) against the manifest that was parsed and checked before the loop: nothing to re-hash.
            shutil.rmtree(final, ignore_errors=True)
            os.replace(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._set_current(model, version)
        return SyncResult(final, manifest, False, downloaded, reused)

    # ------------------------------------------------------------------ internals
    def _local_copies(self, model: str) -> dict[str, Path]:
        """Files of the installed versions, by content hash (as their manifests state)."""
        out: dict[str, Path] = {}
        for v in self.state(model).values():
            if v is None:
                continue
            vdir = self.version_dir(model, v)
            try:
                m = Manifest.loads((vdir / MANIFEST_FILE).read_bytes())
            except (OSError, ManifestError):
                continue
            for fname, digest in m.files.items():
                if (vdir / fname).is_file():
                    out.setdefault(digest, vdir / fname)
        return out

    def _set_current(self, model: str, version: int) -> None:
        state = self.state(model)
        if state["current"] != version:
            state = {"current": int(version), "previous": state["current"]}
            mdir = self.model_dir(model)
            _write_synced(mdir / _STATE, json.dumps(state).encode())
        keep = {f"v{v}" for v in state.values() if v is not None}
        for child in self.model_dir(model).iterdir():
            if child.is_dir() and child.name.startswith("v") and child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)


def _write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` atomically: temp file, fsync, rename."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
