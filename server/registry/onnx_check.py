"""Is this file an ONNX model with opsets this project's runtimes execute?  Answered without ``onnx``.

Why not ``onnx.load``: the server must stay free of the build-time stack
(TensorFlow, tf2onnx, onnx; see DESIGN.md), yet a published graph is served to
every device, so "it has the right hash" is not enough: a file that is not a
model, or one that needs an operator set no device runtime has, must be refused
at publish time.  ONNX files are protocol buffers (``onnx.proto``:
``ModelProto`` field 1 ``ir_version``, 7 ``graph``, 8 ``opset_import`` of
``OperatorSetIdProto`` {1 ``domain``, 2 ``version``}); reading the wire format of
those few fields is a few dozen lines and checks the file is well-formed
protobuf from end to end.
"""
from __future__ import annotations

__all__ = ["OnnxCheckError", "check_onnx", "ALLOWED_DOMAINS", "MIN_OPSET", "MAX_OPSET", "MAX_IR_VERSION"]

#: Operator-set domains a device runtime may be asked to run ("" is the default ai.onnx domain).
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
#: Default-domain opsets every supported ONNX Runtime (>= 1.17: opset 20) executes; exports use 17.
MIN_OPSET, MAX_OPSET = 7, 20
MAX_IR_VERSION = 10


class OnnxCheckError(ValueError):
    """The bytes are not an ONNX model this project can serve; the message says why."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= len(data):
            raise OnnxCheckError("truncated varint")
        b = data[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7
        if shift > 63:
            raise OnnxCheckError("varint longer than 10 bytes")


def _fields(data: bytes) -> list[tuple[int, int, object]]:
    """Top-level (field number, wire type, value) triples; raises on malformed wire format."""
    out: list[tuple[int, int, object]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise OnnxCheckError("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((field, wire, value))
        elif wire == 1:
            pos += 8
            out.append((field, wire, None))
        elif wire == 2:
            n, pos = _varint(data, pos)
            if pos + n > len(data):
                raise OnnxCheckError("length-delimited field runs past the end")
            out.append((field, wire, data[pos:pos + n]))
            pos += n
        elif wire == 5:
            pos += 4
            out.append((field, wire, None))
        else:
            raise OnnxCheckError(f"wire type {wire} is not used by ONNX")
        if pos > len(data):
            raise OnnxCheckError("fixed-size field runs past the end")
    return out


def check_onnx(data: bytes) -> dict[str, int]:
    """The model's opsets ``{domain: version}``; raises :class:`OnnxCheckError` for anything else."""
    try:
        fields = _fields(data)
    except OnnxCheckError as exc:
        raise OnnxCheckError(f"not an ONNX model (malformed protobuf: {exc})") from None
    ir = [v for f, w, v in fields if f == 1 and w == 0]
    graphs = [v for f, w, v in fields if f == 7 and w == 2]
    opsets: dict[str, int] = {}
    for f, w, v in fields:
        if f == 8 and w == 2:
            sub = _fields(v)  # type: ignore[arg-type]
            domain = next((bytes(x).decode("utf-8", "replace") for g, t, x in sub if g == 1 and t == 2), "")
            version = next((int(x) for g, t, x in sub if g == 2 and t == 0), 0)  # type: ignore[call-overload]
            opsets[domain] = version
    if not ir or not graphs:
        raise OnnxCheckError("not an ONNX model (no ir_version or no graph)")
    if not 3 <= ir[0] <= MAX_IR_VERSION:
        raise OnnxCheckError(f"ONNX ir_version {ir[0]} is outside the supported 3..{MAX_IR_VERSION}")
    unknown = sorted(set(opsets) - ALLOWED_DOMAINS)
    if unknown:
        raise OnnxCheckError(f"ONNX model needs operator domain(s) {unknown}; allowed: {sorted(ALLOWED_DOMAINS)}")
    default = opsets.get("", opsets.get("ai.onnx"))
    if default is None or not MIN_OPSET <= default <= MAX_OPSET:
        raise OnnxCheckError(f"ONNX default opset {default} is outside the supported {MIN_OPSET}..{MAX_OPSET}")
    return opsets
