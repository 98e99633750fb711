// The Node entry (src/node.js): everything of the browser entry, plus file storage and artifact directories.
export * from './index.js';
import type { Storage } from './index.js';

export class FileStorage implements Storage {
  constructor(directory: string);
  get(key: string): Promise<Uint8Array | null>; put(key: string, bytes: Uint8Array): Promise<void>;
  delete(key: string): Promise<void>; keys(prefix?: string): Promise<string[]>; close(): Promise<void>;
}
export function readArtifactDir(dir: string): Promise<{ manifest: unknown; files: Record<string, Uint8Array> }>;
export function loadTrainer(dir: string, options: { ort: unknown; verify?: boolean; threads?: number }): Promise<unknown>;
/** Decode a TC string with the IAB Tech Lab's @iabtechlabtcf/core (registered as the decoder on import). */
export function decodeWithIab(tcString: string): import('./index.js').TcfSignal;
