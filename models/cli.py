"""``fedmark export {propensity,recommender} --out DIR …``.

Registration imports nothing heavy (``fedmark --help`` must stay instant and
work where TensorFlow is absent); the handler imports TensorFlow when it runs.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

EPILOG = """\
The artifact directory receives manifest.json (every file hashed), the ONNX
graphs (train_step, train_epoch, infer; the recommender adds recon_step and
recon_epoch) and params.bin (initial global params, raw little-endian float32
in manifest order).  See docs/ARTIFACT.md.

examples:
  fedmark export propensity --out out/propensity
  fedmark export recommender --out out/recommender --dim 16 --negatives 8
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export", help="build a trainer artifact (ONNX graphs + manifest) for a model family",
        description="Export a model family as a fedmark trainer artifact that devices train with ONNX Runtime.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("family", choices=("propensity", "recommender"),
                   help="propensity: Bank Marketing conversion MLP; recommender: Online Retail matrix factorisation")
    p.add_argument("--out", required=True, metavar="DIR", help="artifact directory to create (files are replaced)")
    p.add_argument("--data", metavar="PATH", default=None,
                   help="data file (default: the bundled examples/data/bank-full.csv.gz or online_retail.csv.gz)")
    p.add_argument("--seed", type=int, default=0, help="seed for the train split and initial params (default 0)")
    p.add_argument("--model", default=None, help="model name in the manifest (default: the family name)")
    p.add_argument("--version", type=int, default=1, help="model version recorded in the manifest (default 1)")
    p.add_argument("--lr", type=float, default=None, help="default local learning rate (item rows for the recommender)")
    p.add_argument("--epochs", type=int, default=None, help="default local epochs per round")
    p.add_argument("--batch-size", type=int, default=None,
                   help="rows per batch (propensity, default 64) or block size K (recommender, default 256)")
    p.add_argument("--clip-norm", type=float, default=1.0, help="L2 clip norm C for updates (default 1.0)")
    p.add_argument("--noise-multiplier", type=float, default=1.0, help="DP noise multiplier z recorded (default 1.0)")
    g = p.add_argument_group("propensity")
    g.add_argument("--hidden", type=int, default=None, help="hidden units (default 32; 0 = logistic regression)")
    g = p.add_argument_group("recommender")
    g.add_argument("--dim", type=int, default=None, help="embedding size d (default 32)")
    g.add_argument("--negatives", type=int, default=None, help="negatives sampled per positive (default 4)")
    g.add_argument("--recon-steps", type=int, default=None, help="user-vector reconstruction steps (default 20)")
    g.add_argument("--recon-lr", type=float, default=None, help="reconstruction learning rate (default 1.0)")
    p.set_defaults(func=_handle)


def options(args: argparse.Namespace) -> dict[str, Any]:
    """CLI arguments -> ``models.export`` keyword options (unset ones keep the library defaults)."""
    opts: dict[str, Any] = {"data_path": args.data, "seed": args.seed, "version": args.version,
                            "clip_norm": args.clip_norm, "noise_multiplier": args.noise_multiplier}
    if args.model:
        opts["model"] = args.model
    common = {"learning_rate": args.lr, "epochs": args.epochs}
    if args.family == "propensity":
        specific = {"batch_size": args.batch_size, "hidden": args.hidden}
        unused = {"--dim": args.dim, "--negatives": args.negatives, "--recon-steps": args.recon_steps,
                  "--recon-lr": args.recon_lr}
    else:
        specific = {"block": args.batch_size, "dim": args.dim, "negatives": args.negatives,
                    "recon_steps": args.recon_steps, "recon_lr": args.recon_lr}
        unused = {"--hidden": args.hidden}
    bad = [flag for flag, v in unused.items() if v is not None]
    if bad:
        raise SystemExit(f"fedmark export {args.family}: {', '.join(bad)} do(es) not apply to this family")
    opts.update({k: v for k, v in {**common, **specific}.items() if v is not None})
    return opts


def _handle(args: argparse.Namespace) -> int:
    opts = options(args)
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ start-up chatter is not for users
    from models.data import DataError
    from models.export import ExportError, export

    try:
        manifest = export(args.family, args.out, **opts)
    except (DataError, ExportError, ValueError) as exc:
        print(f"fedmark export: {exc}", file=sys.stderr)
        return 2
    size = manifest.num_params
    print(f"exported {manifest.family} model {manifest.model!r} v{manifest.version} to {args.out}: "
          f"{size} global params, graphs {', '.join(sorted(manifest.graphs))}")
    return 0
