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

/** One input column and the rule that encodes it (see Column in fedmark/contract.py). */
export class Column {
  constructor({ name, kind, mean = 0.0, std = 1.0, fill = null, vocabulary = [], buckets = 0 }) {
    Object.assign(this, { name, kind, mean, std, fill, vocabulary: Object.freeze([...vocabulary]), buckets });
    Object.freeze(this);
  }

  get width() {
    if (this.kind === 'numeric') return 1;
    if (this.kind === 'onehot') return this.vocabulary.length + 1;
    return this.buckets;
  }

  static fromJSON(d) {
    const kind = isMapping(d) ? d.kind : undefined;
    const name = isMapping(d) ? d.name : undefined;
    if (typeof name !== 'string' || !['numeric', 'onehot', 'hash'].includes(kind)) {
      throw new ManifestError(`bad column ${pyRepr(d)}: needs a name and kind numeric|onehot|hash`);
    }
    if (kind === 'numeric') {
      const std = manifestFloat(field(d, 'std', 1.0), `column ${pyRepr(name)}: std`);
      if (!(std > 0)) throw new ManifestError(`column ${pyRepr(name)}: std must be > 0, got ${pyFloatRepr(std)}`);
      const fill = field(d, 'fill', null);
      return new Column({
        name, kind, std, mean: manifestFloat(field(d, 'mean', 0.0), `column ${pyRepr(name)}: mean`),
        fill: fill === null || fill === undefined ? null : manifestFloat(fill, `column ${pyRepr(name)}: fill`),
      });
    }
    if (kind === 'onehot') {
      const vocab = field(d, 'vocabulary', null);
      if (!Array.isArray(vocab) || !vocab.length) {
        throw new ManifestError(`column ${pyRepr(name)}: onehot needs a non-empty vocabulary list`);
      }
      return new Column({ name, kind, vocabulary: vocab.map(pyStr) });
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
 * Tabular features (propensity family): ordered columns and an optional binary label.
 * `encode()` returns row-major float32 rows, like the Python SDK's [N, width] matrix.
 */
export class FeatureSchema {
  constructor(columns, label = null, positive = '1') {
    this.columns = Object.freeze([...columns]);
    this.label = label;
    this.positive = positive;
    Object.freeze(this);
  }

  get width() {
    return this.columns.reduce((n, c) => n + c.width, 0);
  }

  static fromJSON(d) {
    const cols = isMapping(d) ? d.columns : undefined;
    if (!Array.isArray(cols) || !cols.length) throw new ManifestError('features.columns must be a non-empty list');
    const schema = new FeatureSchema(cols.map((c) => Column.fromJSON(c)), field(d, 'label', null),
      pyStr(field(d, 'positive', '1')));
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
   * Encode records to float32 rows (and 0/1 labels).
   *
   * Missing numeric values take the column's fill; missing or unseen categories
   * take the unknown slot (onehot) or their hash bucket.  A value that cannot be
   * read (text in a numeric column, a missing label) is a RowError; with
   * `strict` any error throws SchemaError, otherwise bad rows are dropped and
   * returned so the caller can report them.
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
      if (c.kind === 'onehot') lookup.set(c.name, new Map(c.vocabulary.map((v, i) => [v, i])));
    }
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
            }
          }
          x[off] = (val - c.mean) / c.std; // float64 maths, rounded to float32 on store, as numpy does
        } else if (c.kind === 'onehot') {
          const unknown = c.vocabulary.length;
          const idx = missing ? unknown : (lookup.get(c.name).get(pyStr(v)) ?? unknown);
          x[off + idx] = 1.0;
        } else {
          x[off + hashBucket(missing ? '' : pyStr(v), c.buckets)] = 1.0;
        }
        off += c.width;
      }
      if (y !== null) {
        const lv = lookupValue(rec, this.label);
        if (lv === undefined || lv === null || lv === '') {
          errors.push(new RowError(i, this.label, 'label is missing'));
          bad[i] = 1;
        } else {
          y[i] = pyStr(lv) === this.positive || lv === true || lv === 1 ? 1.0 : 0.0;
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
}
