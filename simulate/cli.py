"""``fedmark simulate``: assess federated training of an artifact on a simulated fleet, without HTTP.

Registration imports nothing heavy (``fedmark --help`` stays instant); the
handler imports the engine, ONNX Runtime and the server's aggregation when it runs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

EPILOG = """\
The fleet runs the artifact's ONNX graphs with edge_sdk's Trainer and the
updates are folded by the server's aggregation pipeline built from --config,
the same JSON document as PUT /v1/models/{name}/training (clip, noise,
server optimizer, goal, over_select, min_clients, hyperparams ...).

examples:
  fedmark simulate --artifact out/propensity --data bank-full.csv.gz --partition-by job \\
      --max-device-rows 100 --config training.json --rounds 200 --out sim/propensity.json
  fedmark simulate --family recommender --data online_retail.csv.gz --rounds 100 \\
      --devices-per-round 60 --out sim/recommender.json
  fedmark simulate --artifact out/propensity --data bank.csv --one-per-record --engine ray ...
  fedmark simulate --family ease --data online_retail.csv.gz --no-consent 0.05 --rounds 4 \
      --dropout 0.1 --out sim/ease.json        # federated EASE, as the demo runs it

Federated EASE (family ease, protocol ease-gram/1) sends each device's sparse Gram
counts once (edge_sdk.families.ease), folds them with Accumulator.add_sparse and
publishes the server's solve (server.aggregation.ease) when a round closes; items,
cap, k, lambda and rank are the artifact's hyperparams.gram.  Without --config it
uses the demo's training document (simulate.ease.training_config).
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate", help="simulate federated training of an artifact on a fleet (no HTTP): federated vs "
                         "centralized vs local-only", description=__doc__.splitlines()[0].split(": ", 1)[1],
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--artifact", metavar="DIR", help="an exported trainer artifact (manifest.json + graphs)")
    src.add_argument("--family", choices=("propensity", "recommender", "ease"),
                     help="export this model family from --data first (needs the build extra: TensorFlow)")
    p.add_argument("--data", metavar="FILE", help="the records the fleet holds (CSV, optionally gzip)")
    p.add_argument("--config", metavar="FILE", help="training configuration JSON (as PUT /v1/models/{name}/training)")
    p.add_argument("--rounds", type=int, default=50, help="federated rounds (default 50)")
    p.add_argument("--devices-per-round", type=int, default=None, help="the round goal (overrides the config's goal)")
    p.add_argument("--dropout", type=float, default=0.0, help="share of selected devices that vanish (default 0)")
    part = p.add_argument_group("partition (tabular data; the recommender is one customer per device)")
    part.add_argument("--partition-by", metavar="COL", help="one device per value of COL")
    part.add_argument("--client-id", metavar="COL", help="one device per client id in COL")
    part.add_argument("--one-per-record", action="store_true", help="every record is its own device")
    part.add_argument("--dirichlet", type=float, metavar="ALPHA", help="label-skewed split, Dirichlet(ALPHA)")
    part.add_argument("--devices", type=int, help="number of devices for --dirichlet")
    part.add_argument("--max-device-rows", type=int, help="cut each partition into devices of at most N rows")
    part.add_argument("--label", help="label column (default: the artifact schema's label)")
    part.add_argument("--no-consent", type=float, default=0.0,
                      help="share of records without consent when the data has no consent column (default 0)")
    part.add_argument("--customers", type=int, metavar="N",
                      help="EASE: a seeded subset of N customers (default: all)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="held-out share (tabular, default 0.25)")
    p.add_argument("--engine", choices=("processes", "ray", "inline"), default="processes",
                   help="where devices run: local processes (default), Ray (pip install 'fedmark[sim]'), inline")
    p.add_argument("--workers", type=int, default=None, help="worker processes / Ray actors (default: CPU count)")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=5, help="rounds between learning-curve points (default 5)")
    p.add_argument("--curve-users", type=int, default=None,
                   help="recommender: users scored for the curve (final figures always use every held-out user)")
    p.add_argument("--central-epochs", type=int, default=None,
                   help="centralized training length (default 30 epochs propensity, 3 recommender)")
    p.add_argument("--local-only-devices", type=int, default=50)
    p.add_argument("--local-only-epochs", type=int, default=20)
    p.add_argument("--no-baselines", action="store_true", help="federated run only (sweeps)")
    p.add_argument("--out", metavar="FILE", required=True, help="results JSON; the plot goes beside it (.png)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _fail(msg: str) -> int:
    print(f"fedmark simulate: error: {msg}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    from simulate.data import DataError
    from simulate.engines import EngineError
    from simulate.federation import ConfigError
    from simulate.partition import PartitionError
    from simulate.plot import plot_curve
    from simulate.run import Options, assess, prepare, write

    config: Any = None  # the family's default: DEFAULT_CONFIG, or the demo's EASE document
    if args.config:
        try:
            config = json.loads(Path(args.config).read_text())
        except FileNotFoundError:
            return _fail(f"--config {args.config}: no such file")
        except json.JSONDecodeError as exc:
            return _fail(f"--config {args.config} is not valid JSON: {exc}")
        if not isinstance(config, dict):
            return _fail(f"--config {args.config} must hold a JSON object (the training configuration)")
    opts = Options(artifact=args.artifact, family=args.family, data=args.data, config=config, rounds=args.rounds,
                   devices_per_round=args.devices_per_round, dropout=args.dropout, partition_by=args.partition_by,
                   client_id=args.client_id, one_per_record=args.one_per_record, dirichlet=args.dirichlet,
                   devices=args.devices, max_device_rows=args.max_device_rows, label=args.label,
                   test_fraction=args.test_fraction, no_consent=args.no_consent, engine=args.engine,
                   workers=args.workers, ray_address=args.ray_address, seed=args.seed, eval_every=args.eval_every,
                   central_epochs=args.central_epochs, local_only_devices=args.local_only_devices,
                   local_only_epochs=args.local_only_epochs, curve_users=args.curve_users,
                   customers=args.customers,
                   work_dir=str(Path(args.out).resolve().parent))
    progress = None
    if not args.no_progress:
        from tqdm import tqdm
        progress = tqdm
    try:
        prep = prepare(opts)
        doc = assess(prep, opts, progress=progress, baselines=not args.no_baselines)
    except (DataError, ConfigError, PartitionError, EngineError) as exc:
        return _fail(str(exc))
    if sys.argv[1:2] == ["simulate"]:  # the command line that made the document (a report cites it)
        import shlex

        doc["command"] = "fedmark " + shlex.join(sys.argv[1:])
    write(doc, args.out)
    png = str(Path(args.out).with_suffix(".png"))
    plot_curve(doc, png)
    runs = doc["runs"]
    metric = doc["metric"]
    line = ", ".join(f"{name} {r[metric]:.4f}" for name, r in runs.items() if metric in r)
    eps = doc.get("epsilon")
    print(f"{metric}: {line}" + (f"; epsilon {eps:.3f}" if eps else "") + f"\nwrote {args.out} and {png}")
    return 0
