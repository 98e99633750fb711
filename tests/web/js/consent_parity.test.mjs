// The same records and signals give the same decisions and the same update in Node, the browser and Python.
// Env: FEDMARK_CONSENT_PARITY = JSON spec written by tests/web/test_consent_parity.py; results go to spec.out.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { Client, FileStorage, parseConsentRequirement } from '../../../edge_sdk/web/src/node.js';
import { decideRecords } from '../../../edge_sdk/web/src/withdrawal.js';
import { withBrowser } from './chromium.mjs';

const require = createRequire(new URL('../../../edge_sdk/web/package.json', import.meta.url));
const ort = require('onnxruntime-node');
const spec = JSON.parse(readFileSync(process.env.FEDMARK_CONSENT_PARITY, 'utf8'));
const vectors = JSON.parse(readFileSync(spec.vectors, 'utf8'));
const results = {};

test('node: decisions over the records and a training run on a real server', async () => {
  const req = parseConsentRequirement(spec.requirement.consent_signals, spec.requirement.purposes);
  results.node_decisions = decideRecords(spec.records, req, null, 'consent');
  const client = new Client({ serverUrl: spec.server, appKey: spec.app_key, deviceId: 'consent-parity-node', region: 'eu',
    ort, storage: new FileStorage(join(spec.storage, 'node')), subjectField: 'customer' });
  try {
    const r = await client.train(spec.model, spec.records, { conditions: spec.conditions, order: spec.orders });
    assert.equal(r.status, 'accepted');
    // activation on the device: segments count exactly the records the task's mapping allowed
    const segments = await client.reportSegments(spec.model, spec.records);
    results.node_segment_total = Object.values(segments).reduce((a, b) => a + b, 0);
    results.node = { consent: r.consent, consent_reported: r.consentReported, num_examples: r.numExamples,
      round_id: r.roundId, delta: Buffer.from(r.update.vector.buffer, r.update.vector.byteOffset, r.update.vector.byteLength).toString('hex') };
  } finally {
    await client.close();
  }
});

test('node: a visitor who withdraws in the CMP while the epochs run gets no update queued', async () => {
  const accept = vectors.strings.accept_all.tcdata;
  const reject = vectors.strings.reject_all.tcdata;
  const { tcfFromTCData } = await import('../../../edge_sdk/web/src/tcf.js');
  const rows = spec.records.map(({ tc_string: _t, consent_mode: _c, gpc: _g, ...r }) => r);
  let asked = 0;
  const signals = () => {
    asked += 1;
    return { tc_string: tcfFromTCData(asked === 1 ? accept : reject), consent_mode: { ad_user_data: 'granted', ad_personalization: 'granted' } };
  };
  const client = new Client({ serverUrl: spec.server, appKey: spec.app_key, deviceId: 'consent-flip-node', region: 'eu',
    ort, storage: new FileStorage(join(spec.storage, 'flip')) });
  try {
    const err = await client.train(spec.model, rows, { conditions: spec.conditions, signals }).then(() => null, (e) => e);
    results.flip = { error: err?.name ?? null, message: err?.message ?? null, asked, pending: await client.pending() };
  } finally {
    await client.close();
  }
});

test('browser: documented decisions and the same training run', { timeout: 90_000 }, () => withBrowser(async ({ page }) => {
  await page.goto(`${spec.origin}/page/index.html`);
  await page.waitForFunction(() => window.fedmarkReady === true, null, { timeout: 30_000 });
  results.browser = await page.evaluate((s) => window.fedmarkConsent(s), {
    vectors, appKey: spec.app_key, deviceId: 'consent-parity-browser', model: spec.model, records: spec.records,
    orders: spec.orders, conditions: spec.conditions });
}));

test('write results', () => {
  writeFileSync(spec.out, JSON.stringify(results));
});
