// Run an exported trainer artifact's graphs with ONNX Runtime: local training and scoring.
//
// The JavaScript twin of edge_sdk/trainer.py.  The artifact ships its train
// step as a plain inference graph (params + batch in, new params + loss out,
// a whole epoch per call), so any ONNX Runtime build runs it: onnxruntime-web
// (WebAssembly) in a browser, onnxruntime-node in Node.  The `ort` module is
// injected rather than imported, which keeps this file identical in both and
// free of bundler tricks.
//
// Data in and out are typed arrays: parameters are one Float32Array per
// manifest parameter (row-major).  What a protocol trains on, and how, lives
// in its plug-in (./families/: supervised-tabular/1, mf-reconstruction/1),
// chosen by the manifest's `protocol`; the Trainer keeps what every protocol
// shares and refuses an artifact whose protocol it does not know.  See
// docs/ARTIFACT.md for every graph's inputs and outputs.

import { ManifestError } from './contract_errors.js';
import { sha256Hex, toBytes } from './hashing.js';
import { PARAMS_FILE, paramsFile } from './manifest.js';
import { normal, seededRandom } from './random.js';
import { TrainerError, allFinite, protocolFor } from './families/index.js';
import './families/supervised.js'; // registers supervised-tabular/1
import './families/mf.js'; // registers mf-reconstruction/1

export { PARAMS_FILE, TrainerError };

/** Verify every file named by the manifest against its content hash; returns the files as a Map. */
export async function verifyArtifactFiles(manifest, files) {
  const map = files instanceof Map ? files : new Map(Object.entries(files));
  for (const [fname, digest] of Object.entries(manifest.files)) {
    const data = map.get(fname);
    if (data === undefined) throw new ManifestError(`artifact file ${fname} is missing`);
    const actual = await sha256Hex(data);
    if (actual !== digest) {
      throw new ManifestError(`artifact file ${fname} has hash ${actual.slice(0, 19)}…, manifest says `
        + `${digest.slice(0, 19)}…: the artifact was modified or corrupted; fetch it again`);
    }
  }
  return map;
}

/** Runs an artifact's graphs; create with `await Trainer.create({manifest, files, ort})`. */
export class Trainer {
  /**
   * @param {object} o
   * @param {import('./manifest.js').Manifest} o.manifest
   * @param {Map<string, Uint8Array>} o.files  artifact file name -> bytes (already verified)
   * @param {object} o.ort  the onnxruntime-web or onnxruntime-node module
   * @param {number} [o.threads]  intra-op threads (onnxruntime-node; the web build uses ort.env.wasm.numThreads)
   * @param {string[]} [o.executionProviders]  default: ['wasm'] in a browser, ['cpu'] in Node
   */
  constructor({ manifest, files, ort, threads = 1, executionProviders = null }) {
    if (!ort?.InferenceSession || !ort?.Tensor) {
      throw new TypeError('pass the onnxruntime module as `ort` (import * as ort from "onnxruntime-web" or "onnxruntime-node")');
    }
    if (!(threads >= 1)) throw new TrainerError(`threads must be >= 1, got ${threads}`);
    this.manifest = manifest;
    this.files = files;
    this.ort = ort;
    this.threads = threads;
    this.executionProviders = executionProviders
      ?? (typeof process !== 'undefined' && process.versions?.node && !globalThis.window ? ['cpu'] : ['wasm']);
    this.hyperparams = { ...manifest.hyperparams };
    this._sessions = new Map();
    this.protocol = protocolFor(manifest, this); // refuses unknown protocols and missing graphs
  }

  /** Verify the files' hashes (unless `verify` is false) and build a Trainer. */
  static async create({ manifest, files, ort, verify = true, threads = 1, executionProviders = null }) {
    const map = verify ? await verifyArtifactFiles(manifest, files)
      : (files instanceof Map ? files : new Map(Object.entries(files)));
    return new Trainer({ manifest, files: map, ort, threads, executionProviders });
  }

  /** The (cached) ONNX Runtime session of a graph role, e.g. 'train_epoch'. */
  async session(role) {
    if (!this._sessions.has(role)) {
      const fname = this.manifest.graphs[role];
      if (fname === undefined) {
        throw new ManifestError(`artifact has no '${role}' graph; it has ${JSON.stringify(Object.keys(this.manifest.graphs).sort())}`);
      }
      const bytes = toBytes(this.files.get(fname));
      const opts = {
        executionProviders: this.executionProviders, intraOpNumThreads: this.threads, interOpNumThreads: 1,
        executionMode: 'sequential', graphOptimizationLevel: 'all',
      };
      this._sessions.set(role, this.ort.InferenceSession.create(bytes, opts));
    }
    return this._sessions.get(role);
  }

  /** Run a graph; returns its outputs' data (Float32Array copies) in the graph's output order. */
  async run(role, feeds) {
    const session = await this.session(role);
    const results = await session.run(feeds);
    return session.outputNames.map((name) => Float32Array.from(results[name].data));
  }

  /** Release every ONNX Runtime session. */
  async close() {
    for (const s of this._sessions.values()) await (await s).release?.();
    this._sessions.clear();
  }

  // ------------------------------------------------------------------ parameters
  /** Global params from the artifact's params file (paramsFile: raw little-endian float32, manifest order). */
  initialParams() {
    const name = paramsFile(this.manifest);
    const raw = toBytes(this.files.get(name) ?? new Uint8Array(0));
    const n = this.manifest.numParams;
    if (raw.byteLength !== 4 * n) {
      throw new ManifestError(`${name} holds ${raw.byteLength / 4} values, the manifest's parameters need ${n}`);
    }
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const out = [];
    let off = 0;
    for (const spec of this.manifest.params) {
      const a = new Float32Array(spec.size);
      for (let i = 0; i < spec.size; i += 1) a[i] = view.getFloat32(4 * (off + i), true);
      out.push(a);
      off += spec.size;
    }
    return out;
  }

  /** Fresh device-only params (the recommender's N(0, init_scale²) user vector); {} when there are none. (Not numpy's stream.) */
  initialLocal(seed = 0) {
    const scale = Number(this.hyperparams.init_scale ?? 0.1);
    const random = seededRandom(seed);
    const out = {};
    for (const p of this.manifest.local_params) {
      out[p.name] = Float32Array.from({ length: p.size }, () => normal(random) * scale);
    }
    return out;
  }

  checkParams(params) {
    const specs = this.manifest.params;
    if (!Array.isArray(params) || params.length !== specs.length) {
      throw new TrainerError(`got ${params?.length} parameter arrays, the artifact has ${specs.length} `
        + `(${specs.map((s) => s.name).join(', ')})`);
    }
    return params.map((p, i) => {
      const a = p instanceof Float32Array ? p : Float32Array.from(p);
      if (a.length !== specs[i].size) {
        throw new TrainerError(`parameter '${specs[i].name}' has ${a.length} values, the artifact expects `
          + `shape [${specs[i].shape.join(', ')}] = ${specs[i].size}`);
      }
      if (!allFinite(a)) throw new TrainerError(`parameter '${specs[i].name}' contains NaN or Inf`);
      return a;
    });
  }

  checkLocal(local, seed) {
    if (local === null || local === undefined) return this.initialLocal(seed);
    const out = {};
    for (const s of this.manifest.local_params) {
      if (!Object.hasOwn(local, s.name)) {
        throw new TrainerError(`local params lack '${s.name}'; pass trainer.initialLocal() or a previous result.local`);
      }
      const a = Float32Array.from(local[s.name]);
      if (a.length !== s.size) throw new TrainerError(`local param '${s.name}' has ${a.length} values, the artifact expects ${s.size}`);
      out[s.name] = a;
    }
    return out;
  }

  // ------------------------------------------------------------------ training and inference
  /**
   * Local training from `params`; resolves to {params, local, loss, numExamples}.
   *
   * `data` is what the protocol trains on: {x, y} for supervised-tabular
   * (see ./families/supervised.js: `order`, `shuffle`), the customer's item
   * indices for mf-reconstruction (`local`, `plan`).  `onEpoch({epoch,
   * epochs, loss, ms})` is called after each epoch (1-based `epoch`): one
   * graph call runs a whole epoch, so an epoch is the finest progress step a
   * page can show.
   */
  async train(params, data, { local = null, epochs = null, lr = null, seed = 0, shuffle = true, order = null,
    plan = null, onEpoch = null } = {}) {
    const e = Number(epochs ?? this.hyperparams.epochs ?? 1);
    const rate = Number(lr ?? this.hyperparams.learning_rate ?? 0.1);
    if (!(Number.isInteger(e) && e >= 1)) throw new TrainerError(`epochs must be >= 1, got ${epochs}`);
    if (!(Number.isFinite(rate) && rate > 0)) throw new TrainerError(`learning rate must be a positive number, got ${lr}`);
    if (onEpoch !== null && typeof onEpoch !== 'function') throw new TrainerError('onEpoch must be a function or null');
    return this.protocol.train(this.checkParams(params), data, {
      local, epochs: e, lr: rate, seed, shuffle, order, plan, onEpoch: onEpoch ?? (() => {}) });
  }

  /** The protocol's inference output (probabilities / predictions / class probabilities, or item scores). */
  async predict(params, x = null, { local = null } = {}) {
    return this.protocol.predict(this.checkParams(params), x, { local });
  }

  /** Protocol helpers, forwarded to the plug-in (a TypeError names the protocol that lacks one). */
  batches(...args) { return this._helper('batches')(...args); }

  recommenderPlan(...args) { return this._helper('recommenderPlan')(...args); }

  get width() { return this._helper('width', true); }

  _helper(name, value = false) {
    if (!(name in this.protocol)) {
      throw new TypeError(`protocol ${this.manifest.protocol} has no '${name}'`);
    }
    return value ? this.protocol[name] : this.protocol[name].bind(this.protocol);
  }
}
