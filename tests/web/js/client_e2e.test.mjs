// The JavaScript Client in Node (onnxruntime-node, file storage) against a real fedmark server.
// Env: FEDMARK_E2E = JSON spec written by tests/web/test_node_client.py; results go to spec.out.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import {
  ArtifactIntegrityError, Client, ConsentError, ensureEligible, FileStorage, MemoryStorage, NotEligibleError, RetryPolicy, Transport,
  TransportError,
} from '../../../edge_sdk/web/src/node.js';

const require = createRequire(new URL('../../../edge_sdk/web/package.json', import.meta.url));
const ort = require('onnxruntime-node');
const spec = JSON.parse(readFileSync(process.env.FEDMARK_E2E, 'utf8'));
const results = {};
const ok = { charging: true, unmetered: true, idle: true, battery: 0.9 };
const hex = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

const client = (deviceId, extra = {}) => new Client({
  serverUrl: spec.server, appKey: spec.app_key, deviceId, region: 'eu', ort,
  storage: new FileStorage(join(spec.storage, deviceId)), ...extra,
});

test('train: task, verified sync, consent, local training, clipped upload accepted', async () => {
  const c = client('node-device-1');
  const events = [];
  const report = await c.train(spec.model, spec.records, { conditions: ok, order: spec.orders,
    onProgress: (e) => { events.push(e); if (e.stage === 'sync') throw new Error('a broken callback must not stop training'); } });
  assert.equal(report.status, 'accepted');
  assert.ok(report.updateId);
  // Progress: task → sync → train (epoch 0, then each epoch) → upload (norm, clipping) → done (server's answer).
  const epochs = events.filter((e) => e.stage === 'train');
  assert.deepEqual(events.map((e) => e.stage), ['task', 'sync', ...epochs.map(() => 'train'), 'upload', 'done']);
  assert.deepEqual(epochs.map((e) => e.epoch), Array.from({ length: report.epochs + 1 }, (_, i) => i));
  assert.ok(epochs.slice(1).every((e) => Number.isFinite(e.loss) && e.epochs === report.epochs && e.ms >= 0));
  assert.equal(epochs.at(-1).loss, report.loss);
  const upload = events.find((e) => e.stage === 'upload');
  assert.equal(upload.norm, report.updateNorm);
  assert.equal(upload.withinClip, report.withinClip);
  assert.deepEqual(events.at(-1), { stage: 'done', status: 'accepted', roundId: report.roundId,
    updateId: report.updateId, httpStatus: 202 });
  const round = await c.roundStatus(report.roundId);
  assert.equal(round.round_id, report.roundId);
  assert.ok(round.accepted >= 1);
  assert.equal(report.data.excludedNoConsent, spec.records.filter((r) => !r.consent.includes('propensity_scoring')).length);
  assert.equal(report.numExamples, report.data.used);
  assert.ok(report.updateNorm > 0);
  assert.equal(await c.pending(), 0);
  // The second sync of the same version is a 304: nothing is downloaded again, the files re-verify.
  const again = await c.sync(spec.model, report.version);
  assert.equal(again.manifestNotModified, true);
  assert.equal(again.downloaded, 0);
  // Scoring on the device: consented rows get probabilities, the rest NaN.
  const scores = await c.score(spec.model, spec.records.slice(0, 20));
  scores.forEach((s, i) => assert.equal(Number.isNaN(s), !spec.records[i].consent.includes('propensity_scoring')));
  await c.close();
  results.trained = { round_id: report.roundId, delta: hex(report.update.vector), norm: report.updateNorm,
    within: report.withinClip, clip_norm: report.clipNorm, epochs: report.epochs, lr: report.learningRate,
    num_examples: report.numExamples, version: report.version, key: report.idempotencyKey };
});

test('offline: the update waits in the queue and is sent later with the same idempotency key', async () => {
  let offline = true;
  const realFetch = globalThis.fetch;
  const flaky = (url, init) => (offline && url.endsWith('/updates') ? Promise.reject(new TypeError('network down')) : realFetch(url, init));
  const c = client('node-device-2', { fetch: flaky, retry: { maxRetries: 1, baseBackoff: 0.01 } });
  const report = await c.train(spec.model, spec.records, { conditions: ok, seed: 1 });
  assert.equal(report.status, 'queued');
  assert.equal(await c.pending(), 1);
  // A new Client over the same storage (an app restart) finds the queued update and sends it.
  offline = false;
  const restarted = client('node-device-2', { fetch: flaky });
  const flushed = await restarted.flush();
  assert.equal(flushed.sent, 1);
  assert.equal(flushed.outcomes[0].key, report.idempotencyKey);
  assert.equal(await restarted.pending(), 0);
  // The same body and key once more: the server answers 200 and counts it once.
  const h = await restarted._headers();
  const dup = await restarted.transport.request('POST', `/v1/rounds/${report.roundId}/updates`,
    { body: report.update.body, headers: { ...h, 'Content-Type': 'application/vnd.fedmark.update',
      'X-Fedmark-Model-Version': String(report.version), 'X-Fedmark-Num-Examples': String(report.numExamples),
      'X-Fedmark-Within-Clip': report.withinClip ? '1' : '0', 'Idempotency-Key': report.idempotencyKey }, accept: [200, 202] });
  assert.equal(dup.status, 200);
  await restarted.close();
  results.offline = { round_id: report.roundId };
});

test('refusals: no consent, ineligible device, tampered artifact', async () => {
  const c = client('node-device-3');
  await assert.rejects(c.train(spec.model, spec.records.map((r) => ({ ...r, consent: 'analytics' })), { conditions: ok }), ConsentError);
  // The task's policy decides; a rule this SDK does not know counts as failed.
  assert.throws(() => ensureEligible({ require_charging: true, min_battery: 0.5, future_rule: true },
    { ...ok, charging: false, battery: 0.2 }), (e) => e instanceof NotEligibleError && e.reasons.length === 3);
  assert.doesNotThrow(() => ensureEligible({ require_charging: true }, ok));
  // A file flipped in transit is refused before anything is stored.
  const realFetch = globalThis.fetch;
  const tamper = async (url, init) => {
    const r = await realFetch(url, init);
    if (!url.includes('/files/')) return r;
    const b = new Uint8Array(await r.arrayBuffer());
    b[b.length - 1] ^= 1;
    return new Response(b, { status: r.status, headers: r.headers });
  };
  const t = client('node-device-4', { fetch: tamper, storage: new MemoryStorage() });
  await assert.rejects(t.sync(spec.model, spec.version), ArtifactIntegrityError);
  assert.equal((await t.models.state(spec.model)).current, null);
});

test('transport: retries 503/429 honouring Retry-After, then gives up with the hint', async () => {
  const seen = [];
  let answers = [];
  const srv = createServer((req, res) => {
    seen.push(Date.now());
    const [status, headers] = answers.shift() ?? [200, {}];
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
    res.end(status >= 400 ? JSON.stringify({ error: { code: 'busy', message: 'try later' } }) : '{"ok": true}');
  });
  await new Promise((resolve) => { srv.listen(0, '127.0.0.1', resolve); });
  const url = `http://127.0.0.1:${srv.address().port}`;
  const sleeps = [];
  const tr = new Transport(url, { retry: new RetryPolicy({ maxRetries: 3, baseBackoff: 0.1, maxRetryAfter: 5 }),
    sleep: async (s) => { sleeps.push(s); }, random: () => 0.5 });
  answers = [[503, { 'Retry-After': '2' }], [429, { 'Retry-After': '1' }]];
  const r = await tr.request('GET', '/x');
  assert.equal(r.status, 200);
  assert.deepEqual(sleeps, [2.05, 1.05]); // Retry-After plus half of the 0.1 s jitter
  answers = [[503, {}], [503, {}], [503, {}], [503, {}]];
  sleeps.length = 0;
  await assert.rejects(tr.request('GET', '/x'), (e) => e instanceof TransportError && /4 attempt/.test(e.message));
  assert.deepEqual(sleeps, [0.05, 0.1, 0.2]); // full jitter: U(0, base·2^i) with the draw fixed at 0.5
  answers = [[429, { 'Retry-After': '120' }]];
  await assert.rejects(tr.request('GET', '/x'), (e) => e instanceof TransportError && e.retryAfter === 120);
  srv.close();
});

test('write results', () => {
  assert.ok(results.trained && results.offline);
  writeFileSync(spec.out, JSON.stringify(results));
});
