// Test page: imports the SDK and onnxruntime-web as ES modules, exposes window.fedmarkRound(spec).
import * as ort from '/ort/ort.wasm.min.mjs';
import { Client, IndexedDBStorage } from '/sdk/index.js';

ort.env.wasm.wasmPaths = '/ort/';
ort.env.wasm.numThreads = 1; // no cross-origin isolation here, so no SharedArrayBuffer threads

const status = document.getElementById('status');
const table = document.getElementById('report');

function show(rows) {
  table.innerHTML = '';
  for (const [k, v] of rows) {
    const tr = table.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = v;
  }
}

function hex(a) {
  return Array.from(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), (b) => b.toString(16).padStart(2, '0')).join('');
}

window.fedmarkRound = async (spec) => {
  status.textContent = 'training…';
  const storage = new IndexedDBStorage(`fedmark-test-${spec.deviceId}`);
  const client = new Client({ serverUrl: location.origin, appKey: spec.appKey, deviceId: spec.deviceId, region: 'eu',
    storage, ort });
  try {
    const t0 = performance.now();
    const report = await client.train(spec.model, spec.records, { conditions: spec.conditions, order: spec.orders });
    const ms = performance.now() - t0;
    const again = await client.sync(spec.model, report.version);
    const stored = await storage.keys('models/');
    show([['status', report.status], ['round', report.roundId], ['model', `${report.model} v${report.version}`],
      ['examples used', report.numExamples], ['excluded (no consent)', report.data.excludedNoConsent],
      ['loss', report.loss.toFixed(5)], ['update norm', report.updateNorm.toFixed(5)],
      ['within clip', String(report.withinClip)], ['clip norm', report.clipNorm], ['upload bytes', report.uploadBytes],
      ['round trip (ms)', ms.toFixed(0)], ['onnxruntime-web', ort.env.versions?.web ?? '?']]);
    status.textContent = 'round complete';
    status.className = 'ok';
    return { status: report.status, round_id: report.roundId, update_id: report.updateId, delta: hex(report.update.vector),
      norm: report.updateNorm, within: report.withinClip, clip_norm: report.clipNorm, epochs: report.epochs,
      lr: report.learningRate, num_examples: report.numExamples, excluded: report.data.excludedNoConsent,
      pending: await client.pending(), resync_not_modified: again.manifestNotModified, resync_downloaded: again.downloaded,
      stored_keys: stored.length, ms, ort_version: ort.env.versions?.web ?? null };
  } catch (exc) {
    status.textContent = `${exc.name}: ${exc.message}`;
    status.className = 'err';
    throw exc;
  } finally {
    await client.close();
  }
};
status.textContent = 'ready';
window.fedmarkReady = true;
