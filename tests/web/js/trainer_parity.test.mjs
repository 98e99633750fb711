// The JavaScript trainer (onnxruntime-node) on the inputs pytest chose; it writes its
// update for tests/web/test_node_trainer.py to compare with the Python SDK's.
// Env: FEDMARK_PARITY = JSON spec written by the pytest module.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';

import { decodeUpdate } from '../../../edge_sdk/web/src/contract.js';
import { loadTrainer } from '../../../edge_sdk/web/src/node_artifact.js';
import { buildUpdate } from '../../../edge_sdk/web/src/prepare.js';

const require = createRequire(new URL('../../../edge_sdk/web/package.json', import.meta.url));
const ort = require('onnxruntime-node');

const specPath = process.env.FEDMARK_PARITY;
if (!specPath) throw new Error('set FEDMARK_PARITY to the spec JSON written by tests/web/test_node_trainer.py');
const spec = JSON.parse(readFileSync(specPath, 'utf8'));
const results = {};
const hex = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');
const f32 = (h) => { const b = Buffer.from(h, 'hex'); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4); };
const blocks = (b) => ({ idx: Int32Array.from(b.idx.flat()), labels: Float32Array.from(b.labels.flat()),
  mask: Float32Array.from(b.mask.flat()), nb: b.idx.length, k: b.idx[0]?.length ?? 0 });
const noRandom = () => { throw new Error('an f32 update without local noise needs no randomness'); };

test('propensity: encode records, train in the given order, clip and encode', async () => {
  const s = spec.propensity;
  const trainer = await loadTrainer(s.artifact, { ort });
  const schema = trainer.manifest.schema();
  const { x, y, rows } = schema.encode(s.records);
  const old = trainer.initialParams();
  const t0 = performance.now();
  const res = await trainer.train(old, { x, y }, { epochs: s.orders.length, lr: s.lr, order: s.orders });
  const ms = performance.now() - t0;
  const upd = buildUpdate(res.params, old, trainer.manifest.params,
    { clipNorm: s.clip_norm, numExamples: res.numExamples, encoding: 'f32', random: noRandom });
  assert.equal(res.numExamples, rows);
  assert.ok(Number.isFinite(res.loss));
  assert.deepEqual(decodeUpdate(upd.body, trainer.manifest.numParams).vec, upd.vector);
  // Without an explicit order the seeded shuffle is reproducible per seed and differs between seeds.
  const a = await trainer.train(old, { x, y }, { epochs: 1, seed: 5 });
  const b = await trainer.train(old, { x, y }, { epochs: 1, seed: 5 });
  const c = await trainer.train(old, { x, y }, { epochs: 1, seed: 6 });
  assert.deepEqual(a.params, b.params);
  assert.notDeepEqual(a.params[0], c.params[0]);
  await trainer.close();
  results.propensity = {
    x: hex(x), y: hex(y), delta: hex(upd.vector), body: Buffer.from(upd.body).toString('hex'), norm: upd.norm,
    within: upd.within, loss: res.loss, num_examples: res.numExamples, train_ms: ms,
  };
});

test('recommender: replay the Python plan from the same user vector', async () => {
  const s = spec.recommender;
  const trainer = await loadTrainer(s.artifact, { ort });
  const old = trainer.initialParams();
  const plan = { positives: s.plan.positives, recon: blocks(s.plan.recon), epochs: s.plan.epochs.map(blocks) };
  const res = await trainer.train(old, s.positives, { local: { user_emb: f32(s.user_emb) }, lr: s.lr, plan });
  const upd = buildUpdate(res.params, old, trainer.manifest.params,
    { clipNorm: s.clip_norm, numExamples: res.numExamples, encoding: 'f32', random: noRandom });
  const scores = await trainer.predict(res.params, null, { local: res.local });
  assert.equal(scores.length, trainer.manifest.params[0].shape[0]);
  await trainer.close();
  results.recommender = {
    delta: hex(upd.vector), user_emb: hex(res.local.user_emb), norm: upd.norm, within: upd.within,
    num_examples: res.numExamples, loss: res.loss, scores: hex(scores),
  };
});

test('write the results for pytest', () => {
  assert.ok(results.propensity && results.recommender, 'both trainings ran');
  writeFileSync(spec.out, JSON.stringify(results));
});
