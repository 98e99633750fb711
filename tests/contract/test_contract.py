"""The wire contract: manifest parsing, feature encoding, update encoding, clipping."""
from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedmark import contract as c


def _manifest_dict(**over):
    d = {
        "format": c.MANIFEST_FORMAT, "model": "m", "family": "propensity", "version": 1,
        "params": [{"name": "w", "shape": [3, 2]}, {"name": "b", "shape": [2]}],
        "batch_size": 8, "graphs": {"train": "train.onnx"},
        "files": {"train.onnx": "sha256:" + "0" * 64, "params.bin": "sha256:" + "1" * 64},
    }
    d.update(over)
    return d


def test_manifest_round_trip_and_sizes():
    m = c.Manifest.from_json(_manifest_dict())
    assert m.num_params == 8
    again = c.Manifest.loads(m.dumps())
    assert again == m
    assert c.manifest_digest(m) == c.manifest_digest(again)


@pytest.mark.parametrize("change, words", [
    ({"format": "other/9"}, "unknown manifest format"),
    ({"params": []}, "no parameters"),
    ({"params": [{"name": "w", "shape": [0]}]}, "non-positive"),
    ({"params": [{"name": "w", "shape": [2], "dtype": "float64"}]}, "only float32"),
    ({"graphs": {"train": "missing.onnx"}}, "no content hash"),
    ({"files": {"train.onnx": "sha256:" + "0" * 64, "../x": "sha256:" + "0" * 64}}, "plain name"),
    ({"files": {"train.onnx": "md5:abc"}}, "sha256"),
    ({"batch_size": 0}, "positive"),
])
def test_manifest_errors_say_what_is_wrong(change, words):
    with pytest.raises(c.ManifestError, match=words):
        c.Manifest.from_json(_manifest_dict(**change))


def test_manifest_missing_fields_named():
    d = _manifest_dict()
    del d["graphs"], d["batch_size"]
    with pytest.raises(c.ManifestError, match="batch_size, graphs"):
        c.Manifest.from_json(d)


def test_artifact_hash_verification(tmp_path):
    (tmp_path / "train.onnx").write_bytes(b"graph")
    (tmp_path / "params.bin").write_bytes(np.zeros(8, np.float32).tobytes())
    files = {n: c.sha256_file(tmp_path / n) for n in ("train.onnx", "params.bin")}
    (tmp_path / c.MANIFEST_FILE).write_text(json.dumps(_manifest_dict(files=files)))
    assert c.load_artifact_manifest(tmp_path).num_params == 8
    (tmp_path / "train.onnx").write_bytes(b"tampered")
    with pytest.raises(c.ManifestError, match="modified or corrupted"):
        c.load_artifact_manifest(tmp_path)


SCHEMA = c.FeatureSchema(
    (c.Column("age", "numeric", mean=40.0, std=10.0),
     c.Column("job", "onehot", vocabulary=("admin", "tech")),
     c.Column("city", "hash", buckets=4)),
    label="y", positive="yes",
)


def test_feature_encoding_rules():
    x, y, errs = SCHEMA.encode([
        {"age": 50, "job": "tech", "city": "Lisbon", "y": "yes"},
        {"age": None, "job": "pilot", "city": None, "y": "no"},  # missing -> fill; unseen -> unknown slot
    ])
    assert errs == []
    assert x.shape == (2, SCHEMA.width) == (2, 1 + 3 + 4)
    assert x[0, 0] == pytest.approx(1.0) and x[1, 0] == 0.0
    assert list(x[0, 1:4]) == [0, 1, 0] and list(x[1, 1:4]) == [0, 0, 1]
    assert x[0, 4 + zlib.crc32(b"Lisbon") % 4] == 1.0 and x[0, 4:].sum() == 1.0
    assert list(y) == [1.0, 0.0]


def test_bad_rows_reported_with_row_column_reason():
    recs = [{"age": 1, "job": "tech", "y": "no"}, {"age": "old", "job": "tech", "y": "no"}, {"age": 3, "job": "x"}]
    with pytest.raises(c.SchemaError) as ei:
        SCHEMA.encode(recs)
    assert [(e.row, e.column) for e in ei.value.errors] == [(1, "age"), (2, "y")]
    x, y, errs = SCHEMA.encode(recs, strict=False)
    assert x.shape[0] == 1 and len(errs) == 2 and "not a number" in str(errs[0])


def test_schema_json_round_trip():
    again = c.FeatureSchema.from_json(json.loads(json.dumps(SCHEMA.to_json())))
    assert again.width == SCHEMA.width
    a, _, _ = SCHEMA.encode([{"age": 3, "job": "admin", "city": "x", "y": "yes"}])
    b, _, _ = again.encode([{"age": 3, "job": "admin", "city": "x", "y": "yes"}])
    assert np.array_equal(a, b)


finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, st.integers(1, 300), elements=finite), st.floats(1e-3, 1e3))
def test_clipped_norm_never_exceeds_clip(vec, clip):
    out, norm, within = c.l2_clip(vec, clip)
    assert float(np.linalg.norm(out.astype(np.float64))) <= clip
    assert within == (norm <= clip)
    if within:
        assert np.array_equal(out, vec)


def test_clip_refuses_nan():
    with pytest.raises(c.ContractError, match="NaN"):
        c.l2_clip(np.array([1.0, np.nan], np.float32), 1.0)


@settings(max_examples=100, deadline=None)
@given(arrays(np.float32, st.integers(0, 500), elements=finite))
def test_f32_round_trip_exact(vec):
    out, enc = c.decode_update(c.encode_update(vec, "f32"), expected_count=vec.size)
    assert enc == "f32" and np.array_equal(out, vec)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, st.integers(1, 500), elements=st.floats(-100, 100, width=32)))
def test_lossy_encodings_bounded_error(vec):
    f16, _ = c.decode_update(c.encode_update(vec, "f16"))
    assert np.allclose(f16, vec, rtol=1e-3, atol=1e-3)
    q8, _ = c.decode_update(c.encode_update(vec, "q8", np.random.default_rng(0)))
    step = (float(vec.max()) - float(vec.min())) / 255.0
    assert np.all(np.abs(q8 - vec) <= step * 1.0001 + 1e-5)


def test_q8_stochastic_rounding_is_unbiased():
    rng = np.random.default_rng(1)
    vec = rng.normal(size=64).astype(np.float32)
    mean = np.mean([c.decode_update(c.encode_update(vec, "q8", rng))[0] for _ in range(2000)], axis=0)
    step = (vec.max() - vec.min()) / 255.0
    assert np.max(np.abs(mean - vec)) < 0.1 * step  # deterministic rounding would be off by up to step/2


@pytest.mark.parametrize("mutate, words", [
    (lambda b: b[:10], "shorter than"),
    (lambda b: b"XXXX" + b[4:], "magic"),
    (lambda b: b[:-4], "bytes, a f32 update"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "checksum"),
])
def test_decode_rejects_damaged_bodies(mutate, words):
    body = c.encode_update(np.arange(10, dtype=np.float32))
    with pytest.raises(c.WireError, match=words):
        c.decode_update(mutate(body))


def test_decode_rejects_wrong_count_and_nonfinite():
    body = c.encode_update(np.ones(5, np.float32))
    with pytest.raises(c.WireError, match="5 values.*7 parameters"):
        c.decode_update(body, expected_count=7)
    with pytest.raises(c.WireError, match="NaN"):
        c.encode_update(np.array([np.inf], np.float32))
    # a hand-made body with NaN and a valid checksum is still refused
    payload = np.array([np.nan], "<f4").tobytes()
    forged = c.wire._HEADER.pack(b"FMU1", 0, 0, 0, 1, zlib.crc32(payload)) + payload
    with pytest.raises(c.WireError, match="NaN"):
        c.decode_update(forged)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoder_never_crashes_on_garbage(body):
    try:
        c.decode_update(body)
    except c.WireError:
        pass


def test_flatten_unflatten():
    specs = (c.ParamSpec("a", (2, 3)), c.ParamSpec("b", (4,)))
    arrs = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, np.float32)]
    vec = c.flatten(arrs)
    back = c.unflatten(vec, specs)
    assert all(np.array_equal(x, y) for x, y in zip(arrs, back))
    with pytest.raises(c.ContractError, match="parameters need 10"):
        c.unflatten(vec[:-1], specs)


# --------------------------------------------------------------------------- the protocol around the body
def test_a_built_task_parses_back_to_itself_and_names_its_consent_purposes():
    doc = c.build_task(task_id="t", round_id="r", model="m", version=2, upload_url="/v1/rounds/r/updates",
                       clip_norm=0.8, purpose="Retention", consent_purposes=["retention", "analytics"],
                       policy_version=1, region="eu")
    t = c.parse_task(doc)
    assert t.to_json() == doc and t.manifest_url == "/v1/models/m/versions/2/manifest"
    assert t.required_purposes("marketing") == ("retention", "analytics")
    ungoverned = c.parse_task({**doc, "purpose": None, "consent_purposes": None})
    assert "consent_purposes" not in ungoverned.to_json() and ungoverned.required_purposes(" Marketing") == ("marketing",)
    assert c.consent_covers({"retention", "analytics", "x"}, t.required_purposes("m"))
    assert not c.consent_covers({"retention"}, t.required_purposes("m"))


@pytest.mark.parametrize("change, words", [
    ({"clip_norm": None, "local_noise": 0.1}, "no clip_norm"),
    ({"version": 0}, "version must be an integer >= 1"),
    ({"encoding": "f64"}, "unknown update encoding"),
    ({"consent_purposes": "retention"}, "consent_purposes must be a list"),
])
def test_build_task_refuses_what_no_device_could_run(change, words):
    kw = {"task_id": "t", "round_id": "r", "model": "m", "version": 1, "upload_url": "/u", "clip_norm": 1.0, **change}
    with pytest.raises(c.ProtocolError, match=words) as ei:
        c.build_task(**kw)
    assert ei.value.code == c.ERR_BAD_TASK and isinstance(ei.value, c.ContractError)


def test_upload_headers_round_trip_and_the_bit_needs_a_clip_norm():
    h = c.upload_headers(version=4, num_examples=12, key="abc", round_id="r_1", within_clip=False)
    p = c.parse_upload_headers({k.lower(): v for k, v in h.items()})  # header names are case-insensitive
    assert (p.version, p.num_examples, p.within_clip, p.key, p.round_id) == (4, 12, False, "abc", "r_1")
    assert c.HDR_WITHIN_CLIP not in c.upload_headers(version=4, num_examples=12, key="abc")
    with pytest.raises(c.ProtocolError, match="Num-Examples must be >= 1") as ei:
        c.upload_headers(version=4, num_examples=0, key="abc")
    assert ei.value.code == c.ERR_BAD_HEADER


def test_params_file_rule():
    m = c.Manifest.from_json(_manifest_dict())
    assert c.params_file(m) == c.PARAMS_FILE == "params.bin"
    h = "sha256:" + "2" * 64
    named = c.Manifest.from_json(_manifest_dict(extra={"params_file": "w.bin"},
                                                files={"train.onnx": "sha256:" + "0" * 64, "w.bin": h}))
    assert c.params_file(named) == "w.bin"
    with pytest.raises(c.ManifestError, match="no content hash for the parameter file 'x.bin'"):
        c.params_file(c.Manifest.from_json(_manifest_dict(extra={"params_file": "x.bin"})))


def test_codes_and_upload_outcomes():
    assert c.REASON_ROUND_FULL in c.NO_TASK_REASONS and c.ERR_ROUND_CLOSED in c.EXPIRED_CODES
    assert [c.upload_outcome(s, code) for s, code in [(202, None), (200, None), (503, "unavailable"),
                                                       (409, "stale_version"), (400, "bad_header")]] == [
        "accepted", "duplicate", "pending", "expired", "rejected"]
    assert set(c.codes.__all__) <= set(c.__all__)
