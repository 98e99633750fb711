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
from werkzeug.routing import IntegerConverter

from server.auth import RateLimits
from server.auth.cache import TokenCache
from server.config import Config
from server.errors import register_error_handlers
from server.rounds.service import RoundService
from server.storage import BlobStore, Store

log = logging.getLogger("fedmark.server")


class _JSON(DefaultJSONProvider):
    sort_keys = False


class _Int64(IntegerConverter):
    """``<int:…>`` path parts beyond a database integer match no route (404) instead of overflowing the driver (500)."""

    def __init__(self, map: object, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)  # type: ignore[arg-type]


def create_app(config: Config | None = None) -> Flask:
    cfg = (config or Config.from_env()).finalize()
    app = Flask("fedmark.server", static_folder=None)
    app.url_map.converters["int"] = _Int64
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
    app.extensions["fedmark_limiter"] = RateLimits.from_config(app.config)
    app.extensions["fedmark_token_cache"] = TokenCache(float(app.config.get("AUTH_CACHE_S") or 0))
    rounds = RoundService()
    rounds.init_app(app, store, blobs)
    from server.federation.service import FederationService  # --role region / global (server/federation)

    FederationService().init_app(app, store, blobs, rounds)
    from server.governance import monitor

    monitor.init_app(app, store)

    from server.api import activation, admin, consent, devices, evaluation, federation, governance, health, models
    from server.api import monitor as monitor_api
    from server.api import openapi, training
    from server.api import statistics as statistics_api

    for module in (health, openapi, admin, devices, models, training, governance, evaluation, activation, consent,
                   monitor_api, federation, statistics_api):
        app.register_blueprint(module.bp)
    from server.api import web  # the browser trainer page (/train) and the files it loads

    app.register_blueprint(web.bp)
    from server.api.bodies import apply_default_cap
    from server.api.headers import install_log_redaction, security_headers

    app.before_request(apply_default_cap)
    app.after_request(security_headers)
    install_log_redaction()
    register_error_handlers(app)
    return app
