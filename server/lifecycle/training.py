"""Setting a model's training configuration: it applies to the model's regional lines, and ends their rounds.

The new configuration (goal, clip, noise, optimizer ...) changes what a round
computes, so the open rounds of the model and its lines are abandoned, and the
server optimizer's moments are reset (its slots may not even fit the new
optimizer); the clip norm and the privacy ledger are kept.
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import update

from server.aggregation import reset_optimizer
from server.errors import ApiError
from server.governance import audit, residency
from server.governance.policy import current_policy
from server.lifecycle.rounds import abandon_stale
from server.registry.lines import propagate_training
from server.registry.service import abandoned_entries, record_event, require_model
from server.rounds.config import TrainingConfig
from server.storage import Store, schema

__all__ = ["set_training"]


def set_training(store: Store, model: str, body: Any, actor: str, now: float) -> dict[str, Any]:
    """Validate and store ``model``'s training configuration; returns it as stored."""
    cfg = TrainingConfig.from_json(body)
    if residency.is_line(model):
        raise ApiError(400, "bad_training_config", f"{model!r} is a regional line; it follows the training "
                                                   "configuration of its model")
    with store.write() as conn:
        row = require_model(conn, model)
        if row.current_version is None:
            raise ApiError(409, "no_version", f"model {model!r} has no version to train; publish one first")
        policy = current_policy(conn, model)
        if policy is not None and policy.gate is not None and cfg.mode == "async":
            raise ApiError(400, "bad_training_config", "mode 'async' cannot be used with the policy's publish "
                                                       "gate (candidates are evaluated between sync rounds)")
        text = json.dumps(cfg.to_json(), sort_keys=True)
        conn.execute(update(schema.models).where(schema.models.c.name == model)
                     .values(training=text, stopped=None, agg_state=reset_optimizer(row.agg_state)))
        propagate_training(conn, model, text)
        abandoned = abandon_stale(conn, model, "training reconfigured", now, with_lines=True)
        record_event(conn, model, "training", row.current_version, actor, cfg.to_json(), now)
        audit.append(conn, now, [audit.Entry("training.set", model, actor, detail=cfg.to_json())]
                     + abandoned_entries(model, actor, "training_reconfigured", abandoned))
    return cfg.to_json()
