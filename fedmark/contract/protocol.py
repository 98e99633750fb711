"""The protocol around the update body: the task document and the upload headers.

Why here: the server builds a task (``POST /v1/tasks``) and parses an update's
headers; every device SDK parses the task and builds the headers.  Written by
hand on each side they drifted apart (one parser required ``clip_norm``, the
other allowed null; one SDK always sent the within-clip bit, the other only
with a clip norm).  One schema lives here; the JavaScript port
(``edge_sdk/web/src/protocol.js``) is tested against vectors this module writes.

Task document (docs/API.md):

- required: ``round_id``, ``model``, ``upload_url`` (non-empty strings),
  ``version`` (integer >= 1) and ``clip_norm`` — the key must be present; its
  value is a positive number, or ``null`` when the training configuration has
  no clipping.  With ``null`` the device sends its update unclipped, omits the
  within-clip header (the server measures the norm itself) and may not add
  local noise (noise is a multiple of C).
- optional: ``task_id`` (default: the round id), ``manifest_url`` (default:
  ``/v1/models/{model}/versions/{version}/manifest``), ``mode``, ``deadline``
  (RFC 3339 string or null), ``local_noise`` (>= 0, default 0), ``encoding``
  (one of ``ENCODINGS``, default ``f32``), ``hyperparams`` and ``eligibility``
  (objects, default ``{}``).
- governance (present when the model has a policy): ``purpose``,
  ``consent_purposes`` (list of purposes), ``policy_version``, ``region``, and
  ``consent_signals`` (null, or the standard signals the model's purpose needs:
  ``fedmark.contract.consent.parse_requirement``; docs/CONSENT.md).

Consent rule (docs/GOVERNANCE.md): a record may train on a task only if its
consent covers *every* purpose of the task's ``consent_purposes`` (and the
task's ``purpose``); only a task that names no purpose at all falls back to the
manifest's ``purpose``.  :func:`required_purposes` states it once.  With
``consent_signals`` the standard signals (TCF, Consent Mode, GPC) decide
instead, by the one rule of :mod:`fedmark.contract.consent`
(:meth:`TaskDocument.consent_requirement`).

Upload headers: ``X-Fedmark-Model-Version`` and ``X-Fedmark-Num-Examples``
(integers >= 1), ``Idempotency-Key`` (1-200 printable ASCII characters, the
same on every retry), ``X-Fedmark-Round`` (informational) and
``X-Fedmark-Within-Clip`` (``0``/``1``, sent only when the update was clipped).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from fedmark.contract.codes import ERR_BAD_HEADER, ERR_BAD_TASK
from fedmark.contract.consent import SignalRequirement, consent_covers, normalize_purpose, parse_requirement
from fedmark.contract.errors import ProtocolError
from fedmark.contract.wire import (ENCODINGS, HDR_IDEMPOTENCY, HDR_MODEL_VERSION, HDR_NUM_EXAMPLES, HDR_ROUND,
                                   HDR_WITHIN_CLIP, UPDATE_CONTENT_TYPE)

__all__ = ["TaskDocument", "parse_task", "build_task", "required_purposes", "consent_covers", "normalize_purpose",
           "UploadHeaders", "upload_headers", "parse_upload_headers", "MAX_HEADER_INT"]

# Numbers from headers are bounded to what storage holds (a 32-bit signed integer column).
MAX_HEADER_INT = 2**31 - 1
_KEY_RE = re.compile(r"[\x21-\x7e]{1,200}")
_REQUIRED = ("round_id", "model", "version", "upload_url")


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ERR_BAD_TASK, message)


# --------------------------------------------------------------------------- task document
@dataclass(frozen=True)
class TaskDocument:
    """One training task as the server hands it out; see the module docstring for the schema."""

    task_id: str
    round_id: str
    model: str
    version: int
    manifest_url: str
    upload_url: str
    clip_norm: float | None  # None: the training configuration has no clipping
    local_noise: float = 0.0
    encoding: str = "f32"
    deadline: str | None = None
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    eligibility: Mapping[str, Any] = field(default_factory=dict)
    mode: str | None = None
    purpose: str | None = None
    consent_purposes: tuple[str, ...] = ()
    policy_version: int | None = None
    region: str | None = None
    consent_signals: Mapping[str, Any] | None = None

    @property
    def governed(self) -> bool:
        return self.purpose is not None or bool(self.consent_purposes) or self.consent_signals is not None

    def consent_requirement(self, manifest_purpose: str) -> SignalRequirement:
        """What each record's signals must satisfy to train on this task (``fedmark.contract.consent.decide``)."""
        return parse_requirement(self.consent_signals, self.required_purposes(manifest_purpose))

    def required_purposes(self, manifest_purpose: str) -> tuple[str, ...]:
        """The purposes a record's consent must cover to train on this task (see :func:`required_purposes`)."""
        return required_purposes(self.consent_purposes, self.purpose, manifest_purpose)

    def to_json(self) -> dict[str, Any]:
        """The wire form (what the server sends); governance fields only for a governed task."""
        out: dict[str, Any] = {
            "task_id": self.task_id, "round_id": self.round_id, "model": self.model, "version": self.version,
            "mode": self.mode, "manifest_url": self.manifest_url, "upload_url": self.upload_url,
            "hyperparams": dict(self.hyperparams), "clip_norm": self.clip_norm, "local_noise": self.local_noise,
            "encoding": self.encoding, "deadline": self.deadline, "eligibility": dict(self.eligibility),
        }
        if self.governed:
            out.update({"purpose": self.purpose, "consent_purposes": list(self.consent_purposes),
                        "policy_version": self.policy_version, "region": self.region,
                        "consent_signals": None if self.consent_signals is None else dict(self.consent_signals)})
        return out

    @staticmethod
    def from_json(d: Any) -> "TaskDocument":
        return parse_task(d)


def _text(d: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    v = d.get(key)
    if v is None:
        return default
    if not isinstance(v, str) or not v:
        raise _bad(f"{key} must be a non-empty string, got {v!r}")
    return v


def _number(d: Mapping[str, Any], key: str) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool):
        raise _bad(f"{key} must be a number, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError) as exc:
        raise _bad(f"{key}: {exc}") from None


def _integer(d: Mapping[str, Any], key: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    wrong = _bad(f"{key} must be an integer >= 1, got {v!r}")
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise wrong
    if isinstance(v, float) and not v.is_integer():
        raise wrong
    try:
        n = int(v)
    except ValueError as exc:
        raise _bad(f"{key}: {exc}") from None
    if n < 1:
        raise wrong
    return n


def parse_task(d: Any) -> TaskDocument:
    """Validate a task document; raises :class:`ProtocolError` (code ``bad_task``) naming the bad field."""
    if not isinstance(d, Mapping):
        raise _bad("a task must be a JSON object")
    missing = [k for k in _REQUIRED if d.get(k) is None] + ([] if "clip_norm" in d else ["clip_norm"])
    if missing:
        raise _bad(f"missing field(s): {', '.join(missing)}")
    round_id, model, upload_url = _text(d, "round_id"), _text(d, "model"), _text(d, "upload_url")
    assert round_id is not None and model is not None and upload_url is not None
    version = _integer(d, "version")
    assert version is not None
    clip = _number(d, "clip_norm")
    if clip is not None and not (math.isfinite(clip) and clip > 0):
        raise _bad(f"clip_norm must be a positive number or null, got {d['clip_norm']!r}")
    noise = _number(d, "local_noise")
    noise = 0.0 if noise is None else noise
    if not (math.isfinite(noise) and noise >= 0):
        raise _bad(f"local_noise must be a number >= 0, got {d['local_noise']!r}")
    if noise > 0 and clip is None:
        raise _bad("local_noise is a multiple of the clip norm, but the task has no clip_norm; "
                   "configure clipping or set local_noise to 0")
    encoding = d.get("encoding")
    encoding = "f32" if encoding is None else encoding
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        raise _bad(f"unknown update encoding {encoding!r}; use one of {', '.join(sorted(ENCODINGS))}")
    hp = {} if d.get("hyperparams") is None else d["hyperparams"]
    elig = {} if d.get("eligibility") is None else d["eligibility"]
    if not isinstance(hp, Mapping) or not isinstance(elig, Mapping):
        raise _bad("hyperparams and eligibility must be JSON objects")
    purposes = [] if d.get("consent_purposes") is None else d["consent_purposes"]
    if not isinstance(purposes, list) or not all(isinstance(p, str) and p.strip() for p in purposes):
        raise _bad(f"consent_purposes must be a list of purpose names, got {d['consent_purposes']!r}")
    signals = d.get("consent_signals")
    if signals is not None:
        try:
            parse_requirement(signals, purposes)
        except ProtocolError as exc:
            raise _bad(f"consent_signals: {exc}") from None
    task_id = _text(d, "task_id", round_id)
    manifest_url = _text(d, "manifest_url", f"/v1/models/{model}/versions/{version}/manifest")
    assert task_id is not None and manifest_url is not None
    return TaskDocument(
        task_id=task_id, round_id=round_id, model=model, version=version, manifest_url=manifest_url,
        upload_url=upload_url, clip_norm=clip, local_noise=noise, encoding=encoding, mode=_text(d, "mode"),
        deadline=_text(d, "deadline"), hyperparams=dict(hp), eligibility=dict(elig), purpose=_text(d, "purpose"),
        consent_purposes=tuple(purposes), policy_version=_integer(d, "policy_version"), region=_text(d, "region"),
        consent_signals=None if signals is None else dict(signals))


def build_task(*, task_id: str, round_id: str, model: str, version: int, upload_url: str,
               clip_norm: float | None, manifest_url: str | None = None, local_noise: float = 0.0,
               encoding: str = "f32", mode: str | None = None, deadline: str | None = None,
               hyperparams: Mapping[str, Any] | None = None, eligibility: Mapping[str, Any] | None = None,
               purpose: str | None = None, consent_purposes: Iterable[str] = (), policy_version: int | None = None,
               region: str | None = None, consent_signals: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The task document the server sends, checked against the same schema every device parses with."""
    raw = {"task_id": task_id, "round_id": round_id, "model": model, "version": version, "mode": mode,
           "manifest_url": manifest_url, "upload_url": upload_url, "hyperparams": dict(hyperparams or {}),
           "clip_norm": clip_norm, "local_noise": local_noise, "encoding": encoding, "deadline": deadline,
           "eligibility": dict(eligibility or {}), "purpose": purpose,
           # a bare string is refused by the parser, not split into letters
           "consent_purposes": consent_purposes if isinstance(consent_purposes, str) else list(consent_purposes),
           "policy_version": policy_version, "region": region, "consent_signals": consent_signals}
    return parse_task(raw).to_json()


def required_purposes(consent_purposes: Iterable[str], purpose: str | None, manifest_purpose: str) -> tuple[str, ...]:
    """The purposes a record's consent must cover: the task's ``consent_purposes`` plus its ``purpose``
    (normalised, in order, without repeats); the manifest's purpose only when the task names none."""
    out: list[str] = []
    for p in [*consent_purposes, *([purpose] if purpose else [])]:
        n = normalize_purpose(p)
        if n and n not in out:
            out.append(n)
    return tuple(out) if out else (normalize_purpose(manifest_purpose),)


# --------------------------------------------------------------------------- upload headers
@dataclass(frozen=True)
class UploadHeaders:
    """An update's metadata as the server reads it from the request headers."""

    version: int
    num_examples: int
    within_clip: bool | None  # None: not sent (no clip norm); the server measures the norm itself
    key: str
    round_id: str | None = None


def _header(h: Mapping[str, str], name: str) -> str | None:
    v = h.get(name)
    if v is None and isinstance(h, dict):  # a plain dict: look the name up case-insensitively, like HTTP does
        low = name.lower()
        v = next((val for k, val in h.items() if isinstance(k, str) and k.lower() == low), None)
    return v


def parse_upload_headers(h: Mapping[str, str]) -> UploadHeaders:
    """Validate an update's headers; raises :class:`ProtocolError` (code ``bad_header``) naming the header."""
    def need_int(name: str, lo: int) -> int:
        raw = _header(h, name)
        if raw is None:
            raise ProtocolError(ERR_BAD_HEADER, f"header {name} is required")
        try:
            v = int(raw.strip())
        except ValueError:
            raise ProtocolError(ERR_BAD_HEADER, f"header {name} must be an integer, got {raw!r}") from None
        if v < lo:
            raise ProtocolError(ERR_BAD_HEADER, f"header {name} must be >= {lo}, got {v}")
        if v > MAX_HEADER_INT:
            raise ProtocolError(ERR_BAD_HEADER, f"header {name} must be <= {MAX_HEADER_INT}, got {v}")
        return v

    version = need_int(HDR_MODEL_VERSION, 1)
    num = need_int(HDR_NUM_EXAMPLES, 1)
    raw_bit = _header(h, HDR_WITHIN_CLIP)
    if raw_bit is None:
        bit = None
    elif raw_bit.strip() in ("0", "1"):
        bit = raw_bit.strip() == "1"
    else:
        raise ProtocolError(ERR_BAD_HEADER, f"header {HDR_WITHIN_CLIP} must be 0 or 1, got {raw_bit!r}")
    key = _header(h, HDR_IDEMPOTENCY)
    if key is None or not _KEY_RE.fullmatch(key):
        raise ProtocolError(ERR_BAD_HEADER, f"header {HDR_IDEMPOTENCY} is required: 1-200 printable ASCII "
                                            "characters, the same on every retry of this update (e.g. a UUID)")
    return UploadHeaders(version, num, bit, key, _header(h, HDR_ROUND))


def upload_headers(*, version: int, num_examples: int, key: str, round_id: str | None = None,
                   within_clip: bool | None = None) -> dict[str, str]:
    """The headers a device sends with an update body (``Content-Type`` included).

    ``within_clip``: the bit adaptive clipping needs (``||delta|| <= C`` before
    clipping); pass None when the task has no clip norm — the header is then
    omitted, it would be meaningless.
    """
    out = {"Content-Type": UPDATE_CONTENT_TYPE, HDR_MODEL_VERSION: str(int(version)),
           HDR_NUM_EXAMPLES: str(int(num_examples)), HDR_IDEMPOTENCY: key}
    if round_id is not None:
        out[HDR_ROUND] = round_id
    if within_clip is not None:
        out[HDR_WITHIN_CLIP] = "1" if within_clip else "0"
    parse_upload_headers(out)
    return out
