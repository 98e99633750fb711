"""The one access decision of every route that reads a model: role, partner, region line, activation.

Why one decision: the leaks of issue 18 were each a route that re-stated part
of the rule (files checked the policy but not the region line; metadata checked
the partner for marketers but not for devices; grants were matched by token
name).  Every model-reading route (model listing and detail, manifest, files,
training configuration, rounds, evaluation summaries, KPIs, policy) asks
:func:`model_access` with a *purpose* and serves nothing else.

The rule, by role:

* **admin** - everything.
* **marketer** - the model must be *visible*: a partner-bound token sees only
  models shared with its partner (policy ``allowed_partners``; ungoverned
  models are shared with nobody), and no marketer sees the regional line of a
  region that exports nothing (its versions are that region's data).
  ``manifest`` and ``files`` also need an allowed model activation of that
  version *by this token* (``activations.token_id``; a token's name is a label
  anyone can reuse).
* **device** - a governed model must be eligible for the device exactly as a
  task would be (:func:`server.governance.decisions.eligible`: region,
  partner, region line).  For a governed model, ``manifest`` and ``files`` are
  scoped to model lines the device trains or evaluates: it holds or held a
  training task in one of the line's rounds, or an evaluation task for it
  (table ``evaluation_tasks``), so a "device" enrolled with the public app key
  cannot skip activation unrecorded.  Ungoverned models (no policy, hence no
  activation to skip) stay readable by any enrolled device: on-device scoring
  and personalisation need no task.  Every file a device downloads is audited
  (``file.downloaded``, code = what scoped it: task / evaluation / visible).

What the caller may not see is answered exactly like a model that does not
exist (``404 unknown_model``, same message): hiding existence.  What it may see
but not use this way is ``403`` with a reason: ``activation_required``
(marketers), ``policy_denied`` / ``not_training_or_evaluating`` (devices).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select

from server.auth.tokens import Principal
from server.errors import ApiError
from server.governance import audit, decisions, partners
from server.governance.decisions import Denial
from server.governance.policy import Policy, current_policy
from server.storage import schema

__all__ = ["PURPOSES", "Access", "Denial", "model_access", "require", "error", "visible", "has_grant",
           "holds_task", "record_evaluation_task", "audit_download", "round_model",
           "round_counts_shown"]

#: What a route reads.  ``manifest`` and ``files`` are the model itself; the rest is information about it.
PURPOSES = ("metadata", "manifest", "files", "training", "rounds", "evaluations", "kpis", "policy",
            "statistics")  # statistics: released feature statistics and the readiness assessment (#15)
_MODEL_ITSELF = ("manifest", "files")


@dataclass(frozen=True)
class Access:
    """Allowed: the model row, the policy in force (None: ungoverned), the line's region and what granted it."""

    model: str
    row: Any
    policy: Policy | None
    line_region: str | None
    via: str  # "admin" | "visible" | "activation" | "task" | "evaluation"


# Built once: every device download asks them.  ``tasks`` is indexed by device (migration 0007), so the
# question costs the device's few tasks, not every round of the model.
_MODEL = select(schema.models).where(schema.models.c.name == bindparam("name"))
_HELD_TASK = select(schema.tasks.c.id).select_from(
    schema.tasks.join(schema.rounds, schema.rounds.c.id == schema.tasks.c.round_id)) \
    .where(schema.tasks.c.device_id == bindparam("dev"), schema.rounds.c.model == bindparam("model")).limit(1)
_HELD_EVALUATION = select(schema.evaluation_tasks.c.id).where(
    schema.evaluation_tasks.c.device_id == bindparam("dev"), schema.evaluation_tasks.c.model == bindparam("model")) \
    .limit(1)


def _hidden(model: str) -> Denial:
    return Denial("unknown_model", f"no model named {model!r}; publish one with POST /v1/models/{model}/versions")


def model_access(conn: Connection, who: Principal, model: str, purpose: str, *,
                 version: int | None = None) -> Access | Denial:
    """May ``who`` read ``model`` for ``purpose`` (``version``: the version of a manifest / file read)?"""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown access purpose {purpose!r}")
    row = conn.execute(_MODEL, {"name": model}).first()
    if row is None:
        return _hidden(model)
    policy = current_policy(conn, model)
    line_region = row.region if row.line_of else None
    if who.role == "admin":
        return Access(model, row, policy, line_region, "admin")
    if who.role == "marketer":
        if not _marketer_sees(policy, who, line_region):
            return _hidden(model)
        if purpose in _MODEL_ITSELF:
            if version is None or not has_grant(conn, who, model, version):
                return Denial("activation_required",
                              f"marketers fetch a model's manifest and files through an activation request "
                              f"(POST /v1/activation/model with model {model!r} and your purpose); it is checked "
                              "against the model's policy")
            return Access(model, row, policy, line_region, "activation")
        return Access(model, row, policy, line_region, "visible")
    if who.role == "device":
        if policy is not None and decisions.eligible(policy, model, who.region, who.partner, line_region) is not None:
            return _hidden(model)
        if purpose in _MODEL_ITSELF and policy is not None:
            via = holds_task(conn, who, model)
            if via is None:
                return Denial("not_training_or_evaluating",
                              f"devices download the models they train or evaluate: ask for a task "
                              f"(POST /v1/tasks) or an evaluation task (POST /v1/evaluations/tasks) for {model!r} first")
            return Access(model, row, policy, line_region, via)
        return Access(model, row, policy, line_region, "visible")
    return _hidden(model)


def _marketer_sees(policy: Policy | None, who: Principal, line_region: str | None) -> bool:
    if line_region is not None and (policy is None or not decisions.exported(policy, line_region)):
        return False  # a region that exports nothing: its line's versions are that region's data
    return who.partner is None or decisions.shared_with(policy, who.partner)


def visible(conn: Connection, who: Principal, model: str) -> bool:
    """Would ``who`` see ``model`` at all (listings)?"""
    return isinstance(model_access(conn, who, model, "metadata"), Access)


def error(denial: Denial) -> ApiError:
    """The HTTP answer to a denial (the JSON error shape)."""
    if denial.code == "unknown_model":
        return ApiError(404, "unknown_model", denial.message)
    if denial.code == "activation_required":
        return ApiError(403, "activation_required", denial.message)
    return ApiError(403, "policy_denied", denial.message, extra={"reason": denial.code})


def require(conn: Connection, who: Principal, model: str, purpose: str, *, version: int | None = None) -> Access:
    """:func:`model_access`, raising its :func:`error` when denied."""
    out = model_access(conn, who, model, purpose, version=version)
    if isinstance(out, Denial):
        raise error(out)
    return out


def round_model(conn: Connection, round_id: str) -> str | None:
    """The model (line) a round belongs to; None for an unknown round."""
    return conn.execute(select(schema.rounds.c.model).where(schema.rounds.c.id == round_id)).scalar()


def round_counts_shown(conn: Connection, info: dict[str, Any], allowed: Access) -> dict[str, Any]:
    """A round's status as it may leave the server: device counts under the model's k rule (an empty count
    reveals no one and stays 0).  Under policy ``k_counts: "attested"`` a count is shown only when enough of
    the devices behind it are attested."""
    k = decisions.k_min(allowed.policy)
    out = dict(info)
    behind = {"accepted": schema.contributions, "tasks_issued": schema.tasks}
    for key in ("accepted", "tasks_issued"):
        n = out.get(key)
        if not n:
            continue
        counted = int(n)
        if allowed.policy is not None and allowed.policy.k_counts == "attested":
            t = behind[key]
            ids = [r[0] for r in conn.execute(select(t.c.device_id).where(t.c.round_id == info["round_id"]).distinct())]
            counted = decisions.k_devices(allowed.policy, partners.attested(conn, ids))
        out[key] = None if decisions.suppressed(counted, k) else int(n)
    out["k_min"] = k
    return out


# ---------------------------------------------------------------------------- grants
def has_grant(conn: Connection, who: Principal, model: str, version: int) -> bool:
    """Did *this token* (its id, not its name) get an allowed model activation of this version?"""
    if who.token_id is None:
        return False
    a = schema.activations
    return conn.execute(select(a.c.id).where(a.c.token_id == who.token_id, a.c.model == model, a.c.version == version,
                                             a.c.kind == "model", a.c.allowed.is_(True)).limit(1)).first() is not None


def holds_task(conn: Connection, who: Principal, model: str) -> str | None:
    """"task" / "evaluation" if the device holds or held a training or evaluation task for ``model``, else None."""
    if who.device_id is None:
        return None
    if conn.execute(_HELD_TASK, {"dev": who.device_id, "model": model}).first() is not None:
        return "task"
    if conn.execute(_HELD_EVALUATION, {"dev": who.device_id, "model": model}).first() is not None:
        return "evaluation"
    return None


def record_evaluation_task(conn: Connection, who: Principal, model: str, target: int, now: float) -> None:
    """Remember that the device was asked to evaluate ``model`` (its downloads of the line are then in scope)."""
    if who.device_id is None:
        return
    e = schema.evaluation_tasks
    done = conn.execute(e.update().where(e.c.device_id == who.device_id, e.c.model == model)
                        .values(target=target, issued_at=now)).rowcount
    if not done:
        conn.execute(e.insert().values(model=model, device_id=who.device_id, target=target, issued_at=now))


def audit_download(conn: Connection, who: Principal, access: Access, version: int, file: str, now: float) -> None:
    """Audit a device's model-file download (``file.downloaded``, code = what scoped it: task / evaluation)."""
    audit.append_one(conn, now, "file.downloaded", model=access.model, actor=who.device_id or who.name,
                     code=access.via, subject=f"{version}/{file}"[:128],
                     detail={"version": version, "file": file, "region": who.region, "partner": who.partner})
