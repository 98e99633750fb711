// The JavaScript SDK's device secret (issue 18, point 1): made with crypto.getRandomValues at first
// enrolment, kept in storage, sent on every enrolment; the same device id without it is refused.
// Env: FEDMARK_SECRET = JSON spec written by tests/web/test_node_device_secret.py.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { AuthenticationError, Client, MemoryStorage } from '../../../edge_sdk/web/src/node.js';

const require = createRequire(new URL('../../../edge_sdk/web/package.json', import.meta.url));
const ort = require('onnxruntime-node');
const spec = JSON.parse(readFileSync(process.env.FEDMARK_SECRET, 'utf8'));
const client = (storage, region = 'eu') => new Client({ serverUrl: spec.server, appKey: spec.app_key,
  deviceId: 'js-secret-1', region, ort, storage });
const fromUtf8 = new TextDecoder();

test('the device secret is kept, proves the device, and survives a lost token', async () => {
  const storage = new MemoryStorage();
  const first = await client(storage).enroll();
  const kept = JSON.parse(fromUtf8.decode(await storage.get('device_secret.json')));
  assert.match(kept.device_secret, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(kept.registered, true);

  // the public app key and the id alone: refused
  const raw = await fetch(`${spec.server}/v1/devices/enroll`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ app_key: spec.app_key, device_id: 'js-secret-1', region: 'eu' }) });
  assert.equal(raw.status, 409);
  assert.equal((await raw.json()).error.code, 'device_proof_required');
  // another storage (another secret) for the same id: refused, with the way out in the message
  await assert.rejects(client(new MemoryStorage()).enroll(),
    (e) => e instanceof AuthenticationError && e.code === 'device_proof_required' && /admin reset/.test(e.message));

  // the token is lost, the storage is not: a new client enrols again with the same secret
  await storage.delete('device.json');
  const again = await client(storage).enroll();
  assert.notEqual(again, first);
  const ok = await fetch(`${spec.server}/v1/models`, { headers: { Authorization: `Bearer ${again}` } });
  assert.equal(ok.status, 200);
});

test('a region the app key was not issued for is refused', async () => {
  await assert.rejects(client(new MemoryStorage(), 'us').enroll(),
    (e) => e instanceof AuthenticationError && e.status === 403 && e.code === 'region_mismatch');
});
