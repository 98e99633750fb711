"""The HTTP servers in front of the app: gunicorn in production, werkzeug's for development.

``fedmark server`` runs :class:`ProductionServer` (gunicorn, one worker
process per core, several threads each); ``fedmark server --dev`` and the
in-process test fixtures run werkzeug's threaded server through
:func:`make_dev_server`.  Its handler answers ``http.server``'s own refusals
(a request line or header block too long, refused before Flask sees it) in the
JSON error shape devices branch on, instead of an HTML page.
"""
from __future__ import annotations

import json
import os
from http import HTTPStatus
from typing import Any

import gunicorn.workers.base as gunicorn_base
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

__all__ = ["JSONErrorRequestHandler", "make_dev_server", "PROTOCOL_CODES", "ProductionServer", "JSONErrorThreadWorker",
           "default_workers"]

#: Machine-readable codes of the refusals http.server makes on its own.
PROTOCOL_CODES = {400: "bad_request", 408: "timeout", 414: "uri_too_long", 431: "headers_too_large",
                  501: "not_implemented", 505: "http_version_not_supported"}


class JSONErrorRequestHandler(WSGIRequestHandler):
    """werkzeug's handler, answering http.server's own errors in the JSON error shape."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        try:
            short = HTTPStatus(code).phrase
        except ValueError:
            short = "error"
        text = message or short
        if code == 414:
            text = "the request line (URL) is too long; send parameters in a JSON body instead"
        elif code == 431:
            text = "a request header (or the header block) is too large; send less in headers"
        body = json.dumps({"error": {"code": PROTOCOL_CODES.get(code, "http_error"), "message": text}}).encode()
        self.log_error("code %d, message %s", code, text)
        self.send_response(code, short)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)
        self.close_connection = True


def make_dev_server(host: str, port: int, app: Any) -> BaseWSGIServer:
    """A threaded werkzeug server for ``app`` (tests, ``fedmark server --dev``)."""
    return make_server(host, port, app, threaded=True, request_handler=JSONErrorRequestHandler)


def _json_protocol_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's refusal of a malformed request, in the JSON error shape (replaces ``gunicorn.util.write_error``)."""
    text = {414: "the request line (URL) is too long; send parameters in a JSON body instead",
            431: "a request header (or the header block) is too large; send less in headers"}.get(status_int, mesg or reason)
    body = json.dumps({"error": {"code": PROTOCOL_CODES.get(status_int, "http_error"), "message": text}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    gunicorn_base.util.write_nonblock(sock, head + body)


class JSONErrorThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker; its protocol-level refusals use the JSON error shape."""

    def init_process(self) -> None:
        gunicorn_base.util.write_error = _json_protocol_error
        super().init_process()


def default_workers() -> int:
    """One worker process per core this process may run on (each worker runs several request threads)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class ProductionServer(BaseApplication):  # type: ignore[misc]
    """gunicorn running ``create_app(config)`` in ``workers`` processes of ``threads`` threads each.

    Why these choices:
    * the config is finalised once, in the master, before the workers fork: a
      generated admin token and the data dir are then the same in every worker;
    * migrations run once in the master (``on_starting``), not in each worker;
    * ``gthread`` workers: uploads spend most of their time reading bodies and
      waiting for the durable commit, so threads overlap them within a process
      while the processes use every core;
    * no access log by default: a request line can carry secrets (a token in a
      query string), and the app logs what it needs itself.
    """

    def __init__(self, config: Any, bind: str, workers: int, threads: int, *, timeout: int = 120,
                 access_log: str | None = None) -> None:
        self.fedmark_config = config
        self.options = {"bind": bind, "workers": workers, "threads": threads,
                        "worker_class": "server.serving.JSONErrorThreadWorker",
                        "timeout": timeout, "graceful_timeout": 15, "keepalive": 5, "accesslog": access_log,
                        "errorlog": "-", "loglevel": "info", "proc_name": "fedmark server",
                        "limit_request_line": 8190, "limit_request_field_size": 16380, "control_socket_disable": True,
                        "on_starting": self._on_starting, "worker_exit": self._worker_exit}
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if value is not None or key == "accesslog":
                self.cfg.set(key, value)

    def load(self) -> Any:
        from server.app import create_app

        return create_app(self.fedmark_config)

    def _on_starting(self, _arbiter: Any) -> None:
        from server.storage import make_engine, run_migrations

        os.makedirs(self.fedmark_config.DATA_DIR, exist_ok=True)
        engine = make_engine(self.fedmark_config.database_url())
        try:
            run_migrations(engine, lock_dir=self.fedmark_config.DATA_DIR)
        finally:
            engine.dispose()
        self.fedmark_config.MIGRATE_ON_START = False

    @staticmethod
    def _worker_exit(_arbiter: Any, worker: Any) -> None:
        app = getattr(worker, "wsgi", None)
        ext = getattr(app, "extensions", None) or {}
        for name in ("fedmark_federation", "fedmark_rounds"):
            if name in ext:
                ext[name].stop()
        if "fedmark_store" in ext:
            ext["fedmark_store"].dispose()
