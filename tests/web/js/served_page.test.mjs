// The trainer page the fedmark server serves (GET /train), used the way a visitor uses it:
// Debian's headless Chromium opens it, the app key is typed into the form (first device) or
// arrives once in ?app_key= (second device), "Train and contribute" is pressed, and the page's
// own display is read back: steps, epoch progress, update norm / clipping, the server's answer.
// Env: FEDMARK_SERVED_PAGE = JSON spec written by tests/web/test_served_page.py.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { test } from 'node:test';

import { launch } from './chromium.mjs';

const spec = JSON.parse(readFileSync(process.env.FEDMARK_SERVED_PAGE, 'utf8'));

/** Record every value the epoch bar and the steps take while a run is in flight. */
function watchProgress() {
  window.__seen = { epochs: [], steps: [] };
  const bar = document.getElementById('epoch-bar');
  new MutationObserver(() => window.__seen.epochs.push(document.getElementById('epoch-label').textContent))
    .observe(bar, { attributes: true, attributeFilter: ['aria-valuenow'] });
  new MutationObserver(() => {
    const active = [...document.querySelectorAll('#steps li.active')].map((li) => li.dataset.step);
    if (active.length && window.__seen.steps.at(-1) !== active[0]) window.__seen.steps.push(active[0]);
  }).observe(document.getElementById('steps'), { attributes: true, subtree: true, attributeFilter: ['class'] });
}

/** What the page shows once a run ended. */
function readPage(appKey) {
  const kv = (id) => {
    const out = {};
    const items = [...document.getElementById(id).children];
    for (let i = 0; i + 1 < items.length; i += 2) out[items[i].textContent] = items[i + 1].textContent;
    return out;
  };
  const stats = [...document.querySelectorAll('#record-stats .stat b')].map((b) => Number(b.textContent));
  return {
    state: document.body.dataset.state,
    message: document.getElementById('message').textContent,
    update_id: document.body.dataset.updateId,
    round_id: document.body.dataset.roundId,
    update: kv('update-kv'),
    answer: kv('answer-kv'),
    round_label: document.getElementById('round-label').textContent,
    steps: [...document.querySelectorAll('#steps li')].map((li) => li.className),
    epoch_rows: document.querySelectorAll('#epoch-table tr').length - 1,
    epoch_bar: document.getElementById('epoch-bar').getAttribute('aria-valuenow'),
    record_stats: { total: stats[0], consented: stats[1], excluded: stats[2], positives: stats[3] },
    seen: window.__seen,
    search: location.search,
    app_key_in_html: document.documentElement.outerHTML.includes(appKey),
    app_key_in_local_storage: JSON.stringify({ ...localStorage }).includes(appKey),
    runtime: document.getElementById('runtime').textContent,
  };
}

async function trainOnce(page) {
  await page.waitForSelector('body[data-state="ready"]', { timeout: 30_000 });
  await page.evaluate(watchProgress);
  await page.click('#start');
  await page.waitForSelector('body[data-state="done"], body[data-state="error"]', { timeout: 45_000 });
  const out = await page.evaluate(readPage, spec.appKey);
  assert.equal(out.state, 'done', `the page reported: ${out.message}`);
  return out;
}

test('a visitor trains on the page the fedmark server serves', { timeout: 100_000 }, async () => {
  const browser = await launch({ viewport: { width: 1280, height: 1000 } });
  const { page, logs } = browser;
  const runs = [];
  try {
    const [first, second] = spec.devices;
    const q = (device) => `device_id=${device}&region=eu&model=${spec.model}&records=${spec.records}`;
    // Device 1: the visitor types the app key into the form.
    await page.goto(`${spec.origin}/train?${q(first)}`);
    await page.waitForSelector('body[data-state="ready"]', { timeout: 30_000 });
    await page.fill('#app-key', spec.appKey);
    runs.push(await trainOnce(page));
    // Device 2: the app key arrives once in the URL and must vanish from the address bar.
    await page.goto(`${spec.origin}/train?app_key=${encodeURIComponent(spec.appKey)}&${q(second)}`);
    runs.push(await trainOnce(page));
    mkdirSync(dirname(spec.screenshot), { recursive: true });
    await page.screenshot({ path: spec.screenshot, fullPage: true });
    const userAgent = await page.evaluate(() => navigator.userAgent);
    const errors = browser.errors(); // before the deliberate failure below
    // A wrong app key: the page must stop at the first step and say why, in the server's words.
    await page.goto(`${spec.origin}/train?${q('web-visitor-3')}`);
    await page.waitForSelector('body[data-state="ready"]', { timeout: 30_000 });
    await page.fill('#app-key', 'ak_not_issued_by_this_server');
    await page.click('#start');
    await page.waitForSelector('body[data-state="done"], body[data-state="error"]', { timeout: 45_000 });
    const refused = await page.evaluate(readPage, spec.appKey);
    writeFileSync(spec.out, JSON.stringify({ runs, refused, user_agent: userAgent, errors, logs }));
  } catch (exc) {
    console.log(logs.join('\n'));
    throw exc;
  } finally {
    await browser.close();
  }
});
