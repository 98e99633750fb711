// Open the fedmark dashboard in Debian's headless Chromium (playwright-core, no downloaded browser),
// wait until it has drawn its charts, collect what the page rendered and any JS error, save a screenshot.
// Usage: FEDMARK_DASHBOARD=spec.json node dashboard_browser.mjs   (spec written by test_dashboard_browser.py)
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const require = createRequire(new URL('../../../../edge_sdk/web/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const spec = JSON.parse(readFileSync(process.env.FEDMARK_DASHBOARD, 'utf8'));

const profile = mkdtempSync(join(tmpdir(), 'fedmark-dashboard-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const logs = [];
let exitCode = 0;
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') logs.push(`[${m.type()}] ${m.text()}`); });
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  await page.goto(spec.url);
  await page.waitForFunction(() => window.dashboardReady === true, null, { timeout: 30_000 });
  const result = await page.evaluate(() => {
    const count = (sel) => document.querySelectorAll(sel).length;
    const values = (sel) => [...document.querySelectorAll(sel)].map((n) => Number(n.getAttribute('data-value')));
    const kpis = {};
    for (const card of document.querySelectorAll('.kpi')) kpis[card.id] = card.querySelector('.value').textContent;
    return {
      errors: window.dashboardErrors,
      status: document.getElementById('status').textContent,
      subtitle: document.getElementById('subtitle').textContent,
      epsilon_points: values('#chart-epsilon svg circle.point'),
      epsilon_paths: count('#chart-epsilon svg path.series'),
      round_bars: values('#chart-rounds svg rect.bar'),
      region_bars: values('#chart-regions svg rect.bar'),
      partner_bars: values('#chart-partners svg rect.bar'),
      version_rows: count('#versions tbody tr'),
      round_rows: count('#rounds tbody tr'),
      kpis,
      user_agent: navigator.userAgent,
      href: location.href,
      history_length: history.length,
    };
  });
  result.page_url = page.url();
  mkdirSync(dirname(spec.screenshot), { recursive: true });
  await page.screenshot({ path: spec.screenshot, fullPage: true });
  result.console = logs;
  writeFileSync(spec.out, JSON.stringify(result));
} catch (exc) {
  console.error(logs.join('\n'));
  console.error(exc);
  exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(exitCode);
