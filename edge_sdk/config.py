"""Client configuration, checked once when the Client is built.

Why a separate, validated object: a misconfigured SDK on a phone fails far
from the developer who configured it.  Every setting is checked up front and a
bad one raises :class:`ConfigurationError` naming the setting and the fix, so
the problem shows up in the app team's first test run instead of in the field.
"""
from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from edge_sdk.errors import ConfigurationError

# The server's rules (docs/API.md, enrolment): checked here so a bad id fails at configuration time.
_DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
_REGION_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with jittered exponential backoff.

    Attempt ``i`` (0-based) waits a uniform random time in
    ``[0, min(max_backoff, base_backoff * 2**i)]`` ("full jitter", so a fleet
    that failed together does not retry together), or the server's
    ``Retry-After`` when it sent one (plus up to ``base_backoff`` of jitter).  A
    Retry-After longer than ``max_retry_after`` is not waited out: the call
    fails with a TransportError carrying the hint, and a queued update simply
    stays queued.
    """

    max_retries: int = 4
    base_backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = frozenset({429, 502, 503, 504})

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigurationError(f"retry.max_retries must be >= 0, got {self.max_retries}")
        if not (self.base_backoff >= 0 and self.max_backoff >= 0 and self.max_retry_after >= 0):
            raise ConfigurationError("retry backoff times must be >= 0 seconds")


@dataclass(frozen=True)
class ClientConfig:
    """Everything a :class:`edge_sdk.Client` needs.

    ``app_key`` enrols the device (the server then issues a device token that
    is stored in ``storage_dir``); an app that already holds a ``device_token``
    may pass it instead.  ``timeout`` bounds every connect and read (it is
    never off); ``download_timeout`` applies to artifact files, which can be
    large.  Plain ``http://`` is accepted only for loopback hosts unless
    ``allow_insecure_http`` is set, because tokens travel in headers.
    """

    server_url: str
    device_id: str
    region: str
    storage_dir: str | os.PathLike[str]
    app_key: str | None = None
    device_token: str | None = None
    timeout: float = 10.0
    download_timeout: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    allow_insecure_http: bool = False
    threads: int = 1

    def __post_init__(self) -> None:
        url = urllib.parse.urlsplit(self.server_url or "")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigurationError(
                f"server_url {self.server_url!r} is not an http(s) URL; pass e.g. 'https://fl.example.com'")
        if url.scheme == "http" and url.hostname not in _LOOPBACK_HOSTS and not self.allow_insecure_http:
            raise ConfigurationError(
                f"server_url {self.server_url!r} uses plain http to a non-loopback host, which would expose the "
                "device token; use https, or set allow_insecure_http=True for a trusted test network")
        if not self.app_key and not self.device_token:
            raise ConfigurationError("credentials missing: pass app_key (to enrol this device) or device_token")
        if not isinstance(self.device_id, str) or not _DEVICE_ID_RE.match(self.device_id):
            raise ConfigurationError(f"device_id {self.device_id!r} is invalid: use 1-128 characters from letters, "
                                     "digits and . _ : @ -")
        if not isinstance(self.region, str) or not _REGION_RE.match(self.region):
            raise ConfigurationError(f"region {self.region!r} is invalid: use 1-64 characters from letters, digits "
                                     "and . _ -")
        if not (self.timeout > 0 and self.download_timeout > 0):
            raise ConfigurationError("timeout and download_timeout must be > 0 seconds (timeouts are always on)")
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigurationError("retry must be an edge_sdk.RetryPolicy")
        if self.threads < 1:
            raise ConfigurationError(f"threads must be >= 1, got {self.threads}")
        path = Path(self.storage_dir)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"storage_dir {str(path)!r} cannot be created: {exc}") from exc
        if not os.access(path, os.W_OK):
            raise ConfigurationError(f"storage_dir {str(path)!r} is not writable by this process")

    @property
    def base_url(self) -> str:
        """The server URL without a trailing slash."""
        return self.server_url.rstrip("/")

    @property
    def storage(self) -> Path:
        return Path(self.storage_dir)
