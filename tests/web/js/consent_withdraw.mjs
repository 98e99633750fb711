// One step of the JavaScript withdrawal test (tests/web/test_node_withdrawal.py), run as its own Node process:
//   node consent_withdraw.mjs SPEC train|withdraw|flush
// train: two training runs whose uploads the network drops (both stay queued); withdraw: the customer withdraws,
// then the process SIGKILLs itself; flush: a fresh process sends what is left.  Results go to spec.out_<step>.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';

import { Client, FileStorage, RetryPolicy } from '../../../edge_sdk/web/src/node.js';

const require = createRequire(new URL('../../../edge_sdk/web/package.json', import.meta.url));
const ort = require('onnxruntime-node');
const [specPath, step] = process.argv.slice(2);
const spec = JSON.parse(readFileSync(specPath, 'utf8'));
const client = new Client({ serverUrl: spec.server, appKey: spec.app_key, deviceId: spec.device_id, region: 'eu', ort,
  storage: new FileStorage(spec.storage), subjectField: 'customer', retry: new RetryPolicy({ maxRetries: 0 }) });
const ok = { charging: true, unmetered: true, idle: true, battery: 1 };
let out;
if (step === 'train') {
  const first = await client.train(spec.model, spec.with_subject, { conditions: ok, seed: 1 });
  const second = await client.train(spec.model, spec.without_subject, { conditions: ok, seed: 2 });
  out = { first: first.idempotencyKey, second: second.idempotencyKey, statuses: [first.status, second.status],
    round_id: second.roundId, pending: await client.pending() };
} else if (step === 'withdraw') {
  const report = await client.withdraw(spec.subject);
  writeFileSync(spec.out_withdraw, JSON.stringify(report));
  process.kill(process.pid, 'SIGKILL');
} else if (step === 'flush') {
  const f = await client.flush();
  const again = await client.train(spec.model, spec.with_subject, { conditions: ok, seed: 3 });
  out = { sent: f.outcomes.map((o) => o.key), pending: f.pending, again: again.consent, again_examples: again.numExamples };
}
await client.close();
writeFileSync(spec[`out_${step}`], JSON.stringify(out));
