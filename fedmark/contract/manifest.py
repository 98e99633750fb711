"""The trainer-artifact manifest: the wire contract between ``models``, ``server`` and ``edge_sdk``.

See docs/ARTIFACT.md for every field.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from fedmark.contract.errors import ManifestError
from fedmark.contract.features import FeatureSchema
from fedmark.contract.hashing import sha256_bytes

MANIFEST_FORMAT = "fedmark-trainer/1"
MANIFEST_FILE = "manifest.json"
PARAMS_FILE = "params.bin"
PROTOCOL_SUPERVISED = "supervised-tabular/1"
PROTOCOL_MF = "mf-reconstruction/1"
#: Manifests written before the ``protocol`` field existed name only their family; this is what those ran.
LEGACY_PROTOCOLS = {"propensity": PROTOCOL_SUPERVISED, "recommender": PROTOCOL_MF}

__all__ = ["MANIFEST_FORMAT", "MANIFEST_FILE", "PARAMS_FILE", "PROTOCOL_SUPERVISED", "PROTOCOL_MF",
           "LEGACY_PROTOCOLS", "ParamSpec", "Manifest", "manifest_digest", "params_file"]


@dataclass(frozen=True)
class ParamSpec:
    """One named parameter tensor; the flat wire vector concatenates them in order."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> "ParamSpec":
        try:
            spec = ParamSpec(str(d["name"]), tuple(int(s) for s in d["shape"]), str(d.get("dtype", "float32")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"bad parameter entry {d!r}: needs name, shape (list of ints), dtype") from exc
        if spec.dtype != "float32":
            raise ManifestError(f"parameter {spec.name!r}: only float32 parameters are supported, got {spec.dtype}")
        if any(s <= 0 for s in spec.shape):
            raise ManifestError(f"parameter {spec.name!r}: shape {spec.shape} has a non-positive dimension")
        return spec


@dataclass(frozen=True)
class Manifest:
    """The artifact's description; see docs/ARTIFACT.md for every field.

    ``params`` are the global parameters that travel (initial values in
    ``files['params']``, updates on the wire).  ``local_params`` live only on
    the device (the recommender's user vector) and are never uploaded.
    ``protocol`` names how a device trains the artifact (which graphs, what
    data): devices dispatch on it, never on ``family`` (a free name).
    """

    model: str
    family: str
    version: int
    params: tuple[ParamSpec, ...]
    batch_size: int
    graphs: Mapping[str, str]
    files: Mapping[str, str]
    local_params: tuple[ParamSpec, ...] = ()
    features: Mapping[str, Any] = field(default_factory=dict)
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    clip_norm: float = 1.0
    privacy: Mapping[str, Any] = field(default_factory=dict)
    opset: int = 17
    purpose: str = "marketing"
    extra: Mapping[str, Any] = field(default_factory=dict)
    protocol: str = ""

    def __post_init__(self) -> None:
        if not self.protocol:
            legacy = LEGACY_PROTOCOLS.get(self.family)
            if legacy is None:
                raise ManifestError(f"manifest of family {self.family!r} names no training protocol; "
                                    f"set 'protocol' (e.g. {PROTOCOL_SUPERVISED!r})")
            object.__setattr__(self, "protocol", legacy)

    @property
    def num_params(self) -> int:
        return sum(p.size for p in self.params)

    def schema(self) -> FeatureSchema:
        """The tabular feature schema (propensity family)."""
        return FeatureSchema.from_json(self.features)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT, "model": self.model, "family": self.family, "protocol": self.protocol,
            "version": self.version,
            "opset": self.opset, "purpose": self.purpose, "batch_size": self.batch_size,
            "params": [p.to_json() for p in self.params],
            "local_params": [p.to_json() for p in self.local_params],
            "features": dict(self.features), "hyperparams": dict(self.hyperparams),
            "clip_norm": self.clip_norm, "privacy": dict(self.privacy),
            "graphs": dict(self.graphs), "files": dict(self.files), "extra": dict(self.extra),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True)

    @staticmethod
    def from_json(d: Any) -> "Manifest":
        if not isinstance(d, Mapping):
            raise ManifestError("a manifest must be a JSON object")
        if d.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"unknown manifest format {d.get('format')!r}; this build reads {MANIFEST_FORMAT!r}")
        missing = [k for k in ("model", "family", "version", "params", "batch_size", "graphs", "files") if k not in d]
        if missing:
            raise ManifestError(f"manifest lacks required field(s): {', '.join(missing)}")
        try:
            m = Manifest(
                model=str(d["model"]), family=str(d["family"]), version=int(d["version"]),
                params=tuple(ParamSpec.from_json(p) for p in d["params"]),
                local_params=tuple(ParamSpec.from_json(p) for p in d.get("local_params", [])),
                batch_size=int(d["batch_size"]), graphs=dict(d["graphs"]), files=dict(d["files"]),
                features=dict(d.get("features", {})), hyperparams=dict(d.get("hyperparams", {})),
                clip_norm=float(d.get("clip_norm", 1.0)), privacy=dict(d.get("privacy", {})),
                opset=int(d.get("opset", 17)), purpose=str(d.get("purpose", "marketing")),
                extra=dict(d.get("extra", {})), protocol=str(d.get("protocol") or ""),
            )
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(Infinity)
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"manifest field has the wrong type: {exc}") from exc
        if not m.params:
            raise ManifestError("manifest has no parameters")
        if m.batch_size <= 0 or not m.clip_norm > 0:
            raise ManifestError("batch_size and clip_norm must be positive")
        for role, fname in m.graphs.items():
            if not isinstance(fname, str) or fname not in m.files:
                raise ManifestError(f"graph {role!r} names file {fname!r} that has no content hash in 'files'")
        for fname, digest in m.files.items():
            if os.path.basename(fname) != fname or fname in ("", ".", ".."):
                raise ManifestError(f"file name {fname!r} must be a plain name inside the artifact")
            if not (isinstance(digest, str) and digest.startswith("sha256:") and len(digest) == 71):
                raise ManifestError(f"file {fname!r}: content hash must be 'sha256:<64 hex>'")
        names = [p.name for p in m.params + m.local_params]
        if len(set(names)) != len(names):
            raise ManifestError("parameter names must be unique")
        return m

    @staticmethod
    def loads(text: str | bytes) -> "Manifest":
        try:
            return Manifest.from_json(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from exc


def manifest_digest(m: Manifest) -> str:
    """Content address of a version: the hash of its canonical manifest (which hashes every file)."""
    return sha256_bytes(json.dumps(m.to_json(), sort_keys=True, separators=(",", ":")).encode())


def params_file(m: Manifest) -> str:
    """The artifact file holding the global parameters (raw little-endian float32, manifest order).

    The one rule every reader follows: the file named by ``extra.params_file``
    (what the exporter writes), ``params.bin`` when the manifest names none;
    either way the file must have a content hash in ``files``.
    """
    name = m.extra.get("params_file", PARAMS_FILE)
    if not isinstance(name, str) or name not in m.files:
        raise ManifestError(f"manifest has no content hash for the parameter file {name!r}; "
                            f"export the artifact with its initial parameters")
    return name
