"""The application factory.

``create_app(config)`` builds a Flask app the way Flask documents it: a
config object, stores attached with ``init_app`` (database + migrations, blob
files, round service, rate limiter), one blueprint per resource and one JSON
error shape.  Nothing is global, so tests run several apps side by side.
"""
from __future__ import annotations

import logging
import os

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from server.auth import TokenBucketLimiter
from server.config import Config
from server.errors import register_error_handlers
from server.rounds.service import RoundService
from server.storage import BlobStore, Store

log = logging.getLogger("fedmark.server")


class _JSON(DefaultJSONProvider):
    sort_keys = False


def create_app(config: Config | None = None) -> Flask:
    cfg = (config or Config.from_env()).finalize()
    app = Flask("fedmark.server", static_folder=None)
    app.json = _JSON(app)
    app.config.from_mapping(cfg.as_flask())
    app.config["DATABASE_URL_RESOLVED"] = cfg.database_url()
    os.makedirs(cfg.DATA_DIR, exist_ok=True)
    if getattr(cfg, "_generated_admin_token", False):
        log.warning("FEDMARK_ADMIN_TOKEN not set; generated admin token for this run: %s", cfg.ADMIN_TOKEN)

    store = Store()
    store.init_app(app)
    blobs = BlobStore(os.path.join(cfg.DATA_DIR, "blobs"))
    app.extensions["fedmark_blobs"] = blobs
    app.extensions["fedmark_limiter"] = TokenBucketLimiter(cfg.RATE_LIMIT_PER_S, cfg.RATE_LIMIT_BURST, cfg.CLOCK)
    RoundService().init_app(app, store, blobs)

    from server.api import admin, devices, health, models, openapi, training

    for module in (health, openapi, admin, devices, models, training):
        app.register_blueprint(module.bp)
    register_error_handlers(app)
    return app
