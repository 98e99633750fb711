"""Response headers every answer carries, and secrets kept out of request logs.

Why: a bearer token pasted into a dashboard URL (``?token=``) would otherwise
travel on in the ``Referer`` of every request the page makes and sit in the
access log of the server and of any proxy.  Every response says
``Referrer-Policy: no-referrer`` and ``X-Content-Type-Options: nosniff``; the
request-line logger redacts the values of secret-looking query parameters.
"""
from __future__ import annotations

import logging
import re

from flask import Response

__all__ = ["security_headers", "RedactSecrets", "install_log_redaction", "SECRET_PARAMS"]

#: Query parameters whose values never reach a log line.
SECRET_PARAMS = ("token", "app_key", "access_token", "device_token")
_SECRET_RE = re.compile(r"((?:^|[?&;])(?:%s)=)[^&;\s\"]*" % "|".join(SECRET_PARAMS), re.IGNORECASE)
_BEARER_RE = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with secret query values and bearer tokens replaced by ``[redacted]``."""
    return _BEARER_RE.sub(r"\1[redacted]", _SECRET_RE.sub(r"\1[redacted]", text))


def security_headers(resp: Response) -> Response:
    """``after_request`` hook."""
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


class RedactSecrets(logging.Filter):
    """Rewrites a record's message (and arguments) with :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict):  # gunicorn's access log formats from a mapping of atoms
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install_log_redaction() -> None:
    """Attach the filter to the loggers that write request lines (werkzeug's, gunicorn's access log)."""
    for name in ("werkzeug", "gunicorn.access", "gunicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
