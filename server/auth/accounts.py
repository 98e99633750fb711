"""Issuing credentials: app keys, marketer tokens, device enrolment.

Enrolment trades an app key (issued by an admin to a partner's app team and
shipped inside the app) for a token bound to one device id and region.  Asking
again for the same device with the same app key revokes the old token and
returns a fresh one (a reinstalled app lost its token); a device id already
enrolled under another app key is refused, so one partner cannot take over
another partner's device.
"""
from __future__ import annotations

import re

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from server.auth.tokens import hash_secret, new_secret
from server.errors import ApiError
from server.storage import Store, schema

_ID_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
_REGION_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def check_name(value: object, what: str, pattern: re.Pattern[str] = _ID_RE) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ApiError(400, "bad_request", f"{what} must be a string of 1-{128 if pattern is _ID_RE else 64} "
                                           f"characters from A-Z a-z 0-9 . _ - (and : @ for ids); got {value!r}")
    return value


def issue_app_key(store: Store, partner: str, now: float) -> str:
    check_name(partner, "partner")
    key = new_secret("ak")
    with store.write() as conn:
        conn.execute(schema.app_keys.insert().values(key_hash=hash_secret(key), partner=partner, created_at=now))
    return key


def issue_token(store: Store, role: str, name: str, now: float, partner: str | None = None) -> str:
    """A marketer token; with ``partner`` it is bound to that tenant (sees only its devices and shared models)."""
    if partner is not None:
        check_name(partner, "partner")
    if role != "marketer":
        raise ApiError(400, "bad_request", f"admins issue tokens of role 'marketer' here (devices enrol with an app key); got role {role!r}")
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise ApiError(400, "bad_request", "name must be a non-empty string of at most 200 characters")
    token = new_secret("mt")
    with store.write() as conn:
        tid = conn.execute(schema.tokens.insert().values(token_hash=hash_secret(token), role=role, name=name,
                                                         device_id=None, revoked=False, created_at=now)).inserted_primary_key[0]
        if partner is not None:
            conn.execute(schema.token_partners.insert().values(token_id=tid, partner=partner))
    return token


def enroll(store: Store, app_key: object, device_id: object, region: object, now: float) -> dict[str, str]:
    if not isinstance(app_key, str) or not app_key:
        raise ApiError(400, "bad_request", "app_key is required: the key an admin issued with POST /v1/admin/app-keys")
    dev = check_name(device_id, "device_id")
    reg = check_name(region, "region", _REGION_RE)
    for _ in range(2):  # one retry if a concurrent enrolment of the same device wins the insert race
        try:
            with store.write() as conn:
                key = conn.execute(select(schema.app_keys.c.id, schema.app_keys.c.partner)
                                   .where(schema.app_keys.c.key_hash == hash_secret(app_key))).first()
                if key is None:
                    raise ApiError(401, "bad_app_key", "unknown app key; ask an admin for one (POST /v1/admin/app-keys)")
                existing = conn.execute(select(schema.devices).where(schema.devices.c.device_id == dev)).first()
                if existing is None:
                    conn.execute(schema.devices.insert().values(device_id=dev, region=reg, partner=key.partner,
                                                                app_key_id=key.id, created_at=now))
                elif existing.app_key_id != key.id:
                    raise ApiError(409, "device_conflict", f"device id {dev!r} is enrolled under another app key; "
                                                           "use a different device id")
                elif existing.region != reg:
                    # Residency partitions and per-region privacy ledgers rely on a device staying in one region.
                    raise ApiError(409, "region_change", f"device {dev!r} is enrolled in region {existing.region!r}; "
                                                         "a device's region is fixed at enrolment (data residency and "
                                                         "privacy accounting depend on it); enrol under a new device id")
                else:
                    conn.execute(update(schema.devices).where(schema.devices.c.device_id == dev).values(region=reg))
                    conn.execute(update(schema.tokens).where(schema.tokens.c.device_id == dev).values(revoked=True))
                token = new_secret("dt")
                conn.execute(schema.tokens.insert().values(token_hash=hash_secret(token), role="device", name=dev,
                                                           device_id=dev, revoked=False, created_at=now))
                return {"device_token": token, "device_id": dev, "region": reg, "partner": key.partner}
        except IntegrityError:
            continue
    raise ApiError(503, "unavailable", "concurrent enrolment of this device; retry", retry_after=1)
