// Node only: device storage as files under one directory (see storage.js for the interface).
//
// Each key is a file (the key's path segments become directories); a write goes
// to a temporary file that is fsync'd and renamed over the target, so a reader
// or a crash sees the old bytes or the new, never a torn file.

import { mkdir, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';

function checkKey(key) {
  if (!key || key.split('/').some((part) => part === '' || part === '.' || part === '..' || part.startsWith('.tmp-'))) {
    throw new Error(`storage key '${key}' must be '/'-separated plain names`);
  }
}

export class FileStorage {
  constructor(directory) {
    this.dir = directory;
  }

  _path(key) {
    checkKey(key);
    return join(this.dir, ...key.split('/'));
  }

  async get(key) {
    try {
      return new Uint8Array(await readFile(this._path(key)));
    } catch (exc) {
      if (exc.code === 'ENOENT' || exc.code === 'EISDIR') return null;
      throw exc;
    }
  }

  async put(key, bytes) {
    const path = this._path(key);
    await mkdir(dirname(path), { recursive: true });
    const tmp = join(dirname(path), `.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  }

  async delete(key) {
    await rm(this._path(key), { force: true });
  }

  async keys(prefix = '') {
    const out = [];
    const walk = async (d) => {
      let entries;
      try {
        entries = await readdir(d, { withFileTypes: true });
      } catch (exc) {
        if (exc.code === 'ENOENT') return;
        throw exc;
      }
      for (const e of entries) {
        if (e.name.startsWith('.tmp-')) continue;
        const p = join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else out.push(relative(this.dir, p).split(sep).join('/'));
      }
    };
    await walk(this.dir);
    return out.filter((k) => k.startsWith(prefix)).sort();
  }

  async close() {}
}
