"""Exact serialisation of aggregation state: JSON dicts and a compact binary form.

Why both: small states (a clip norm, a privacy ledger) read well as JSON in a
database column; states that hold model-sized vectors (server-optimizer moments,
a partial sum) would bloat ~1.4x as base64 and are better stored as bytes.

A *tree* is nested dicts / lists / str / int / float / bool / None with numpy
1-D arrays as leaves.  Arrays keep their dtype (float32 or float64) and are
stored as raw little-endian bytes, so a round trip is bit-exact; Python floats
survive JSON exactly because ``json`` writes the shortest repr that round-trips.

Binary layout: ``b"FMAS"`` + u8 version + u32 header length + UTF-8 JSON header
+ the array payloads back to back; in the header each array is replaced by
``{"$a": index, "dtype": "<f4"|"<f8", "n": length}``.
"""
from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import numpy as np

from .errors import StateError

_MAGIC = b"FMAS"
_VERSION = 1
_PREFIX = struct.Struct("<4sBI")
_DTYPES = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8")}

Tree = Any


def _dtype_code(a: np.ndarray) -> str:
    if a.dtype == np.float32:
        return "<f4"
    if a.dtype == np.float64:
        return "<f8"
    raise StateError(f"only float32/float64 vectors can be stored, got {a.dtype}")


def _check_scalar(x: Any) -> None:
    if isinstance(x, float) and not math.isfinite(x):
        # JSON has no NaN/Inf; a state holding one is broken anyway.
        raise StateError(f"non-finite float {x!r} cannot be stored in aggregation state")


def to_jsonable(tree: Tree) -> Any:
    """Tree -> JSON-serialisable value (arrays become ``{"$b64", "dtype", "n"}``)."""
    if isinstance(tree, np.ndarray):
        code = _dtype_code(tree)
        raw = np.ascontiguousarray(tree.reshape(-1), dtype=_DTYPES[code]).tobytes()
        return {"$b64": base64.b64encode(raw).decode("ascii"), "dtype": code, "n": int(tree.size)}
    if isinstance(tree, dict):
        return {str(k): to_jsonable(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [to_jsonable(v) for v in tree]
    _check_scalar(tree)
    return tree


def from_jsonable(obj: Any) -> Tree:
    """Inverse of :func:`to_jsonable`."""
    if isinstance(obj, dict):
        if "$b64" in obj:
            try:
                dtype = _DTYPES[obj["dtype"]]
                arr = np.frombuffer(base64.b64decode(obj["$b64"], validate=True), dtype=dtype).copy()
            except (KeyError, ValueError) as exc:
                raise StateError(f"bad stored vector {str(obj)[:80]}: {exc}") from exc
            if arr.size != int(obj.get("n", -1)):
                raise StateError(f"stored vector length {arr.size} != recorded length {obj.get('n')}")
            return arr
        return {k: from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_jsonable(v) for v in obj]
    return obj


def pack(tree: Tree) -> bytes:
    """Tree -> bytes (JSON header + raw array payloads)."""
    blobs: list[bytes] = []

    def strip(t: Tree) -> Any:
        if isinstance(t, np.ndarray):
            code = _dtype_code(t)
            blobs.append(np.ascontiguousarray(t.reshape(-1), dtype=_DTYPES[code]).tobytes())
            return {"$a": len(blobs) - 1, "dtype": code, "n": int(t.size)}
        if isinstance(t, dict):
            return {str(k): strip(v) for k, v in t.items()}
        if isinstance(t, (list, tuple)):
            return [strip(v) for v in t]
        _check_scalar(t)
        return t

    header = json.dumps(strip(tree), separators=(",", ":"), allow_nan=False).encode()
    return b"".join([_PREFIX.pack(_MAGIC, _VERSION, len(header)), header, *blobs])


def unpack(data: bytes) -> Tree:
    """Inverse of :func:`pack`; raises :class:`StateError` on anything malformed."""
    view = memoryview(data)
    if len(view) < _PREFIX.size:
        raise StateError(f"stored state too short ({len(view)} bytes)")
    magic, version, hlen = _PREFIX.unpack_from(view, 0)
    if magic != _MAGIC or version != _VERSION:
        raise StateError(f"not a fedmark aggregation state (magic {bytes(magic)!r}, version {version})")
    start = _PREFIX.size + hlen
    try:
        header = json.loads(bytes(view[_PREFIX.size:start]))
    except ValueError as exc:
        raise StateError(f"stored state header is not JSON: {exc}") from exc
    offset = start

    def fill(t: Any) -> Tree:
        nonlocal offset
        if isinstance(t, dict):
            if "$a" in t:
                dtype = _DTYPES.get(t.get("dtype"))
                if dtype is None:
                    raise StateError(f"stored vector has unknown dtype {t.get('dtype')!r}")
                nbytes = int(t["n"]) * dtype.itemsize
                if offset + nbytes > len(view):
                    raise StateError("stored state is truncated (vector payload missing)")
                arr = np.frombuffer(view[offset:offset + nbytes], dtype=dtype).copy()
                offset += nbytes
                return arr
            return {k: fill(v) for k, v in t.items()}
        if isinstance(t, list):
            return [fill(v) for v in t]
        return t

    tree = fill(header)
    if offset != len(view):
        raise StateError(f"stored state has {len(view) - offset} trailing bytes")
    return tree
