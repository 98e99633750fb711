// The offline queue ("outbox") of updates waiting to be uploaded (as edge_sdk/outbox.py).
//
// An update is stored *before* the first send attempt — the encoded body and
// its headers, never the training data or the token — and removed only once
// the server acknowledged it or refused it for good.  It keeps the
// idempotency key it was created with, so a resend after a crash or a lost
// answer is counted once by the server.  Each entry is one storage value
// (FMQ1 magic, meta length, meta JSON with the body's SHA-256, body), written
// atomically by the storage; a damaged entry is dropped on read.

import { sha256Hex } from './hashing.js';

const PREFIX = 'outbox/';
const MAGIC = [0x46, 0x4d, 0x51, 0x31]; // "FMQ1"
const utf8 = new TextEncoder();

// In-process mutex; browsers also get the Web Locks API so two tabs never flush together.
const chains = new Map();
async function withLock(name, fn) {
  if (globalThis.navigator?.locks?.request) return globalThis.navigator.locks.request(name, fn);
  const prev = chains.get(name) ?? Promise.resolve();
  let release;
  const next = new Promise((resolve) => { release = resolve; });
  chains.set(name, prev.then(() => next));
  await prev;
  try {
    return await fn();
  } finally {
    release();
  }
}

function validKey(key) {
  return typeof key === 'string' && /^[A-Za-z0-9_-]{1,128}$/.test(key);
}

export class Outbox {
  constructor(storage, { maxEntries = 100, lockName = 'fedmark-outbox', log = null } = {}) {
    this.storage = storage;
    this.maxEntries = maxEntries;
    this.lockName = lockName;
    this._log = log;
  }

  /**
   * Persist an item {key, uploadPath, roundId, model, version, headers, body, subjects}; a key already queued is
   * kept as is.  `subjects`: salted hashes of the customers the update was computed from (withdrawal.js).
   */
  async put(item) {
    if (!validKey(item.key)) throw new Error(`bad idempotency key '${item.key}'`);
    const existing = await this._keyFor(item.key);
    if (existing) return existing;
    const createdAt = Date.now() / 1000;
    const meta = utf8.encode(JSON.stringify({
      key: item.key, upload_path: item.uploadPath, round_id: item.roundId, model: item.model, version: item.version,
      headers: item.headers, created_at: createdAt, body_sha256: await sha256Hex(item.body),
      subjects: [...(item.subjects ?? [])].sort(),
    }));
    const data = new Uint8Array(8 + meta.length + item.body.length);
    data.set(MAGIC, 0);
    new DataView(data.buffer).setUint32(4, meta.length, false);
    data.set(meta, 8);
    data.set(item.body, 8 + meta.length);
    const stamp = String(Math.round(createdAt * 1e6)).padStart(20, '0');
    const skey = `${PREFIX}${stamp}-${item.key}`;
    await this.storage.put(skey, data);
    const keys = await this.storage.keys(PREFIX);
    for (const old of keys.slice(0, Math.max(0, keys.length - this.maxEntries))) {
      this._log?.(`outbox holds more than ${this.maxEntries} updates; dropping the oldest, ${old}`);
      await this.storage.delete(old);
    }
    return skey;
  }

  /** Delete the entry with idempotency key `key`; true if there was one. */
  async remove(key) {
    const skey = await this._keyFor(key);
    if (!skey) return false;
    await this.storage.delete(skey);
    return true;
  }

  /** Every readable entry, oldest first; damaged entries are removed. */
  async entries() {
    const out = [];
    for (const skey of await this.storage.keys(PREFIX)) {
      const item = await this._read(skey);
      if (item === null) {
        this._log?.(`dropping unreadable queued update ${skey}`);
        await this.storage.delete(skey);
      } else {
        out.push(item);
      }
    }
    return out;
  }

  /** Delete every entry `predicate(item)` selects, holding the flush lock; returns what was dropped (withdrawal). */
  async dropWhere(predicate) {
    return this.lock(async () => {
      const dropped = [];
      for (const item of await this.entries()) {
        if (predicate(item)) {
          await this.remove(item.key);
          dropped.push(item);
        }
      }
      return dropped;
    });
  }

  async size() {
    return (await this.storage.keys(PREFIX)).length;
  }

  /** Run `fn` holding the flush lock. */
  lock(fn) {
    return withLock(this.lockName, fn);
  }

  async _keyFor(key) {
    return (await this.storage.keys(PREFIX)).find((k) => k.endsWith(`-${key}`)) ?? null;
  }

  async _read(skey) {
    try {
      const data = await this.storage.get(skey);
      if (!data || data.length < 8 || MAGIC.some((b, i) => data[i] !== b)) return null;
      const n = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(4, false);
      const meta = JSON.parse(new TextDecoder().decode(data.subarray(8, 8 + n)));
      const body = data.slice(8 + n);
      if (`sha256:${meta.body_sha256.replace(/^sha256:/, '')}` !== await sha256Hex(body)) return null;
      return { key: String(meta.key), uploadPath: String(meta.upload_path), roundId: String(meta.round_id),
        model: String(meta.model), version: Number(meta.version), headers: { ...meta.headers }, body,
        createdAt: Number(meta.created_at), subjects: Array.isArray(meta.subjects) ? meta.subjects.map(String) : [] };
    } catch {
      return null;
    }
  }
}
