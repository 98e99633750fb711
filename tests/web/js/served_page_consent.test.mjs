// The served /train page reads consent from its CMP stub (window.__tcfapi, TCF v2.2 CMP API) before every run:
// "Reject all" → the TCF-gated model does not train; "Accept all" → it trains and uploads; a GPC opt-out in the
// browser → nothing trains whatever the CMP says.  Env: FEDMARK_SERVED_CONSENT (tests/web/test_served_page_consent.py).
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { test } from 'node:test';

import { launch } from './chromium.mjs';

const spec = JSON.parse(readFileSync(process.env.FEDMARK_SERVED_CONSENT, 'utf8'));

async function run(page) {
  await page.waitForSelector('body[data-state="ready"], body[data-state="done"], body[data-state="error"]', { timeout: 30_000 });
  await page.click('#start');
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state)
    && !document.getElementById('start').disabled, null, { timeout: 45_000 });
  return page.evaluate(() => ({ state: document.body.dataset.state, message: document.getElementById('message').textContent,
    consent: document.body.dataset.consent ? JSON.parse(document.body.dataset.consent) : null,
    round_id: document.body.dataset.roundId ?? null,
    signals: document.getElementById('signals-kv').textContent, cmp: document.getElementById('cmp-status').textContent }));
}

test('the CMP decides: reject trains nothing, accept trains, GPC overrides', { timeout: 110_000 }, async () => {
  const browser = await launch({ viewport: { width: 1280, height: 1200 } });
  const { page, logs } = browser;
  const out = {};
  try {
    const q = new URLSearchParams({ app_key: spec.appKey, device_id: spec.device, model: spec.model, records: '200' });
    await page.goto(`${spec.origin}/train?${q}`);
    out.undecided = await run(page);
    await page.click('#cmp-reject');
    out.rejected = await run(page);
    await page.click('#cmp-accept');
    out.accepted = await run(page);
    out.ping = await page.evaluate(() => new Promise((resolve) => window.__tcfapi('ping', 2, (p, ok) => resolve({ ...p, ok }))));
    mkdirSync(dirname(spec.screenshot), { recursive: true });
    await page.screenshot({ path: spec.screenshot, fullPage: true });
    // A browser that sends Global Privacy Control: the same accepted CMP answer no longer lets anything train.
    await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true }));
    await page.goto(`${spec.origin}/train?${q}`); // the key travels once in the query, as a visitor's link has it
    out.gpc = await run(page);
    out.errors = browser.errors();
  } catch (exc) {
    console.log(logs.join('\n'));
    throw exc;
  } finally {
    await browser.close();
  }
  writeFileSync(spec.out, JSON.stringify(out));
  assert.ok(out.accepted);
});
