// A device's part of data preparation (the twin of edge_sdk/statistics.py): the quality rules before training,
// and its contribution to a statistics task.
//
// Why one module: the order is the privacy design, the same for training and measuring — a record whose
// consent does not cover the purpose (or whose subject withdrew) is never looked at; a record that breaks a
// quality rule is neither trained on nor measured; what leaves the device is only the sums and counts of
// localStatistics and counts of rule violations and exclusions.  A manifest or task whose rules this SDK
// cannot read is refused: training (or measuring) every record would break "failing records never train".

import { ERR_BAD_ANSWER } from './codes.js';
import { parseRequirement } from './consent_signals.js';
import { ProtocolError, RowError } from './contract_errors.js';
import { ConsentError, ServerError } from './errors.js';
import { sha256Hex } from './hashing.js';
import { requiredPurposes } from './protocol.js';
import { pyFloatRepr, pyRepr } from './pycompat.js';
import { StatisticsError, StatisticsPlan, checkRecords, hasRules, localStatistics, pyCompare } from './statistics.js';
import { decideRecords, nothingAllowed } from './withdrawal.js';

function nonZero(counts) {
  return Object.fromEntries(Object.entries(counts).filter(([, n]) => n));
}

/**
 * Quality rules before training: {passing: rows that pass, errors: a RowError per broken rule, violations:
 * {rule: records breaking it} (non-zero only)}.  `rules` is a manifest's features.rules (null: no rules, every
 * row passes); `rows` are the caller's indices of `records` to check (the consented ones).
 */
export function ruleCheck(records, rules, rows) {
  if (!hasRules(rules)) return { passing: [...rows], errors: [], violations: {} };
  let plan;
  try {
    plan = StatisticsPlan.fromDeclaration(rules, { measuring: false });
  } catch (exc) {
    if (exc instanceof StatisticsError) {
      throw new ServerError(200, ERR_BAD_ANSWER, `the model's quality rules are unusable: ${exc.message}`);
    }
    throw exc;
  }
  const checked = checkRecords(rows.map((i) => records[i]), plan);
  const errors = [];
  rows.forEach((i, j) => {
    for (const rule of checked.broken[j]) errors.push(new RowError(i, rule.split(':')[0], `breaks quality rule ${rule}`));
  });
  return { passing: rows.filter((_, j) => checked.passed[j]), errors, violations: nonZero(checked.violations) };
}

/**
 * The device's contribution to a statistics `task` (the server's task document) from `records`:
 * {body, used, excludedNoConsent, failedRules}, as edge_sdk.statistics.measure.  `withdrawn`: a test of
 * records whose subject withdrew consent (null: none).
 */
export function measure(records, task, { consentField = 'consent', withdrawn = null } = {}) {
  let plan;
  try {
    plan = StatisticsPlan.fromDeclaration(task?.declaration);
  } catch (exc) {
    if (!(exc instanceof StatisticsError)) throw exc;
    throw new ServerError(200, ERR_BAD_ANSWER, `the statistics task's declaration is unusable: ${exc.message}`);
  }
  const named = task.consent_purposes || [];
  if (!Array.isArray(named) || !named.every((p) => typeof p === 'string')) {
    throw new ServerError(200, ERR_BAD_ANSWER, `the task's consent_purposes must be a list, got ${pyRepr(named)}`);
  }
  const purposes = requiredPurposes(named, typeof task.purpose === 'string' ? task.purpose : null, 'analytics');
  let requirement;
  try {
    requirement = parseRequirement(task.consent_signals ?? null, purposes);
  } catch (exc) {
    if (!(exc instanceof ProtocolError)) throw exc;
    throw new ServerError(200, ERR_BAD_ANSWER, `the statistics task's consent_signals: ${exc.message}`);
  }
  const decided = decideRecords(records, requirement, null, consentField, withdrawn);
  const consented = records.filter((_, i) => decided.allowed[i]);
  if (!consented.length) throw new ConsentError(nothingAllowed(records, requirement, decided, consentField));
  const checked = checkRecords(consented, plan);
  const passing = consented.filter((_, i) => checked.passed[i]);
  const body = localStatistics(passing, plan);
  body.violations = nonZero(checked.violations);
  body.excluded = { consent: records.length - consented.length, rules: checked.failed };
  return { body, used: passing.length, excludedNoConsent: records.length - consented.length,
    failedRules: checked.failed };
}

function pyJsonString(s) {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\b') out += '\\b';
    else if (ch === '\f') out += '\\f';
    else if (cp >= 0x20 && cp <= 0x7e) out += ch;
    else {
      for (let i = 0; i < ch.length; i += 1) out += `\\u${ch.charCodeAt(i).toString(16).padStart(4, '0')}`;
    }
  }
  return `${out}"`;
}

function dumps(v, path) {
  if (typeof v === 'string') return pyJsonString(v);
  if (typeof v === 'number') {
    const float = path.length === 3 && path[0] === 'columns' && (path[2] === 'sum' || path[2] === 'sumsq');
    return float ? pyFloatRepr(v) : String(v);
  }
  if (v === null) return 'null';
  const keys = Object.keys(v).sort(pyCompare);
  return `{${keys.map((k) => `${pyJsonString(k)}: ${dumps(v[k], [...path, k])}`).join(', ')}}`;
}

/**
 * A statistics body's bytes exactly as the Python SDK sends them (json.dumps(body, sort_keys=True): sorted
 * keys, ", " and ": ", ASCII escapes, sums as Python floats), so the same contribution has the same
 * Idempotency-Key from either SDK.
 */
export function statisticsBodyBytes(body) {
  return new TextEncoder().encode(dumps(body, []));
}

/** The same contribution (task and body) always travels under the same key, so a retry replays. */
export async function idempotencyKey(taskId, body) {
  const prefix = new TextEncoder().encode(`${taskId}|`);
  const all = new Uint8Array(prefix.length + body.length);
  all.set(prefix);
  all.set(body, prefix.length);
  return `stats-${(await sha256Hex(all)).slice(-40)}`;
}
