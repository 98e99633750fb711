// Pluggable device storage: where tokens, verified model versions and queued updates live.
//
// Why an interface instead of a fixed backend: a browser has IndexedDB, Node
// has a file system, tests want memory.  The SDK needs only five async calls on
// byte values (Uint8Array) under string keys, so any of these — or an app's own
// store (e.g. React Native's) — can back it:
//   get(key) -> Uint8Array | null     put(key, bytes)     delete(key)
//   keys(prefix) -> string[] (sorted)  close()
// Writes must be atomic per key (a reader sees the old or the new value, never
// half); the SDK orders its writes so that a crash between two of them is safe.

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** Store/read JSON under a key on any storage. */
export async function putJSON(storage, key, value) {
  await storage.put(key, utf8.encode(JSON.stringify(value)));
}

export async function getJSON(storage, key) {
  const raw = await storage.get(key);
  if (raw === null) return null;
  try {
    return JSON.parse(fromUtf8.decode(raw));
  } catch {
    return null;
  }
}

/** Memory only: for tests, and for apps that must not persist anything. */
export class MemoryStorage {
  constructor() {
    this._map = new Map();
  }

  async get(key) {
    const v = this._map.get(key);
    return v === undefined ? null : v.slice();
  }

  async put(key, bytes) {
    this._map.set(key, Uint8Array.from(bytes));
  }

  async delete(key) {
    this._map.delete(key);
  }

  async keys(prefix = '') {
    return [...this._map.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  async close() {}
}

function promisify(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** Browser storage in one IndexedDB object store (each put is its own transaction, hence atomic). */
export class IndexedDBStorage {
  constructor(dbName = 'fedmark-edge-sdk', { indexedDB = globalThis.indexedDB } = {}) {
    if (!indexedDB) throw new Error('IndexedDB is not available here; pass another storage (e.g. MemoryStorage)');
    this._idb = indexedDB;
    this._name = dbName;
    this._db = null;
  }

  async _open() {
    if (!this._db) {
      const req = this._idb.open(this._name, 1);
      req.onupgradeneeded = () => req.result.createObjectStore('kv');
      this._db = promisify(req);
    }
    return this._db;
  }

  async _tx(mode, fn) {
    const db = await this._open();
    const tx = db.transaction('kv', mode);
    const result = fn(tx.objectStore('kv'));
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
    });
    return result;
  }

  async get(key) {
    const db = await this._open();
    const v = await promisify(db.transaction('kv', 'readonly').objectStore('kv').get(key));
    return v === undefined ? null : new Uint8Array(v);
  }

  async put(key, bytes) {
    const copy = Uint8Array.from(bytes).buffer;
    await this._tx('readwrite', (store) => store.put(copy, key));
  }

  async delete(key) {
    await this._tx('readwrite', (store) => store.delete(key));
  }

  async keys(prefix = '') {
    const db = await this._open();
    const range = prefix ? IDBKeyRange.bound(prefix, `${prefix}\uffff`) : undefined;
    const all = await promisify(db.transaction('kv', 'readonly').objectStore('kv').getAllKeys(range));
    return all.map(String).filter((k) => k.startsWith(prefix)).sort();
  }

  async close() {
    if (this._db) (await this._db).close();
    this._db = null;
  }
}
