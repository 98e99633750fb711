// The one object an app embeds: Client (the JavaScript twin of edge_sdk/client.py).
//
// An app configures the SDK once (server, credentials, device id, region,
// storage, onnxruntime module) and calls a few verbs — train, flush, score —
// without knowing about tasks, manifests, clipping or queues.  The order is
// the one the privacy design requires:
//
//   task → eligibility → model sync (verified) → consent → schema → local
//   training → delta → clip (+ within-clip bit) → local noise → encode →
//   durable outbox → upload with an idempotency key
//
// Nothing leaves the device except the encoded update and its headers (round,
// version, example count, within-clip bit).

import {
  ERR_NO_VERSION, EXPIRED_CODES, OUTCOME_ACCEPTED, OUTCOME_DUPLICATE, OUTCOME_EXPIRED, OUTCOME_PENDING,
  OUTCOME_REJECTED, uploadOutcome,
} from './codes.js';
import { ContractError } from './contract_errors.js';
import { paramsFile } from './manifest.js';
import { requiredPurposes, uploadHeaders } from './protocol.js';
import { parseRequirement } from './consent_signals.js';
import { DEFAULT_SEGMENT_CUTS, segmentCounts } from './reports.js';
import { CONSENT_FIELD } from './consent.js';
import { loadRecords } from './data.js';
import { idempotencyKey as statisticsKey, measure, statisticsBodyBytes } from './device_statistics.js';
import { PersonalStore } from './personal.js';
import { ensureEligible } from './eligibility.js';
import {
  AuthenticationError, ConfigurationError, ConsentError, EdgeError, ModelError, RejectedUpdateError, ServerError,
  TransportError,
} from './errors.js';
import { Outbox } from './outbox.js';
import { DEVICE_SUBJECT, WithdrawalLog, decideRecords, nothingAllowed } from './withdrawal.js';
import { buildUpdate } from './prepare.js';
import { secureRandom } from './random.js';
import { getJSON, putJSON } from './storage.js';
import { ModelCache } from './sync.js';
import { parseTask } from './task.js';
import { Trainer } from './trainer.js';
import { verbRefusal } from './families/index.js';
import { RetryPolicy, Transport } from './transport.js';

/** Server answers that mean a queued update can never be accepted: drop it (the contract's codes.js). */
export { EXPIRED_CODES };
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/** Enrolment refusals that need a person, with what to tell them (the server's codes). */
const ENROL_REFUSALS = {
  device_proof_required: 'this device id is enrolled with another secret: the storage was lost or the id is '
    + "someone else's; an admin reset (POST /v1/admin/devices/<id>/reset) re-opens it",
  region_mismatch: "the app key is issued for another region: ship the key of this device's region",
  device_conflict: 'the device id is enrolled under another app key',
  region_change: "the device id is enrolled in another region",
};

function base64url(bytes) {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

function newKey() {
  return globalThis.crypto.randomUUID().replaceAll('-', '');
}

/** Run `fn`, converting onnxruntime/contract failures into ModelError (EdgeErrors pass through). */
async function converted(what, fn) {
  try {
    return await fn();
  } catch (exc) {
    if (exc instanceof EdgeError) throw exc;
    if (exc instanceof ContractError) throw new ModelError(`${what} failed: ${exc.message}`, { cause: exc });
    throw new ModelError(`${what} failed in onnxruntime: ${exc?.message ?? exc}`, { cause: exc });
  }
}

export class Client {
  /**
   * @param {object} o
   * @param {string} o.serverUrl  https URL (plain http only to loopback unless allowInsecureHttp)
   * @param {string} o.deviceId
   * @param {string} o.region
   * @param {object} o.storage  see storage.js (IndexedDBStorage, FileStorage, MemoryStorage)
   * @param {object} o.ort  the onnxruntime-web or onnxruntime-node module
   * @param {string} [o.appKey]  enrols the device on first use; or pass `deviceToken`
   */
  constructor({ serverUrl, deviceId, region, storage, ort, appKey = null, deviceToken = null, timeout = 10.0,
    downloadTimeout = 60.0, retry = null, allowInsecureHttp = false, threads = 1, consentField = CONSENT_FIELD,
    subjectField = null, fetch = globalThis.fetch, sleep = undefined, random = secureRandom, log = null } = {}) {
    let url;
    try {
      url = new URL(serverUrl);
    } catch {
      throw new ConfigurationError(`serverUrl '${serverUrl}' is not an http(s) URL; pass e.g. 'https://fl.example.com'`);
    }
    if (!['http:', 'https:'].includes(url.protocol)) {
      throw new ConfigurationError(`serverUrl '${serverUrl}' is not an http(s) URL; pass e.g. 'https://fl.example.com'`);
    }
    if (url.protocol === 'http:' && !LOOPBACK.has(url.hostname) && !allowInsecureHttp) {
      throw new ConfigurationError(`serverUrl '${serverUrl}' uses plain http to a non-loopback host, which would expose `
        + 'the device token; use https, or set allowInsecureHttp for a trusted test network');
    }
    if (!appKey && !deviceToken) throw new ConfigurationError('credentials missing: pass appKey (to enrol this device) or deviceToken');
    for (const [name, value] of [['deviceId', deviceId], ['region', region]]) {
      if (typeof value !== 'string' || !ID_RE.test(value)) {
        throw new ConfigurationError(`${name} '${value}' is invalid: use 1-128 characters from letters, digits and . _ : @ -`);
      }
    }
    if (!(timeout > 0 && downloadTimeout > 0)) throw new ConfigurationError('timeout and downloadTimeout must be > 0 seconds (timeouts are always on)');
    if (!storage?.get || !storage?.put || !storage?.keys) throw new ConfigurationError('pass storage: an IndexedDBStorage, FileStorage or MemoryStorage');
    if (!ort?.InferenceSession) throw new ConfigurationError('pass ort: the onnxruntime-web (browser) or onnxruntime-node module');
    if (!consentField) throw new ConfigurationError('consentField must name the record field that lists consented purposes');
    this.serverUrl = serverUrl.replace(/\/+$/, '');
    if (subjectField !== null && (typeof subjectField !== 'string' || !subjectField)) {
      throw new ConfigurationError('subjectField must name the record field that identifies the customer, or be null (one person per device)');
    }
    Object.assign(this, { deviceId, region, storage, ort, appKey, timeout, downloadTimeout, threads, consentField, subjectField });
    this._explicitToken = deviceToken;
    this._token = deviceToken;
    this._secret = null;
    this._secretRegistered = false;
    this._random = random;
    this._log = log;
    this.transport = new Transport(this.serverUrl, {
      timeout, retry: retry instanceof RetryPolicy ? retry : new RetryPolicy(retry ?? {}), fetch, random: Math.random,
      ...(sleep ? { sleep } : {}), log,
    });
    this.models = new ModelCache(storage);
    this.outbox = new Outbox(storage, { log });
    this.withdrawals = new WithdrawalLog(storage);
    this.personal = new PersonalStore(storage);
    this._trainer = null;
  }

  // ------------------------------------------------------------------ credentials
  async _storedToken() {
    const d = await getJSON(this.storage, 'device.json');
    if (d && d.server === this.serverUrl && d.device_id === this.deviceId && d.region === this.region
        && typeof d.device_token === 'string') return d.device_token;
    return null; // stored for another server/device: enrol afresh
  }

  /**
   * This device's own enrolment secret: 32 random bytes (crypto.getRandomValues, base64url), made once and
   * kept in storage ('device_secret.json', never deleted with a refused token).  The app key ships in every
   * app, so it proves nothing about the device: the server hands a known device id a new token only against
   * this secret (or the current token).  A device that lost its storage needs an admin reset.
   */
  async deviceSecret() {
    if (!this._secret) {
      const d = await getJSON(this.storage, 'device_secret.json');
      if (d && d.server === this.serverUrl && d.device_id === this.deviceId && typeof d.device_secret === 'string'
          && d.device_secret.length >= 43) {
        this._secret = d.device_secret;
        this._secretRegistered = d.registered === true;
      } else {
        this._secret = base64url(globalThis.crypto.getRandomValues(new Uint8Array(32)));
        this._secretRegistered = false;
        await this._storeSecret(); // kept before it is ever sent: a crash cannot lose it
      }
    }
    return this._secret;
  }

  async _storeSecret() {
    await putJSON(this.storage, 'device_secret.json', { server: this.serverUrl, device_id: this.deviceId,
      device_secret: this._secret, registered: this._secretRegistered });
  }

  /**
   * Exchange the app key and this device's secret for a device token (POST /v1/devices/enroll) and store it.
   * `proof`: a current token sent as Authorization (how a device from before secrets registers one).
   */
  async enroll(proof = null) {
    if (!this.appKey) {
      throw new ConfigurationError('the device token was refused and no appKey is configured to enrol again; pass a valid deviceToken or an appKey');
    }
    let resp;
    try {
      resp = await this.transport.request('POST', '/v1/devices/enroll', {
        json: { app_key: this.appKey, device_id: this.deviceId, region: this.region, device_secret: await this.deviceSecret() },
        ...(proof ? { headers: { Authorization: `Bearer ${proof}` } } : {}),
      });
    } catch (exc) {
      if (exc instanceof ServerError && ([400, 401, 403].includes(exc.status) || ENROL_REFUSALS[exc.code])) {
        const hint = ENROL_REFUSALS[exc.code] ?? 'check the app key, device id and region';
        throw new AuthenticationError(exc.status, exc.code, `enrolment refused: ${exc.serverMessage} (${hint})`);
      }
      throw exc;
    }
    const data = resp.json();
    if (typeof data?.device_token !== 'string' || !data.device_token) {
      throw new ServerError(resp.status, 'bad_answer', 'enrolment answer has no device_token');
    }
    this._token = data.device_token;
    this.partner = data.partner ?? null;
    await putJSON(this.storage, 'device.json', { server: this.serverUrl, device_id: this.deviceId, region: this.region,
      device_token: this._token });
    if (!this._secretRegistered) {
      this._secretRegistered = true;
      await this._storeSecret();
    }
    return this._token;
  }

  async _headers() {
    if (!this._token) this._token = await this._storedToken();
    if (!this._token) {
      await this.enroll();
    } else if (this.appKey && !this._explicitToken && (await this.deviceSecret()) && !this._secretRegistered) {
      try { // a stored token from before device secrets: enrol once with it as proof, so the server learns the secret
        await this.enroll(this._token);
      } catch (exc) {
        if (!(exc instanceof ServerError)) throw exc;
        this._log?.(`could not register this device's secret (${exc.code}); continuing with the stored token`);
        this._secretRegistered = true; // not again in this session
      }
    }
    return { Authorization: `Bearer ${this._token}` };
  }

  /** Run `call(authHeaders)`; on a refused token (401) enrol again once, if an app key is set, and retry. */
  async _authed(call) {
    try {
      return await call(await this._headers());
    } catch (exc) {
      if (!(exc instanceof AuthenticationError) || exc.status !== 401 || !this.appKey) throw exc;
      this._log?.(`device token refused (${exc.code}); enrolling again`);
      this._token = null;
      await this.storage.delete('device.json');
      return call(await this._headers());
    }
  }

  /** One authenticated request (`opts` as Transport.request); every server call but sync goes through it. */
  async _request(method, path, opts = {}) {
    return this._authed((h) => this.transport.request(method, path, { ...opts, headers: { ...(opts.headers ?? {}), ...h } }));
  }

  // ------------------------------------------------------------------ server calls
  /** Ask for a training task for `model`; throws NoTaskError when no round is open. */
  async getTask(model) {
    const resp = await this._request('POST', '/v1/tasks', { json: { model } });
    return parseTask(resp.json());
  }

  /** The version the server currently publishes for `model`. */
  async currentVersion(model) {
    const resp = await this._request('GET', `/v1/models/${encodeURIComponent(model)}`);
    const v = resp.json()?.current_version;
    if (v === null || v === undefined) throw new ServerError(resp.status, ERR_NO_VERSION, `model '${model}' has no published version yet`);
    return Number(v);
  }

  /** Make `model` (default: the server's current version) present and verified on this device. */
  async sync(model, version = null, { manifestUrl = null } = {}) {
    const v = version ?? await this.currentVersion(model);
    return this._authed((h) => this.models.sync(this.transport, h, model, v, { manifestUrl, timeout: this.downloadTimeout }));
  }

  async _trainerFor(synced) {
    const key = `${synced.manifest.model}@${synced.manifest.version}:${synced.manifest.files[paramsFile(synced.manifest)]}`;
    if (this._trainer?.key !== key) {
      await this._trainer?.trainer.close();
      const trainer = await converted('loading the model', () => Trainer.create({
        manifest: synced.manifest, files: synced.files, ort: this.ort, verify: false, threads: this.threads }));
      this._trainer = { key, trainer }; // one model in memory at a time; files were verified by the sync
    }
    return this._trainer.trainer;
  }

  // ------------------------------------------------------------------ training
  /**
   * Run one federated training task for `model` on local `records` and upload the update.
   *
   * Options: `conditions` {charging, unmetered, idle, battery} (required), `seed`,
   * `order` (explicit per-epoch row order over the usable rows, for reproducible runs),
   * `strict`, `onProgress`.  Throws NoTaskError, NotEligibleError, ConsentError / SchemaError,
   * ArtifactIntegrityError, RejectedUpdateError.  A network failure during the
   * upload does not throw: the update stays queued (status "queued"); flush() sends it.
   *
   * `onProgress(event)` lets a page show where the run is; `event.stage` is one of
   * 'task' (asking for a task), 'sync' (fetching/verifying the model; has `version`),
   * 'train' (once before the first epoch with `epoch: 0`, then after each epoch with
   * `epoch`, `epochs`, `loss`), 'upload' (has `norm`, `withinClip`, `clipNorm`, `bytes`)
   * and 'done' (has `status`).  An exception thrown by the callback is logged, never
   * allowed to break the run.
   *
   * Recommender models train on the customer's consented interactions (records with the manifest's item
   * column) from the user vector kept on this device, which never leaves it; `plan` replays a fixed negative
   * sample and block order (Trainer.recommenderPlan), for reproducible runs.
   *
   * `signals`: the device's consent signals ({tc_string, gdpr_applies, consent_mode, gpc}, e.g. from
   * readPageSignals() — or a function returning them, called before the run and again before the update is
   * queued: a record whose consent disappeared meanwhile discards the update, so the CMP is asked on every run);
   * a record's own fields of the same names override them (docs/CONSENT.md).
   */
  async train(model, records, { conditions, seed = null, order = null, strict = false, onProgress = null,
    signals = null, plan = null } = {}) {
    const progress = (event) => this._progress(onProgress, event);
    await progress({ stage: 'task', model });
    const task = await this.getTask(model);
    ensureEligible(task.eligibility, conditions);
    const rows = loadRecords(records);
    await progress({ stage: 'sync', model, version: task.version, roundId: task.roundId });
    const synced = await this.sync(model, task.version, { manifestUrl: task.manifestUrl });
    const { manifest } = synced;
    this._ensureVerb(model, manifest, 'train', 'train()');
    const trainer = await this._trainerFor(synced);
    const plugin = trainer.protocol; // what differs between kinds of model (./families/): input, device-only state
    // compile the graph during the sync stage, so the first epoch's progress measures training, not loading
    await converted('loading the model', () => trainer.session('train_epoch'));
    // Consent follows the task: its consent_signals, else its consent_purposes (the manifest's purpose only if the
    // task names none), decided per record by the contract's rule; withdrawn subjects never train.
    const requirement = task.consentRequirement(manifest.purpose);
    await this._rememberConsent(model, task.consentSignals, task.requiredPurposes(manifest.purpose));
    const deviceSignals = typeof signals === 'function' ? await signals() : signals;
    const decided = decideRecords(rows, requirement, deviceSignals, this.consentField, await this._withdrawnTest(rows));
    if (!decided.allowed.some(Boolean)) throw new ConsentError(nothingAllowed(rows, requirement, decided, this.consentField));
    const subjects = await this._subjects(rows, decided);
    const data = plugin.trainingInput(rows, { strict, consentField: this.consentField, allowed: decided.allowed });
    const s = seed ?? Math.floor(this._random() * 2 ** 31);
    // device-only state (the recommender's user vector) starts from the stored one and never leaves the device
    const personal = plugin.needsPersonalState ? await this._personalState(model, manifest, trainer, s) : null;
    const old = await converted('loading the initial parameters', () => trainer.initialParams());
    const epochs = Number(task.hyperparams.epochs ?? manifest.hyperparams.epochs ?? 1);
    const lr = Number(task.hyperparams.learning_rate ?? manifest.hyperparams.learning_rate ?? 0.1);
    await progress({ stage: 'train', epoch: 0, epochs, loss: NaN, examples: data.report.used,
      excludedNoConsent: data.report.excludedNoConsent });
    const onEpoch = (e) => progress({ stage: 'train', ...e, examples: data.report.used });
    const result = await converted('local training', () => trainer.train(old, data.data, {
      local: personal?.local ?? null, epochs, lr, seed: s, order, plan, onEpoch }));
    await plugin.afterTraining(this.personal, model, data.data, result, personal?.history ?? []);
    const prepared = buildUpdate(result.params, old, manifest.params, {
      clipNorm: task.clipNorm, numExamples: result.numExamples, encoding: task.encoding, localNoise: task.localNoise,
      random: this._random });
    await progress({ stage: 'upload', roundId: task.roundId, norm: prepared.norm, withinClip: prepared.within,
      clipNorm: prepared.clipNorm, bytes: prepared.body.length, encoding: prepared.encoding });
    if (typeof signals === 'function') {
      // the visitor may have changed their mind in the CMP while the epochs ran: ask again before anything is queued
      const now = decideRecords(rows, requirement, await signals(), this.consentField, await this._withdrawnTest(rows));
      if (decided.allowed.some((ok, i) => ok && !now.allowed[i])) {
        throw new ConsentError('consent changed while training (the CMP now answers '
          + `${Object.entries(now.counts).map(([k, v]) => `${k} ${v}`).join(', ')}); the update was discarded, nothing was queued`);
      }
    }
    const key = newKey();
    // The within-clip bit only travels with a clip norm (the contract's rule: without one it means nothing).
    const headers = uploadHeaders({ version: task.version, numExamples: prepared.numExamples, key, roundId: task.roundId,
      withinClip: prepared.clipNorm === null ? null : prepared.within });
    await this.outbox.put({ key, uploadPath: task.uploadUrl, roundId: task.roundId, model, version: task.version,
      headers, body: prepared.body, subjects });
    const flushed = await this.flush();
    const mine = flushed.outcomes.find((o) => o.key === key);
    if (mine && (mine.status === OUTCOME_EXPIRED || mine.status === OUTCOME_REJECTED)) {
      throw new RejectedUpdateError(mine.httpStatus ?? 400, mine.code ?? 'rejected',
        `the server refused this update (${mine.code}); it was dropped from the queue`);
    }
    const status = mine && mine.status !== OUTCOME_PENDING ? mine.status : 'queued';
    await progress({ stage: 'done', status, roundId: task.roundId, updateId: mine?.updateId ?? null,
      httpStatus: mine?.httpStatus ?? null });
    const consentReported = await this._reportConsent(model, task.roundId, decided.counts);
    return {
      consent: decided.counts, consentReported,
      model, version: task.version, roundId: task.roundId, status,
      idempotencyKey: key, updateId: mine?.updateId ?? null, httpStatus: mine?.httpStatus ?? null,
      numExamples: prepared.numExamples, loss: result.loss,
      updateNorm: prepared.norm, withinClip: prepared.within, clipNorm: prepared.clipNorm, encoding: prepared.encoding,
      uploadBytes: prepared.body.length, epochs, learningRate: lr, data: data.report, update: prepared,
    };
  }

  async _progress(callback, event) {
    if (!callback) return;
    try {
      await callback(event);
    } catch (exc) {
      this._log?.(`onProgress callback failed at stage ${event.stage}: ${exc?.message ?? exc}`);
    }
  }

  /** The server's view of a round (GET /v1/rounds/{id}): state, accepted, goal, clip norm, result version. */
  async roundStatus(roundId) {
    if (typeof roundId !== 'string' || !roundId) throw new ConfigurationError('roundStatus needs the round id a train() report carries');
    const resp = await this._request('GET', `/v1/rounds/${encodeURIComponent(roundId)}`);
    return resp.json();
  }

  /** How many updates wait in the outbox. */
  pending() {
    return this.outbox.size();
  }

  /**
   * Send queued updates, oldest first, each with its original idempotency key.
   * Accepted (202) or already stored (200) updates are removed; updates refused
   * for good are dropped; a network failure stops the flush and keeps the rest.
   */
  async flush() {
    const gone = await this.withdrawals.withdrawn();
    if (gone.size) await this.outbox.dropWhere((item) => item.subjects.some((h) => gone.has(h)));
    return this.outbox.lock(async () => {
      const outcomes = [];
      for (const item of await this.outbox.entries()) {
        const outcome = await this._send(item);
        outcomes.push(outcome);
        if (outcome.status === OUTCOME_PENDING) break;
        await this.outbox.remove(item.key);
      }
      const pending = await this.outbox.size();
      return { outcomes, pending, sent: outcomes.filter((o) => [OUTCOME_ACCEPTED, OUTCOME_DUPLICATE].includes(o.status)).length };
    });
  }

  async _send(item) {
    let resp;
    try {
      resp = await this._request('POST', item.uploadPath, { body: item.body, headers: item.headers, accept: [200, 202] });
    } catch (exc) {
      if (exc instanceof TransportError) {
        this._log?.(`upload ${item.key} stays queued: ${exc.message}`);
        return { key: item.key, roundId: item.roundId, status: OUTCOME_PENDING };
      }
      if (exc instanceof AuthenticationError || !(exc instanceof ServerError)) throw exc;
      const status = uploadOutcome(exc.status, exc.code);
      if (status === OUTCOME_PENDING) return { key: item.key, roundId: item.roundId, status, code: exc.code, httpStatus: exc.status };
      this._log?.(`dropping queued update ${item.key} for round ${item.roundId} (${status}): ${exc.message}`);
      return { key: item.key, roundId: item.roundId, status, code: exc.code, httpStatus: exc.status };
    }
    const body = resp.body.length ? resp.json() : {};
    return { key: item.key, roundId: item.roundId, status: uploadOutcome(resp.status),
      updateId: body?.update_id ?? null, httpStatus: resp.status };
  }

  // ------------------------------------------------------------------ on-device inference
  /**
   * Propensity scores in [0, 1], one per input record (Float64Array), computed on the device.
   * Records without consent for the model's purpose, or refused by the schema, get NaN.
   */
  async score(model, records, { version = null, signals = null } = {}) {
    const rows = loadRecords(records);
    const synced = await this._inferenceModel(model, version);
    this._ensureVerb(model, synced.manifest, 'score', 'score()');
    // consent: the mapping the last task for this model carried (as the Python SDK), else the manifest's purpose
    const requirement = await this._recallConsent(model);
    let allowed = null;
    if (requirement) {
      const decided = decideRecords(rows, requirement, signals, this.consentField, await this._withdrawnTest(rows));
      if (!decided.allowed.some(Boolean)) throw new ConsentError(nothingAllowed(rows, requirement, decided, this.consentField));
      allowed = decided.allowed;
    }
    const trainer = await this._trainerFor(synced);
    return converted('scoring', () => trainer.protocol.scores(rows, { consentField: this.consentField, allowed }));
  }

  /** Refuse a verb the model's protocol does not support (ConfigurationError naming what it needs). */
  _ensureVerb(model, manifest, verb, call) {
    const refusal = verbRefusal(model, manifest, verb, call);
    if (refusal !== null) throw new ConfigurationError(refusal);
  }

  /** Keep the consent mapping a task carried for `model`, for scoring and segments between tasks. */
  async _rememberConsent(model, consentSignals, purposes) {
    await putJSON(this.storage, `consent/${model}.requirement.json`, { consent_signals: consentSignals ?? null, purposes: [...purposes] });
  }

  async _recallConsent(model) {
    const d = await getJSON(this.storage, `consent/${model}.requirement.json`);
    if (!d) return null;
    try {
      return parseRequirement(d.consent_signals ?? null, d.purposes ?? []);
    } catch {
      return null;
    }
  }

  /** A verified cached version (default: the current one); fetched from the server when it is not cached. */
  async _inferenceModel(model, version = null) {
    const st = await this.models.state(model);
    return (version === null && st.current !== null) || (version !== null && [st.current, st.previous].includes(version))
      ? this.models.load(model, version) : this.sync(model, version);
  }

  /** The device-only parameters (fresh ones where none are stored) and the purchase history. */
  async _personalState(model, manifest, trainer, seed) {
    const { local, history } = await this.personal.load(model, manifest.local_params);
    const missing = manifest.local_params.filter((p) => !local[p.name]);
    return { local: missing.length ? { ...trainer.initialLocal(seed), ...local } : local, history };
  }

  /** Fit this customer's user vector on the device from their consented interactions; nothing is uploaded. */
  async personalize(model, records, { seed = null, plan = null } = {}) {
    const rows = loadRecords(records);
    const synced = await this._inferenceModel(model, null);
    const { manifest } = synced;
    this._ensureVerb(model, manifest, 'recommend', 'personalize()');
    const trainer = await this._trainerFor(synced);
    const { data, report } = trainer.protocol.trainingInput(rows, { consentField: this.consentField,
      allowed: decideRecords(rows, parseRequirement(null, [manifest.purpose]), null, this.consentField, await this._withdrawnTest(rows)).allowed });
    const s = seed ?? Math.floor(this._random() * 2 ** 31);
    const personal = await this._personalState(model, manifest, trainer, s);
    const result = await converted('personalisation', () => trainer.train(trainer.initialParams(), data,
      { local: personal.local, seed: s, plan }));
    await trainer.protocol.afterTraining(this.personal, model, data, result, personal.history);
    return report;
  }

  /** Top-`k` item codes for this device's customer, excluding items already bought (and `exclude`). */
  async recommend(model, k = 10, { exclude = [] } = {}) {
    if (!(Number.isInteger(k) && k >= 1)) throw new ConfigurationError(`k must be an integer >= 1, got ${k}`);
    const synced = await this._inferenceModel(model, null);
    const { manifest } = synced;
    this._ensureVerb(model, manifest, 'recommend', 'recommend()');
    const { local, history } = await this.personal.load(model, manifest.local_params);
    if (!Object.keys(local).length) {
      throw new ConfigurationError(`no personal state for '${model}' on this device yet: call train() or personalize() with the customer's interactions first`);
    }
    const trainer = await this._trainerFor(synced);
    return converted('recommendation', () => trainer.protocol.recommend(local, k, [...history, ...exclude.map(String)]));
  }

  /**
   * Metrics on a local holdout, aggregates only, as the model's protocol defines them: binary models loss, n,
   * positive rate and the per-label score histogram; regression MAE/RMSE; multiclass accuracy and top-`k`
   * accuracy (histogram null for both).
   */
  async evaluate(model, records, { version = null, k = 10 } = {}) {
    const rows = loadRecords(records);
    const synced = await this._inferenceModel(model, version);
    this._ensureVerb(model, synced.manifest, 'evaluate', 'evaluate()');
    const trainer = await this._trainerFor(synced);
    const ev = await converted('evaluation', () => trainer.protocol.evaluate(rows, { consentField: this.consentField, k }));
    return { model, version: synced.manifest.version, metrics: ev.metrics, histogram: ev.histogram, data: ev.report };
  }

  // ------------------------------------------------------------------ federated evaluation, segments
  /**
   * Federated evaluation (as the Python SDK's validate): score each version the server names on this local
   * holdout and send aggregates only — the count, the loss sum and the per-label score histogram.  Consent
   * follows the evaluation task (its consent_signals, else its purposes).  Resolves to the server's answer.
   * Binary (propensity) models only, as in the Python SDK.
   */
  async validate(model, records, { signals = null } = {}) {
    const task = (await this._request('POST', '/v1/evaluations/tasks', { json: { model } })).json();
    const line = String(task?.model ?? model);
    const named = task?.consent_purposes ?? [];
    if (!Array.isArray(named) || !named.every((p) => typeof p === 'string')) {
      throw new ServerError(200, 'bad_answer', `the evaluation task's consent_purposes must be a list of purposes, got ${JSON.stringify(named)}`);
    }
    const rows = loadRecords(records);
    const deviceSignals = typeof signals === 'function' ? await signals() : signals;
    const withdrawn = await this._withdrawnTest(rows);
    const reports = [];
    for (const entry of task?.versions ?? []) {
      const version = Number(entry.version);
      const synced = await this._inferenceModel(line, version);
      const { manifest } = synced;
      this._ensureVerb(model, manifest, 'validate', 'validate()');
      const purposes = requiredPurposes(named, typeof task.purpose === 'string' ? task.purpose : null, manifest.purpose);
      await this._rememberConsent(line, task.consent_signals ?? null, purposes);
      const decided = decideRecords(rows, parseRequirement(task.consent_signals ?? null, purposes), deviceSignals,
        this.consentField, withdrawn);
      if (!decided.allowed.some(Boolean)) throw new ConsentError(nothingAllowed(rows, parseRequirement(task.consent_signals ?? null, purposes), decided, this.consentField));
      const trainer = await this._trainerFor(synced);
      const report = await converted('evaluation', () => trainer.protocol.validationEntry(version, rows,
        { consentField: this.consentField, allowed: decided.allowed }));
      if (report !== null) reports.push(report);
    }
    if (!reports.length) throw new ConsentError('no consented record to evaluate on: nothing was reported');
    return (await this._request('POST', String(task.report_url), { json: { reports } })).json();
  }

  /**
   * Score consented records on the device and report only how many fall in each audience segment (`cuts`:
   * [name, lowest score] pairs, highest first); the server builds audiences from these counts and suppresses
   * any segment below its k.  Resolves to the counts sent.
   */
  async reportSegments(model, records, { cuts = DEFAULT_SEGMENT_CUTS, signals = null } = {}) {
    const version = await this.currentVersion(model); // audiences are built for the version the server publishes
    const { manifest } = await this._inferenceModel(model, version);
    const counts = segmentCounts(await this.score(model, records, { version, signals }), cuts);
    await this._request('POST', '/v1/segments/reports', { json: { model, version: manifest.version, purpose: manifest.purpose, counts } });
    return counts;
  }

  /**
   * Federated feature statistics (issue #15, as the Python SDK's report_statistics): take the model's open
   * statistics task, measure the consented, rule-passing records (device_statistics.js measure) and send only
   * their sums and counts, under an Idempotency-Key derived from the body (a retry replays).  Resolves to the
   * server's answer plus the local counts (used, excludedNoConsent, failedRules).
   */
  async reportStatistics(model, records) {
    const task = (await this._request('POST', '/v1/statistics/tasks', { json: { model } })).json();
    const rows = loadRecords(records);
    const m = measure(rows, task, { consentField: this.consentField, withdrawn: await this._withdrawnTest(rows) });
    const body = statisticsBodyBytes(m.body);
    const key = await statisticsKey(String(task.task_id), body);
    const answer = (await this._request('POST', String(task.report_url), {
      body, headers: { 'Content-Type': 'application/json', 'Idempotency-Key': key }, accept: [200, 201, 202] })).json();
    return { ...answer, used: m.used, excludedNoConsent: m.excludedNoConsent, failedRules: m.failedRules,
      idempotencyKey: key };
  }

  // ------------------------------------------------------------------ consent withdrawal
  /**
   * Consent withdrawn: by the customer `subject` (records' subjectField), or by the device's person (null).
   * Durably recorded first; then every queued, unsent update computed from the subject's records is dropped.
   * From now on the subject's records never train; the server learns the count at the next report, never who.
   * Returns {droppedUpdates, droppedRounds}.  What withdrawal does not undo: docs/CONSENT.md.
   */
  async withdraw(subject = null) {
    if (subject === null && this.subjectField !== null) {
      throw new ConfigurationError(`this client identifies customers by the record field '${this.subjectField}': pass withdraw(<that field's value>)`);
    }
    const h = await this.withdrawals.add(subject === null ? DEVICE_SUBJECT : String(subject));
    const dropped = await this.outbox.dropWhere((item) => item.subjects.includes(h));
    const erased = [];
    if (subject === null) for (const m of await this.personal.models()) if (await this.personal.forget(m)) erased.push(m);
    return { droppedUpdates: dropped.length, droppedRounds: [...new Set(dropped.map((d) => d.roundId))].sort(),
      erasedPersonalState: erased };
  }

  /** Consent given again: the subject's records may train again (nothing dropped comes back). */
  async restoreConsent(subject = null) {
    return this.withdrawals.restore(subject === null ? DEVICE_SUBJECT : String(subject));
  }

  async _withdrawnTest(rows) {
    const gone = await this.withdrawals.withdrawn();
    if (!gone.size) return null;
    const hash = await this.withdrawals.hasher();
    if (this.subjectField === null) {
      const all = gone.has(await hash(DEVICE_SUBJECT));
      return () => all;
    }
    // hashing is async (WebCrypto): hash every distinct subject of these rows once, then answer synchronously
    const ids = [...new Set(rows.map((r) => String(r?.[this.subjectField])))];
    const hashes = await Promise.all(ids.map(hash));
    const out = new Set(ids.filter((_, i) => gone.has(hashes[i])));
    return (r) => out.has(String(r?.[this.subjectField]));
  }

  async _subjects(rows, decided) {
    const hash = await this.withdrawals.hasher();
    if (this.subjectField === null) return [await hash(DEVICE_SUBJECT)];
    const ids = new Set(rows.filter((_, i) => decided.allowed[i]).map((r) => String(r[this.subjectField])));
    return (await Promise.all([...ids].map(hash))).sort();
  }

  /** Send the per-reason record counts and withdrawals since the last report (counts only); never fails training. */
  async _reportConsent(model, roundId, counts) {
    const withdrawn = await this.withdrawals.takePending();
    try {
      await this._request('POST', '/v1/consent/reports', { json: { model, round_id: roundId, counts, withdrawn } });
      return true;
    } catch (exc) {
      if (!(exc instanceof ServerError) && !(exc instanceof TransportError)) throw exc;
      await this.withdrawals.giveBack(withdrawn);
      this._log?.(`consent counts not reported (${exc.message}); withdrawals are kept for the next report`);
      return false;
    }
  }

  /** Release onnxruntime sessions and the storage. */
  async close() {
    await this._trainer?.trainer.close();
    this._trainer = null;
    await this.storage.close?.();
  }
}
