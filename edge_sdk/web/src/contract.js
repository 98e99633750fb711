// The wire contract a device needs, ported from the fedmark/contract package.
//
// Why one entry point over several small modules: app code and the SDK import
// "the contract" as one thing, while each concept (manifest, features, update
// body, checksums, the protocol around the body, outcome codes, Python value
// semantics) stays in its own file, as in the Python package.  Everything here
// is pure: no network, no onnxruntime.

export { ContractError, ManifestError, WireError, SchemaError, RowError, ProtocolError } from './contract_errors.js';
export { MANIFEST_FORMAT, MANIFEST_FILE, PARAMS_FILE, Manifest, ParamSpec, paramsFile } from './manifest.js';
export { Column, FeatureSchema, hashBucket } from './features.js';
export {
  ENCODINGS, HEADER_SIZE, decodeUpdate, encodeUpdate, encodedSize, flatten, l2Clip, l2Norm, unflatten,
} from './update.js';
export { crc32, sha256Hex } from './hashing.js';
// HTTP headers that carry an update's metadata next to its binary body, the task document (docs/API.md).
export {
  HDR_ROUND, HDR_MODEL_VERSION, HDR_NUM_EXAMPLES, HDR_WITHIN_CLIP, HDR_IDEMPOTENCY, UPDATE_CONTENT_TYPE,
  MAX_HEADER_INT, consentCovers, normalizePurpose, parseTaskDocument, parseUploadHeaders, requiredPurposes,
  taskToJSON, uploadHeaders,
} from './protocol.js';
export * from './codes.js';
