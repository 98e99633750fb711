"""Reading an exported artifact directory: the manifest, checked against every file's hash."""
from __future__ import annotations

import os

from fedmark.contract.errors import ManifestError
from fedmark.contract.hashing import sha256_file
from fedmark.contract.manifest import MANIFEST_FILE, Manifest

__all__ = ["load_artifact_manifest"]


def load_artifact_manifest(directory: str | os.PathLike[str], *, verify: bool = True) -> Manifest:
    """Read ``manifest.json`` in an artifact directory and check every file's hash."""
    path = os.path.join(directory, MANIFEST_FILE)
    try:
        with open(path, "rb") as f:
            m = Manifest.loads(f.read())
    except FileNotFoundError as exc:
        raise ManifestError(f"no {MANIFEST_FILE} in {directory}: is this an exported artifact?") from exc
    if verify:
        for fname, digest in m.files.items():
            fp = os.path.join(directory, fname)
            if not os.path.exists(fp):
                raise ManifestError(f"artifact file {fname} is missing from {directory}")
            actual = sha256_file(fp)
            if actual != digest:
                raise ManifestError(f"artifact file {fname} has hash {actual[:19]}…, manifest says {digest[:19]}…: "
                                    "the artifact was modified or corrupted; fetch it again")
    return m
