"""A device's part of a statistics task: consent first, then the quality rules, then the statistics.

Why its own module: the order is the privacy design, and the same as
training's — a record whose consent does not cover the task's purpose (or
whose subject withdrew) is never looked at; a record that breaks a quality
rule is not measured (nor trained on, see :func:`rule_check`); what leaves
the device is only the sums and counts of
:func:`fedmark.contract.statistics.local_statistics` and counts of rule
violations and exclusions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from edge_sdk import consent as consent_mod
from edge_sdk.consent import CONSENT_FIELD
from edge_sdk.errors import ConsentError, ServerError
from fedmark.contract import ERR_BAD_ANSWER, ProtocolError, RowError, required_purposes, sha256_bytes
from fedmark.contract.consent import parse_requirement
from fedmark.contract.statistics import (StatisticsError, StatisticsPlan, Validation, check_records,
                                         local_statistics)

__all__ = ["Measurement", "measure", "rule_check", "idempotency_key"]


@dataclass(frozen=True)
class Measurement:
    """What the device sends (``body``) and what it tells the app: counts only."""

    body: dict[str, Any]
    used: int
    excluded_no_consent: int
    failed_rules: int


def measure(records: Sequence[Mapping[str, Any]], task: Mapping[str, Any], *, consent_field: str = CONSENT_FIELD,
            withdrawn: Callable[[Mapping[str, Any]], bool] | None = None) -> Measurement:
    """The device's contribution to a statistics ``task`` (the server's task document) from ``records``."""
    try:
        plan = StatisticsPlan.from_declaration(task["declaration"])
    except (KeyError, TypeError, StatisticsError) as exc:
        raise ServerError(200, ERR_BAD_ANSWER, f"the statistics task's declaration is unusable: {exc}") from None
    named = task.get("consent_purposes") or []
    purpose = task.get("purpose")
    if not isinstance(named, list) or not all(isinstance(p, str) for p in named):
        raise ServerError(200, ERR_BAD_ANSWER, f"the task's consent_purposes must be a list, got {named!r}")
    purposes = required_purposes(named, purpose if isinstance(purpose, str) else None, "analytics")
    try:
        requirement = parse_requirement(task.get("consent_signals"), purposes)
    except ProtocolError as exc:
        raise ServerError(200, ERR_BAD_ANSWER, f"the statistics task's consent_signals: {exc}") from None
    decided = consent_mod.decide_records(records, requirement, None, consent_field, withdrawn)
    consented = [r for r, ok in zip(records, decided.allowed) if ok]
    if not consented:
        raise ConsentError(consent_mod.nothing_allowed(list(records), requirement, decided, consent_field))
    checked = check_records(consented, plan)
    passing = [r for r, ok in zip(consented, checked.passed) if ok]
    body = local_statistics(passing, plan)
    body["violations"] = {k: v for k, v in checked.violations.items() if v}
    body["excluded"] = {"consent": len(records) - len(consented), "rules": checked.failed}
    return Measurement(body, len(passing), len(records) - len(consented), checked.failed)


def idempotency_key(task_id: str, body: bytes) -> str:
    """The same contribution (task and body) always travels under the same key, so a retry replays."""
    return "stats-" + sha256_bytes(task_id.encode() + b"|" + body)[-40:]


def rule_check(records: Sequence[Mapping[str, Any]], rules: Mapping[str, Any] | None,
               rows: Sequence[int]) -> tuple[list[int], tuple[RowError, ...], dict[str, int]]:
    """Quality rules before training: (rows that pass, a RowError per broken rule, violations per rule).

    ``rules`` is a manifest's ``features.rules`` (a declaration's ``columns`` with their ``required`` /
    ``range`` / ``range_rule`` / ``allowed``); None: no rules, every row passes.  ``rows`` are the caller's
    indices of ``records`` to check (the consented ones).
    """
    if not rules:
        return list(rows), (), {}
    try:
        plan = StatisticsPlan.from_declaration(rules, measuring=False)
    except StatisticsError as exc:
        raise ServerError(200, ERR_BAD_ANSWER, f"the model's quality rules are unusable: {exc}") from None
    checked: Validation = check_records([records[i] for i in rows], plan)
    errors = tuple(RowError(i, rule.split(":")[0], f"breaks quality rule {rule}")
                   for i, broke in zip(rows, checked.broken) for rule in broke)
    return [i for i, ok in zip(rows, checked.passed) if ok], errors, {k: v for k, v in checked.violations.items() if v}
