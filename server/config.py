"""Configuration classes, read from the environment.

Why classes (Flask's documented pattern): one place lists every knob with its
default, ``create_app`` takes an instance, and tests build one in code instead
of mutating ``os.environ``.  ``Config.from_env`` maps ``FEDMARK_*`` variables onto
attributes; anything not set keeps the class default.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Mapping

from server.clock import Clock, SystemClock

__all__ = ["Config", "TestingConfig", "boolean", "env_table"]


def boolean(raw: str) -> bool:
    """An environment flag: 1/true/yes/on or 0/false/no/off."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def _default_data_dir() -> str:
    return os.path.join(os.getcwd(), "var", "fedmark")


class Config:
    """Defaults for a single-node server: SQLite + artifact files under DATA_DIR."""

    #: Artifact files and, unless DATABASE_URL says otherwise, the SQLite database (default: ./var/fedmark).
    DATA_DIR: str = _default_data_dir()
    #: SQLAlchemy URL; ``None`` means ``sqlite:///<DATA_DIR>/fedmark.db``.
    DATABASE_URL: str | None = None
    #: Secret of the admin role.  ``None``: a random one is generated and logged at start-up.
    ADMIN_TOKEN: str | None = None
    #: Largest request body accepted at all (artifact uploads); updates have a tighter per-request cap.
    MAX_CONTENT_LENGTH: int = 512 * 1024 * 1024
    #: Absolute cap on one update body, whatever the model size.
    MAX_UPDATE_BYTES: int = 64 * 1024 * 1024
    #: Every JSON body (enrolment, tasks, policies, reports ...) is refused beyond this many bytes, before parsing.
    MAX_JSON_BYTES: int = 1024 * 1024
    #: Per-device token bucket: sustained requests per second and burst size.
    RATE_LIMIT_PER_S: float = 5.0
    RATE_LIMIT_BURST: int = 30
    #: Enrolments per client address and per app key (the app key is public: it ships in every app).
    ENROL_ADDRESS_LIMIT_PER_S: float = 1.0
    ENROL_ADDRESS_LIMIT_BURST: int = 60
    ENROL_APP_KEY_LIMIT_PER_S: float = 50.0
    ENROL_APP_KEY_LIMIT_BURST: int = 5000
    #: Requests with a wrong or missing token, per client address.
    AUTH_FAILURE_LIMIT_PER_S: float = 0.5
    AUTH_FAILURE_LIMIT_BURST: int = 30
    #: Where the rate-limit counters live: ``memory://`` (this process) or ``redis://127.0.0.1:6379`` (shared
    #: by every worker process and server).
    RATE_LIMIT_STORAGE: str = "memory://"
    #: Prefix of the counters' keys in a shared store (servers of different deployments sharing one Redis).
    RATE_LIMIT_KEY_PREFIX: str = "fedmark"
    #: Seconds between background deadline checks; 0 disables the timer (checks stay lazy + /v1/admin/tick).
    TICK_SECONDS: float = 2.0
    #: Seconds a device waits before asking again when no task is available.
    NO_TASK_RETRY_S: int = 30
    #: Task requests (``"wait"``) one worker process holds open at once; each holds a request thread.
    LONG_POLL_SLOTS: int = 16
    #: Apply Alembic migrations when the app starts.
    MIGRATE_ON_START: bool = True
    #: Seconds SQLite waits for a lock before a request fails with 503.
    SQLITE_BUSY_TIMEOUT_S: float = 30.0
    #: Server-side secret mixed into each round's noise seed; ``None``: generated once and kept in the database.
    NOISE_SECRET: str | None = None
    #: JSON-lines file where every regional fold records the update rows it read (residency audits/tests).
    RESIDENCY_TRACE: str | None = None
    #: Milliseconds the group committer waits for more write jobs after the first of a batch.  0: none —
    #: batches still form from the jobs that arrive while the previous batch commits, without delaying a
    #: lone request.
    GROUP_COMMIT_WAIT_MS: float = 0.0
    #: Seconds a verified token is remembered in-process (skips the token lookup of a device's next request);
    #: a revocation made through another process takes effect after at most this long. 0 turns it off.
    AUTH_CACHE_S: float = 30.0
    #: Lifetime of a device token and of a marketer token (seconds); ``POST /v1/tokens/refresh`` renews one.
    DEVICE_TOKEN_TTL_S: float = 30 * 86400.0
    MARKETER_TOKEN_TTL_S: float = 90 * 86400.0
    #: Device attestation at enrolment: an import path ``package.module:Name`` (a class, called with no
    #: arguments, or an object) or an object with ``verify(device_id, evidence)``; see server/auth/attestation.py.
    #: The default attests nothing: every device is unattested.
    ATTESTATION_VERIFIER: Any = "server.auth.attestation:NoAttestation"
    #: Bearer credential of ``GET /metrics`` (Prometheus ``authorization: {credentials: ...}``), apart from every
    #: other role.  ``None``: /metrics is off and answers 404.
    METRICS_TOKEN: str | None = None
    #: Refuse enrolment of devices the verifier does not attest (403 attestation_required).
    ATTESTATION_REQUIRED: bool = False
    #: Federation (server/federation, docs/GOVERNANCE.md): this server's role - ``single`` (devices, rounds and
    #: publishing in one server), ``region`` (serves one region's devices, pushes its noised aggregate up) or
    #: ``global`` (the coordinator: combines regional aggregates, serves no device).
    ROLE: str = "single"
    #: The region a ``--role region`` server serves (its app keys are issued for it alone).
    REGION: str | None = None
    #: The coordinator a regional server pushes to and pulls from, and its region credential (issued by the
    #: coordinator's admin: POST /v1/federation/regions).
    UPSTREAM_URL: str | None = None
    UPSTREAM_TOKEN: str | None = None
    #: Seconds between a regional server's pulls/pushes and the coordinator's global-round checks; 0: on demand only.
    FEDERATION_SYNC_S: float = 1.0
    #: A regional aggregate of fewer devices than this (or the policy's k_min, if larger) never leaves the region.
    FEDERATION_K_MIN: int = 3
    TESTING: bool = False
    #: Time source; tests inject a :class:`server.clock.ManualClock`.
    CLOCK: Clock = SystemClock()

    _ENV: Mapping[str, tuple[str, Any]] = {
        "FEDMARK_DATA_DIR": ("DATA_DIR", str),
        "FEDMARK_DATABASE_URL": ("DATABASE_URL", str),
        "FEDMARK_ADMIN_TOKEN": ("ADMIN_TOKEN", str),
        "FEDMARK_MAX_CONTENT_LENGTH": ("MAX_CONTENT_LENGTH", int),
        "FEDMARK_MAX_UPDATE_BYTES": ("MAX_UPDATE_BYTES", int),
        "FEDMARK_MAX_JSON_BYTES": ("MAX_JSON_BYTES", int),
        "FEDMARK_LONG_POLL_SLOTS": ("LONG_POLL_SLOTS", int),
        "FEDMARK_RATE_LIMIT_PER_S": ("RATE_LIMIT_PER_S", float),
        "FEDMARK_RATE_LIMIT_BURST": ("RATE_LIMIT_BURST", int),
        "FEDMARK_ENROL_ADDRESS_LIMIT_PER_S": ("ENROL_ADDRESS_LIMIT_PER_S", float),
        "FEDMARK_ENROL_ADDRESS_LIMIT_BURST": ("ENROL_ADDRESS_LIMIT_BURST", int),
        "FEDMARK_ENROL_APP_KEY_LIMIT_PER_S": ("ENROL_APP_KEY_LIMIT_PER_S", float),
        "FEDMARK_ENROL_APP_KEY_LIMIT_BURST": ("ENROL_APP_KEY_LIMIT_BURST", int),
        "FEDMARK_AUTH_FAILURE_LIMIT_PER_S": ("AUTH_FAILURE_LIMIT_PER_S", float),
        "FEDMARK_AUTH_FAILURE_LIMIT_BURST": ("AUTH_FAILURE_LIMIT_BURST", int),
        "FEDMARK_RATE_LIMIT_STORAGE": ("RATE_LIMIT_STORAGE", str),
        "FEDMARK_RATE_LIMIT_KEY_PREFIX": ("RATE_LIMIT_KEY_PREFIX", str),
        "FEDMARK_TICK_SECONDS": ("TICK_SECONDS", float),
        "FEDMARK_NO_TASK_RETRY_S": ("NO_TASK_RETRY_S", int),
        "FEDMARK_NOISE_SECRET": ("NOISE_SECRET", str),
        "FEDMARK_RESIDENCY_TRACE": ("RESIDENCY_TRACE", str),
        "FEDMARK_AUTH_CACHE_S": ("AUTH_CACHE_S", float),
        "FEDMARK_GROUP_COMMIT_WAIT_MS": ("GROUP_COMMIT_WAIT_MS", float),
        "FEDMARK_DEVICE_TOKEN_TTL_S": ("DEVICE_TOKEN_TTL_S", float),
        "FEDMARK_MARKETER_TOKEN_TTL_S": ("MARKETER_TOKEN_TTL_S", float),
        "FEDMARK_ATTESTATION_VERIFIER": ("ATTESTATION_VERIFIER", str),
        "FEDMARK_ATTESTATION_REQUIRED": ("ATTESTATION_REQUIRED", boolean),
        "FEDMARK_METRICS_TOKEN": ("METRICS_TOKEN", str),
        "FEDMARK_ROLE": ("ROLE", str),
        "FEDMARK_REGION": ("REGION", str),
        "FEDMARK_UPSTREAM": ("UPSTREAM_URL", str),
        "FEDMARK_UPSTREAM_TOKEN": ("UPSTREAM_TOKEN", str),
        "FEDMARK_FEDERATION_SYNC_S": ("FEDERATION_SYNC_S", float),
        "FEDMARK_FEDERATION_K_MIN": ("FEDERATION_K_MIN", int),
    }

    def __init__(self, **overrides: Any) -> None:
        for key, value in overrides.items():
            if not key.isupper() or not hasattr(type(self), key):
                raise ValueError(f"unknown config setting {key!r}; settings are the upper-case attributes of {type(self).__name__}")
            setattr(self, key, value)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Config":
        """Build a config from ``FEDMARK_*`` variables; keyword overrides win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var, (attr, typ) in cls._ENV.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[attr] = typ(raw)
            except ValueError as exc:
                raise ValueError(f"environment variable {var}={raw!r} is not a valid {typ.__name__}") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def database_url(self) -> str:
        if self.DATABASE_URL:
            return self.DATABASE_URL
        return "sqlite:///" + str(Path(self.DATA_DIR).resolve() / "fedmark.db")

    def finalize(self) -> "Config":
        """Fill generated defaults (admin token) so the app never runs without one."""
        if not self.ADMIN_TOKEN:
            self.ADMIN_TOKEN = "adm_" + secrets.token_urlsafe(24)
            self._generated_admin_token = True
        return self

    def as_flask(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in dir(self) if k.isupper() and not k.startswith("_")}


def env_table(cls: type[Config] = Config) -> list[tuple[str, str, str]]:
    """``(variable, default, description)`` for every ``FEDMARK_*`` variable ``from_env`` reads, in table order.

    Why parse the source: the ``#:`` comment above each attribute is the one home of its documentation
    (Sphinx reads the same comments); ``fedmark server --help`` prints this table, so help and code
    cannot drift.  A comment covers the attributes that follow it up to the next comment or blank line.
    """
    import inspect

    docs: dict[str, str] = {}
    pending: list[str] = []
    current = ""
    for line in inspect.getsource(Config).splitlines():
        text = line.strip()
        if text.startswith("#:"):
            if not pending:
                current = ""
            pending.append(text[2:].strip())
            continue
        if not text:
            pending, current = [], ""
            continue
        if pending:
            current, pending = " ".join(pending), []
        name = text.split(":", 1)[0].split("=", 1)[0].strip()
        if name.isupper() and current:
            docs[name] = current
    rows = []
    for var, (attr, _typ) in cls._ENV.items():
        default = getattr(cls, attr)
        if attr == "DATA_DIR":
            default = "./var/fedmark"
        rows.append((var, str(default), docs.get(attr, "").replace("``", "")))
    return rows


class TestingConfig(Config):
    """For tests: no background timer (tests call /v1/admin/tick or advance a ManualClock), lax rate limit."""

    TESTING = True
    TICK_SECONDS = 0.0
    RATE_LIMIT_PER_S = 1000.0
    RATE_LIMIT_BURST = 1000
    ENROL_ADDRESS_LIMIT_PER_S = 1000.0
    ENROL_ADDRESS_LIMIT_BURST = 100_000
    AUTH_FAILURE_LIMIT_PER_S = 1000.0
    AUTH_FAILURE_LIMIT_BURST = 100_000
    NO_TASK_RETRY_S = 1
