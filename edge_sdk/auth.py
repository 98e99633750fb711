"""Device credentials: enrolment with an app key and the stored device token.

Why stored: enrolment is a one-time step per device; the token the server
issues is kept in ``<storage>/device.json`` (mode 0600) so a restarted app
does not enrol again.  A token passed explicitly by the app is used as is and
never written to disk.  When the server refuses a token (401: unknown, revoked
or ``token_expired``) and an app key is configured, the device enrols again
once and retries.

Why a device secret: the app key ships in every app, so a device id plus the
app key proves nothing.  At first enrolment the device makes 32 random bytes
(``secrets.token_urlsafe``), keeps them in ``<storage>/device_secret.json``
(mode 0600; never deleted with a refused token) and sends them on every
enrolment; the server keeps only their hash and hands a known device id a new
token only against the same secret (or the current token).  A device that lost
its storage needs an admin reset (``POST /v1/admin/devices/<id>/reset``).
"""
from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Callable, TypeVar

from edge_sdk.config import ClientConfig
from edge_sdk.errors import AuthenticationError, ConfigurationError, ServerError
from edge_sdk.transport import Transport

log = logging.getLogger("edge_sdk.client")
T = TypeVar("T")


class Credentials:
    """Holds the device token, enrolling on first use when only an app key is configured."""

    def __init__(self, config: ClientConfig, transport: Transport) -> None:
        self._config = config
        self._transport = transport
        self._path = Path(config.storage_dir) / "device.json"
        self._secret_path = Path(config.storage_dir) / "device_secret.json"
        self._token: str | None = config.device_token or self._load()
        self.partner: str | None = None
        self._secret: str | None = None
        self._secret_registered = False

    @property
    def can_enroll(self) -> bool:
        return bool(self._config.app_key)

    def token(self) -> str:
        """The device token, enrolling now if there is none yet."""
        if self._token is None:
            self.enroll()
        elif self.can_enroll and not self._config.device_token and not self._registered():
            self._register_secret()
        assert self._token is not None
        return self._token

    def device_secret(self) -> str:
        """This device's own enrolment secret, made (and kept in storage) on first use."""
        if self._secret is None:
            self._secret, self._secret_registered = self._load_secret()
        return self._secret

    def _registered(self) -> bool:
        self.device_secret()
        return self._secret_registered

    def _register_secret(self) -> None:
        """A token from before device secrets: enrol once with it as proof, so the server learns the secret."""
        try:
            self.enroll(proof=self._token)
        except (AuthenticationError, ServerError) as exc:  # keep working with the old token; retried next start
            log.warning("could not register this device's secret (%s); continuing with the stored token", exc)
            self._secret_registered = True

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def enroll(self, proof: str | None = None) -> str:
        """Exchange the app key and this device's secret for a device token (``POST /v1/devices/enroll``).

        ``proof``: a current token, sent as ``Authorization`` (how a device from before secrets registers one).
        """
        cfg = self._config
        if not cfg.app_key:
            raise ConfigurationError("the device token was refused and no app_key is configured to enrol again; "
                                     "pass a valid device_token or an app_key")
        try:
            resp = self._transport.request("POST", "/v1/devices/enroll", json_body={
                "app_key": cfg.app_key, "device_id": cfg.device_id, "region": cfg.region,
                "device_secret": self.device_secret()},
                headers={"Authorization": f"Bearer {proof}"} if proof else None)
        except ServerError as exc:
            if exc.status in (400, 401, 403) or exc.code in ("device_proof_required", "device_conflict",
                                                             "region_change"):
                hint = {"device_proof_required": "this device id is enrolled with another secret: the storage "
                                                 "directory was lost or the id is someone else's; an admin reset "
                                                 "(POST /v1/admin/devices/<id>/reset) re-opens it",
                        "region_mismatch": "the app key is issued for another region: ship the key of this "
                                           "device's region"}.get(exc.code, "check the app key, device id and region")
                raise AuthenticationError(exc.status, exc.code,
                                          f"enrolment refused: {exc.server_message} ({hint})") from exc
            raise
        data: Any = resp.json()
        token = data.get("device_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise ServerError(resp.status, "bad_answer", "enrolment answer has no device_token")
        self._token = token
        self.partner = data.get("partner")
        self._store(token)
        if not self._secret_registered:
            self._secret_registered = True
            self._store_secret(self.device_secret(), registered=True)
        return token

    def call(self, call: Callable[[dict[str, str]], T]) -> T:
        """Run ``call(auth_headers)``; on a refused token (401), enrol again once (if an app key is set) and retry.

        The one home of the re-enrol-and-retry rule: every authenticated server call goes through here.
        """
        try:
            return call(self.headers())
        except AuthenticationError as exc:
            if exc.status != 401 or not self.can_enroll:
                raise
            log.info("device token refused (%s); enrolling again", exc.code)
            self.invalidate()
            return call(self.headers())

    def invalidate(self) -> None:
        """Forget a token the server refused, so the next call enrols again."""
        self._token = None
        self._path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ internals
    def _load(self) -> str | None:
        try:
            data = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return None
        cfg = self._config
        if (data.get("server") == cfg.base_url and data.get("device_id") == cfg.device_id
                and data.get("region") == cfg.region and isinstance(data.get("device_token"), str)):
            return str(data["device_token"])
        return None  # stored for another server/device: enrol afresh

    def _store(self, token: str) -> None:
        cfg = self._config
        _write_private(self._path, {"server": cfg.base_url, "device_id": cfg.device_id, "region": cfg.region,
                                    "device_token": token})

    def _secret_key(self) -> str:
        return f"{self._config.base_url} {self._config.device_id}"

    def _secrets(self) -> dict[str, Any]:
        try:
            data = json.loads(self._secret_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _load_secret(self) -> tuple[str, bool]:
        entry = self._secrets().get(self._secret_key())
        if isinstance(entry, dict) and isinstance(entry.get("device_secret"), str) and len(entry["device_secret"]) >= 43:
            return entry["device_secret"], bool(entry.get("registered"))
        secret = secrets.token_urlsafe(32)
        self._store_secret(secret, registered=False)  # kept before it is ever sent: a crash cannot lose it
        return secret, False

    def _store_secret(self, secret: str, *, registered: bool) -> None:
        data = self._secrets()
        data[self._secret_key()] = {"device_secret": secret, "registered": registered}
        _write_private(self._secret_path, data)


def _write_private(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file, fsync, rename) readable by this user only (0600)."""
    tmp = path.with_name(f".tmp-{path.stem}-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(json.dumps(data).encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
