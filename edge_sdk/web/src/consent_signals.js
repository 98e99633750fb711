// Standard consent signals in, one fedmark decision out (the JavaScript twin of fedmark/contract/consent.py).
//
// A requirement (a policy's consent_signals, carried in every task) names the
// signals one model purpose needs; the signals of a record are what the CMP
// said: an IAB TCF v2.2 TC string (or the TCData a page's __tcfapi hands out),
// Google Consent Mode v2 states, Global Privacy Control.  decide() checks GPC,
// then TCF, then Consent Mode, then the simple purpose names, and answers with
// the first failing reason or an allowed* reason.  Missing or unreadable
// signals exclude.  tests/contract/tcf_vectors.json (made by the IAB's own
// encoder) holds the decisions Python, Node and the browser must all give.
//
// TC strings are decoded by the IAB Tech Lab's @iabtechlabtcf/core.  In Node the
// SDK's entry point (node.js) registers it; a browser page normally passes the
// CMP's TCData, which carries the decoded fields already (see tcf.js).

import { ERR_BAD_CONSENT_SIGNAL } from './codes.js';
import { ProtocolError } from './contract_errors.js';

export const ALLOWED = 'allowed';
export const ALLOWED_LEGITIMATE_INTEREST = 'allowed_legitimate_interest';
export const GPC_OPT_OUT = 'gpc_opt_out';
export const GPC_UNREADABLE = 'gpc_unreadable';
export const TCF_MISSING = 'tcf_missing';
export const TCF_UNREADABLE = 'tcf_unreadable';
export const TCF_PURPOSE_DENIED = 'tcf_purpose_denied';
export const TCF_VENDOR_DENIED = 'tcf_vendor_denied';
export const TCF_RESTRICTED = 'tcf_restricted';
export const TCF_SPECIAL_FEATURE_DENIED = 'tcf_special_feature_denied';
export const CONSENT_MODE_MISSING = 'consent_mode_missing';
export const CONSENT_MODE_UNREADABLE = 'consent_mode_unreadable';
export const CONSENT_MODE_DENIED = 'consent_mode_denied';
export const PURPOSE_NOT_CONSENTED = 'purpose_not_consented';
export const ALLOW_REASONS = Object.freeze([ALLOWED, ALLOWED_LEGITIMATE_INTEREST]);
export const DECISION_REASONS = Object.freeze([ALLOWED, ALLOWED_LEGITIMATE_INTEREST, GPC_OPT_OUT, GPC_UNREADABLE,
  TCF_MISSING, TCF_UNREADABLE, TCF_PURPOSE_DENIED, TCF_VENDOR_DENIED, TCF_RESTRICTED, TCF_SPECIAL_FEATURE_DENIED,
  CONSENT_MODE_MISSING, CONSENT_MODE_UNREADABLE, CONSENT_MODE_DENIED, PURPOSE_NOT_CONSENTED]);
/** Where a record (or the device) carries each signal; `consent` is the simple form (purpose names). */
export const SIGNAL_KEYS = Object.freeze(['consent', 'tc_string', 'gdpr_applies', 'consent_mode', 'gpc']);
export const LI_FORBIDDEN_PURPOSES = Object.freeze(new Set([1, 3, 4, 5, 6]));
export const RESTRICT_NOT_ALLOWED = 0;
export const RESTRICT_REQUIRE_CONSENT = 1;
export const RESTRICT_REQUIRE_LI = 2;
export const CONSENT_MODE_STATES = Object.freeze(['ad_storage', 'analytics_storage', 'ad_user_data', 'ad_personalization',
  'functionality_storage', 'personalization_storage', 'security_storage']);

/** Purposes compare case-insensitively and without surrounding spaces. */
export function normalizePurpose(p) {
  return String(p).trim().toLowerCase();
}

/** The simple form's rule: a record's consented purposes (a Set of normalised names) include every required purpose. */
export function consentCovers(consented, required) {
  return [...required].every((p) => consented.has(normalizePurpose(p)));
}

const bad = (message) => new ProtocolError(ERR_BAD_CONSENT_SIGNAL, message);
const isInt = (x) => Number.isInteger(x) && typeof x === 'number';
const dedupe = (xs) => [...new Set(xs)];

// --------------------------------------------------------------------------- TC strings
let decoder = null;
const cache = new Map();

/**
 * Register the function that turns a TC string into the normalised form (tcfFromTCModel over
 * @iabtechlabtcf/core's TCString.decode; node.js does this).  Without one, a bare string is unreadable.
 */
export function registerTCStringDecoder(fn) {
  decoder = fn;
  cache.clear();
}

/** Decode a TC string with the registered decoder; throws ProtocolError (bad_consent_signal) when it cannot. */
export function decodeTCString(tcString) {
  if (typeof tcString !== 'string' || !tcString.trim()) throw bad(`TC string must be a non-empty string, got ${JSON.stringify(tcString)}`);
  if (cache.has(tcString)) return cache.get(tcString);
  if (!decoder) throw bad('no TC string decoder is registered: pass the CMP\'s TCData (tcf.js), or import the SDK from node.js');
  let out;
  try {
    out = decoder(tcString.trim());
  } catch (exc) {
    if (exc instanceof ProtocolError) throw exc;
    throw bad(`TC string cannot be decoded: ${exc?.message ?? exc}`);
  }
  if (cache.size > 256) cache.clear();
  cache.set(tcString, out);
  return out;
}

const ids = (vector) => new Set([...vector.values()].map(Number));

/** The normalised TCF signal from an @iabtechlabtcf/core TCModel (what the decision reads). */
export function tcfFromTCModel(m) {
  if (Number(m.version) !== 2) throw bad(`TC string has version ${m.version}; only TCF v2 strings (v2.2 policy) are read`);
  const restrictions = new Map();
  for (const vendorId of m.publisherRestrictions.getVendors()) {
    for (const r of m.publisherRestrictions.getRestrictions(vendorId)) {
      if (![0, 1, 2].includes(r.restrictionType)) throw bad(`TC string: publisher restriction type ${r.restrictionType} is undefined`);
      restrictions.set(`${r.purposeId}:${vendorId}`, r.restrictionType);
    }
  }
  return Object.freeze({
    version: 2, policyVersion: Number(m.policyVersion), cmpId: Number(m.cmpId),
    publisherCC: String(m.publisherCountryCode), purposeOneTreatment: Boolean(m.purposeOneTreatment),
    purposeConsents: ids(m.purposeConsents), purposeLegitimateInterests: ids(m.purposeLegitimateInterests),
    vendorConsents: ids(m.vendorConsents), vendorLegitimateInterests: ids(m.vendorLegitimateInterests),
    specialFeatureOptins: ids(m.specialFeatureOptins), restrictions,
  });
}

// --------------------------------------------------------------------------- requirement
function idList(v, where, lo, hi) {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every(isInt)) throw bad(`${where} must be a list of integers, got ${JSON.stringify(v)}`);
  const out = dedupe(v);
  const stray = out.filter((x) => x < lo || x > hi);
  if (stray.length) throw bad(`${where}: [${stray.join(', ')}] are not TCF v2.2 ids (use ${lo}-${hi})`);
  return out;
}

/**
 * Validate a consent_signals object (policy or task); `purposes` is the simple form.  null means the
 * simple form alone.  Throws ProtocolError (bad_consent_signal) naming the bad key.
 */
export function parseRequirement(d, purposes = []) {
  const simple = dedupe([...purposes].map(normalizePurpose).filter(Boolean));
  if (d === null || d === undefined) return Object.freeze({ purposes: simple, tcf: null, consentMode: [], gpc: false });
  if (typeof d !== 'object' || Array.isArray(d)) throw bad(`consent_signals must be an object with keys tcf, consent_mode, gpc, simple_purposes; got ${JSON.stringify(d)}`);
  const unknown = Object.keys(d).filter((k) => !['tcf', 'consent_mode', 'gpc', 'simple_purposes'].includes(k)).sort();
  if (unknown.length) throw bad(`consent_signals: unknown key(s) ${JSON.stringify(unknown)}; known: tcf, consent_mode, gpc, simple_purposes`);
  const useSimple = d.simple_purposes ?? false;
  const gpc = d.gpc ?? false;
  if (typeof useSimple !== 'boolean' || typeof gpc !== 'boolean') throw bad('consent_signals.simple_purposes and consent_signals.gpc must be true or false');
  let tcf = null;
  const t = d.tcf;
  if (t !== undefined && t !== null) {
    if (typeof t !== 'object' || Array.isArray(t)) throw bad(`consent_signals.tcf must be an object such as {"vendor_id": 1234, "consent": [1, 3, 4]}, got ${JSON.stringify(t)}`);
    const tUnknown = Object.keys(t).filter((k) => !['vendor_id', 'consent', 'legitimate_interest', 'special_features', 'outside_gdpr'].includes(k)).sort();
    if (tUnknown.length) throw bad(`consent_signals.tcf: unknown key(s) ${JSON.stringify(tUnknown)}`);
    if (!isInt(t.vendor_id) || t.vendor_id < 1 || t.vendor_id > 65535) throw bad(`consent_signals.tcf.vendor_id must be the deployment's IAB vendor id (1-65535), got ${JSON.stringify(t.vendor_id)}`);
    const consent = idList(t.consent, 'consent_signals.tcf.consent', 1, 11);
    const li = idList(t.legitimate_interest, 'consent_signals.tcf.legitimate_interest', 1, 11);
    const forbidden = li.filter((p) => LI_FORBIDDEN_PURPOSES.has(p)).sort((a, b) => a - b);
    if (forbidden.length) throw bad(`consent_signals.tcf.legitimate_interest: TCF v2.2 allows no legitimate interest for purpose(s) [${forbidden.join(', ')}]; move them to consent`);
    const both = li.filter((p) => consent.includes(p)).sort((a, b) => a - b);
    if (both.length) throw bad(`consent_signals.tcf: purpose(s) [${both.join(', ')}] are listed under both consent and legitimate_interest`);
    const features = idList(t.special_features, 'consent_signals.tcf.special_features', 1, 2);
    if (!consent.length && !li.length && !features.length) throw bad('consent_signals.tcf names no purpose or special feature; list what the model needs');
    const outside = t.outside_gdpr ?? 'deny';
    if (!['deny', 'allow'].includes(outside)) throw bad(`consent_signals.tcf.outside_gdpr must be "deny" or "allow", got ${JSON.stringify(outside)}`);
    tcf = Object.freeze({ vendorId: t.vendor_id, consent, legitimateInterest: li, specialFeatures: features, outsideGdpr: outside });
  }
  const cm = d.consent_mode;
  let modes = [];
  if (cm !== undefined && cm !== null) {
    if (!Array.isArray(cm) || !cm.length || !cm.every((x) => CONSENT_MODE_STATES.includes(x))) {
      throw bad(`consent_signals.consent_mode must be a non-empty list of Consent Mode states (${CONSENT_MODE_STATES.join(', ')}), got ${JSON.stringify(cm)}`);
    }
    modes = dedupe(cm);
  }
  const req = Object.freeze({ purposes: useSimple ? simple : [], tcf, consentMode: modes, gpc });
  if (!req.purposes.length && !tcf && !modes.length && !gpc) throw bad('consent_signals requires nothing: name tcf, consent_mode or gpc (or set simple_purposes)');
  if (useSimple && !simple.length) throw bad('consent_signals.simple_purposes is true but the policy names no consent purpose');
  return req;
}

// --------------------------------------------------------------------------- signal values
/** GPC as a boolean (true: opt-out), null when absent; throws on a value that is neither. */
export function parseGpc(value) {
  if (value === undefined || value === null) return null;
  if (typeof value === 'boolean') return value;
  if ((typeof value === 'number' || typeof value === 'string') && ['0', '1'].includes(String(value).trim())) return String(value).trim() === '1';
  if (typeof value === 'string' && ['true', 'false'].includes(value.trim().toLowerCase())) return value.trim().toLowerCase() === 'true';
  throw bad(`gpc must be true/false (navigator.globalPrivacyControl) or "1" (the Sec-GPC header), got ${JSON.stringify(value)}`);
}

/** Consent Mode states as {state: 'granted'|'denied'} (an object or its JSON text); null when absent. */
export function parseConsentMode(value) {
  if (value === undefined || value === null || value === '' || (typeof value === 'number' && Number.isNaN(value))) return null;
  let v = value;
  if (typeof v === 'string') {
    try {
      v = JSON.parse(v);
    } catch {
      throw bad(`consent_mode text is not JSON: ${JSON.stringify(value.slice(0, 60))}`);
    }
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad(`consent_mode must be an object such as {"ad_user_data": "granted"}, got ${JSON.stringify(v)}`);
  const out = {};
  for (const [k, s] of Object.entries(v)) {
    if (s !== 'granted' && s !== 'denied') throw bad(`consent_mode.${k} must be "granted" or "denied", got ${JSON.stringify(s)}`);
    out[k] = s;
  }
  return out;
}

/** The simple form: purpose names (an array or a comma-separated string), lower-cased; empty when unreadable. */
export function parseSimplePurposes(value) {
  let items;
  if (typeof value === 'string') items = value.split(',');
  else if (Array.isArray(value) || value instanceof Set) items = [...value];
  else return new Set();
  return new Set(items.filter((p) => typeof p === 'string' && p.trim()).map(normalizePurpose));
}

function gdprApplies(value) {
  if (value === undefined || value === null || value === '') return null;
  if (typeof value === 'boolean') return value;
  if ((typeof value === 'number' || typeof value === 'string') && ['0', '1'].includes(String(value).trim())) return String(value).trim() === '1';
  return null; // unreadable: treated as "applies"
}

// --------------------------------------------------------------------------- the decision
function tcfDecision(tcf, req) {
  let usedLi = false;
  const v = req.vendorId;
  const bases = { consent: [tcf.purposeConsents, tcf.vendorConsents], li: [tcf.purposeLegitimateInterests, tcf.vendorLegitimateInterests] };
  const gives = (b, purpose) => bases[b][0].has(purpose) && bases[b][1].has(v);
  for (const purpose of [...req.consent, ...req.legitimateInterest]) {
    const restriction = tcf.restrictions.get(`${purpose}:${v}`);
    if (restriction === RESTRICT_NOT_ALLOWED) return TCF_RESTRICTED;
    const wanted = req.consent.includes(purpose) ? ['consent'] : ['consent', 'li'];
    let allowed = wanted;
    if (restriction === RESTRICT_REQUIRE_CONSENT) allowed = wanted.filter((b) => b === 'consent');
    else if (restriction === RESTRICT_REQUIRE_LI) allowed = LI_FORBIDDEN_PURPOSES.has(purpose) ? [] : wanted.filter((b) => b === 'li');
    const ok = ['consent', 'li'].filter((b) => allowed.includes(b) && gives(b, purpose));
    if (!ok.length) {
      if (wanted.some((b) => !allowed.includes(b) && gives(b, purpose))) return TCF_RESTRICTED;
      if (!allowed.length) return TCF_RESTRICTED;
      return allowed.some((b) => bases[b][0].has(purpose)) ? TCF_VENDOR_DENIED : TCF_PURPOSE_DENIED;
    }
    usedLi = usedLi || !ok.includes('consent');
  }
  if (req.specialFeatures.some((f) => !tcf.specialFeatureOptins.has(f))) return TCF_SPECIAL_FEATURE_DENIED;
  return usedLi ? ALLOWED_LEGITIMATE_INTEREST : ALLOWED;
}

const missing = (x) => x === undefined || x === null || x === '' || (typeof x === 'number' && Number.isNaN(x));

/**
 * The one consent decision for one record: {allowed, reason}.  `signals` has SIGNAL_KEYS; `tc_string`
 * may also be an already normalised TCF signal (tcfFromTCModel, tcfFromTCData).  Never throws on bad signals.
 */
export function decide(signals, req) {
  const get = (k) => (signals instanceof Map ? signals.get(k) : signals?.[k]);
  let allow = ALLOWED;
  if (req.gpc) {
    try {
      if (parseGpc(get('gpc'))) return { allowed: false, reason: GPC_OPT_OUT };
    } catch {
      return { allowed: false, reason: GPC_UNREADABLE };
    }
  }
  if (req.tcf) {
    const skip = req.tcf.outsideGdpr === 'allow' && gdprApplies(get('gdpr_applies')) === false;
    if (!skip) {
      const raw = get('tc_string');
      if (missing(raw)) return { allowed: false, reason: TCF_MISSING };
      let tcf;
      try {
        tcf = typeof raw === 'string' ? decodeTCString(raw) : raw;
        if (!(tcf?.purposeConsents instanceof Set)) throw bad('not a TCF signal');
      } catch {
        return { allowed: false, reason: TCF_UNREADABLE };
      }
      allow = tcfDecision(tcf, req.tcf);
      if (!ALLOW_REASONS.includes(allow)) return { allowed: false, reason: allow };
    }
  }
  if (req.consentMode.length) {
    let states;
    try {
      states = parseConsentMode(get('consent_mode'));
    } catch {
      return { allowed: false, reason: CONSENT_MODE_UNREADABLE };
    }
    if (states === null || req.consentMode.some((s) => !Object.hasOwn(states, s))) return { allowed: false, reason: CONSENT_MODE_MISSING };
    if (req.consentMode.some((s) => states[s] !== 'granted')) return { allowed: false, reason: CONSENT_MODE_DENIED };
  }
  if (req.purposes.length && !consentCovers(parseSimplePurposes(get('consent')), req.purposes)) {
    return { allowed: false, reason: PURPOSE_NOT_CONSENTED };
  }
  return { allowed: true, reason: allow };
}

// --------------------------------------------------------------------------- where apps keep the signals
/** The pre-parsed IABTCF_* binary-string keys (position n is id n+1) and the decoded field each must match. */
export const IABTCF_BIT_KEYS = Object.freeze({ IABTCF_PurposeConsents: 'purposeConsents',
  IABTCF_PurposeLegitimateInterests: 'purposeLegitimateInterests', IABTCF_VendorConsents: 'vendorConsents',
  IABTCF_VendorLegitimateInterests: 'vendorLegitimateInterests', IABTCF_SpecialFeaturesOptIns: 'specialFeatureOptins' });
/** Scalar keys cross-checked against the TC string's core segment. */
export const IABTCF_SCALAR_KEYS = Object.freeze({ IABTCF_PolicyVersion: 'policyVersion', IABTCF_PublisherCC: 'publisherCC',
  IABTCF_PurposeOneTreatment: 'purposeOneTreatment' });
export const IABTCF_RESTRICTIONS_PREFIX = 'IABTCF_PublisherRestrictions';

const prefGet = (prefs, k) => (prefs instanceof Map ? prefs.get(k) : prefs?.[k]);
const prefKeys = (prefs) => (prefs instanceof Map ? [...prefs.keys()] : Object.keys(prefs ?? {}));
const setOf = (xs) => [...xs].sort((a, b) => a - b);
const present = (v) => v !== undefined && v !== null;

function iabtcfBits(key, value) {
  if (typeof value !== 'string' || !/^[01]*$/.test(value)) throw bad(`${key} must be a binary string of '0'/'1' (position n is id n+1), got ${JSON.stringify(value)}`);
  return new Set([...value].flatMap((ch, i) => (ch === '1' ? [i + 1] : [])));
}

function iabtcfRestrictions(key, value) {
  if (typeof value !== 'string' || !/^[012_]*$/.test(value)) throw bad(`${key} must be a string of restriction types '0'/'1'/'2' per vendor ('_': none), got ${JSON.stringify(value)}`);
  return new Map([...value].flatMap((ch, i) => (ch === '_' ? [] : [[i + 1, Number(ch)]])));
}

function iabtcfScalar(key, value) {
  if (key === 'IABTCF_PublisherCC') {
    if (typeof value !== 'string' || !/^[A-Za-z]{2}$/.test(value)) throw bad(`${key} must be a two-letter country code, got ${JSON.stringify(value)}`);
    return value.toUpperCase();
  }
  const ok = (Number.isInteger(value) && value >= 0 && typeof value === 'number') || (typeof value === 'string' && /^\s*\d+\s*$/.test(value));
  if (!ok) throw bad(`${key} must be an unsigned integer, got ${JSON.stringify(value)}`);
  const n = Number(value);
  return key === 'IABTCF_PurposeOneTreatment' ? Boolean(n) : n;
}

const sameSet = (a, b) => a.size === b.size && [...a].every((x) => b.has(x));
const sameMap = (a, b) => a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
const mapText = (m) => JSON.stringify(Object.fromEntries(m));

/**
 * Where the pre-parsed IABTCF_* keys disagree with the TC string they were parsed from (empty: they agree).
 * Only keys that are present are compared; an unreadable key throws ProtocolError (bad_consent_signal).
 */
export function iabtcfMismatches(prefs, tcf) {
  const out = [];
  for (const [key, attr] of Object.entries(IABTCF_BIT_KEYS)) {
    const v = prefGet(prefs, key);
    if (!present(v)) continue;
    const keys = iabtcfBits(key, v);
    const string = tcf[attr];
    if (!sameSet(keys, string)) {
      out.push(`${key} sets [${setOf([...keys].filter((x) => !string.has(x))).join(', ')}] and clears [${setOf([...string].filter((x) => !keys.has(x))).join(', ')}] relative to IABTCF_TCString`);
    }
  }
  for (const [key, attr] of Object.entries(IABTCF_SCALAR_KEYS)) {
    const v = prefGet(prefs, key);
    if (!present(v)) continue;
    const value = iabtcfScalar(key, v);
    if (value !== tcf[attr]) out.push(`${key} is ${JSON.stringify(value)}, IABTCF_TCString says ${JSON.stringify(tcf[attr])}`);
  }
  for (const key of prefKeys(prefs).filter((k) => k.startsWith(IABTCF_RESTRICTIONS_PREFIX)).sort()) {
    const v = prefGet(prefs, key);
    if (!present(v)) continue;
    const purposeText = key.slice(IABTCF_RESTRICTIONS_PREFIX.length);
    if (!/^\d+$/.test(purposeText)) throw bad(`${key}: the key must end in a purpose id, e.g. IABTCF_PublisherRestrictions3`);
    const purpose = Number(purposeText);
    const keys = iabtcfRestrictions(key, v);
    const string = new Map([...tcf.restrictions].flatMap(([pv, t]) => {
      const [p, vendor] = pv.split(':').map(Number);
      return p === purpose ? [[vendor, t]] : [];
    }));
    if (!sameMap(keys, string)) out.push(`${key} restricts vendors ${mapText(keys)}, IABTCF_TCString restricts ${mapText(string)} for purpose ${purpose}`);
  }
  return out;
}

/**
 * Device signals from the IABTCF_* key/values CMPs store for in-app use (Android SharedPreferences, iOS
 * NSUserDefaults; IAB Tech Lab, CMP API v2, "In-App Details"): {tc_string, gdpr_applies}.  The pre-parsed keys are
 * cross-checked against IABTCF_TCString and a disagreement throws ProtocolError naming the key (nothing trains);
 * the keys alone, without a TC string, are not accepted (tc_string null: tcf_missing); a string that does not
 * decode passes through (tcf_unreadable).  The same rule as fedmark.contract.consent.signals_from_iabtcf.
 */
export function signalsFromIabtcf(prefs) {
  const tcString = prefGet(prefs, 'IABTCF_TCString');
  const gdpr = prefGet(prefs, 'IABTCF_gdprApplies');
  const signals = { tc_string: tcString, gdpr_applies: gdpr === undefined ? null : gdpr };
  if (typeof tcString !== 'string' || !tcString.trim()) return { ...signals, tc_string: null };
  let tcf;
  try {
    tcf = decodeTCString(tcString);
  } catch (exc) {
    if (exc instanceof ProtocolError) return signals;
    throw exc;
  }
  const wrong = iabtcfMismatches(prefs, tcf);
  if (wrong.length) {
    throw bad(`the CMP's stored IABTCF_* values disagree with its TC string (nothing trains until the CMP stores them again): ${wrong.join('; ')}`);
  }
  return signals;
}
