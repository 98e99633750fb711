"""Device credentials: enrolment with an app key and the stored device token.

Why stored: enrolment is a one-time step per device; the token the server
issues is kept in ``<storage>/device.json`` (mode 0600) so a restarted app
does not enrol again.  A token passed explicitly by the app is used as is and
never written to disk.  When the server refuses a token (401) and an app key
is configured, the device enrols again once and retries — the server hands a
fresh token to a known device id.
"""
from __future__ import annotations

import json
import logging
import os
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
        self._token: str | None = config.device_token or self._load()
        self.partner: str | None = None

    @property
    def can_enroll(self) -> bool:
        return bool(self._config.app_key)

    def token(self) -> str:
        """The device token, enrolling now if there is none yet."""
        if self._token is None:
            self.enroll()
        assert self._token is not None
        return self._token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def enroll(self) -> str:
        """Exchange the app key for a device token (``POST /v1/devices/enroll``) and store it."""
        cfg = self._config
        if not cfg.app_key:
            raise ConfigurationError("the device token was refused and no app_key is configured to enrol again; "
                                     "pass a valid device_token or an app_key")
        try:
            resp = self._transport.request("POST", "/v1/devices/enroll", json_body={
                "app_key": cfg.app_key, "device_id": cfg.device_id, "region": cfg.region})
        except ServerError as exc:
            if exc.status in (400, 401, 403):
                raise AuthenticationError(exc.status, exc.code,
                                          f"enrolment refused: {exc.server_message} (check the app key, device id "
                                          "and region)") from exc
            raise
        data: Any = resp.json()
        token = data.get("device_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise ServerError(resp.status, "bad_answer", "enrolment answer has no device_token")
        self._token = token
        self.partner = data.get("partner")
        self._store(token)
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
        payload = json.dumps({"server": cfg.base_url, "device_id": cfg.device_id, "region": cfg.region,
                              "device_token": token}).encode()
        tmp = self._path.with_name(f".tmp-device-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)
