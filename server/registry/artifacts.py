"""Reading an uploaded artifact archive and checking it against its manifest.

Why so strict: the archive comes over the network and is later served to every
device, so the server re-hashes every file named in the manifest (a corrupted
or tampered artifact is refused with the name of the bad file), accepts only
regular files with plain names (no ``../`` escapes, no links), and checks that
``params.bin`` holds exactly the manifest's parameters as little-endian float32.
"""
from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass

import numpy as np

from fedmark.contract import MANIFEST_FILE, Manifest, ManifestError, sha256_bytes

DEFAULT_PARAMS_FILE = "params.bin"


class ArtifactError(ValueError):
    """The uploaded archive is not a valid trainer artifact; the message says what to fix."""


@dataclass(frozen=True)
class Artifact:
    manifest: Manifest
    files: dict[str, bytes]  # only the files the manifest hashes


def params_file(m: Manifest) -> str:
    """The file holding the global parameters: ``graphs['params']`` if named there, else ``params.bin``."""
    name = m.graphs.get("params", DEFAULT_PARAMS_FILE)
    if name not in m.files:
        raise ManifestError(f"manifest has no content hash for the parameter file {name!r}; "
                            f"export the artifact with its initial parameters")
    return name


def params_from_bytes(m: Manifest, data: bytes) -> np.ndarray:
    if len(data) != 4 * m.num_params:
        raise ManifestError(f"{params_file(m)} is {len(data)} bytes; {m.num_params} float32 parameters need {4 * m.num_params}")
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def read_archive(body: bytes, max_files: int = 64) -> Artifact:
    """Parse a gzip'd tar of an artifact directory (files at the root or under one top directory)."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(body), mode="r:gz")
        members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArtifactError(f"body is not a gzip'd tar archive ({exc}); create it with "
                            "'tar czf artifact.tgz -C ARTIFACT_DIR .' or 'fedmark publish'") from exc
    files: dict[str, bytes] = {}
    regular = [m for m in members if m.isfile()]
    for m in members:
        if m.issym() or m.islnk() or m.isdev():
            raise ArtifactError(f"archive member {m.name!r} is a link or device; only regular files are allowed")
    if len(regular) > max_files:
        raise ArtifactError(f"archive has {len(regular)} files; an artifact has at most {max_files}")
    names = [m.name[2:] if m.name.startswith("./") else m.name for m in regular]
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    strip = len(tops) == 1 and all("/" in n for n in names)
    for member, name in zip(regular, names):
        if strip:
            name = name.split("/", 1)[1]
        if "/" in name or name in ("", ".", "..") or name.startswith(".."):
            raise ArtifactError(f"archive member {member.name!r} is not a plain file name at the artifact root")
        f = tar.extractfile(member)
        if f is None:
            raise ArtifactError(f"archive member {member.name!r} cannot be read")
        files[name] = f.read()
    if MANIFEST_FILE not in files:
        raise ArtifactError(f"archive has no {MANIFEST_FILE} at its root; is it an exported artifact directory?")
    try:
        manifest = Manifest.loads(files[MANIFEST_FILE])
    except ManifestError as exc:
        raise ArtifactError(f"{MANIFEST_FILE}: {exc}") from exc
    kept: dict[str, bytes] = {}
    for fname, digest in manifest.files.items():
        if fname not in files:
            raise ArtifactError(f"manifest names file {fname!r}, which is missing from the archive")
        actual = sha256_bytes(files[fname])
        if actual != digest:
            raise ArtifactError(f"file {fname!r} has hash {actual}, the manifest says {digest}: "
                                "the artifact was modified or corrupted; export it again")
        kept[fname] = files[fname]
    try:
        params_from_bytes(manifest, kept[params_file(manifest)])
    except ManifestError as exc:
        raise ArtifactError(str(exc)) from exc
    return Artifact(manifest, kept)


def write_archive(directory: str) -> bytes:
    """The inverse, used by ``fedmark publish``: gzip'd tar of a directory's regular files."""
    import os

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path):
                tar.add(path, arcname=name, recursive=False)
    return buf.getvalue()
