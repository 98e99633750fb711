// Model sync: fetch a version's manifest and files, verify them, keep them in storage
// (the same behaviour as edge_sdk/sync.py).
//
// - The manifest is fetched with If-None-Match (its ETag is the version
//   digest): a device already holding the version gets a 304 and downloads nothing.
// - Files are content-addressed by the manifest's hashes: a file whose hash
//   matches one already stored (graphs rarely change between versions; params
//   do) is reused without a request; every downloaded file is hashed and a
//   mismatch is refused with ArtifactIntegrityError before anything is kept.
// - A version's files are written before its manifest, and the manifest before
//   the "current" pointer, so an interrupted sync never looks complete.
// - The current and previous versions are kept; older ones are pruned.
// - Stored versions are re-verified whenever they are loaded.

import { ManifestError } from './contract_errors.js';
import { sha256Hex } from './hashing.js';
import { MANIFEST_FILE, Manifest } from './manifest.js';
import { ArtifactIntegrityError } from './errors.js';
import { getJSON, putJSON } from './storage.js';

const utf8 = new TextEncoder();

export class ModelCache {
  constructor(storage) {
    this.storage = storage;
  }

  _prefix(model) {
    if (!model || model.includes('/') || model.startsWith('.')) throw new ArtifactIntegrityError(`model name '${model}' is not a plain name`);
    return `models/${model}/`;
  }

  _vprefix(model, version) {
    return `${this._prefix(model)}v${Math.trunc(version)}/`;
  }

  /** {current, previous} versions stored for `model`. */
  async state(model) {
    const s = await getJSON(this.storage, `${this._prefix(model)}state.json`);
    return { current: s?.current ?? null, previous: s?.previous ?? null };
  }

  /** A stored version (default: current) as {manifest, files}, every hash re-checked. */
  async load(model, version = null) {
    const v = version ?? (await this.state(model)).current;
    if (v === null) throw new ArtifactIntegrityError(`no version of model '${model}' is stored on this device; sync first`);
    const p = this._vprefix(model, v);
    const raw = await this.storage.get(`${p}${MANIFEST_FILE}`);
    if (raw === null) throw new ArtifactIntegrityError(`version ${v} of model '${model}' is not stored on this device`);
    let manifest;
    try {
      manifest = Manifest.parse(raw);
    } catch (exc) {
      throw new ArtifactIntegrityError(`stored model '${model}' v${v} has an invalid manifest: ${exc.message}`);
    }
    const files = new Map();
    for (const [fname, digest] of Object.entries(manifest.files)) {
      const data = await this.storage.get(`${p}files/${fname}`);
      if (data === null || await sha256Hex(data) !== digest) {
        throw new ArtifactIntegrityError(`stored model '${model}' v${v} failed verification: file ${fname} is missing or altered`);
      }
      files.set(fname, data);
    }
    return { manifest, files };
  }

  /**
   * Make `model` v`version` present and verified, downloading only what is missing.
   * Resolves to {manifest, files, manifestNotModified, downloaded, reused}.
   */
  async sync(transport, headers, model, version, { manifestUrl = null, timeout = null } = {}) {
    const p = this._vprefix(model, version);
    const url = manifestUrl ?? `/v1/models/${model}/versions/${Math.trunc(version)}/manifest`;
    const hasManifest = (await this.storage.get(`${p}${MANIFEST_FILE}`)) !== null;
    const etag = hasManifest ? await this.storage.get(`${p}etag`) : null;
    const reqHeaders = { ...headers };
    if (etag) reqHeaders['If-None-Match'] = new TextDecoder().decode(etag);
    let resp = await transport.request('GET', url, { headers: reqHeaders });
    if (resp.status === 304) {
      try {
        const loaded = await this.load(model, version);
        await this._setCurrent(model, version);
        return { ...loaded, manifestNotModified: true, downloaded: 0, reused: loaded.files.size };
      } catch (exc) {
        if (!(exc instanceof ArtifactIntegrityError)) throw exc;
        await this._deleteVersion(model, version); // the stored copy was damaged: fetch everything again
        resp = await transport.request('GET', url, { headers: { ...headers } });
      }
    }
    let manifest;
    try {
      manifest = Manifest.parse(resp.body);
    } catch (exc) {
      if (exc instanceof ManifestError) throw new ArtifactIntegrityError(`the server's manifest for '${model}' v${version} is invalid: ${exc.message}`);
      throw exc;
    }
    const local = await this._localCopies(model);
    const files = new Map();
    let downloaded = 0;
    let reused = 0;
    for (const [fname, digest] of Object.entries(manifest.files).sort()) {
      const copy = local.get(digest);
      if (copy !== undefined) {
        const data = await this.storage.get(copy);
        if (data !== null && await sha256Hex(data) === digest) {
          files.set(fname, data);
          reused += 1;
          continue;
        }
      }
      const fresp = await transport.request('GET', `/v1/models/${model}/versions/${Math.trunc(version)}/files/${fname}`,
        { headers: { ...headers }, timeout, accept: [200] });
      const actual = await sha256Hex(fresp.body);
      if (actual !== digest) {
        throw new ArtifactIntegrityError(`artifact file '${fname}' of '${model}' v${version} has hash ${actual.slice(0, 23)}…, `
          + `its manifest says ${digest.slice(0, 23)}…: the file was tampered with or corrupted in transit; refusing it`);
      }
      files.set(fname, fresp.body);
      downloaded += 1;
    }
    await this.storage.delete(`${p}${MANIFEST_FILE}`); // the version is incomplete until its manifest is back
    for (const [fname, data] of files) await this.storage.put(`${p}files/${fname}`, data);
    const newEtag = resp.header('ETag');
    if (newEtag) await this.storage.put(`${p}etag`, utf8.encode(newEtag));
    else await this.storage.delete(`${p}etag`);
    await this.storage.put(`${p}${MANIFEST_FILE}`, resp.body);
    await this._setCurrent(model, version);
    return { manifest, files, manifestNotModified: false, downloaded, reused };
  }

  async _localCopies(model) {
    const out = new Map();
    const st = await this.state(model);
    for (const v of [st.current, st.previous]) {
      if (v === null) continue;
      const p = this._vprefix(model, v);
      const raw = await this.storage.get(`${p}${MANIFEST_FILE}`);
      if (raw === null) continue;
      try {
        for (const [fname, digest] of Object.entries(Manifest.parse(raw).files)) {
          if (!out.has(digest)) out.set(digest, `${p}files/${fname}`);
        }
      } catch { /* an unreadable manifest contributes nothing */ }
    }
    return out;
  }

  async _deleteVersion(model, version) {
    for (const k of await this.storage.keys(this._vprefix(model, version))) await this.storage.delete(k);
  }

  async _setCurrent(model, version) {
    let st = await this.state(model);
    if (st.current !== version) {
      st = { current: Math.trunc(version), previous: st.current };
      await putJSON(this.storage, `${this._prefix(model)}state.json`, st);
    }
    const keep = new Set([st.current, st.previous].filter((v) => v !== null).map((v) => `v${v}`));
    for (const k of await this.storage.keys(this._prefix(model))) {
      const part = k.slice(this._prefix(model).length).split('/')[0];
      if (/^v\d+$/.test(part) && !keep.has(part)) await this.storage.delete(k);
    }
  }
}
