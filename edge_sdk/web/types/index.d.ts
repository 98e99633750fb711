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

export interface DataReport {
  total: number; used: number; excluded_no_consent?: number; excludedNoConsent?: number; rejected?: number;
  /** Consented records breaking each quality rule of the manifest's features.rules (`column:rule`, non-zero only;
   * counted in `rejected`, never trained on). */
  ruleViolations?: Record<string, number>;
  [key: string]: unknown;
}

/** The server's answer to a statistics contribution plus the device's local counts. */
export interface StatisticsReport {
  accepted: boolean; task_id: string; report_id: number; idempotencyKey: string;
  used: number; excludedNoConsent: number; failedRules: number; [key: string]: unknown;
}

export interface TrainReport {
  model: string; version: number; roundId: string; status: 'accepted' | 'duplicate' | 'queued';
  idempotencyKey: string; updateId: string | null; httpStatus: number | null; numExamples: number; loss: number;
  updateNorm: number; withinClip: boolean; clipNorm: number | null; encoding: string; uploadBytes: number;
  epochs: number; learningRate: number; data: DataReport; update: unknown;
  /** Records per consent decision reason (docs/CONSENT.md), and whether the counts reached the server. */
  consent: Record<string, number>; consentReported: boolean;
}

/** A device's consent signals (docs/CONSENT.md); a record's own fields of the same names override them. */
export interface ConsentSignals {
  tc_string?: string | TcfSignal | null; gdpr_applies?: boolean | 0 | 1 | null;
  consent_mode?: Record<string, 'granted' | 'denied'> | string | null; gpc?: boolean | '0' | '1' | null;
}
export interface TcfSignal {
  version: 2; policyVersion: number; cmpId: number; publisherCC: string; purposeOneTreatment: boolean; purposeConsents: Set<number>; purposeLegitimateInterests: Set<number>;
  vendorConsents: Set<number>; vendorLegitimateInterests: Set<number>; specialFeatureOptins: Set<number>;
  restrictions: Map<string, 0 | 1 | 2>;
}
export interface ConsentRequirement {
  purposes: string[]; consentMode: string[]; gpc: boolean;
  tcf: { vendorId: number; consent: number[]; legitimateInterest: number[]; specialFeatures: number[]; outsideGdpr: 'deny' | 'allow' } | null;
}
export interface ConsentDecision { allowed: boolean; reason: string }
export interface ScoreHistogramJSON { pos: number[]; neg: number[]; score_sum_pos: number; score_sum_neg: number }

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
    /** The device's signals, or a function asked before the run and again before the update is queued. */
    signals?: ConsentSignals | (() => ConsentSignals | Promise<ConsentSignals>) | null;
    /** Recommender: replay a fixed negative sample and block order (Trainer.recommenderPlan). */
    plan?: unknown;
  }): Promise<TrainReport>;
  roundStatus(roundId: string): Promise<RoundStatus>;
  pending(): Promise<number>;
  flush(): Promise<FlushReport>;
  /** Propensity scores in [0, 1]; NaN for records without consent or refused by the schema. */
  score(model: string, records: DeviceRecord[], options?: { version?: number | null; signals?: ConsentSignals | null }): Promise<Float64Array | number[]>;
  /** Federated evaluation: aggregates only (count, loss sum, score histogram) per version the server names. */
  validate(model: string, records: DeviceRecord[], options?: { signals?: ConsentSignals | (() => ConsentSignals) | null }): Promise<Record<string, unknown>>;
  /** Local holdout metrics as the protocol defines them: binary {loss, n, positive_rate} + histogram; regression
   * {mae, rmse, n}; multiclass {accuracy, top<k>_accuracy, loss, n} (histogram null for both). */
  evaluate(model: string, records: DeviceRecord[], options?: { version?: number | null; k?: number }): Promise<{
    model: string; version: number; metrics: Record<string, number>; histogram: ScoreHistogramJSON | null;
    data: DataReport }>;
  /** Scores on the device, reports only counts per audience segment; resolves to the counts sent. */
  reportSegments(model: string, records: DeviceRecord[], options?: { cuts?: [string, number][]; signals?: ConsentSignals | null }): Promise<Record<string, number>>;
  /**
   * Answer the model's open statistics task (issue #15): consent, the declaration's quality rules, then only the
   * local sums and counts travel, under an Idempotency-Key derived from the body (the Python SDK's bytes and key).
   */
  reportStatistics(model: string, records: DeviceRecord[]): Promise<StatisticsReport>;
  personalize(model: string, records: DeviceRecord[], options?: { seed?: number | null; plan?: unknown }): Promise<DataReport>;
  recommend(model: string, k?: number, options?: { exclude?: string[] }): Promise<string[]>;
  /** Consent withdrawn: drops queued updates computed from the subject's records (docs/CONSENT.md). */
  withdraw(subject?: string | null): Promise<{ droppedUpdates: number; droppedRounds: string[]; erasedPersonalState: string[] }>;
  restoreConsent(subject?: string | null): Promise<boolean>;
  personal: PersonalStore;
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
export function prepareInteractions(...args: unknown[]): { items: number[]; report: DataReport };
export class PersonalStore {
  constructor(storage: Storage);
  load(model: string, specs?: unknown[]): Promise<{ local: Record<string, Float32Array>; history: string[] }>;
  save(model: string, local: Record<string, ArrayLike<number>>, history: string[]): Promise<void>;
  forget(model: string): Promise<boolean>; models(): Promise<string[]>;
}
export const DEFAULT_SEGMENT_CUTS: readonly (readonly [string, number])[];
export const HIST_BINS: number;
export function evaluationEntry(version: number, y: ArrayLike<number>, p: ArrayLike<number>): Record<string, unknown> | null;
export function logLoss(y: ArrayLike<number>, p: ArrayLike<number>, eps?: number): number;
export function scoreHistogram(y: ArrayLike<number>, p: ArrayLike<number>, bins?: number): ScoreHistogramJSON;
export function segmentCounts(scores: ArrayLike<number>, cuts?: readonly (readonly [string, number])[]): Record<string, number>;
export function topK(scores: ArrayLike<number>, k: number, exclude?: number[]): number[];
export class WithdrawalLog { constructor(storage: Storage); [key: string]: unknown }
export function checkDeviceSignals(signals: ConsentSignals | null | undefined): ConsentSignals;
export function decideRecords(records: DeviceRecord[], requirement: ConsentRequirement, device: ConsentSignals | null,
  field: string, withdrawn?: ((record: DeviceRecord) => boolean) | null): { allowed: boolean[]; counts: Record<string, number> };
/** The one consent rule (fedmark.contract.consent.decide). */
export function decideConsent(signals: ConsentSignals & { consent?: Purposes }, requirement: ConsentRequirement): ConsentDecision;
export function parseConsentRequirement(consentSignals: unknown, purposes?: string[]): ConsentRequirement;
export function registerTCStringDecoder(decoder: (tcString: string) => TcfSignal): void;
export function decodeTCString(tcString: string): TcfSignal;
export function tcfFromTCModel(model: unknown): TcfSignal;
export function tcfFromTCData(tcData: unknown): TcfSignal;
/** Signals from the in-app IABTCF_* keys (pre-parsed keys cross-checked against IABTCF_TCString; throws on a mismatch). */
export function signalsFromIabtcf(prefs: Record<string, unknown> | Map<string, unknown>): ConsentSignals;
/** Where the pre-parsed IABTCF_* keys disagree with the decoded TC string (empty: they agree). */
export function iabtcfMismatches(prefs: Record<string, unknown> | Map<string, unknown>, tcf: TcfSignal): string[];
export function readTCData(tcfapi?: unknown, options?: { timeoutMs?: number }): Promise<Record<string, unknown> | null>;
export function readPageSignals(options?: { tcfapi?: unknown; dataLayer?: unknown[]; navigator?: unknown;
  consentMode?: Record<string, string> | null; timeoutMs?: number }): Promise<ConsentSignals>;
export function consentModeFromDataLayer(dataLayer?: unknown[]): Record<string, 'granted' | 'denied'> | null;
export const DECISION_REASONS: readonly string[];
export const ALLOW_REASONS: readonly string[];
export const SIGNAL_KEYS: readonly string[];
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
