"""HTTP transport: the standard library's ``http.client`` with retries.

Why no HTTP library: the device side must stay lean (numpy + onnxruntime
only); ``http.client`` gives full control over timeouts, status handling (a
``304`` is an answer, not an exception) and headers, which is all the SDK
needs.  One connection per request keeps the code simple and robust on flaky
mobile networks, where a kept-alive socket is often already dead.

Policy (see :class:`edge_sdk.config.RetryPolicy`): network errors and the
statuses 429/502/503/504 are retried with jittered exponential backoff,
honouring ``Retry-After``; every other error answer is converted to the SDK's
exceptions at once.  Retrying a POST is safe here because every mutating call
the SDK makes is idempotent (enrolment, task requests, and uploads carrying an
``Idempotency-Key``).
"""
from __future__ import annotations

import email.utils
import http.client
import json
import logging
import random
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from edge_sdk.config import RetryPolicy
from edge_sdk.errors import TransportError, error_from_response

log = logging.getLogger("edge_sdk.transport")

USER_AGENT = "fedmark-edge-sdk-python/0.1"


@dataclass(frozen=True)
class Response:
    """A completed HTTP exchange; header names are lower-cased."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise TransportError(f"server sent a {self.status} answer that is not valid JSON: {exc}") from exc

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
        return max(0.0, secs) if secs == secs else None  # NaN check
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Transport:
    """Sends requests to one server with timeouts always on and bounded, jittered retries."""

    def __init__(self, base_url: str, *, timeout: float, retry: RetryPolicy,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self._scheme = parts.scheme
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry
        self._sleep = sleep
        self._rng = rng or random.Random()

    # ------------------------------------------------------------------ public
    def request(self, method: str, path: str, *, body: bytes | None = None, json_body: Any = None,
                headers: Mapping[str, str] | None = None, timeout: float | None = None,
                accept: tuple[int, ...] = (200, 201, 202, 204, 304)) -> Response:
        """Send one request; retry transient failures; raise an EdgeError for any other error answer.

        ``path`` is relative to the server URL (``/v1/...``) or an absolute URL
        on the same server.  Statuses in ``accept`` are returned; 4xx/5xx raise
        the matching :class:`edge_sdk.errors.ServerError` subclass.
        """
        hdrs = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        target = self._target(path)
        attempts = self.retry.max_retries + 1
        last_hint: float | None = None
        for attempt in range(attempts):
            try:
                resp = self._send_once(method, target, body, hdrs, timeout or self.timeout)
            except ssl.SSLError as exc:  # retrying cannot fix a wrong scheme or an untrusted certificate
                raise _tls_error(self.base_url, exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if attempt + 1 >= attempts:
                    raise TransportError(
                        f"{method} {target} failed after {attempts} attempt(s): {reason}; "
                        "check the network and the server URL, or try again later", retry_after=last_hint) from exc
                self._backoff(attempt, None, f"{method} {target}: {reason}")
                continue
            if resp.status in accept:
                return resp
            retry_after = parse_retry_after(resp.header("Retry-After"))
            if resp.status in self.retry.retry_statuses:
                last_hint = retry_after
                too_long = retry_after is not None and retry_after > self.retry.max_retry_after
                if attempt + 1 >= attempts or too_long:
                    code, message, _ = _error_fields(resp)
                    wait = f"; the server asks to retry after {retry_after:.0f} s" if retry_after is not None else ""
                    raise TransportError(
                        f"{method} {target}: server busy ({resp.status} {code}: {message}) after {attempt + 1} "
                        f"attempt(s){wait}", retry_after=retry_after)
                self._backoff(attempt, retry_after, f"{method} {target}: HTTP {resp.status}")
                continue
            code, message, reason = _error_fields(resp)
            raise error_from_response(resp.status, code, message, retry_after, reason)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ internals
    def _target(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            parts = urllib.parse.urlsplit(path)
            if parts.hostname != self._host or parts.port != self._port:
                raise TransportError(f"refusing to follow {path!r}: it is not on the configured server {self.base_url}")
            return parts.path + (f"?{parts.query}" if parts.query else "")
        if not path.startswith("/"):
            path = "/" + path
        return self._prefix + path

    def _send_once(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str],
                   timeout: float) -> Response:
        conn: http.client.HTTPConnection
        if self._scheme == "https":
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            conn.request(method, target, body=body, headers=dict(headers))
            raw = conn.getresponse()
            data = raw.read()
            return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, data)
        except socket.timeout as exc:
            raise TimeoutError(f"no answer within {timeout:g} s") from exc
        finally:
            conn.close()

    def _backoff(self, attempt: int, retry_after: float | None, what: str) -> None:
        if retry_after is not None:
            delay = retry_after + self._rng.uniform(0, self.retry.base_backoff)
        else:
            delay = self._rng.uniform(0, min(self.retry.max_backoff, self.retry.base_backoff * (2 ** attempt)))
        log.info("retrying %s in %.2f s (attempt %d of %d)", what, delay, attempt + 2, self.retry.max_retries + 1)
        self._sleep(delay)


def _tls_error(base_url: str, exc: ssl.SSLError) -> TransportError:
    """The TLS failure as the setting that fixes it; raised at once, since no retry can succeed."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TransportError(f"the TLS certificate of {base_url} could not be verified ({exc.verify_message}); "
                              "give the server a certificate from a trusted authority, or use its correct host name "
                              "in the server URL")
    if "WRONG_VERSION_NUMBER" in str(exc) or "record layer failure" in str(exc) or "HTTP_REQUEST" in str(exc):
        plain = "http://" + base_url.split("://", 1)[-1]
        return TransportError(f"{base_url} answered in plain HTTP, not TLS: this server does not serve https on "
                              f"that port; use the server URL {plain} (or put the server behind a TLS proxy)")
    return TransportError(f"TLS handshake with {base_url} failed ({exc}); check that the server URL's scheme "
                          "(https:// or http://) and port match the server")


def _error_fields(resp: Response) -> tuple[str, str, str | None]:
    """Code, message and optional reason of an error answer (docs/API.md shape), tolerant of non-JSON bodies."""
    try:
        err = json.loads(resp.body).get("error", {})
        code, message = str(err.get("code") or f"http_{resp.status}"), str(err.get("message") or "")
        reason = err.get("reason")
        return (code, message or http.client.responses.get(resp.status, "error"),
                str(reason) if reason is not None else None)
    except (ValueError, AttributeError):
        text = resp.body[:200].decode("utf-8", "replace").strip()
        return f"http_{resp.status}", text or http.client.responses.get(resp.status, "error"), None
