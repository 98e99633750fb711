// Machine-readable outcome and error codes shared by the server and every device SDK
// (the JavaScript twin of fedmark/contract/codes.py; tests/web/make_vectors.py checks they agree).
//
// A device branches on these strings (retry, re-enrol, drop a queued update, ask
// again later), so the server that writes them and the SDKs that read them must
// spell them identically.  `reason` refines `no_task` and `policy_denied`.


// error codes (the answer's "code")
export const ERR_BAD_TOKEN = 'bad_token';
export const ERR_FORBIDDEN = 'forbidden';
export const ERR_UNKNOWN_ROUND = 'unknown_round';
export const ERR_NO_TASK = 'no_task';
export const ERR_NO_VERSION = 'no_version';
export const ERR_PRIVACY_BUDGET_EXHAUSTED = 'privacy_budget_exhausted';
export const ERR_POLICY_DENIED = 'policy_denied';
export const ERR_ROUND_CLOSED = 'round_closed';
export const ERR_STALE_VERSION = 'stale_version';
export const ERR_DUPLICATE_UPDATE = 'duplicate_update';
export const ERR_IDEMPOTENCY_CONFLICT = 'idempotency_conflict';
export const ERR_BAD_CONTENT_TYPE = 'bad_content_type';
export const ERR_BAD_HEADER = 'bad_header';
export const ERR_BODY_TOO_LARGE = 'body_too_large';
export const ERR_BAD_UPDATE = 'bad_update';
export const ERR_BAD_ENCODING = 'bad_encoding';
export const ERR_NON_FINITE = 'non_finite';
export const ERR_RATE_LIMITED = 'rate_limited';
export const ERR_BAD_TRAINING_CONFIG = 'bad_training_config';
// Identity and access (docs/GOVERNANCE.md, threat model): a device re-enrols with its secret on any 401.
export const ERR_TOKEN_EXPIRED = 'token_expired';
export const ERR_DEVICE_PROOF_REQUIRED = 'device_proof_required';
export const ERR_DEVICE_REVOKED = 'device_revoked';
export const ERR_REGION_MISMATCH = 'region_mismatch';
export const ERR_CONSENT_WITHDRAWN = 'consent_withdrawn';
export const ERR_ATTESTATION_REQUIRED = 'attestation_required';
export const ERR_ACTIVATION_REQUIRED = 'activation_required';
// Raised on the device: the server's task document does not follow the protocol.
export const ERR_BAD_TASK = 'bad_task';
// Raised on either side: a consent signal or a consent_signals requirement is malformed (consent_signals.js).
export const ERR_BAD_CONSENT_SIGNAL = 'bad_consent_signal';
// Raised on the device: the server's answer lacks a field the protocol requires.
export const ERR_BAD_ANSWER = 'bad_answer';

// reasons of 409 no_task
export const REASON_NOT_TRAINING = 'not_training'; // the model has no training configuration
export const REASON_NO_VERSION = 'no_version'; // the model has no version to train from yet
export const REASON_AWAITING_GATE = 'awaiting_gate'; // a candidate awaits its publish gate
export const REASON_ROUND_FULL = 'round_full'; // the round handed out all its tasks
export const REASON_ALREADY_CONTRIBUTED = 'already_contributed'; // this device already contributed to this sync round
export const NO_TASK_REASONS = Object.freeze(new Set([REASON_NOT_TRAINING, REASON_NO_VERSION, REASON_AWAITING_GATE, REASON_ROUND_FULL, REASON_ALREADY_CONTRIBUTED]));

// reasons of 403 policy_denied
export const REASON_REGION_NOT_ALLOWED = 'region_not_allowed';
export const REASON_PARTNER_NOT_ALLOWED = 'partner_not_allowed';
export const REASON_WRONG_REGION_LINE = 'wrong_region_line';
export const REASON_DEVICE_NOT_ALLOWED = 'device_not_allowed';
export const REASON_PURPOSE_NOT_ALLOWED = 'purpose_not_allowed';
export const REASON_REGION_EXPORTS_NOTHING = 'region_exports_nothing';
export const REASON_UNGOVERNED_MODEL = 'ungoverned_model';
export const POLICY_DENIED_REASONS = Object.freeze(new Set([REASON_REGION_NOT_ALLOWED, REASON_PARTNER_NOT_ALLOWED, REASON_WRONG_REGION_LINE, REASON_DEVICE_NOT_ALLOWED, REASON_PURPOSE_NOT_ALLOWED, REASON_REGION_EXPORTS_NOTHING, REASON_UNGOVERNED_MODEL]));

// uploads
// Refusals that mean a queued update can never be accepted (its round or version is gone): drop it.
export const EXPIRED_CODES = Object.freeze(new Set([ERR_UNKNOWN_ROUND, ERR_ROUND_CLOSED, ERR_STALE_VERSION]));
// What happened to one queued update on a flush (a device-side outcome, reported to the app).
export const OUTCOME_ACCEPTED = 'accepted'; // 202: stored durably
export const OUTCOME_DUPLICATE = 'duplicate'; // 200: the server already had it (same idempotency key, same body)
export const OUTCOME_PENDING = 'pending'; // network failure or 5xx: kept in the outbox for the next flush
export const OUTCOME_EXPIRED = 'expired'; // refused with one of EXPIRED_CODES: dropped
export const OUTCOME_REJECTED = 'rejected'; // refused as invalid (any other 4xx): dropped
export const OUTCOMES = Object.freeze([OUTCOME_ACCEPTED, OUTCOME_DUPLICATE, OUTCOME_PENDING, OUTCOME_EXPIRED, OUTCOME_REJECTED]);

/** The outcome of one upload attempt from the server's answer (status, and error code if refused). */
export function uploadOutcome(httpStatus, code = null) {
  if (httpStatus === 202) return OUTCOME_ACCEPTED;
  if (httpStatus === 200) return OUTCOME_DUPLICATE;
  if (httpStatus >= 500) return OUTCOME_PENDING;
  return EXPIRED_CODES.has(code) ? OUTCOME_EXPIRED : OUTCOME_REJECTED;
}
