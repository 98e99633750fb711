"""Training-protocol plug-ins: everything that differs between kinds of model, behind one interface.

The manifest names a protocol (``supervised-tabular/1``: records with a label,
binary / regression / multiclass; ``mf-reconstruction/1``: one customer's
interactions and a device-only user vector).  :func:`protocol_for` gives the
artifact's plug-in (:mod:`edge_sdk.families.base`); the Trainer runs its
graphs through it and the Client asks the helpers below, so neither branches
on a family.  Adding a protocol = one module registering a
``TrainingProtocol`` subclass (and its JS twin in ``edge_sdk/web/src/families``).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edge_sdk.families import ease, mf, supervised  # noqa: F401  (importing registers the protocols)
from edge_sdk.families.base import (TrainerError, TrainingProtocol, TrainResult, known_protocols, protocol_for,
                                    register)
from fedmark.contract import Manifest

__all__ = ["TrainerError", "TrainResult", "TrainingProtocol", "register", "protocol_for", "known_protocols",
           "PROPENSITY", "RECOMMENDER", "VALIDATE", "require_family", "personal_state", "training_state", "training_input",
           "after_training", "evaluate", "prepared_update"]

#: Client verbs a protocol may support: one score per record (score()), a ranking (recommend()/personalize()),
#: federated validation's per-label score histogram (validate(): binary models).
PROPENSITY = "score"
RECOMMENDER = "recommend"
VALIDATE = "validate"
#: what each verb needs, in words, for the error that refuses it (the JS twin: VERB_NEEDS in families/index.js)
VERB_NEEDS = {PROPENSITY: "a model that scores each record", RECOMMENDER: "a recommender model",
              VALIDATE: "a binary model (federated validation reports a score histogram)"}


def require_family(model: str, manifest: Manifest, verb: str, verbs: str) -> None:
    """Refuse a Client verb the model's protocol does not support (the one place that error is worded)."""
    from edge_sdk.errors import ConfigurationError

    plugin = protocol_for(manifest)
    if verb in plugin.verbs:
        return
    other = " — use recommend()" if RECOMMENDER in plugin.verbs else ""
    raise ConfigurationError(f"{verbs} needs {VERB_NEEDS.get(verb, verb)}; {model!r} is a {manifest.family} model "
                             f"(protocol {manifest.protocol}){other}")


def personal_state(store: Any, model: str, manifest: Manifest, trainer: Any,
                   seed: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """The device-only parameters (fresh ones where none are stored) and the purchase history."""
    from edge_sdk.runtime import converted

    local, history = store.load(model, manifest.local_params)
    missing = [s.name for s in manifest.local_params if s.name not in local]
    if missing:
        with converted("initialising the personal parameters"):
            fresh = trainer.initial_local(seed)
        local = {**fresh, **local}
    return local, history


def training_state(store: Any, model: str, manifest: Manifest, trainer: Any,
                   seed: int) -> tuple[dict[str, np.ndarray] | None, list[str]]:
    """The device-only state a training run starts from (none for protocols without one)."""
    if protocol_for(manifest).needs_personal_state:
        return personal_state(store, model, manifest, trainer, seed)
    return None, []


def training_input(manifest: Manifest, rows: Sequence[Any], *, purposes: Sequence[str] | None, strict: bool,
                   consent_field: str) -> tuple[Any, Any]:
    """The trainer's input from consented records, and the data report."""
    return protocol_for(manifest).training_input(rows, purposes=purposes, strict=strict, consent_field=consent_field)


def after_training(store: Any, model: str, manifest: Manifest, train_data: Any, result: Any,
                   history: list[str]) -> None:
    """Keep what stays on the device after a local run (the recommender's user vector and history)."""
    protocol_for(manifest).after_training(store, model, train_data, result, history)


def evaluate(store: Any, model: str, manifest: Manifest, trainer: Any, rows: Sequence[Any], *, k: int,
             consent_field: str, purposes: Sequence[str] | None = None) -> Any:
    """Metrics on a local holdout, aggregates only (see :meth:`edge_sdk.Client.evaluate`)."""
    return protocol_for(manifest, trainer).evaluate(store, model, rows, k=k, consent_field=consent_field,
                                                    purposes=purposes)


def prepared_update(trainer: Any, train_data: Any, seed: int) -> Any:
    """The upload a protocol builds itself (Gram counts: ``ease-gram/1``), or None for the usual
    clipped parameter delta (:func:`edge_sdk.update.build_update`)."""
    return trainer.protocol.prepare_update(train_data, seed=seed)
