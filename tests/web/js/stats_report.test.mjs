// A Node device answers a statistics task of the real server (Client.reportStatistics): consent, quality
// rules, the local sums and counts, the upload under an Idempotency-Key; a retry replays.  pytest
// (tests/web/test_node_rules.py) compares the key and the released totals with the Python SDK's measurement.
// Env: FEDMARK_STATS_REPORT = JSON spec written by the pytest module; results go to spec.out.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { Client, FileStorage } from '../../../edge_sdk/web/src/node.js';

const require = createRequire(new URL('../../../edge_sdk/web/package.json', import.meta.url));
const ort = require('onnxruntime-node');
const spec = JSON.parse(readFileSync(process.env.FEDMARK_STATS_REPORT, 'utf8'));

test('reportStatistics sends the measured sums and counts once; a retry replays', async () => {
  const client = new Client({ serverUrl: spec.server, appKey: spec.app_key, deviceId: 'node-stats', region: 'eu',
    ort, storage: new FileStorage(join(spec.storage, 'node-stats')) });
  try {
    const first = await client.reportStatistics(spec.model, spec.records);
    assert.equal(first.accepted, true);
    const again = await client.reportStatistics(spec.model, spec.records);
    assert.deepEqual([again.report_id, again.idempotencyKey], [first.report_id, first.idempotencyKey]);
    writeFileSync(spec.out, JSON.stringify(first));
  } finally {
    await client.close();
  }
});
