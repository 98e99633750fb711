"""The wire contract shared by ``models``, ``server`` and ``edge_sdk``.

Why one package: the three are built and deployed apart (a phone never
installs the server, the server never installs TensorFlow), yet they must agree
byte for byte on the trainer-artifact *manifest*, the *feature encoding*, the
flat *parameter vector*, *clipping*, the binary *update body* with its headers,
and the *protocol* around them (task documents, outcome codes).  Each concept
is one module here, in pure Python + numpy; the JavaScript port in
``edge_sdk/web/src`` mirrors the same split and is tested against vectors this
package generates.

Nothing here may import TensorFlow, onnxruntime, Flask or SQLAlchemy.
"""
from __future__ import annotations

from fedmark.contract.artifact import load_artifact_manifest
from fedmark.contract import codes
from fedmark.contract.clipping import NORM_CHUNK, clip_scale, l2_clip, l2_norm
from fedmark.contract.codes import *  # noqa: F403  (every name in codes.__all__: ERR_*, REASON_*, OUTCOME_*)
from fedmark.contract.errors import ContractError, ManifestError, ProtocolError, SchemaError, WireError
from fedmark.contract.features import Column, FeatureSchema, RowError, hash_bucket, parse_bool
from fedmark.contract.hashing import sha256_bytes, sha256_file
from fedmark.contract.manifest import (LEGACY_PROTOCOLS, MANIFEST_FILE, MANIFEST_FORMAT, PARAMS_FILE, PROTOCOL_MF,
                                      PROTOCOL_SUPERVISED, Manifest, ParamSpec,
                                      manifest_digest, params_file)
from fedmark.contract.params import flatten, unflatten
from fedmark.contract.protocol import (MAX_HEADER_INT, TaskDocument, UploadHeaders, build_task, consent_covers,
                                       normalize_purpose, parse_task, parse_upload_headers, required_purposes,
                                       upload_headers)
from fedmark.contract.wire import (ENCODINGS, HDR_IDEMPOTENCY, HDR_MODEL_VERSION, HDR_NUM_EXAMPLES, HDR_ROUND,
                                   HDR_WITHIN_CLIP, UPDATE_CONTENT_TYPE, decode_update, encode_update, encoded_size)

__all__ = [
    "ContractError", "ManifestError", "SchemaError", "WireError", "ProtocolError",
    "Column", "FeatureSchema", "RowError", "hash_bucket", "parse_bool",
    "MANIFEST_FILE", "MANIFEST_FORMAT", "Manifest", "ParamSpec", "manifest_digest", "load_artifact_manifest",
    "PARAMS_FILE", "params_file", "PROTOCOL_SUPERVISED", "PROTOCOL_MF", "LEGACY_PROTOCOLS",
    "sha256_bytes", "sha256_file",
    "flatten", "unflatten", "clip_scale", "l2_clip", "l2_norm", "NORM_CHUNK",
    "ENCODINGS", "HDR_IDEMPOTENCY", "HDR_MODEL_VERSION", "HDR_NUM_EXAMPLES", "HDR_ROUND", "HDR_WITHIN_CLIP",
    "UPDATE_CONTENT_TYPE", "decode_update", "encode_update", "encoded_size",
    "TaskDocument", "parse_task", "build_task", "required_purposes", "consent_covers", "normalize_purpose",
    "UploadHeaders", "upload_headers", "parse_upload_headers", "MAX_HEADER_INT",
    "codes", *codes.__all__,
]
