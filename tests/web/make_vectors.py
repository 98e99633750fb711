"""Write test vectors produced by fedmark.contract for the JavaScript port to match.

Why vectors and not a second specification: the Python module *is* the
contract.  This script runs it on fixed inputs (update bodies, feature rows
with missing/unknown/bad values, clip results, broken manifests, task
documents, upload headers, outcome codes, the params-file and consent rules)
and records its exact outputs; tests/web/js/contract.test.mjs demands the same
bytes and messages from edge_sdk/web/src/contract.js, and the Python SDK and
the server are held to the same protocol vectors (tests/edge_sdk/test_task.py,
tests/server/test_ingest.py).

Usage: python tests/web/make_vectors.py OUT.json

Binary values travel as hex of their little-endian bytes so nothing is lost to
JSON number formatting; NaN inside records travels as the string "__NaN__".
"""
from __future__ import annotations

import copy
import json
import math
import zlib
import sys
from typing import Any

import numpy as np

from fedmark import contract as c

NAN_TOKEN = "__NaN__"


def _hex(a: np.ndarray, dtype: str) -> str:
    return np.asarray(a, dtype=dtype).tobytes().hex()


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return NAN_TOKEN
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    return v


def update_vectors() -> dict[str, Any]:
    """Encoded bodies (f32, f16, q8 with recorded uniform draws) and decoder refusals."""
    rng = np.random.default_rng(7)
    f16_edges = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, -65504.0, 65503.9, 6.1e-5, 5.96e-8, 2.98e-8, 3e-8,
                          1e-9, 1.0009765625, 1.00048828125, 1.00146484375, 2049.0, 2051.0, 0.1, 1 / 3],
                         dtype=np.float32)
    cases: list[tuple[str, np.ndarray]] = [
        ("empty", np.zeros(0, np.float32)),
        ("single", np.array([0.75], np.float32)),
        ("constant", np.full(9, -1.25, np.float32)),
        ("f16_edges", f16_edges),
        ("normal_1000", rng.normal(0, 0.05, 1000).astype(np.float32)),
        ("wide_range", (rng.standard_cauchy(300) * 10).clip(-6e4, 6e4).astype(np.float32)),
        ("tiny", (rng.normal(0, 1e-6, 200)).astype(np.float32)),
    ]
    bodies = []
    for name, vec in cases:
        for enc in ("f32", "f16", "q8"):
            entry: dict[str, Any] = {"name": name, "encoding": enc, "values": _hex(vec, "<f4")}
            if enc == "q8":
                seed = 1000 + len(bodies)
                entry["draws"] = _hex(np.random.default_rng(seed).random(vec.size), "<f8")
                body = c.encode_update(vec, enc, np.random.default_rng(seed))
            else:
                body = c.encode_update(vec, enc)
            entry["body"] = body.hex()
            entry["decoded"] = _hex(c.decode_update(body, expected_count=vec.size)[0], "<f4")
            bodies.append(entry)

    good = c.encode_update(np.arange(10, dtype=np.float32))
    payload = np.array([np.nan], "<f4").tobytes()
    forged_nan = c.wire._HEADER.pack(b"FMU1", 0, 0, 0, 1, zlib.crc32(payload)) + payload
    bad_enc = c.wire._HEADER.pack(b"FMU1", 7, 0, 0, 0, 0)
    damaged = [
        ("short", good[:10], None),
        ("magic", b"XXXX" + good[4:], None),
        ("length", good[:-4], None),
        ("checksum", good[:-1] + bytes([good[-1] ^ 1]), None),
        ("count", good, 7),
        ("nan", forged_nan, None),
        ("encoding_id", bad_enc, None),
    ]
    decode_errors = []
    for name, body, expected in damaged:
        try:
            c.decode_update(body, expected_count=expected)
        except c.WireError as exc:
            decode_errors.append({"name": name, "body": body.hex(), "expected_count": expected, "message": str(exc)})
        else:  # pragma: no cover - the vectors themselves must be refusals
            raise AssertionError(f"decode case {name} was accepted")
    encode_errors = []
    for name, vec, enc in [("inf", np.array([1.0, np.inf], np.float32), "f32"),
                           ("f16_range", np.array([70000.0], np.float32), "f16"),
                           ("unknown", np.ones(2, np.float32), "f64")]:
        try:
            c.encode_update(vec, enc)
        except c.WireError as exc:
            encode_errors.append({"name": name, "values": _hex(vec, "<f4"), "encoding": enc, "message": str(exc)})
    return {"bodies": bodies, "decode_errors": decode_errors, "encode_errors": encode_errors}


def clip_vectors() -> list[dict[str, Any]]:
    rng = np.random.default_rng(11)
    out = []
    for i in range(40):
        n = int(rng.integers(1, 2000))
        vec = (rng.normal(0, 1, n) * 10 ** rng.uniform(-4, 2)).astype(np.float32)
        norm = float(np.linalg.norm(vec.astype(np.float64)))
        # C within 1e-9 of the norm, not equal: the float64 norm itself may differ in the last bit
        # between numpy (BLAS dot order) and the JS port (compensated sum), both within 1 ulp.
        clip = norm * float(rng.choice([0.01, 0.5, 0.999, 1 - 1e-9, 1 + 1e-9, 1.001, 3.0]))
        clipped, got_norm, within = c.l2_clip(vec, clip)
        out.append({"values": _hex(vec, "<f4"), "clip": clip, "out": _hex(clipped, "<f4"),
                    "norm": got_norm, "within": within})
    return out


SCHEMA_JSON = {
    "columns": [
        {"name": "age", "kind": "numeric", "mean": 41.3, "std": 9.7, "fill": 12.5},
        {"name": "balance", "kind": "numeric", "mean": -3.25, "std": 1234.5},
        {"name": "job", "kind": "onehot", "vocabulary": ["admin", "tech", "3", "2.5", "True", "1e-05", "São"]},
        {"name": "city", "kind": "hash", "buckets": 7},
        {"name": "code", "kind": "hash", "buckets": 1031},
    ],
    "label": "y", "positive": "yes",
}

# Hand-picked values that exercise Python's str()/float() rules and every missing/unknown path.
TRICKY_RECORDS: list[Any] = [
    {"age": 50, "balance": "1_000", "job": "tech", "city": "Lisbon", "code": 7, "y": "yes"},
    {"age": None, "balance": " 12.5e2 ", "job": "pilot", "city": None, "code": 0.1, "y": "no"},
    {"age": "", "balance": float("nan"), "job": 3, "city": "São Paulo", "code": True, "y": 1},
    {"age": 33.5, "job": 2.5, "city": "東京🙂", "code": 1e-05, "y": True},
    {"age": True, "balance": -7, "job": True, "city": "", "code": 123456789012, "y": 0},
    {"age": "3.", "balance": ".5", "job": 1e-05, "city": 1.25e-12, "code": 1.5e-7, "y": "1"},
    {"age": "-inf", "balance": 2, "job": "admin", "y": "yes"},
    {"age": "0x10", "balance": "nan", "job": "admin", "y": "no"},
    {"age": [1, 2], "balance": {"a": 1}, "job": "tech"},
    ["not", "a", "mapping"],
    {"age": 20, "job": "São", "city": 9007199254740991, "code": -0.0, "y": float("nan")},
    {"age": "1e400", "balance": "Infinity", "job": None, "y": ""},
    {"age": " 42 ", "balance": "+1_2.5_0", "job": "", "city": 0.0001, "code": 123.456, "y": "yes"},
]


def random_records(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(5)
    jobs = ["admin", "tech", "pilot", "3", None, ""]
    recs = []
    for _ in range(n):
        r: dict[str, Any] = {
            "age": round(float(rng.normal(41, 12)), 3) if rng.random() > 0.1 else None,
            "balance": float(rng.normal(0, 3000)) if rng.random() > 0.1 else None,
            "job": jobs[int(rng.integers(0, len(jobs)))],
            "city": f"city-{int(rng.integers(0, 500))}" if rng.random() > 0.1 else None,
            "code": int(rng.integers(0, 10**6)),
            "y": "yes" if rng.random() < 0.3 else "no",
        }
        recs.append(r)
    return recs


def feature_vectors() -> dict[str, Any]:
    schema = c.FeatureSchema.from_json(SCHEMA_JSON)
    out: dict[str, Any] = {"schema": SCHEMA_JSON, "width": schema.width, "cases": []}
    for name, recs in [("tricky", TRICKY_RECORDS), ("random", random_records(300))]:
        x, y, errors = schema.encode(recs, strict=False)
        case: dict[str, Any] = {
            "name": name, "records": _json_safe(recs), "x": _hex(x, "<f4"),
            "y": _hex(y, "<f4") if y is not None else None, "rows": int(x.shape[0]),
            "errors": [[e.row, e.column, e.reason] for e in errors],
        }
        try:
            schema.encode(recs)
            case["strict_message"] = None
        except c.SchemaError as exc:
            case["strict_message"] = str(exc)
        xu, _, _ = schema.encode([r for r in recs if isinstance(r, dict)], with_label=False, strict=False)
        case["x_unlabelled"] = _hex(xu, "<f4")
        out["cases"].append(case)
    buckets = []
    for value, n in [("", 2), ("Lisbon", 4), ("São Paulo", 1031), ("東京🙂", 97), ("x" * 1000, 65536)]:
        buckets.append([value, n, c.hash_bucket(value, n)])
    out["hash_buckets"] = buckets
    return out


# Issue 14's rules: boolean, missing indicators, capped vocabulary with hashed tail buckets, log1p; and the
# regression and multiclass label rules (labels as encoded, and as the train graph takes them).
SCHEMA_TABULAR_JSON = {
    "columns": [
        {"name": "spend", "kind": "numeric", "mean": 5.1, "std": 1.7, "transform": "log1p", "indicator": True},
        {"name": "visits", "kind": "numeric", "mean": 3.0, "std": 2.0},
        {"name": "member", "kind": "boolean", "indicator": True},
        {"name": "optin", "kind": "boolean", "fill": 1.0},
        {"name": "country", "kind": "onehot", "vocabulary": ["FR", "PT", "UK"], "tail_buckets": 5},
        {"name": "device", "kind": "onehot", "vocabulary": ["ios", "web"]},
        # index columns feed an Embedding: the slot onehot would set, as a float (tail buckets / unknown slot too)
        {"name": "store", "kind": "index", "vocabulary": ["s1", "s2", "3"], "tail_buckets": 4, "embed": 2},
        {"name": "channel", "kind": "index", "vocabulary": ["app", "web"], "embed": 3},
    ],
    "label": "value", "task": "regression", "label_mean": 4.2, "label_std": 1.9, "label_transform": "log1p",
}
SCHEMA_MULTICLASS_JSON = {**SCHEMA_TABULAR_JSON, "label": "offer", "task": "multiclass",
                          "classes": ["bags", "kitchen", "paper", "2", "True"]}
for _k in ("label_mean", "label_std", "label_transform"):
    SCHEMA_MULTICLASS_JSON.pop(_k)

TABULAR_TRICKY: list[Any] = [
    {"spend": "120.5", "visits": 4, "member": "yes", "optin": "N", "country": "UK", "device": "ios", "value": "99.5",
     "offer": "bags", "store": "s2", "channel": "web"},
    {"spend": 1, "store": 3, "channel": "App", "value": 1, "offer": "bags"},
    {"spend": 2, "store": "s9", "channel": None, "value": 2, "offer": "paper"},
    {"spend": None, "visits": "", "member": None, "optin": None, "country": None, "device": None, "value": 0,
     "offer": "paper"},
    {"spend": -30, "visits": 1, "member": True, "optin": 0, "country": "Brasil", "device": "android", "value": -4,
     "offer": 2},
    {"spend": 0.0, "member": " TRUE ", "optin": 1.0, "country": "São Tomé", "value": "1e3", "offer": True},
    {"spend": "abc", "member": "maybe", "optin": 2, "country": 7, "value": "lots", "offer": "garden"},
    {"spend": "1e6", "visits": "2.5", "member": "f", "optin": "t", "country": "", "value": float("nan"),
     "offer": None},
    {"spend": -0.0, "visits": -1, "member": 1, "optin": False, "country": "PT", "device": "web", "value": "1e39",
     "offer": "kitchen"},
    {"spend": "  7  ", "member": [1], "country": "東京", "value": True, "offer": "True"},
]


def tabular_records(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(9)
    countries = ["FR", "PT", "UK", "DE", "ES", "IT", None, ""]
    out = []
    for _ in range(n):
        out.append({
            "spend": round(float(rng.lognormal(4, 2)), 2) if rng.random() > 0.15 else None,
            "visits": int(rng.integers(0, 40)), "member": ["yes", "no", None, "1", "0"][int(rng.integers(0, 5))],
            "optin": bool(rng.random() < 0.5), "country": countries[int(rng.integers(0, len(countries)))],
            "device": ["ios", "web", "android", None][int(rng.integers(0, 4))],
            "value": round(float(rng.lognormal(3, 1.5)), 2), "offer": ["bags", "kitchen", "paper"][int(rng.integers(0, 3))],
            "store": ["s1", "s2", "3", "s4", "s5", None][int(rng.integers(0, 6))],
            "channel": ["app", "web", "mail", None][int(rng.integers(0, 4))],
        })
    return out


def tabular_feature_vectors() -> list[dict[str, Any]]:
    out = []
    for schema_json in (SCHEMA_TABULAR_JSON, SCHEMA_MULTICLASS_JSON):
        schema = c.FeatureSchema.from_json(schema_json)
        entry: dict[str, Any] = {"schema": schema_json, "width": schema.width, "cases": []}
        for name, recs in [("tricky", TABULAR_TRICKY), ("random", tabular_records(200))]:
            x, y, errors = schema.encode(recs, strict=False)
            try:
                schema.encode(recs)
                strict = None
            except c.SchemaError as exc:
                strict = str(exc)
            entry["cases"].append({
                "name": f"{schema.task}/{name}", "records": _json_safe(recs), "x": _hex(x, "<f4"),
                "y": _hex(y, "<f4"), "graph_y": _hex(schema.graph_labels(y), "<f4"), "rows": int(x.shape[0]),
                "errors": [[e.row, e.column, e.reason] for e in errors], "strict_message": strict})
        out.append(entry)
    return out


BASE_MANIFEST = {
    "format": c.MANIFEST_FORMAT, "model": "m", "family": "propensity", "version": 1,
    "params": [{"name": "w", "shape": [3, 2]}, {"name": "b", "shape": [2]}],
    "batch_size": 8, "graphs": {"train": "train.onnx"},
    "files": {"train.onnx": "sha256:" + "0" * 64, "params.bin": "sha256:" + "1" * 64},
    "features": SCHEMA_JSON,
}


def manifest_vectors() -> list[dict[str, Any]]:
    """Each case: a manifest object and either its parameter count or Python's exact error message."""
    h = "sha256:" + "0" * 64
    mutations: list[tuple[str, dict[str, Any] | None, list[str], bool]] = [
        # name, fields to set (None value = delete), fields to delete, exact message comparable
        ("ok", {}, [], True),
        ("ok_local", {"local_params": [{"name": "u", "shape": [4]}], "version": "3"}, [], True),
        ("ok_shape_truncates", {"params": [{"name": "w", "shape": [2.7, "3"]}]}, [], True),
        ("format", {"format": "other/9"}, [], True),
        ("format_missing", {}, ["format"], True),
        ("missing_fields", {}, ["graphs", "batch_size"], True),
        ("no_params", {"params": []}, [], True),
        ("zero_dim", {"params": [{"name": "w", "shape": [0]}]}, [], True),
        ("zero_dim_2d", {"params": [{"name": "w", "shape": [2, 0]}]}, [], True),
        ("dtype", {"params": [{"name": "w", "shape": [2], "dtype": "float64"}]}, [], True),
        ("param_no_shape", {"params": [{"name": "w"}]}, [], True),
        ("param_bad_shape", {"params": [{"name": "w", "shape": ["x"]}]}, [], True),
        ("param_not_mapping", {"params": [["w", [2]]]}, [], True),
        ("graph_file", {"graphs": {"train": "missing.onnx"}}, [], True),
        ("plain_name", {"files": {"train.onnx": h, "../x": h}}, [], True),
        ("plain_name_dot", {"files": {"train.onnx": h, "..": h}}, [], True),
        ("hash_form", {"files": {"train.onnx": "md5:abc"}}, [], True),
        ("hash_len", {"files": {"train.onnx": h + "0"}}, [], True),
        ("batch_zero", {"batch_size": 0}, [], True),
        ("clip_negative", {"clip_norm": -1}, [], True),
        ("duplicate", {"params": [{"name": "w", "shape": [1]}], "local_params": [{"name": "w", "shape": [1]}]}, [],
         True),
        ("version_text", {"version": "x"}, [], True),
        ("version_none", {"version": None}, [], True),
        ("clip_none", {"clip_norm": None}, [], True),
        ("params_int", {"params": 5}, [], True),
        ("graphs_none", {"graphs": None}, [], True),
        ("not_object", None, [], True),
        ("protocol_named", {"family": "churn", "protocol": "supervised-tabular/1"}, [], True),
        ("protocol_unknown_family", {"family": "churn"}, [], True),
        ("protocol_legacy_recommender", {"family": "recommender"}, [], True),
    ]
    out = []
    for name, change, delete, exact in mutations:
        if change is None:
            d: Any = [1, 2]
        else:
            d = copy.deepcopy(BASE_MANIFEST)
            d.update(change)
            for k in delete:
                del d[k]
        try:
            m = c.Manifest.from_json(d)
            out.append({"name": name, "manifest": d, "num_params": m.num_params, "batch_size": m.batch_size,
                        "version": m.version, "shapes": [list(p.shape) for p in m.params], "protocol": m.protocol})
        except c.ManifestError as exc:
            out.append({"name": name, "manifest": d, "message": str(exc), "exact": exact})
    return out


def schema_error_vectors() -> list[dict[str, Any]]:
    cases = [
        ("no_columns", {"columns": []}),
        ("bad_kind", {"columns": [{"name": "a", "kind": "text"}]}),
        ("std_zero", {"columns": [{"name": "a", "kind": "numeric", "std": 0}]}),
        ("empty_vocab", {"columns": [{"name": "a", "kind": "onehot", "vocabulary": []}]}),
        ("one_bucket", {"columns": [{"name": "a", "kind": "hash", "buckets": 1}]}),
        ("width", {"columns": [{"name": "a", "kind": "hash", "buckets": 3}], "width": 4}),
        ("indicator_on_onehot", {"columns": [{"name": "a", "kind": "onehot", "vocabulary": ["x"], "indicator": True}]}),
        ("indicator_not_bool", {"columns": [{"name": "a", "kind": "numeric", "indicator": 1}]}),
        ("transform", {"columns": [{"name": "a", "kind": "numeric", "transform": "sqrt"}]}),
        ("bool_fill", {"columns": [{"name": "a", "kind": "boolean", "fill": 0.5}]}),
        ("tail_one", {"columns": [{"name": "a", "kind": "onehot", "vocabulary": ["x"], "tail_buckets": 1}]}),
        ("tail_text", {"columns": [{"name": "a", "kind": "onehot", "vocabulary": ["x"], "tail_buckets": "many"}]}),
        ("index_no_embed", {"columns": [{"name": "a", "kind": "index", "vocabulary": ["x"]}]}),
        ("index_embed_text", {"columns": [{"name": "a", "kind": "index", "vocabulary": ["x"], "embed": "8"}]}),
        ("index_empty_vocab", {"columns": [{"name": "a", "kind": "index", "vocabulary": [], "embed": 8}]}),
        ("task", {"columns": [{"name": "a", "kind": "hash", "buckets": 3}], "task": "ranking"}),
        ("classes_one", {"columns": [{"name": "a", "kind": "hash", "buckets": 3}], "task": "multiclass",
                         "classes": ["x"]}),
        ("classes_repeat", {"columns": [{"name": "a", "kind": "hash", "buckets": 3}], "task": "multiclass",
                            "classes": ["x", "y", "x"]}),
        ("label_std", {"columns": [{"name": "a", "kind": "hash", "buckets": 3}], "task": "regression",
                       "label_std": 0}),
        ("label_transform", {"columns": [{"name": "a", "kind": "hash", "buckets": 3}], "label_transform": "exp"}),
        ("duplicate_column", {"columns": [{"name": "a", "kind": "hash", "buckets": 3},
                                          {"name": "a", "kind": "boolean"}]}),
    ]
    out = []
    for name, d in cases:
        try:
            c.FeatureSchema.from_json(d)
        except c.ManifestError as exc:
            out.append({"name": name, "features": d, "message": str(exc)})
        else:  # pragma: no cover
            raise AssertionError(f"schema case {name} was accepted")
    return out


BASE_TASK: dict[str, Any] = {
    "task_id": "t_1", "round_id": "r_1", "model": "m", "version": 3, "mode": "sync",
    "manifest_url": "/v1/models/m/versions/3/manifest", "upload_url": "/v1/rounds/r_1/updates",
    "hyperparams": {"epochs": 2, "learning_rate": 0.05}, "clip_norm": 1.25, "local_noise": 0.0, "encoding": "f16",
    "deadline": "2026-11-29T21:00:00Z",
    "eligibility": {"require_charging": True, "require_unmetered": False, "require_idle": False, "min_battery": 0.5},
}
GOVERNED = {"purpose": "propensity_scoring", "consent_purposes": ["propensity_scoring", "Analytics "],
            "policy_version": 2, "region": "eu"}


def task_vectors() -> list[dict[str, Any]]:
    """Task documents: each either parses (to its canonical wire form) or is refused with a message."""
    cases: list[tuple[str, dict[str, Any] | None, list[str]]] = [
        # name, fields to set, fields to delete
        ("server_built", {}, []),
        ("governed", GOVERNED, []),
        ("no_clip", {"clip_norm": None}, []),
        ("minimal", {}, ["task_id", "mode", "manifest_url", "hyperparams", "local_noise", "encoding", "deadline",
                          "eligibility"]),
        ("nulls_default", {"task_id": None, "manifest_url": None, "encoding": None, "local_noise": None,
                           "hyperparams": None, "eligibility": None, "consent_purposes": None}, []),
        ("numeric_strings", {"clip_norm": " 2.5 ", "version": "7", "local_noise": "0.5"}, []),
        ("integral_float_version", {"version": 4.0, "policy_version": 1}, []),
        ("unknown_keys_ignored", {"extra": {"x": 1}, "future": [1, 2]}, []),
        ("not_object", None, []),
        ("missing", {"round_id": None}, ["upload_url"]),
        ("missing_clip_key", {}, ["clip_norm"]),
        ("clip_negative", {"clip_norm": -1}, []),
        ("clip_zero", {"clip_norm": 0}, []),
        ("clip_text", {"clip_norm": "big"}, []),
        ("clip_list", {"clip_norm": [1]}, []),
        ("clip_bool", {"clip_norm": True}, []),
        ("clip_inf", {"clip_norm": "inf"}, []),
        ("noise_negative", {"local_noise": -0.5}, []),
        ("noise_without_clip", {"clip_norm": None, "local_noise": 0.5}, []),
        ("encoding_unknown", {"encoding": "f8"}, []),
        ("encoding_number", {"encoding": 3}, []),
        ("eligibility_list", {"eligibility": []}, []),
        ("hyperparams_text", {"hyperparams": "fast"}, []),
        ("version_zero", {"version": 0}, []),
        ("version_fraction", {"version": 2.5}, []),
        ("version_text", {"version": "three"}, []),
        ("version_bool", {"version": True}, []),
        ("round_number", {"round_id": 17}, []),
        ("model_empty", {"model": ""}, []),
        ("deadline_number", {"deadline": 12}, []),
        ("purposes_text", {"consent_purposes": "marketing"}, []),
        ("purposes_blank", {"consent_purposes": ["a", " "]}, []),
        ("policy_version_zero", {**GOVERNED, "policy_version": 0}, []),
        ("region_list", {**GOVERNED, "region": ["eu"]}, []),
        ("consent_signals", {**GOVERNED, "consent_signals": {
            "tcf": {"vendor_id": 1234, "consent": [1, 3, 4], "legitimate_interest": [10]},
            "consent_mode": ["ad_user_data", "ad_personalization"], "gpc": True}}, []),
        ("consent_signals_only", {"consent_signals": {"gpc": True, "simple_purposes": True},
                                  "consent_purposes": ["marketing"]}, []),
        ("consent_signals_empty_tcf", {**GOVERNED, "consent_signals": {"tcf": {"vendor_id": 1234}}}, []),
    ]
    out = []
    for name, change, delete in cases:
        if change is None:
            d: Any = ["not", "a", "task"]
        else:
            d = copy.deepcopy(BASE_TASK)
            d.update(copy.deepcopy(change))
            for k in delete:
                del d[k]
        try:
            doc = c.parse_task(d)
        except c.ProtocolError as exc:
            assert exc.code == c.ERR_BAD_TASK
            out.append({"name": name, "task": d, "code": exc.code, "message": str(exc)})
        else:
            out.append({"name": name, "task": d, "parsed": doc.to_json(),
                        "required_purposes": list(doc.required_purposes("Marketing"))})
    # What the server builds parses back to itself on every side.
    built = c.build_task(task_id="t_9", round_id="r_9", model="m@eu", version=5, upload_url="/v1/rounds/r_9/updates",
                         clip_norm=None, mode="async", hyperparams={"epochs": 1}, **GOVERNED)
    out.append({"name": "build_task", "task": built, "parsed": c.parse_task(built).to_json(),
                "required_purposes": list(c.parse_task(built).required_purposes("marketing"))})
    return out


def header_vectors() -> dict[str, Any]:
    """Upload headers: what a device sends (built), and what the server accepts or refuses (parsed)."""
    built = []
    for name, kw in [("clipped", {"version": 3, "num_examples": 120, "key": "k-1", "round_id": "r_1",
                                  "within_clip": True}),
                     ("clipped_outside", {"version": 3, "num_examples": 1, "key": "k-2", "round_id": "r_1",
                                          "within_clip": False}),
                     ("no_clip_norm", {"version": 1, "num_examples": 5, "key": "k-3", "round_id": "r_2",
                                       "within_clip": None}),
                     ("no_round", {"version": 2, "num_examples": 9, "key": "0123456789abcdef"})]:
        built.append({"name": name, "args": kw, "headers": c.upload_headers(**kw)})
    good = {c.HDR_MODEL_VERSION: "3", c.HDR_NUM_EXAMPLES: "10", c.HDR_IDEMPOTENCY: "key-1"}
    cases: list[tuple[str, dict[str, Any], list[str]]] = [
        ("ok", {}, []),
        ("ok_bit", {c.HDR_WITHIN_CLIP: " 1 "}, []),
        ("ok_bit_zero", {c.HDR_WITHIN_CLIP: "0", c.HDR_ROUND: "r_1"}, []),
        ("ok_lower_case_names", {}, ["*lower"]),
        ("ok_spaces_and_sign", {c.HDR_MODEL_VERSION: " +7 ", c.HDR_NUM_EXAMPLES: "1_000"}, []),
        ("ok_max", {c.HDR_NUM_EXAMPLES: str(c.MAX_HEADER_INT)}, []),
        ("version_missing", {}, [c.HDR_MODEL_VERSION]),
        ("version_text", {c.HDR_MODEL_VERSION: "v3"}, []),
        ("version_float", {c.HDR_MODEL_VERSION: "3.0"}, []),
        ("version_zero", {c.HDR_MODEL_VERSION: "0"}, []),
        ("examples_missing", {}, [c.HDR_NUM_EXAMPLES]),
        ("examples_zero", {c.HDR_NUM_EXAMPLES: "0"}, []),
        ("examples_negative", {c.HDR_NUM_EXAMPLES: "-4"}, []),
        ("examples_too_big", {c.HDR_NUM_EXAMPLES: str(c.MAX_HEADER_INT + 1)}, []),
        ("examples_empty", {c.HDR_NUM_EXAMPLES: ""}, []),
        ("bit_yes", {c.HDR_WITHIN_CLIP: "yes"}, []),
        ("bit_two", {c.HDR_WITHIN_CLIP: "2"}, []),
        ("key_missing", {}, [c.HDR_IDEMPOTENCY]),
        ("key_empty", {c.HDR_IDEMPOTENCY: ""}, []),
        ("key_space", {c.HDR_IDEMPOTENCY: "a b"}, []),
        ("key_long", {c.HDR_IDEMPOTENCY: "k" * 201}, []),
        ("key_200", {c.HDR_IDEMPOTENCY: "k" * 200}, []),
        ("key_non_ascii", {c.HDR_IDEMPOTENCY: "clé"}, []),
    ]
    parsed = []
    for name, change, delete in cases:
        h = {**good, **change}
        if delete == ["*lower"]:
            h = {k.lower(): v for k, v in h.items()}
            delete = []
        for k in delete:
            del h[k]
        try:
            p = c.parse_upload_headers(h)
        except c.ProtocolError as exc:
            assert exc.code == c.ERR_BAD_HEADER
            parsed.append({"name": name, "headers": h, "code": exc.code, "message": str(exc)})
        else:
            parsed.append({"name": name, "headers": h, "parsed": {"version": p.version, "num_examples": p.num_examples,
                                                                  "within_clip": p.within_clip, "key": p.key,
                                                                  "round_id": p.round_id}})
    return {"built": built, "parsed": parsed}


def code_vectors() -> dict[str, Any]:
    """Every outcome / error code constant, the code sets, and the upload-outcome decision table."""
    constants = {n: getattr(c.codes, n) for n in c.codes.__all__ if isinstance(getattr(c.codes, n), str)}
    sets = {n: sorted(getattr(c.codes, n)) for n in ("NO_TASK_REASONS", "POLICY_DENIED_REASONS", "EXPIRED_CODES")}
    outcomes = [[status, code, c.upload_outcome(status, code)]
                for status, code in [(202, None), (200, None), (500, "internal_error"), (503, "unavailable"),
                                     (409, "round_closed"), (409, "stale_version"), (404, "unknown_round"),
                                     (409, "duplicate_update"), (400, "bad_header"), (403, "forbidden")]]
    return {"constants": constants, "sets": sets, "OUTCOMES": list(c.OUTCOMES), "upload_outcome": outcomes}


def params_file_vectors() -> list[dict[str, Any]]:
    """The params-file rule: which file holds the global parameters, or why the manifest names none."""
    h = "sha256:" + "2" * 64
    out = []
    for name, extra, files in [("default", {}, None), ("named", {"params_file": "weights.bin"}, {"weights.bin": h}),
                               ("named_default", {"params_file": "params.bin"}, None),
                               ("named_unhashed", {"params_file": "weights.bin"}, None),
                               ("default_unhashed", {}, {"train.onnx": "sha256:" + "0" * 64}),
                               ("named_null", {"params_file": None}, None)]:
        d = copy.deepcopy(BASE_MANIFEST)
        d["extra"] = extra
        if files is not None:
            d["files"] = {"train.onnx": "sha256:" + "0" * 64, **files} if name != "default_unhashed" else files
        m = c.Manifest.from_json(d)
        try:
            out.append({"name": name, "manifest": d, "file": c.params_file(m)})
        except c.ManifestError as exc:
            out.append({"name": name, "manifest": d, "message": str(exc)})
    return out


def consent_vectors() -> list[dict[str, Any]]:
    """The consent rule: which purposes a task requires, and whether a record's consent covers them."""
    consents = [["marketing"], ["propensity_scoring"], ["propensity_scoring", "analytics"], ["analytics"],
                ["propensity_scoring", "analytics", "marketing"], []]
    out = []
    for consent_purposes, purpose, manifest_purpose in [
            ([], None, "Marketing"), (["propensity_scoring"], "propensity_scoring", "marketing"),
            (["propensity_scoring", "Analytics"], "propensity_scoring", "marketing"),
            ([], "analytics", "marketing"), (["a", "A ", "b"], "b", "m")]:
        req = c.required_purposes(consent_purposes, purpose, manifest_purpose)
        out.append({"consent_purposes": consent_purposes, "purpose": purpose, "manifest_purpose": manifest_purpose,
                    "required": list(req), "consents": consents,
                    "covered": [c.consent_covers(frozenset(x), req) for x in consents]})
    return out


# --------------------------------------------------------------------------- quality rules (issue #15)
RULES_DECLARATION = {"label": "y", "positive": "yes", "columns": {
    "age": {"kind": "numeric", "range": [18, 100], "range_rule": True, "required": True},
    "job": {"kind": "categorical", "allowed": ["admin", "technician", "3", "True", "2.5"]},
    "vip": {"kind": "boolean", "required": 1},
    "spend": {"kind": "numeric", "range": [-0.5, 1e6], "range_rule": "yes", "transform": "log1p"},
    "score": "numeric",
    "city": {"kind": "hash", "required": True, "buckets": 7},
    "plain": {"kind": "categorical"}}}

RULE_RECORDS: list[Any] = [
    {"age": 30, "job": "admin", "vip": "yes", "spend": 3, "score": 1, "city": "Lisbon", "plain": "a", "y": "yes"},
    {"age": 12, "job": "admin", "vip": True, "spend": 3, "score": "1_0", "city": "x", "y": "no"},
    {"age": None, "job": "cook", "vip": "maybe", "spend": -1, "score": "abc", "city": "", "y": None},
    {"age": "18", "job": 3, "vip": 0, "spend": "1e6", "score": " 2.5 ", "city": 0, "y": float("nan")},
    {"age": "100.0001", "job": True, "vip": 1.0, "spend": "inf", "score": "nan", "city": False},
    {"age": float("nan"), "job": 2.5, "vip": " T ", "spend": 1e7, "score": [1], "city": "São", "y": "yes"},
    {"age": "", "job": "", "vip": "", "spend": "", "score": "", "city": None, "y": ""},
    {"age": True, "job": "technician", "vip": 2, "spend": {"a": 1}, "score": "-Infinity", "city": "c", "y": 1},
    {"age": " 42 ", "job": "Admin", "vip": "no", "spend": "+1_2.5", "score": "0x10", "city": "c", "y": "no"},
    ["not", "a", "mapping"],
    {"age": "1e400", "job": "technician", "vip": "f", "spend": -0.5, "score": 1e-05, "city": "東京", "y": "yes"},
    {},
]


def _plan_case(name: str, decl: Any, measuring: bool, records: list[Any]) -> dict[str, Any]:
    from fedmark.contract.statistics import StatisticsError, StatisticsPlan, check_records, rule_names

    case: dict[str, Any] = {"name": name, "declaration": decl, "measuring": measuring}
    try:
        plan = StatisticsPlan.from_declaration(decl, measuring=measuring)
    except StatisticsError as exc:
        return {**case, "message": str(exc), "code": exc.code}
    v = check_records(records, plan)
    return {**case, "records": _json_safe(records), "rules": rule_names(plan), "passed": v.passed,
            "violations": v.violations, "broken": [list(b) for b in v.broken], "failed": v.failed}


def rules_vectors() -> dict[str, Any]:
    """Records x rules -> which records pass, counts per rule, the rules each broke; refused declarations with
    their messages; and prepare_tabular on a manifest carrying features.rules (rows kept, violations, row errors)."""
    from edge_sdk.data import prepare_tabular
    from edge_sdk.errors import ServerError
    from fedmark.contract.statistics import rules_of

    manifest_rules = rules_of(RULES_DECLARATION)
    plans = [_plan_case("manifest_rules", manifest_rules, False, RULE_RECORDS),
             _plan_case("declaration", RULES_DECLARATION, False, RULE_RECORDS),
             _plan_case("regression_label", {"label": "v", "task": "regression",
                                              "label_spec": {"range": [0, 5], "range_rule": True},
                                              "columns": {"a": {"kind": "numeric", "range": [0, 1]}}},
                        True, [{"a": 0.5, "v": 6}, {"a": 2, "v": 5}, {"a": "x", "v": None}, {"v": "4.5"}]),
             _plan_case("string_specs", {"columns": {"n": "numeric", "b": "boolean", "c": "categorical"}}, False,
                        [{"n": "1", "b": "y", "c": 1}, {"n": "one", "b": "two", "c": None}, {"n": None, "b": None}])]
    bad_decls: list[tuple[str, Any, bool]] = [
        ("not_object", ["columns"], False),
        ("no_columns", {"label": "y"}, False),
        ("empty_columns", {"columns": {}}, False),
        ("columns_list", {"columns": [{"name": "a"}]}, False),
        ("too_many", {"columns": {f"c{i}": "numeric" for i in range(257)}}, False),
        ("spec_number", {"columns": {"a": 3}}, False),
        ("spec_list", {"columns": {"a": ["numeric"]}}, False),
        ("bad_kind", {"columns": {"a": {"kind": "text"}}}, False),
        ("kind_missing", {"columns": {"a": {"required": True}}}, False),
        ("allowed_not_list", {"columns": {"a": {"kind": "categorical", "allowed": "admin"}}}, False),
        ("allowed_numbers", {"columns": {"a": {"kind": "categorical", "allowed": ["a", 1]}}}, False),
        ("range_reversed", {"columns": {"a": {"kind": "numeric", "range": [5, 1], "range_rule": True}}}, False),
        ("range_short", {"columns": {"a": {"kind": "numeric", "range": [5]}}}, False),
        ("range_text", {"columns": {"a": {"kind": "numeric", "range": ["0", "1"]}}}, False),
        ("range_missing_measuring", {"columns": {"a": "numeric"}}, True),
        ("max_values", {"columns": {"a": {"kind": "categorical", "max_values": 0}}}, False),
        ("max_values_text", {"columns": {"a": {"kind": "categorical", "max_values": "9"}}}, False),
        ("label_is_feature", {"label": "a", "columns": {"a": "numeric"}}, False),
        ("label_not_text", {"label": 3, "columns": {"a": "numeric"}}, False),
        ("regression_label_range", {"label": "v", "task": "regression", "columns": {"a": "hash"}}, True),
    ]
    refused = [_plan_case(n, d, m, []) for n, d, m in bad_decls]
    assert all("message" in r for r in refused), [r["name"] for r in refused if "message" not in r]

    h = "sha256:" + "0" * 64
    features = dict(c.FeatureSchema.from_json(SCHEMA_JSON).to_json())
    features["rules"] = {"columns": {"age": {"kind": "numeric", "required": True, "range_rule": True,
                                             "range": [18, 100]},
                                     "job": {"kind": "categorical", "allowed": ["admin", "tech", "São"]},
                                     "y": {"kind": "categorical", "allowed": ["yes", "no"]}}}
    base = c.Manifest(model="m", family="propensity", version=1, params=(c.ParamSpec("w", (4,)),), batch_size=8,
                      graphs={}, files={"params.bin": h}, features=features, purpose="marketing")
    prep_records = [dict(r, consent="marketing") if isinstance(r, dict) else r
                    for r in TRICKY_RECORDS if isinstance(r, dict)]
    prep_records[3]["consent"] = "analytics"  # not consented: never checked, never counted
    prepare = []
    for name, rules in [("rules", features["rules"]), ("no_rules", None), ("empty_rules", {}),
                        ("unreadable", {"columns": {"age": {"kind": "numeric", "range": [1, "x"]}}}),
                        ("not_object", "age>18")]:
        feats = dict(features)
        if rules is None:
            feats.pop("rules")
        else:
            feats["rules"] = rules
        m = c.Manifest.from_json(dict(base.to_json(), features=feats))
        case: dict[str, Any] = {"name": name, "manifest": m.to_json(), "records": _json_safe(prep_records)}
        try:
            _, y, kept, report = prepare_tabular(prep_records, m, with_label=True)
        except ServerError as exc:
            case["message"] = str(exc)
        else:
            case.update(kept=kept, rejected=report.rejected, used=report.used,
                        excluded_no_consent=report.excluded_no_consent,
                        rule_violations=dict(report.rule_violations), y=_hex(y, "<f4"),
                        row_errors=[[e.row, e.column, e.reason] for e in report.row_errors])
        prepare.append(case)
    assert any(p.get("rule_violations") for p in prepare) and any("message" in p for p in prepare)
    return {"plans": plans, "refused": refused, "prepare": prepare, "statistics": statistics_vectors()}


STATS_DECLARATION = {"label": "y", "positive": "yes", "columns": {
    "age": {"kind": "numeric", "range": [18, 95], "range_rule": True},
    "balance": {"kind": "numeric", "range": [-5000, 100000], "transform": "log1p"},
    "duration": {"kind": "numeric", "range": [0.5, 4918.25]},
    "job": {"kind": "categorical", "max_values": 3},
    "note": {"kind": "categorical", "allowed": ["a", "b", "c", "São", "東京🙂"]},
    "vip": {"kind": "boolean", "required": True},
    "city": {"kind": "hash", "buckets": 7}}}


def statistics_vectors() -> list[dict[str, Any]]:
    """local_statistics bodies and their exact bytes (json.dumps sort_keys, as Client.report_statistics sends
    them), and measure() on a task document: consent, rules, the body, its Idempotency-Key."""
    from edge_sdk import statistics as edge_stats
    from fedmark.contract.statistics import StatisticsPlan, local_statistics

    rng = np.random.default_rng(15)
    jobs = ["admin.", "technician", "services", "retired", "student", "São", "x" * 70 + "é", "東京🙂"]
    records: list[dict[str, Any]] = []
    for i in range(120):
        records.append({"age": int(rng.integers(10, 100)), "balance": float(rng.normal(1500, 4000)),
                        "duration": float(rng.exponential(300)) if i % 7 else str(round(float(rng.uniform(0, 9)), 3)),
                        "job": jobs[int(rng.integers(0, len(jobs)))] if i % 11 else None,
                        "note": ["a", "b", "c", "São", "東京🙂", "z"][i % 6], "vip": ["yes", "no", 1, 0, True][i % 5],
                        "city": f"c{i % 5}", "y": ["yes", "no", "no"][i % 3],
                        "consent": "analytics" if i % 9 else "marketing"})
    records[3].update(balance="nan", age="42")
    records[4].update(duration=1e9, balance=-1e9)
    records[5].update(vip="maybe")
    records[6].update(age=float("nan"), y=None)
    records[7].update(duration="", job=3)
    records[8].update(balance=" 1_000.5 ", job=True)
    plan = StatisticsPlan.from_declaration(STATS_DECLARATION)
    out = []
    for name, recs in [("all", records), ("few", records[:5]), ("empty", [])]:
        body = local_statistics(recs, plan)
        out.append({"name": name, "declaration": STATS_DECLARATION, "records": _json_safe(recs),
                    "body": json.dumps(body, sort_keys=True)})
    for name, task in [("measure", {"task_id": "st-1", "declaration": STATS_DECLARATION, "purpose": "analytics",
                                    "consent_purposes": ["analytics"]}),
                       ("measure_default_purpose", {"task_id": "st-2", "declaration": STATS_DECLARATION})]:
        m = edge_stats.measure(records, task, consent_field="consent")
        body = json.dumps(m.body, sort_keys=True).encode()
        out.append({"name": name, "task": task, "records": _json_safe(records), "body": body.decode(),
                    "key": edge_stats.idempotency_key(task["task_id"], body), "used": m.used,
                    "excluded_no_consent": m.excluded_no_consent, "failed_rules": m.failed_rules})
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    vectors = {
        "updates": update_vectors(), "clip": clip_vectors(), "features": feature_vectors(),
        "tabular_features": tabular_feature_vectors(),
        "manifests": manifest_vectors(), "schema_errors": schema_error_vectors(),
        "tasks": task_vectors(), "upload_headers": header_vectors(), "codes": code_vectors(),
        "params_file": params_file_vectors(), "consent": consent_vectors(), "rules": rules_vectors(),
        "headers": {"HDR_MODEL_VERSION": c.HDR_MODEL_VERSION, "HDR_NUM_EXAMPLES": c.HDR_NUM_EXAMPLES,
                    "HDR_WITHIN_CLIP": c.HDR_WITHIN_CLIP, "HDR_IDEMPOTENCY": c.HDR_IDEMPOTENCY,
                    "HDR_ROUND": c.HDR_ROUND, "MAX_HEADER_INT": c.MAX_HEADER_INT, "PARAMS_FILE": c.PARAMS_FILE,
                    "UPDATE_CONTENT_TYPE": c.UPDATE_CONTENT_TYPE, "MANIFEST_FORMAT": c.MANIFEST_FORMAT},
    }
    with open(argv[1], "w", encoding="utf-8") as f:
        json.dump(vectors, f, allow_nan=False, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
