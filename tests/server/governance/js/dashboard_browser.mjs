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
  viewport: { width: 1400, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const logs = [];
let exitCode = 0;
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') logs.push(`[${m.type()}] ${m.text()}`); });
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  const result = { views: {} };
  let first = true;
  for (const width of spec.widths) {  // each width: the same page, reloaded at that viewport
    await page.setViewportSize({ width, height: 900 });
    if (first) await page.goto(spec.url); else await page.reload();
    first = false;
    await page.waitForFunction(() => window.dashboardReady === true, null, { timeout: 30_000 });
    const view = await page.evaluate(() => {
      const count = (sel) => document.querySelectorAll(sel).length;
      const data = (id) => {
        const c = window.dashboardCharts[id];
        return c ? c.data.datasets.flatMap((d) => d.data).filter((v) => v !== null && v !== undefined) : [];
      };
      const kpis = {};
      for (const card of document.querySelectorAll('.kpi')) kpis[card.id] = card.querySelector('.value').textContent;
      // Anything wider than the viewport, except inside the scrolling table boxes (they scroll on purpose).
      const overflowing = [...document.querySelectorAll('body *')]
        .filter((n) => !n.closest('.scroll') && n.getBoundingClientRect().right > window.innerWidth + 1)
        .map((n) => `${n.tagName.toLowerCase()}${n.id ? `#${n.id}` : ''}${n.className && typeof n.className === 'string' ? `.${n.className}` : ''}`);
      const ticks = (id) => { const c = window.dashboardCharts[id]; return c ? c.scales.x.ticks.map((t) => t.label) : []; };
      return {
        errors: window.dashboardErrors,
        status: document.getElementById('status').textContent,
        subtitle: document.getElementById('subtitle').textContent,
        chart_library: typeof window.Chart === 'function' ? window.Chart.version : null,
        canvases: count('.chart canvas:not([hidden])'),
        epsilon_points: data('chart-epsilon'),
        epsilon_series: window.dashboardCharts['chart-epsilon'] ? window.dashboardCharts['chart-epsilon'].data.datasets.length : 0,
        round_bars: data('chart-rounds'),
        round_ticks: ticks('chart-rounds'),
        region_bars: data('chart-regions'),
        region_axis_min: window.dashboardCharts['chart-regions'] ? window.dashboardCharts['chart-regions'].scales.y.min : null,
        partner_bars: data('chart-partners'),
        version_rows: count('#versions tbody tr'),
        round_rows: count('#rounds tbody tr'),
        federation_shown: !document.getElementById('federation-regions').hidden,
        federation_rows: [...document.querySelectorAll('#federation tbody tr')].map((r) => r.textContent),
        federation_log: [...document.querySelectorAll('#federation-log tbody tr')].map((r) => r.textContent),
        readiness_rows: [...document.querySelectorAll('#readiness tbody tr')].map((r) => r.cells[2].textContent),
        readiness_summary: [...document.querySelectorAll('#readiness-summary li')].map((li) => li.textContent),
        kpis,
        scroll_width: document.documentElement.scrollWidth,
        inner_width: window.innerWidth,
        overflowing,
        user_agent: navigator.userAgent,
        href: location.href,
      };
    });
    view.page_url = page.url();
    const shot = spec.screenshot.replace(/\.png$/, `-${width}.png`);
    mkdirSync(dirname(shot), { recursive: true });
    await page.screenshot({ path: shot, fullPage: true });
    view.screenshot = shot;
    result.views[width] = view;
  }
  for (const v of Object.values(result.views)) v.console = logs;
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
