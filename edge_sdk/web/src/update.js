// An update on its way to the server: L2 clipping and the binary body format.
//
// Why these exact bytes: the server decodes every body with
// fedmark.contract.decode_update and refuses anything else, and the adaptive
// clip estimator relies on the device's within-clip bit meaning the same thing
// everywhere.  Body = 16-byte little-endian header (magic "FMU1", encoding id,
// flags, reserved u16, count u32, CRC-32 of the payload) + payload (float32,
// float16, or q8 = float32 lo, float32 step, one uint8 per value).

import { ContractError, WireError } from './contract_errors.js';
import { crc32, toBytes } from './hashing.js';
import { pyRepr } from './pycompat.js';

export const ENCODINGS = Object.freeze({ f32: 0, f16: 1, q8: 2 });
const ENC_NAMES = Object.freeze(Object.fromEntries(Object.entries(ENCODINGS).map(([k, v]) => [v, k])));
const MAGIC = [0x46, 0x4d, 0x55, 0x31]; // "FMU1"
export const HEADER_SIZE = 16;
const F16_MAX = 65504.0;

/** Concatenate parameter tensors (row-major) into one Float32Array. */
export function flatten(arrays) {
  const total = arrays.reduce((n, a) => n + a.length, 0);
  const out = new Float32Array(total);
  let off = 0;
  for (const a of arrays) {
    out.set(a, off);
    off += a.length;
  }
  return out;
}

/** Split a flat vector into one Float32Array per ParamSpec (copies, so the pieces are independent). */
export function unflatten(vec, specs) {
  const total = specs.reduce((n, s) => n + s.size, 0);
  if (vec.length !== total) throw new ContractError(`vector has ${vec.length} values, the parameters need ${total}`);
  const out = [];
  let off = 0;
  for (const s of specs) {
    out.push(Float32Array.from(vec.subarray(off, off + s.size)));
    off += s.size;
  }
  return out;
}

/** ||vec||_2 in float64: exact float32 squares summed with Neumaier compensation. */
export function l2Norm(vec) {
  let sum = 0;
  let comp = 0;
  for (let i = 0; i < vec.length; i += 1) {
    const sq = vec[i] * vec[i];
    const t = sum + sq;
    comp += Math.abs(sum) >= Math.abs(sq) ? (sum - t) + sq : (sq - t) + sum;
    sum = t;
  }
  return Math.sqrt(sum + comp);
}

/**
 * Scale `vec` to L2 norm at most `clipNorm`.
 *
 * Returns {vec, norm, within}; `within` is the bit adaptive clipping needs:
 * true iff the update was *not* clipped (norm <= C).
 */
export function l2Clip(vec, clipNorm) {
  const v = vec instanceof Float32Array ? vec : Float32Array.from(vec);
  const norm = l2Norm(v);
  if (!Number.isFinite(norm)) throw new ContractError('update contains NaN or Inf');
  if (norm <= clipNorm) return { vec: v, norm, within: true };
  // float32 rounding can leave the result a hair above C: scale by slightly less.
  const scale = Math.fround(clipNorm / norm * (1 - 1e-6));
  const out = new Float32Array(v.length);
  for (let i = 0; i < v.length; i += 1) out[i] = v[i] * scale; // exact product, rounded once to float32
  return { vec: out, norm, within: false };
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE half bits of a float32 value, rounding to nearest even (numpy's float32 -> float16 cast). */
export function float32ToHalfBits(value) {
  f32Scratch[0] = value;
  const f = u32Scratch[0];
  const sign = (f >>> 16) & 0x8000;
  const exp = (f >>> 23) & 0xff;
  let mant = f & 0x7fffff;
  if (exp === 0xff) return mant ? sign | 0x7e00 | (mant >>> 13) : sign | 0x7c00;
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h += 1;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h += 1; // a carry correctly bumps the exponent
  return sign | h;
}

/** The float value of IEEE half bits. */
export function halfBitsToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** Size in bytes of an encoded update of `count` values. */
export function encodedSize(count, encoding = 'f32') {
  const per = { f32: 4 * count, f16: 2 * count, q8: 8 + count }[encoding];
  if (per === undefined) throw new WireError(`unknown encoding ${pyRepr(encoding)}; use one of ['f16', 'f32', 'q8']`);
  return HEADER_SIZE + per;
}

/**
 * Binary body for one update (Uint8Array).
 *
 * `random` (q8 only) returns uniform draws in [0, 1), one per value in order;
 * inject a recorded sequence to reproduce a Python encoding, else Math.random.
 */
export function encodeUpdate(vec, encoding = 'f32', { random = Math.random } = {}) {
  const v = vec instanceof Float32Array ? vec : Float32Array.from(vec);
  for (let i = 0; i < v.length; i += 1) {
    if (!Number.isFinite(v[i])) throw new WireError('update contains NaN or Inf; refusing to encode');
  }
  const size = encodedSize(v.length, encoding);
  const body = new Uint8Array(size);
  const view = new DataView(body.buffer);
  const p = HEADER_SIZE;
  if (encoding === 'f32') {
    for (let i = 0; i < v.length; i += 1) view.setFloat32(p + 4 * i, v[i], true);
  } else if (encoding === 'f16') {
    let maxAbs = 0;
    for (let i = 0; i < v.length; i += 1) maxAbs = Math.max(maxAbs, Math.abs(v[i]));
    if (maxAbs > F16_MAX) throw new WireError('update exceeds float16 range; use f32');
    for (let i = 0; i < v.length; i += 1) view.setUint16(p + 2 * i, float32ToHalfBits(v[i]), true);
  } else {
    let lo = 0;
    let hi = 0;
    if (v.length) {
      lo = Infinity;
      hi = -Infinity;
      for (let i = 0; i < v.length; i += 1) {
        if (v[i] < lo) lo = v[i];
        if (v[i] > hi) hi = v[i];
      }
    }
    const step = hi > lo ? (hi - lo) / 255.0 : 1.0;
    view.setFloat32(p, lo, true);
    view.setFloat32(p + 4, step, true); // float64 step rounded to float32, like struct.pack('<f')
    for (let i = 0; i < v.length; i += 1) {
      const q = Math.floor((v[i] - lo) / step + random());
      body[p + 8 + i] = Math.min(255, Math.max(0, q));
    }
  }
  body.set(MAGIC, 0);
  view.setUint8(4, ENCODINGS[encoding]);
  view.setUint8(5, 0);
  view.setUint16(6, 0, true);
  view.setUint32(8, v.length, true);
  view.setUint32(12, crc32(body.subarray(p)), true);
  return body;
}

/** Inverse of encodeUpdate: {vec: Float32Array, encoding}; throws WireError naming what is wrong. */
export function decodeUpdate(data, expectedCount = null) {
  const body = toBytes(data);
  if (body.length < HEADER_SIZE) {
    throw new WireError(`body is ${body.length} bytes, shorter than the ${HEADER_SIZE}-byte header`);
  }
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  if (MAGIC.some((b, i) => body[i] !== b)) {
    throw new WireError("body does not start with the update magic 'FMU1': not a fedmark update");
  }
  const enc = view.getUint8(4);
  const count = view.getUint32(8, true);
  const crc = view.getUint32(12, true);
  const name = ENC_NAMES[enc];
  if (name === undefined) throw new WireError(`unknown encoding id ${enc}`);
  if (expectedCount !== null && expectedCount !== undefined && count !== expectedCount) {
    throw new WireError(`update has ${count} values, the model version has ${expectedCount} parameters`);
  }
  const size = encodedSize(count, name);
  if (body.length !== size) throw new WireError(`body is ${body.length} bytes, a ${name} update of ${count} values is ${size}`);
  if (crc32(body.subarray(HEADER_SIZE)) !== crc) {
    throw new WireError('payload checksum mismatch: the body was truncated or altered in transit');
  }
  const vec = new Float32Array(count);
  const p = HEADER_SIZE;
  if (name === 'f32') {
    for (let i = 0; i < count; i += 1) vec[i] = view.getFloat32(p + 4 * i, true);
  } else if (name === 'f16') {
    for (let i = 0; i < count; i += 1) vec[i] = halfBitsToFloat(view.getUint16(p + 2 * i, true));
  } else {
    const lo = view.getFloat32(p, true);
    const step = view.getFloat32(p + 4, true);
    for (let i = 0; i < count; i += 1) vec[i] = lo + Math.fround(body[p + 8 + i] * step);
  }
  for (let i = 0; i < count; i += 1) {
    if (!Number.isFinite(vec[i])) throw new WireError('update contains NaN or Inf values');
  }
  return { vec, encoding: name };
}
