// Python value semantics that the wire contract depends on.
//
// Why this exists: fedmark/contract.py is the specification, and some of its
// behaviour is Python's, not arithmetic: a category is looked up by `str(v)`,
// a number is read by `float(v)`, a manifest's version by `int(v)`, and error
// messages quote values with `repr(v)`.  A device must encode exactly the same
// feature row as the Python SDK, so these few conversions are reproduced here
// once, instead of being approximated with JavaScript's String()/Number(),
// which disagree on cases like "0x10", " ", 1e16 or 0.00001.
//
// Known, unavoidable difference: JSON.parse turns both `3` and `3.0` into the
// same JavaScript number, so an integral number is treated as a Python int
// (str -> "3"); Python would say "3.0" for a float.  Records built in
// JavaScript have no such distinction to lose.

/** Raised where Python would raise TypeError/ValueError during a conversion. */
export class ConversionError extends Error {}

// Python's float() grammar (after strip): decimal literal with optional '_' between
// digits, or inf/infinity/nan, each with an optional sign, case-insensitive.
const DIGITS = '\\d(?:_?\\d)*';
const FLOAT_RE = new RegExp(
  `^[+-]?(?:(?:${DIGITS}(?:\\.(?:${DIGITS})?)?|\\.${DIGITS})(?:[eE][+-]?${DIGITS})?|inf|infinity|nan)$`, 'i');
const INT_RE = new RegExp(`^[+-]?${DIGITS}$`);
// Python's str.strip() whitespace for ASCII plus the common Unicode spaces.
const STRIP_RE = /^[\s\u001c-\u001f\u0085]+|[\s\u001c-\u001f\u0085]+$/g;

/** Python `float(v)` for the values JSON can carry; throws ConversionError where Python raises. */
export function pyFloat(v) {
  if (typeof v === 'number') return v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string') {
    const s = v.replace(STRIP_RE, '');
    if (!FLOAT_RE.test(s)) throw new ConversionError(`could not convert string to float: ${pyRepr(v)}`);
    const low = s.toLowerCase().replace(/^[+-]/, '');
    const neg = s.startsWith('-');
    if (low === 'nan') return NaN;
    if (low === 'inf' || low === 'infinity') return neg ? -Infinity : Infinity;
    return Number(s.replaceAll('_', ''));
  }
  throw new ConversionError(`float() argument must be a string or a real number, not '${pyTypeName(v)}'`);
}

/** Python `int(v)`: truncates numbers, parses base-10 strings; throws ConversionError where Python raises. */
export function pyInt(v) {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new ConversionError(`cannot convert float ${pyRepr(v)} to integer`);
    return Math.trunc(v) + 0; // + 0 turns -0 into 0
  }
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string') {
    const s = v.replace(STRIP_RE, '');
    if (!INT_RE.test(s)) throw new ConversionError(`invalid literal for int() with base 10: ${pyRepr(v)}`);
    return Number(s.replaceAll('_', ''));
  }
  throw new ConversionError(
    `int() argument must be a string, a bytes-like object or a real number, not '${pyTypeName(v)}'`);
}

/** Python's `repr(float)`: shortest round-trip digits, scientific outside [1e-4, 1e16). */
export function pyFloatRepr(x) {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mant, expText] = x.toExponential().split('e'); // shortest digits, like repr
  const exp = Number(expText);
  const neg = mant.startsWith('-');
  const digits = mant.replace('-', '').replace('.', '');
  let out;
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    out = `${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  } else if (exp < 0) {
    out = `0.${'0'.repeat(-exp - 1)}${digits}`;
  } else if (digits.length <= exp + 1) {
    out = `${digits}${'0'.repeat(exp + 1 - digits.length)}.0`;
  } else {
    out = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
  }
  return neg ? `-${out}` : out;
}

function pyNumberStr(x) {
  if (Object.is(x, -0)) return '-0.0'; // only float arithmetic yields -0; a Python int has none
  if (Number.isInteger(x) && Math.abs(x) < 2 ** 63) return BigInt(x).toString(); // a JSON integer is a Python int
  return pyFloatRepr(x);
}

/** Python `str(v)` for JSON-like values (strings unchanged, numbers as Python prints them). */
export function pyStr(v) {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return pyNumberStr(v);
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'bigint') return v.toString();
  if (v === null || v === undefined) return 'None';
  return pyRepr(v);
}

function pyStrRepr(s) {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += `\\${quote}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp >= 0x80 && cp < 0xa0) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${quote}${out}${quote}`;
}

/** Python `repr(v)` for JSON-like values, so error messages quote data the way the Python SDK does. */
export function pyRepr(v) {
  if (typeof v === 'string') return pyStrRepr(v);
  if (typeof v === 'number') return pyNumberStr(v);
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'bigint') return v.toString();
  if (v === null || v === undefined) return 'None';
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(', ')}]`;
  if (typeof v === 'object') {
    return `{${Object.entries(v).map(([k, x]) => `${pyStrRepr(k)}: ${pyRepr(x)}`).join(', ')}}`;
  }
  return String(v);
}

/** Python's type name of a JSON-like value (for messages such as "got list"). */
export function pyTypeName(v) {
  if (v === null || v === undefined) return 'NoneType';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'string') return 'str';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'object') return 'dict';
  return typeof v;
}

/** True for a plain JSON object (Python: a Mapping). */
export function isMapping(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v);
}
