// Checksums the wire contract names: zlib's CRC-32 and SHA-256.
//
// CRC-32 (the zlib/PNG polynomial 0xEDB88320, reflected, init and final xor
// 0xFFFFFFFF) is written out here because browsers have no built-in for it; it
// feeds both the update body checksum and the "hash" feature buckets, so it must
// equal Python's zlib.crc32 bit for bit.  SHA-256 comes from WebCrypto
// (globalThis.crypto.subtle), present in browsers and in Node >= 20.

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n += 1) {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

const utf8 = new TextEncoder();

/** zlib.crc32 of bytes (Uint8Array/ArrayBuffer/view) or of a string's UTF-8 bytes; an unsigned 32-bit number. */
export function crc32(data, previous = 0) {
  const bytes = toBytes(data);
  let c = (previous ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i += 1) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The bytes of a string (UTF-8), ArrayBuffer or typed-array view, without copying views. */
export function toBytes(data) {
  if (typeof data === 'string') return utf8.encode(data);
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError(`expected bytes (Uint8Array, ArrayBuffer or string), got ${Object.prototype.toString.call(data)}`);
}

function subtle() {
  const s = globalThis.crypto?.subtle;
  if (!s) {
    throw new Error('WebCrypto (crypto.subtle) is unavailable: use Node >= 20, or a browser page served over '
      + 'https:// or http://127.0.0.1 (a secure context)');
  }
  return s;
}

/** "sha256:<64 hex>" of bytes, the content-hash form used in manifests and ETags. */
export async function sha256Hex(data) {
  const digest = new Uint8Array(await subtle().digest('SHA-256', toBytes(data)));
  let hex = '';
  for (const b of digest) hex += b.toString(16).padStart(2, '0');
  return `sha256:${hex}`;
}
