// Drive Debian's headless Chromium (playwright-core, no downloaded browser) through one
// training round: the page imports the SDK and onnxruntime-web, trains, uploads.
// Env: FEDMARK_BROWSER = JSON spec written by tests/web/test_browser_round.py.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';

const require = createRequire(new URL('../../../edge_sdk/web/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const spec = JSON.parse(readFileSync(process.env.FEDMARK_BROWSER, 'utf8'));

test('a browser completes a round against the real server', { timeout: 90_000 }, async () => {
  const profile = mkdtempSync(join(tmpdir(), 'fedmark-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const logs = [];
  try {
    const page = context.pages()[0] ?? await context.newPage();
    page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
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
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
