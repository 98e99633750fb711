"""The database schema (SQLAlchemy Core).

Why Core, not the ORM: every state change here is a small conditional
statement (``UPDATE rounds … WHERE state='open'``) whose row count decides who
won a race between two server processes; Core keeps those statements explicit.
Times are epoch seconds (float) so SQLite and PostgreSQL behave alike.
The Alembic migration in ``server/migrations/versions`` creates exactly these
tables; a test checks the two agree.
"""
from __future__ import annotations

from sqlalchemy import (Boolean, Column, Float, Index, Integer, LargeBinary, MetaData, String, Table, Text,
                        UniqueConstraint)

metadata = MetaData()

#: The largest value an ``Integer`` column holds on every backend (PostgreSQL ``integer`` is 32-bit): every
#: number taken from a request for such a column is refused above it (400 naming the field).
MAX_INT = 2**31 - 1

#: Server-wide key/value settings (e.g. the generated noise secret).
settings = Table(
    "settings", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

#: App keys issued by an admin; devices trade one for a device token at enrolment.
app_keys = Table(
    "app_keys", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("partner", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    #: The residency zone of every device enrolling with this key (migration 0004); never "any".
    Column("region", String(64), nullable=False, default="default"),
)

#: Bearer tokens (marketer and device roles); only SHA-256 hashes are stored.
tokens = Table(
    "tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("name", String(200), nullable=False, default=""),
    Column("device_id", String(128), nullable=True, index=True),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    #: When the token stops working (NULL, tokens from before migration 0004: created_at + the role's TTL).
    Column("expires_at", Float, nullable=True),
)

#: Enrolled devices.  ``secret_hash``: SHA-256 of the secret the device made at first enrolment (its proof on
#: re-enrolment; NULL: none stored, re-enrolment needs the current token or an admin reset).  ``attested``: the
#: configured attestation verifier vouched for the device (k-thresholds count attested devices).
devices = Table(
    "devices", metadata,
    Column("device_id", String(128), primary_key=True),
    Column("region", String(64), nullable=False),
    Column("partner", String(128), nullable=False),
    Column("app_key_id", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("secret_hash", String(64), nullable=True),
    Column("attested", Boolean, nullable=False, default=False),
    #: Blocked by an admin: its tokens are revoked and it cannot enrol again until an admin reset.
    Column("revoked", Boolean, nullable=False, default=False),
    #: Set by an admin when the person behind the device withdrew consent: its uploads are refused.
    Column("consent_withdrawn_at", Float, nullable=True),
    #: Set by an admin reset: the next enrolment of this id sets a new secret without proof (then cleared).
    Column("reset_at", Float, nullable=True),
)

#: A model: its current version, training configuration and aggregation state (privacy ledger, clip norm …).
models = Table(
    "models", metadata,
    Column("name", String(128), primary_key=True),
    Column("current_version", Integer, nullable=True),
    Column("training", Text, nullable=True),
    Column("agg_state", LargeBinary, nullable=True),
    Column("stopped", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    #: Regional model lines (``<model>@<region>``, for regions that export nothing): the model they belong to.
    Column("line_of", String(128), nullable=True),
    Column("region", String(64), nullable=True),
    #: A round result awaiting its publish gate (federated evaluation); training pauses until it is decided.
    Column("candidate", Integer, nullable=True),
)

#: Immutable versions with their lineage.  ``content_key`` = digest of the manifest with version 0,
#: so publishing the same content twice finds the existing version.
versions = Table(
    "versions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(71), nullable=False),
    Column("content_key", String(71), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("manifest", Text, nullable=False),
    Column("parent", Integer, nullable=True),
    Column("round_id", String(40), nullable=True),
    Column("contributors", Integer, nullable=False, default=0),
    Column("metrics", Text, nullable=False, default="{}"),
    Column("epsilon", Float, nullable=True),
    Column("delta", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("model", "version", name="uq_versions_model_version"),
    #: NULL (published, as before governance), "candidate", "published", "refused" or "variant"
    #: (a leave-one-partner-out model for measuring partner contribution; never current).
    Column("status", String(16), nullable=True),
    Column("gate", Text, nullable=True),
    Index("ix_versions_model_content", "model", "content_key"),
)

#: Append-only lineage / audit events of the registry (publish, round, rollback, training config).
events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("version", Integer, nullable=True),
    Column("actor", String(200), nullable=False),
    Column("detail", Text, nullable=False, default="{}"),
    Column("at", Float, nullable=False),
)

#: Rounds.  ``open_key`` holds the model name while the round is open and NULL otherwise; its unique
#: constraint guarantees at most one open round per model even with several server processes.
rounds = Table(
    "rounds", metadata,
    Column("id", String(40), primary_key=True),
    Column("model", String(128), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("mode", String(8), nullable=False),
    Column("state", String(16), nullable=False),
    Column("open_key", String(128), nullable=True, unique=True),
    Column("version", Integer, nullable=False),
    Column("goal", Integer, nullable=False),
    Column("min_clients", Integer, nullable=False),
    Column("task_cap", Integer, nullable=False),
    Column("deadline", Float, nullable=True),
    Column("accepted", Integer, nullable=False, default=0),
    Column("tasks_issued", Integer, nullable=False, default=0),
    Column("folds", Integer, nullable=False, default=0),
    Column("clip_norm", Float, nullable=True),
    Column("config", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("closed_at", Float, nullable=True),
    Column("result_version", Integer, nullable=True),
    Column("aggregate_sha", String(71), nullable=True),
    Column("reason", Text, nullable=True),
)

tasks = Table(
    "tasks", metadata,
    Column("id", String(40), primary_key=True),
    Column("round_id", String(40), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("deadline", Float, nullable=False),
    Column("policy_version", Integer, nullable=True),
    Index("ix_tasks_round_device", "round_id", "device_id"),
    Index("ix_tasks_device", "device_id"),
)

#: Individual updates, kept only until folded into a published version (then deleted).
updates = Table(
    "updates", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("round_id", String(40), nullable=False, index=True),
    Column("task_id", String(40), nullable=False, unique=True),
    Column("device_id", String(128), nullable=False),
    Column("base_version", Integer, nullable=False),
    Column("num_examples", Integer, nullable=False),
    #: The device's claim "not clipped" (header X-Fedmark-Within-Clip; NULL: no claim).  Only compared with
    #: the bit the server computes at the fold; never trusted.
    Column("within_clip", Boolean, nullable=True),
    Column("encoding", String(8), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    #: Residency partition key: the device's region (and partner); every fold read filters on it.
    Column("region", String(64), nullable=True),
    Column("partner", String(128), nullable=True),
    Index("ix_updates_round_region", "round_id", "region"),
)

#: Idempotency receipts: outlive the update so a retry after the fold still gets the same answer.
receipts = Table(
    "receipts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(128), nullable=False),
    Column("round_id", String(40), nullable=False),
    Column("idem_key", String(200), nullable=False),
    Column("body_sha", String(71), nullable=False),
    Column("update_id", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("device_id", "round_id", "idem_key", name="uq_receipts_key"),
)


# ---------------------------------------------------------------------------- governance (migration 0002)
#: Marketer tokens bound to a partner (tenant): they see only that partner's devices and shared models.
token_partners = Table(
    "token_partners", metadata,
    Column("token_id", Integer, primary_key=True, autoincrement=False),
    Column("partner", String(128), nullable=False),
)

#: Versioned governance policies per model (the newest version is in force); see server.governance.policy.
policies = Table(
    "policies", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("digest", String(71), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("model", "version", name="uq_policies_model_version"),
)

#: The hash-chained, append-only audit trail (server.governance.audit).  ``seq`` is assigned by the
#: appender (previous + 1), never by the database, so a deleted row leaves a visible gap.
audit_log = Table(
    "audit_log", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", Float, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("model", String(128), nullable=True),
    Column("actor", String(200), nullable=False),
    Column("code", String(64), nullable=True),
    Column("subject", String(128), nullable=True),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_kind_code", "kind", "code"),
    Index("ix_audit_model", "model"),
)

#: One row per accepted update, kept after the update itself is deleted: the record KPIs are computed from.
contributions = Table(
    "contributions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("update_id", Integer, nullable=False),
    Column("model", String(128), nullable=False),
    Column("round_id", String(40), nullable=False),
    Column("region", String(64), nullable=False),
    Column("partner", String(128), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("num_examples", Integer, nullable=False),
    Column("body_bytes", Integer, nullable=False),
    Column("policy_version", Integer, nullable=True),
    Column("purpose", String(128), nullable=True),
    Column("at", Float, nullable=False),
    Index("ix_contributions_model", "model"),
)

#: Per-cell (region x partner) privacy ledgers of hierarchical aggregation (server.rounds.hierarchical).
cell_states = Table(
    "cell_states", metadata,
    Column("model", String(128), primary_key=True),
    Column("cell", String(200), primary_key=True),
    Column("region", String(64), nullable=False),
    Column("partner", String(128), nullable=False),
    Column("ledger", Text, nullable=False),
    Column("releases", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

#: Each cell's DP release in a fold: what the global (or regional) version was formed from.
cell_aggregates = Table(
    "cell_aggregates", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False, index=True),
    Column("round_id", String(40), nullable=False),
    Column("fold", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("region", String(64), nullable=False),
    Column("partner", String(128), nullable=False),
    Column("contributors", Integer, nullable=False),
    Column("weight", Float, nullable=False),
    Column("aggregate_sha", String(71), nullable=False),
    Column("epsilon", Float, nullable=True),
    Column("at", Float, nullable=False),
)

#: Federated-evaluation aggregates reported by devices (server.governance.evaluation).
eval_reports = Table(
    "eval_reports", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("target", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("region", String(64), nullable=False),
    Column("partner", String(128), nullable=False),
    Column("segment", String(64), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("count", Integer, nullable=False),
    Column("loss_sum", Float, nullable=False),
    Column("hist", Text, nullable=True),
    Column("hits", Float, nullable=False),
    Column("ndcg", Float, nullable=False),
    Column("baseline_hits", Float, nullable=False),
    Column("body_bytes", Integer, nullable=False),
    Column("at", Float, nullable=False),
    UniqueConstraint("model", "target", "version", "device_id", "segment", name="uq_eval_reports_key"),
    Index("ix_eval_reports_target", "model", "target"),
)

#: Device-reported audience counts (records per segment, scored on the device, consent-filtered).
segment_reports = Table(
    "segment_reports", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("purpose", String(128), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("region", String(64), nullable=False),
    Column("partner", String(128), nullable=False),
    Column("segment", String(64), nullable=False),
    Column("count", Integer, nullable=False),
    Column("body_bytes", Integer, nullable=False),
    Column("at", Float, nullable=False),
    UniqueConstraint("model", "version", "purpose", "device_id", "segment", name="uq_segment_reports_key"),
)

#: Every activation request (allowed or denied) with its reason: the Compliant Activation Rate's record.
activations = Table(
    "activations", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False, index=True),
    Column("actor", String(200), nullable=False),
    Column("partner", String(128), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("version", Integer, nullable=True),
    Column("purpose", String(128), nullable=True),
    Column("region", String(64), nullable=True),
    Column("allowed", Boolean, nullable=False),
    Column("reason", String(64), nullable=True),
    Column("at", Float, nullable=False),
    #: The token that asked (tokens.id; migration 0007): grants bind to it, never to the token's display name.
    #: NULL (rows from before 0007, admin requests) grants nothing.
    Column("token_id", Integer, nullable=True),
    Index("ix_activations_grant", "token_id", "model", "version"),
)

#: Evaluation tasks handed to devices (migration 0007): with the training tasks, what scopes a device's
#: model downloads (server.governance.access).  One row per (model line, device): the latest target.
evaluation_tasks = Table(
    "evaluation_tasks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("target", Integer, nullable=False),
    Column("issued_at", Float, nullable=False),
    Index("ix_evaluation_tasks_device", "device_id", "model"),
)

#: Running sums of an open sync round, folded as updates arrive (server.rounds.sums): one row per
#: (round, part, writer process).  ``part`` is "" for an ungoverned round, else the cell key
#: "region|partner"; ``state`` is an ``Accumulator`` checkpoint.  Deleted when the round is folded
#: or abandoned.
round_sums = Table(
    "round_sums", metadata,
    Column("round_id", String(40), primary_key=True),
    Column("part", String(200), primary_key=True),
    Column("shard", String(40), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("state", LargeBinary, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# ---------------------------------------------------------------- federation (server.federation, migration 0009)
#: Coordinator side: one credential per regional server (``--role region``), issued by the coordinator's
#: admin.  Only the SHA-256 of the secret is kept; ``proof_key`` (= SHA-256 of the secret, hex) is the key
#: the coordinator proves itself with (HMAC of the region's nonce), so the region knows it talks to its
#: coordinator and not to any server that answers.
federation_regions = Table(
    "federation_regions", metadata,
    Column("region", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen", Float, nullable=True),
    Column("last_version", Integer, nullable=True),
)

#: Coordinator side: which models run global rounds, and how (``deadline_s``, ``min_regions``).
federation_models = Table(
    "federation_models", metadata,
    Column("model", String(128), primary_key=True),
    Column("config", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

#: Coordinator side: global rounds.  ``open_key`` (= model while open) makes one open round per model.
federation_rounds = Table(
    "federation_rounds", metadata,
    Column("id", String(40), primary_key=True),
    Column("model", String(128), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("open_key", String(128), nullable=True, unique=True),
    Column("deadline", Float, nullable=False),
    Column("min_regions", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("closed_at", Float, nullable=True),
    Column("result_version", Integer, nullable=True),
    Column("reason", Text, nullable=True),
)

#: Coordinator side: the regional aggregates pushed into a global round - the only thing that crosses a
#: region's border.  ``idem_key`` makes a push exactly-once; one aggregate per (round, region).
federation_aggregates = Table(
    "federation_aggregates", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idem_key", String(200), nullable=False, unique=True),
    Column("global_round", String(40), nullable=False),
    Column("model", String(128), nullable=False),
    Column("region", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("contributors", Integer, nullable=False),
    Column("clip_bits", Float, nullable=True),
    Column("epsilon", Float, nullable=True),
    Column("delta", Float, nullable=True),
    Column("aggregate_sha", String(71), nullable=False),
    Column("used", Boolean, nullable=True),
    Column("at", Float, nullable=False),
    UniqueConstraint("global_round", "region", name="uq_federation_aggregates_round_region"),
)

#: Region side: which local version holds which global version (``model`` is the local model name).
federation_links = Table(
    "federation_links", metadata,
    Column("model", String(128), primary_key=True),
    Column("global_version", Integer, primary_key=True),
    Column("local_version", Integer, nullable=False),
    Column("at", Float, nullable=False),
)

#: Region side: the outbox of regional aggregates - one row per local sub-round whose push ended
#: (``state``: acked / late / withheld); a closed held round without a row is still to be pushed.
federation_pushes = Table(
    "federation_pushes", metadata,
    Column("round_id", String(40), primary_key=True),
    Column("model", String(128), nullable=False),
    Column("state", String(16), nullable=False),
    Column("global_round", String(40), nullable=True),
    Column("detail", Text, nullable=True),
    Column("at", Float, nullable=False),
)


# ---------------------------------------------------------------------------- statistics (migration 0008)
#: Federated feature statistics tasks (server.rounds.statistics): a declared schema to measure, its privacy
#: settings, and once released the noised, k-suppressed release and the fitted schema (``schema_version``
#: counts the model's fitted schemas).  ``ledger`` is the model's statistics privacy ledger after this release.
statistics_tasks = Table(
    "statistics_tasks", metadata,
    Column("id", String(40), primary_key=True),
    Column("model", String(128), nullable=False, index=True),
    Column("plan", Text, nullable=False),
    Column("config", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("purpose", String(128), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("released_at", Float, nullable=True),
    Column("release", Text, nullable=True),
    Column("schema_version", Integer, nullable=True),
    Column("epsilon", Float, nullable=True),
    Column("ledger", Text, nullable=True),
)

#: One device's statistics contribution to a task (one per device: that bounds what a device adds).  The
#: body is emptied once released; the row remains as the record of who contributed (and the receipt:
#: ``idem_key`` + ``body_sha`` answer a retry with the original answer).
statistics_reports = Table(
    "statistics_reports", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(40), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("region", String(64), nullable=False),
    Column("partner", String(128), nullable=False),
    Column("idem_key", String(200), nullable=False),
    Column("body_sha", String(71), nullable=False),
    Column("body", Text, nullable=False),
    Column("body_bytes", Integer, nullable=False),
    Column("at", Float, nullable=False),
    UniqueConstraint("task_id", "device_id", name="uq_statistics_reports_device"),
)
