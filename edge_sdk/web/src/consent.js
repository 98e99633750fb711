// Consent: which records may be used for the purpose a model serves
// (the same rules as edge_sdk/consent.py).
//
// Every record carries the purposes its owner consented to in a `consent`
// field — an array of purposes or a comma-separated string such as
// "marketing,analytics".  The manifest names the model's purpose.  Records
// without it are dropped before validation, training or scoring see them, so
// their values can never influence an update; only their count is reported.

export const CONSENT_FIELD = 'consent';

/** The consented purposes (lower-cased) in a consent value; empty when absent or unreadable. */
export function parsePurposes(value) {
  let items;
  if (typeof value === 'string') items = value.split(',');
  else if (Array.isArray(value) || value instanceof Set) items = [...value];
  else return new Set();
  return new Set(items.filter((p) => typeof p === 'string' && p.trim()).map((p) => p.trim().toLowerCase()));
}

/** True iff the record's consent field names `purpose` (case-insensitive). */
export function hasConsent(record, purpose, field = CONSENT_FIELD) {
  if (record === null || typeof record !== 'object' || Array.isArray(record)) return false;
  const value = record instanceof Map ? record.get(field) : (Object.hasOwn(record, field) ? record[field] : undefined);
  return parsePurposes(value).has(String(purpose).trim().toLowerCase());
}

/** {used: indices that may be used, excluded: how many may not} — excluded records are only counted. */
export function splitByConsent(records, purpose, field = CONSENT_FIELD) {
  const used = [];
  records.forEach((r, i) => { if (hasConsent(r, purpose, field)) used.push(i); });
  return { used, excluded: records.length - used.length };
}
