"""Consent reports: how many records each consent signal allowed or excluded on a device, and withdrawals.

Why counts only: devices decide consent locally (fedmark.contract.consent) and
must not tell the server which record, or whose, was excluded.  What they send
is the number of records per decision reason for one training run, and the
number of withdrawals since the last report.  The server keeps each report as
an audit entry (``consent.report``) without the device id as actor, so the
trail says *which signal allowed or excluded how many records* and *how many
withdrew*, never who; the Governed Training Coverage KPI sums them.
"""
from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, jsonify

from fedmark.contract.consent import DECISION_REASONS
from server.api.common import json_body, now
from server.api.models import require_access
from server.auth import principal, requires
from server.errors import ApiError
from server.governance import audit
from server.rounds.service import get_rounds
from server.storage import get_store, schema

bp = Blueprint("consent", __name__)

#: What a device may report: every decision reason, plus records of withdrawn subjects (edge_sdk.consent.WITHDRAWN).
REPORTED_REASONS = frozenset(DECISION_REASONS) | {"withdrawn"}
_NAME_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


def _count(v: object, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= schema.MAX_INT:
        raise ApiError(400, "bad_report", f"{what} must be an integer from 0 to {schema.MAX_INT}, got {v!r}")
    return v


@bp.post("/v1/consent/reports")
@requires("device")
def consent_report():  # type: ignore[no-untyped-def]
    body = json_body()
    model, round_id, counts = body.get("model"), body.get("round_id"), body.get("counts", {})
    for key, v in (("model", model), ("round_id", round_id)):
        if v is not None and (not isinstance(v, str) or not _NAME_RE.match(v)):
            raise ApiError(400, "bad_report", f"{key} must be null or a name (1-128 of A-Z a-z 0-9 . _ : @ -), got {v!r}")
    if not isinstance(counts, dict) or len(counts) > len(REPORTED_REASONS):
        raise ApiError(400, "bad_report", "counts must be an object of decision reason -> records")
    unknown = sorted(set(counts) - REPORTED_REASONS)
    if unknown:
        raise ApiError(400, "bad_report", f"counts: unknown reason(s) {unknown}; known: {', '.join(sorted(REPORTED_REASONS))}")
    clean = {k: _count(v, f"counts.{k}") for k, v in sorted(counts.items())}
    withdrawn = _count(body.get("withdrawn", 0), "withdrawn")
    if not clean and not withdrawn:
        raise ApiError(400, "bad_report", "the report carries no counts and no withdrawals")
    who = principal()
    if model is not None:  # the one access decision: a device reports only on a model it may see
        with get_store().read() as conn:
            require_access(conn, model, "training")
    at = now()

    def record(conn: Any) -> int:
        return audit.append_one(conn, at, audit.CONSENT_REPORT, model=model, actor="device", subject=round_id,
                                detail={"region": who.region, "partner": who.partner, "counts": clean,
                                        "withdrawn": withdrawn})

    # durable before the 202, in the group commit the uploads and tasks of the same moment share
    return jsonify({"recorded": get_rounds().committer.run(record)}), 202
