"""The registry of exportable model families: what ``fedmark export`` lists and dispatches to.

Why a registry and not a tuple: the CLI's choices, ``models.export(name, …)``
and the docs must agree, and an app team adds its own recipe by registering
it, without editing the CLI.  Registration is light: an entry names its
exporter as ``"module:function"``, imported only when that family is exported
(so ``fedmark --help`` never imports TensorFlow).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from fedmark.contract import PROTOCOL_MF, PROTOCOL_SUPERVISED
from fedmark.contract.gram import PROTOCOL_EASE

__all__ = ["FamilyEntry", "register_family", "families", "entry", "exporter"]


@dataclass(frozen=True)
class FamilyEntry:
    """One exportable family: its name, one-line help, exporter and the protocol devices train it with."""

    name: str
    help: str
    exporter: str  # "module:function"; called as fn(out_dir, **options) -> Manifest
    protocol: str


_FAMILIES: dict[str, FamilyEntry] = {}


def register_family(e: FamilyEntry) -> FamilyEntry:
    if ":" not in e.exporter:
        raise ValueError(f"exporter of {e.name!r} must be 'module:function', got {e.exporter!r}")
    _FAMILIES[e.name] = e
    return e


def families() -> list[FamilyEntry]:
    """Registered families, in registration order."""
    return list(_FAMILIES.values())


def entry(name: str) -> FamilyEntry:
    if name not in _FAMILIES:
        raise KeyError(name)
    return _FAMILIES[name]


def exporter(name: str) -> Callable[..., Any]:
    module, fn = entry(name).exporter.split(":")
    return getattr(importlib.import_module(module), fn)


register_family(FamilyEntry("propensity", "Bank Marketing conversion MLP (binary)",
                            "models.export:export_propensity", PROTOCOL_SUPERVISED))
register_family(FamilyEntry("recommender", "Online Retail matrix factorisation (Federated Reconstruction)",
                            "models.export:export_recommender", PROTOCOL_MF))
register_family(FamilyEntry("tabular", "an MLP on any CSV/Parquet table: binary, regression or multiclass",
                            "models.export:export_tabular", PROTOCOL_SUPERVISED))
register_family(FamilyEntry("keras", "your own Keras model builder (PATH.py:FUNCTION) on a feature schema",
                            "models.export:export_keras", PROTOCOL_SUPERVISED))
register_family(FamilyEntry("ease", "Online Retail item-item EASE from a federated Gram sum (k-thresholded)",
                            "models.ease:export_ease", PROTOCOL_EASE))
