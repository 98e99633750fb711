"""The regional server's HTTP client to its coordinator (stdlib only: the server adds no HTTP dependency).

Every call has a timeout, carries the region's credential, its role and a
fresh nonce, and is accepted only with the coordinator's proof
(:mod:`server.federation.credentials`).  Retries are the agent's: it runs
again at its next period, and pushes are idempotent, so a lost answer is
simply asked again.
"""
from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from server.federation.credentials import HDR_NONCE, HDR_PROOF, HDR_REGION, HDR_ROLE, check_proof

__all__ = ["UpstreamError", "Refused", "Upstream"]


class UpstreamError(Exception):
    """The coordinator could not be reached, or did not prove it is the coordinator."""


class Refused(UpstreamError):
    """The coordinator answered with an error (``status``, ``code``, ``reason``)."""

    def __init__(self, status: int, code: str, message: str, reason: str | None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.reason = status, code, reason


@dataclass
class Upstream:
    base_url: str
    secret: str
    region: str
    timeout: float = 10.0

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        nonce = secrets.token_hex(16)
        h = {"Authorization": f"Bearer {self.secret}", HDR_ROLE: "region", HDR_REGION: self.region, HDR_NONCE: nonce,
             **(headers or {})}
        req = urllib.request.Request(self.base_url.rstrip("/") + path, data=body, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status, data, rh = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            status, data, rh = exc.code, exc.read(), exc.headers
        except (urllib.error.URLError, OSError) as exc:
            raise UpstreamError(f"coordinator {self.base_url} unreachable: {exc}") from exc
        if not check_proof(self.secret, nonce, data, rh.get(HDR_ROLE), rh.get(HDR_PROOF)):
            raise UpstreamError(f"{self.base_url} did not prove it is the global coordinator that issued this "
                                f"region's credential (HTTP {status}, role {rh.get(HDR_ROLE)!r}); check --upstream "
                                "and FEDMARK_UPSTREAM_TOKEN")
        if status >= 400:
            try:
                err = json.loads(data).get("error", {})
            except ValueError:
                err = {}
            raise Refused(status, str(err.get("code", "http_error")), str(err.get("message", "")),
                          err.get("reason"))
        return status, data

    def json(self, method: str, path: str, **kw: Any) -> Any:
        _, data = self.call(method, path, **kw)
        return json.loads(data)
