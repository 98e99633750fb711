"""Bearer tokens, roles and the ``requires`` decorator.

Why hashes only: a leaked database must not leak working credentials, so
tokens and app keys are stored as SHA-256 hashes (they are long random
strings, so a plain hash is enough; no per-token salt is needed).  The admin
secret comes from configuration and is compared in constant time.

Every token has a lifetime (``DEVICE_TOKEN_TTL_S``, ``MARKETER_TOKEN_TTL_S``):
past it the token answers 401 ``token_expired`` (a device enrols again with its
secret; ``POST /v1/tokens/refresh`` renews a token that is still valid).
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from flask import current_app, g, request
from sqlalchemy import func, select

from server.auth.cache import TokenCache
from server.errors import ApiError
from server.storage import get_store, schema

ROLES = ("device", "marketer", "admin")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Principal:
    """Who is calling: role plus, for devices, the device they are bound to."""

    role: str
    name: str
    device_id: str | None = None
    region: str | None = None
    partner: str | None = None
    #: The configured attestation verifier vouched for this device (k-thresholds count attested devices only).
    attested: bool = False
    #: An admin recorded that the person behind this device withdrew consent: its uploads are refused.
    consent_withdrawn: bool = False
    #: The token's row id (stable across refreshes; what revocation and grants refer to); None for the admin.
    token_id: int | None = None


def token_ttl(role: str) -> float:
    """The configured lifetime of a token of ``role`` (seconds)."""
    key = "DEVICE_TOKEN_TTL_S" if role == "device" else "MARKETER_TOKEN_TTL_S"
    return float(current_app.config.get(key) or 0) or float("inf")


def expiry(role: str, created_at: float, expires_at: float | None) -> float:
    """When a token stops working: its stored expiry, or (tokens from before expiries) creation + TTL."""
    return float(expires_at) if expires_at is not None else float(created_at) + token_ttl(role)


def lookup(conn: Any, token: str, now: float) -> Any:
    """The valid token row of ``token`` (with its device's fields), ``None`` if unknown or revoked.

    Raises 401 ``token_expired`` for a known token past its lifetime.
    """
    row = _row(conn, hash_secret(token))
    if row is not None:
        _check_expiry(row, now)
    return row


def _row(conn: Any, token_hash: str) -> Any:
    return conn.execute(
        select(schema.tokens.c.id, schema.tokens.c.role, schema.tokens.c.name, schema.tokens.c.device_id,
               schema.tokens.c.created_at, schema.tokens.c.expires_at,
               schema.devices.c.region, schema.devices.c.attested, schema.devices.c.consent_withdrawn_at,
               func.coalesce(schema.devices.c.partner, schema.token_partners.c.partner).label("partner"))
        .select_from(schema.tokens.outerjoin(schema.devices, schema.devices.c.device_id == schema.tokens.c.device_id)
                     .outerjoin(schema.token_partners, schema.token_partners.c.token_id == schema.tokens.c.id))
        .where(schema.tokens.c.token_hash == token_hash, schema.tokens.c.revoked.is_(False))
    ).first()


def _check_expiry(row: Any, now: float) -> None:
    if now >= expiry(row.role, row.created_at, row.expires_at):
        what = ("enrol the device again (POST /v1/devices/enroll with its device_secret; the SDKs do this)"
                if row.role == "device" else "ask an admin for a new token (POST /v1/admin/tokens)")
        raise ApiError(401, "token_expired", f"this token expired; {what}. Renew tokens before they expire with "
                                             "POST /v1/tokens/refresh")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "bad_token", "missing or malformed Authorization header; send 'Authorization: Bearer <token>'")
    return token.strip()


def refuse_failing_address() -> str:
    """429 for a client address over its failed-authentication limit (checked before any lookup); returns it.

    The one home of that rule: token checks, enrolment and the metrics credential all ask it, and count a
    failure with :func:`count_failure`."""
    addr = request.remote_addr or "unknown"
    wait = current_app.extensions["fedmark_limiter"].blocked("auth_failure", addr)
    if wait > 0:
        raise ApiError(429, "rate_limited", f"too many requests with a missing or wrong credential from this "
                                            f"address; retry after {wait:.1f} s", retry_after=wait)
    return addr


def count_failure(addr: str) -> None:
    """Count one failed authentication of ``addr`` (see :func:`refuse_failing_address`)."""
    current_app.extensions["fedmark_limiter"].take("auth_failure", addr)


def authenticate() -> Principal:
    """The caller's principal; a client address that keeps failing is slowed down (429) before any lookup."""
    addr = refuse_failing_address()
    try:
        return _authenticate()
    except ApiError:
        count_failure(addr)
        raise


def _authenticate() -> Principal:
    token = _bearer()
    admin = current_app.config["ADMIN_TOKEN"]
    if admin and hmac.compare_digest(token.encode(), str(admin).encode()):
        return Principal("admin", "admin")
    token_hash = hash_secret(token)
    cache: TokenCache | None = current_app.extensions.get("fedmark_token_cache")
    row = cache.get(token_hash) if cache is not None else None
    if row is None:
        with get_store().read() as conn:
            row = _row(conn, token_hash)
        if row is not None and cache is not None:
            cache.put(token_hash, row)
    if row is not None:
        _check_expiry(row, float(current_app.config["CLOCK"].now()))
    if row is None:
        raise ApiError(401, "bad_token", "unknown or revoked token; enrol the device again (POST /v1/devices/enroll) or ask an admin for a token")
    return Principal(row.role, row.name, row.device_id, row.region, row.partner, attested=bool(row.attested),
                     consent_withdrawn=row.consent_withdrawn_at is not None, token_id=int(row.id))


def requires(*roles: str) -> Callable[[F], F]:
    """Allow the listed roles (``"any"`` = every authenticated role); admins may call everything.

    Device calls also pass the per-device rate limiter (429 + Retry-After).
    """
    allowed = set(ROLES) if "any" in roles else set(roles) | {"admin"}

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            who = authenticate()
            if who.role not in allowed:
                raise ApiError(403, "forbidden", f"this endpoint needs role {' or '.join(sorted(allowed))}; your token has role {who.role}")
            if who.role == "device":
                wait = current_app.extensions["fedmark_limiter"].take("device", who.device_id or who.name)
                if wait > 0:
                    raise ApiError(429, "rate_limited", f"too many requests from this device; retry after {wait:.1f} s",
                                   retry_after=wait)
            g.principal = who
            return fn(*args, **kwargs)

        wrapper.__fedmark_roles__ = tuple(sorted(allowed))  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return deco


def principal() -> Principal:
    return g.principal


def forget_verified_tokens() -> None:
    """Call after committing a change to tokens or devices (revocation, withdrawal, enrolment, refresh)."""
    cache: TokenCache | None = current_app.extensions.get("fedmark_token_cache")
    if cache is not None:
        cache.forget_all()
