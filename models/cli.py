"""``fedmark export FAMILY --out DIR …``: one sub-command per registered family (``models.registry``).

Registration imports nothing heavy (``fedmark --help`` must stay instant and
work where TensorFlow is absent); the handler imports TensorFlow when it runs.
Each family gets its own flags, so a flag of another family is refused by
argparse with the usual "unrecognized arguments" message.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from models import registry

EPILOG = """\
The artifact directory receives manifest.json (every file hashed), the ONNX
graphs (train_step, train_epoch, infer; the recommender adds recon_step and
recon_epoch) and params.bin (initial global params, raw little-endian float32
in manifest order).  See docs/ARTIFACT.md and docs/TUTORIAL.md.

examples:
  fedmark export propensity --out out/propensity
  fedmark export recommender --out out/recommender --dim 16 --negatives 8
  fedmark export tabular --data customers.csv --label churned --positive yes --drop customer_id --out out/churn
  fedmark export tabular --data value.csv.gz --label next_3m_spend --task regression --out out/value
  fedmark export keras --model my_model.py:build --schema schema.json --data value.csv --out out/mine
"""


def _common(p: argparse.ArgumentParser, default_name: str) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="artifact directory to create (files are replaced)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split and the initial params (default 0)")
    p.add_argument("--name", "--model-name", dest="name", default=None,
                   help=f"model name in the manifest (default {default_name!r})")
    p.add_argument("--version", type=int, default=1, help="model version recorded in the manifest (default 1)")
    p.add_argument("--lr", type=float, default=None, help="default local learning rate")
    p.add_argument("--epochs", type=int, default=None, help="default local epochs per round")
    p.add_argument("--batch-size", type=int, default=None, help="rows per batch (default 64)")
    p.add_argument("--clip-norm", type=float, default=1.0, help="L2 clip norm C for updates (default 1.0)")
    p.add_argument("--noise-multiplier", type=float, default=1.0, help="DP noise multiplier z recorded (default 1.0)")


def _table_input(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--data", metavar="FILE", required=required, default=None,
                   help="training table: CSV (any delimiter, gzip or not) or Parquet")
    p.add_argument("--sep", default=None, help="CSV delimiter (default: sniffed from the header)")
    p.add_argument("--schema", metavar="FILE", default=None,
                   help="schema declaration (JSON, or YAML as .yaml/.yml); without it the schema is inferred and written to "
                        "DIR/schema.inferred.json for review")
    p.add_argument("--purpose", default="marketing", help="consent purpose records must carry (default marketing)")


def _add_propensity(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="PATH", default=None,
                   help="bank-full.csv(.gz) (default: the bundled examples/data/bank-full.csv.gz)")
    p.add_argument("--model", dest="name", default=None, help=argparse.SUPPRESS)  # the earlier spelling of --name
    p.add_argument("--hidden", type=int, default=None, help="hidden units (default 32; 0 = logistic regression)")


def _add_recommender(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="PATH", default=None,
                   help="online_retail.csv(.gz) (default: the bundled examples/data/online_retail.csv.gz)")
    p.add_argument("--model", dest="name", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dim", type=int, default=None, help="embedding size d (default 32)")
    p.add_argument("--negatives", type=int, default=None, help="negatives sampled per positive (default 4)")
    p.add_argument("--recon-steps", type=int, default=None, help="user-vector reconstruction steps (default 20)")
    p.add_argument("--recon-lr", type=float, default=None, help="reconstruction learning rate (default 1.0)")


def _add_tabular(p: argparse.ArgumentParser) -> None:
    _table_input(p, required=False)
    p.add_argument("--fitted-schema", metavar="FILE", default=None,
                   help="a federated statistics release (`fedmark statistics MODEL --out FILE`) or a fitted schema "
                        "to export with, instead of fitting on --data (then --data is not needed)")
    p.add_argument("--label", default=None, help="the column to predict (or 'label' in --schema)")
    task = p.add_mutually_exclusive_group()
    task.add_argument("--positive", default=None, help="binary task: the label value that is the positive outcome")
    task.add_argument("--task", choices=("binary", "regression", "multiclass"), default="binary",
                      help="binary (default), regression (MAE/RMSE) or multiclass (top-k accuracy)")
    p.add_argument("--drop", nargs="+", action="extend", default=[], metavar="COL",
                   help="columns to leave out (identifiers, columns that leak the outcome)")
    p.add_argument("--embed", nargs="+", action="extend", default=[], metavar="COL:DIM", type=_embed_arg,
                   help="feed a categorical column to a DIM-wide Embedding layer instead of one-hot slots")
    p.add_argument("--hidden", type=int, default=None, help="hidden units (default 32; 0 = a linear model)")


def _embed_arg(text: str) -> tuple[str, int]:
    col, _, dim = text.rpartition(":")
    if not col or not dim.isdigit() or int(dim) < 1:
        raise argparse.ArgumentTypeError(f"--embed takes COL:DIM with DIM an integer >= 1 (e.g. country:8), got {text!r}")
    return col, int(dim)


def _add_keras(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", dest="model_fn", required=True, metavar="PATH.py:FUNCTION",
                   help="your builder: FUNCTION(width, units) -> an uncompiled tf.keras.Model with logits out")
    _table_input(p, required=False)


ADDERS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "propensity": _add_propensity, "recommender": _add_recommender, "tabular": _add_tabular, "keras": _add_keras}


def register(subparsers: Any) -> None:
    names = "\n".join(f"  {e.name:<12} {e.help} [{e.protocol}]" for e in registry.families())
    p = subparsers.add_parser(
        "export", help="build a trainer artifact (ONNX graphs + manifest) for a model family",
        description="Export a model family as a fedmark trainer artifact that devices train with ONNX Runtime.\n\n"
                    f"families:\n{names}",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="family", metavar="FAMILY", required=True)
    for e in registry.families():
        fp = sub.add_parser(e.name, help=e.help, description=f"{e.help} (training protocol {e.protocol}).")
        _common(fp, e.name)
        ADDERS.get(e.name, lambda _p: None)(fp)
        fp.set_defaults(func=_handle)


def options(args: argparse.Namespace) -> dict[str, Any]:
    """CLI arguments -> the family exporter's keyword options (unset ones keep the library defaults)."""
    opts: dict[str, Any] = {"seed": args.seed, "version": args.version, "clip_norm": args.clip_norm,
                            "noise_multiplier": args.noise_multiplier}
    if args.name:
        opts["model"] = args.name
    fam = args.family
    batch_key = "block" if fam == "recommender" else "batch_size"
    named = {"learning_rate": args.lr, "epochs": args.epochs, batch_key: args.batch_size}
    if fam == "propensity":
        named.update(data_path=args.data, hidden=args.hidden)
    elif fam == "recommender":
        named.update(data_path=args.data, dim=args.dim, negatives=args.negatives, recon_steps=args.recon_steps,
                     recon_lr=args.recon_lr)
    elif fam in ("tabular", "keras"):
        named.update(data_path=args.data, sep=args.sep, schema_path=args.schema, purpose=args.purpose)
        if fam == "tabular":
            named.update(label=args.label, positive=args.positive, task=args.task, drop=args.drop, hidden=args.hidden,
                         embed=dict(args.embed) or None, fitted_schema_path=args.fitted_schema)
        else:
            named["model_fn"] = args.model_fn
    opts.update({k: v for k, v in named.items() if v is not None})
    return opts


def _handle(args: argparse.Namespace) -> int:
    opts = options(args)
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ start-up chatter is not for users
    from models.data import DataError
    from models.export import ExportError, export
    from models.family import FamilyError
    from models.tabular import TableError

    try:
        manifest = export(args.family, args.out, **opts)
    except (DataError, ExportError, FamilyError, TableError, ValueError) as exc:
        print(f"fedmark export {args.family}: {exc}", file=sys.stderr)
        return 2
    size = manifest.num_params
    print(f"exported {manifest.family} model {manifest.model!r} v{manifest.version} ({manifest.protocol}) to "
          f"{args.out}: {size} global params, graphs {', '.join(sorted(manifest.graphs))}")
    inferred = os.path.join(args.out, "schema.inferred.json")
    if os.path.exists(inferred):
        print(f"the feature schema was inferred from the data: review {inferred} and pass it back with --schema")
    return 0
