// Open a page in Debian's headless Chromium (playwright-core) at each width, report what overflows the
// viewport (outside boxes that scroll on purpose) and save a full-page screenshot per width.
// Usage: FEDMARK_PAGE=spec.json node page_widths.mjs   spec: {url, widths: [..], scroll: "css selector", out, screenshot}
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(new URL('../../../edge_sdk/web/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const spec = JSON.parse(readFileSync(process.env.FEDMARK_PAGE, 'utf8'));
const profile = mkdtempSync(join(tmpdir(), 'fedmark-page-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium', headless: true, viewport: { width: spec.widths[0], height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--allow-file-access-from-files'],
});
let code = 0;
try {
  const page = context.pages()[0] ?? await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const views = {};
  for (const width of spec.widths) {
    await page.setViewportSize({ width, height: 900 });
    await page.goto(spec.url);
    await page.waitForLoadState('load');
    views[width] = await page.evaluate((scroll) => ({
      inner_width: window.innerWidth,
      scroll_width: document.documentElement.scrollWidth,
      images: [...document.images].map((i) => ({ src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0,
        right: i.getBoundingClientRect().right })),
      overflowing: [...document.querySelectorAll('body *')]
        .filter((n) => !n.closest(scroll) && n.getBoundingClientRect().right > window.innerWidth + 1)
        .map((n) => `${n.tagName.toLowerCase()}${n.className ? `.${n.className}` : ''}`),
      first_heading: document.querySelector('h2') ? document.querySelector('h2').textContent : null,
    }), spec.scroll);
    views[width].screenshot = spec.screenshot.replace(/\.png$/, `-${width}.png`);
    await page.screenshot({ path: views[width].screenshot, fullPage: true });
  }
  writeFileSync(spec.out, JSON.stringify({ views, errors }));
} catch (exc) {
  console.error(exc);
  code = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
