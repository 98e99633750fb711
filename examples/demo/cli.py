"""``fedmark demo``: registration only (the run imports TensorFlow, Flask … when it starts)."""
from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="end-to-end federated training on the real marketing data sets, with a report",
        description="Export both trainers, start a fedmark server on loopback, simulate a device fleet that "
                    "trains through the edge SDK over HTTP, compare with centralized training and write an "
                    "HTML report with plots and the figures as JSON.")
    p.add_argument("--out", default="out/demo", help="directory for artifacts, server data and the report (default: out/demo)")
    p.add_argument("--fast", action="store_true", help="small slices and few rounds (about a minute); what the test suite runs")
    p.add_argument("--regions", action="store_true",
                   help="instead: one server per region (eu, us, apac) under a global coordinator, each on its own "
                        "SQLite database; one region is killed mid-round (examples/demo/regions.py)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "regions", False):
        from examples.demo.regions import main as regions_main

        return regions_main(args.out, args.fast)
    from examples.demo.run import main

    return main(args.out, args.fast)
