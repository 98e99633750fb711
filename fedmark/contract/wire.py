"""The binary update body (``FMU1``) and the HTTP headers that travel beside it.

Why binary: JSON lists are ~45x slower to parse at 1M parameters, and a
fixed-size body lets the server cap the request at the model's exact size.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from fedmark.contract.errors import WireError

# HTTP headers that carry an update's metadata next to its binary body.
HDR_ROUND = "X-Fedmark-Round"
HDR_MODEL_VERSION = "X-Fedmark-Model-Version"
HDR_NUM_EXAMPLES = "X-Fedmark-Num-Examples"
HDR_WITHIN_CLIP = "X-Fedmark-Within-Clip"  # "1" if ||delta|| <= C before clipping
HDR_IDEMPOTENCY = "Idempotency-Key"
UPDATE_CONTENT_TYPE = "application/vnd.fedmark.update"

__all__ = ["HDR_ROUND", "HDR_MODEL_VERSION", "HDR_NUM_EXAMPLES", "HDR_WITHIN_CLIP", "HDR_IDEMPOTENCY", "UPDATE_CONTENT_TYPE", "ENCODINGS", "encode_update", "encoded_size", "decode_update"]


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
