"""``fedmark`` sub-commands of the server package.

``register`` imports nothing heavy (argparse only): Flask, SQLAlchemy and
numpy are imported by the handlers when they run.

    fedmark init [--dir DIR] [--port 8080]        # writes fedmark.env with a generated admin token
    fedmark server [--host 127.0.0.1] [--port 8080] [--data-dir DIR] [--database-url URL] [--admin-token T]
    fedmark status | versions MODEL | rounds MODEL  --server URL --token T
    fedmark token create --role marketer [--name N] [--partner P] --server URL --token T
    fedmark publish ARTIFACT_DIR --server URL --token T [--model NAME] [--parent N]
    fedmark rollback MODEL VERSION --server URL --token T
    fedmark training MODEL (--config FILE | --set JSON) --server URL --token T
    fedmark app-key --server URL --token T [--partner P] [--region R]
    fedmark device-admin (reset|revoke|consent-withdrawn) DEVICE_ID --server URL --token T
    fedmark token revoke TOKEN_ID --server URL --token T
    fedmark policy MODEL (--config FILE | --set JSON) --server URL --token T
    fedmark audit verify [--database-url URL | --data-dir DIR] [--anchor SEQ:HASH ...]
    fedmark kpis --server URL --token T [--model M] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

__all__ = ["register", "kpi_lines", "cli_message", "check_database_url", "server_epilog", "COMMAND_ENV"]


DEFAULT_PORT = 8080
DEFAULT_SERVER = f"http://127.0.0.1:{DEFAULT_PORT}"
ENV_FILE = "fedmark.env"

#: Variables read by the commands rather than by the server's Config (their one home is this module).
COMMAND_ENV: dict[str, str] = {
    "FEDMARK_PORT": f"port of fedmark server and of the URL fedmark init writes (--port; default {DEFAULT_PORT})",
    "FEDMARK_SERVER": f"server URL of the admin commands (--server; default {DEFAULT_SERVER})",
    "FEDMARK_ACCESS_LOG": "gunicorn access log file (--access-log; '-' for stderr; off when unset)",
    "FEDMARK_WEB_SDK_DIR": "directory of the JavaScript SDK (src/ and node_modules/onnxruntime-web) that /train "
                           "serves; default: the installed edge_sdk/web",
}

PRODUCTION = """\
production:
  fedmark server runs gunicorn (--workers processes x --threads threads); run it behind a TLS-terminating
  proxy, with PostgreSQL for more than one worker:
    FEDMARK_DATABASE_URL=postgresql+psycopg://USER@HOST:5432/DB FEDMARK_ADMIN_TOKEN=... \\
    FEDMARK_RATE_LIMIT_STORAGE=redis://HOST:6379 fedmark server --host 0.0.0.0 --workers 4
  `fedmark init` writes these settings, with a generated admin token, to fedmark.env.
"""


def server_epilog() -> str:
    """``fedmark server --help``'s epilog: production notes and every FEDMARK_* variable with its default.

    Generated from :func:`server.config.env_table` (the Config class) and :data:`COMMAND_ENV`, so the
    help cannot drift from what the server reads.  Imports only server.config (standard library + clock).
    """
    from server.config import env_table

    lines = [PRODUCTION, "environment (a flag wins over its variable):"]
    for var, default, doc in env_table():
        lines.append(f"  {var}" + (f"  (default: {default})" if default not in ("", "None") else ""))
        lines.extend(f"      {chunk}" for chunk in _wrap(doc))
    for var, doc in COMMAND_ENV.items():
        lines.append(f"  {var}")
        lines.extend(f"      {chunk}" for chunk in _wrap(doc))
    return "\n".join(lines)


def _env_port() -> int:
    raw = os.environ.get("FEDMARK_PORT", "")
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"FEDMARK_PORT={raw!r} is not a TCP port; set it to a number from 1 to 65535 or unset it")
    return int(raw)


def _wrap(text: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, 96) or [""]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("init", help="write fedmark.env (a generated admin token, data dir, server URL) and "
                                           "print the next commands")
    p.add_argument("--dir", default=".", help="directory to write fedmark.env in (default: the current one)")
    p.add_argument("--data-dir", default=None, help="the server's data directory (default: DIR/var/fedmark)")
    p.add_argument("--port", type=int, default=_env_port(), help=f"the server's port (FEDMARK_PORT; default: {DEFAULT_PORT})")
    p.add_argument("--force", action="store_true", help="replace an existing fedmark.env (a new admin token)")
    p.set_defaults(func=_init)

    p = subparsers.add_parser("server", help="run the fedmark server (SQLite + files under --data-dir by default)",
                              epilog=server_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=_env_port(), help=f"port to listen on (FEDMARK_PORT; default: {DEFAULT_PORT})")
    p.add_argument("--data-dir", default=None,
                   help="artifact files and the SQLite database (FEDMARK_DATA_DIR; default: ./var/fedmark)")
    p.add_argument("--database-url", default=None,
                   help="SQLAlchemy URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test (FEDMARK_DATABASE_URL; "
                        "default: SQLite in the data dir)")
    p.add_argument("--admin-token", default=None,
                   help="admin secret (FEDMARK_ADMIN_TOKEN); generated and logged if unset — `fedmark init` writes one")
    p.add_argument("--tick-seconds", type=float, default=None,
                   help="deadline timer period (FEDMARK_TICK_SECONDS; default: 2); 0 disables it")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes of the production server (default: one per core with PostgreSQL; "
                        "1 with SQLite, which has a single writer)")
    p.add_argument("--threads", type=int, default=32, help="request threads per worker process (default: 32)")
    p.add_argument("--access-log", default=os.environ.get("FEDMARK_ACCESS_LOG"),
                   help="write gunicorn's access log to this file ('-' for stderr; FEDMARK_ACCESS_LOG); off by "
                        "default, and secrets in query strings are redacted")
    p.add_argument("--dev", action="store_true",
                   help="run werkzeug's single-process development server instead of gunicorn")
    p.add_argument("--role", choices=["single", "region", "global"], default=None,
                   help="federation role (FEDMARK_ROLE; default: single): 'region' serves one region's devices and "
                        "pushes its noised aggregate to --upstream; 'global' is the coordinator (docs/GOVERNANCE.md)")
    p.add_argument("--region", default=None, help="the region a --role region server serves (FEDMARK_REGION)")
    p.add_argument("--upstream", default=None,
                   help="the coordinator's URL for --role region (FEDMARK_UPSTREAM); its credential is read from "
                        "FEDMARK_UPSTREAM_TOKEN, never from the command line")
    p.set_defaults(func=_serve)

    def client_args(sp: argparse.ArgumentParser, marketer: bool = False) -> None:
        sp.add_argument("--server", default=os.environ.get("FEDMARK_SERVER", DEFAULT_SERVER),
                        help=f"server URL (FEDMARK_SERVER; default: {DEFAULT_SERVER})")
        who = "an admin or marketer token" if marketer else "the admin token"
        sp.add_argument("--token", default=os.environ.get("FEDMARK_ADMIN_TOKEN"),
                        help=f"{who} (default: FEDMARK_ADMIN_TOKEN)")
        sp.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server (default: 60)")
        sp.set_defaults(token_roles="admin or marketer" if marketer else "admin")

    p = subparsers.add_parser("status", help="is the server up, which models it has, their current versions")
    client_args(p, marketer=True)
    p.set_defaults(func=_status)

    p = subparsers.add_parser("versions", help="the versions of a model (current one marked, with ε and contributors)")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="print the raw JSON instead of the table")
    client_args(p, marketer=True)
    p.set_defaults(func=_versions)

    p = subparsers.add_parser("rounds", help="a model's training rounds, newest first")
    p.add_argument("model")
    p.add_argument("--limit", type=int, default=20, help="how many rounds (default: 20)")
    p.add_argument("--json", action="store_true", help="print the raw JSON instead of the table")
    client_args(p, marketer=True)
    p.set_defaults(func=_rounds)

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

    p = subparsers.add_parser("app-key", help="issue an app key that devices of one region enrol with")
    p.add_argument("--partner", default="default")
    p.add_argument("--region", default=None,
                   help="the residency zone of every device enrolling with this key (default: 'default'); "
                        "issue one key per region and ship each in that region's build")
    client_args(p)
    p.set_defaults(func=_app_key)

    p = subparsers.add_parser("device-admin", help="reset, revoke or flag an enrolled device (admin, audited)")
    p.add_argument("action", choices=["reset", "revoke", "consent-withdrawn"],
                   help="reset: forget its secret and tokens so it enrols afresh; revoke: revoke its tokens and "
                        "block re-enrolment; consent-withdrawn: refuse its uploads")
    p.add_argument("device_id")
    client_args(p)
    p.set_defaults(func=_device)

    p = subparsers.add_parser("token", help="issue a marketer token, or revoke a token by its id")
    tsub = p.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    c = tsub.add_parser("create", help="issue a token for the dashboard, kpis, activation and segments")
    c.add_argument("--role", choices=["marketer"], default="marketer",
                   help="the role (marketer; devices get theirs by enrolling with an app key)")
    c.add_argument("--name", default="marketer", help="who holds it, for the audit trail (default: marketer)")
    c.add_argument("--partner", default=None, help="bind the token to one partner: it sees that partner's data only")
    client_args(c)
    c.set_defaults(func=_token_create)
    r = tsub.add_parser("revoke", help="revoke a marketer (or device) token by the id `token create` printed")
    r.add_argument("token_id", type=int)
    client_args(r)
    r.set_defaults(func=_token)

    p = subparsers.add_parser("policy", help="set a model's governance policy (JSON, see docs/GOVERNANCE.md)")
    p.add_argument("model")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", help="path of a JSON file")
    g.add_argument("--set", help="the JSON object inline")
    client_args(p)
    p.set_defaults(func=_policy)

    p = subparsers.add_parser("audit", help="audit trail tools")
    asub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    v = asub.add_parser("verify", help="check the hash chain of the audit trail directly in the database")
    v.add_argument("--database-url", default=os.environ.get("FEDMARK_DATABASE_URL"),
                   help="SQLAlchemy URL of the server's database (FEDMARK_DATABASE_URL)")
    v.add_argument("--data-dir", default=os.environ.get("FEDMARK_DATA_DIR"),
                   help="the server's data dir (its SQLite database fedmark.db)")
    v.add_argument("--anchor", action="append", default=[],
                   help="SEQ:HASH of an entry recorded earlier (detects truncation of the tail); repeatable")
    v.set_defaults(func=_audit_verify)

    p = subparsers.add_parser("kpis", help="print the six governance KPIs of a model (or of every model); "
                                           "a marketer token works",
                              description="The six governance KPIs (docs/GOVERNANCE.md). An admin or a marketer "
                                          "token works: `fedmark token create --role marketer` issues one.")
    p.add_argument("--model", default=None)
    p.add_argument("--json", action="store_true", help="print the raw JSON instead of the table")
    client_args(p, marketer=True)
    p.set_defaults(func=_kpis)

    p = subparsers.add_parser("assess", help="the data-readiness assessment of a model's fleet (from its newest "
                                             "statistics release): which regions/partners are not ready, and why")
    p.add_argument("model")
    p.add_argument("--version", type=int, default=None, help="the statistics release (fitted schema) version")
    p.add_argument("--json", action="store_true", help="print the raw JSON instead of the sentences and table")
    client_args(p, marketer=True)
    p.set_defaults(func=_assess)

    p = subparsers.add_parser("statistics", help="fetch a model's federated statistics release; --out writes its "
                                                 "fitted schema for `fedmark export tabular --fitted-schema`")
    p.add_argument("model")
    p.add_argument("--version", type=int, default=None, help="the release (fitted schema) version; default newest")
    p.add_argument("--out", default=None, help="write the release JSON (with fitted_schema) to this file")
    client_args(p, marketer=True)
    p.set_defaults(func=_statistics)


# ---------------------------------------------------------------------------- init
def _init(args: argparse.Namespace) -> int:
    import secrets
    from pathlib import Path

    root = Path(args.dir).resolve()
    env_path = root / ENV_FILE
    if env_path.exists() and not args.force:
        raise SystemExit(f"{env_path} exists already (it holds this deployment's admin token); keep it, or pass "
                         "--force to write a new one with a new token")
    data_dir = Path(args.data_dir).resolve() if args.data_dir else root / "var" / "fedmark"
    server = f"http://127.0.0.1:{args.port}"
    token = "adm_" + secrets.token_urlsafe(24)
    root.mkdir(parents=True, exist_ok=True)
    body = ("# fedmark settings written by `fedmark init`; load them with:  set -a; . ./fedmark.env; set +a\n"
            "# Keep this file private: FEDMARK_ADMIN_TOKEN is the admin secret.  Every variable: fedmark server --help\n"
            f"FEDMARK_ADMIN_TOKEN={token}\nFEDMARK_DATA_DIR={data_dir}\nFEDMARK_PORT={args.port}\n"
            f"FEDMARK_SERVER={server}\n")
    fd = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(body)
    os.chmod(env_path, 0o600)
    print(f"wrote {env_path} (mode 0600) with a new admin token.\n\nnext:\n"
          f"  set -a; . {env_path}; set +a          # load the settings into this shell\n"
          f"  fedmark server &                          # start the server on port {args.port} (SQLite in {data_dir})\n"
          "  fedmark export propensity --out out/propensity   # build a trainer artifact (needs the build extra)\n"
          "  fedmark publish out/propensity\n"
          "  fedmark training propensity --set '{\"goal\": 2, \"min_clients\": 2}'\n"
          "  fedmark app-key --region eu                # devices enrol with this key\n"
          f"  fedmark device train --server {server} --app-key AK --device-id d1 --region eu "
          "--data records.csv --model propensity\n"
          "  fedmark status; fedmark versions propensity; fedmark rounds propensity")
    return 0


# ---------------------------------------------------------------------------- server
def check_database_url(url: str | None, flag: str = "--database-url") -> None:
    """Refuse a PostgreSQL URL whose driver is not installed, naming the URL to write instead.

    SQLAlchemy reads a bare ``postgresql://`` as psycopg2, which fedmark does not install (its server extra
    brings psycopg 3); without this check the server dies with a traceback about a missing module.
    """
    if not url:
        return
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None:
            fixed = "postgresql+psycopg://" + url.split("://", 1)[1]
            raise SystemExit(f"{flag} {scheme}://… selects SQLAlchemy's default PostgreSQL driver psycopg2, which "
                             f"is not installed; fedmark uses psycopg 3: write {flag} {_hide_password(fixed)}")


def _hide_password(url: str) -> str:
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("://", 1)[-1]:
        return url
    scheme, _, cred = head.partition("://")
    return f"{scheme}://{cred.split(':', 1)[0]}:***@{tail}"


def _serve(args: argparse.Namespace) -> int:
    import logging

    from server.config import Config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    check_database_url(args.database_url or os.environ.get("FEDMARK_DATABASE_URL"),
                       "--database-url" if args.database_url else "FEDMARK_DATABASE_URL")
    cfg = Config.from_env(DATA_DIR=args.data_dir, DATABASE_URL=args.database_url, ADMIN_TOKEN=args.admin_token,
                          TICK_SECONDS=args.tick_seconds, ROLE=getattr(args, "role", None),
                          REGION=getattr(args, "region", None), UPSTREAM_URL=getattr(args, "upstream", None)).finalize()
    from server.federation.roles import check_region_config

    try:
        check_region_config(cfg.as_flask())
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if args.dev:
        return _serve_dev(args, cfg)
    from server.serving import ProductionServer, default_workers

    # SQLite has one writer: a second process only queues on its lock (SQLite's busy handler sleeps between
    # retries), while one process's request threads share its group commits.  Scale out with PostgreSQL.
    sqlite = cfg.database_url().startswith("sqlite")
    workers = args.workers or (1 if sqlite else default_workers())
    if workers < 1 or args.threads < 1:
        raise SystemExit("--workers and --threads must be at least 1")
    # A waiting task request holds a thread: at most half of them wait, the rest serve uploads and downloads.
    cfg.LONG_POLL_SLOTS = max(1, min(int(cfg.LONG_POLL_SLOTS), args.threads // 2))
    print(f"fedmark server listening on http://{args.host}:{args.port} with {workers} worker process(es) x "
          f"{args.threads} threads (database {cfg.database_url().split('@')[-1]})", file=sys.stderr, flush=True)
    ProductionServer(cfg, f"{args.host}:{args.port}", workers, args.threads, access_log=args.access_log).run()
    return 0


def _serve_dev(args: argparse.Namespace, cfg: Any) -> int:
    import signal
    import threading

    from server.app import create_app
    from server.serving import make_dev_server

    app = create_app(cfg)
    srv = make_dev_server(args.host, args.port, app)
    stop = threading.Event()

    def _shutdown(signum: int, _frame: Any) -> None:
        if not stop.is_set():
            stop.set()
            threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGINT, _shutdown)
    print(f"fedmark development server listening on http://{args.host}:{srv.server_port} "
          f"(database {app.config['DATABASE_URL_RESOLVED'].split('@')[-1]})", file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    finally:
        app.extensions["fedmark_rounds"].stop()
        app.extensions["fedmark_store"].dispose()
    return 0


# ---------------------------------------------------------------------------- admin client
#: HTTP routes that server messages name, and the command that does the same from the shell.
_ROUTE_COMMANDS: tuple[tuple[str, str], ...] = (
    (r"POST /v1/admin/app-keys", "fedmark app-key"),
    (r"POST /v1/admin/devices/([^/\s)]+)/reset", r"fedmark device-admin reset \1"),
    (r"POST /v1/admin/tokens/(\d+)/revoke", r"fedmark token revoke \1"),
    (r"POST /v1/admin/tokens(?!/)", "fedmark token create"),
    (r"POST /v1/models/([^/\s)]+)/versions", "`fedmark publish ARTIFACT_DIR`"),
    (r"PUT /v1/models/([^/\s)]+)/training", r"`fedmark training \1 --set JSON`"),
    (r"PUT /v1/models/([^/\s)]+)/policy", r"`fedmark policy \1 --set JSON`"),
    (r"POST /v1/models/([^/\s)]+)/rollback", r"`fedmark rollback \1 VERSION`"),
    (r"GET /v1/devices", "the device list"),
    (r"POST /v1/devices/enroll", "enrolment"),
)


def cli_message(message: str) -> str:
    """A server error message with the HTTP routes it names replaced by the command to run instead."""
    import re

    for route, command in _ROUTE_COMMANDS:
        message = re.sub(route, command, message)
    message = re.sub(r"\s*\((?:GET|POST|PUT|DELETE) /v1/[^)]*\)", "", message)
    return re.sub(r"(?:GET|POST|PUT|DELETE) /v1/\S*", "the HTTP API (docs/API.md)", message)


def _call(args: argparse.Namespace, method: str, path: str, body: bytes | None = None,
          content_type: str = "application/json") -> Any:
    roles = getattr(args, "token_roles", "admin")
    if not args.token:
        raise SystemExit(f"{'an admin' if roles == 'admin' else 'an admin or marketer'} token is needed: pass "
                         "--token or set FEDMARK_ADMIN_TOKEN (`fedmark init` writes one to fedmark.env)")
    url = args.server.rstrip("/") + path
    if not url.startswith(("http://", "https://")):
        raise SystemExit(f"--server {args.server!r} is not an http(s) URL; pass e.g. --server {DEFAULT_SERVER}")
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Authorization": f"Bearer {args.token}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())["error"]
            code, msg = str(err["code"]), str(err["message"])
        except (ValueError, KeyError, TypeError):
            code, msg = f"http_{exc.code}", str(exc.reason)
        if exc.code == 401:  # the server's message addresses devices too; say what fixes it here
            raise SystemExit(f"the server refused the token ({code}): pass {roles} token with --token "
                             "(admin: the FEDMARK_ADMIN_TOKEN the server started with; marketer: one from "
                             "`fedmark token create --role marketer`)") from None
        if exc.code == 403 and code in ("forbidden", "wrong_role"):
            raise SystemExit(f"this token may not do that ({code}): {cli_message(msg)}; this command needs "
                             f"{roles} token (--token)") from None
        raise SystemExit(f"server answered {exc.code} {code}: {cli_message(msg)}") from None
    except urllib.error.URLError as exc:
        import ssl

        if isinstance(exc.reason, ssl.SSLError) and args.server.startswith("https://"):
            plain = "http://" + args.server.split("://", 1)[1]
            raise SystemExit(f"{args.server} does not answer TLS ({exc.reason}); if the server runs without TLS, "
                             f"pass --server {plain}") from None
        raise SystemExit(f"cannot reach {args.server}: {exc.reason}; is `fedmark server` running there? "
                         "(--server or FEDMARK_SERVER)") from None
    except (TimeoutError, OSError) as exc:
        raise SystemExit(f"no answer from {args.server} within {args.timeout:g} s ({exc}); raise --timeout or "
                         "check the server") from None


def _table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned columns, the header underlined: the views' one plain-text layout."""
    cells = [header] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def _status(args: argparse.Namespace) -> int:
    health = _call(args, "GET", "/v1/health")
    models = _call(args, "GET", "/v1/models")["models"]
    print(f"server {args.server}: {health.get('status', '?')}; {len(models)} model(s)")
    if models:
        rows = [[m["name"], "-" if m["current_version"] is None else f"v{m['current_version']}",
                 str(m["num_versions"]), "yes" if m["training"] else "no",
                 m.get("stopped") or ("awaiting gate: v" + str(m["candidate"]) if m.get("candidate") else "")]
                for m in models]
        print(_table(rows, ["model", "current", "versions", "training", "note"]))
    else:
        print("no model yet: `fedmark publish ARTIFACT_DIR` publishes one")
    return 0


def _versions(args: argparse.Namespace) -> int:
    out = _call(args, "GET", f"/v1/models/{_quote(args.model)}")
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    rows = []
    for v in out["versions"]:
        eps = "-" if v.get("epsilon") is None else f"{v['epsilon']:.2f} (δ={v['delta']:g})"
        rows.append([("* " if v["version"] == out["current_version"] else "  ") + f"v{v['version']}",
                     str(v.get("kind", "")), str(v.get("status", "")),
                     "-" if v.get("parent") is None else f"v{v['parent']}",
                     "-" if v.get("contributors") is None else str(v["contributors"]), eps,
                     str(v.get("created_at", ""))])
    print(f"model {out['name']}: current version "
          f"{'none' if out['current_version'] is None else 'v' + str(out['current_version'])} (marked *)")
    print(_table(rows, ["version", "kind", "status", "parent", "devices", "ε", "created"]))
    return 0


def _rounds(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise SystemExit(f"--limit must be at least 1, got {args.limit}")
    out = _call(args, "GET", f"/v1/models/{_quote(args.model)}/rounds?limit={args.limit}")
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    rows = [[str(r["seq"]), r["round_id"], r["state"], f"v{r['version']}",
             f"{'<k' if r['accepted'] is None else r['accepted']}/{r['goal']}",
             "-" if r.get("result_version") is None else f"v{r['result_version']}",
             str(r.get("reason") or "")] for r in out["rounds"]]
    print(f"model {out['model']}: {len(rows)} round(s), newest first (counts below k = {out.get('k_min')} hidden)")
    print(_table(rows, ["#", "round", "state", "from", "accepted/goal", "made", "reason"]) if rows else
          "no round yet: `fedmark training MODEL --set JSON` starts training")
    return 0


def _quote(name: str) -> str:
    import urllib.parse

    return urllib.parse.quote(name, safe="")


def _token_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"role": args.role, "name": args.name}
    if args.partner is not None:
        body["partner"] = args.partner
    out = _call(args, "POST", "/v1/admin/tokens", json.dumps(body).encode())
    print(json.dumps(out))
    print(f"# a {out['role']} token (id {out['id']}); open {args.server.rstrip('/')}/dashboard and paste it, or "
          f"`fedmark kpis --token …`; revoke with `fedmark token revoke {out['id']}`", file=sys.stderr)
    return 0


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


def _policy(args: argparse.Namespace) -> int:
    text = open(args.config, encoding="utf-8").read() if args.config else args.set
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"policy is not valid JSON: {exc}") from None
    print(json.dumps(_call(args, "PUT", f"/v1/models/{args.model}/policy", json.dumps(body).encode())))
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from server.governance.audit import verify
    from server.storage import make_engine

    if args.database_url:
        check_database_url(args.database_url)
        url = args.database_url
    elif args.data_dir:
        db = Path(args.data_dir) / "fedmark.db"
        if not db.is_file():
            raise SystemExit(f"no database at {db}; pass the server's --data-dir or --database-url")
        url = f"sqlite:///{db.resolve()}"
    else:
        raise SystemExit("say which database to check: --database-url URL or --data-dir DIR")
    anchors = []
    for a in args.anchor:
        seq, _, h = a.partition(":")
        if not seq.isdigit() or len(h) != 64:
            raise SystemExit(f"--anchor must be SEQ:HASH (as printed by a previous verify), got {a!r}")
        anchors.append((int(seq), h))
    engine = make_engine(url)
    try:
        verdict = verify(engine, anchors)
    finally:
        engine.dispose()
    if verdict.ok:
        print(f"audit trail OK: {verdict.entries} entries; head {verdict.head_seq}:{verdict.head_hash}")
        return 0
    print(f"audit trail TAMPERED: first bad entry {verdict.first_bad}: {verdict.reason} "
          f"({verdict.entries} entries verified before it)", file=sys.stderr)
    return 1


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def kpi_lines(k: dict[str, Any]) -> list[str]:
    """The six KPIs of one model as text lines (used by ``fedmark kpis``)."""
    rd, gc, pl = k["raw_data_movement_reduction"], k["governed_training_coverage"], k["personalization_lift"]
    pc, mc, ca = k["partner_model_contribution"], k["model_confidence"], k["compliant_activation_rate"]
    lines = [f"model {k['model']} (current version {k['current_version']}"
             + (f"; regional lines: {', '.join(k['lines'])})" if k["lines"] else ")")]
    lines.append(f"  Raw Data Movement Reduction  {_pct(rd['value'])}: raw-record bytes moved {rd['raw_record_bytes_moved']}; "
                 f"moved {rd['bytes_moved']['total']:,} B (updates {rd['bytes_moved']['updates']:,}, reports "
                 f"{rd['bytes_moved']['evaluation_reports'] + rd['bytes_moved']['segment_reports']:,}) vs "
                 f"{rd['centralised_bytes']:,.0f} B to centralise {rd['records_on_devices']:,} records at "
                 f"{rd['bytes_per_record']:.1f} B/record ({rd['bytes_per_record_estimate']})")
    lines.append(f"  Governed Training Coverage   {_pct(gc['value'])}: {gc['governed']} of {gc['contributions']} "
                 "contributions under a recorded policy decision")
    if pl["value"] is None:
        lines.append(f"  Personalization Lift         n/a ({pl.get('reason', 'no data')})")
    else:
        extra = f"AUC {pl['auc']:.3f} vs 0.5" if pl.get("auc") is not None else             f"HR {pl.get('model_hr', 0):.3f} vs {pl.get('baseline_hr', 0):.3f}"
        lines.append(f"  Personalization Lift         {pl['value']:.2f}x vs {pl['baseline']} ({extra}; v{pl['version']})")
    if not isinstance(pc["value"], dict):
        lines.append(f"  Partner Model Contribution   n/a ({pc.get('reason', 'no data')})")
    else:
        parts = ", ".join(f"{p} {'n/a' if v is None else f'{v:+.4f}'}" for p, v in pc["value"].items())
        lines.append(f"  Partner Model Contribution   {parts} ({pc['metric']} improvement from including the partner, "
                     f"leave-one-out; v{pc['version']})")
    if mc["value"] is None:
        lines.append(f"  Model Confidence             n/a ({mc.get('reason', 'not enough regions evaluated')})")
    else:
        spread = "n/a" if mc["spread"] is None else f"{mc['spread']:.4f}"
        psi = "n/a" if mc["max_psi"] is None else f"{mc['max_psi']:.4f}"
        lines.append(f"  Model Confidence             {mc['value']} ({mc['metric']} spread {spread} across "
                     f"{mc['regions']} regions; max region PSI {psi} vs {mc['reference']})")
    denied = ", ".join(f"{r} {n}" for r, n in sorted(ca["denied_by_reason"].items())) or "none"
    lines.append(f"  Compliant Activation Rate    {_pct(ca['value'])}: {ca['allowed']} of {ca['requests']} requests "
                 f"allowed (denied: {denied})")
    return lines


def _kpis(args: argparse.Namespace) -> int:
    import urllib.parse

    q = f"?model={urllib.parse.quote(args.model)}" if args.model else ""
    out = _call(args, "GET", f"/v1/kpis{q}")
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for k in ([out] if args.model else out["models"]):
        print("\n".join(kpi_lines(k)))
    return 0


def _app_key(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"partner": args.partner}
    if args.region is not None:
        body["region"] = args.region
    print(json.dumps(_call(args, "POST", "/v1/admin/app-keys", json.dumps(body).encode())))
    return 0


def _device(args: argparse.Namespace) -> int:
    import urllib.parse

    path = f"/v1/admin/devices/{urllib.parse.quote(args.device_id, safe='')}/{args.action}"
    print(json.dumps(_call(args, "POST", path, b"{}")))
    return 0


def _token(args: argparse.Namespace) -> int:
    print(json.dumps(_call(args, "POST", f"/v1/admin/tokens/{args.token_id}/revoke", b"{}")))
    return 0


# ---------------------------------------------------------------------------- statistics (#15)
def _release_path(args: argparse.Namespace, what: str) -> str:
    if args.version is not None and args.version < 1:
        raise SystemExit(f"--version must be at least 1, got {args.version}")
    return f"/v1/models/{_quote(args.model)}/{what}" + (f"?version={args.version}" if args.version else "")


def _assess(args: argparse.Namespace) -> int:
    out = _call(args, "GET", _release_path(args, "readiness"))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    eps = "no DP noise" if out.get("epsilon") is None else f"ε={out['epsilon']:.2f}"
    print(f"model {out['model']}: readiness from statistics release v{out['schema_version']} ({eps}, k={out['k']}"
          + (f", drift vs v{out['previous_version']}" if out.get("previous_version") else "") + ")")
    print("\n".join(out["summary"]))
    rows = []
    for c in out["cells"].values():
        ch = c.get("checks", {})
        pct = lambda v: "-" if v is None else f"{v:.0%}"  # noqa: E731
        rows.append([c["region"], c["partner"], "suppressed" if c.get("suppressed") else
                     ("ready" if c["ready"] else "NOT READY"), "-" if c.get("devices") is None else str(c["devices"]),
                     pct(ch.get("conformity")), pct(ch.get("consent")),
                     pct(max((v for v in (ch.get("missing") or {}).values() if v is not None), default=None)),
                     pct(ch.get("label_minority")),
                     "-" if not ch.get("psi") else f"{max(ch['psi'].values()):.2f}"])
    print(_table(rows, ["region", "partner", "verdict", "devices", "conform", "consent", "max missing",
                        "minority label", "max PSI"]))
    return 0 if out["ready"] else 1


def _statistics(args: argparse.Namespace) -> int:
    out = _call(args, "GET", _release_path(args, "statistics"))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
        print(f"wrote release v{out['schema_version']} of {out['model']} to {args.out}; export with "
              f"`fedmark export tabular --fitted-schema {args.out} ...`")
    else:
        print(json.dumps(out, indent=2))
    return 0
