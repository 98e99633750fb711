// Protocol supervised-tabular/1: {x, y} -> one fused-epoch graph call per epoch (twin of
// edge_sdk/families/supervised.py).  The schema's task says what y is: 0/1 (binary), a number in label
// units (regression: the graph takes it standardised) or a class index (multiclass: the graph takes it
// one-hot); infer returns probabilities [N], predictions [N] or class probabilities [N*C].

import { ManifestError } from '../contract_errors.js';
import { prepareTabular } from '../data.js';
import { permutation, seededRandom } from '../random.js';
import { evaluationEntry, logLoss, scoreHistogram } from '../reports.js';
import {
  TrainerError, TrainingProtocol, allFinite, registerProtocol, scalar, tensor, weightedLoss,
} from './index.js';

export class SupervisedTabular extends TrainingProtocol {
  static protocol = 'supervised-tabular/1';

  static graphs = ['train_epoch', 'infer'];

  constructor(manifest, trainer = null) {
    super(manifest, trainer);
    this.schema = manifest.schema();
    this.task = this.schema.task;
    if (!['binary', 'regression', 'multiclass'].includes(this.task)) {
      throw new ManifestError(`unknown supervised task ${this.task}`);
    }
  }

  get verbs() {
    const verbs = ['train', 'evaluate'];
    if (this.task !== 'multiclass') verbs.push('score'); // one number per record, not a class distribution
    if (this.task === 'binary') verbs.push('validate'); // the fleet's histogram report is for probabilities
    return new Set(verbs);
  }

  /** Width of a tabular row (features.width, else the first parameter's input dimension). */
  get width() {
    return Number(this.manifest.features?.width ?? this.manifest.params[0].shape[0]);
  }

  /** [slot in x, cardinality, column] of each "index" column: what an Embedding inside the graph looks up. */
  get indexSlots() {
    if (this._indexSlots === undefined) {
      const out = [];
      let off = 0;
      for (const c of this.schema.columns) {
        if (c.kind === 'index') out.push([off, c.cardinality, c.name]);
        off += c.width;
      }
      this._indexSlots = out;
    }
    return this._indexSlots;
  }

  /** Label columns of y as the graph takes it: C for multiclass (one-hot), else 1. */
  get labelWidth() {
    return this.task === 'multiclass' ? this.schema.classes.length : 1;
  }

  checkTabular(x, y) {
    const width = this.width;
    const xa = x instanceof Float32Array ? x : Float32Array.from(x);
    if (xa.length % width !== 0) {
      throw new TrainerError(`x has ${xa.length} values, not a whole number of rows of width ${width}: encode records `
        + 'with manifest.schema().encode(records)');
    }
    if (!allFinite(xa)) throw new TrainerError('x contains NaN or Inf; the schema encoder fills missing values, use it');
    const n = xa.length / width;
    for (const [slot, card, name] of this.indexSlots) {
      for (let r = 0; r < n; r += 1) {
        const id = xa[r * width + slot];
        if (!(id >= 0 && id < card && Number.isInteger(id))) {
          throw new TrainerError(`x slot ${slot} (column '${name}') feeds an Embedding and must hold category indices `
            + `0..${card - 1}; encode records with manifest.schema().encode(records)`);
        }
      }
    }
    if (y === undefined) return { x: xa, n };
    const ya = y instanceof Float32Array ? y : Float32Array.from(y);
    if (ya.length !== n) throw new TrainerError(`x has ${n} rows but y has ${ya.length} labels`);
    if (!allFinite(ya)) throw new TrainerError('labels y contain NaN or Inf');
    if (this.task === 'binary') {
      for (let i = 0; i < ya.length; i += 1) {
        if (!(ya[i] >= 0 && ya[i] <= 1)) throw new TrainerError('labels y must be 0/1 (or probabilities in [0, 1])');
      }
    } else if (this.task === 'multiclass') {
      const c = this.schema.classes.length;
      for (let i = 0; i < ya.length; i += 1) {
        if (!(Number.isInteger(ya[i]) && ya[i] >= 0 && ya[i] < c)) {
          throw new TrainerError(`multiclass labels y must be class indices 0..${c - 1} (the schema's classes `
            + `${JSON.stringify(this.schema.classes)})`);
        }
      }
    }
    return { x: xa, y: ya, n };
  }

  /** Stack rows in `order` into [numBatches, B, …] with a 0/1 mask padding the last batch (y as the graph takes it). */
  batches(x, y, order) {
    const b = this.manifest.batch_size;
    const w = this.width;
    const lw = y.length / (x.length / w); // 1, or C for one-hot labels
    const n = order.length;
    const nb = Math.max(1, Math.ceil(n / b));
    const xs = new Float32Array(nb * b * w);
    const ys = new Float32Array(nb * b * lw);
    const ms = new Float32Array(nb * b);
    for (let i = 0; i < n; i += 1) {
      const r = order[i];
      xs.set(x.subarray(r * w, (r + 1) * w), i * w);
      ys.set(y.subarray(r * lw, (r + 1) * lw), i * lw);
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

  /**
   * `data = {x, y}`.  Each epoch visits the rows in `order` when given (one permutation for every
   * epoch, or an array of per-epoch permutations), else in a seeded shuffle (`seed`), else in input
   * order with `shuffle: false`.  The Python SDK's `train(..., shuffle=False)` on the rows taken in
   * the same order gives the same update.
   */
  async train(params, data, { epochs, lr, seed, shuffle, order, onEpoch }) {
    if (!data || data.x === undefined || data.y === undefined) {
      throw new TrainerError('tabular data must be {x: Float32Array [N*width], y: Float32Array [N]}');
    }
    const { x, y, n } = this.checkTabular(data.x, data.y);
    if (n === 0) throw new TrainerError('no training rows: a device needs at least one consented record');
    const graphY = this.schema.graphLabels(y);
    const { ort } = this.trainer;
    const names = this.manifest.params.map((p) => p.name);
    const b = this.manifest.batch_size;
    const w = this.width;
    const lw = this.labelWidth;
    const random = seededRandom(seed);
    let current = params;
    let loss = NaN;
    for (let epoch = 0; epoch < epochs; epoch += 1) {
      const t0 = performance.now();
      const { xs, ys, ms, nb } = this.batches(x, graphY, this._epochOrder(n, epoch, order, shuffle, random));
      const feeds = {};
      this.manifest.params.forEach((spec, i) => { feeds[spec.name] = tensor(ort, current[i], [...spec.shape]); });
      feeds.x = tensor(ort, xs, [nb, b, w]);
      feeds.y = tensor(ort, ys, this.task === 'multiclass' ? [nb, b, lw] : [nb, b]);
      feeds.mask = tensor(ort, ms, [nb, b]);
      feeds.lr = scalar(ort, lr);
      const out = await this.trainer.run('train_epoch', feeds);
      current = out.slice(0, names.length);
      loss = weightedLoss(out[names.length], ms, nb, b);
      await onEpoch({ epoch: epoch + 1, epochs, loss, ms: performance.now() - t0 });
    }
    return { params: current, local: {}, loss, numExamples: n };
  }

  /** Probabilities [N] (binary), predictions [N] (regression) or class probabilities [N*C] (multiclass). */
  async predict(params, x) {
    if (x === null || x === undefined) throw new TrainerError('predict needs x [N*width]');
    const { ort } = this.trainer;
    const { x: xa, n } = this.checkTabular(x);
    const feeds = {};
    this.manifest.params.forEach((spec, i) => { feeds[spec.name] = tensor(ort, params[i], [...spec.shape]); });
    feeds.x = tensor(ort, xa, [n, this.width]);
    return (await this.trainer.run('infer', feeds))[0];
  }

  // ---------------------------------------------------------------- device side
  /** {data: {x, y}, report} from consented, labelled records. */
  trainingInput(rows, { strict = false, consentField, allowed = null } = {}) {
    const enc = prepareTabular(rows, this.manifest, { withLabel: true, strict, consentField, allowed });
    return { data: { x: enc.x, y: enc.y }, report: enc.report };
  }

  /** One score per record (Float64Array); records refused by consent or the schema get NaN. */
  async scores(rows, { consentField, allowed = null } = {}) {
    const enc = prepareTabular(rows, this.manifest, { withLabel: false, consentField, allowed });
    const out = new Float64Array(rows.length).fill(NaN);
    if (enc.kept.length) {
      const p = await this.predict(this.trainer.initialParams(), enc.x);
      enc.kept.forEach((i, j) => { out[i] = p[j]; });
    }
    return out;
  }

  /**
   * Metrics on a local holdout, aggregates only: binary {loss, n, positive_rate} and the per-label score
   * histogram; regression {mae, rmse, n} in label units; multiclass {accuracy, top<k>_accuracy, loss, n}
   * (the Python SDK's regression_metrics / multiclass_metrics).
   */
  async evaluate(rows, { consentField, allowed = null, k = 10 } = {}) {
    const enc = prepareTabular(rows, this.manifest, { withLabel: true, consentField, allowed });
    const out = await this.predict(this.trainer.initialParams(), enc.x);
    const y = enc.y;
    const n = y.length;
    if (this.task === 'regression') return { metrics: regressionMetrics(y, out), histogram: null, report: enc.report };
    if (this.task === 'multiclass') {
      return { metrics: multiclassMetrics(y, out, this.schema.classes.length, k), histogram: null, report: enc.report };
    }
    const positiveRate = n ? y.reduce((a, b) => a + b, 0) / n : NaN;
    return { metrics: { loss: logLoss(y, out), n, positive_rate: positiveRate }, histogram: scoreHistogram(y, out),
      report: enc.report };
  }

  /** The federated-evaluation entry for `version` on consented records (null when none is usable). */
  async validationEntry(version, rows, { consentField, allowed = null } = {}) {
    const enc = prepareTabular(rows, this.manifest, { withLabel: true, consentField, allowed });
    const p = await this.predict(this.trainer.initialParams(), enc.x);
    return evaluationEntry(version, enc.y, p);
  }
}

/** MAE, RMSE and n in label units (NaN when empty), as edge_sdk/families/supervised.py. */
export function regressionMetrics(y, pred) {
  const n = y.length;
  if (!n) return { mae: NaN, rmse: NaN, n: 0 };
  let abs = 0;
  let sq = 0;
  for (let i = 0; i < n; i += 1) {
    const e = pred[i] - y[i];
    abs += Math.abs(e);
    sq += e * e;
  }
  return { mae: abs / n, rmse: Math.sqrt(sq / n), n };
}

/** Top-1 and top-k accuracy (k capped at the number of classes), log loss and n, as the Python SDK. */
export function multiclassMetrics(y, probs, classes, k) {
  const n = y.length;
  const kk = Math.max(1, Math.min(Math.trunc(k), classes));
  const name = `top${kk}_accuracy`;
  if (!n) return { accuracy: NaN, [name]: NaN, loss: NaN, n: 0 };
  let top1 = 0;
  let topk = 0;
  let loss = 0;
  for (let i = 0; i < n; i += 1) {
    const row = Array.from(probs.subarray(i * classes, (i + 1) * classes));
    const truth = y[i];
    // rank of the true class under a stable descending sort: classes ahead of it score higher, or tie earlier
    let ahead = 0;
    for (let c = 0; c < classes; c += 1) if (row[c] > row[truth] || (row[c] === row[truth] && c < truth)) ahead += 1;
    if (ahead === 0) top1 += 1;
    if (ahead < kk) topk += 1;
    loss -= Math.log(Math.min(1, Math.max(1e-7, row[truth])));
  }
  return { accuracy: top1 / n, [name]: topk / n, loss: loss / n, n };
}

registerProtocol(SupervisedTabular);
