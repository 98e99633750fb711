"""The wire contract shared by ``models``, ``server`` and ``edge_sdk``.

Why one module: the three packages are built and deployed apart (a phone never
installs the server, the server never installs TensorFlow), yet they must agree
byte for byte on three things: the trainer-artifact *manifest*, the *feature
encoding* that turns a customer record into a model input, and the binary
*update encoding* that travels from device to server.  Keeping all three here,
in pure Python + numpy, means each side imports the same code instead of
re-implementing (and drifting from) a specification.

Nothing here may import TensorFlow, onnxruntime, Flask or SQLAlchemy.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

MANIFEST_FORMAT = "fedmark-trainer/1"
MANIFEST_FILE = "manifest.json"

# HTTP headers that carry an update's metadata next to its binary body.
HDR_ROUND = "X-Fedmark-Round"
HDR_MODEL_VERSION = "X-Fedmark-Model-Version"
HDR_NUM_EXAMPLES = "X-Fedmark-Num-Examples"
HDR_WITHIN_CLIP = "X-Fedmark-Within-Clip"  # "1" if ||delta|| <= C before clipping
HDR_IDEMPOTENCY = "Idempotency-Key"
UPDATE_CONTENT_TYPE = "application/vnd.fedmark.update"


class ContractError(ValueError):
    """Base class: data does not follow the wire contract."""


class ManifestError(ContractError):
    """A manifest is malformed or inconsistent with the files beside it."""


class WireError(ContractError):
    """An encoded update body cannot be decoded (size, magic, checksum, values)."""


class SchemaError(ContractError):
    """Records do not match a feature schema; carries every bad row."""

    def __init__(self, errors: Sequence["RowError"]):
        self.errors = list(errors)
        shown = "; ".join(str(e) for e in self.errors[:5])
        more = f" (+{len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        super().__init__(f"{len(self.errors)} bad row(s): {shown}{more}")


# --------------------------------------------------------------------------- manifest
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
class Column:
    """An input column and the rule that encodes it.

    kind "numeric": value -> (value - mean) / std; missing -> fill (raw units).
    kind "onehot": one slot per vocabulary entry plus a last 'unknown' slot that
      catches missing values and categories never seen at export time.
    kind "hash": zlib.crc32(utf-8 value) % buckets, one-hot over the buckets;
      needs no vocabulary, so new categories never break a device.
    """

    name: str
    kind: str
    mean: float = 0.0
    std: float = 1.0
    fill: float | None = None
    vocabulary: tuple[str, ...] = ()
    buckets: int = 0

    @property
    def width(self) -> int:
        if self.kind == "numeric":
            return 1
        if self.kind == "onehot":
            return len(self.vocabulary) + 1
        return self.buckets

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "numeric":
            d.update(mean=self.mean, std=self.std, fill=self.mean if self.fill is None else self.fill)
        elif self.kind == "onehot":
            d["vocabulary"] = list(self.vocabulary)
        else:
            d["buckets"] = self.buckets
        return d

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> "Column":
        kind = d.get("kind")
        name = d.get("name")
        if not isinstance(name, str) or kind not in ("numeric", "onehot", "hash"):
            raise ManifestError(f"bad column {d!r}: needs a name and kind numeric|onehot|hash")
        if kind == "numeric":
            std = float(d.get("std", 1.0))
            if not std > 0:
                raise ManifestError(f"column {name!r}: std must be > 0, got {std}")
            return Column(name, kind, mean=float(d.get("mean", 0.0)), std=std,
                          fill=float(d["fill"]) if d.get("fill") is not None else None)
        if kind == "onehot":
            vocab = d.get("vocabulary")
            if not isinstance(vocab, list) or not vocab:
                raise ManifestError(f"column {name!r}: onehot needs a non-empty vocabulary list")
            return Column(name, kind, vocabulary=tuple(str(v) for v in vocab))
        buckets = int(d.get("buckets", 0))
        if buckets < 2:
            raise ManifestError(f"column {name!r}: hash needs buckets >= 2")
        return Column(name, kind, buckets=buckets)


@dataclass(frozen=True)
class RowError:
    """Why one input row was refused: its 0-based row number, the column and the reason."""

    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column!r}: {self.reason}"


@dataclass(frozen=True)
class FeatureSchema:
    """Tabular features (propensity family): ordered columns and an optional binary label."""

    columns: tuple[Column, ...]
    label: str | None = None
    positive: str = "1"

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    def to_json(self) -> dict[str, Any]:
        return {"columns": [c.to_json() for c in self.columns], "label": self.label,
                "positive": self.positive, "width": self.width}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> "FeatureSchema":
        cols = d.get("columns")
        if not isinstance(cols, list) or not cols:
            raise ManifestError("features.columns must be a non-empty list")
        schema = FeatureSchema(tuple(Column.from_json(c) for c in cols), d.get("label"), str(d.get("positive", "1")))
        if "width" in d and int(d["width"]) != schema.width:
            raise ManifestError(f"features.width {d['width']} disagrees with the columns' width {schema.width}")
        return schema

    def encode(self, records: Sequence[Mapping[str, Any]], *, with_label: bool = True,
               strict: bool = True) -> tuple[np.ndarray, np.ndarray | None, list[RowError]]:
        """Encode records to a float32 matrix (and 0/1 labels).

        Missing numeric values take the column's fill; missing or unseen
        categories take the unknown slot (onehot) or their hash bucket.  A value
        that cannot be read (text in a numeric column, a missing label) is a
        RowError; with ``strict`` any error raises SchemaError, otherwise bad
        rows are dropped and returned so the caller can report them.
        """
        n = len(records)
        x = np.zeros((n, self.width), dtype=np.float32)
        y = np.zeros(n, dtype=np.float32) if (with_label and self.label) else None
        errors: list[RowError] = []
        bad = np.zeros(n, dtype=bool)
        lookup = {c.name: {v: i for i, v in enumerate(c.vocabulary)} for c in self.columns if c.kind == "onehot"}
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping):
                errors.append(RowError(i, "*", f"expected a mapping of column -> value, got {type(rec).__name__}"))
                bad[i] = True
                continue
            off = 0
            for c in self.columns:
                v = rec.get(c.name)
                missing = v is None or (isinstance(v, float) and math.isnan(v)) or v == ""
                if c.kind == "numeric":
                    if missing:
                        val = c.mean if c.fill is None else c.fill
                    else:
                        try:
                            val = float(v)
                        except (TypeError, ValueError):
                            errors.append(RowError(i, c.name, f"not a number: {v!r}"))
                            bad[i] = True
                            val = c.mean
                        if not math.isfinite(val):
                            errors.append(RowError(i, c.name, f"not a finite number: {v!r}"))
                            bad[i] = True
                            val = c.mean
                    x[i, off] = (val - c.mean) / c.std
                elif c.kind == "onehot":
                    idx = len(c.vocabulary) if missing else lookup[c.name].get(str(v), len(c.vocabulary))
                    x[i, off + idx] = 1.0
                else:
                    x[i, off + (hash_bucket("" if missing else str(v), c.buckets))] = 1.0
                off += c.width
            if y is not None:
                lv = rec.get(self.label)
                if lv is None or lv == "":
                    errors.append(RowError(i, self.label, "label is missing"))
                    bad[i] = True
                else:
                    y[i] = 1.0 if str(lv) == self.positive or lv is True or lv == 1 else 0.0
        if errors and strict:
            raise SchemaError(errors)
        if bad.any():
            keep = ~bad
            x = x[keep]
            y = y[keep] if y is not None else None
        return x, y, errors


def hash_bucket(value: str, buckets: int) -> int:
    """Stable across languages and processes (unlike Python's hash())."""
    return zlib.crc32(value.encode("utf-8")) % buckets


@dataclass(frozen=True)
class Manifest:
    """The artifact's description; see docs/ARTIFACT.md for every field.

    ``params`` are the global parameters that travel (initial values in
    ``files['params']``, updates on the wire).  ``local_params`` live only on
    the device (the recommender's user vector) and are never uploaded.
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

    @property
    def num_params(self) -> int:
        return sum(p.size for p in self.params)

    def schema(self) -> FeatureSchema:
        """The tabular feature schema (propensity family)."""
        return FeatureSchema.from_json(self.features)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT, "model": self.model, "family": self.family, "version": self.version,
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
                extra=dict(d.get("extra", {})),
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


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


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


def manifest_digest(m: Manifest) -> str:
    """Content address of a version: the hash of its canonical manifest (which hashes every file)."""
    return sha256_bytes(json.dumps(m.to_json(), sort_keys=True, separators=(",", ":")).encode())


# --------------------------------------------------------------------------- parameters
def flatten(arrays: Iterable[np.ndarray]) -> np.ndarray:
    """Concatenate parameter tensors (C order) into one float32 vector."""
    return np.concatenate([np.asarray(a, dtype=np.float32).ravel() for a in arrays]) if arrays else np.zeros(0, np.float32)


def unflatten(vec: np.ndarray, specs: Sequence[ParamSpec]) -> list[np.ndarray]:
    total = sum(s.size for s in specs)
    if vec.size != total:
        raise ContractError(f"vector has {vec.size} values, the parameters need {total}")
    out, off = [], 0
    for s in specs:
        out.append(np.asarray(vec[off:off + s.size], dtype=np.float32).reshape(s.shape))
        off += s.size
    return out


def l2_clip(vec: np.ndarray, clip_norm: float) -> tuple[np.ndarray, float, bool]:
    """Scale ``vec`` to L2 norm at most ``clip_norm``.

    Returns (clipped, original norm, within) where ``within`` is the bit adaptive
    clipping needs: True iff the update was *not* clipped (norm <= C).
    """
    norm = float(np.linalg.norm(vec.astype(np.float64)))
    if not math.isfinite(norm):
        raise ContractError("update contains NaN or Inf")
    within = norm <= clip_norm
    if within:
        return vec.astype(np.float32, copy=False), norm, True
    # float32 rounding can leave the result a hair above C: scale by slightly less.
    scale = np.float32(clip_norm / norm * (1 - 1e-6))
    return (vec * scale).astype(np.float32), norm, False


# --------------------------------------------------------------------------- update wire format
_MAGIC = b"FMU1"
_HEADER = struct.Struct("<4sBBHII")  # magic, encoding, flags, reserved, count, crc32(payload)
ENCODINGS = {"f32": 0, "f16": 1, "q8": 2}
_ENC_NAMES = {v: k for k, v in ENCODINGS.items()}


def encode_update(vec: np.ndarray, encoding: str = "f32", rng: np.random.Generator | None = None) -> bytes:
    """Binary body for one update: 16-byte header + payload (little-endian).

    f32: raw float32.  f16: float16 (values beyond f16 range are refused).
    q8: float32 lo, float32 step, then one uint8 per value; value = lo + q*step,
    with stochastic rounding so the quantized update is unbiased.
    """
    v = np.asarray(vec, dtype=np.float32).ravel()
    if not np.all(np.isfinite(v)):
        raise WireError("update contains NaN or Inf; refusing to encode")
    if encoding == "f32":
        payload = v.astype("<f4").tobytes()
    elif encoding == "f16":
        if v.size and float(np.max(np.abs(v))) > 65504.0:
            raise WireError("update exceeds float16 range; use f32")
        payload = v.astype("<f2").tobytes()
    elif encoding == "q8":
        rng = rng or np.random.default_rng()
        lo = float(v.min()) if v.size else 0.0
        hi = float(v.max()) if v.size else 0.0
        step = (hi - lo) / 255.0 if hi > lo else 1.0
        scaled = (v.astype(np.float64) - lo) / step
        q = np.floor(scaled + rng.random(v.size))
        q = np.clip(q, 0, 255).astype(np.uint8)
        payload = struct.pack("<ff", lo, step) + q.tobytes()
    else:
        raise WireError(f"unknown encoding {encoding!r}; use one of {sorted(ENCODINGS)}")
    return _HEADER.pack(_MAGIC, ENCODINGS[encoding], 0, 0, v.size, zlib.crc32(payload)) + payload


def encoded_size(count: int, encoding: str = "f32") -> int:
    per = {"f32": 4 * count, "f16": 2 * count, "q8": 8 + count}[encoding]
    return _HEADER.size + per


def decode_update(body: bytes, expected_count: int | None = None) -> tuple[np.ndarray, str]:
    """Inverse of encode_update; raises WireError naming what is wrong."""
    if len(body) < _HEADER.size:
        raise WireError(f"body is {len(body)} bytes, shorter than the {_HEADER.size}-byte header")
    magic, enc, _flags, _res, count, crc = _HEADER.unpack_from(body)
    if magic != _MAGIC:
        raise WireError("body does not start with the update magic 'FMU1': not a fedmark update")
    if enc not in _ENC_NAMES:
        raise WireError(f"unknown encoding id {enc}")
    name = _ENC_NAMES[enc]
    if expected_count is not None and count != expected_count:
        raise WireError(f"update has {count} values, the model version has {expected_count} parameters")
    payload = memoryview(body)[_HEADER.size:]
    if len(body) != encoded_size(count, name):
        raise WireError(f"body is {len(body)} bytes, a {name} update of {count} values is {encoded_size(count, name)}")
    if zlib.crc32(payload) != crc:
        raise WireError("payload checksum mismatch: the body was truncated or altered in transit")
    if name == "f32":
        vec = np.frombuffer(payload, dtype="<f4").astype(np.float32)
    elif name == "f16":
        vec = np.frombuffer(payload, dtype="<f2").astype(np.float32)
    else:
        lo, step = struct.unpack_from("<ff", payload)
        q = np.frombuffer(payload, dtype=np.uint8, offset=8)
        vec = (lo + q.astype(np.float32) * np.float32(step)).astype(np.float32)
    if not np.all(np.isfinite(vec)):
        raise WireError("update contains NaN or Inf values")
    return vec, name
