// Consent decisions for a batch of records, and the subjects who withdrew (as edge_sdk/consent.py).
//
// Each record's signals are the device's (the page's CMP, navigator.globalPrivacyControl, Consent Mode) overridden
// by the record's own fields of the same names; consent_signals.js decides, the counts per reason are what the
// device reports.  A withdrawn subject (customer) is kept as a salted hash in storage so the device keeps refusing
// their records after a restart and can find the queued updates computed from them, without holding a list of
// who withdrew.

import { decide, PURPOSE_NOT_CONSENTED } from './consent_signals.js';
import { ConfigurationError } from './errors.js';
import { sha256Hex } from './hashing.js';
import { getJSON, putJSON } from './storage.js';

/** Signals a device may hold for its user; a record's own fields of the same names override them. */
export const DEVICE_SIGNAL_KEYS = Object.freeze(['tc_string', 'gdpr_applies', 'consent_mode', 'gpc']);
/** A record of a withdrawn subject: never trains again (counted, never identified). */
export const WITHDRAWN = 'withdrawn';
export const DEVICE_SUBJECT = '__device__';

const present = (v) => v !== undefined && v !== null && v !== '' && !(typeof v === 'number' && Number.isNaN(v));

/** The device-level signals an app passes (`signals`); unknown keys are refused, not ignored. */
export function checkDeviceSignals(signals) {
  if (signals === null || signals === undefined) return {};
  if (typeof signals !== 'object' || Array.isArray(signals)) {
    throw new ConfigurationError(`signals must be an object with keys ${DEVICE_SIGNAL_KEYS.join(', ')} (e.g. from readPageSignals())`);
  }
  const unknown = Object.keys(signals).filter((k) => !DEVICE_SIGNAL_KEYS.includes(k)).sort();
  if (unknown.length) throw new ConfigurationError(`signals: unknown key(s) ${JSON.stringify(unknown)}; known: ${DEVICE_SIGNAL_KEYS.join(', ')}`);
  return Object.fromEntries(Object.entries(signals).filter(([, v]) => present(v)));
}

/** One record's signals: the device's, overridden by the record's own, plus the simple-form consent field. */
export function recordSignals(record, device, field) {
  const out = { ...device };
  for (const k of DEVICE_SIGNAL_KEYS) if (Object.hasOwn(record, k) && present(record[k])) out[k] = record[k];
  out.consent = record[field];
  return out;
}

/** {allowed: boolean[], counts: {reason: records}} for every record (withdrawn subjects first). */
export function decideRecords(records, requirement, device, field, withdrawn = null) {
  const dev = checkDeviceSignals(device);
  const allowed = [];
  const counts = {};
  for (const r of records) {
    let ok;
    let reason;
    if (withdrawn && withdrawn(r)) {
      ok = false;
      reason = WITHDRAWN;
    } else if (r === null || typeof r !== 'object' || Array.isArray(r)) {
      ok = false;
      reason = PURPOSE_NOT_CONSENTED;
    } else {
      ({ allowed: ok, reason } = decide(recordSignals(r, dev, field), requirement));
    }
    allowed.push(ok);
    counts[reason] = (counts[reason] ?? 0) + 1;
  }
  return { allowed, counts };
}

/** Why nothing may be used: the purposes (simple form) or the reasons with their counts. */
export function nothingAllowed(records, requirement, decisions, field) {
  if (!requirement.tcf && !requirement.consentMode.length && !requirement.gpc && !decisions.counts[WITHDRAWN]) {
    const needed = requirement.purposes;
    const shown = needed.length === 1 ? `purpose '${needed[0]}'` : `purposes ${needed.map((p) => `'${p}'`).join(', ')}`;
    return `none of the ${records.length} record(s) carries consent for ${shown} in field '${field}' `
      + '(an array or comma-separated string of purposes); nothing may be used';
  }
  const why = Object.entries(decisions.counts).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k} ${v}`).join(', ');
  return `none of the ${records.length} record(s) may be used for this task's purpose (${why}); the signals each `
    + 'reason names are in docs/CONSENT.md';
}

const KEY = 'consent/withdrawn.json';

/** Subjects who withdrew on this device, as salted hashes (storage key consent/withdrawn.json). */
export class WithdrawalLog {
  constructor(storage) {
    this.storage = storage;
  }

  async _load() {
    const d = await getJSON(this.storage, KEY);
    if (d && typeof d.salt === 'string' && Array.isArray(d.subjects)) return { ...d, stored: true };
    const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
    return { salt: [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(''), subjects: [], pending: 0, stored: false };
  }

  async _save(d) {
    await putJSON(this.storage, KEY, { salt: d.salt, subjects: d.subjects, pending: d.pending ?? 0 });
  }

  static async _hash(salt, subject) {
    return (await sha256Hex(new TextEncoder().encode(`${salt}:${subject}`))).replace(/^sha256:/, '').slice(0, 32);
  }

  /** A hash function for many subjects (the salt is stored before any hash is handed out). */
  async hasher() {
    const d = await this._load();
    if (!d.stored) await this._save(d);
    return (subject) => WithdrawalLog._hash(d.salt, subject);
  }

  /** Record a withdrawal durably (before anything else happens); returns the subject's hash. */
  async add(subject) {
    const d = await this._load();
    const h = await WithdrawalLog._hash(d.salt, subject);
    if (!d.subjects.includes(h)) d.subjects.push(h);
    d.pending = Number(d.pending ?? 0) + 1;
    await this._save(d);
    return h;
  }

  async withdrawn() {
    const d = await getJSON(this.storage, KEY);
    return new Set(Array.isArray(d?.subjects) ? d.subjects : []);
  }

  /** Renewed consent: the subject's records may train again; true if it was withdrawn. */
  async restore(subject) {
    const d = await this._load();
    const h = await WithdrawalLog._hash(d.salt, subject);
    if (!d.subjects.includes(h)) return false;
    d.subjects = d.subjects.filter((x) => x !== h);
    await this._save(d);
    return true;
  }

  /** How many withdrawals to report now (and reset the count). */
  async takePending() {
    const d = await getJSON(this.storage, KEY);
    const n = Number(d?.pending ?? 0);
    if (n) await this._save({ ...d, pending: 0 });
    return n;
  }

  /** A report that could not be sent: count its withdrawals again for the next one. */
  async giveBack(n) {
    if (!n) return;
    const d = await this._load();
    d.pending = Number(d.pending ?? 0) + n;
    await this._save(d);
  }
}
