// The browser trainer page's flow: load onnxruntime-web and the SDK from this origin, then on
// "Train and contribute" run one SDK round (task → sync → train → upload) on the page's records.
//
// The page never embeds a credential: the visitor types the app key (or it
// arrives once in the ?app_key= query parameter, which is removed from the
// address bar at once).  Query parameters device_id, region, model and
// records prefill the form.  `document.body.dataset.state` (loading / ready /
// running / done / error) lets automation wait for the outcome.

import { makeRecords, summarize } from './records.js';
import * as view from './view.js';

const ORT_URL = '/train/ort/ort.wasm.min.mjs';
const SDK_URL = '/train/sdk/index.js';
const DEVICE_KEY = 'fedmark.trainer.deviceId';

const $ = (id) => document.getElementById(id);
let runtime = null; // {ort, sdk}
let records = [];

/** Why a module could not load, in the server's words (its JSON error says what to install). */
async function explainLoadFailure(exc) {
  for (const url of [ORT_URL, SDK_URL]) {
    try {
      const resp = await fetch(url, { cache: 'no-store' });
      if (!resp.ok) {
        const body = await resp.json().catch(() => null);
        return body?.error?.message ?? `${url} answered HTTP ${resp.status}`;
      }
    } catch {
      // fall through to the generic message
    }
  }
  return `could not load the trainer's modules: ${exc?.message ?? exc}`;
}

async function loadRuntime() {
  try {
    const ort = await import(ORT_URL);
    ort.env.wasm.wasmPaths = '/train/ort/';
    ort.env.wasm.numThreads = 1; // no cross-origin isolation: no SharedArrayBuffer threads
    const sdk = await import(SDK_URL);
    return { ort, sdk };
  } catch (exc) {
    throw new Error(await explainLoadFailure(exc));
  }
}

function randomDeviceId() {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

function prefill() {
  const q = new URLSearchParams(location.search);
  if (q.has('app_key')) {
    $('app-key').value = q.get('app_key');
    q.delete('app_key'); // keep the key out of the address bar, history and bookmarks
    const rest = q.toString();
    history.replaceState(null, '', `${location.pathname}${rest ? `?${rest}` : ''}`);
  }
  let device = q.get('device_id') || localStorage.getItem(DEVICE_KEY);
  if (!device) {
    device = randomDeviceId();
    localStorage.setItem(DEVICE_KEY, device);
  }
  $('device-id').value = device;
  for (const [param, id] of [['region', 'region'], ['model', 'model'], ['records', 'n-records']]) {
    if (q.get(param)) $(id).value = q.get(param);
  }
}

/** The device's state as the eligibility rules need it, from the browser's own APIs where they exist. */
async function readConditions() {
  let charging = true;
  let battery = 1.0; // no Battery API (Firefox, Safari): a desktop on mains power
  if (navigator.getBattery) {
    const b = await navigator.getBattery();
    charging = b.charging;
    battery = b.level;
  }
  const conn = navigator.connection;
  const unmetered = !(conn && (conn.saveData || conn.type === 'cellular'));
  return { charging, unmetered, idle: document.visibilityState === 'visible', battery };
}

function regenerate() {
  const n = Number($('n-records').value);
  if (!(Number.isInteger(n) && n >= 10 && n <= 5000)) return;
  records = makeRecords(n, $('device-id').value || 'anonymous');
  view.renderRecords(records, summarize(records));
}

function describe(exc) {
  const code = exc?.code ? ` [${exc.code}]` : '';
  return `${exc?.name ?? 'Error'}${code}: ${exc?.message ?? exc}`;
}

async function run(event) {
  event.preventDefault();
  const form = $('device-form');
  if (!form.reportValidity()) return;
  const { ort, sdk } = runtime;
  const conditions = await readConditions();
  view.renderConditions(conditions);
  view.resetProgress();
  view.setBusy(true);
  view.setState('running', 'asking the server for a training task…');
  regenerate();
  const deviceId = $('device-id').value.trim();
  localStorage.setItem(DEVICE_KEY, deviceId);
  const model = $('model').value.trim();
  let client = null;
  let step = 'task';
  try {
    client = new sdk.Client({ serverUrl: location.origin, appKey: $('app-key').value.trim(), deviceId,
      region: $('region').value.trim(), storage: new sdk.IndexedDBStorage('fedmark-trainer'), ort });
    const report = await client.train(model, records, {
      conditions,
      // asked again before every run: a visitor who changed their mind in the CMP is heard at the next run
      signals: async () => {
        const signals = await sdk.readPageSignals({ timeoutMs: 1500 });
        view.renderSignals(signals);
        return signals;
      },
      onProgress: (e) => {
        step = e.stage === 'done' ? step : e.stage;
        if (e.stage === 'task') view.setStep('task');
        if (e.stage === 'sync') {
          view.setStep('sync');
          view.setState('running', `syncing ${model} v${e.version} (files verified against the manifest's hashes)…`);
        }
        if (e.stage === 'train') {
          view.setStep('train');
          view.setEpoch(e.epoch, e.epochs, e.loss, e.examples);
          if (e.epoch > 0) view.addEpochRow(e);
          view.setState('running', `training on ${e.examples} consented records in this browser…`);
        }
        if (e.stage === 'upload') {
          view.setStep('upload');
          view.renderUpdate(e);
          view.setState('running', 'uploading the clipped update…');
        }
      },
    });
    view.renderUpdate({ norm: report.updateNorm, clipNorm: report.clipNorm, withinClip: report.withinClip,
      encoding: report.encoding, bytes: report.uploadBytes, examples: report.numExamples, loss: report.loss });
    const round = await client.roundStatus(report.roundId);
    view.renderAnswer(report, round);
    view.setStep('upload', { allDone: report.status !== 'queued' });
    const done = report.status === 'accepted' || report.status === 'duplicate';
    document.body.dataset.updateId = report.updateId ?? '';
    document.body.dataset.roundId = report.roundId;
    document.body.dataset.consent = JSON.stringify(report.consent);
    view.setState(done ? 'done' : 'error', done
      ? `Update ${report.status}: ${report.numExamples} records trained here, ${report.data.excludedNoConsent} left out `
        + 'for lack of consent; no record left this page.'
      : 'The update is queued in this browser (network trouble); it will be sent on the next run.');
  } catch (exc) {
    view.setStep(step, { failed: true });
    view.setState('error', describe(exc));
  } finally {
    await client?.close();
    view.setBusy(false);
  }
}

async function main() {
  prefill();
  regenerate();
  $('device-id').addEventListener('change', regenerate);
  $('n-records').addEventListener('change', regenerate);
  $('device-form').addEventListener('submit', (e) => { run(e); });
  view.renderConditions(await readConditions());
  view.resetProgress();
  try {
    runtime = await loadRuntime();
  } catch (exc) {
    view.setRuntime('onnxruntime-web unavailable', false);
    view.setState('error', exc.message);
    return;
  }
  view.setRuntime(`onnxruntime-web ${runtime.ort.env.versions?.web ?? ''} · WebAssembly · 1 thread`, true);
  $('start').disabled = false;
  view.setState('ready', 'Ready: enter the app key and press "Train and contribute".');
}

main();
