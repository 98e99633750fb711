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

// ---------------------------------------------------------------------------- consent signals in the browser
// window.fedmarkConsent(spec): the documented decisions (from TC strings decoded by the IAB library served from
// /tcf/, and from the TCData a CMP hands the page), the decisions over spec.records, and a training run on them.
window.fedmarkConsent = async (spec) => {
  const sdk = await import('/sdk/index.js');
  const { TCString } = await import('/tcf/index.js');
  sdk.registerTCStringDecoder((s) => sdk.tcfFromTCModel(TCString.decode(s)));
  const V = spec.vectors;
  const tcData = Object.fromEntries(Object.values(V.strings).map((s) => [s.tc_string, s.tcdata]));
  const cases = V.cases.map((c) => {
    const r = V.requirements[c.requirement];
    const req = sdk.parseConsentRequirement(r.consent_signals, r.purposes);
    const viaString = sdk.decideConsent(c.signals, req);
    const td = tcData[c.signals.tc_string];
    const viaCmp = td ? sdk.decideConsent({ ...c.signals, tc_string: sdk.tcfFromTCData(td) }, req) : viaString;
    return { string: viaString.reason, cmp: viaCmp.reason };
  });
  const storage = new IndexedDBStorage(`fedmark-consent-${spec.deviceId}`);
  const client = new Client({ serverUrl: location.origin, appKey: spec.appKey, deviceId: spec.deviceId, region: 'eu',
    storage, ort, subjectField: 'customer' });
  try {
    const report = await client.train(spec.model, spec.records, { conditions: spec.conditions, order: spec.orders });
    status.textContent = `consent round: ${report.status}`;
    return { cases, consent: report.consent, consent_reported: report.consentReported, status: report.status,
      round_id: report.roundId, num_examples: report.numExamples, delta: hex(report.update.vector) };
  } finally {
    await client.close();
  }
};

// ---------------------------------------------------------------------------- JS SDK parity (validate, segments, recommender)
window.fedmarkParity = async (spec) => {
  const { propensitySteps, recommenderSteps } = await import('/js/sdk_parity_steps.mjs');
  const client = new Client({ serverUrl: location.origin, appKey: spec.app_key, deviceId: 'parity-browser', region: 'eu',
    storage: new IndexedDBStorage('fedmark-parity-browser'), ort });
  try {
    return { ...(await propensitySteps(client, spec)), recommender: await recommenderSteps(client, spec) };
  } finally {
    await client.close();
  }
};
