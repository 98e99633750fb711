// JS SDK parity with the Python SDK, in Node and in headless Chromium, against a real server.
// Env: FEDMARK_SDK_PARITY = JSON spec written by tests/web/test_js_sdk_parity.py; results go to spec.out.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { Client, FileStorage } from '../../../edge_sdk/web/src/node.js';
import { withBrowser } from './chromium.mjs';
import { propensitySteps, recommenderSteps } from './sdk_parity_steps.mjs';

const require = createRequire(new URL('../../../edge_sdk/web/package.json', import.meta.url));
const ort = require('onnxruntime-node');
const spec = JSON.parse(readFileSync(process.env.FEDMARK_SDK_PARITY, 'utf8'));
const results = {};

test('node: evaluation, validation, segments and a recommender round', async () => {
  const client = new Client({ serverUrl: spec.server, appKey: spec.app_key, deviceId: 'parity-node', region: 'eu', ort,
    storage: new FileStorage(join(spec.storage, 'node')) });
  try {
    results.node = { ...(await propensitySteps(client, spec)), recommender: await recommenderSteps(client, spec) };
    assert.equal(results.node.recommender.status, 'accepted');
  } finally {
    await client.close();
  }
});

test('browser: the same steps in headless Chromium', { timeout: 100_000 }, () => withBrowser(async (browser) => {
  await browser.page.goto(`${spec.origin}/page/index.html`);
  await browser.page.waitForFunction(() => window.fedmarkReady === true, null, { timeout: 30_000 });
  results.browser = await browser.page.evaluate((s) => window.fedmarkParity(s), spec);
  assert.equal(results.browser.recommender.status, 'accepted');
  results.browser_errors = browser.errors();
}));

test('write results', () => {
  writeFileSync(spec.out, JSON.stringify(results));
});
