"""Model families defined with TensorFlow / TFF and exported as ONNX trainer artifacts.

Build-time only: this package needs TensorFlow, TFF, tf2onnx and onnx, which
devices and the server never install.  Importing ``models`` is cheap — the
public names below are resolved lazily, and TensorFlow is imported only inside
the functions that need it.

Public API (see docs/ARTIFACT.md for the artifact):

* data: ``load_bank``, ``stratified_split``, ``partition_by_job``,
  ``partition_by_month``, ``partition_by``, ``load_retail``
* family API: ``Family`` (Keras model + task + feature schema),
  ``export_family(family, out_dir, name=…, purpose=…)``,
  ``build_process(family, …)`` (TFF), ``tabular_family``
* export by name: ``export(family, out_dir, **opts)`` — the names are the
  registry's (``models.registry.families()``: propensity, recommender,
  tabular, keras)
* tables: ``read_table``, ``infer_declaration``, ``fit_schema``
* federated (TFF): ``build_propensity_process``, ``build_recommender_process``,
  ``DPConfig``
* baseline: ``propensity.train_centralized``, ``Family.train_centralized``
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_bank": "models.data", "load_retail": "models.data", "stratified_split": "models.data",
    "partition_by": "models.data", "partition_by_job": "models.data", "partition_by_month": "models.data",
    "partition_iid": "models.data", "RetailData": "models.data",
    "Family": "models.family", "export_family": "models.export", "tabular_family": "models.export",
    "build_process": "models.federated", "families": "models.registry",
    "read_table": "models.tabular", "infer_declaration": "models.tabular", "fit_schema": "models.tabular",
    "build_propensity_process": "models.federated", "build_recommender_process": "models.federated",
    "DPConfig": "models.federated",
    "train_centralized": "models.propensity", "build_schema": "models.propensity",
}

__all__ = sorted(_EXPORTS) + ["export"]


def __getattr__(name: str) -> Any:
    if name == "export":
        # The submodule itself is callable (see models/export.py), so ``models.export(...)``
        # and ``from models.export import export`` both work, whichever is imported first.
        return importlib.import_module("models.export")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
