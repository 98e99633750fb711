"""Upload policy: queue an update durably, send it with its idempotency key, decide what an answer means.

Why its own module: whether an update is kept, sent again or dropped is a
policy with privacy and accounting consequences (an update sent twice must
count once; an update whose round is gone must never be replayed into another
one), and it is the same for every model family.  The rules:

- an update is put in the durable outbox *before* the first attempt, under a
  fresh idempotency key that every retry reuses;
- a flush sends queued updates oldest first; 202 (accepted) and 200 (the
  server already had it) remove it; a network failure or a 5xx keeps it and
  stops the flush; a refusal in ``fedmark.contract.EXPIRED_CODES`` (round or
  version gone) or any other 4xx drops it (``expired`` / ``rejected``);
- an authentication failure keeps the update and is raised to the app.

The headers are the contract's (:func:`fedmark.contract.upload_headers`): the
within-clip bit only travels when the task has a clip norm.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Callable

from edge_sdk.errors import AuthenticationError, RejectedUpdateError, ServerError, TransportError
from edge_sdk.outbox import Outbox, QueuedUpload
from edge_sdk.reports import FlushReport, UploadOutcome
from edge_sdk.task import Task
from edge_sdk.transport import Response
from fedmark.contract import OUTCOME_EXPIRED, OUTCOME_PENDING, OUTCOME_REJECTED, upload_headers, upload_outcome

__all__ = ["Uploader"]

log = logging.getLogger("edge_sdk.client")

# request(method, path, *, body, headers, accept) -> Response, authenticated (re-enrolling once if refused)
Request = Callable[..., Response]


class Uploader:
    """Sends the outbox's updates through an authenticated request function."""

    def __init__(self, outbox: Outbox, request: Request) -> None:
        self.outbox = outbox
        self._request = request

    def queue(self, task: Task, model: str, prepared: Any, subjects: tuple[str, ...] = ()) -> str:
        """Store one prepared update for ``task`` durably (``subjects``: the hashed customers it was
        computed from, for withdrawal); returns its idempotency key."""
        key = uuid.uuid4().hex
        headers = upload_headers(version=task.version, num_examples=prepared.num_examples, key=key,
                                 round_id=task.round_id,
                                 within_clip=prepared.within_clip if prepared.clip_norm is not None else None)
        self.outbox.put(QueuedUpload(key, task.upload_url, task.round_id, model, task.version, headers,
                                     prepared.body, time.time(), subjects))
        return key

    def flush(self) -> FlushReport:
        """Send queued updates, oldest first; stop at the first one that must wait."""
        outcomes: list[UploadOutcome] = []
        with self.outbox.lock():
            for item in self.outbox.entries():
                outcome = self.send(item)
                outcomes.append(outcome)
                if outcome.status == OUTCOME_PENDING:
                    break
                self.outbox.remove(item.key)
        return FlushReport(tuple(outcomes), len(self.outbox))

    def send(self, item: QueuedUpload) -> UploadOutcome:
        """One attempt at one queued update (the transport retries transient failures itself)."""
        try:
            resp = self._request("POST", item.upload_path, body=item.body, headers=item.headers, accept=(200, 202))
        except TransportError as exc:
            log.info("upload %s stays queued: %s", item.key, exc)
            return UploadOutcome(item.key, item.round_id, OUTCOME_PENDING)
        except AuthenticationError:
            raise  # credentials problem: keep the update, tell the app
        except ServerError as exc:
            status = upload_outcome(exc.status, exc.code)
            if status == OUTCOME_PENDING:  # the server failed, not the update: try again later
                log.info("upload %s stays queued after a server error: %s", item.key, exc)
            else:
                log.warning("dropping queued update %s for round %s (%s): %s", item.key, item.round_id, status, exc)
            return UploadOutcome(item.key, item.round_id, status, exc.code, http_status=exc.status)
        body = resp.json() if resp.body else {}
        update_id = body.get("update_id") if isinstance(body, dict) else None
        return UploadOutcome(item.key, item.round_id, upload_outcome(resp.status), None, update_id, resp.status)

    @staticmethod
    def settle(key: str, flushed: FlushReport) -> tuple[str, UploadOutcome | None]:
        """The train() status of the update queued under ``key``: accepted / duplicate / queued;
        raises :class:`RejectedUpdateError` when the server refused it for good."""
        mine = next((o for o in flushed.outcomes if o.key == key), None)
        if mine is not None and mine.status in (OUTCOME_EXPIRED, OUTCOME_REJECTED):
            raise RejectedUpdateError(mine.http_status or 400, mine.code or "rejected",
                                      f"the server refused this update ({mine.code}); it was dropped from the queue")
        status = mine.status if mine is not None and mine.status != OUTCOME_PENDING else "queued"
        return status, mine
