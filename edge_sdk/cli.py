"""``fedmark device …``: try the edge SDK from the shell.

Why: an app team can check its data, consent fields and server setup before
writing any app code::

    fedmark device train --server http://127.0.0.1:8000 --app-key ak_… --device-id d1 --region eu \\
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
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``device`` command group to the ``fedmark`` parser."""
    device = subparsers.add_parser("device", help="run the edge SDK on this machine as a device")
    sub = device.add_subparsers(dest="device_command", metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8000")
        p.add_argument("--app-key", default=os.environ.get("FEDMARK_APP_KEY"), help="app key used to enrol")
        p.add_argument("--device-token", default=os.environ.get("FEDMARK_DEVICE_TOKEN"),
                       help="an already issued device token (instead of --app-key)")
        p.add_argument("--device-id", required=True)
        p.add_argument("--region", required=True)
        p.add_argument("--storage", default=None,
                       help="storage directory (default: ./.fedmark-device/<device-id>)")
        p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
        p.add_argument("--insecure-http", action="store_true", help="allow plain http to a non-loopback host")

    train = sub.add_parser("train", help="fetch a task, train locally on --data, upload the update")
    common(train)
    train.add_argument("--model", required=True)
    train.add_argument("--data", required=True, help="CSV file of records (each with a 'consent' column)")
    train.add_argument("--charging", action="store_true")
    train.add_argument("--unmetered", action="store_true")
    train.add_argument("--idle", action="store_true")
    train.add_argument("--battery", type=float, default=1.0, help="battery level in [0, 1] (default 1)")
    train.add_argument("--seed", type=int, default=None)
    train.set_defaults(func=_train)

    flush = sub.add_parser("flush", help="send updates waiting in the offline queue")
    common(flush)
    flush.set_defaults(func=_flush)

    score = sub.add_parser("score", help="propensity scores for --data, computed locally")
    common(score)
    score.add_argument("--model", required=True)
    score.add_argument("--data", required=True)
    score.set_defaults(func=_score)

    rec = sub.add_parser("recommend", help="top-k items for this device's customer")
    common(rec)
    rec.add_argument("--model", required=True)
    rec.add_argument("-k", type=int, default=10)
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
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


def _train(args: argparse.Namespace) -> int:
    from edge_sdk import DeviceConditions

    def action(client: Any) -> dict[str, Any]:
        cond = DeviceConditions(charging=args.charging, unmetered=args.unmetered, idle=args.idle,
                                battery=args.battery)
        r = client.train(args.model, args.data, conditions=cond, seed=args.seed)
        return {"status": r.status, "model": r.model, "version": r.version, "round_id": r.round_id,
                "num_examples": r.num_examples, "loss": r.loss, "update_norm": r.update_norm,
                "within_clip": r.within_clip, "upload_bytes": r.upload_bytes, "data": r.data.as_dict(),
                "row_errors": [str(e) for e in r.data.row_errors[:20]], "pending": client.pending()}

    return _run(args, action)


def _flush(args: argparse.Namespace) -> int:
    def action(client: Any) -> dict[str, Any]:
        rep = client.flush()
        return {"sent": rep.sent, "dropped": rep.dropped, "pending": rep.pending,
                "outcomes": [{"round_id": o.round_id, "status": o.status, "code": o.code} for o in rep.outcomes]}

    return _run(args, action)


def _score(args: argparse.Namespace) -> int:
    def action(client: Any) -> dict[str, Any]:
        s = client.score(args.model, args.data)
        return {"scores": [None if v != v else round(float(v), 6) for v in s]}

    return _run(args, action)


def _recommend(args: argparse.Namespace) -> int:
    return _run(args, lambda client: {"items": client.recommend(args.model, args.k)})
