"""Machine-readable outcome and error codes shared by the server and every device SDK.

Why constants: a device branches on these strings (retry, re-enrol, drop a
queued update, ask again later), so the server that writes them and the SDKs
that read them must spell them identically.  The error answer's shape is
``{"error": {"code": ..., "message": ..., "reason"?: ...}}`` (docs/API.md);
``reason`` refines ``no_task`` and ``policy_denied``.
"""
from __future__ import annotations

# --------------------------------------------------------------------------- error codes (the answer's "code")
ERR_BAD_TOKEN = "bad_token"
ERR_FORBIDDEN = "forbidden"
ERR_UNKNOWN_ROUND = "unknown_round"
ERR_NO_TASK = "no_task"
ERR_NO_VERSION = "no_version"
ERR_PRIVACY_BUDGET_EXHAUSTED = "privacy_budget_exhausted"
ERR_POLICY_DENIED = "policy_denied"
ERR_ROUND_CLOSED = "round_closed"
ERR_STALE_VERSION = "stale_version"
ERR_DUPLICATE_UPDATE = "duplicate_update"
ERR_IDEMPOTENCY_CONFLICT = "idempotency_conflict"
ERR_BAD_CONTENT_TYPE = "bad_content_type"
ERR_BAD_HEADER = "bad_header"
ERR_BODY_TOO_LARGE = "body_too_large"
ERR_BAD_UPDATE = "bad_update"
ERR_BAD_ENCODING = "bad_encoding"
ERR_NON_FINITE = "non_finite"
ERR_RATE_LIMITED = "rate_limited"
ERR_BAD_TRAINING_CONFIG = "bad_training_config"
# Identity and access (docs/GOVERNANCE.md, threat model): a device re-enrols with its secret on any 401.
ERR_TOKEN_EXPIRED = "token_expired"
ERR_DEVICE_PROOF_REQUIRED = "device_proof_required"
ERR_DEVICE_REVOKED = "device_revoked"
ERR_REGION_MISMATCH = "region_mismatch"
ERR_CONSENT_WITHDRAWN = "consent_withdrawn"
ERR_ATTESTATION_REQUIRED = "attestation_required"
ERR_ACTIVATION_REQUIRED = "activation_required"
# Raised on the device: the server's task document does not follow the protocol.
ERR_BAD_TASK = "bad_task"
# Raised on either side: a consent signal or a consent_signals requirement is malformed (fedmark.contract.consent).
ERR_BAD_CONSENT_SIGNAL = "bad_consent_signal"
# Raised on the device: the server's answer lacks a field the protocol requires.
ERR_BAD_ANSWER = "bad_answer"

# --------------------------------------------------------------------------- reasons of 409 no_task
REASON_NOT_TRAINING = "not_training"            # the model has no training configuration
REASON_NO_VERSION = "no_version"                # the model has no version to train from yet
REASON_AWAITING_GATE = "awaiting_gate"          # a candidate awaits its publish gate
REASON_ROUND_FULL = "round_full"                # the round handed out all its tasks
REASON_ALREADY_CONTRIBUTED = "already_contributed"  # this device already contributed to this sync round
NO_TASK_REASONS = frozenset({REASON_NOT_TRAINING, REASON_NO_VERSION, REASON_AWAITING_GATE, REASON_ROUND_FULL,
                             REASON_ALREADY_CONTRIBUTED})

# --------------------------------------------------------------------------- reasons of 403 policy_denied
REASON_REGION_NOT_ALLOWED = "region_not_allowed"
REASON_PARTNER_NOT_ALLOWED = "partner_not_allowed"
REASON_WRONG_REGION_LINE = "wrong_region_line"
REASON_DEVICE_NOT_ALLOWED = "device_not_allowed"
REASON_PURPOSE_NOT_ALLOWED = "purpose_not_allowed"
REASON_REGION_EXPORTS_NOTHING = "region_exports_nothing"
REASON_UNGOVERNED_MODEL = "ungoverned_model"
POLICY_DENIED_REASONS = frozenset({REASON_REGION_NOT_ALLOWED, REASON_PARTNER_NOT_ALLOWED, REASON_WRONG_REGION_LINE,
                                   REASON_DEVICE_NOT_ALLOWED, REASON_PURPOSE_NOT_ALLOWED,
                                   REASON_REGION_EXPORTS_NOTHING, REASON_UNGOVERNED_MODEL})

# --------------------------------------------------------------------------- uploads
# Refusals that mean a queued update can never be accepted (its round or version is gone): drop it.
EXPIRED_CODES = frozenset({ERR_ROUND_CLOSED, ERR_STALE_VERSION, ERR_UNKNOWN_ROUND})

# What happened to one queued update on a flush (a device-side outcome, reported to the app).
OUTCOME_ACCEPTED = "accepted"    # 202: stored durably
OUTCOME_DUPLICATE = "duplicate"  # 200: the server already had it (same idempotency key, same body)
OUTCOME_PENDING = "pending"      # network failure or 5xx: kept in the outbox for the next flush
OUTCOME_EXPIRED = "expired"      # refused with one of EXPIRED_CODES: dropped
OUTCOME_REJECTED = "rejected"    # refused as invalid (any other 4xx): dropped
OUTCOMES = (OUTCOME_ACCEPTED, OUTCOME_DUPLICATE, OUTCOME_PENDING, OUTCOME_EXPIRED, OUTCOME_REJECTED)


def upload_outcome(http_status: int, code: str | None = None) -> str:
    """The outcome of one upload attempt from the server's answer (status, and error code if refused)."""
    if http_status == 202:
        return OUTCOME_ACCEPTED
    if http_status == 200:
        return OUTCOME_DUPLICATE
    if http_status >= 500:
        return OUTCOME_PENDING
    return OUTCOME_EXPIRED if code in EXPIRED_CODES else OUTCOME_REJECTED


__all__ = [
    "ERR_TOKEN_EXPIRED", "ERR_DEVICE_PROOF_REQUIRED", "ERR_DEVICE_REVOKED", "ERR_REGION_MISMATCH",
    "ERR_CONSENT_WITHDRAWN", "ERR_ATTESTATION_REQUIRED", "ERR_ACTIVATION_REQUIRED", "ERR_BAD_TOKEN", "ERR_FORBIDDEN", "ERR_UNKNOWN_ROUND", "ERR_NO_TASK", "ERR_NO_VERSION",
    "ERR_PRIVACY_BUDGET_EXHAUSTED", "ERR_POLICY_DENIED", "ERR_ROUND_CLOSED", "ERR_STALE_VERSION",
    "ERR_DUPLICATE_UPDATE", "ERR_IDEMPOTENCY_CONFLICT", "ERR_BAD_CONTENT_TYPE", "ERR_BAD_HEADER",
    "ERR_BODY_TOO_LARGE", "ERR_BAD_UPDATE", "ERR_BAD_ENCODING", "ERR_NON_FINITE", "ERR_RATE_LIMITED",
    "ERR_BAD_TRAINING_CONFIG", "ERR_BAD_TASK", "ERR_BAD_CONSENT_SIGNAL", "ERR_BAD_ANSWER", "REASON_NOT_TRAINING", "REASON_NO_VERSION",
    "REASON_AWAITING_GATE", "REASON_ROUND_FULL", "REASON_ALREADY_CONTRIBUTED", "NO_TASK_REASONS",
    "REASON_REGION_NOT_ALLOWED", "REASON_PARTNER_NOT_ALLOWED", "REASON_WRONG_REGION_LINE",
    "REASON_DEVICE_NOT_ALLOWED", "REASON_PURPOSE_NOT_ALLOWED", "REASON_REGION_EXPORTS_NOTHING",
    "REASON_UNGOVERNED_MODEL", "POLICY_DENIED_REASONS", "EXPIRED_CODES", "OUTCOME_ACCEPTED", "OUTCOME_DUPLICATE",
    "OUTCOME_PENDING", "OUTCOME_EXPIRED", "OUTCOME_REJECTED", "OUTCOMES", "upload_outcome",
]
