// Worker for bench/browser_vs_python.py: times the JavaScript trainer in headless Chromium
// (onnxruntime-web, WebAssembly, one thread) or in Node (onnxruntime-node, one thread).
//
//   node bench/browser_vs_python.mjs browser <server origin> <artifact dir> <x.bin> <y.bin> <lr>
//   node bench/browser_vs_python.mjs node    -               <artifact dir> <x.bin> <y.bin> <lr>
//
// Then one JSON command per stdin line, one JSON answer per stdout line:
//   {"cmd": "run", "epochs": k}   -> {"train_ms": [...], "graph_ms": [...], "loss": l}
//   {"cmd": "params"}             -> {"hex": "<params after one epoch from the initial ones, float32 LE>"}
//   {"cmd": "quit"}
// The browser loads the SDK and onnxruntime-web from the fedmark server's /train routes, the
// same files a visitor's browser gets.  Every epoch starts from the artifact's initial
// parameters and visits the rows in input order (shuffle off), exactly as the Python side does.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { launch } from '../tests/web/js/chromium.mjs';

const [mode, origin, artifact, xPath, yPath, lrText] = process.argv.slice(2);
if (!['browser', 'node'].includes(mode) || !yPath) {
  console.error('usage: node bench/browser_vs_python.mjs browser|node <origin|-> <artifact dir> <x.bin> <y.bin> <lr>');
  process.exit(2);
}
const lr = Number(lrText);

/**
 * Build the trainer and the fixed epoch input once; returns {run(k), params()}.
 * Self-contained (no free variables): the browser gets its source text and runs it in the page.
 */
async function makeBench(ort, sdk, { manifestText, files, x, y, lr }) {
  const manifest = sdk.contract.Manifest.parse(manifestText);
  const trainer = await sdk.Trainer.create({ manifest, files, ort, verify: true, threads: 1 });
  await trainer.session('train_epoch'); // compile outside the timed region
  const params = trainer.initialParams();
  const { xs, ys, ms, nb } = trainer.batches(x, y, Int32Array.from({ length: y.length }, (_, i) => i));
  const b = manifest.batch_size;
  const feeds = () => {
    const f = {};
    manifest.params.forEach((spec, i) => { f[spec.name] = new ort.Tensor('float32', params[i], [...spec.shape]); });
    f.x = new ort.Tensor('float32', xs, [nb, b, trainer.width]);
    f.y = new ort.Tensor('float32', ys, [nb, b]);
    f.mask = new ort.Tensor('float32', ms, [nb, b]);
    f.lr = new ort.Tensor('float32', new Float32Array([lr]), []);
    return f;
  };
  const epoch = () => trainer.train(params, { x, y }, { epochs: 1, lr, shuffle: false });
  return {
    // k epochs through Trainer.train (what an app calls) and k bare graph calls (the runtime alone)
    async run(k) {
      const trainMs = [];
      const graphMs = [];
      let loss = NaN;
      for (let i = 0; i < k; i += 1) {
        let t0 = performance.now();
        loss = (await epoch()).loss;
        trainMs.push(performance.now() - t0);
        const f = feeds();
        t0 = performance.now();
        await trainer.run('train_epoch', f);
        graphMs.push(performance.now() - t0);
      }
      return { train_ms: trainMs, graph_ms: graphMs, loss };
    },
    // the parameters after one epoch from the initial ones, float32 little-endian hex
    async params() {
      const r = await epoch();
      const flat = new Float32Array(r.params.reduce((n, a) => n + a.length, 0));
      let off = 0;
      for (const a of r.params) { flat.set(a, off); off += a.length; }
      return Array.from(new Uint8Array(flat.buffer), (v) => v.toString(16).padStart(2, '0')).join('');
    },
  };
}

const manifestText = readFileSync(join(artifact, 'manifest.json'), 'utf8');
const fileNames = Object.keys(JSON.parse(manifestText).files);
const f32 = (path) => { const b = readFileSync(path); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4); };

let bench; // {run(k), params()}
let info;
let close = async () => {};
if (mode === 'node') {
  const require = createRequire(new URL('../edge_sdk/web/package.json', import.meta.url));
  const ort = require('onnxruntime-node');
  const sdk = await import('../edge_sdk/web/src/node.js');
  const files = new Map(fileNames.map((f) => [f, new Uint8Array(readFileSync(join(artifact, f)))]));
  bench = await makeBench(ort, sdk, { manifestText, files, x: Float32Array.from(f32(xPath)),
    y: Float32Array.from(f32(yPath)), lr });
  info = { runtime: `onnxruntime-node ${require('onnxruntime-node/package.json').version} (intraOpNumThreads=1)`,
    node: process.version };
} else {
  const browser = await launch();
  close = () => browser.close();
  const { page } = browser;
  await page.goto(`${origin}/train`);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 60_000 });
  const b64 = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
  const payload = {
    manifestText, lr, x: b64(f32(xPath)), y: b64(f32(yPath)),
    files: Object.fromEntries(fileNames.map((f) => [f, readFileSync(join(artifact, f)).toString('base64')])),
  };
  // A string expression runs through the DevTools protocol, not through eval(), so the page's CSP allows it.
  info = await page.evaluate(`(async (p) => {
    const ort = await import('/train/ort/ort.wasm.min.mjs');
    ort.env.wasm.wasmPaths = '/train/ort/';
    ort.env.wasm.numThreads = 1;
    const sdk = await import('/train/sdk/index.js');
    const bytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
    window.__bench = await (${makeBench.toString()})(ort, sdk, { manifestText: p.manifestText, lr: p.lr,
      files: new Map(Object.entries(p.files).map(([k, v]) => [k, bytes(v)])),
      x: new Float32Array(bytes(p.x).buffer), y: new Float32Array(bytes(p.y).buffer) });
    return { runtime: 'onnxruntime-web ' + ort.env.versions?.web + ' (wasm, numThreads=' + ort.env.wasm.numThreads + ')',
      user_agent: navigator.userAgent, cross_origin_isolated: self.crossOriginIsolated };
  })(${JSON.stringify(payload)})`);
  bench = { run: (k) => page.evaluate((n) => window.__bench.run(n), k),
    params: () => page.evaluate(() => window.__bench.params()) };
}

process.stdout.write(`${JSON.stringify({ ready: true, ...info })}\n`);
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const cmd = JSON.parse(line);
  if (cmd.cmd === 'quit') break;
  const answer = cmd.cmd === 'run' ? await bench.run(cmd.epochs) : { hex: await bench.params() };
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
await close();
