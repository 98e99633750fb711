"""Region credentials (issued by the coordinator's admin) and the coordinator's proof of identity.

Both directions are authenticated, and each side checks the other's role:

* **region -> coordinator.**  A region sends ``Authorization: Bearer fmr_...``,
  a credential the coordinator's admin issued for that region
  (``POST /v1/federation/regions``), plus ``X-Fedmark-Role: region``.  The
  coordinator keeps only the SHA-256 of the secret (as for every token), takes
  the region's name from the credential, never from the request, and refuses a
  push whose declared region differs.  Admin, marketer and device tokens are
  not region credentials: the table is separate, so no other role can push.
* **coordinator -> region.**  Every request carries a fresh nonce; every
  answer of the coordinator carries ``X-Fedmark-Role: global`` and
  ``X-Fedmark-Proof = HMAC-SHA256(key=sha256(secret), "global|nonce|sha256(body)")``.
  Only a server holding the credential's hash (the coordinator that issued
  it) can compute it, so a region pointed at a wrong URL - another region, a
  single server, an impostor - refuses the answer instead of installing its
  parameters.  The body hash binds the proof to the parameters served.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import Connection, select, update

from server.auth.accounts import REGION_NAME
from server.errors import ApiError
from server.storage import schema

__all__ = ["HDR_ROLE", "HDR_REGION", "HDR_NONCE", "HDR_PROOF", "PREFIX", "issue", "region_of_secret",
           "proof", "check_proof", "secret_key", "check_region_name"]

HDR_ROLE, HDR_REGION, HDR_NONCE, HDR_PROOF = "X-Fedmark-Role", "X-Fedmark-Region", "X-Fedmark-Nonce", "X-Fedmark-Proof"
PREFIX = "fmr"


def check_region_name(region: Any, field: str = "region") -> str:
    if not isinstance(region, str) or not REGION_NAME.match(region):
        raise ApiError(400, "bad_request", f"{field} must be 1-64 characters from A-Z a-z 0-9 . _ - (e.g. 'eu'), "
                                           f"as the region of an app key", extra={"field": field})
    return region


def secret_key(secret: str) -> str:
    """What the coordinator stores of a credential, and the key of its proofs: SHA-256 of the secret, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def issue(conn: Connection, region: str, now: float) -> str:
    """A new credential for ``region`` (replacing its previous one, which stops working at once)."""
    check_region_name(region)
    secret = f"{PREFIX}_{secrets.token_urlsafe(32)}"
    row = conn.execute(select(schema.federation_regions).where(schema.federation_regions.c.region == region)).first()
    if row is None:
        conn.execute(schema.federation_regions.insert().values(region=region, token_hash=secret_key(secret),
                                                               revoked=False, created_at=now))
    else:
        conn.execute(update(schema.federation_regions).where(schema.federation_regions.c.region == region)
                     .values(token_hash=secret_key(secret), revoked=False, created_at=now))
    return secret


def region_of_secret(conn: Connection, secret: str) -> tuple[str, str] | None:
    """``(region, key)`` of a valid region credential, else None."""
    row = conn.execute(select(schema.federation_regions.c.region, schema.federation_regions.c.token_hash)
                       .where(schema.federation_regions.c.token_hash == secret_key(secret),
                              schema.federation_regions.c.revoked.is_(False))).first()
    return None if row is None else (str(row.region), str(row.token_hash))


def proof(key: str, nonce: str, body: bytes) -> str:
    msg = f"global|{nonce}|{hashlib.sha256(body).hexdigest()}".encode()
    return hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()


def check_proof(secret: str, nonce: str, body: bytes, role: str | None, given: str | None) -> bool:
    """Whether an answer came from the coordinator that issued ``secret`` (role ``global`` and a valid proof)."""
    if role != "global" or not given:
        return False
    return hmac.compare_digest(proof(secret_key(secret), nonce, body), given)
