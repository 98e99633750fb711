"""``fedmark`` sub-commands of the server package.

``register`` imports nothing heavy (argparse only): Flask, SQLAlchemy and
numpy are imported by the handlers when they run.

    fedmark server [--host 127.0.0.1] [--port 8080] [--data-dir DIR] [--database-url URL] [--admin-token T]
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


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("server", help="run the fedmark server (SQLite + files under --data-dir by default)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--data-dir", default=None, help="artifact files and the SQLite database (FEDMARK_DATA_DIR)")
    p.add_argument("--database-url", default=None,
                   help="SQLAlchemy URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test (FEDMARK_DATABASE_URL)")
    p.add_argument("--admin-token", default=None, help="admin secret (FEDMARK_ADMIN_TOKEN); generated if unset")
    p.add_argument("--tick-seconds", type=float, default=None, help="deadline timer period; 0 disables it")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes of the production server (default: one per core with PostgreSQL; "
                        "1 with SQLite, which has a single writer)")
    p.add_argument("--threads", type=int, default=8, help="request threads per worker process (default: 8)")
    p.add_argument("--access-log", default=os.environ.get("FEDMARK_ACCESS_LOG"),
                   help="write gunicorn's access log to this file ('-' for stderr; FEDMARK_ACCESS_LOG); off by "
                        "default, and secrets in query strings are redacted")
    p.add_argument("--dev", action="store_true",
                   help="run werkzeug's single-process development server instead of gunicorn")
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

    p = subparsers.add_parser("token", help="revoke a marketer (or device) token by its id")
    p.add_argument("action", choices=["revoke"])
    p.add_argument("token_id", type=int)
    client_args(p)
    p.set_defaults(func=_token)

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

    p = subparsers.add_parser("kpis", help="print the six governance KPIs of a model (or of every model)")
    p.add_argument("--model", default=None)
    p.add_argument("--json", action="store_true", help="print the raw JSON instead of the table")
    client_args(p)
    p.set_defaults(func=_kpis)


# ---------------------------------------------------------------------------- server
def _serve(args: argparse.Namespace) -> int:
    import logging

    from server.config import Config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = Config.from_env(DATA_DIR=args.data_dir, DATABASE_URL=args.database_url, ADMIN_TOKEN=args.admin_token,
                          TICK_SECONDS=args.tick_seconds).finalize()
    if args.dev:
        return _serve_dev(args, cfg)
    from server.serving import ProductionServer, default_workers

    # SQLite has one writer: a second process only queues on its lock (SQLite's busy handler sleeps between
    # retries), while one process's request threads share its group commits.  Scale out with PostgreSQL.
    sqlite = cfg.database_url().startswith("sqlite")
    workers = args.workers or (1 if sqlite else default_workers())
    if workers < 1 or args.threads < 1:
        raise SystemExit("--workers and --threads must be at least 1")
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
