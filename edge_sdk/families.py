"""Everything that differs between model families, in one place.

The propensity family trains on tabular records (features + label) and scores
them; the recommender trains on one customer's interactions, keeps a personal
user vector on the device and ranks items.  The Client's verbs are the same
for both and ask this module wherever the two differ.  (A later change turns
these branches into family plug-ins; until then they stay here, not spread
over the facade.)
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edge_sdk import data as data_mod
from edge_sdk.errors import ConfigurationError, SchemaError
from edge_sdk.metrics import propensity_metrics, recommender_metrics
from edge_sdk.personal import PersonalStore
from edge_sdk.reports import EvalReport
from edge_sdk.runtime import converted
from fedmark.contract import Manifest

__all__ = ["PROPENSITY", "RECOMMENDER", "require_family", "personal_state", "training_state", "training_input",
           "item_codes", "after_training", "evaluate"]

PROPENSITY = "propensity"
RECOMMENDER = "recommender"


def require_family(model: str, manifest: Manifest, family: str, verbs: str) -> None:
    """Refuse a verb the model's family does not support."""
    if manifest.family == family:
        return
    if family == PROPENSITY:
        raise ConfigurationError(f"{verbs} needs a propensity model; {model!r} is a {manifest.family} model — "
                                 "use recommend()")
    raise ConfigurationError(f"{model!r} is a {manifest.family} model; {verbs} need a recommender model")


def personal_state(store: PersonalStore, model: str, manifest: Manifest, trainer: Any,
                   seed: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """The device-only parameters (fresh ones where none are stored) and the purchase history."""
    local, history = store.load(model, manifest.local_params)
    missing = [s.name for s in manifest.local_params if s.name not in local]
    if missing:
        with converted("initialising the personal parameters"):
            fresh = trainer.initial_local(seed)
        local = {**fresh, **local}
    return local, history


def training_state(store: PersonalStore, model: str, manifest: Manifest, trainer: Any,
                   seed: int) -> tuple[dict[str, np.ndarray] | None, list[str]]:
    """The device-only state a training run starts from: the recommender's personal state, none for propensity."""
    if manifest.family == RECOMMENDER:
        return personal_state(store, model, manifest, trainer, seed)
    return None, []


def training_input(manifest: Manifest, rows: Sequence[Any], *, purposes: Sequence[str] | None, strict: bool,
                   consent_field: str) -> tuple[Any, data_mod.DataReport]:
    """The trainer's input from consented records: item indices (recommender) or ``(x, y)`` (propensity)."""
    if manifest.family == RECOMMENDER:
        items, report = data_mod.prepare_interactions(rows, manifest, strict=strict, consent_field=consent_field,
                                                      purposes=purposes)
        if items.size == 0:
            raise SchemaError("none of the consented records names an item this model knows; nothing to train")
        return items, report
    x, y, _, report = data_mod.prepare_tabular(rows, manifest, with_label=True, strict=strict,
                                               consent_field=consent_field, purposes=purposes)
    return (x, y), report


def item_codes(manifest: Manifest, items: np.ndarray) -> list[str]:
    return [str(manifest.features["items"][i]) for i in items]


def after_training(store: PersonalStore, model: str, manifest: Manifest, train_data: Any, result: Any,
                   history: list[str]) -> None:
    """Keep what stays on the device after a local run: the recommender's user vector and history."""
    if manifest.family == RECOMMENDER:
        store.save(model, result.local, history + item_codes(manifest, train_data))


def evaluate(store: PersonalStore, model: str, manifest: Manifest, trainer: Any, rows: Sequence[Any], *, k: int,
             consent_field: str, purposes: Sequence[str] | None = None) -> EvalReport:
    """Metrics on a local holdout, aggregates only (see :meth:`edge_sdk.Client.evaluate`)."""
    if manifest.family == RECOMMENDER:
        held, report = data_mod.prepare_interactions(rows, manifest, consent_field=consent_field, purposes=purposes)
        local, history = store.load(model, manifest.local_params)
        if not local:
            raise ConfigurationError(f"no personal state for {model!r}: personalise before evaluating")
        items = [str(c) for c in manifest.features["items"]]
        held_set, bought = set(held.tolist()), set(history)
        known = np.array([i for i, c in enumerate(items) if c in bought and i not in held_set], np.int64)
        with converted("evaluation"):
            scores = np.asarray(trainer.predict(trainer.initial_params(), local=local)).ravel()
        return EvalReport(model, manifest.version, recommender_metrics(scores, held, k, known), report)
    x, y, _, report = data_mod.prepare_tabular(rows, manifest, with_label=True, consent_field=consent_field,
                                               purposes=purposes)
    with converted("evaluation"):
        p = np.asarray(trainer.predict(trainer.initial_params(), x)).ravel()
    assert y is not None
    metrics, histogram = propensity_metrics(y, p)
    return EvalReport(model, manifest.version, metrics, report, histogram)
