"""Small helpers shared by the blueprints."""
from __future__ import annotations

from typing import Any

from flask import current_app

from server.api.bodies import json_body
from server.errors import ApiError

__all__ = ["json_body", "now", "refuse_withdrawn_consent"]


def now() -> float:
    return float(current_app.config["CLOCK"].now())


def refuse_withdrawn_consent(who: Any) -> None:
    """403 ``consent_withdrawn`` for a device an admin flagged: it may no longer train, evaluate or report.

    The one home of that rule: the upload, task, evaluation-report and segment-report views ask it."""
    if getattr(who, "consent_withdrawn", False):  # POST /v1/admin/devices/<id>/consent-withdrawn
        raise ApiError(403, "consent_withdrawn", "the person behind this device withdrew consent: it may no longer "
                                                 "train, evaluate or report; stop using its records (an admin clears "
                                                 "the flag when consent is given again)")
