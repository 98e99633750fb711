// The JavaScript Client in Node (onnxruntime-node, file storage) trains a multiclass model against the real
// server: task, verified sync, consent, the protocol plug-in's training input, clipped upload; then evaluate()
// reports top-k accuracy and score() is refused (a class distribution is not one score per record).
// Env: FEDMARK_TABULAR_CLIENT = JSON spec written by tests/web/test_new_families.py; results go to spec.out.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { Client, ConfigurationError, FileStorage } from '../../../edge_sdk/web/src/node.js';

const require = createRequire(new URL('../../../edge_sdk/web/package.json', import.meta.url));
const ort = require('onnxruntime-node');
const spec = JSON.parse(readFileSync(process.env.FEDMARK_TABULAR_CLIENT, 'utf8'));
const hex = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

test('a multiclass round from the Node Client, then local evaluation', async () => {
  const client = new Client({ serverUrl: spec.server, appKey: spec.app_key, deviceId: 'node-multiclass', region: 'eu',
    ort, storage: new FileStorage(join(spec.storage, 'node-multiclass')) });
  try {
    const report = await client.train(spec.model, spec.records, { conditions: spec.conditions, order: spec.orders });
    assert.equal(report.status, 'accepted');
    const ev = await client.evaluate(spec.model, spec.holdout, { k: 2 });
    assert.equal(ev.histogram, null);
    await assert.rejects(client.score(spec.model, spec.holdout),
      (exc) => exc instanceof ConfigurationError && /score\(\) needs a model that scores each record/.test(exc.message));
    await assert.rejects(client.recommend(spec.model), /recommend\(\) needs a recommender model/);
    writeFileSync(spec.out, JSON.stringify({ round_id: report.roundId, delta: hex(report.update.vector),
      lr: report.learningRate, clip_norm: report.clipNorm, num_examples: report.numExamples, metrics: ev.metrics }));
  } finally {
    await client.close();
  }
});
