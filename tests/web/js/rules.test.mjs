// The JavaScript quality rules (edge_sdk/web/src/statistics.js, quality.js, data.js prepareTabular) against
// vectors written by fedmark.contract.statistics and edge_sdk.data (tests/web/make_vectors.py, "rules").
// Run: FEDMARK_VECTORS=vec.json node --test tests/web/js/rules.test.mjs (tests/web/test_node_rules.py does both).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { prepareTabular } from '../../../edge_sdk/web/src/data.js';
import { SchemaError, ServerError } from '../../../edge_sdk/web/src/errors.js';
import { Manifest } from '../../../edge_sdk/web/src/manifest.js';
import { idempotencyKey, measure, statisticsBodyBytes } from '../../../edge_sdk/web/src/device_statistics.js';
import {
  StatisticsError, StatisticsPlan, checkRecords, fsum, localStatistics, ruleNames,
} from '../../../edge_sdk/web/src/statistics.js';

const path = process.env.FEDMARK_VECTORS;
if (!path) throw new Error('set FEDMARK_VECTORS to the JSON file written by tests/web/make_vectors.py');
const V = JSON.parse(readFileSync(path, 'utf8')).rules;
const unNaN = (v) => {
  if (v === '__NaN__') return NaN;
  if (Array.isArray(v)) return v.map(unNaN);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unNaN(x)]));
  return v;
};
const hex = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

test('records x rules: the same records pass, the same counts per rule, the same rules broken', () => {
  assert.ok(V.plans.length >= 4);
  for (const p of V.plans) {
    const plan = StatisticsPlan.fromDeclaration(p.declaration, { measuring: p.measuring });
    assert.deepEqual(ruleNames(plan), p.rules, `${p.name}: rule names`);
    const v = checkRecords(unNaN(p.records), plan);
    assert.deepEqual(v.passed, p.passed, `${p.name}: which records pass`);
    assert.deepEqual(Object.entries(v.violations), Object.entries(p.violations), `${p.name}: violations per rule`);
    assert.deepEqual(v.broken, p.broken, `${p.name}: rules broken per record`);
    assert.equal(v.failed, p.failed);
  }
  assert.ok(V.plans.some((p) => p.passed.includes(true) && p.passed.includes(false)), 'both outcomes exercised');
});

test('unreadable declarations are refused with the same messages and codes', () => {
  assert.ok(V.refused.length >= 15);
  for (const r of V.refused) {
    assert.throws(() => StatisticsPlan.fromDeclaration(r.declaration, { measuring: r.measuring }),
      (exc) => exc instanceof StatisticsError && exc.message === r.message && exc.code === r.code,
      `${r.name}: expected ${r.message}`);
  }
});

test('prepareTabular: failing records never train; report counts and row errors as the Python SDK', () => {
  for (const p of V.prepare) {
    const manifest = Manifest.fromJSON(p.manifest);
    const records = unNaN(p.records);
    if (p.message) {
      assert.throws(() => prepareTabular(records, manifest, { withLabel: true }),
        (exc) => exc instanceof ServerError && exc.message === p.message && exc.code === 'bad_answer', p.name);
      continue;
    }
    const out = prepareTabular(records, manifest, { withLabel: true });
    assert.deepEqual(out.kept, p.kept, `${p.name}: rows kept`);
    assert.equal(hex(out.y), p.y, `${p.name}: labels`);
    assert.equal(out.report.rejected, p.rejected, `${p.name}: rejected`);
    assert.equal(out.report.used, p.used);
    assert.equal(out.report.excludedNoConsent, p.excluded_no_consent);
    assert.deepEqual(Object.entries(out.report.ruleViolations), Object.entries(p.rule_violations),
      `${p.name}: rule violations`);
    assert.deepEqual(out.report.rowErrors.map((e) => [e.row, e.column, e.reason]), p.row_errors, `${p.name}: row errors`);
  }
  const ruled = V.prepare.find((p) => p.name === 'rules');
  const plain = V.prepare.find((p) => p.name === 'no_rules');
  assert.ok(ruled.kept.length < plain.kept.length, 'the rules exclude records the schema alone would train on');
  // strict: a broken rule is an error, as in the Python SDK (SchemaError with every row error)
  assert.throws(() => prepareTabular(unNaN(ruled.records), Manifest.fromJSON(ruled.manifest), { strict: true }),
    (exc) => exc instanceof SchemaError && exc.errors.length === ruled.row_errors.length
      && exc.errors.some((e) => e.reason === 'breaks quality rule age:range'));
});

test('local statistics bodies are byte-identical to the Python SDK, and so are their Idempotency-Keys', async () => {
  const dec = new TextDecoder();
  assert.ok(V.statistics.length >= 5);
  for (const s of V.statistics) {
    const records = unNaN(s.records);
    if (s.task) {
      const m = measure(records, s.task, { consentField: 'consent' });
      const body = statisticsBodyBytes(m.body);
      assert.equal(dec.decode(body), s.body, `${s.name}: measured body`);
      assert.equal(await idempotencyKey(s.task.task_id, body), s.key, `${s.name}: key`);
      assert.deepEqual([m.used, m.excludedNoConsent, m.failedRules], [s.used, s.excluded_no_consent, s.failed_rules]);
    } else {
      const plan = StatisticsPlan.fromDeclaration(s.declaration);
      assert.equal(dec.decode(statisticsBodyBytes(localStatistics(records, plan))), s.body, `${s.name}: body`);
    }
  }
});

test('fsum is correctly rounded where a naive sum is not', () => {
  assert.equal(fsum([0.1, 0.2, 0.3]), 0.6);
  assert.equal(fsum([1e100, 1.0, -1e100, 1e-100, 1e50, -1.0, -1e50]), 1e-100);
  assert.equal(fsum([2 ** 53, 1, 1]), 2 ** 53 + 2);
  assert.equal(fsum([]), 0);
});
