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
// manifest parameter (row-major), tabular data is x = Float32Array [N*width]
// plus y = Float32Array [N].  See docs/ARTIFACT.md for every graph's inputs
// and outputs.

import { ContractError, ManifestError } from './contract_errors.js';
import { sha256Hex, toBytes } from './hashing.js';
import { PARAMS_FILE, paramsFile } from './manifest.js';
import { normal, permutation, seededRandom } from './random.js';

export { PARAMS_FILE };

/** Training input does not fit the artifact (shape, values). */
export class TrainerError extends ContractError {}

function tensor(ort, data, dims) {
  return new ort.Tensor('float32', data, dims);
}

/** True iff every value is finite; a plain loop, ~10× faster than `.every(Number.isFinite)` on 10⁵ values. */
function allFinite(a) {
  for (let i = 0; i < a.length; i += 1) if (!Number.isFinite(a[i])) return false;
  return true;
}

function scalar(ort, value) {
  return new ort.Tensor('float32', new Float32Array([value]), []);
}

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
    if (!['propensity', 'recommender'].includes(manifest.family)) {
      throw new ManifestError(`unknown model family '${manifest.family}'; this trainer runs propensity and recommender`);
    }
    const needed = ['train_epoch', 'infer', ...(manifest.family === 'recommender' ? ['recon_epoch'] : [])];
    const missing = needed.filter((g) => !Object.hasOwn(manifest.graphs, g));
    if (missing.length) {
      throw new ManifestError(`artifact lacks graph(s) ${JSON.stringify(missing)}; re-export it with \`fedmark export\``);
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

  /** Fresh device-only params: N(0, init_scale²) user vector; {} for propensity. (Not numpy's stream.) */
  initialLocal(seed = 0) {
    const scale = Number(this.hyperparams.init_scale ?? 0.1);
    const random = seededRandom(seed);
    const out = {};
    for (const p of this.manifest.local_params) {
      out[p.name] = Float32Array.from({ length: p.size }, () => normal(random) * scale);
    }
    return out;
  }

  _checkParams(params) {
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

  _checkLocal(local, seed) {
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

  /** Width of a tabular row (features.width, else the first parameter's input dimension). */
  get width() {
    return Number(this.manifest.features?.width ?? this.manifest.params[0].shape[0]);
  }

  _checkTabular(x, y) {
    const width = this.width;
    const xa = x instanceof Float32Array ? x : Float32Array.from(x);
    if (xa.length % width !== 0) {
      throw new TrainerError(`x has ${xa.length} values, not a whole number of rows of width ${width}: encode records `
        + 'with manifest.schema().encode(records)');
    }
    if (!allFinite(xa)) throw new TrainerError('x contains NaN or Inf; the schema encoder fills missing values, use it');
    const n = xa.length / width;
    if (y === undefined) return { x: xa, n };
    const ya = y instanceof Float32Array ? y : Float32Array.from(y);
    if (ya.length !== n) throw new TrainerError(`x has ${n} rows but y has ${ya.length} labels`);
    let labelsOk = true;
    for (let i = 0; i < ya.length && labelsOk; i += 1) labelsOk = ya[i] >= 0 && ya[i] <= 1; // false for NaN too
    if (!labelsOk) {
      throw new TrainerError('labels y must be 0/1 (or probabilities in [0, 1])');
    }
    return { x: xa, y: ya, n };
  }

  // ------------------------------------------------------------------ training
  /**
   * Local training from `params`; resolves to {params, local, loss, numExamples}.
   *
   * Propensity: `data = {x, y}`.  Each epoch visits the rows in `order` when
   * given (one permutation for every epoch, or an array of per-epoch
   * permutations), else in a seeded shuffle (`seed`), else in input order with
   * `shuffle: false`.  The Python SDK's `train(..., shuffle=False)` on the rows
   * taken in the same order gives the same update.
   * Recommender: `data` = the user's positive item indices; `local` = {user_emb};
   * `plan` may fix the negatives and block order (see recommenderPlan()).
   * `onEpoch({epoch, epochs, loss, ms})` is called after each epoch (1-based
   * `epoch`): one graph call runs a whole epoch, so an epoch is the finest
   * progress step a page can show.
   */
  async train(params, data, { local = null, epochs = null, lr = null, seed = 0, shuffle = true, order = null,
    plan = null, onEpoch = null } = {}) {
    const e = Number(epochs ?? this.hyperparams.epochs ?? 1);
    const rate = Number(lr ?? this.hyperparams.learning_rate ?? 0.1);
    if (!(Number.isInteger(e) && e >= 1)) throw new TrainerError(`epochs must be >= 1, got ${epochs}`);
    if (!(Number.isFinite(rate) && rate > 0)) throw new TrainerError(`learning rate must be a positive number, got ${lr}`);
    if (onEpoch !== null && typeof onEpoch !== 'function') throw new TrainerError('onEpoch must be a function or null');
    const checked = this._checkParams(params);
    const report = onEpoch ?? (() => {});
    if (this.manifest.family === 'propensity') {
      return this._trainPropensity(checked, data, e, rate, seed, shuffle, order, report);
    }
    return this._trainRecommender(checked, data, this._checkLocal(local, seed), e, rate, seed, plan, report);
  }

  /** Stack rows in `order` into [numBatches, B, …] with a 0/1 mask padding the last batch. */
  batches(x, y, order) {
    const b = this.manifest.batch_size;
    const w = this.width;
    const n = order.length;
    const nb = Math.max(1, Math.ceil(n / b));
    const xs = new Float32Array(nb * b * w);
    const ys = new Float32Array(nb * b);
    const ms = new Float32Array(nb * b);
    for (let i = 0; i < n; i += 1) {
      const r = order[i];
      xs.set(x.subarray(r * w, (r + 1) * w), i * w);
      ys[i] = y[r];
      ms[i] = 1.0;
    }
    return { xs, ys, ms, nb };
  }

  _epochOrder(n, epoch, order, shuffle, random) {
    if (order !== null && order !== undefined) {
      const o = Array.isArray(order) && (Array.isArray(order[0]) || ArrayBuffer.isView(order[0])) ? order[epoch] : order;
      if (!o || o.length !== n || new Set(Array.from(o)).size !== n || Array.from(o).some((i) => !(i >= 0 && i < n))) {
        throw new TrainerError(`order for epoch ${epoch} must be a permutation of 0..${n - 1}`);
      }
      return o;
    }
    return shuffle ? permutation(n, random) : Int32Array.from({ length: n }, (_, i) => i);
  }

  async _trainPropensity(params, data, epochs, lr, seed, shuffle, order, onEpoch) {
    if (!data || data.x === undefined || data.y === undefined) {
      throw new TrainerError('propensity data must be {x: Float32Array [N*width], y: Float32Array [N]}');
    }
    const { x, y, n } = this._checkTabular(data.x, data.y);
    if (n === 0) throw new TrainerError('no training rows: a device needs at least one consented record');
    const { ort } = this;
    const names = this.manifest.params.map((p) => p.name);
    const b = this.manifest.batch_size;
    const w = this.width;
    const random = seededRandom(seed);
    let current = params;
    let loss = NaN;
    for (let epoch = 0; epoch < epochs; epoch += 1) {
      const t0 = performance.now();
      const { xs, ys, ms, nb } = this.batches(x, y, this._epochOrder(n, epoch, order, shuffle, random));
      const feeds = {};
      this.manifest.params.forEach((spec, i) => { feeds[spec.name] = tensor(ort, current[i], [...spec.shape]); });
      feeds.x = tensor(ort, xs, [nb, b, w]);
      feeds.y = tensor(ort, ys, [nb, b]);
      feeds.mask = tensor(ort, ms, [nb, b]);
      feeds.lr = scalar(ort, lr);
      const out = await this.run('train_epoch', feeds);
      current = out.slice(0, names.length);
      loss = weightedLoss(out[names.length], ms, nb, b);
      await onEpoch({ epoch: epoch + 1, epochs, loss, ms: performance.now() - t0 });
    }
    return { params: current, local: {}, loss, numExamples: n };
  }

  // ------------------------------------------------------------------ recommender
  _positives(data) {
    const nItems = this.manifest.params[0].shape[0];
    const raw = Array.from(data ?? [], Number);
    if (!raw.length) throw new TrainerError('recommender data must be a non-empty array of positive item indices');
    if (!raw.every(Number.isInteger)) {
      throw new TrainerError("item indices must be integers; map item codes with manifest.features.items.indexOf(code)");
    }
    const lo = Math.min(...raw);
    const hi = Math.max(...raw);
    if (lo < 0 || hi >= nItems) throw new TrainerError(`item indices must be in [0, ${nItems}); got range [${lo}, ${hi}]`);
    return [...new Set(raw)]; // distinct, in first-seen order
  }

  _sampleBlocks(positives, random) {
    const nItems = this.manifest.params[0].shape[0];
    const k = this.manifest.batch_size;
    const negatives = Number(this.hyperparams.negatives ?? 4);
    const taken = new Set(positives);
    const pool = [];
    for (let i = 0; i < nItems; i += 1) if (!taken.has(i)) pool.push(i);
    const nNeg = Math.min(negatives * positives.length, pool.length);
    const pick = permutation(pool.length, random).subarray(0, nNeg);
    const idx = [...positives, ...Array.from(pick, (j) => pool[j])];
    const lab = [...positives.map(() => 1), ...Array.from(pick, () => 0)];
    const perm = permutation(idx.length, random);
    return makeBlocks(Array.from(perm, (p) => idx[p]), Array.from(perm, (p) => lab[p]), k);
  }

  /** Draw the negatives and block order that `train(…, {seed})` uses; pass one back as `plan` to replay it. */
  recommenderPlan(data, { epochs = null, seed = 0 } = {}) {
    const e = Number(epochs ?? this.hyperparams.epochs ?? 1);
    const positives = this._positives(data);
    const random = seededRandom(seed);
    const steps = Number(this.hyperparams.recon_steps ?? 20);
    const sample = this._sampleBlocks(positives, random);
    const cyc = Array.from({ length: steps }, (_, s) => s % sample.nb);
    return { positives, recon: selectBlocks(sample, cyc), epochs: Array.from({ length: e }, () => this._sampleBlocks(positives, random)) };
  }

  _gather(table, bias, blocks, d) {
    const { idx, nb, k } = blocks;
    const rows = new Float32Array(nb * k * d);
    const rowBias = new Float32Array(nb * k);
    for (let s = 0; s < nb * k; s += 1) {
      rows.set(table.subarray(idx[s] * d, (idx[s] + 1) * d), s * d);
      rowBias[s] = bias[idx[s]];
    }
    return { rows, rowBias };
  }

  async _reconstruct(itemEmb, itemBias, blocks, user) {
    if (blocks.nb === 0) return { user, loss: NaN };
    const { ort } = this;
    const d = user.length;
    const { rows, rowBias } = this._gather(itemEmb, itemBias, blocks, d);
    const [u, losses] = await this.run('recon_epoch', {
      user_emb: tensor(ort, user, [d]), rows: tensor(ort, rows, [blocks.nb, blocks.k, d]),
      row_bias: tensor(ort, rowBias, [blocks.nb, blocks.k]), labels: tensor(ort, blocks.labels, [blocks.nb, blocks.k]),
      mask: tensor(ort, blocks.mask, [blocks.nb, blocks.k]), lr: scalar(ort, Number(this.hyperparams.recon_lr ?? 1.0)),
    });
    return { user: u, loss: losses[losses.length - 1] };
  }

  async _trainRecommender(params, data, local, epochs, lr, seed, plan, onEpoch) {
    const p = plan ?? this.recommenderPlan(data, { epochs, seed });
    const { ort } = this;
    const itemEmb = Float32Array.from(params[0]);
    const itemBias = Float32Array.from(params[1]);
    const d = this.manifest.params[0].shape[1];
    let { user } = await this._reconstruct(itemEmb, itemBias, p.recon, local.user_emb);
    let loss = NaN;
    for (const [i, blocks] of p.epochs.entries()) {
      const t0 = performance.now();
      const { rows, rowBias } = this._gather(itemEmb, itemBias, blocks, d);
      const dims = [blocks.nb, blocks.k];
      const [rowsNew, biasNew, losses] = await this.run('train_epoch', {
        user_emb: tensor(ort, user, [d]), rows: tensor(ort, rows, [...dims, d]), row_bias: tensor(ort, rowBias, dims),
        labels: tensor(ort, blocks.labels, dims), mask: tensor(ort, blocks.mask, dims), lr: scalar(ort, lr),
      });
      for (let s = 0; s < blocks.nb * blocks.k; s += 1) {
        if (blocks.mask[s] > 0) { // padded slots point at item 0: never write them back
          itemEmb.set(rowsNew.subarray(s * d, (s + 1) * d), blocks.idx[s] * d);
          itemBias[blocks.idx[s]] = biasNew[s];
        }
      }
      loss = weightedLoss(losses, blocks.mask, blocks.nb, blocks.k);
      await onEpoch({ epoch: i + 1, epochs: p.epochs.length, loss, ms: performance.now() - t0 });
    }
    user = Float32Array.from(user);
    return { params: [itemEmb, itemBias], local: { user_emb: user }, loss, numExamples: p.positives.length };
  }

  // ------------------------------------------------------------------ inference
  /** Propensity: probabilities [N] for x.  Recommender: a score for every item given `local.user_emb`. */
  async predict(params, x = null, { local = null } = {}) {
    const checked = this._checkParams(params);
    const { ort } = this;
    if (this.manifest.family === 'propensity') {
      if (x === null) throw new TrainerError('propensity predict needs x [N*width]');
      const { x: xa, n } = this._checkTabular(x);
      const feeds = {};
      this.manifest.params.forEach((spec, i) => { feeds[spec.name] = tensor(ort, checked[i], [...spec.shape]); });
      feeds.x = tensor(ort, xa, [n, this.width]);
      return (await this.run('infer', feeds))[0];
    }
    if (!local?.user_emb) throw new TrainerError("recommender predict needs local = {user_emb} (from train)");
    const user = this._checkLocal(local, 0).user_emb;
    const [n, d] = this.manifest.params[0].shape;
    return (await this.run('infer', {
      user_emb: tensor(ort, user, [d]), item_emb: tensor(ort, checked[0], [n, d]), item_bias: tensor(ort, checked[1], [n]),
    }))[0];
  }
}

function weightedLoss(losses, mask, nb, b) {
  let num = 0;
  let den = 0;
  for (let i = 0; i < nb; i += 1) {
    let c = 0;
    for (let j = 0; j < b; j += 1) c += mask[i * b + j];
    num += losses[i] * c;
    den += c;
  }
  return num / den;
}

function makeBlocks(idx, labels, k) {
  const nb = Math.ceil(idx.length / k);
  const out = { idx: new Int32Array(nb * k), labels: new Float32Array(nb * k), mask: new Float32Array(nb * k), nb, k };
  idx.forEach((v, i) => { out.idx[i] = v; out.labels[i] = labels[i]; out.mask[i] = 1; });
  return out;
}

function selectBlocks(blocks, which) {
  const { k } = blocks;
  const out = { idx: new Int32Array(which.length * k), labels: new Float32Array(which.length * k),
    mask: new Float32Array(which.length * k), nb: which.length, k };
  which.forEach((src, dst) => {
    out.idx.set(blocks.idx.subarray(src * k, (src + 1) * k), dst * k);
    out.labels.set(blocks.labels.subarray(src * k, (src + 1) * k), dst * k);
    out.mask.set(blocks.mask.subarray(src * k, (src + 1) * k), dst * k);
  });
  return out;
}
