// Device-only personal state: the recommender's user vector and the items already bought (as edge_sdk/personal.py).
//
// In federated reconstruction the user embedding never leaves the device (only global item parameters are
// uploaded) and must survive model updates, so it is kept per model *name* in the device's storage
// ('personal/<model>.json': float32 values as base64, the purchase history as item codes, which stay valid when
// a new version reorders its catalogue) and erased with forget() (e.g. when the person withdraws consent).

import { ConfigurationError } from './errors.js';
import { getJSON, putJSON } from './storage.js';

const PREFIX = 'personal/';

function b64(f32) {
  let bin = '';
  for (const b of new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength)) bin += String.fromCharCode(b);
  return btoa(bin);
}

function unb64(text) {
  const bin = atob(text);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i += 1) bytes[i] = bin.charCodeAt(i);
  return new Float32Array(bytes.buffer);
}

export class PersonalStore {
  constructor(storage) {
    this.storage = storage;
  }

  _key(model) {
    if (!model || /[\\/]/.test(model) || model.startsWith('.')) throw new ConfigurationError(`model name '${model}' is not a plain name`);
    return `${PREFIX}${model}.json`;
  }

  /** {local, history}: local params whose size still matches `specs` (if given), and the item-code history. */
  async load(model, specs = []) {
    const d = await getJSON(this.storage, this._key(model));
    if (!d || typeof d.local !== 'object') return { local: {}, history: [] };
    const local = {};
    for (const [name, text] of Object.entries(d.local)) local[name] = unb64(text);
    for (const s of specs) if (local[s.name] && local[s.name].length !== s.size) delete local[s.name];
    return { local, history: Array.isArray(d.history) ? d.history.map(String) : [] };
  }

  async save(model, local, history) {
    await putJSON(this.storage, this._key(model), {
      local: Object.fromEntries(Object.entries(local).map(([k, v]) => [k, b64(Float32Array.from(v))])),
      history: [...new Set(history.map(String))].sort(),
    });
  }

  async forget(model) {
    const key = this._key(model);
    const existed = (await this.storage.get(key)) !== null;
    await this.storage.delete(key);
    return existed;
  }

  async models() {
    return (await this.storage.keys(PREFIX)).map((k) => k.slice(PREFIX.length).replace(/\.json$/, ''));
  }
}
