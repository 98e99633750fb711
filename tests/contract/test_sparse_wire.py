"""The sparse update body (FMS1): a round trip, and every malformed body refused with its code."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from fedmark.contract import WireError
from fedmark.contract.gram import clip_norm_for, gram_contribution, triu_index, triu_size
from fedmark.contract.wire import decode_sparse_update, encode_sparse_update, sparse_size, wire_error_code

COUNT = triu_size(40)


def body(idx=(1, 5, 9), val=(1.0, 2.0, -0.5), count=COUNT) -> bytes:
    return encode_sparse_update(np.array(idx, np.uint32), np.array(val, np.float32), count)


def test_round_trip_and_size():
    idx, val = gram_contribution([3, 17, 8, 3], 40)
    b = encode_sparse_update(idx, val, COUNT)
    assert len(b) == sparse_size(6)  # 3 distinct items -> 3 * 4 / 2 upper-triangle entries
    got_i, got_v = decode_sparse_update(b, COUNT)
    assert got_i.tolist() == idx.tolist() and got_v.tolist() == [1.0] * 6
    assert np.isclose(np.sqrt(got_v.astype(np.float64) @ got_v), clip_norm_for(3))


def test_triu_layout_is_row_major_and_dense():
    n = 7
    i, j = np.triu_indices(n)
    assert triu_index(i, j, n).tolist() == list(range(triu_size(n)))
    with pytest.raises(ValueError):
        triu_index(np.array([3]), np.array([2]), n)


def _patch(b: bytes, **fields) -> bytes:
    magic, enc, flags, res, nnz, count, crc = struct.unpack_from("<4sBBHIII", b)
    vals = {**dict(magic=magic, enc=enc, flags=flags, res=res, nnz=nnz, count=count, crc=crc), **fields}
    head = struct.pack("<4sBBHIII", vals["magic"], vals["enc"], vals["flags"], vals["res"], vals["nnz"],
                       vals["count"], vals["crc"])
    return head + b[20:]


def _recrc(b: bytes, payload: bytes) -> bytes:
    return _patch(b[:20] + payload, crc=zlib.crc32(payload))


@pytest.mark.parametrize("bad, code, words", [
    (b"FMS1", "bad_update", "shorter than"),
    (body().replace(b"FMS1", b"FMU1", 1), "bad_update", "magic"),
    (_patch(body(), enc=3), "bad_encoding", "encoding"),
    (_patch(body(), count=COUNT + 1), "bad_update", "parameters"),
    (body()[:-4], "bad_update", "bytes"),
    (body()[:-1] + b"\x00", "bad_update", "checksum"),
    # indices out of order, duplicated, or beyond the model (each with a valid checksum)
    (_recrc(body(), np.array([5, 1, 9], "<u4").tobytes() + np.ones(3, "<f4").tobytes()), "bad_update", "increasing"),
    (_recrc(body(), np.array([5, 5, 9], "<u4").tobytes() + np.ones(3, "<f4").tobytes()), "bad_update", "increasing"),
    (_recrc(body(), np.array([1, 5, COUNT], "<u4").tobytes() + np.ones(3, "<f4").tobytes()), "bad_update", "increasing"),
    (_recrc(body(), np.array([1, 5, 9], "<u4").tobytes() + np.array([1, np.nan, 1], "<f4").tobytes()), "non_finite", "NaN"),
])
def test_bad_bodies_are_refused_with_a_code(bad, code, words):
    with pytest.raises(WireError) as err:
        decode_sparse_update(bad, COUNT)
    assert wire_error_code(err.value) == code and words in str(err.value), str(err.value)


def test_more_pairs_than_the_cap_allows_is_refused_before_reading_them():
    with pytest.raises(WireError, match="more than the 2"):
        decode_sparse_update(body(), COUNT, max_nnz=2)


def test_encoder_refuses_what_the_decoder_would():
    for idx, val in (([2, 1], [1.0, 1.0]), ([1, COUNT], [1.0, 1.0]), ([1], [1.0, 2.0]), ([1], [np.inf])):
        with pytest.raises(WireError):
            encode_sparse_update(np.array(idx), np.array(val, np.float32), COUNT)
