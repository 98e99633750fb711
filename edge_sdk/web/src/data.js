// Local data: consent first, then the manifest's schema (as edge_sdk/data.py).
//
// Training, scoring and evaluation must see exactly the same filtering, or a
// record excluded from training could leak into a metric.  Row numbers in
// every report are 0-based positions in the caller's input.

import { ContractError, RowError } from './contract_errors.js';
import { CONSENT_FIELD, splitByConsent } from './consent.js';
import { ConfigurationError, ConsentError, SchemaError } from './errors.js';
import { requiredPurposes } from './protocol.js';
import { pyRepr } from './pycompat.js';

/** Check the app's input: an array of plain objects. */
export function loadRecords(records) {
  if (!Array.isArray(records)) {
    throw new ConfigurationError('records must be an array of objects (one per customer record); wrap a single record in an array');
  }
  const errors = [];
  records.forEach((r, i) => {
    if (r === null || typeof r !== 'object' || Array.isArray(r)) errors.push(new RowError(i, '*', `expected an object, got ${Array.isArray(r) ? 'array' : typeof r}`));
  });
  if (errors.length) throw new SchemaError('records must be objects of column -> value', errors);
  return records;
}

/**
 * Records whose consent covers `purposes` (a task's; default: the manifest's purpose), or, with `allowed`
 * (one boolean per record, the standard-signal decision of withdrawal.js decideRecords), the allowed ones.
 */
function consented(records, manifest, field, purposes, allowed = null) {
  if (allowed) {
    const used = [];
    allowed.forEach((ok, i) => { if (ok) used.push(i); });
    if (!used.length) throw new ConsentError(`none of the ${records.length} record(s) may be used for this task's purpose`);
    return { used, excluded: records.length - used.length };
  }
  const needed = purposes?.length ? [...purposes] : requiredPurposes([], null, manifest.purpose);
  const { used, excluded } = splitByConsent(records, needed, field);
  if (!used.length) {
    const shown = needed.length === 1 ? `purpose ${pyRepr(needed[0])}` : `purposes ${needed.map(pyRepr).join(', ')}`;
    throw new ConsentError(`none of the ${records.length} record(s) carries consent for ${shown} in `
      + `field '${field}' (an array or comma-separated string of purposes); nothing may be used`);
  }
  return { used, excluded };
}

/**
 * Consent-filter and encode records for the propensity family.
 * Returns {x, y, rows, width, kept, report}: `kept` holds the caller's index of each row of x.
 * `purposes`: what a record's consent must cover — a task's `requiredPurposes(manifest.purpose)`;
 * null outside a task (scoring): the manifest's purpose.  `allowed`: the per-record consent decision, which then
 * replaces the purpose check (a training task's consent_signals).
 */
export function prepareTabular(records, manifest, { withLabel = true, strict = false, consentField = CONSENT_FIELD,
  purposes = null, allowed = null } = {}) {
  let schema;
  try {
    schema = manifest.schema();
  } catch (exc) {
    if (exc instanceof ContractError) throw new SchemaError(`the model's manifest has no usable feature schema: ${exc.message}`);
    throw exc;
  }
  const { used, excluded } = consented(records, manifest, consentField, purposes, allowed);
  const names = [...schema.columns.map((c) => c.name), ...(withLabel && schema.label ? [schema.label] : [])];
  const seen = new Set();
  for (const i of used) for (const k of Object.keys(records[i])) seen.add(k);
  const absent = names.filter((n) => !seen.has(n));
  if (absent.length) {
    throw new SchemaError(`column(s) ${JSON.stringify(absent)} are absent from every record; the model expects columns `
      + `${JSON.stringify(names)} — rename your fields to match`);
  }
  const enc = schema.encode(used.map((i) => records[i]), { withLabel, strict: false });
  const rowErrors = enc.errors.map((e) => new RowError(used[e.row], e.column, e.reason));
  const bad = new Set(enc.errors.map((e) => used[e.row]));
  const kept = enc.kept.map((j) => used[j]);
  const report = { total: records.length, used: kept.length, excludedNoConsent: excluded, rejected: bad.size, rowErrors };
  if (rowErrors.length && (strict || !kept.length)) {
    throw new SchemaError(`${bad.size} of ${used.length} consented record(s) do not match the model's schema`, rowErrors);
  }
  return { x: enc.x, y: enc.y, rows: enc.rows, width: enc.width, kept, report };
}
