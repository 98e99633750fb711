"""``fedmark`` sub-commands of the server package.

``register`` imports nothing heavy (argparse only): Flask, SQLAlchemy and
numpy are imported by the handlers when they run.

    fedmark server [--host 127.0.0.1] [--port 8080] [--data-dir DIR] [--database-url URL] [--admin-token T]
    fedmark publish ARTIFACT_DIR --server URL --token T [--model NAME] [--parent N]
    fedmark rollback MODEL VERSION --server URL --token T
    fedmark training MODEL (--config FILE | --set JSON) --server URL --token T
    fedmark app-key --server URL --token T [--partner P]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("server", help="run the fedmark server (SQLite + files under --data-dir by default)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--data-dir", default=None, help="artifact files and the SQLite database (FEDMARK_DATA_DIR)")
    p.add_argument("--database-url", default=None,
                   help="SQLAlchemy URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test (FEDMARK_DATABASE_URL)")
    p.add_argument("--admin-token", default=None, help="admin secret (FEDMARK_ADMIN_TOKEN); generated if unset")
    p.add_argument("--tick-seconds", type=float, default=None, help="deadline timer period; 0 disables it")
    p.set_defaults(func=_serve)

    def client_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--server", default=os.environ.get("FEDMARK_SERVER", "http://127.0.0.1:8080"))
        sp.add_argument("--token", default=os.environ.get("FEDMARK_ADMIN_TOKEN"), help="admin token")
        sp.add_argument("--timeout", type=float, default=60.0)

    p = subparsers.add_parser("publish", help="publish an exported artifact directory as a new model version")
    p.add_argument("artifact_dir")
    p.add_argument("--model", default=None, help="model name (default: the manifest's)")
    p.add_argument("--parent", type=int, default=None, help="record this version as the parent (lineage)")
    client_args(p)
    p.set_defaults(func=_publish)

    p = subparsers.add_parser("rollback", help="make an earlier version of a model current")
    p.add_argument("model")
    p.add_argument("version", type=int)
    client_args(p)
    p.set_defaults(func=_rollback)

    p = subparsers.add_parser("training", help="set a model's training configuration (JSON, see docs/API.md)")
    p.add_argument("model")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", help="path of a JSON file")
    g.add_argument("--set", help="the JSON object inline")
    client_args(p)
    p.set_defaults(func=_training)

    p = subparsers.add_parser("app-key", help="issue an app key that devices enrol with")
    p.add_argument("--partner", default="default")
    client_args(p)
    p.set_defaults(func=_app_key)


# ---------------------------------------------------------------------------- server
def _serve(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from werkzeug.serving import make_server

    from server.app import create_app
    from server.config import Config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = Config.from_env(DATA_DIR=args.data_dir, DATABASE_URL=args.database_url, ADMIN_TOKEN=args.admin_token,
                          TICK_SECONDS=args.tick_seconds)
    app = create_app(cfg)
    srv = make_server(args.host, args.port, app, threaded=True)
    stop = threading.Event()

    def _shutdown(signum: int, _frame: Any) -> None:
        if not stop.is_set():
            stop.set()
            threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGINT, _shutdown)
    print(f"fedmark server listening on http://{args.host}:{srv.server_port} "
          f"(database {app.config['DATABASE_URL_RESOLVED'].split('@')[-1]})", file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    finally:
        app.extensions["fedmark_rounds"].stop()
        app.extensions["fedmark_store"].dispose()
    return 0


# ---------------------------------------------------------------------------- admin client
def _call(args: argparse.Namespace, method: str, path: str, body: bytes | None = None,
          content_type: str = "application/json") -> Any:
    if not args.token:
        raise SystemExit("an admin token is needed: pass --token or set FEDMARK_ADMIN_TOKEN")
    req = urllib.request.Request(args.server.rstrip("/") + path, data=body, method=method,
                                 headers={"Authorization": f"Bearer {args.token}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())["error"]
            msg = f"{err['code']}: {err['message']}"
        except (ValueError, KeyError, TypeError):
            msg = str(exc)
        raise SystemExit(f"server answered {exc.code}: {msg}") from None
    except urllib.error.URLError as exc:
        raise SystemExit(f"cannot reach {args.server}: {exc.reason}") from None


def _publish(args: argparse.Namespace) -> int:
    from fedmark.contract import ManifestError, load_artifact_manifest
    from server.registry.artifacts import write_archive

    try:  # verify locally first: a clear error before uploading
        manifest = load_artifact_manifest(args.artifact_dir)
    except ManifestError as exc:
        raise SystemExit(f"cannot publish {args.artifact_dir}: {exc}") from None
    name = args.model or manifest.model
    query = f"?parent={args.parent}" if args.parent is not None else ""
    out = _call(args, "POST", f"/v1/models/{name}/versions{query}", write_archive(args.artifact_dir), "application/gzip")
    print(json.dumps(out))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    print(json.dumps(_call(args, "POST", f"/v1/models/{args.model}/rollback",
                           json.dumps({"version": args.version}).encode())))
    return 0


def _training(args: argparse.Namespace) -> int:
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            text = f.read()
    else:
        text = args.set
    try:
        cfg = json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"training configuration is not valid JSON: {exc}") from None
    print(json.dumps(_call(args, "PUT", f"/v1/models/{args.model}/training", json.dumps(cfg).encode())))
    return 0


def _app_key(args: argparse.Namespace) -> int:
    print(json.dumps(_call(args, "POST", "/v1/admin/app-keys", json.dumps({"partner": args.partner}).encode())))
    return 0
