// Why Chromium's updates differ from Python's in the last bits: run single-operator graphs (and the real train
// step) in headless Chromium (onnxruntime-web, WebAssembly) and in onnxruntime-node (native, the same kernels as
// Python's onnxruntime), and hand every output back as hex for tests/web/test_wasm_kernels.py to judge.
// Env: FEDMARK_WASM_KERNELS = JSON spec {origin, graphs: {name: {model, inputs: {name: {shape, hex}}, levels}}, out}.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import { withBrowser } from './chromium.mjs';

const require = createRequire(new URL('../../../edge_sdk/web/package.json', import.meta.url));
const ortNode = require('onnxruntime-node');
const spec = JSON.parse(readFileSync(process.env.FEDMARK_WASM_KERNELS, 'utf8'));
const bytesOf = (hex) => Uint8Array.from(Buffer.from(hex, 'hex'));
const f32 = (hex) => { const b = bytesOf(hex); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4); };
const hexOf = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

async function runNative(g, level) {
  const s = await ortNode.InferenceSession.create(readFileSync(g.model), { executionProviders: ['cpu'], intraOpNumThreads: 1,
    interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: level });
  const feeds = Object.fromEntries(Object.entries(g.inputs).map(([k, v]) => [k, new ortNode.Tensor('float32', f32(v.hex), v.shape)]));
  const out = await s.run(feeds);
  return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, hexOf(t.data)]));
}

test('single operators and the train step, in Chromium and natively', { timeout: 90_000 }, () => withBrowser(async ({ page }) => {
  const result = { native: {}, browser: {} };
  await page.goto(`${spec.origin}/page/index.html`);
  await page.waitForFunction(() => window.fedmarkReady === true, null, { timeout: 30_000 });
  for (const [name, g] of Object.entries(spec.graphs)) {
    result.native[name] = {};
    for (const level of g.levels) result.native[name][level] = await runNative(g, level);
    const graph = { model: readFileSync(g.model).toString('base64'), inputs: g.inputs, levels: g.levels };
    result.browser[name] = await page.evaluate(async (gr) => {
      const ort = await import('/ort/ort.wasm.min.mjs');
      ort.env.wasm.wasmPaths = '/ort/';
      ort.env.wasm.numThreads = 1;
      const bin = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const fromHex = (h) => new Float32Array(Uint8Array.from(h.match(/../g), (x) => parseInt(x, 16)).buffer);
      const toHex = (a) => Array.from(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), (b) => b.toString(16).padStart(2, '0')).join('');
      const out = {};
      for (const level of gr.levels) {
        const s = await ort.InferenceSession.create(bin(gr.model), { executionProviders: ['wasm'], graphOptimizationLevel: level,
          executionMode: 'sequential' });
        const feeds = Object.fromEntries(Object.entries(gr.inputs).map(([k, v]) => [k, new ort.Tensor('float32', fromHex(v.hex), v.shape)]));
        const r = await s.run(feeds);
        out[level] = Object.fromEntries(Object.entries(r).map(([k, t]) => [k, toHex(t.data)]));
      }
      out.threads = ort.env.wasm.numThreads;
      out.version = ort.env.versions?.web ?? null;
      out.crossOriginIsolated = self.crossOriginIsolated;
      return out;
    }, graph);
  }
  assert.equal(Object.keys(result.browser).length, Object.keys(spec.graphs).length);
  writeFileSync(spec.out, JSON.stringify(result));
}));
