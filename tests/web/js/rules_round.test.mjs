// A Node device trains a model whose manifest carries quality rules (features.rules) against the real server:
// records breaking a rule never train, the report counts them per rule, and the uploaded update is written
// out for tests/web/test_node_rules.py to compare with the Python SDK's.  A model whose rules this SDK cannot
// read is refused before anything trains or uploads.
// Env: FEDMARK_RULES_ROUND = JSON spec written by the pytest module; results go to spec.out.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { Client, FileStorage, ServerError } from '../../../edge_sdk/web/src/node.js';

const require = createRequire(new URL('../../../edge_sdk/web/package.json', import.meta.url));
const ort = require('onnxruntime-node');
const spec = JSON.parse(readFileSync(process.env.FEDMARK_RULES_ROUND, 'utf8'));
const conditions = { charging: true, unmetered: true, idle: true, battery: 1.0 };
const hex = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');
const device = (id) => new Client({ serverUrl: spec.server, appKey: spec.app_key, deviceId: id, region: 'eu', ort,
  storage: new FileStorage(join(spec.storage, id)) });

test('a rules-bearing model trains only on the records that pass its rules', async () => {
  const client = device('node-rules');
  try {
    const report = await client.train(spec.model, spec.records, { conditions, order: spec.orders });
    assert.equal(report.status, 'accepted');
    writeFileSync(spec.out, JSON.stringify({ round_id: report.roundId, delta: hex(report.update.vector),
      lr: report.learningRate, clip_norm: report.clipNorm, num_examples: report.numExamples,
      rule_violations: report.data.ruleViolations, rejected: report.data.rejected, used: report.data.used,
      row_errors: report.data.rowErrors.map((e) => [e.row, e.column, e.reason]) }));
  } finally {
    await client.close();
  }
});

test('a model whose rules cannot be read is refused, never trained', async () => {
  const client = device('node-unreadable');
  try {
    await assert.rejects(client.train(spec.unreadable_model, spec.records, { conditions, order: spec.orders }),
      (exc) => exc instanceof ServerError && exc.code === 'bad_answer'
        && /the model's quality rules are unusable: column 'age': a numeric column measured federatedly needs a declared 'range'/.test(exc.message));
    assert.equal(await client.outbox.size(), 0, "nothing was queued for upload");
  } finally {
    await client.close();
  }
});
