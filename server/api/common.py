"""Small helpers shared by the blueprints."""
from __future__ import annotations

from flask import current_app

from server.api.bodies import json_body

__all__ = ["json_body", "now"]


def now() -> float:
    return float(current_app.config["CLOCK"].now())
