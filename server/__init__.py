"""fedmark server: Flask app, storage, rounds and aggregation.

``create_app`` is imported lazily so ``import server`` (e.g. by the CLI) stays
cheap and does not pull in Flask or SQLAlchemy.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from server.config import Config


def create_app(config: "Config | None" = None) -> "Flask":
    from server.app import create_app as _create_app

    return _create_app(config)


__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name in ("Config", "TestingConfig"):
        from server import config

        return getattr(config, name)
    raise AttributeError(name)
