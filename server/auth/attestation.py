"""Device attestation at enrolment: an interface a deployment fills with its platform's verifier.

Why pluggable: only the platform can say that a device is a real, unmodified
install (Play Integrity, App Attest, a TPM quote, an MDM certificate ...), and
each needs its own keys and network calls.  The server asks one question at
enrolment, ``verify(device_id, evidence)``, with the optional ``attestation``
field of the enrolment body, and stores the answer as ``devices.attested``
(exposed as ``Principal.attested``).  Counts that must mean people
(k-anonymity thresholds) count attested devices only.

The default, :class:`NoAttestation`, attests nothing: without a configured
verifier every device is unattested, and docs/GOVERNANCE.md says what k
guarantees then.  ``ATTESTATION_VERIFIER`` names the verifier: an import path
``package.module:Name`` (a class is called with no arguments) or an object.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from flask import current_app

__all__ = ["AttestationResult", "AttestationVerifier", "NoAttestation", "load_verifier", "verifier", "attest"]


@dataclass(frozen=True)
class AttestationResult:
    """The verifier's answer: ``attested`` (the device is vouched for) and, if not, why (for logs and the answer)."""

    attested: bool
    reason: str | None = None


@runtime_checkable
class AttestationVerifier(Protocol):
    def verify(self, device_id: str, evidence: Any) -> AttestationResult:
        """Judge ``evidence`` (the enrolment body's ``attestation`` value, None if absent) for ``device_id``."""
        ...


class NoAttestation:
    """The default: attests no device (every device is unattested)."""

    def verify(self, device_id: str, evidence: Any) -> AttestationResult:
        return AttestationResult(False, "no attestation verifier is configured (ATTESTATION_VERIFIER)")


def load_verifier(spec: Any) -> AttestationVerifier:
    """The verifier named by ``spec``: an object with ``verify``, or ``"package.module:Name"``."""
    obj = spec
    if isinstance(spec, str):
        module, sep, name = spec.partition(":")
        if not sep or not module or not name:
            raise ValueError(f"ATTESTATION_VERIFIER must be 'package.module:Name', got {spec!r}")
        obj = getattr(importlib.import_module(module), name)
    if isinstance(obj, type):
        obj = obj()
    if not isinstance(obj, AttestationVerifier):
        raise ValueError(f"ATTESTATION_VERIFIER {spec!r} has no verify(device_id, evidence) method")
    return obj


def verifier() -> AttestationVerifier:
    """This app's verifier (loaded once from the config)."""
    ext = current_app.extensions
    v = ext.get("fedmark_attestation")
    if v is None:
        v = ext["fedmark_attestation"] = load_verifier(current_app.config.get("ATTESTATION_VERIFIER")
                                                      or "server.auth.attestation:NoAttestation")
    return v  # type: ignore[no-any-return]


def attest(device_id: str, evidence: Any) -> AttestationResult:
    """Ask the configured verifier; a verifier that fails counts as "not attested", never as attested."""
    try:
        result = verifier().verify(device_id, evidence)
    except Exception as exc:  # a broken platform verifier must not let devices through, nor answer 500
        current_app.logger.exception("attestation verifier failed for device %s", device_id)
        return AttestationResult(False, f"attestation verifier failed ({type(exc).__name__})")
    if not isinstance(result, AttestationResult):
        return AttestationResult(bool(result is True), None)
    return result
