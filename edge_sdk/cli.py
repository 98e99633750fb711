"""``fedmark device …``: try the edge SDK from the shell.

Why: an app team can check its data, consent fields and server setup before
writing any app code::

    fedmark device train --server http://127.0.0.1:8080 --app-key ak_… --device-id d1 --region eu \\
        --data records.csv --model propensity --charging --unmetered --idle --battery 0.9
    fedmark device flush  --server … --app-key … --device-id d1 --region eu
    fedmark device score  … --data records.csv --model propensity
    fedmark device recommend … --model recommender -k 10

Registration imports nothing but argparse; the SDK is imported when a command runs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

__all__ = ["register", "cli_message"]

DEFAULT_SERVER = "http://127.0.0.1:8080"  # where `fedmark server` listens by default

#: Names of the Python API that SDK messages use, and the flag that sets each from the shell.
_FLAGS: tuple[tuple[str, str], ...] = (
    (r"set allow_insecure_http=True", "pass --insecure-http"),
    (r"allow_insecure_http(=True)?", "--insecure-http"),
    (r"\bserver_url\b", "--server"),
    (r"\bapp_key\b", "--app-key"),
    (r"\bdevice_token\b", "--device-token"),
    (r"\bstorage_dir\b", "--storage"),
    (r"\(?POST /v1/admin/devices/([^/\s)]+)/reset\)?", r"(an admin runs `fedmark device-admin reset \1`)"),
    (r"\(?POST /v1/admin/app-keys\)?", "(an admin runs `fedmark app-key`)"),
)


def cli_message(message: str) -> str:
    """An SDK error message in the shell's terms: the flag to pass instead of the Python argument."""
    for pattern, flag in _FLAGS:
        message = re.sub(pattern, flag, message)
    return message


def register(subparsers: Any) -> None:
    """Add the ``device`` command group to the ``fedmark`` parser."""
    device = subparsers.add_parser("device", help="run the edge SDK on this machine as a device")
    sub = device.add_subparsers(dest="device_command", metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", default=os.environ.get("FEDMARK_SERVER"), required="FEDMARK_SERVER" not in os.environ,
                       help=f"server URL, e.g. {DEFAULT_SERVER} (FEDMARK_SERVER)")
        p.add_argument("--app-key", default=os.environ.get("FEDMARK_APP_KEY"),
                       help="app key used to enrol (FEDMARK_APP_KEY; an admin issues one with `fedmark app-key`)")
        p.add_argument("--device-token", default=os.environ.get("FEDMARK_DEVICE_TOKEN"),
                       help="an already issued device token, instead of --app-key (FEDMARK_DEVICE_TOKEN)")
        p.add_argument("--device-id", required=True)
        p.add_argument("--region", required=True)
        p.add_argument("--storage", default=None,
                       help="storage directory (default: ./.fedmark-device/<device-id>)")
        p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
        p.add_argument("--insecure-http", action="store_true", help="allow plain http to a non-loopback host")

    train = sub.add_parser("train", help="fetch a task, train locally on --data, upload the update",
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=(
                               "example:\n  fedmark device train --server " + DEFAULT_SERVER + " --app-key ak_... "
                               "--device-id d1 --region eu \\\n      --data records.csv --model propensity "
                               "--charging --unmetered --idle --wait-round 30\n\nProgress goes to stderr; the "
                               "JSON report (counts only, never records) to stdout."))
    common(train)
    train.add_argument("--model", required=True)
    train.add_argument("--data", required=True, help="CSV file of records (each with a 'consent' column)")
    train.add_argument("--charging", action="store_true")
    train.add_argument("--unmetered", action="store_true")
    train.add_argument("--idle", action="store_true")
    train.add_argument("--battery", type=float, default=1.0, help="battery level in [0, 1] (default 1)")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--wait-round", type=float, default=0.0, metavar="SECONDS",
                       help="after uploading, follow the round until it closes (at most SECONDS) and print the "
                            "version it made")
    train.set_defaults(func=_train)

    flush = sub.add_parser("flush", help="send updates waiting in the offline queue")
    common(flush)
    flush.set_defaults(func=_flush)

    score = sub.add_parser("score", help="propensity scores for --data, computed locally")
    common(score)
    score.add_argument("--model", required=True)
    score.add_argument("--data", required=True)
    score.add_argument("--no-refresh", action="store_true",
                       help="score with the cached version instead of asking the server for its current one")
    score.set_defaults(func=_score)

    rec = sub.add_parser("recommend", help="top-k items for this device's customer")
    common(rec)
    rec.add_argument("--model", required=True)
    rec.add_argument("-k", type=int, default=10)
    rec.add_argument("--no-refresh", action="store_true",
                     help="recommend with the cached version instead of asking the server for its current one")
    rec.set_defaults(func=_recommend)

    device.set_defaults(func=lambda args: (device.print_help(), 2)[1])


def _client(args: argparse.Namespace) -> Any:
    from edge_sdk import Client

    storage = args.storage or os.path.join(".fedmark-device", args.device_id)
    return Client(args.server, app_key=args.app_key, device_token=args.device_token, device_id=args.device_id,
                  region=args.region, storage_dir=storage, timeout=args.timeout,
                  allow_insecure_http=args.insecure_http)


def _run(args: argparse.Namespace, action: Any) -> int:
    from edge_sdk import EdgeError

    try:
        result = action(_client(args))
    except EdgeError as exc:
        print(f"error: {cli_message(str(exc))}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


def _train(args: argparse.Namespace) -> int:
    from edge_sdk import DeviceConditions

    def action(client: Any) -> dict[str, Any]:
        cond = DeviceConditions(charging=args.charging, unmetered=args.unmetered, idle=args.idle,
                                battery=args.battery)
        r = client.train(args.model, args.data, conditions=cond, seed=args.seed)
        _say(f"trained {args.model} v{r.version} on {r.num_examples} record(s) (loss {r.loss:.4f}); update "
             f"{r.upload_bytes:,} B {r.status}")
        out = {"status": r.status, "model": r.model, "version": r.version, "round_id": r.round_id,
               "num_examples": r.num_examples, "loss": r.loss, "update_norm": r.update_norm,
               "within_clip": r.within_clip, "upload_bytes": r.upload_bytes, "data": r.data.as_dict(),
               "row_errors": [str(e) for e in r.data.row_errors[:20]], "pending": client.pending()}
        if r.status != "queued":
            out["round"] = _follow(client, r.round_id, args.wait_round)
        return out

    return _run(args, action)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _follow(client: Any, round_id: str, wait_s: float) -> dict[str, Any]:
    """Print the round's progress (accepted of goal) and, with ``wait_s``, follow it until it closes."""
    import time

    deadline = time.monotonic() + max(0.0, wait_s)
    last = None
    while True:
        info = client.round_status(round_id)
        accepted = "fewer than k" if info.get("accepted") is None else info["accepted"]
        line = f"round {round_id}: {accepted} of {info.get('goal')} update(s) accepted; {info.get('state')}"
        if info.get("result_version") is not None:
            line += f"; made version v{info['result_version']}"
        if line != last:
            _say(line)
            last = line
        if info.get("state") != "open" or time.monotonic() >= deadline:
            return {k: info.get(k) for k in ("state", "accepted", "goal", "result_version")}
        time.sleep(0.5)


def _flush(args: argparse.Namespace) -> int:
    def action(client: Any) -> dict[str, Any]:
        rep = client.flush()
        return {"sent": rep.sent, "dropped": rep.dropped, "pending": rep.pending,
                "outcomes": [{"round_id": o.round_id, "status": o.status, "code": o.code} for o in rep.outcomes]}

    return _run(args, action)


def _score(args: argparse.Namespace) -> int:
    def action(client: Any) -> dict[str, Any]:
        s = client.score(args.model, args.data, refresh=not args.no_refresh)
        _say(f"scored with {args.model} v{client.last_version[args.model]}")
        return {"model": args.model, "version": client.last_version[args.model],
                "scores": [None if v != v else round(float(v), 6) for v in s]}

    return _run(args, action)


def _recommend(args: argparse.Namespace) -> int:
    def action(client: Any) -> dict[str, Any]:
        items = client.recommend(args.model, args.k, refresh=not args.no_refresh)
        _say(f"recommended with {args.model} v{client.last_version[args.model]}")
        return {"model": args.model, "version": client.last_version[args.model], "items": items}

    return _run(args, action)
