// Type declarations of @fedmark/edge-sdk-web's public API (src/index.js, the browser entry).
// The main verbs are typed precisely; helpers shared with the wire contract are typed loosely.
// tests/web/test_js_types.py checks that every export of src/index.js and src/node.js is declared here.

export type Purposes = string[] | string;
/** One customer record: feature columns, the label (training only) and the consented purposes. */
export type DeviceRecord = Record<string, unknown> & { consent?: Purposes };

export interface DeviceConditions { charging: boolean; unmetered: boolean; idle: boolean; battery: number }

/** Byte storage the client keeps its token, secret, model cache and outbox in. */
export interface Storage {
  get(key: string): Promise<Uint8Array | null>;
  put(key: string, bytes: Uint8Array): Promise<void>;
  delete(key: string): Promise<void>;
  keys(prefix?: string): Promise<string[]>;
  close(): Promise<void>;
}
export class MemoryStorage implements Storage {
  constructor();
  get(key: string): Promise<Uint8Array | null>; put(key: string, bytes: Uint8Array): Promise<void>;
  delete(key: string): Promise<void>; keys(prefix?: string): Promise<string[]>; close(): Promise<void>;
}
export class IndexedDBStorage implements Storage {
  constructor(name?: string);
  get(key: string): Promise<Uint8Array | null>; put(key: string, bytes: Uint8Array): Promise<void>;
  delete(key: string): Promise<void>; keys(prefix?: string): Promise<string[]>; close(): Promise<void>;
}

export class RetryPolicy {
  constructor(options?: { maxRetries?: number; baseBackoff?: number; maxBackoff?: number; maxRetryAfter?: number });
}

export interface ClientOptions {
  serverUrl: string; deviceId: string; region: string; storage: Storage;
  /** The onnxruntime module: onnxruntime-web in a browser, onnxruntime-node in Node. */
  ort: unknown;
  appKey?: string | null; deviceToken?: string | null; timeout?: number; downloadTimeout?: number;
  retry?: RetryPolicy | null; allowInsecureHttp?: boolean; threads?: number; consentField?: string;
  fetch?: typeof fetch; sleep?: (ms: number) => Promise<void>; random?: () => number;
  log?: ((message: string) => void) | null;
}

export interface ProgressEvent { stage: 'task' | 'sync' | 'train' | 'upload' | 'done'; [key: string]: unknown }

export interface DataReport { total: number; used: number; excluded_no_consent?: number; rejected?: number; [key: string]: unknown }

export interface TrainReport {
  model: string; version: number; roundId: string; status: 'accepted' | 'duplicate' | 'queued';
  idempotencyKey: string; updateId: string | null; httpStatus: number | null; numExamples: number; loss: number;
  updateNorm: number; withinClip: boolean; clipNorm: number | null; encoding: string; uploadBytes: number;
  epochs: number; learningRate: number; data: DataReport; update: unknown;
}

export interface RoundStatus {
  round_id: string; model: string; version: number; mode: string; state: 'open' | 'closed' | 'abandoned';
  accepted: number | null; goal: number; result_version: number | null; [key: string]: unknown;
}

export interface UploadOutcome { key: string; roundId: string; status: string; code?: string; httpStatus?: number; updateId?: string | null }
export interface FlushReport { outcomes: UploadOutcome[]; pending: number; sent: number }

export class Client {
  constructor(options: ClientOptions);
  deviceSecret(): Promise<string>;
  enroll(proof?: unknown): Promise<string>;
  getTask(model: string): Promise<Record<string, unknown>>;
  currentVersion(model: string): Promise<number>;
  sync(model: string, version?: number | null, options?: { manifestUrl?: string | null }): Promise<unknown>;
  train(model: string, records: DeviceRecord[], options: {
    conditions: DeviceConditions; seed?: number | null; order?: number[][] | null; strict?: boolean;
    onProgress?: ((event: ProgressEvent) => void) | null;
  }): Promise<TrainReport>;
  roundStatus(roundId: string): Promise<RoundStatus>;
  pending(): Promise<number>;
  flush(): Promise<FlushReport>;
  /** Propensity scores in [0, 1]; NaN for records without consent or refused by the schema. */
  score(model: string, records: DeviceRecord[], options?: { version?: number | null }): Promise<Float64Array | number[]>;
  close(): Promise<void>;
}
export const EXPIRED_CODES: ReadonlySet<string> | readonly string[];

export class Trainer { [key: string]: unknown }
export class TrainerError extends Error {}
export function verifyArtifactFiles(...args: unknown[]): unknown;
export const PARAMS_FILE: string;
export class Transport { constructor(...args: unknown[]); [key: string]: unknown }
export function parseRetryAfter(value: string | null, now?: number): number | null;
export class Outbox { constructor(...args: unknown[]); [key: string]: unknown }
export class ModelCache { constructor(...args: unknown[]); [key: string]: unknown }
export function buildUpdate(...args: unknown[]): unknown;
export function computeDelta(...args: unknown[]): unknown;
export function privatize(...args: unknown[]): unknown;
export const CONSENT_FIELD: string;
export function hasConsent(record: DeviceRecord, purpose: string, field?: string): boolean;
export function hasConsents(record: DeviceRecord, purposes: string[], field?: string): boolean;
export function parsePurposes(value: Purposes | null | undefined): string[];
export function splitByConsent(records: DeviceRecord[], ...args: unknown[]): unknown;
export function checkEligibility(...args: unknown[]): unknown;
export function deviceConditions(...args: unknown[]): DeviceConditions;
export function ensureEligible(...args: unknown[]): void;
export function parseTask(document: unknown): Record<string, unknown>;
export function prepareTabular(...args: unknown[]): unknown;
/** The wire contract (manifest, features, clipping, update bodies), byte-identical to fedmark.contract. */
export const contract: Record<string, unknown>;

export class EdgeError extends Error {}
export class ConfigurationError extends EdgeError {}
export class SchemaError extends EdgeError { errors: unknown[] }
export class ConsentError extends EdgeError {}
export class NotEligibleError extends EdgeError { reasons: string[] }
export class ArtifactIntegrityError extends EdgeError {}
export class ModelError extends EdgeError {}
export class TransportError extends EdgeError { retryAfter: number | null }
export class ServerError extends EdgeError { status: number; code: string; retryAfter: number | null }
export class AuthenticationError extends ServerError {}
export class NoTaskError extends ServerError {}
export class RejectedUpdateError extends ServerError {}
export function errorFromResponse(status: number, code: string, message: string, retryAfter?: number | null): ServerError;
