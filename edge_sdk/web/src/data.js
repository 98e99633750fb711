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
import { ruleCheck } from './device_statistics.js';

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
 * Consent-filter and encode records for any supervised tabular family (binary, regression, multiclass).
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
  // quality rules first (features.rules, issue #15): a record that breaks one never trains
  const rules = ruleCheck(records, manifest.features?.rules ?? null, used);
  const passing = rules.passing;
  const enc = schema.encode(passing.map((i) => records[i]), { withLabel, strict: false });
  const rowErrors = [...rules.errors, ...enc.errors.map((e) => new RowError(passing[e.row], e.column, e.reason))];
  const bad = new Set(enc.errors.map((e) => passing[e.row]));
  const passed = new Set(passing);
  for (const i of used) if (!passed.has(i)) bad.add(i);
  const kept = enc.kept.map((j) => passing[j]);
  const report = { total: records.length, used: kept.length, excludedNoConsent: excluded, rejected: bad.size, rowErrors,
    ruleViolations: rules.violations };
  if (rowErrors.length && (strict || !kept.length)) {
    throw new SchemaError(`${bad.size} of ${used.length} consented record(s) do not match the model's schema`, rowErrors);
  }
  return { x: enc.x, y: enc.y, rows: enc.rows, width: enc.width, kept, report };
}

/** Item / customer codes as text; a whole-number float (17850.0 from a table) loses its '.0' (as the Python SDK). */
function code(v) {
  return typeof v === 'number' && Number.isInteger(v) ? String(v) : String(v);
}

/**
 * Consent-filter interaction records and map item codes to the model's item indices (as edge_sdk/data.py
 * prepare_interactions).  Returns {items: sorted unique item indices, report}.  Items the model does not know
 * are skipped and counted; a missing item code is a row error; records naming two customers are refused (a
 * device trains for one customer).  `allowed`: the per-record consent decision (withdrawal.js decideRecords).
 */
export function prepareInteractions(records, manifest, { strict = false, consentField = CONSENT_FIELD, purposes = null,
  allowed = null } = {}) {
  const feats = manifest.features ?? {};
  if (typeof feats.user_column !== 'string' || typeof feats.item_column !== 'string' || !Array.isArray(feats.items)) {
    throw new SchemaError("the model's manifest has no interaction schema (user_column, item_column, items)");
  }
  const userCol = feats.user_column;
  const itemCol = feats.item_column;
  const catalogue = new Map(feats.items.map((c, i) => [String(c), i]));
  const { used, excluded } = consented(records, manifest, consentField, purposes, allowed);
  if (!used.some((i) => Object.hasOwn(records[i], itemCol))) {
    throw new SchemaError(`column(s) ${JSON.stringify([itemCol])} are absent from every record; the model expects columns `
      + `${JSON.stringify([itemCol])} — rename your fields to match`);
  }
  const errors = [];
  const users = new Set();
  const items = new Set();
  let unknown = 0;
  for (const i of used) {
    const rec = records[i];
    const c = rec[itemCol];
    if (c === null || c === undefined || c === '' || (typeof c === 'number' && Number.isNaN(c))) {
      errors.push(new RowError(i, itemCol, 'item code is missing'));
      continue;
    }
    const u = rec[userCol];
    if (u !== null && u !== undefined && u !== '' && !(typeof u === 'number' && Number.isNaN(u))) users.add(code(u));
    const idx = catalogue.get(code(c));
    if (idx === undefined) unknown += 1;
    else items.add(idx);
  }
  if (users.size > 1) {
    throw new SchemaError(`records name ${users.size} different customers in '${userCol}'; a device trains and `
      + "personalises for one customer — pass one customer's records");
  }
  const report = { total: records.length, used: used.length - errors.length - unknown, excludedNoConsent: excluded,
    rejected: errors.length, skippedUnknownItems: unknown, rowErrors: errors };
  if (errors.length && strict) throw new SchemaError(`${errors.length} consented record(s) are unusable`, errors);
  return { items: [...items].sort((a, b) => a - b), report };
}
