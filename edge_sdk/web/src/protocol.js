// The protocol around the update body: the task document and the upload headers
// (the JavaScript twin of fedmark/contract/protocol.py; the schema and every
// rule are documented there, and tests/web/make_vectors.py records what the
// Python module accepts, refuses and builds so this port is held to it).
//
// In short: a task needs round_id, model, upload_url, version (integer >= 1)
// and the key clip_norm — a positive number, or null when the training
// configuration has no clipping (the update then travels unclipped, without
// the within-clip header, and local noise is refused).  A record trains on a
// task only if its consent covers every purpose the task names
// (consent_purposes and purpose); only a task naming none falls back to the
// manifest's purpose.

import { ERR_BAD_HEADER, ERR_BAD_TASK } from './codes.js';
import { consentCovers, normalizePurpose, parseRequirement } from './consent_signals.js';
import { ProtocolError } from './contract_errors.js';
import { ConversionError, isMapping, pyFloat, pyInt, pyRepr } from './pycompat.js';
import { ENCODINGS } from './update.js';

export const HDR_ROUND = 'X-Fedmark-Round';
export const HDR_MODEL_VERSION = 'X-Fedmark-Model-Version';
export const HDR_NUM_EXAMPLES = 'X-Fedmark-Num-Examples';
export const HDR_WITHIN_CLIP = 'X-Fedmark-Within-Clip'; // "1" if ||delta|| <= C before clipping
export const HDR_IDEMPOTENCY = 'Idempotency-Key';
export const UPDATE_CONTENT_TYPE = 'application/vnd.fedmark.update';
/** Numbers from headers are bounded to what storage holds (a 32-bit signed integer column). */
export const MAX_HEADER_INT = 2 ** 31 - 1;

const KEY_RE = /^[\x21-\x7e]{1,200}$/;
const REQUIRED = ['round_id', 'model', 'version', 'upload_url'];
const bad = (message) => new ProtocolError(ERR_BAD_TASK, message);
const given = (d, k) => Object.hasOwn(d, k) && d[k] !== null && d[k] !== undefined;

/** The simple form's purpose rule lives with the other consent rules (consent_signals.js). */
export { consentCovers, normalizePurpose };

function text(d, key, fallback = null) {
  if (!given(d, key)) return fallback;
  const v = d[key];
  if (typeof v !== 'string' || !v) throw bad(`${key} must be a non-empty string, got ${pyRepr(v)}`);
  return v;
}

function number(d, key) {
  if (!given(d, key)) return null;
  const v = d[key];
  if (typeof v === 'boolean') throw bad(`${key} must be a number, got ${pyRepr(v)}`);
  try {
    return pyFloat(v);
  } catch (exc) {
    if (exc instanceof ConversionError) throw bad(`${key}: ${exc.message}`);
    throw exc;
  }
}

function integer(d, key) {
  if (!given(d, key)) return null;
  const v = d[key];
  const wrong = bad(`${key} must be an integer >= 1, got ${pyRepr(v)}`);
  if (!['number', 'string'].includes(typeof v)) throw wrong;
  if (typeof v === 'number' && !Number.isInteger(v)) throw wrong;
  let n;
  try {
    n = pyInt(v);
  } catch (exc) {
    if (exc instanceof ConversionError) throw bad(`${key}: ${exc.message}`);
    throw exc;
  }
  if (n < 1) throw wrong;
  return n;
}

/** The purposes a record's consent must cover: the task's consent_purposes plus its purpose
 * (normalised, in order, without repeats); the manifest's purpose only when the task names none. */
export function requiredPurposes(consentPurposes, purpose, manifestPurpose) {
  const out = [];
  for (const p of [...(consentPurposes ?? []), ...(purpose ? [purpose] : [])]) {
    const n = normalizePurpose(p);
    if (n && !out.includes(n)) out.push(n);
  }
  return out.length ? out : [normalizePurpose(manifestPurpose)];
}


/**
 * Validate a task document; throws ProtocolError (code 'bad_task') naming the bad field.
 * Returns a frozen object with camelCase fields; `requiredPurposes(manifestPurpose)` applies
 * the consent rule to it.
 */
export function parseTaskDocument(d) {
  if (!isMapping(d)) throw bad('a task must be a JSON object');
  const missing = [...REQUIRED.filter((k) => !given(d, k)), ...(Object.hasOwn(d, 'clip_norm') ? [] : ['clip_norm'])];
  if (missing.length) throw bad(`missing field(s): ${missing.join(', ')}`);
  const roundId = text(d, 'round_id');
  const model = text(d, 'model');
  const uploadUrl = text(d, 'upload_url');
  const version = integer(d, 'version');
  const clipNorm = number(d, 'clip_norm');
  if (clipNorm !== null && !(Number.isFinite(clipNorm) && clipNorm > 0)) {
    throw bad(`clip_norm must be a positive number or null, got ${pyRepr(d.clip_norm)}`);
  }
  const localNoise = number(d, 'local_noise') ?? 0;
  if (!(Number.isFinite(localNoise) && localNoise >= 0)) {
    throw bad(`local_noise must be a number >= 0, got ${pyRepr(d.local_noise)}`);
  }
  if (localNoise > 0 && clipNorm === null) {
    throw bad('local_noise is a multiple of the clip norm, but the task has no clip_norm; '
      + 'configure clipping or set local_noise to 0');
  }
  const encoding = given(d, 'encoding') ? d.encoding : 'f32';
  if (typeof encoding !== 'string' || !Object.hasOwn(ENCODINGS, encoding)) {
    throw bad(`unknown update encoding ${pyRepr(encoding)}; use one of ${Object.keys(ENCODINGS).sort().join(', ')}`);
  }
  const hyperparams = given(d, 'hyperparams') ? d.hyperparams : {};
  const eligibility = given(d, 'eligibility') ? d.eligibility : {};
  if (!isMapping(hyperparams) || !isMapping(eligibility)) throw bad('hyperparams and eligibility must be JSON objects');
  const purposes = given(d, 'consent_purposes') ? d.consent_purposes : [];
  if (!Array.isArray(purposes) || !purposes.every((p) => typeof p === 'string' && p.trim())) {
    throw bad(`consent_purposes must be a list of purpose names, got ${pyRepr(d.consent_purposes)}`);
  }
  const taskId = text(d, 'task_id', roundId);
  const manifestUrl = text(d, 'manifest_url', `/v1/models/${model}/versions/${version}/manifest`);
  // the remaining fields are checked in the Python module's order, so both name the same first problem
  const mode = text(d, 'mode');
  const deadline = text(d, 'deadline');
  const purpose = text(d, 'purpose');
  const policyVersion = integer(d, 'policy_version');
  const region = text(d, 'region');
  const signals = given(d, 'consent_signals') ? d.consent_signals : null;
  if (signals !== null) {
    try {
      parseRequirement(signals, purposes);
    } catch (exc) {
      if (exc instanceof ProtocolError) throw bad(`consent_signals: ${exc.message}`);
      throw exc;
    }
  }
  const consentPurposes = Object.freeze([...purposes]);
  const consentSignals = signals === null ? null : structuredClone(signals);
  return Object.freeze({
    taskId, roundId, model, version, manifestUrl, uploadUrl, clipNorm, localNoise, encoding, deadline,
    hyperparams: { ...hyperparams }, eligibility: { ...eligibility }, mode, purpose, consentPurposes, policyVersion,
    region, consentSignals,
    requiredPurposes: (manifestPurpose) => requiredPurposes(consentPurposes, purpose, manifestPurpose),
    /** What each record's signals must satisfy to train on this task (consent_signals.js decide). */
    consentRequirement: (manifestPurpose) => parseRequirement(consentSignals,
      requiredPurposes(consentPurposes, purpose, manifestPurpose)),
  });
}

/** The wire form of a parsed task (what the server sends); governance fields only for a governed task. */
export function taskToJSON(t) {
  const out = {
    task_id: t.taskId, round_id: t.roundId, model: t.model, version: t.version, mode: t.mode,
    manifest_url: t.manifestUrl, upload_url: t.uploadUrl, hyperparams: { ...t.hyperparams }, clip_norm: t.clipNorm,
    local_noise: t.localNoise, encoding: t.encoding, deadline: t.deadline, eligibility: { ...t.eligibility },
  };
  if (t.purpose !== null || t.consentPurposes.length || t.consentSignals !== null) {
    Object.assign(out, { purpose: t.purpose, consent_purposes: [...t.consentPurposes], policy_version: t.policyVersion,
      region: t.region, consent_signals: t.consentSignals === null ? null : structuredClone(t.consentSignals) });
  }
  return out;
}

function header(h, name) {
  if (typeof h?.get === 'function') return h.get(name) ?? null; // fetch Headers / Map-like
  if (Object.hasOwn(h, name)) return h[name];
  const low = name.toLowerCase();
  const k = Object.keys(h).find((x) => x.toLowerCase() === low);
  return k === undefined ? null : h[k];
}

/** Validate an update's headers as the server does; throws ProtocolError (code 'bad_header'). */
export function parseUploadHeaders(h) {
  const needInt = (name, lo) => {
    const raw = header(h, name);
    if (raw === null || raw === undefined) throw new ProtocolError(ERR_BAD_HEADER, `header ${name} is required`);
    let v;
    try {
      v = pyInt(String(raw).trim());
    } catch (exc) {
      if (!(exc instanceof ConversionError)) throw exc;
      throw new ProtocolError(ERR_BAD_HEADER, `header ${name} must be an integer, got ${pyRepr(raw)}`);
    }
    if (v < lo) throw new ProtocolError(ERR_BAD_HEADER, `header ${name} must be >= ${lo}, got ${v}`);
    if (v > MAX_HEADER_INT) throw new ProtocolError(ERR_BAD_HEADER, `header ${name} must be <= ${MAX_HEADER_INT}, got ${v}`);
    return v;
  };
  const version = needInt(HDR_MODEL_VERSION, 1);
  const numExamples = needInt(HDR_NUM_EXAMPLES, 1);
  const rawBit = header(h, HDR_WITHIN_CLIP);
  let withinClip;
  if (rawBit === null || rawBit === undefined) withinClip = null;
  else if (['0', '1'].includes(String(rawBit).trim())) withinClip = String(rawBit).trim() === '1';
  else throw new ProtocolError(ERR_BAD_HEADER, `header ${HDR_WITHIN_CLIP} must be 0 or 1, got ${pyRepr(rawBit)}`);
  const key = header(h, HDR_IDEMPOTENCY);
  if (typeof key !== 'string' || !KEY_RE.test(key)) {
    throw new ProtocolError(ERR_BAD_HEADER, `header ${HDR_IDEMPOTENCY} is required: 1-200 printable ASCII `
      + 'characters, the same on every retry of this update (e.g. a UUID)');
  }
  return Object.freeze({ version, numExamples, withinClip, key, roundId: header(h, HDR_ROUND) });
}

/**
 * The headers a device sends with an update body (Content-Type included).  `withinClip`: the bit
 * adaptive clipping needs; pass null when the task has no clip norm — the header is then omitted.
 */
export function uploadHeaders({ version, numExamples, key, roundId = null, withinClip = null }) {
  const out = {
    'Content-Type': UPDATE_CONTENT_TYPE, [HDR_MODEL_VERSION]: String(Math.trunc(version)),
    [HDR_NUM_EXAMPLES]: String(Math.trunc(numExamples)), [HDR_IDEMPOTENCY]: key,
  };
  if (roundId !== null) out[HDR_ROUND] = roundId;
  if (withinClip !== null) out[HDR_WITHIN_CLIP] = withinClip ? '1' : '0';
  parseUploadHeaders(out);
  return out;
}
