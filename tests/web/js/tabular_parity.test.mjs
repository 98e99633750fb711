// New families in Node: the JS trainer (onnxruntime-node) encodes the raw customer-table records, trains
// the regression and multiclass artifacts in the order pytest chose, predicts, and writes everything for
// tests/web/test_new_families.py to compare with the Python SDK.
// Env: FEDMARK_TABULAR = JSON spec written by the pytest module.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';

import { verbRefusal } from '../../../edge_sdk/web/src/families/index.js';
import { Manifest } from '../../../edge_sdk/web/src/manifest.js';
import { loadTrainer, readArtifactDir } from '../../../edge_sdk/web/src/node_artifact.js';
import { Trainer } from '../../../edge_sdk/web/src/trainer.js';

const require = createRequire(new URL('../../../edge_sdk/web/package.json', import.meta.url));
const ort = require('onnxruntime-node');

const spec = JSON.parse(readFileSync(process.env.FEDMARK_TABULAR, 'utf8'));
const results = {};
const hex = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

for (const [task, s] of Object.entries(spec.cases)) {
  test(`${task}: encode, train in the given order, predict`, async () => {
    const trainer = await loadTrainer(s.artifact, { ort });
    assert.equal(trainer.manifest.protocol, 'supervised-tabular/1');
    const schema = trainer.manifest.schema();
    assert.equal(schema.task, task);
    const { x, y, rows } = schema.encode(s.records);
    const old = trainer.initialParams();
    const res = await trainer.train(old, { x, y }, { epochs: s.orders.length, lr: s.lr, order: s.orders });
    assert.equal(res.numExamples, rows);
    const pred = await trainer.predict(res.params, x.subarray(0, 10 * schema.width));
    await assert.rejects(trainer.train(old, { x, y: y.map(() => NaN) }), /NaN/);
    for (const [slot, card, name] of trainer.protocol.indexSlots) { // an Embedding's index outside its table
      const bad = Float32Array.from(x);
      bad[3 * schema.width + slot] = card;
      await assert.rejects(trainer.train(old, { x: bad, y }), new RegExp(`x slot ${slot} \\(column '${name}'\\) feeds an Embedding`));
    }
    assert.equal(trainer.protocol.indexSlots.length, task === 'regression' ? 1 : 0);
    // the Client's evaluate() is the plug-in's: local holdout metrics of the artifact's initial parameters
    const consented = s.records.map((r) => ({ ...r, consent: trainer.manifest.purpose }));
    const ev = await trainer.protocol.evaluate(consented, { consentField: 'consent', k: 3 });
    assert.equal(ev.histogram, null);
    // what the Client refuses instead of branching on a family: a class distribution is not one score per record
    const scoreRefusal = verbRefusal('m', trainer.manifest, 'score', 'score()');
    if (task === 'multiclass') assert.match(scoreRefusal, /score\(\) needs a model that scores each record/);
    else assert.equal(scoreRefusal, null);
    assert.match(verbRefusal('m', trainer.manifest, 'recommend', 'recommend()'), /needs a recommender model/);
    await trainer.close();
    results[task] = { x: hex(x), y: hex(y), params: res.params.map(hex), loss: res.loss, pred: hex(pred),
      metrics: ev.metrics };
  });
}

test('an artifact of a protocol this SDK does not know is refused', async () => {
  const { manifest, files } = await readArtifactDir(spec.cases.regression.artifact);
  const unknown = Manifest.fromJSON({ ...manifest.toJSON(), protocol: 'graph-neural/3' });
  assert.throws(() => new Trainer({ manifest: unknown, files, ort }), /which this SDK does not know \(it knows mf-reconstruction\/1, supervised-tabular\/1\)/);
});

test('write results', () => {
  writeFileSync(spec.out, JSON.stringify(results));
});
