// The trainer-artifact manifest: parsing and validation, as fedmark/contract.py does it.
//
// Why a faithful port instead of a lenient reader: the manifest is the wire
// contract between the exporter, the server and every device.  A browser that
// accepted a manifest the Python SDK refuses (or the reverse) would train a
// model the server then rejects, far from anyone who could fix it.  So the
// same checks run in the same order with the same messages; tests compare the
// two on a set of broken manifests.

import { ManifestError } from './contract_errors.js';
import { ConversionError, isMapping, pyFloat, pyInt, pyRepr, pyStr, pyTypeName } from './pycompat.js';
import { FeatureSchema } from './features.js';

export const MANIFEST_FORMAT = 'fedmark-trainer/1';
export const MANIFEST_FILE = 'manifest.json';
export const PARAMS_FILE = 'params.bin';
export const PROTOCOL_SUPERVISED = 'supervised-tabular/1';
export const PROTOCOL_MF = 'mf-reconstruction/1';
/** Manifests written before the `protocol` field existed name only their family; this is what those ran. */
export const LEGACY_PROTOCOLS = Object.freeze({ propensity: PROTOCOL_SUPERVISED, recommender: PROTOCOL_MF });

/**
 * The artifact file holding the global parameters (raw little-endian float32, manifest order).
 * The one rule every reader follows (fedmark.contract.params_file): the file named by
 * `extra.params_file` (what the exporter writes), 'params.bin' when the manifest names none;
 * either way the file must have a content hash in `files`.
 */
export function paramsFile(m) {
  const name = Object.hasOwn(m.extra ?? {}, 'params_file') ? m.extra.params_file : PARAMS_FILE;
  if (typeof name !== 'string' || !Object.hasOwn(m.files, name)) {
    throw new ManifestError(`manifest has no content hash for the parameter file ${pyRepr(name)}; `
      + 'export the artifact with its initial parameters');
  }
  return name;
}

// Python iterates strings by character and mappings by key; reproduce that so a
// malformed entry fails (or passes) exactly as it does in Python.
function pyIter(v) {
  if (Array.isArray(v)) return v;
  if (typeof v === 'string') return [...v];
  if (isMapping(v)) return Object.keys(v);
  throw new ConversionError(`'${pyTypeName(v)}' object is not iterable`);
}

function pyDict(v) {
  if (isMapping(v)) return { ...v };
  if (Array.isArray(v) && v.length === 0) return {};
  if (typeof v === 'string' || Array.isArray(v)) {
    throw new ConversionError(`cannot convert ${pyRepr(v)} to a dict: a JSON object is needed`);
  }
  throw new ConversionError(`'${pyTypeName(v)}' object is not iterable`);
}

function get(d, key, fallback) {
  return Object.hasOwn(d, key) ? d[key] : fallback;
}

/** One named float32 parameter tensor; the flat wire vector concatenates them in manifest order. */
export class ParamSpec {
  constructor(name, shape, dtype = 'float32') {
    this.name = name;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    Object.freeze(this);
  }

  get size() {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  toJSON() {
    return { name: this.name, shape: [...this.shape], dtype: this.dtype };
  }

  static fromJSON(d) {
    let spec;
    try {
      if (!isMapping(d) || !Object.hasOwn(d, 'name') || !Object.hasOwn(d, 'shape')) throw new ConversionError('');
      spec = new ParamSpec(pyStr(d.name), pyIter(d.shape).map(pyInt), pyStr(get(d, 'dtype', 'float32')));
    } catch (exc) {
      if (!(exc instanceof ConversionError)) throw exc;
      throw new ManifestError(`bad parameter entry ${pyRepr(d)}: needs name, shape (list of ints), dtype`);
    }
    if (spec.dtype !== 'float32') {
      throw new ManifestError(`parameter ${pyRepr(spec.name)}: only float32 parameters are supported, got ${spec.dtype}`);
    }
    if (spec.shape.some((s) => s <= 0)) {
      const shape = spec.shape.length === 1 ? `(${spec.shape[0]},)` : `(${spec.shape.join(', ')})`;
      throw new ManifestError(`parameter ${pyRepr(spec.name)}: shape ${shape} has a non-positive dimension`);
    }
    return spec;
  }
}

/** The artifact's description (see docs/ARTIFACT.md); immutable once parsed. */
export class Manifest {
  constructor(fields) {
    Object.assign(this, fields);
    Object.freeze(this);
  }

  /** Number of global (uploaded) parameters: the length of an update vector. */
  get numParams() {
    return this.params.reduce((n, p) => n + p.size, 0);
  }

  /** The tabular feature schema (protocol supervised-tabular/1). */
  schema() {
    return FeatureSchema.fromJSON(this.features);
  }

  toJSON() {
    return {
      format: MANIFEST_FORMAT, model: this.model, family: this.family, protocol: this.protocol,
      version: this.version,
      opset: this.opset, purpose: this.purpose, batch_size: this.batch_size,
      params: this.params.map((p) => p.toJSON()), local_params: this.local_params.map((p) => p.toJSON()),
      features: { ...this.features }, hyperparams: { ...this.hyperparams }, clip_norm: this.clip_norm,
      privacy: { ...this.privacy }, graphs: { ...this.graphs }, files: { ...this.files }, extra: { ...this.extra },
    };
  }

  /** Validate a parsed manifest object; throws ManifestError naming the first problem. */
  static fromJSON(d) {
    if (!isMapping(d)) throw new ManifestError('a manifest must be a JSON object');
    if (d.format !== MANIFEST_FORMAT) {
      throw new ManifestError(`unknown manifest format ${pyRepr(d.format)}; this build reads ${pyRepr(MANIFEST_FORMAT)}`);
    }
    const required = ['model', 'family', 'version', 'params', 'batch_size', 'graphs', 'files'];
    const missing = required.filter((k) => !Object.hasOwn(d, k));
    if (missing.length) throw new ManifestError(`manifest lacks required field(s): ${missing.join(', ')}`);
    let fields;
    try {
      fields = {
        model: pyStr(d.model), family: pyStr(d.family), version: pyInt(d.version),
        params: Object.freeze(pyIter(d.params).map((p) => ParamSpec.fromJSON(p))),
        local_params: Object.freeze(pyIter(get(d, 'local_params', [])).map((p) => ParamSpec.fromJSON(p))),
        batch_size: pyInt(d.batch_size), graphs: pyDict(d.graphs), files: pyDict(d.files),
        features: pyDict(get(d, 'features', {})), hyperparams: pyDict(get(d, 'hyperparams', {})),
        clip_norm: pyFloat(get(d, 'clip_norm', 1.0)), privacy: pyDict(get(d, 'privacy', {})),
        opset: pyInt(get(d, 'opset', 17)), purpose: pyStr(get(d, 'purpose', 'marketing')),
        extra: pyDict(get(d, 'extra', {})), protocol: d.protocol ? pyStr(d.protocol) : '',
      };
    } catch (exc) {
      if (exc instanceof ConversionError) throw new ManifestError(`manifest field has the wrong type: ${exc.message}`);
      throw exc;
    }
    if (!fields.protocol) {
      const legacy = Object.hasOwn(LEGACY_PROTOCOLS, fields.family) ? LEGACY_PROTOCOLS[fields.family] : undefined;
      if (legacy === undefined) {
        throw new ManifestError(`manifest of family ${pyRepr(fields.family)} names no training protocol; `
          + `set 'protocol' (e.g. ${pyRepr(PROTOCOL_SUPERVISED)})`);
      }
      fields.protocol = legacy;
    }
    const m = new Manifest(fields);
    if (!m.params.length) throw new ManifestError('manifest has no parameters');
    if (m.batch_size <= 0 || !(m.clip_norm > 0)) throw new ManifestError('batch_size and clip_norm must be positive');
    for (const [role, fname] of Object.entries(m.graphs)) {
      if (typeof fname !== 'string' || !Object.hasOwn(m.files, fname)) {
        throw new ManifestError(`graph ${pyRepr(role)} names file ${pyRepr(fname)} that has no content hash in 'files'`);
      }
    }
    for (const [fname, digest] of Object.entries(m.files)) {
      const base = fname.slice(fname.lastIndexOf('/') + 1);
      if (base !== fname || fname === '' || fname === '.' || fname === '..') {
        throw new ManifestError(`file name ${pyRepr(fname)} must be a plain name inside the artifact`);
      }
      if (!(typeof digest === 'string' && digest.startsWith('sha256:') && [...digest].length === 71)) {
        throw new ManifestError(`file ${pyRepr(fname)}: content hash must be 'sha256:<64 hex>'`);
      }
    }
    const names = [...m.params, ...m.local_params].map((p) => p.name);
    if (new Set(names).size !== names.length) throw new ManifestError('parameter names must be unique');
    return m;
  }

  /** Parse manifest text (or UTF-8 bytes). */
  static parse(text) {
    const s = typeof text === 'string' ? text : new TextDecoder().decode(text);
    let d;
    try {
      d = JSON.parse(s);
    } catch (exc) {
      throw new ManifestError(`manifest is not valid JSON: ${exc.message}`);
    }
    return Manifest.fromJSON(d);
  }
}
