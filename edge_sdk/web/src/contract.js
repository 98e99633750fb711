// The wire contract a device needs, ported from fedmark/contract.py.
//
// Why one entry point over several small modules: app code and the SDK import
// "the contract" as one thing, like the Python side's single module, while each
// concept (manifest, features, update body, checksums, Python value semantics)
// stays in its own file.  Everything here is pure: no network, no onnxruntime.

export { ContractError, ManifestError, WireError, SchemaError, RowError } from './contract_errors.js';
export { MANIFEST_FORMAT, MANIFEST_FILE, Manifest, ParamSpec } from './manifest.js';
export { Column, FeatureSchema, hashBucket } from './features.js';
export {
  ENCODINGS, HEADER_SIZE, decodeUpdate, encodeUpdate, encodedSize, flatten, l2Clip, l2Norm, unflatten,
} from './update.js';
export { crc32, sha256Hex } from './hashing.js';

// HTTP headers that carry an update's metadata next to its binary body (docs/API.md).
export const HDR_ROUND = 'X-Fedmark-Round';
export const HDR_MODEL_VERSION = 'X-Fedmark-Model-Version';
export const HDR_NUM_EXAMPLES = 'X-Fedmark-Num-Examples';
export const HDR_WITHIN_CLIP = 'X-Fedmark-Within-Clip'; // "1" if ||delta|| <= C before clipping
export const HDR_IDEMPOTENCY = 'Idempotency-Key';
export const UPDATE_CONTENT_TYPE = 'application/vnd.fedmark.update';
