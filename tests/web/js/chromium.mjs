// Shared by the browser tests and bench/browser_vs_python.py: Debian's headless Chromium driven by
// playwright-core (no downloaded browser), a fresh profile per launch, console and page errors collected.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(new URL('../../../edge_sdk/web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

export const CHROMIUM = process.env.FEDMARK_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = Object.freeze(['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']);

/**
 * Launch Chromium with a fresh --user-data-dir; resolves to {context, page, logs, close}.
 * `logs` collects every console message and uncaught page error as `[type] text`;
 * `errors()` returns just the errors (console errors, page errors, failed requests).
 */
export async function launch({ viewport = { width: 1280, height: 900 } } = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'fedmark-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS], viewport,
    });
  } catch (exc) {
    rmSync(profile, { recursive: true, force: true });
    throw new Error(`could not start ${CHROMIUM} (run scripts/install_browser_deps.sh): ${exc.message}`);
  }
  const logs = [];
  const failures = [];
  const page = context.pages()[0] ?? await context.newPage();
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  page.on('requestfailed', (r) => failures.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  page.on('response', (r) => { if (r.status() >= 400) failures.push(`${r.request().method()} ${r.url()}: HTTP ${r.status()}`); });
  return {
    context,
    page,
    logs,
    errors: () => [...logs.filter((l) => l.startsWith('[error]') || l.startsWith('[pageerror]')), ...failures],
    async close() {
      try {
        await context.close();
      } finally {
        rmSync(profile, { recursive: true, force: true });
      }
    },
  };
}

/** Launch, run `fn(browser)`, print the page's console on failure, always close: what every browser test does. */
export async function withBrowser(fn, options) {
  const browser = await launch(options);
  try {
    return await fn(browser);
  } catch (exc) {
    console.log(browser.logs.join('\n'));
    throw exc;
  } finally {
    await browser.close();
  }
}
