"""Issuing and withdrawing credentials: app keys, marketer tokens, device enrolment, refresh, revocation.

Trust (docs/GOVERNANCE.md, threat model): an **app key** ships inside every app
and page, so it is public.  It proves which app a device belongs to and, as
keys are issued per region, which residency zone: the device's region is the
key's region, and an enrolment that claims another is refused
(``region_mismatch``).  A key issued without a region is bound to ``default``.

A **device** proves it is the same device with a secret it made itself at
first enrolment (``device_secret``: at least 32 random bytes, base64url); the
server keeps only its SHA-256.  Re-enrolling a known device id needs that
secret (compared in constant time) or the device's current valid token
(``Authorization: Bearer``); otherwise 409 ``device_proof_required``.  A device
that lost both, or one enrolled before devices had secrets, is re-enrolled
after an admin reset (:func:`reset_device`), never silently.  A device id
already enrolled under another app key is refused (``device_conflict``).

Re-enrolment revokes the device's older tokens; the new token, like every
token, expires after its role's TTL.
"""
from __future__ import annotations

import hmac
import re
from typing import Any, Callable

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from server.auth.attestation import AttestationResult
from server.auth.tokens import Principal, hash_secret, lookup, new_secret
from server.errors import ApiError
from server.storage import Store, schema

_ID_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
_REGION_RE = REGION_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # also a federation region's name
#: A device secret: base64url of at least 32 random bytes (43 characters) .. 96 bytes.
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{43,128}$")
DEFAULT_REGION = "default"
_MAX_ID = 2**31 - 1


def check_name(value: object, what: str, pattern: re.Pattern[str] = _ID_RE) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ApiError(400, "bad_request", f"{what} must be a string of 1-{128 if pattern is _ID_RE else 64} "
                                           f"characters from A-Z a-z 0-9 . _ - (and : @ for ids); got {value!r}")
    return value


def issue_app_key(store: Store, partner: str, now: float, region: str | None = None) -> dict[str, str]:
    """A new app key of ``partner`` for devices of ``region`` (``default`` when not given; never "any region")."""
    check_name(partner, "partner")
    reg = DEFAULT_REGION if region is None else check_name(region, "region", _REGION_RE)
    key = new_secret("ak")
    with store.write() as conn:
        conn.execute(schema.app_keys.insert().values(key_hash=hash_secret(key), partner=partner, region=reg,
                                                     created_at=now))
    return {"app_key": key, "partner": partner, "region": reg}


def issue_token(store: Store, role: str, name: str, now: float, partner: str | None = None,
                ttl: float = float("inf")) -> dict[str, Any]:
    """A marketer token; with ``partner`` it is bound to that tenant (sees only its devices and shared models).

    Returns ``{"token", "id", "expires_at"}``; ``id`` names the token for revocation, across refreshes.
    """
    if partner is not None:
        check_name(partner, "partner")
    if role != "marketer":
        raise ApiError(400, "bad_request", f"admins issue tokens of role 'marketer' here (devices enrol with an app key); got role {role!r}")
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise ApiError(400, "bad_request", "name must be a non-empty string of at most 200 characters")
    token = new_secret("mt")
    expires = _expires(now, ttl)
    with store.write() as conn:
        tid = conn.execute(schema.tokens.insert().values(token_hash=hash_secret(token), role=role, name=name,
                                                         device_id=None, revoked=False, created_at=now,
                                                         expires_at=expires)).inserted_primary_key[0]
        if partner is not None:
            conn.execute(schema.token_partners.insert().values(token_id=tid, partner=partner))
    return {"token": token, "id": int(tid), "expires_at": expires}


def _expires(now: float, ttl: float) -> float | None:
    return None if ttl == float("inf") else float(now) + float(ttl)


def _proof_required(dev: str, why: str) -> ApiError:
    return ApiError(409, "device_proof_required",
                    f"device {dev!r} is already enrolled and {why}. Re-enrolment must prove it is the same device: "
                    "send the device_secret it first enrolled with (the fedmark SDKs keep it in their storage) or its "
                    "current token as 'Authorization: Bearer <token>'. A device that lost both needs an admin reset "
                    f"(POST /v1/admin/devices/{dev}/reset), after which it enrols afresh")


def _token_proves(conn: Connection, bearer: str | None, dev: str, now: float) -> bool:
    if not bearer:
        return False
    try:
        row = lookup(conn, bearer, now)
    except ApiError:  # expired: no proof
        return False
    return row is not None and row.role == "device" and row.device_id == dev


def enroll(store: Store, app_key: object, device_id: object, region: object, now: float, *,
           device_secret: object = None, bearer: str | None = None,
           attestation: AttestationResult | None = None, attestation_required: bool = False,
           ttl: float = float("inf"), writer: Callable[[Callable[[Connection], Any]], Any] | None = None
           ) -> dict[str, Any]:
    """Trade an app key (plus, for a known device, its proof) for a device token.

    ``writer`` runs the write job (the server passes its group committer's ``run``, so
    enrolments that arrive together share one commit); default: its own transaction."""
    if not isinstance(app_key, str) or not app_key:
        raise ApiError(400, "bad_request", "app_key is required: the key an admin issued with POST /v1/admin/app-keys")
    dev = check_name(device_id, "device_id")
    claimed = None if region is None else check_name(region, "region", _REGION_RE)
    if device_secret is not None and (not isinstance(device_secret, str) or not _SECRET_RE.match(device_secret)):
        raise ApiError(400, "bad_request", "device_secret must be base64url (A-Z a-z 0-9 - _) of at least 32 random "
                                           "bytes made on the device (43-128 characters)")
    secret_hash = hash_secret(device_secret) if isinstance(device_secret, str) else None
    attested = bool(attestation and attestation.attested)

    def job(conn: Connection) -> dict[str, Any]:
        key = conn.execute(select(schema.app_keys.c.id, schema.app_keys.c.partner, schema.app_keys.c.region)
                           .where(schema.app_keys.c.key_hash == hash_secret(app_key))).first()
        if key is None:
            raise ApiError(401, "bad_app_key", "unknown app key; ask an admin for one (POST /v1/admin/app-keys)")
        if claimed is not None and claimed != key.region:
            raise ApiError(403, "region_mismatch",
                           f"this app key is issued for region {key.region!r}, not {claimed!r}: a device's region "
                           "comes from its app key. Ship the app key of the device's region (POST "
                           "/v1/admin/app-keys {\"region\": ...}), or leave region out")
        reg = key.region
        existing = conn.execute(select(schema.devices).where(schema.devices.c.device_id == dev)).first()
        final_attested = attested
        if existing is None:
            if attestation_required and not attested:
                raise _attestation_required(attestation)
            conn.execute(schema.devices.insert().values(device_id=dev, region=reg, partner=key.partner,
                                                        app_key_id=key.id, created_at=now,
                                                        secret_hash=secret_hash, attested=attested,
                                                        revoked=False))
        else:
            _check_reenrolment(conn, existing, key.id, key.partner, reg, dev, secret_hash, bearer, now)
            was_attested = bool(existing.attested) and existing.reset_at is None
            if attestation_required and not (attested or was_attested):
                raise _attestation_required(attestation)
            final_attested = attested or was_attested
            values: dict[str, Any] = {"attested": final_attested, "reset_at": None}
            if existing.secret_hash is None or existing.reset_at is not None:
                values["secret_hash"] = secret_hash  # a reset device, or one from before secrets: set it now
            conn.execute(update(schema.devices).where(schema.devices.c.device_id == dev).values(**values))
            conn.execute(update(schema.tokens).where(schema.tokens.c.device_id == dev).values(revoked=True))
        token = new_secret("dt")
        expires = _expires(now, ttl)
        conn.execute(schema.tokens.insert().values(token_hash=hash_secret(token), role="device", name=dev,
                                                   device_id=dev, revoked=False, created_at=now,
                                                   expires_at=expires))
        return {"device_token": token, "device_id": dev, "region": reg, "partner": key.partner,
                "attested": final_attested,
                "expires_at": expires}

    run = writer or _writer_of(store)
    for _ in range(2):  # one retry if a concurrent enrolment of the same device wins the insert race
        try:
            return run(job)
        except IntegrityError:
            continue
    raise ApiError(503, "unavailable", "concurrent enrolment of this device; retry", retry_after=1)


def _writer_of(store: Store) -> Callable[[Callable[[Connection], Any]], Any]:
    def run(job: Callable[[Connection], Any]) -> Any:
        with store.write() as conn:
            return job(conn)
    return run


def _attestation_required(result: AttestationResult | None) -> ApiError:
    why = f" ({result.reason})" if result is not None and result.reason else ""
    return ApiError(403, "attestation_required", "this server enrols attested devices only and the device's "
                                                 f"attestation evidence was not accepted{why}; send the platform's "
                                                 "attestation as the 'attestation' field")


def _check_reenrolment(conn: Connection, existing: Any, key_id: int, partner: str, reg: str, dev: str,
                       secret_hash: str | None, bearer: str | None, now: float) -> None:
    if existing.partner != partner or (existing.app_key_id != key_id and existing.region == reg):
        raise ApiError(409, "device_conflict", f"device id {dev!r} is enrolled under another app key; "
                                               "use a different device id")
    if existing.region != reg:
        # Residency partitions and per-region privacy ledgers rely on a device staying in one region.
        raise ApiError(409, "region_change", f"device {dev!r} is enrolled in region {existing.region!r}; "
                                             "a device's region is fixed at enrolment (data residency and "
                                             "privacy accounting depend on it); enrol under a new device id")
    if existing.revoked:
        raise ApiError(403, "device_revoked", f"device {dev!r} was revoked by an admin; only an admin reset "
                                              f"(POST /v1/admin/devices/{dev}/reset) lets it enrol again")
    if existing.reset_at is not None:
        return  # an admin reset it: this enrolment sets its new secret
    if existing.secret_hash is not None:
        if secret_hash is not None:
            if hmac.compare_digest(secret_hash, existing.secret_hash):
                return
            raise _proof_required(dev, "the device_secret sent is not the one it enrolled with")
        if _token_proves(conn, bearer, dev, now):
            return
        raise _proof_required(dev, "neither its device_secret nor a valid token of it was sent")
    if _token_proves(conn, bearer, dev, now):
        return
    raise _proof_required(dev, "it has no stored device secret (enrolled without one), and no valid token of it "
                               "was sent")


# ---------------------------------------------------------------------------- refresh
def refresh(store: Store, who: Principal, now: float, ttl: float) -> dict[str, Any]:
    """Replace the caller's (valid) token with a new one under the same id; the old one stops working."""
    if who.token_id is None:
        raise ApiError(400, "bad_request", "the admin token comes from the server configuration and is not refreshed")
    token = new_secret("dt" if who.role == "device" else "mt")
    expires = _expires(now, ttl)
    with store.write() as conn:
        n = conn.execute(update(schema.tokens).where(schema.tokens.c.id == who.token_id,
                                                     schema.tokens.c.revoked.is_(False))
                         .values(token_hash=hash_secret(token), expires_at=expires)).rowcount
    if n != 1:
        raise ApiError(401, "bad_token", "this token was revoked meanwhile; enrol again or ask an admin for a token")
    out: dict[str, Any] = {"token": token, "id": who.token_id, "role": who.role, "expires_at": expires}
    if who.role == "device":
        out["device_token"] = token
        out["device_id"] = who.device_id
    return out


# ---------------------------------------------------------------------------- admin actions (the api layer audits)
def _device(conn: Connection, device_id: str) -> Any:
    row = conn.execute(select(schema.devices).where(schema.devices.c.device_id == check_name(device_id, "device id"))).first()
    if row is None:
        raise ApiError(404, "unknown_device", f"no device {device_id!r} is enrolled; GET /v1/devices lists them")
    return row


def _revoke_device_tokens(conn: Connection, device_id: str) -> int:
    return int(conn.execute(update(schema.tokens).where(schema.tokens.c.device_id == device_id,
                                                        schema.tokens.c.revoked.is_(False))
                            .values(revoked=True)).rowcount)


def reset_device(conn: Connection, device_id: str, now: float) -> dict[str, Any]:
    """Forget the device's secret and attestation, revoke its tokens, lift a revocation: it may enrol afresh."""
    row = _device(conn, device_id)
    n = _revoke_device_tokens(conn, row.device_id)
    conn.execute(update(schema.devices).where(schema.devices.c.device_id == row.device_id)
                 .values(secret_hash=None, attested=False, revoked=False, reset_at=now))
    return {"device_id": row.device_id, "tokens_revoked": n, "reset": True}


def revoke_device(conn: Connection, device_id: str) -> dict[str, Any]:
    """Block a device: revoke every token of it; it cannot enrol again until an admin reset."""
    row = _device(conn, device_id)
    n = _revoke_device_tokens(conn, row.device_id)
    conn.execute(update(schema.devices).where(schema.devices.c.device_id == row.device_id).values(revoked=True))
    return {"device_id": row.device_id, "tokens_revoked": n, "revoked": True}


def set_consent_withdrawn(conn: Connection, device_id: str, withdrawn: bool, now: float) -> dict[str, Any]:
    """Record (or, on renewed consent, clear) that the person behind a device withdrew consent."""
    row = _device(conn, device_id)
    conn.execute(update(schema.devices).where(schema.devices.c.device_id == row.device_id)
                 .values(consent_withdrawn_at=now if withdrawn else None))
    return {"device_id": row.device_id, "consent_withdrawn": withdrawn}


def revoke_token(conn: Connection, token_id: int) -> dict[str, Any]:
    """Revoke one token by its id (as returned by POST /v1/admin/tokens and POST /v1/tokens/refresh)."""
    if not 0 < token_id <= _MAX_ID:  # ids beyond a 32-bit integer column cannot exist
        raise ApiError(404, "unknown_token", f"no token has id {token_id}")
    row = conn.execute(select(schema.tokens.c.id, schema.tokens.c.role, schema.tokens.c.device_id)
                       .where(schema.tokens.c.id == token_id)).first()
    if row is None:
        raise ApiError(404, "unknown_token", f"no token has id {token_id}")
    conn.execute(update(schema.tokens).where(schema.tokens.c.id == token_id).values(revoked=True))
    return {"id": int(row.id), "role": row.role, "revoked": True}


def consent_withdrawn_count(conn: Connection) -> int:
    """How many devices carry the consent-withdrawn flag (a count for KPIs; never which)."""
    return int(conn.execute(select(func.count()).select_from(schema.devices)
                            .where(schema.devices.c.consent_withdrawn_at.is_not(None))).scalar() or 0)
