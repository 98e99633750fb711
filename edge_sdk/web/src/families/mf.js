// Protocol mf-reconstruction/1: matrix factorisation with a device-only user vector (twin of
// edge_sdk/families/mf.py).  The device samples negatives, reconstructs its private user vector with the
// items frozen (recon_epoch), then trains only the item rows it touched (train_epoch on gathered blocks).

import { prepareInteractions } from '../data.js';
import { SchemaError } from '../errors.js';
import { permutation, seededRandom } from '../random.js';
import { topK } from '../reports.js';
import { TrainerError, TrainingProtocol, registerProtocol, scalar, tensor, weightedLoss } from './index.js';

export class MFReconstruction extends TrainingProtocol {
  static protocol = 'mf-reconstruction/1';

  static graphs = ['train_epoch', 'recon_epoch', 'infer'];

  get verbs() { return new Set(['train', 'recommend']); }

  /** The user vector and the purchase history stay on the device between runs (federated reconstruction). */
  get needsPersonalState() { return true; }

  /** {data: the customer's item indices, report}; refuses records naming no item this model knows. */
  trainingInput(rows, { strict = false, consentField, allowed = null } = {}) {
    const { items, report } = prepareInteractions(rows, this.manifest, { strict, consentField, allowed });
    if (!items.length) throw new SchemaError('none of the consented records names an item this model knows; nothing to train');
    return { data: items, report };
  }

  /** Keep the new user vector and add the items trained on to the purchase history (nothing is uploaded). */
  async afterTraining(store, model, items, result, history) {
    const codes = this.manifest.features.items;
    await store.save(model, result.local, [...history, ...Array.from(items, (i) => String(codes[i]))]);
  }

  /** Top-`k` item codes for the stored user vector `local`, excluding `seen` codes (history and exclusions). */
  async recommend(local, k, seen) {
    const items = this.manifest.features.items.map(String);
    const index = new Map(items.map((c, i) => [c, i]));
    const skip = [...new Set(seen.map(String))].filter((c) => index.has(c)).map((c) => index.get(c));
    const scores = await this.predict(this.trainer.initialParams(), null, { local });
    return topK(scores, k, skip).map((i) => items[i]);
  }

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
    const negatives = Number(this.trainer.hyperparams.negatives ?? 4);
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
    const e = Number(epochs ?? this.trainer.hyperparams.epochs ?? 1);
    const positives = this._positives(data);
    const random = seededRandom(seed);
    const steps = Number(this.trainer.hyperparams.recon_steps ?? 20);
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
    const { ort } = this.trainer;
    const d = user.length;
    const { rows, rowBias } = this._gather(itemEmb, itemBias, blocks, d);
    const [u, losses] = await this.trainer.run('recon_epoch', {
      user_emb: tensor(ort, user, [d]), rows: tensor(ort, rows, [blocks.nb, blocks.k, d]),
      row_bias: tensor(ort, rowBias, [blocks.nb, blocks.k]), labels: tensor(ort, blocks.labels, [blocks.nb, blocks.k]),
      mask: tensor(ort, blocks.mask, [blocks.nb, blocks.k]), lr: scalar(ort, Number(this.trainer.hyperparams.recon_lr ?? 1.0)),
    });
    return { user: u, loss: losses[losses.length - 1] };
  }

  /** `data` = the customer's positive item indices; `local` = {user_emb}; `plan` may fix negatives and block order. */
  async train(params, data, { local, epochs, lr, seed, plan, onEpoch }) {
    const start = this.trainer.checkLocal(local, seed);
    const p = plan ?? this.recommenderPlan(data, { epochs, seed });
    const { ort } = this.trainer;
    const itemEmb = Float32Array.from(params[0]);
    const itemBias = Float32Array.from(params[1]);
    const d = this.manifest.params[0].shape[1];
    let { user } = await this._reconstruct(itemEmb, itemBias, p.recon, start.user_emb);
    let loss = NaN;
    for (const [i, blocks] of p.epochs.entries()) {
      const t0 = performance.now();
      const { rows, rowBias } = this._gather(itemEmb, itemBias, blocks, d);
      const dims = [blocks.nb, blocks.k];
      const [rowsNew, biasNew, losses] = await this.trainer.run('train_epoch', {
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

  /** A score for every item given `local.user_emb` (from train). */
  async predict(params, _x, { local }) {
    if (!local?.user_emb) throw new TrainerError("recommender predict needs local = {user_emb} (from train)");
    const { ort } = this.trainer;
    const user = this.trainer.checkLocal(local, 0).user_emb;
    const [n, d] = this.manifest.params[0].shape;
    return (await this.trainer.run('infer', {
      user_emb: tensor(ort, user, [d]), item_emb: tensor(ort, params[0], [n, d]), item_bias: tensor(ort, params[1], [n]),
    }))[0];
  }
}

registerProtocol(MFReconstruction);

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
