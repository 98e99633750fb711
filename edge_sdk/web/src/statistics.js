// Device quality rules and local feature statistics (as fedmark/contract/statistics.py).
//
// Why a twin of the Python module: a manifest's `features.rules` decides which records may train.  If a
// browser or Node device read those rules differently from a Python device, records one SDK refuses
// would train on the other, and "failing records never train" would hold only for some devices.  So the
// declaration reader, the rule names, the per-record decision, the error messages (quoted with Python's
// repr) and the local statistics body are the Python module's; tests/web/make_vectors.py records what it
// decides and tests/web/js/rules.test.mjs demands the same here.  Fitting a schema and the server's
// reading of a body (fit_from_totals, parse_contribution) are not ported: no device does either.

import { ContractError } from './contract_errors.js';
import { parseBool, signedLog1p } from './features.js';
import { ConversionError, isMapping, pyFloat, pyRepr, pyStr } from './pycompat.js';

export const DEFAULT_MAX_VALUES = 64;
export const MAX_COLUMNS = 256;
export const MAX_VALUE_CHARS = 64;
const KINDS = ['numeric', 'categorical', 'boolean', 'hash'];

/** A plan or a contribution that does not fit; `code` is the machine-readable reason. */
export class StatisticsError extends ContractError {
  constructor(message, code = 'bad_statistics') {
    super(message);
    this.code = code;
  }
}

/** Python's truthiness for JSON values (NaN is truthy there; {} and [] are not). */
function pyTruthy(v) {
  if (v === null || v === undefined || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (v instanceof Map) return v.size > 0;
  if (isMapping(v)) return Object.keys(v).length > 0;
  return true;
}

function isMissing(v) {
  return v === undefined || v === null || v === '' || (typeof v === 'number' && Number.isNaN(v));
}

function get(rec, key) {
  if (rec instanceof Map) return rec.get(key);
  return Object.hasOwn(rec, key) ? rec[key] : undefined;
}

function getOr(d, key, fallback) {
  if (d instanceof Map) return d.has(key) ? d.get(key) : fallback;
  return Object.hasOwn(d, key) ? d[key] : fallback;
}

function entries(d) {
  return d instanceof Map ? [...d.entries()] : Object.entries(d);
}

/** A Python int or float (bool included, as isinstance(x, (int, float)) says) as a number, else null. */
function pyReal(x) {
  if (typeof x === 'number') return x;
  if (typeof x === 'boolean') return x ? 1 : 0;
  return null;
}

/** One measured column: its kind (numeric | categorical | boolean | hash), clip range and rules. */
export class StatColumn {
  constructor({ name, kind, lo = 0.0, hi = 0.0, transform = '', required = false, allowed = null, checkRange = false,
    maxValues = DEFAULT_MAX_VALUES, spec = {} }) {
    Object.assign(this, { name, kind, lo, hi, transform, required, allowed: allowed && Object.freeze([...allowed]),
      checkRange, maxValues, spec });
    Object.freeze(this);
  }

  _t(x) {
    return this.transform ? signedLog1p(x) : x;
  }

  /** The middle of the declared range (transformed units): values travel as offsets from it. */
  get center() {
    return (this._t(this.lo) + this._t(this.hi)) / 2;
  }

  /** The measured value: clipped to the range, transformed, as an offset from the center (null: unparseable). */
  value(v) {
    let x;
    try {
      x = pyFloat(v);
    } catch (exc) {
      if (exc instanceof ConversionError) return null;
      throw exc;
    }
    if (!Number.isFinite(x)) return null;
    return this._t(Math.min(Math.max(x, this.lo), this.hi)) - this.center;
  }
}

function column(name, raw, { label = false, task = 'binary', measuring = true } = {}) {
  let spec;
  if (typeof raw === 'string') spec = { kind: raw };
  else if (isMapping(raw)) spec = Object.fromEntries(entries(raw));
  else throw new StatisticsError(`column ${pyRepr(name)}: spec must be a kind or an object, got ${pyRepr(raw)}`, 'bad_plan');
  let kind = spec.kind;
  if (label) kind = task === 'regression' ? 'numeric' : 'categorical';
  if (!KINDS.includes(kind)) {
    throw new StatisticsError(`column ${pyRepr(name)}: kind must be numeric, categorical, boolean or hash`, 'bad_plan');
  }
  const allowed = spec.allowed ?? null;
  if (allowed !== null && (!Array.isArray(allowed) || !allowed.every((a) => typeof a === 'string'))) {
    throw new StatisticsError(`column ${pyRepr(name)}: allowed must be a list of strings`, 'bad_plan');
  }
  let lo = 0.0;
  let hi = 0.0;
  if (kind === 'numeric' && (measuring || (spec.range ?? null) !== null)) {
    const rng = spec.range ?? null;
    const nums = Array.isArray(rng) ? rng.map(pyReal) : [];
    if (!Array.isArray(rng) || rng.length !== 2 || nums.some((x) => x === null) || !(nums[0] < nums[1])
        || !nums.every(Number.isFinite)) {
      throw new StatisticsError(`column ${pyRepr(name)}: a numeric column measured federatedly needs a declared `
        + `'range': [lo, hi] with lo < hi (values are clipped to it), got ${pyRepr(rng)}`, 'bad_plan');
    }
    [lo, hi] = nums;
  }
  const mv = Object.hasOwn(spec, 'max_values') ? spec.max_values : DEFAULT_MAX_VALUES;
  if (!Number.isInteger(mv) || mv < 1 || mv > 1024) {
    throw new StatisticsError(`column ${pyRepr(name)}: max_values must be an integer from 1 to 1024`, 'bad_plan');
  }
  const transform = pyTruthy(spec.transform) ? pyStr(spec.transform) : '';
  const required = pyTruthy(Object.hasOwn(spec, 'required') ? spec.required : label);
  return new StatColumn({ name, kind, lo, hi, transform, required, allowed, checkRange: pyTruthy(spec.range_rule),
    maxValues: mv, spec });
}

/** What a statistics task measures (or a manifest's rules check): the declared columns and the label. */
export class StatisticsPlan {
  constructor(columns, label = null, task = 'binary', positive = null, declaration = {}) {
    Object.assign(this, { columns: Object.freeze([...columns]), label, task, positive, declaration });
    Object.freeze(this);
  }

  /** The columns whose statistics travel (hash columns need none), label last. */
  get measured() {
    return [...this.columns.filter((c) => c.kind !== 'hash'), ...(this.label ? [this.label] : [])];
  }

  /** Read a declaration; `measuring: false` (quality rules only, a manifest's features.rules) needs no ranges. */
  static fromDeclaration(decl, { measuring = true } = {}) {
    if (!isMapping(decl)) throw new StatisticsError("the declaration must be a JSON object with 'columns'", 'bad_plan');
    const cols = get(decl, 'columns');
    const named = isMapping(cols) ? entries(cols) : [];
    if (!named.length || named.length > MAX_COLUMNS) {
      throw new StatisticsError(`the declaration needs 'columns': {name: spec} (1 to ${MAX_COLUMNS})`, 'bad_plan');
    }
    const task = getOr(decl, 'task', 'binary');
    const labelName = get(decl, 'label') ?? null;
    let label = null;
    if (labelName !== null) {
      if (typeof labelName !== 'string' || named.some(([n]) => n === labelName)) {
        throw new StatisticsError("'label' must name a column that is not a feature", 'bad_plan');
      }
      const labelSpec = getOr(decl, 'label_spec', {});
      label = column(labelName, pyTruthy(labelSpec) ? labelSpec : { kind: 'categorical' },
        { label: true, task, measuring });
    }
    const positive = get(decl, 'positive') ?? null;
    return new StatisticsPlan(named.map(([n, s]) => column(n, s, { measuring })), label, pyStr(task),
      positive === null ? null : pyStr(positive), decl);
  }
}

/** Every rule a record is checked against, `column:rule`, in plan order. */
export function ruleNames(plan) {
  const out = [];
  for (const c of [...plan.columns, ...(plan.label ? [plan.label] : [])]) {
    if (c.required) out.push(`${c.name}:required`);
    if (c.kind === 'numeric' || c.kind === 'boolean') out.push(`${c.name}:type`);
    if (c.kind === 'numeric' && c.checkRange) out.push(`${c.name}:range`);
    if (c.allowed !== null) out.push(`${c.name}:allowed`);
  }
  return out;
}

/**
 * The device's quality rules, applied before measuring or training.  Returns {passed: boolean per record,
 * violations: {rule: records breaking it} over every rule, broken: per record the rules it broke}.
 */
export function checkRecords(records, plan) {
  const violations = Object.fromEntries(ruleNames(plan).map((n) => [n, 0]));
  const passed = [];
  const broken = [];
  const cols = [...plan.columns, ...(plan.label ? [plan.label] : [])];
  for (const rec of records) {
    if (!isMapping(rec)) {
      passed.push(false);
      broken.push(['*:mapping']);
      continue;
    }
    const mine = [];
    for (const c of cols) {
      const v = get(rec, c.name);
      const missing = isMissing(v);
      const broke = [];
      if (missing) {
        if (c.required) broke.push('required');
      } else if (c.kind === 'numeric') {
        let x;
        try {
          x = pyFloat(v);
        } catch (exc) {
          if (!(exc instanceof ConversionError)) throw exc;
          x = NaN;
        }
        if (!Number.isFinite(x)) broke.push('type');
        else if (c.checkRange && !(c.lo <= x && x <= c.hi)) broke.push('range');
      } else if (c.kind === 'boolean' && parseBool(v) === null) {
        broke.push('type');
      }
      if (!missing && c.allowed !== null && !c.allowed.includes(pyStr(v))) broke.push('allowed');
      for (const b of broke) {
        violations[`${c.name}:${b}`] += 1;
        mine.push(`${c.name}:${b}`);
      }
    }
    passed.push(!mine.length);
    broken.push(mine);
  }
  return { passed, violations, broken, failed: passed.filter((p) => !p).length };
}

/** True when a manifest's `features.rules` holds any rule (Python: `if not rules`). */
export function hasRules(rules) {
  return pyTruthy(rules);
}

/**
 * Python's math.fsum: the correctly rounded sum (Shewchuk's partials, then round-half-even on the last
 * partials, as CPython does), so a device's column sums are the Python SDK's to the last bit, whatever the
 * order of additions.  Inputs are finite (values are clipped to the declared range).
 */
export function fsum(values) {
  const partials = [];
  for (let x of values) {
    let i = 0;
    for (let j = 0; j < partials.length; j += 1) {
      let y = partials[j];
      if (Math.abs(x) < Math.abs(y)) [x, y] = [y, x];
      const hi = x + y;
      const lo = y - (hi - x);
      if (lo) partials[i++] = lo;
      x = hi;
    }
    partials.length = i;
    partials.push(x);
  }
  let n = partials.length;
  if (!n) return 0.0;
  let hi = partials[--n];
  let lo = 0.0;
  while (n > 0) {
    const x = hi;
    const y = partials[--n];
    hi = x + y;
    lo = y - (hi - x);
    if (lo) break;
  }
  if (n > 0 && ((lo < 0 && partials[n - 1] < 0) || (lo > 0 && partials[n - 1] > 0))) {
    const y = lo * 2;
    const x = hi + y;
    if (y === x - hi) hi = x;
  }
  return hi;
}

/** Python's string order (code points, not UTF-16 units). */
export function pyCompare(a, b) {
  const x = Array.from(a);
  const y = Array.from(b);
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

/**
 * The sufficient statistics of `records` (already consent-filtered and rule-checked): the body's core, as
 * local_statistics: {records: n, columns: {name: {count, sum, sumsq, missing} | {values: {v: n}, missing[, other]}}}.
 * More than `max_values` distinct values: the most frequent ones travel and the rest count as "other".
 */
export function localStatistics(records, plan) {
  const out = {};
  for (const c of plan.measured) {
    const vals = records.map((r) => get(r, c.name));
    if (c.kind === 'numeric') {
      const xs = vals.filter((v) => !isMissing(v)).map((v) => c.value(v));
      const nums = xs.filter((x) => x !== null);
      out[c.name] = { count: nums.length, sum: fsum(nums), sumsq: fsum(nums.map((x) => x * x)),
        missing: vals.length - xs.length };
    } else {
      const counts = new Map();
      for (const v of vals) {
        if (!isMissing(v)) {
          const key = Array.from(pyStr(v)).slice(0, MAX_VALUE_CHARS).join('');
          counts.set(key, (counts.get(key) ?? 0) + 1);
        }
      }
      const top = [...counts.entries()].sort((a, b) => b[1] - a[1] || pyCompare(a[0], b[0]));
      const entry = { values: Object.fromEntries(top.slice(0, c.maxValues)), missing: vals.filter(isMissing).length };
      if (top.length > c.maxValues) entry.other = top.slice(c.maxValues).reduce((n, [, k]) => n + k, 0);
      out[c.name] = entry;
    }
  }
  return { records: records.length, columns: out };
}
