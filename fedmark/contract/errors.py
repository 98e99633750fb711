"""The contract's one exception hierarchy: every side converts these at its own boundary."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from fedmark.contract.features import RowError

__all__ = ["ContractError", "ManifestError", "WireError", "SchemaError", "ProtocolError"]


class ContractError(ValueError):
    """Base class: data does not follow the wire contract."""


class ManifestError(ContractError):
    """A manifest is malformed or inconsistent with the files beside it."""


class WireError(ContractError):
    """An encoded update body cannot be decoded (size, magic, checksum, values)."""


class ProtocolError(ContractError):
    """A task document or an update's headers break the protocol; ``code`` is the machine-readable
    error code (``bad_task``, ``bad_header``; see :mod:`fedmark.contract.codes`) each side reports."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


class SchemaError(ContractError):
    """Records do not match a feature schema; carries every bad row."""

    def __init__(self, errors: Sequence["RowError"]):
        self.errors = list(errors)
        shown = "; ".join(str(e) for e in self.errors[:5])
        more = f" (+{len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        super().__init__(f"{len(self.errors)} bad row(s): {shown}{more}")
