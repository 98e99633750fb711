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
import zlib
from dataclasses import dataclass

import numpy as np

from fedmark.contract import MANIFEST_FILE, Manifest, ManifestError, params_file, sha256_bytes
from server.registry.onnx_check import OnnxCheckError, check_onnx



class ArtifactError(ValueError):
    """The uploaded archive is not a valid trainer artifact; the message says what to fix."""


@dataclass(frozen=True)
class Artifact:
    manifest: Manifest
    files: dict[str, bytes]  # only the files the manifest hashes


def params_from_bytes(m: Manifest, data: bytes) -> np.ndarray:
    if len(data) != 4 * m.num_params:
        raise ManifestError(f"{params_file(m)} is {len(data)} bytes; {m.num_params} float32 parameters need {4 * m.num_params}")
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


#: Largest single member and largest total of an artifact archive, *uncompressed* (a gzip bomb meets these).
MAX_MEMBER_BYTES = 256 * 1024 * 1024
MAX_TOTAL_BYTES = 512 * 1024 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024


def read_archive(body: bytes, max_files: int = 64, max_member: int = MAX_MEMBER_BYTES,
                 max_total: int = MAX_TOTAL_BYTES) -> Artifact:
    """Parse a gzip'd tar of an artifact directory (files at the root or under one top directory).

    Memory stays bounded whatever the archive claims: member headers are read
    first (tar headers carry sizes, so nothing is expanded into memory), the
    declared sizes are capped, the manifest is read next, and only the files it
    lists are expanded; any other member is refused by name.
    """
    try:
        tar = tarfile.open(fileobj=io.BytesIO(body), mode="r:gz")
        members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ArtifactError(f"body is not a gzip'd tar archive ({exc}); create it with "
                            "'tar czf artifact.tgz -C ARTIFACT_DIR .' or 'fedmark publish'") from exc
    for m in members:
        if m.issym() or m.islnk() or m.isdev():
            raise ArtifactError(f"archive member {m.name!r} is a link or device; only regular files are allowed")
    regular = [m for m in members if m.isfile()]
    if len(regular) > max_files:
        raise ArtifactError(f"archive has {len(regular)} files; an artifact has at most {max_files}")
    names = [m.name[2:] if m.name.startswith("./") else m.name for m in regular]
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    strip = len(tops) == 1 and all("/" in n for n in names)
    by_name: dict[str, tarfile.TarInfo] = {}
    for member, name in zip(regular, names):
        if strip:
            name = name.split("/", 1)[1]
        if "/" in name or name in ("", ".", "..") or name.startswith(".."):
            raise ArtifactError(f"archive member {member.name!r} is not a plain file name at the artifact root")
        if member.size > max_member:
            raise ArtifactError(f"archive member {name!r} is {member.size} bytes uncompressed; the limit per file is "
                                f"{max_member}")
        by_name[name] = member
    total = sum(m.size for m in by_name.values())
    if total > max_total:
        raise ArtifactError(f"archive expands to {total} bytes; the limit is {max_total}")
    if MANIFEST_FILE not in by_name:
        raise ArtifactError(f"archive has no {MANIFEST_FILE} at its root; is it an exported artifact directory?")
    if by_name[MANIFEST_FILE].size > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{MANIFEST_FILE} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = Manifest.loads(_member_bytes(tar, by_name[MANIFEST_FILE]))
    except ManifestError as exc:
        raise ArtifactError(f"{MANIFEST_FILE}: {exc}") from exc
    unlisted = sorted(set(by_name) - set(manifest.files) - {MANIFEST_FILE})
    if unlisted:
        raise ArtifactError(f"archive member(s) {unlisted} are not listed in the manifest's files; an artifact holds "
                            "only the files its manifest hashes")
    kept: dict[str, bytes] = {}
    for fname, digest in manifest.files.items():
        if fname not in by_name:
            raise ArtifactError(f"manifest names file {fname!r}, which is missing from the archive")
        data = _member_bytes(tar, by_name[fname])
        actual = sha256_bytes(data)
        if actual != digest:
            raise ArtifactError(f"file {fname!r} has hash {actual}, the manifest says {digest}: "
                                "the artifact was modified or corrupted; export it again")
        kept[fname] = data
    try:
        pfile = params_file(manifest)
        params_from_bytes(manifest, kept[pfile])
    except ManifestError as exc:
        raise ArtifactError(str(exc)) from exc
    for role, fname in sorted(manifest.graphs.items()):
        if fname == pfile:
            continue
        try:
            check_onnx(kept[fname])
        except OnnxCheckError as exc:
            raise ArtifactError(f"graph {role!r} ({fname}): {exc}") from exc
    return Artifact(manifest, kept)


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    if f is None:
        raise ArtifactError(f"archive member {member.name!r} cannot be read")
    return f.read(member.size)


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
