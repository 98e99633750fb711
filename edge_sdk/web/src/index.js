// fedmark device SDK for JavaScript — the public API (browser-safe; Node extras in node.js).
//
//   import * as ort from 'onnxruntime-web';
//   import { Client, IndexedDBStorage } from '@fedmark/edge-sdk-web';
//   const client = new Client({ serverUrl, appKey, deviceId, region, storage: new IndexedDBStorage(), ort });
//   const report = await client.train('propensity', records, { conditions: { charging: true, unmetered: true,
//                                                              idle: true, battery: 0.9 } });

export { Client, EXPIRED_CODES } from './client.js';
export { Trainer, TrainerError, verifyArtifactFiles, PARAMS_FILE } from './trainer.js';
export { MemoryStorage, IndexedDBStorage } from './storage.js';
export { RetryPolicy, Transport, parseRetryAfter } from './transport.js';
export { Outbox } from './outbox.js';
export { ModelCache } from './sync.js';
export { buildUpdate, computeDelta, privatize } from './prepare.js';
export { CONSENT_FIELD, hasConsent, hasConsents, parsePurposes, splitByConsent } from './consent.js';
export {
  decide as decideConsent, parseRequirement as parseConsentRequirement, registerTCStringDecoder, decodeTCString,
  tcfFromTCModel, signalsFromIabtcf, iabtcfMismatches, DECISION_REASONS, ALLOW_REASONS, SIGNAL_KEYS,
} from './consent_signals.js';
export { consentModeFromDataLayer, readPageSignals, readTCData, tcfFromTCData } from './tcf.js';
export { check as checkEligibility, deviceConditions, ensureEligible } from './eligibility.js';
export { parseTask } from './task.js';
export { prepareInteractions, prepareTabular } from './data.js';
export { PersonalStore } from './personal.js';
export { DEFAULT_SEGMENT_CUTS, HIST_BINS, evaluationEntry, logLoss, scoreHistogram, segmentCounts, topK } from './reports.js';
export { WithdrawalLog, checkDeviceSignals, decideRecords } from './withdrawal.js';
export * from './errors.js';
export * as contract from './contract.js';
