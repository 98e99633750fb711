// Drive Debian's headless Chromium (playwright-core, no downloaded browser) through one
// training round: the page imports the SDK and onnxruntime-web, trains, uploads.
// Env: FEDMARK_BROWSER = JSON spec written by tests/web/test_browser_round.py.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { test } from 'node:test';

import { launch } from './chromium.mjs';

const spec = JSON.parse(readFileSync(process.env.FEDMARK_BROWSER, 'utf8'));

test('a browser completes a round against the real server', { timeout: 90_000 }, async () => {
  const browser = await launch();
  const { page, logs } = browser;
  try {
    await page.goto(`${spec.origin}/page/index.html`);
    await page.waitForFunction(() => window.fedmarkReady === true, null, { timeout: 30_000 });
    const result = await page.evaluate((s) => window.fedmarkRound(s), spec.page);
    mkdirSync(dirname(spec.screenshot), { recursive: true });
    await page.screenshot({ path: spec.screenshot, fullPage: true });
    result.user_agent = await page.evaluate(() => navigator.userAgent);
    assert.equal(result.status, 'accepted');
    writeFileSync(spec.out, JSON.stringify(result));
  } catch (exc) {
    console.log(logs.join('\n'));
    throw exc;
  } finally {
    await browser.close();
  }
});
