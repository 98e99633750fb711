// Consent follows the task in the JavaScript SDK: records train only if their consent covers the
// task's consent_purposes, even where the manifest names another purpose.
// Env: FEDMARK_CONSENT = JSON spec written by tests/web/test_node_consent.py; results go to spec.out.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { Client, ConsentError, FileStorage, prepareTabular } from '../../../edge_sdk/web/src/node.js';
import { Manifest, parseTaskDocument } from '../../../edge_sdk/web/src/contract.js';

const require = createRequire(new URL('../../../edge_sdk/web/package.json', import.meta.url));
const ort = require('onnxruntime-node');
const spec = JSON.parse(readFileSync(process.env.FEDMARK_CONSENT, 'utf8'));
const ok = { charging: true, unmetered: true, idle: true, battery: 0.9 };
const results = {};
const client = (deviceId) => new Client({ serverUrl: spec.server, appKey: spec.app_key, deviceId, region: 'eu', ort,
  storage: new FileStorage(join(spec.storage, deviceId)) });

test('prepareTabular keeps the records the task consents, not the manifest purpose', () => {
  const manifest = Manifest.parse(readFileSync(join(spec.artifact, 'manifest.json')));
  assert.notEqual(manifest.purpose, 'retention');
  const task = parseTaskDocument({ round_id: 'r', model: 'm', version: 1, upload_url: '/u', clip_norm: 1,
    purpose: 'retention', consent_purposes: ['retention', 'analytics'] });
  const byTask = prepareTabular(spec.records, manifest, { purposes: task.requiredPurposes(manifest.purpose) });
  assert.deepEqual(byTask.kept, spec.task_rows);
  assert.equal(byTask.report.excludedNoConsent, spec.records.length - spec.task_rows.length);
  assert.deepEqual(prepareTabular(spec.records, manifest).kept, spec.manifest_rows); // outside a task: the manifest's
  const bare = parseTaskDocument({ round_id: 'r', model: 'm', version: 1, upload_url: '/u', clip_norm: null });
  assert.deepEqual(bare.requiredPurposes(manifest.purpose), [manifest.purpose]);
});

test('train: the task from a governed model decides which records train', async () => {
  const c = client('consent-js-1');
  const task = await c.getTask(spec.model);
  assert.deepEqual([...task.consentPurposes], ['retention', 'analytics']);
  const report = await c.train(spec.model, spec.records, { conditions: ok, seed: 0 });
  assert.equal(report.status, 'accepted');
  assert.equal(report.numExamples, spec.task_rows.length);
  assert.equal(report.data.used, spec.task_rows.length);
  assert.equal(report.data.excludedNoConsent, spec.records.length - spec.task_rows.length);
  await c.close();
  // Records consented only for the manifest's purpose never train on this model's tasks.
  const d = client('consent-js-2');
  await assert.rejects(d.train(spec.model, spec.manifest_rows.map((i) => spec.records[i]), { conditions: ok, seed: 0 }),
    (e) => e instanceof ConsentError && /purposes 'retention', 'analytics'/.test(e.message));
  await d.close();
  results.trained = { round_id: report.roundId, num_examples: report.numExamples };
});

test('write results', () => {
  writeFileSync(spec.out, JSON.stringify(results));
});
