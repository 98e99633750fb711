"""The ``fedmark`` command (``python -m fedmark_cli`` is the same).

It sits above the packages it drives: sub-commands are contributed by
``models.cli``, ``server.cli``, ``edge_sdk.cli`` and, in a source checkout,
``examples.demo.cli``.  Each such module has ``register(subparsers)`` that adds
its parsers and sets ``func``.  A module whose package is not installed (an
edge-only install has no ``models`` or ``server`` dependencies' handlers, and
no install has ``examples``) is skipped silently.  Registration must import
nothing heavy (TensorFlow, Flask …): handlers import what they need when they
run, so ``fedmark --help`` is instant and works in a lean install.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# Modules that contribute sub-commands, in --help order.  ``examples`` exists only in a
# source checkout (setup.py does not install it), so the demo is offered only there.
COMMAND_MODULES = ("models.cli", "server.cli", "edge_sdk.cli", "simulate.cli", "examples.demo.cli")


def version() -> str:
    """The installed distribution's version (a source checkout without an install says so)."""
    from importlib import metadata

    try:
        return metadata.version("fedmark")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: run `make venv` or `pip install .`)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedmark", description="Governed federated learning for marketing models.",
                                     epilog="Start with `fedmark init`; every command has --help.")
    parser.add_argument("--version", action="version",
                        version=f"fedmark {version()} (Python {sys.version.split()[0]})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name or (exc.name and name.startswith(exc.name + ".")):
                continue  # that package is not present in this install
            raise
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
