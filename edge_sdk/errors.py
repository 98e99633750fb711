"""The SDK's one exception hierarchy.

Why one hierarchy: an app team embedding the SDK should need a single
``except EdgeError`` to stay safe, and a few precise subclasses to react well
(retry later, ask the user for consent, fix the data).  Errors from the layers
below — ``http.client``/``socket``, onnxruntime, ``fedmark.contract`` — are
converted where they cross into the SDK, so nothing foreign leaks to the app.

    EdgeError
    ├── ConfigurationError      the Client or a call was set up wrongly
    ├── SchemaError             records do not fit the model's feature schema
    ├── ConsentError            no record carries the purpose the model needs
    ├── NotEligibleError        the device's conditions fail the task's policy
    ├── ArtifactIntegrityError  a downloaded or cached artifact fails its hashes
    ├── ModelError              the artifact could not be run (onnxruntime)
    ├── TransportError          the server could not be reached (retriable)
    └── ServerError             the server answered with an error
        ├── AuthenticationError bad/expired token or app key (401/403)
        ├── NoTaskError         nothing to train right now (409 no_task)
        └── RejectedUpdateError the server refused an update (carries its code)
"""
from __future__ import annotations

from typing import Sequence

from fedmark.contract import RowError


class EdgeError(Exception):
    """Base class of every error the SDK raises."""


class ConfigurationError(EdgeError):
    """The Client or a call was configured wrongly; the message says which setting and how to fix it."""


class SchemaError(EdgeError):
    """Records do not match the manifest's schema.

    ``errors`` lists every refused row as a :class:`fedmark.contract.RowError`
    (0-based row number in the caller's input, column, reason), so an app can
    show or log exactly what to fix.
    """

    def __init__(self, message: str, errors: Sequence[RowError] = ()) -> None:
        self.errors: list[RowError] = list(errors)
        if self.errors:
            shown = "; ".join(str(e) for e in self.errors[:5])
            more = f" (+{len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
            message = f"{message}: {shown}{more}"
        super().__init__(message)


class ConsentError(EdgeError):
    """No usable record carries consent for the purpose the model is trained for."""


class NotEligibleError(EdgeError):
    """The device may not train now; ``reasons`` says why (one sentence per failed rule)."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons: list[str] = list(reasons)
        super().__init__("device is not eligible to train: " + "; ".join(self.reasons))


class ArtifactIntegrityError(EdgeError):
    """An artifact file's bytes do not match the content hash in its manifest (tampered or corrupted)."""


class ModelError(EdgeError):
    """The model artifact could not be loaded or run (e.g. an onnxruntime failure)."""


class TransportError(EdgeError):
    """The server could not be reached or stayed busy after every retry.

    Retriable by nature: an update that fails this way stays in the offline
    queue.  ``retry_after`` is the server's last Retry-After hint in seconds, if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class ServerError(EdgeError):
    """The server answered with an HTTP error; ``status`` and the machine-readable ``code`` say which,
    and ``reason`` (when the server gives one) says why, e.g. ``no_task`` for ``round_full``."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: float | None = None,
                 reason: str | None = None) -> None:
        self.status = status
        self.code = code
        self.reason = reason
        self.server_message = message
        self.retry_after = retry_after
        super().__init__(f"server refused the request ({status} {code}): {message}")


class AuthenticationError(ServerError):
    """The device token or app key was refused (401/403)."""


class NoTaskError(ServerError):
    """No training round is open for this device now; ask again after ``retry_after`` seconds."""


class RejectedUpdateError(ServerError):
    """The server refused an update for good; ``code`` is its reason (e.g. ``round_closed``)."""


def error_from_response(status: int, code: str, message: str, retry_after: float | None = None,
                        reason: str | None = None) -> ServerError:
    """Map an HTTP error answer (docs/API.md error shape) to the most specific exception."""
    if status in (401, 403):
        return AuthenticationError(status, code, message, retry_after=retry_after, reason=reason)
    if code == "no_task":
        return NoTaskError(status, code, message, retry_after=retry_after, reason=reason)
    return ServerError(status, code, message, retry_after=retry_after, reason=reason)
