// Consent: which records may be used for the purpose a model serves
// (the same rules as edge_sdk/consent.py).
//
// Every record carries the purposes its owner consented to in a `consent`
// field — an array of purposes or a comma-separated string such as
// "marketing,analytics".  A training task names the purposes a record must
// have consented to (consent_purposes); scoring outside a task uses the
// manifest's purpose (the contract's rule: requiredPurposes in protocol.js).
// Records whose consent does not cover every required purpose are dropped
// before validation, training or scoring see them, so their values can never
// influence an update; only their count is reported.

import { consentCovers } from './protocol.js';

export const CONSENT_FIELD = 'consent';

/** The consented purposes (lower-cased) in a consent value; empty when absent or unreadable. */
export function parsePurposes(value) {
  let items;
  if (typeof value === 'string') items = value.split(',');
  else if (Array.isArray(value) || value instanceof Set) items = [...value];
  else return new Set();
  return new Set(items.filter((p) => typeof p === 'string' && p.trim()).map((p) => p.trim().toLowerCase()));
}

function consentValue(record, field) {
  return record instanceof Map ? record.get(field) : (Object.hasOwn(record, field) ? record[field] : undefined);
}

/** True iff the record's consent field names `purpose` (case-insensitive). */
export function hasConsent(record, purpose, field = CONSENT_FIELD) {
  return hasConsents(record, [purpose], field);
}

/** True iff the record's consent field names every purpose in `purposes` (case-insensitive). */
export function hasConsents(record, purposes, field = CONSENT_FIELD) {
  if (record === null || typeof record !== 'object' || Array.isArray(record)) return false;
  return consentCovers(parsePurposes(consentValue(record, field)), purposes);
}

/**
 * {used: indices that may be used, excluded: how many may not} — excluded records are only counted.
 * `purpose`: one purpose, or an array of purposes that must all be covered.
 */
export function splitByConsent(records, purpose, field = CONSENT_FIELD) {
  const purposes = Array.isArray(purpose) ? purpose : [purpose];
  const used = [];
  records.forEach((r, i) => { if (hasConsents(r, purposes, field)) used.push(i); });
  return { used, excluded: records.length - used.length };
}
