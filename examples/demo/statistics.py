"""The demo's *Prepare* step: fit the propensity schema federatedly, and assess the fleet's data.

Before any model exists, the demo opens a statistics task for the bank
declaration (:data:`BANK_DECLARATION`), every simulated device sends the
sufficient statistics of its consented, rule-passing records through the
real SDK (:meth:`edge_sdk.Client.report_statistics`), the server releases
them with clipping, Gaussian noise and the k rule, and the fitted schema of
that release is what the propensity model is exported with.  The readiness
assessment of the same release goes into the report.

The declared ranges are domain facts a bank team would write down (ages of
adult customers, balances in euros, contacts per campaign), not fitted to
the data; values outside them are clipped for the statistics only.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

from fedmark.contract import FeatureSchema

__all__ = ["BANK_DECLARATION", "DEFAULT_CONFIG", "FAST_STATISTICS", "declaration", "fit_federated",
           "central_schema", "prepare"]

BANK_DECLARATION: dict[str, Any] = {
    "label": "y", "task": "binary", "positive": "yes",
    "columns": {
        "age": {"kind": "numeric", "range": [18, 95], "required": True},
        "balance": {"kind": "numeric", "range": [-3000, 15000]},
        "day": {"kind": "numeric", "range": [1, 31], "range_rule": True},
        "campaign": {"kind": "numeric", "range": [1, 20]},
        "pdays": {"kind": "numeric", "range": [-1, 400]},
        "previous": {"kind": "numeric", "range": [0, 10]},
        "job": {"kind": "categorical", "max_vocab": 20}, "marital": {"kind": "categorical", "max_vocab": 20},
        "education": {"kind": "categorical", "max_vocab": 20}, "default": {"kind": "categorical", "max_vocab": 20},
        "housing": {"kind": "categorical", "max_vocab": 20}, "loan": {"kind": "categorical", "max_vocab": 20},
        "contact": {"kind": "categorical", "max_vocab": 20}, "month": {"kind": "categorical", "max_vocab": 20},
        "poutcome": {"kind": "categorical", "max_vocab": 20},
    },
}

#: The statistics release's default privacy settings in the demo (see docs/GOVERNANCE.md).
DEFAULT_CONFIG: dict[str, Any] = {"noise_multiplier": 1.0, "clip": 50.0, "k": 5, "delta": 1e-5, "selection_sd": 1.0}


#: The fast variant's fleet (151 devices of ~30 records) drowns at z = 1: its vocabularies lost most values
#: (month kept 1 of 12).  z = 0.5 (epsilon about 10.7, still below the demo's DP training's), clip 10 and a
#: 1-SD threshold keep all but 5 values (sweeps/statistics_fast_fleet.py -> sweeps/results/statistics_fast_fleet.json).
FAST_STATISTICS: dict[str, Any] = {"noise_multiplier": 0.5, "clip": 10.0, "selection_sd": 1.0}


def declaration(extra_drop: Sequence[str] = ("consent",)) -> dict[str, Any]:
    """The bank declaration as ``models.tabular.fit_schema`` reads it (the consent field is dropped)."""
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BANK_DECLARATION.items()}
    d["drop"] = list(extra_drop)
    return d


def central_schema(rows: Sequence[Mapping[str, Any]]) -> FeatureSchema:
    """The same declaration fitted centrally on pooled rows (the baseline the federated fit is compared with)."""
    from models import tabular

    drop = [c for c in rows[0] if c not in BANK_DECLARATION["columns"] and c != BANK_DECLARATION["label"]]
    return tabular.fit_schema(rows, declaration(drop))


def fit_federated(base_url: str, admin_token: str, devices: Sequence[Any], keys: Any, model: str,
                  config: Mapping[str, Any] | None = None, purpose: str = "propensity_scoring") -> dict[str, Any]:
    """Open a statistics task, let every device contribute, release; returns the release and the assessment.

    ``devices`` are the demo's :class:`examples.demo.fleet.SimDevice`; ``keys`` its ``AppKeys``.
    """
    import requests

    from edge_sdk.errors import ConsentError

    auth = {"Authorization": f"Bearer {admin_token}"}
    r = requests.post(f"{base_url}/v1/models/{model}/statistics", headers=auth, timeout=30,
                      json={"declaration": BANK_DECLARATION, "config": dict(config or DEFAULT_CONFIG),
                            "purpose": purpose})
    r.raise_for_status()
    task = r.json()
    def one(d: Any) -> int:
        try:
            d.connect(base_url, keys.of(d)).report_statistics(model, d.records)
            return 1
        except ConsentError:
            return 0  # none of this device's records may be used: it sends nothing

    with ThreadPoolExecutor(max_workers=8) as pool:  # a fleet reports in parallel
        contributed = sum(pool.map(one, devices))
    r = requests.post(f"{base_url}/v1/models/{model}/statistics/{task['task_id']}/release", headers=auth, timeout=60)
    r.raise_for_status()
    rel = r.json()
    a = requests.get(f"{base_url}/v1/models/{model}/readiness", headers=auth, timeout=30)
    a.raise_for_status()
    return {"release": rel, "assessment": a.json(), "contributed": contributed,
            "schema": FeatureSchema.from_json(rel["fitted_schema"])}


def prepare(out: Path, devices: Sequence[Any], k: int, config: Mapping[str, Any] | None = None,
            purpose: str = "propensity_scoring", seed: int = 0) -> tuple[FeatureSchema, dict[str, Any]]:
    """The demo's Prepare step on its own server: (the fitted schema, a JSON-able summary with its quality
    ``rules`` and the report's ``rows``)."""
    import shutil

    from bench.fleet import Fleet
    from examples.demo.fleet import AppKeys
    from fedmark.contract.statistics import rules_of
    from server.testing import running_server

    server_dir = out / "server-statistics"
    shutil.rmtree(server_dir, ignore_errors=True)
    cfg = dict(DEFAULT_CONFIG, **(config or {}), k=k)
    # A fixed noise secret: the release's noise (seeded from it and the task id) is then the same draw on
    # every run with the same fleet, as the demo's other seeds are fixed.  A real server keeps its secret.
    with running_server(server_dir, extra_env={"FEDMARK_NOISE_SECRET": f"fedmark-demo-statistics-{seed}"}) as srv:
        res = fit_federated(srv.base_url, srv.admin_token, devices, AppKeys(Fleet(srv.base_url, srv.admin_token)),
                            purpose, cfg, purpose=purpose)
    for d in devices:  # the simulated devices' storage: nothing reads it now
        shutil.rmtree(d.storage, ignore_errors=True)
        d.client = None
        if d.storage.parent.exists() and not any(d.storage.parent.iterdir()):
            d.storage.parent.rmdir()
    rel, a = res["release"], res["assessment"]
    rows = [{"figure": "devices that contributed", "value": res["contributed"]},
            {"figure": "clipped contributions", "value": rel["clipped_devices"]},
            {"figure": "epsilon of the release (delta 1e-5)", "value": rel["epsilon"]},
            {"figure": "category values withheld (k rule, noise threshold)",
             "value": sum(rel["suppressed_values"].values())},
            {"figure": "columns hashed (no value released)", "value": ", ".join(rel["hashed_columns"]) or "none"},
            {"figure": "readiness", "value": " ".join(a["summary"])}]
    return res["schema"], {"rules": rules_of(BANK_DECLARATION), "rows": rows,
            "epsilon": rel["epsilon"], "assessment": a, "contributed": res["contributed"],
            "schema_version": rel["schema_version"]}
