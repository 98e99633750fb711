// Feature encoding: customer records -> the float32 rows the model trains on.
//
// Why byte-for-byte with fedmark/contract.py: a model is exported once and
// trained on Python devices and browsers alike; if a browser encoded "age" or
// "city" differently, its updates would pull the shared model towards a
// different input space.  The rules (numeric standardise + fill, one-hot with
// an unknown slot, CRC-32 hash buckets), the row-error cases and the float32
// rounding are the Python module's; tests compare encoded rows with it.

import { ManifestError, RowError, SchemaError } from './contract_errors.js';
import { crc32 } from './hashing.js';
import { ConversionError, isMapping, pyFloat, pyFloatRepr, pyInt, pyRepr, pyStr, pyTypeName } from './pycompat.js';

/** Stable across languages and processes: zlib.crc32(utf-8 value) % buckets. */
export function hashBucket(value, buckets) {
  return crc32(String(value)) % buckets;
}

function field(d, key, fallback) {
  return Object.hasOwn(d, key) ? d[key] : fallback;
}

function manifestFloat(v, what) {
  try {
    return pyFloat(v);
  } catch (exc) {
    if (exc instanceof ConversionError) throw new ManifestError(`${what}: ${exc.message}`);
    throw exc;
  }
}

export const COLUMN_KINDS = Object.freeze(['numeric', 'onehot', 'hash', 'boolean', 'index']);
export const NUMERIC_TRANSFORMS = Object.freeze(['', 'log1p']);
export const LABEL_TASKS = Object.freeze(['binary', 'regression', 'multiclass']);
const TRUE_WORDS = new Set(['true', '1', 'yes', 'y', 't']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'n', 'f']);
const PY_STRIP_RE = /^[\s\u001c-\u001f\u0085]+|[\s\u001c-\u001f\u0085]+$/g; // Python's str.strip() set

/** Python's repr of a tuple of strings, for messages that quote NUMERIC_TRANSFORMS. */
const TRANSFORMS_REPR = `(${NUMERIC_TRANSFORMS.map(pyRepr).join(', ')})`;

/** fedmark.contract.parse_bool: true/false for a boolean-like value, null otherwise. */
export function parseBool(v) {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number' && (v === 0 || v === 1)) return v === 1;
  const text = pyStr(v).replace(PY_STRIP_RE, '').toLowerCase();
  if (TRUE_WORDS.has(text)) return true;
  if (FALSE_WORDS.has(text)) return false;
  return null;
}

/** sign(v)·log1p(|v|): the "log1p" numeric transform (fedmark.contract.signed_log1p). */
export function signedLog1p(v) {
  return v < 0 || Object.is(v, -0) ? -Math.log1p(-v) : Math.log1p(v);
}

function manifestInt(v, what) {
  try {
    return pyInt(v);
  } catch (exc) {
    if (exc instanceof ConversionError) throw new ManifestError(`${what}: ${exc.message}`);
    throw exc;
  }
}

/** One input column and the rule that encodes it (see Column in fedmark/contract/features.py). */
export class Column {
  constructor({ name, kind, mean = 0.0, std = 1.0, fill = null, vocabulary = [], buckets = 0, tailBuckets = 0,
    indicator = false, transform = '', embed = 0 }) {
    Object.assign(this, { name, kind, mean, std, fill, vocabulary: Object.freeze([...vocabulary]), buckets,
      tailBuckets, indicator, transform, embed });
    Object.freeze(this);
  }

  get width() {
    if (this.kind === 'numeric' || this.kind === 'boolean') return 1 + (this.indicator ? 1 : 0);
    if (this.kind === 'onehot') return this.cardinality;
    if (this.kind === 'index') return 1; // the category's slot as a float, for an Embedding inside the model
    return this.buckets;
  }

  /** How many distinct slots a category can take (onehot's width; an index column's Embedding rows). */
  get cardinality() {
    return this.vocabulary.length + Math.max(1, this.tailBuckets);
  }

  /** The slot of a categorical value (onehot, index): vocabulary position, else a tail bucket or the unknown slot. */
  categorySlot(v, missing, lookup) {
    const known = missing ? undefined : lookup.get(pyStr(v));
    if (known !== undefined) return known;
    if (this.tailBuckets) return this.vocabulary.length + hashBucket(missing ? '' : pyStr(v), this.tailBuckets);
    return this.vocabulary.length;
  }

  static fromJSON(d) {
    const kind = isMapping(d) ? d.kind : undefined;
    const name = isMapping(d) ? d.name : undefined;
    if (typeof name !== 'string' || !COLUMN_KINDS.includes(kind)) {
      throw new ManifestError(`bad column ${pyRepr(d)}: needs a name and kind ${COLUMN_KINDS.join('|')}`);
    }
    const indicator = field(d, 'indicator', false);
    if (typeof indicator !== 'boolean' || (indicator && kind !== 'numeric' && kind !== 'boolean')) {
      throw new ManifestError(`column ${pyRepr(name)}: indicator must be true/false, and only numeric or boolean `
        + 'columns take one');
    }
    if (kind === 'numeric') {
      const std = manifestFloat(field(d, 'std', 1.0), `column ${pyRepr(name)}: std`);
      if (!(std > 0)) throw new ManifestError(`column ${pyRepr(name)}: std must be > 0, got ${pyFloatRepr(std)}`);
      const fill = field(d, 'fill', null);
      const transform = field(d, 'transform', '');
      if (!NUMERIC_TRANSFORMS.includes(transform)) {
        throw new ManifestError(`column ${pyRepr(name)}: transform must be one of ${TRANSFORMS_REPR}, got `
          + `${pyRepr(transform)}`);
      }
      return new Column({
        name, kind, std, mean: manifestFloat(field(d, 'mean', 0.0), `column ${pyRepr(name)}: mean`),
        fill: fill === null || fill === undefined ? null : manifestFloat(fill, `column ${pyRepr(name)}: fill`),
        indicator, transform,
      });
    }
    if (kind === 'boolean') {
      const fill = manifestFloat(field(d, 'fill', 0.0), `column ${pyRepr(name)}: fill`);
      if (fill !== 0 && fill !== 1) {
        throw new ManifestError(`column ${pyRepr(name)}: a boolean fill must be 0 or 1, got ${pyFloatRepr(fill)}`);
      }
      return new Column({ name, kind, fill, indicator });
    }
    if (kind === 'onehot' || kind === 'index') {
      const vocab = field(d, 'vocabulary', null);
      if (!Array.isArray(vocab) || !vocab.length) {
        throw new ManifestError(`column ${pyRepr(name)}: ${kind} needs a non-empty vocabulary list`);
      }
      const tail = manifestInt(field(d, 'tail_buckets', 0), `column ${pyRepr(name)}: tail_buckets`);
      if (tail < 0 || tail === 1) {
        throw new ManifestError(`column ${pyRepr(name)}: tail_buckets must be 0 (one unknown slot) or >= 2, got ${tail}`);
      }
      const embed = kind === 'index' ? field(d, 'embed', 0) : 0;
      if (kind === 'index' && !(typeof embed === 'number' && Number.isInteger(embed) && embed >= 1)) {
        throw new ManifestError(`column ${pyRepr(name)}: an index column needs embed (the Embedding width) >= 1, `
          + `got ${pyRepr(embed)}`);
      }
      return new Column({ name, kind, vocabulary: vocab.map(pyStr), tailBuckets: tail, embed });
    }
    let buckets;
    try {
      buckets = pyInt(field(d, 'buckets', 0));
    } catch (exc) {
      if (!(exc instanceof ConversionError)) throw exc;
      throw new ManifestError(`column ${pyRepr(name)}: buckets: ${exc.message}`);
    }
    if (buckets < 2) throw new ManifestError(`column ${pyRepr(name)}: hash needs buckets >= 2`);
    return new Column({ name, kind, buckets });
  }
}

function isMissing(v) {
  return v === undefined || v === null || v === '' || (typeof v === 'number' && Number.isNaN(v));
}

function lookupValue(rec, key) {
  if (rec instanceof Map) return rec.get(key);
  return Object.hasOwn(rec, key) ? rec[key] : undefined;
}

/**
 * Tabular features: ordered columns and an optional label with its task (binary, regression, multiclass),
 * as fedmark.contract.FeatureSchema.  `encode()` returns row-major float32 rows, like the Python SDK's
 * [N, width] matrix, and labels as the schema encodes them (0/1, label units, class index).
 */
export class FeatureSchema {
  constructor(columns, label = null, positive = '1', { task = 'binary', classes = [], labelMean = 0.0,
    labelStd = 1.0, labelTransform = '' } = {}) {
    this.columns = Object.freeze([...columns]);
    this.label = label;
    this.positive = positive;
    this.task = task;
    this.classes = Object.freeze([...classes]);
    this.labelMean = labelMean;
    this.labelStd = labelStd;
    this.labelTransform = labelTransform;
    Object.freeze(this);
  }

  get width() {
    return this.columns.reduce((n, c) => n + c.width, 0);
  }

  static fromJSON(d) {
    const cols = isMapping(d) ? d.columns : undefined;
    if (!Array.isArray(cols) || !cols.length) throw new ManifestError('features.columns must be a non-empty list');
    const task = field(d, 'task', 'binary');
    if (!LABEL_TASKS.includes(task)) {
      throw new ManifestError(`features.task ${pyRepr(task)} is not one of ${LABEL_TASKS.join(', ')}`);
    }
    let classes = [];
    if (task === 'multiclass') {
      const raw = field(d, 'classes', null);
      if (!Array.isArray(raw) || raw.length < 2) {
        throw new ManifestError('features.classes must list at least two classes for a multiclass label');
      }
      classes = raw.map(pyStr);
      if (new Set(classes).size !== classes.length) throw new ManifestError('features.classes must not repeat a class');
    }
    const mean = manifestFloat(field(d, 'label_mean', 0.0), 'features.label_mean');
    const std = manifestFloat(field(d, 'label_std', 1.0), 'features.label_std');
    if (!(Number.isFinite(mean) && Number.isFinite(std) && std > 0)) {
      throw new ManifestError(`features.label_mean must be finite and label_std > 0, got ${pyFloatRepr(mean)}, `
        + `${pyFloatRepr(std)}`);
    }
    const labelTransform = field(d, 'label_transform', '');
    if (!NUMERIC_TRANSFORMS.includes(labelTransform)) {
      throw new ManifestError(`features.label_transform must be one of ${TRANSFORMS_REPR}, got ${pyRepr(labelTransform)}`);
    }
    const schema = new FeatureSchema(cols.map((c) => Column.fromJSON(c)), field(d, 'label', null),
      pyStr(field(d, 'positive', '1')), { task, classes, labelMean: mean, labelStd: std, labelTransform });
    const names = schema.columns.map((c) => c.name);
    if (new Set(names).size !== names.length) throw new ManifestError('features.columns must not name a column twice');
    if (Object.hasOwn(d, 'width')) {
      let width;
      try {
        width = pyInt(d.width);
      } catch (exc) {
        if (!(exc instanceof ConversionError)) throw exc;
        throw new ManifestError(`features.width: ${exc.message}`);
      }
      if (width !== schema.width) {
        throw new ManifestError(`features.width ${pyStr(d.width)} disagrees with the columns' width ${schema.width}`);
      }
    }
    return schema;
  }

  /**
   * Encode records to float32 rows (and labels).
   *
   * Missing numeric/boolean values take the column's fill (and set its missing
   * indicator, if it has one); missing or unseen categories take the unknown
   * slot (onehot), a tail bucket (onehot with tail buckets) or their hash
   * bucket.  A value that cannot be read (text in a numeric column, a missing
   * label, a class the model does not know) is a RowError naming the row, the
   * column and the rule; with `strict` any error throws SchemaError, otherwise
   * bad rows are dropped and returned so the caller can report them.
   *
   * @returns {{x: Float32Array, y: Float32Array|null, rows: number, width: number,
   *            errors: RowError[], kept: number[]}} `kept` = input indices of the rows in x.
   */
  encode(records, { withLabel = true, strict = true } = {}) {
    const n = records.length;
    const width = this.width;
    const x = new Float32Array(n * width);
    const y = withLabel && this.label ? new Float32Array(n) : null;
    const errors = [];
    const bad = new Uint8Array(n);
    const lookup = new Map();
    for (const c of this.columns) {
      if (c.kind === 'onehot' || c.kind === 'index') lookup.set(c.name, new Map(c.vocabulary.map((v, i) => [v, i])));
    }
    const classIndex = new Map(this.classes.map((c, i) => [c, i]));
    for (let i = 0; i < n; i += 1) {
      const rec = records[i];
      if (!isMapping(rec)) {
        errors.push(new RowError(i, '*', `expected a mapping of column -> value, got ${pyTypeName(rec)}`));
        bad[i] = 1;
        continue;
      }
      let off = i * width;
      for (const c of this.columns) {
        const v = lookupValue(rec, c.name);
        const missing = isMissing(v);
        if (c.kind === 'numeric') {
          let val;
          if (missing) {
            val = c.fill === null ? c.mean : c.fill;
          } else {
            try {
              val = pyFloat(v);
            } catch (exc) {
              if (!(exc instanceof ConversionError)) throw exc;
              errors.push(new RowError(i, c.name, `not a number: ${pyRepr(v)}`));
              bad[i] = 1;
              val = c.mean;
            }
            if (!Number.isFinite(val)) {
              errors.push(new RowError(i, c.name, `not a finite number: ${pyRepr(v)}`));
              bad[i] = 1;
              val = c.mean;
            } else if (c.transform) {
              val = signedLog1p(val);
            }
          }
          x[off] = (val - c.mean) / c.std; // float64 maths, rounded to float32 on store, as numpy does
          if (c.indicator) x[off + 1] = missing ? 1.0 : 0.0;
        } else if (c.kind === 'boolean') {
          const flag = missing ? null : parseBool(v);
          if (!missing && flag === null) {
            errors.push(new RowError(i, c.name, `not a boolean (true/false, 1/0, yes/no): ${pyRepr(v)}`));
            bad[i] = 1;
          }
          x[off] = flag === null ? (c.fill || 0.0) : (flag ? 1.0 : 0.0);
          if (c.indicator) x[off + 1] = missing ? 1.0 : 0.0;
        } else if (c.kind === 'onehot') {
          x[off + c.categorySlot(v, missing, lookup.get(c.name))] = 1.0;
        } else if (c.kind === 'index') {
          x[off] = c.categorySlot(v, missing, lookup.get(c.name));
        } else {
          x[off + hashBucket(missing ? '' : pyStr(v), c.buckets)] = 1.0;
        }
        off += c.width;
      }
      if (y !== null) {
        const lv = lookupValue(rec, this.label);
        if (lv === undefined || lv === null || lv === '' || (typeof lv === 'number' && Number.isNaN(lv))) {
          errors.push(new RowError(i, this.label, 'label is missing'));
          bad[i] = 1;
        } else if (this.task === 'binary') {
          y[i] = pyStr(lv) === this.positive || lv === true || lv === 1 ? 1.0 : 0.0;
        } else if (this.task === 'regression') {
          let val;
          try {
            val = pyFloat(lv);
          } catch (exc) {
            if (!(exc instanceof ConversionError)) throw exc;
            val = NaN;
          }
          y[i] = val;
          if (!Number.isFinite(y[i])) {
            errors.push(new RowError(i, this.label, `a regression label must be a finite number: ${pyRepr(lv)}`));
            bad[i] = 1;
            y[i] = 0.0;
          }
        } else {
          const k = classIndex.get(pyStr(lv));
          if (k === undefined) {
            errors.push(new RowError(i, this.label, `label ${pyRepr(pyStr(lv))} is not one of the classes `
              + `${pyRepr([...this.classes])}`));
            bad[i] = 1;
          } else {
            y[i] = k;
          }
        }
      }
    }
    if (errors.length && strict) throw new SchemaError(errors);
    const kept = [];
    for (let i = 0; i < n; i += 1) if (!bad[i]) kept.push(i);
    if (kept.length === n) return { x, y, rows: n, width, errors, kept };
    const xk = new Float32Array(kept.length * width);
    const yk = y === null ? null : new Float32Array(kept.length);
    kept.forEach((src, dst) => {
      xk.set(x.subarray(src * width, (src + 1) * width), dst * width);
      if (yk) yk[dst] = y[src];
    });
    return { x: xk, y: yk, rows: kept.length, width, errors, kept };
  }

  /** Labels as the train graph takes them: binary as is, regression standardised, multiclass one-hot [N*C]. */
  graphLabels(y) {
    if (this.task === 'regression') {
      const out = new Float32Array(y.length);
      for (let i = 0; i < y.length; i += 1) {
        const v = this.labelTransform ? signedLog1p(y[i]) : y[i];
        out[i] = (v - this.labelMean) / this.labelStd;
      }
      return out;
    }
    if (this.task === 'multiclass') {
      const c = this.classes.length;
      const out = new Float32Array(y.length * c);
      for (let i = 0; i < y.length; i += 1) {
        const k = y[i];
        if (!(Number.isInteger(k) && k >= 0 && k < c)) {
          throw new SchemaError([new RowError(i, this.label ?? 'y', `class index must be an integer in [0, ${c})`)]);
        }
        out[i * c + k] = 1.0;
      }
      return out;
    }
    return Float32Array.from(y);
  }
}
