"""A training task as the server hands it out (``POST /v1/tasks``, docs/API.md).

Why parsed into a dataclass: the task decides privacy-relevant settings (clip
norm, local noise, encoding), the eligibility policy and the consent purposes
records must carry, so a malformed or missing field must fail loudly here
rather than silently fall back to a default somewhere in the training path.
The schema is the contract's (:mod:`fedmark.contract.protocol`), shared with
the server that builds the document and the JavaScript SDK.
"""
from __future__ import annotations

from typing import Any

from edge_sdk.errors import ServerError
from fedmark.contract import ERR_BAD_TASK, ProtocolError, TaskDocument, parse_task


class Task(TaskDocument):
    """A parsed task; see :class:`fedmark.contract.TaskDocument` for the fields and
    :meth:`required_purposes` for which records may train on it."""

    @staticmethod
    def from_json(d: Any) -> "Task":
        try:
            doc = parse_task(d)
        except ProtocolError as exc:
            raise ServerError(200, ERR_BAD_TASK, f"the server's task is malformed: {exc}") from exc
        return Task(**{f: getattr(doc, f) for f in doc.__dataclass_fields__})
