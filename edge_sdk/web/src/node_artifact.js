// Node only: read an exported artifact directory from disk.
//
// Kept out of trainer.js so the browser build never sees `node:fs`; in a
// browser the client fetches the same files over HTTP instead.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { ManifestError } from './contract_errors.js';
import { MANIFEST_FILE, Manifest } from './manifest.js';
import { Trainer } from './trainer.js';

/** {manifest, files} of an artifact directory (files are not verified here; Trainer.create does that). */
export async function readArtifactDir(dir) {
  let text;
  try {
    text = await readFile(join(dir, MANIFEST_FILE), 'utf8');
  } catch (exc) {
    if (exc.code === 'ENOENT') throw new ManifestError(`no ${MANIFEST_FILE} in ${dir}: is this an exported artifact?`);
    throw exc;
  }
  const manifest = Manifest.parse(text);
  const files = new Map();
  for (const fname of Object.keys(manifest.files)) {
    try {
      files.set(fname, new Uint8Array(await readFile(join(dir, fname))));
    } catch (exc) {
      if (exc.code === 'ENOENT') throw new ManifestError(`artifact file ${fname} is missing from ${dir}`);
      throw exc;
    }
  }
  return { manifest, files };
}

/** A Trainer for an artifact directory, every file hash verified (onnxruntime-node passed as `ort`). */
export async function loadTrainer(dir, { ort, verify = true, threads = 1 } = {}) {
  const { manifest, files } = await readArtifactDir(dir);
  return Trainer.create({ manifest, files, ort, verify, threads });
}
