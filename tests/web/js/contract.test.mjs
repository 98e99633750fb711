// The JavaScript contract port against vectors written by fedmark.contract
// (tests/web/make_vectors.py).  Run: FEDMARK_VECTORS=vec.json node --test tests/web/js/contract.test.mjs
// (tests/web/test_node_contract.py does both steps).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import * as c from '../../../edge_sdk/web/src/contract.js';
import { pyFloatRepr, pyStr } from '../../../edge_sdk/web/src/pycompat.js';

const path = process.env.FEDMARK_VECTORS;
if (!path) throw new Error('set FEDMARK_VECTORS to the JSON file written by tests/web/make_vectors.py');
const V = JSON.parse(readFileSync(path, 'utf8'));

const bytes = (hex) => new Uint8Array(Buffer.from(hex, 'hex'));
const hex = (u8) => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('hex');
const f32 = (h) => { const b = bytes(h); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4); };
const f64 = (h) => { const b = bytes(h); return new Float64Array(b.buffer, b.byteOffset, b.byteLength / 8); };
const unNaN = (v) => {
  if (v === '__NaN__') return NaN;
  if (Array.isArray(v)) return v.map(unNaN);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unNaN(x)]));
  return v;
};

test('shared constants match fedmark.contract', () => {
  for (const [k, v] of Object.entries(V.headers)) assert.equal(c[k], v, k);
});

test('update bodies are byte-identical (f32, f16, q8 with the same uniform draws)', () => {
  assert.ok(V.updates.bodies.length >= 21);
  for (const e of V.updates.bodies) {
    const vec = f32(e.values);
    let random;
    if (e.encoding === 'q8') {
      const draws = f64(e.draws);
      let i = 0;
      random = () => draws[i++];
    }
    const body = c.encodeUpdate(vec, e.encoding, random ? { random } : {});
    assert.equal(hex(body), e.body, `${e.name}/${e.encoding}: body differs from fedmark.contract.encode_update`);
    assert.equal(body.length, c.encodedSize(vec.length, e.encoding));
    const { vec: back, encoding } = c.decodeUpdate(bytes(e.body), vec.length);
    assert.equal(encoding, e.encoding);
    assert.equal(hex(new Uint8Array(back.buffer)), e.decoded, `${e.name}/${e.encoding}: decoded values differ`);
  }
});

test('damaged bodies are refused with the same messages', () => {
  for (const e of V.updates.decode_errors) {
    assert.throws(() => c.decodeUpdate(bytes(e.body), e.expected_count),
      (err) => err instanceof c.WireError && err.message === e.message, e.name);
  }
  for (const e of V.updates.encode_errors) {
    assert.throws(() => c.encodeUpdate(f32(e.values), e.encoding),
      (err) => err instanceof c.WireError && err.message === e.message, e.name);
  }
});

test('l2 clip gives identical float32 results, norm and within bit', () => {
  let clipped = 0;
  for (const [i, e] of V.clip.entries()) {
    const { vec, norm, within } = c.l2Clip(f32(e.values), e.clip);
    assert.equal(within, e.within, `case ${i}: within bit`);
    assert.ok(Math.abs(norm - e.norm) <= 1e-12 * e.norm, `case ${i}: norm ${norm} vs ${e.norm}`);
    assert.equal(hex(new Uint8Array(vec.buffer, vec.byteOffset, vec.byteLength)), e.out, `case ${i}: clipped bytes`);
    if (!within) clipped += 1;
  }
  assert.ok(clipped > 5 && clipped < V.clip.length, 'vectors exercise both branches');
  assert.throws(() => c.l2Clip(new Float32Array([1, NaN]), 1), c.ContractError);
});

test('feature rows are byte-identical, with the same row errors', () => {
  const schema = c.FeatureSchema.fromJSON(V.features.schema);
  assert.equal(schema.width, V.features.width);
  for (const cs of V.features.cases) {
    const records = unNaN(cs.records);
    const out = schema.encode(records, { strict: false });
    assert.deepEqual(out.errors.map((e) => [e.row, e.column, e.reason]), cs.errors, `${cs.name}: row errors`);
    assert.equal(out.rows, cs.rows);
    assert.equal(hex(new Uint8Array(out.x.buffer)), cs.x, `${cs.name}: encoded rows differ`);
    assert.equal(hex(new Uint8Array(out.y.buffer)), cs.y, `${cs.name}: labels differ`);
    assert.equal(out.kept.length, cs.rows);
    if (cs.strict_message === null) {
      assert.doesNotThrow(() => schema.encode(records));
    } else {
      assert.throws(() => schema.encode(records),
        (err) => err instanceof c.SchemaError && err.message === cs.strict_message && err.errors.length === cs.errors.length);
    }
    const mappings = records.filter((r) => r && typeof r === 'object' && !Array.isArray(r));
    const unl = schema.encode(mappings, { withLabel: false, strict: false });
    assert.equal(unl.y, null);
    assert.equal(hex(new Uint8Array(unl.x.buffer)), cs.x_unlabelled, `${cs.name}: unlabelled rows differ`);
  }
  for (const [value, n, bucket] of V.features.hash_buckets) assert.equal(c.hashBucket(value, n), bucket, value);
});

test('issue 14 rules (boolean, indicators, tail buckets, log1p, regression and multiclass labels) are byte-identical', () => {
  assert.equal(V.tabular_features.length, 2);
  for (const entry of V.tabular_features) {
    const schema = c.FeatureSchema.fromJSON(entry.schema);
    assert.equal(schema.width, entry.width);
    for (const cs of entry.cases) {
      const records = unNaN(cs.records);
      const out = schema.encode(records, { strict: false });
      assert.deepEqual(out.errors.map((e) => [e.row, e.column, e.reason]), cs.errors, `${cs.name}: row errors`);
      assert.equal(out.rows, cs.rows, cs.name);
      assert.equal(hex(new Uint8Array(out.x.buffer)), cs.x, `${cs.name}: encoded rows differ`);
      assert.equal(hex(new Uint8Array(out.y.buffer)), cs.y, `${cs.name}: labels differ`);
      const gy = schema.graphLabels(out.y);
      assert.equal(hex(new Uint8Array(gy.buffer)), cs.graph_y, `${cs.name}: graph labels differ`);
      if (cs.strict_message === null) {
        assert.doesNotThrow(() => schema.encode(records));
      } else {
        assert.throws(() => schema.encode(records),
          (err) => err instanceof c.SchemaError && err.message === cs.strict_message, cs.name);
      }
    }
  }
});

test('manifests: accepted and refused exactly as fedmark.contract does', () => {
  for (const e of V.manifests) {
    if (e.message === undefined) {
      const m = c.Manifest.fromJSON(e.manifest);
      assert.equal(m.numParams, e.num_params, e.name);
      assert.equal(m.version, e.version, e.name);
      assert.equal(m.protocol, e.protocol, e.name);
      assert.deepEqual(m.params.map((p) => [...p.shape]), e.shapes, e.name);
      assert.equal(c.Manifest.parse(JSON.stringify(m.toJSON())).numParams, e.num_params);
      assert.equal(m.schema().width, V.features.width);
    } else {
      assert.throws(() => c.Manifest.fromJSON(e.manifest),
        (err) => err instanceof c.ManifestError && err.message === e.message, `${e.name}: expected ${e.message}`);
    }
  }
  assert.throws(() => c.Manifest.parse('{not json'), (err) => err instanceof c.ManifestError && /not valid JSON/.test(err.message));
  for (const e of V.schema_errors) {
    assert.throws(() => c.FeatureSchema.fromJSON(e.features),
      (err) => err instanceof c.ManifestError && err.message === e.message, e.name);
  }
});

test('task documents: parsed to the same wire form, or refused with the same code and message', () => {
  assert.ok(V.tasks.length >= 30);
  let refused = 0;
  for (const e of V.tasks) {
    if (e.message === undefined) {
      const t = c.parseTaskDocument(e.task);
      assert.deepEqual(c.taskToJSON(t), e.parsed, `${e.name}: parsed task differs from fedmark.contract.parse_task`);
      assert.deepEqual(t.requiredPurposes(e.name === 'build_task' ? 'marketing' : 'Marketing'), e.required_purposes,
        `${e.name}: required purposes`);
      assert.deepEqual(c.taskToJSON(c.parseTaskDocument(c.taskToJSON(t))), e.parsed, `${e.name}: wire form round-trips`);
    } else {
      refused += 1;
      assert.throws(() => c.parseTaskDocument(e.task),
        (err) => err instanceof c.ProtocolError && err.code === e.code && err.message === e.message,
        `${e.name}: expected ${e.code}: ${e.message}`);
    }
  }
  assert.ok(refused >= 20, 'vectors exercise the refusals');
});

test('upload headers: built identically; accepted and refused exactly as the server does', () => {
  for (const e of V.upload_headers.built) {
    const a = e.args;
    const h = c.uploadHeaders({ version: a.version, numExamples: a.num_examples, key: a.key, roundId: a.round_id ?? null,
      withinClip: a.within_clip ?? null });
    assert.deepEqual(h, e.headers, `${e.name}: headers differ from fedmark.contract.upload_headers`);
  }
  for (const e of V.upload_headers.parsed) {
    if (e.message === undefined) {
      const p = c.parseUploadHeaders(e.headers);
      assert.deepEqual({ version: p.version, num_examples: p.numExamples, within_clip: p.withinClip, key: p.key,
        round_id: p.roundId }, e.parsed, e.name);
      assert.deepEqual(c.parseUploadHeaders(new Headers(e.headers)).version, e.parsed.version, `${e.name}: fetch Headers`);
    } else {
      assert.throws(() => c.parseUploadHeaders(e.headers),
        (err) => err instanceof c.ProtocolError && err.code === e.code && err.message === e.message,
        `${e.name}: expected ${e.message}`);
    }
  }
});

test('outcome and error codes are the same strings, sets and decisions', () => {
  assert.ok(Object.keys(V.codes.constants).length >= 30);
  for (const [k, v] of Object.entries(V.codes.constants)) assert.equal(c[k], v, k);
  for (const [k, v] of Object.entries(V.codes.sets)) assert.deepEqual([...c[k]].sort(), v, k);
  assert.deepEqual([...c.OUTCOMES], V.codes.OUTCOMES);
  for (const [status, code, outcome] of V.codes.upload_outcome) assert.equal(c.uploadOutcome(status, code), outcome, `${status} ${code}`);
});

test('the params-file rule names the same file, or refuses with the same message', () => {
  for (const e of V.params_file) {
    const m = c.Manifest.fromJSON(e.manifest);
    if (e.message === undefined) assert.equal(c.paramsFile(m), e.file, e.name);
    else assert.throws(() => c.paramsFile(m), (err) => err instanceof c.ManifestError && err.message === e.message, e.name);
  }
});

test('the consent rule: the same required purposes and the same covered records', () => {
  for (const e of V.consent) {
    const req = c.requiredPurposes(e.consent_purposes, e.purpose, e.manifest_purpose);
    assert.deepEqual(req, e.required);
    assert.deepEqual(e.consents.map((x) => c.consentCovers(new Set(x), req)), e.covered);
  }
});

test('Python str() of numbers and SHA-256 via WebCrypto', async () => {
  assert.deepEqual([1e-5, 1e16, 0.1, 123.456, 1.5e-7, 2.0 ** 60 + 0.5].map(pyFloatRepr),
    ['1e-05', '1e+16', '0.1', '123.456', '1.5e-07', '1.152921504606847e+18']);
  assert.deepEqual([3, true, null, -0].map(pyStr), ['3', 'True', 'None', '-0.0']);
  assert.equal(await c.sha256Hex('abc'), 'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(c.crc32(''), 0);
});
